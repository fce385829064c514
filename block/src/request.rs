//! Requests, completions and errors.

use core::fmt;

use crate::addr::{BlockCount, Lba, Tag};
use crate::device::{DeviceFeatures, Geometry};
use crate::sg::SgList;

/// The scatter-gather capacity used when a caller does not choose one.
///
/// Sixteen segments cover a 64 KiB request of scattered 4 KiB guest pages; callers that need
/// more name their own capacity.
pub const DEFAULT_SG_CAPACITY: usize = 16;

/// What a request asks the device to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Operation {
    /// Copy blocks from the device into the SG list.
    Read,
    /// Copy the SG list's bytes onto the device.
    Write,
    /// Make every completed write durable (SYNCHRONIZE CACHE). The range is ignored.
    Flush,
    /// Deallocate the range (UNMAP / TRIM); no SG list.
    Unmap,
    /// Make the range read as zeros (WRITE SAME with zeros); no SG list. With
    /// [`RequestFlags::MAY_UNMAP`] the device may deallocate instead of writing.
    WriteZeroes,
    /// Atomically compare the range with the first half of the SG list and, only if equal, write
    /// the second half (COMPARE AND WRITE). The SG list holds twice the range's bytes.
    CompareAndWrite,
}

impl Operation {
    /// Whether the operation changes the device's contents.
    pub const fn is_write(self) -> bool {
        !matches!(self, Operation::Read | Operation::Flush)
    }
}

bitflags::bitflags! {
    /// Modifiers of a request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct RequestFlags: u8 {
        /// Forced unit access: the write is durable when it completes.
        const FUA = 1 << 0;
        /// A [`Operation::WriteZeroes`] may deallocate the range instead of writing zeros.
        const MAY_UNMAP = 1 << 1;
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for RequestFlags {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "RequestFlags({=u8:#x})", self.bits())
    }
}

/// One I/O request: a tag, an operation, a block range and the memory it moves to or from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BlockRequest<const SG: usize = DEFAULT_SG_CAPACITY> {
    /// Caller-chosen identifier, handed back in the completion.
    pub tag: Tag,
    /// What to do.
    pub operation: Operation,
    /// The first block of the range.
    pub lba: Lba,
    /// The length of the range in blocks.
    pub blocks: BlockCount,
    /// Modifiers.
    pub flags: RequestFlags,
    /// Where the data lives: `blocks * block_size` bytes for reads and writes, twice that for
    /// compare-and-write, empty otherwise.
    pub sg: SgList<SG>,
}

impl<const SG: usize> BlockRequest<SG> {
    fn with(tag: Tag, operation: Operation, lba: Lba, blocks: BlockCount, sg: SgList<SG>) -> Self {
        Self {
            tag,
            operation,
            lba,
            blocks,
            flags: RequestFlags::empty(),
            sg,
        }
    }

    /// A read of `blocks` blocks at `lba` into `sg`.
    pub fn read(tag: Tag, lba: Lba, blocks: BlockCount, sg: SgList<SG>) -> Self {
        Self::with(tag, Operation::Read, lba, blocks, sg)
    }

    /// A write of `sg` to `blocks` blocks at `lba`.
    pub fn write(tag: Tag, lba: Lba, blocks: BlockCount, sg: SgList<SG>) -> Self {
        Self::with(tag, Operation::Write, lba, blocks, sg)
    }

    /// A cache flush.
    pub fn flush(tag: Tag) -> Self {
        Self::with(tag, Operation::Flush, Lba(0), BlockCount(0), SgList::new())
    }

    /// A deallocation of `blocks` blocks at `lba`.
    pub fn unmap(tag: Tag, lba: Lba, blocks: BlockCount) -> Self {
        Self::with(tag, Operation::Unmap, lba, blocks, SgList::new())
    }

    /// Zeroing of `blocks` blocks at `lba`.
    pub fn write_zeroes(tag: Tag, lba: Lba, blocks: BlockCount) -> Self {
        Self::with(tag, Operation::WriteZeroes, lba, blocks, SgList::new())
    }

    /// A compare-and-write of `blocks` blocks at `lba`; `sg` holds the expected bytes followed
    /// by the new bytes.
    pub fn compare_and_write(tag: Tag, lba: Lba, blocks: BlockCount, sg: SgList<SG>) -> Self {
        Self::with(tag, Operation::CompareAndWrite, lba, blocks, sg)
    }

    /// The same request with `flags` set.
    pub fn with_flags(mut self, flags: RequestFlags) -> Self {
        self.flags = flags;
        self
    }

    /// The number of bytes the SG list must describe for this request on `block_size`-byte
    /// blocks, or `None` on overflow.
    pub fn expected_data_len(&self, block_size: u32) -> Option<u64> {
        let range = self.blocks.checked_bytes(block_size)?;
        match self.operation {
            Operation::Read | Operation::Write => Some(range),
            Operation::CompareAndWrite => range.checked_mul(2),
            Operation::Flush | Operation::Unmap | Operation::WriteZeroes => Some(0),
        }
    }

    /// The block after the last one of the range, or `None` on overflow.
    pub fn end_lba(&self) -> Option<Lba> {
        self.lba.checked_add(self.blocks)
    }

