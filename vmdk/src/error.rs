//! The error type of the crate.

use core::fmt;

use block::{BlockError, DriveError, ErrorKind as BlockErrorKind, MemoryError};

/// What went wrong, as a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A descriptor line could not be parsed, or a required key is missing.
    BadDescriptor,
    /// A `createType` or extent type that the format does not define.
    UnknownType,
    /// A binary header (sparse `KDMV`, `COWD`, marker) is malformed.
    BadHeader,
    /// A grain directory or grain table entry points outside the file or overlaps metadata.
    BadMetadata,
    /// A size or offset is absurd (overflow, zero grain, capacity beyond the limits).
    BadSize,
    /// A fixed capacity of this crate (lines, extents, chain depth, cache) is too small.
    CapacityExceeded,
    /// A buffer given to the crate is too small.
    BufferTooSmall,
    /// The format is valid but this crate does not implement it.
    Unsupported,
    /// A parent's CID differs from the child's `parentCID`.
    CidMismatch,
    /// A parent chain is longer than allowed, or loops.
    ChainTooLong,
    /// A compressed grain could not be inflated.
    Inflate,
    /// An I/O on the underlying device failed.
    Io,
    /// An access to the address space failed.
    Memory,
    /// The disk or extent is read-only.
    ReadOnly,
}

/// An error, with a number that locates it where one helps (a line, an offset, a grain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    info: u64,
}

impl Error {
    /// An error of `kind` located by `info`.
    pub const fn new(kind: ErrorKind, info: u64) -> Self {
        Self { kind, info }
    }

    /// The category.
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The locating number (line number, byte offset, grain index; 0 if none).
    pub const fn info(&self) -> u64 {
        self.info
    }

    /// The block-layer error a request completes with for this error.
    pub fn to_block_error(self) -> BlockError {
        let kind = match self.kind {
            ErrorKind::ReadOnly => BlockErrorKind::WriteProtected,
            ErrorKind::Unsupported => BlockErrorKind::Unsupported,
            ErrorKind::Memory => BlockErrorKind::MemoryFault,
            ErrorKind::CapacityExceeded => BlockErrorKind::QueueFull,
            _ => BlockErrorKind::MediumError,
        };
        BlockError::with_info(kind, self.info)
    }
}

pub(crate) const fn err(kind: ErrorKind, info: u64) -> Error {
    Error::new(kind, info)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vmdk: {:?} (at {})", self.kind, self.info)
    }
}

impl core::error::Error for Error {}

impl From<MemoryError> for Error {
    fn from(_: MemoryError) -> Self {
        err(ErrorKind::Memory, 0)
    }
}

impl From<DriveError> for Error {
    fn from(_: DriveError) -> Self {
        err(ErrorKind::Io, 0)
    }
}

impl From<BlockError> for Error {
    fn from(e: BlockError) -> Self {
        match e.kind() {
            BlockErrorKind::WriteProtected => err(ErrorKind::ReadOnly, e.info().unwrap_or(0)),
            BlockErrorKind::MemoryFault => err(ErrorKind::Memory, e.info().unwrap_or(0)),
            _ => err(ErrorKind::Io, e.info().unwrap_or(0)),
        }
    }
}

/// The crate's result type.
pub type Result<T> = core::result::Result<T, Error>;
