//! Driving a device synchronously, for slow paths such as mount, open and resignature.
//!
//! The data path never blocks; a slow path may submit one request and poll until it completes.

use core::fmt;

use crate::addr::Instant;
use crate::device::{BlockDevice, SubmitErrorKind};
use crate::memory::Memory;
use crate::request::{BlockRequest, Completion};

/// Why [`run_to_completion`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DriveError {
    /// The device refused the submission.
    Refused(SubmitErrorKind),
    /// The device reported nothing left to wait for, yet never completed the request.
    Stalled,
    /// The request had not completed after the allowed number of polls.
    PollLimit,
}

impl fmt::Display for DriveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriveError::Refused(kind) => write!(f, "device refused the request: {kind:?}"),
            DriveError::Stalled => f.write_str("device stalled: the request never completed"),
            DriveError::PollLimit => f.write_str("request did not complete within the poll limit"),
        }
    }
}

impl core::error::Error for DriveError {}

/// The completion of a driven request and the time at which it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Driven {
    /// The request's completion.
    pub completion: Completion,
    /// The simulated time when it completed (`now` moved forward to each timer the device asked
    /// for).
    pub now: Instant,
}

/// Submits `request` at `now` and polls until it completes, following the device's timers,
/// for at most `max_polls` polls.
///
/// Completions of other requests that arrive meanwhile are handed to `others`, so none is lost.
pub fn run_to_completion<D, const SG: usize>(
    device: &mut D,
    memory: &mut dyn Memory,
    now: Instant,
    request: BlockRequest<SG>,
    max_polls: usize,
    others: &mut dyn FnMut(Completion),
) -> Result<Driven, DriveError>
where
    D: BlockDevice<SG> + ?Sized,
{
    let tag = request.tag;
    device
        .submit(now, request)
        .map_err(|e| DriveError::Refused(e.kind))?;
    let mut now = now;
    for _ in 0..max_polls {
        let mut found = None;
        let next = device.poll(now, memory, &mut |completion| {
            if completion.tag == tag && found.is_none() {
                found = Some(completion);
            } else {
                others(completion);
            }
        });
        if let Some(completion) = found {
            return Ok(Driven { completion, now });
        }
        match next {
            Some(at) => now = now.max(at),
            None => return Err(DriveError::Stalled),
        }
    }
    Err(DriveError::PollLimit)
}
