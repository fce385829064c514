//! Errors of file system operations.

use core::fmt;

/// What went wrong, as a category a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FsErrorKind {
    /// No entry of that name, or no volume of that label or UUID.
    NotFound,
    /// A path component, or the node asked to list, is not a directory.
    NotADirectory,
    /// The node is a directory where a file was expected.
    IsADirectory,
    /// The node is not a symbolic link.
    NotASymlink,
    /// The node is not a raw device mapping.
    NotAnRdm,
    /// On-disk metadata is inconsistent: bad magic, an address of the wrong type or out of
    /// range, a size that cannot be, a chain that does not end.
    Corrupt,
    /// The format uses a feature this implementation does not read.
    Unsupported,
    /// The device below failed a request.
    Io(block::ErrorKind),
    /// A name or path is longer than the limits allow.
    NameTooLong,
    /// Too many symbolic links were followed while resolving a path.
    TooManyLinks,
    /// A fixed-capacity table (mounts, open files, requests) is full.
    NoSpace,
    /// A volume with the same label or UUID is already mounted.
    AlreadyMounted,
    /// The file handle is not open.
    BadHandle,
    /// The request is malformed (unaligned, past the end of the file, SG length mismatch).
    InvalidRequest,
    /// The caller's metadata buffer is too small or not mapped.
    Buffer,
}

impl FsErrorKind {
    /// A short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            FsErrorKind::NotFound => "not found",
            FsErrorKind::NotADirectory => "not a directory",
            FsErrorKind::IsADirectory => "is a directory",
            FsErrorKind::NotASymlink => "not a symbolic link",
            FsErrorKind::NotAnRdm => "not a raw device mapping",
            FsErrorKind::Corrupt => "corrupt metadata",
            FsErrorKind::Unsupported => "unsupported",
            FsErrorKind::Io(_) => "I/O error",
            FsErrorKind::NameTooLong => "name too long",
            FsErrorKind::TooManyLinks => "too many symbolic links",
            FsErrorKind::NoSpace => "table full",
            FsErrorKind::AlreadyMounted => "already mounted",
            FsErrorKind::BadHandle => "bad file handle",
            FsErrorKind::InvalidRequest => "invalid request",
            FsErrorKind::Buffer => "metadata buffer unusable",
        }
    }
}

/// An error naming its category, the structure involved and the address where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FsError {
    kind: FsErrorKind,
    structure: &'static str,
    at: u64,
}

impl FsError {
    /// An error of `kind` about `structure` (a short name such as `"file descriptor"`) found at
    /// `at` (a volume offset, an on-disk address or a file offset, as the structure implies).
    pub const fn new(kind: FsErrorKind, structure: &'static str, at: u64) -> Self {
        Self {
            kind,
            structure,
            at,
        }
    }

    /// Corrupt metadata in `structure` at `at`.
    pub const fn corrupt(structure: &'static str, at: u64) -> Self {
        Self::new(FsErrorKind::Corrupt, structure, at)
    }

    /// The category.
    pub const fn kind(&self) -> FsErrorKind {
        self.kind
    }

    /// The structure the error is about.
    pub const fn structure(&self) -> &'static str {
        self.structure
    }

    /// Where it was found.
    pub const fn at(&self) -> u64 {
        self.at
    }

    /// The closest block-layer error kind, for completions of file requests.
    pub const fn block_kind(&self) -> block::ErrorKind {
        match self.kind {
            FsErrorKind::Io(kind) => kind,
            FsErrorKind::InvalidRequest | FsErrorKind::BadHandle => {
                block::ErrorKind::InvalidRequest
            }
            FsErrorKind::Unsupported => block::ErrorKind::Unsupported,
            FsErrorKind::Buffer => block::ErrorKind::MemoryFault,
            _ => block::ErrorKind::MediumError,
        }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FsErrorKind::Io(kind) => write!(
                f,
                "{}: {} reading {} at {:#x}",
                self.kind.name(),
                kind.name(),
                self.structure,
                self.at
            ),
            _ => write!(
                f,
                "{}: {} at {:#x}",
                self.kind.name(),
                self.structure,
                self.at
            ),
        }
    }
}

impl core::error::Error for FsError {}