    /// Checks the request against a device's geometry, as a device does before executing it:
    /// operation supported, data length matching the range, range inside the device, transfer
    /// not longer than the device accepts, no write to a read-only device.
    pub fn validate(&self, geometry: &Geometry) -> Result<(), BlockError> {
        let features = geometry.features;
        let supported = match self.operation {
            Operation::Read | Operation::Write | Operation::Flush => true,
            Operation::Unmap => features.contains(DeviceFeatures::UNMAP),
            Operation::WriteZeroes => features.contains(DeviceFeatures::WRITE_ZEROES),
            Operation::CompareAndWrite => features.contains(DeviceFeatures::COMPARE_AND_WRITE),
        };
        if !supported {
            return Err(BlockError::new(ErrorKind::Unsupported));
        }
        if self.operation.is_write() && features.contains(DeviceFeatures::READ_ONLY) {
            return Err(BlockError::new(ErrorKind::WriteProtected));
        }
        if self.expected_data_len(geometry.block_size) != Some(self.sg.total_len()) {
            return Err(BlockError::new(ErrorKind::InvalidRequest));
        }
        if self.operation == Operation::Flush {
            return Ok(());
        }
        let limited = matches!(
            self.operation,
            Operation::Read | Operation::Write | Operation::CompareAndWrite
        );
        if limited && self.blocks.0 > geometry.max_transfer_blocks {
            return Err(BlockError::new(ErrorKind::InvalidRequest));
        }
        match self.end_lba() {
            Some(end) if end.0 <= geometry.block_count => Ok(()),
            _ => Err(BlockError::with_info(ErrorKind::OutOfRange, self.lba.0)),
        }
    }
}

/// What went wrong with a request, as a category a layer above can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The medium could not be read or written (unrecovered read error, write fault).
    MediumError,
    /// The range lies (partly) outside the device.
    OutOfRange,
    /// The device cannot serve I/O now (spinning up, passive path, transitioning).
    NotReady,
    /// The device is busy; retry later.
    Busy,
    /// The device's queue is full (TASK SET FULL); retry later.
    QueueFull,
    /// The request did not complete in time.
    Timeout,
    /// A compare-and-write found different data; nothing was written.
    Miscompare,
    /// The device does not support the operation.
    Unsupported,
    /// The device is gone for good (permanent device loss).
    DeviceLost,
    /// No path to the device is usable (all paths down).
    NoPath,
    /// The request was aborted (reset, task abort, torn by a failure).
    Aborted,
    /// The request is malformed: a data length that does not match the range, a transfer
    /// longer than the device accepts.
    InvalidRequest,
    /// An address of the SG list is outside the address space.
    MemoryFault,
    /// The device is write protected.
    WriteProtected,
    /// Another initiator holds a reservation on the device.
    ReservationConflict,
    /// The transport between initiator and device failed (link down, lost frame).
    Transport,
}

impl ErrorKind {
    /// Whether retrying the same request later, unchanged, may succeed.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::NotReady
                | ErrorKind::Busy
                | ErrorKind::QueueFull
                | ErrorKind::Timeout
                | ErrorKind::Aborted
                | ErrorKind::Transport
        )
    }

    /// A short name for messages and statistics.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::MediumError => "medium error",
            ErrorKind::OutOfRange => "out of range",
            ErrorKind::NotReady => "not ready",
            ErrorKind::Busy => "busy",
            ErrorKind::QueueFull => "queue full",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Miscompare => "miscompare",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::DeviceLost => "device lost",
            ErrorKind::NoPath => "no path",
            ErrorKind::Aborted => "aborted",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::MemoryFault => "memory fault",
            ErrorKind::WriteProtected => "write protected",
            ErrorKind::ReservationConflict => "reservation conflict",
            ErrorKind::Transport => "transport error",
        }
    }
}

/// The error a request completed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BlockError {
    kind: ErrorKind,
    info: Option<u64>,
}

impl BlockError {
    /// An error of `kind` with no further information.
    pub const fn new(kind: ErrorKind) -> Self {
        Self { kind, info: None }
    }

    /// An error of `kind` with a number that locates it, like the INFORMATION field of SCSI
    /// sense data: the offending LBA for [`ErrorKind::OutOfRange`] and
    /// [`ErrorKind::MediumError`], the byte offset of the first differing byte for
    /// [`ErrorKind::Miscompare`].
    pub const fn with_info(kind: ErrorKind, info: u64) -> Self {
        Self {
            kind,
            info: Some(info),
        }
    }

    /// The category.
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The locating number, if any (see [`BlockError::with_info`]).
    pub const fn info(&self) -> Option<u64> {
        self.info
    }
}

impl From<ErrorKind> for BlockError {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.info {
            Some(info) => write!(f, "{} (at {})", self.kind.name(), info),
            None => f.write_str(self.kind.name()),
        }
    }
}

impl core::error::Error for BlockError {}

/// The outcome of one request, handed out exactly once per submitted tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Completion {
    /// The tag of the request.
    pub tag: Tag,
    /// Success, or the error.
    pub result: Result<(), BlockError>,
}

impl Completion {
    /// A successful completion of `tag`.
    pub const fn ok(tag: Tag) -> Self {
        Self {
            tag,
            result: Ok(()),
        }
    }

    /// A failed completion of `tag`.
    pub const fn err(tag: Tag, error: BlockError) -> Self {
        Self {
            tag,
            result: Err(error),
        }
    }

    /// Whether the request succeeded.
    pub const fn is_ok(&self) -> bool {
        self.result.is_ok()
    }
}
