//! The `BlockDevice` trait: submit, then poll for completions.

use core::fmt;

use crate::addr::Instant;
use crate::memory::Memory;
use crate::request::{BlockRequest, Completion, DEFAULT_SG_CAPACITY};

bitflags::bitflags! {
    /// What a device can do beyond reading and writing.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct DeviceFeatures: u16 {
        /// [`crate::Operation::Unmap`] is supported.
        const UNMAP = 1 << 0;
        /// [`crate::Operation::WriteZeroes`] is supported.
        const WRITE_ZEROES = 1 << 1;
        /// [`crate::Operation::CompareAndWrite`] is supported.
        const COMPARE_AND_WRITE = 1 << 2;
        /// The device has a volatile write cache: writes need a flush to be durable.
        const VOLATILE_CACHE = 1 << 3;
        /// Writes are refused with [`crate::ErrorKind::WriteProtected`].
        const READ_ONLY = 1 << 4;
        /// Unmapped blocks read as zeros (SCSI LBPRZ).
        const UNMAP_READS_ZERO = 1 << 5;
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for DeviceFeatures {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "DeviceFeatures({=u16:#x})", self.bits())
    }
}

/// The shape and limits of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Geometry {
    /// Bytes per block (512 or 4096 for real disks).
    pub block_size: u32,
    /// Number of blocks.
    pub block_count: u64,
    /// The longest read or write, in blocks, that one request may carry.
    pub max_transfer_blocks: u32,
    /// How many requests may be outstanding at once; `submit` refuses more.
    pub queue_depth: u16,
    /// Optional operations and properties.
    pub features: DeviceFeatures,
}

impl Geometry {
    /// The capacity in bytes, or `None` on overflow.
    pub const fn capacity_bytes(&self) -> Option<u64> {
        self.block_count.checked_mul(self.block_size as u64)
    }
}

/// Why `submit` refused a request. The request is handed back, so nothing is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SubmitErrorKind {
    /// Every slot is in use: poll for completions, then submit again (back-pressure).
    QueueFull,
    /// A request with the same tag is already outstanding.
    DuplicateTag,
}

/// A refused submission, carrying the request back to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitError<const SG: usize = DEFAULT_SG_CAPACITY> {
    /// Why it was refused.
    pub kind: SubmitErrorKind,
    /// The refused request, unchanged.
    pub request: BlockRequest<SG>,
}

impl<const SG: usize> SubmitError<SG> {
    /// A refusal of `request` for `kind`.
    pub fn new(kind: SubmitErrorKind, request: BlockRequest<SG>) -> Self {
        Self { kind, request }
    }
}

impl<const SG: usize> fmt::Display for SubmitError<SG> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SubmitErrorKind::QueueFull => {
                write!(f, "queue full, request {:?} not accepted", self.request.tag)
            }
            SubmitErrorKind::DuplicateTag => {
                write!(f, "tag {:?} is already outstanding", self.request.tag)
            }
        }
    }
}

/// A block device driven by submit and poll.
///
/// The contract every implementation keeps, and every layer above relies on:
/// - `submit` never blocks and never panics. It refuses a request only for back-pressure or a
///   duplicate tag, handing the request back in [`SubmitError`]. Any other problem with an
///   accepted request (out of range, unsupported, medium error) comes back as an error
///   completion.
/// - Every accepted request completes exactly once, through `poll`'s `done`.
/// - Data moves only inside `poll`, through the [`Memory`] lent to it, and only between the
///   request's acceptance and its completion; the caller must not touch the request's buffers
///   in between, as with DMA.
/// - Time is a value passed in; `poll` returns when it next needs to be called (a pending
///   timer), or `None` when it has nothing outstanding that time alone will finish.
///
/// `SG` is the scatter-gather capacity of requests; a device normally accepts any.
pub trait BlockDevice<const SG: usize = DEFAULT_SG_CAPACITY> {
    /// The shape and limits of the device.
    fn geometry(&self) -> Geometry;

    /// Queues `request`, received at `now`.
    fn submit(&mut self, now: Instant, request: BlockRequest<SG>) -> Result<(), SubmitError<SG>>;

    /// Advances the device to `now`, moving data through `memory` and handing each finished
    /// request to `done`. Returns when the device next needs a poll.
    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant>;
}

impl<T: BlockDevice<SG> + ?Sized, const SG: usize> BlockDevice<SG> for &mut T {
    fn geometry(&self) -> Geometry {
        (**self).geometry()
    }

    fn submit(&mut self, now: Instant, request: BlockRequest<SG>) -> Result<(), SubmitError<SG>> {
        (**self).submit(now, request)
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        (**self).poll(now, memory, done)
    }
}

/// A boxed device is a device, so a layer can keep large devices (a `FileDisk` with a deep
/// queue) off the stack.
#[cfg(feature = "std")]
impl<T: BlockDevice<SG> + ?Sized, const SG: usize> BlockDevice<SG> for std::boxed::Box<T> {
    fn geometry(&self) -> Geometry {
        (**self).geometry()
    }

    fn submit(&mut self, now: Instant, request: BlockRequest<SG>) -> Result<(), SubmitError<SG>> {
        (**self).submit(now, request)
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        (**self).poll(now, memory, done)
    }
}
