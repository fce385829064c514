use core::fmt;

use crate::addr::{Instant, Tag};
use crate::device::{BlockDevice, Geometry, SubmitError};
use crate::memory::Memory;
use crate::request::{BlockRequest, Completion};

/// A breach of the exactly-once contract, as seen by [`ExactlyOnce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Violation {
    /// A tag completed that was not outstanding: a second completion, or one never submitted.
    UnexpectedCompletion(Tag),
    /// A tag was accepted while a request with the same tag was still outstanding.
    DuplicateSubmission(Tag),
    /// More requests were outstanding than the checker can track.
    TooManyOutstanding,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::UnexpectedCompletion(tag) => {
                write!(f, "tag {} completed but was not outstanding", tag.0)
            }
            Violation::DuplicateSubmission(tag) => {
                write!(f, "tag {} accepted twice while outstanding", tag.0)
            }
            Violation::TooManyOutstanding => f.write_str("more requests outstanding than tracked"),
        }
    }
}

/// Wraps a device and checks that every accepted tag completes exactly once.
///
/// It tracks up to `N` outstanding tags and records every violation it sees (the first `V` of
/// them); a test asserts [`ExactlyOnce::violations`] is empty and, at the end,
/// [`ExactlyOnce::outstanding`] is zero.
pub struct ExactlyOnce<D, const N: usize, const V: usize = 8> {
    inner: D,
    outstanding: heapless::Vec<Tag, N>,
    violations: heapless::Vec<Violation, V>,
    completed: u64,
}

impl<D, const N: usize, const V: usize> ExactlyOnce<D, N, V> {
    /// Wraps `inner`.
    pub fn new(inner: D) -> Self {
        Self {
            inner,
            outstanding: heapless::Vec::new(),
            violations: heapless::Vec::new(),
            completed: 0,
        }
    }

    /// The violations seen so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Accepted requests that have not completed yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Completions seen so far.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Unwraps the device.
    pub fn into_inner(self) -> D {
        self.inner
    }

    fn record(violations: &mut heapless::Vec<Violation, V>, violation: Violation) {
        // Past capacity the first violations are kept: they are the ones worth reading.
        let _ = violations.push(violation);
    }
}

impl<D: BlockDevice<SG>, const N: usize, const V: usize, const SG: usize> BlockDevice<SG>
    for ExactlyOnce<D, N, V>
{
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn submit(&mut self, now: Instant, request: BlockRequest<SG>) -> Result<(), SubmitError<SG>> {
        let tag = request.tag;
        self.inner.submit(now, request)?;
        if self.outstanding.contains(&tag) {
            Self::record(&mut self.violations, Violation::DuplicateSubmission(tag));
        } else if self.outstanding.push(tag).is_err() {
            Self::record(&mut self.violations, Violation::TooManyOutstanding);
        }
        Ok(())
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        let outstanding = &mut self.outstanding;
        let violations = &mut self.violations;
        let completed = &mut self.completed;
        self.inner.poll(now, memory, &mut |completion| {
            match outstanding.iter().position(|t| *t == completion.tag) {
                Some(index) => {
                    outstanding.swap_remove(index);
                }
                None => Self::record(violations, Violation::UnexpectedCompletion(completion.tag)),
            }
            *completed += 1;
            done(completion);
        })
    }
}
