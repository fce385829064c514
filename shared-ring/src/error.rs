//! Error values: a full or empty ring, a corrupted peer index, a mismatched layout.

use core::fmt;

/// What went wrong, without the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No free slot: the consumer has not released enough (back-pressure).
    Full,
    /// No item to take.
    Empty,
    /// The other side published an index that no correct peer can produce.
    Corrupted,
}

/// The other side published an impossible index (as a buggy or malicious peer sharing the
/// memory could). The handle that saw it is poisoned: every later operation on it fails with
/// the same value, and nothing outside the ring's own slots was ever touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Corrupted {
    /// Which index was bad: the consumer's `head` (seen by the producer) or the producer's
    /// `tail` (seen by the consumer).
    pub index: IndexKind,
    /// The value read from shared memory.
    pub found: u32,
    /// The smallest acceptable value (free-running, wrapping `u32`).
    pub low: u32,
    /// The largest acceptable value; the acceptable range is `low..=high`, wrapping.
    pub high: u32,
}

/// The two indices of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IndexKind {
    /// The producer's index: the next slot it will write.
    Tail,
    /// The consumer's index: the next slot it will read.
    Head,
}

impl fmt::Display for Corrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shared ring corrupted: {:?} index {} outside {}..={}",
            self.index, self.found, self.low, self.high
        )
    }
}

impl core::error::Error for Corrupted {}

/// Why [`Producer::push`](crate::Producer::push) refused an item. The item is handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushError<T> {
    /// The ring is full.
    Full(T),
    /// The consumer's index is corrupted; the producer is poisoned.
    Corrupted(T, Corrupted),
}

impl<T> PushError<T> {
    /// The kind of failure.
    pub const fn kind(&self) -> ErrorKind {
        match self {
            Self::Full(_) => ErrorKind::Full,
            Self::Corrupted(..) => ErrorKind::Corrupted,
        }
    }

    /// The refused item.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(item) | Self::Corrupted(item, _) => item,
        }
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("shared ring full"),
            Self::Corrupted(_, c) => c.fmt(f),
        }
    }
}

impl<T: fmt::Debug> core::error::Error for PushError<T> {}

/// Why [`Consumer::pop`](crate::Consumer::pop) returned no item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PopError {
    /// The ring is empty.
    Empty,
    /// The producer's index is corrupted; the consumer is poisoned.
    Corrupted(Corrupted),
}

impl PopError {
    /// The kind of failure.
    pub const fn kind(&self) -> ErrorKind {
        match self {
            Self::Empty => ErrorKind::Empty,
            Self::Corrupted(_) => ErrorKind::Corrupted,
        }
    }
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("shared ring empty"),
            Self::Corrupted(c) => c.fmt(f),
        }
    }
}

impl core::error::Error for PopError {}

impl From<Corrupted> for PopError {
    fn from(c: Corrupted) -> Self {
        Self::Corrupted(c)
    }
}

/// Why a ring in a raw region could not be attached: the header does not describe the ring
/// type the caller asked for (or the region cannot hold it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayoutError {
    /// The region is shorter than the ring.
    TooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        len: usize,
    },
    /// The region does not start on the ring's alignment ([`crate::layout::ALIGN`]).
    Misaligned,
    /// No ring header (or one not yet fully initialised): the magic number is wrong.
    BadMagic(u32),
    /// The layout version differs from [`crate::layout::VERSION`].
    Version(u32),
    /// The capacity differs.
    Capacity(u32),
    /// The element size differs.
    ElementSize(u32),
    /// The element alignment differs.
    ElementAlign(u32),
    /// The offset of the slot array or the total size differs (a different layout).
    Geometry,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooSmall { needed, len } => {
                write!(f, "region of {len} bytes too small for a ring of {needed}")
            }
            Self::Misaligned => f.write_str("region misaligned for a shared ring"),
            Self::BadMagic(m) => write!(f, "bad shared-ring magic {m:#010x}"),
            Self::Version(v) => write!(f, "unsupported shared-ring layout version {v}"),
            Self::Capacity(c) => write!(f, "shared-ring capacity {c} does not match"),
            Self::ElementSize(s) => write!(f, "shared-ring element size {s} does not match"),
            Self::ElementAlign(a) => write!(f, "shared-ring element alignment {a} does not match"),
            Self::Geometry => f.write_str("shared-ring slot offset or size does not match"),
        }
    }
}

impl core::error::Error for LayoutError {}

/// The side asked for has already been handed out (and not dropped since).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlreadyClaimed;

impl fmt::Display for AlreadyClaimed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shared-ring side already claimed")
    }
}

impl core::error::Error for AlreadyClaimed {}
