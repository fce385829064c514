//! Address and identifier newtypes with checked arithmetic.
//!
//! Every value that comes from a guest or from a disk passes through these types, so an overflow
//! becomes `None` at the place it happens instead of a wrapped address somewhere below.

use core::fmt;
use core::time::Duration;

macro_rules! newtype_common {
    ($name:ident, $inner:ty) => {
        impl $name {
            /// Wraps a raw value.
            #[inline]
            pub const fn new(value: $inner) -> Self {
                Self(value)
            }

            /// The raw value.
            #[inline]
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl From<$inner> for $name {
            #[inline]
            fn from(value: $inner) -> Self {
                Self(value)
            }
        }

        impl From<$name> for $inner {
            #[inline]
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

/// A logical block address in the address space of the device it is addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Lba(pub u64);
newtype_common!(Lba, u64);

impl Lba {
    /// `self + count`, or `None` on overflow.
    #[inline]
    pub const fn checked_add(self, count: BlockCount) -> Option<Lba> {
        match self.0.checked_add(count.0 as u64) {
            Some(v) => Some(Lba(v)),
            None => None,
        }
    }

    /// `self + blocks` for a 64-bit block distance, or `None` on overflow.
    #[inline]
    pub const fn checked_add_u64(self, blocks: u64) -> Option<Lba> {
        match self.0.checked_add(blocks) {
            Some(v) => Some(Lba(v)),
            None => None,
        }
    }

    /// The number of blocks from `earlier` to `self`, or `None` if `earlier` is after `self`.
    #[inline]
    pub const fn checked_distance_from(self, earlier: Lba) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }

    /// The byte offset of this block for `block_size`-byte blocks, or `None` on overflow.
    #[inline]
    pub const fn checked_byte_offset(self, block_size: u32) -> Option<u64> {
        self.0.checked_mul(block_size as u64)
    }
}

impl fmt::Display for Lba {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LBA {}", self.0)
    }
}

/// A number of blocks in one request.
///
/// 32 bits, like the transfer length of a SCSI READ (16): one request never moves more than
/// 2^32 - 1 blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BlockCount(pub u32);
newtype_common!(BlockCount, u32);

impl BlockCount {
    /// The byte length of this many `block_size`-byte blocks, or `None` on overflow.
    #[inline]
    pub const fn checked_bytes(self, block_size: u32) -> Option<u64> {
        (self.0 as u64).checked_mul(block_size as u64)
    }

    /// `self + other`, or `None` on overflow.
    #[inline]
    pub const fn checked_add(self, other: BlockCount) -> Option<BlockCount> {
        match self.0.checked_add(other.0) {
            Some(v) => Some(BlockCount(v)),
            None => None,
        }
    }

    /// `self - other`, or `None` if `other` is larger.
    #[inline]
    pub const fn checked_sub(self, other: BlockCount) -> Option<BlockCount> {
        match self.0.checked_sub(other.0) {
            Some(v) => Some(BlockCount(v)),
            None => None,
        }
    }

    /// Whether the count is zero.
    #[inline]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// A caller-chosen identifier of one outstanding request.
///
/// A device hands the tag back in the request's completion. Tags of requests that are
/// outstanding on one device at the same time must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Tag(pub u64);
newtype_common!(Tag, u64);

/// An address in the one address space that requests point into (guest-physical memory and the
/// host's own buffers), as an HBA sees it for DMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MemAddr(pub u64);
newtype_common!(MemAddr, u64);

impl MemAddr {
    /// `self + bytes`, or `None` on overflow.
    #[inline]
    pub const fn checked_add(self, bytes: u64) -> Option<MemAddr> {
        match self.0.checked_add(bytes) {
            Some(v) => Some(MemAddr(v)),
            None => None,
        }
    }
}

impl fmt::Display for MemAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A point in simulated or real time, in nanoseconds since an arbitrary epoch.
///
/// No layer reads a clock: the caller passes `now` into `submit` and `poll`, so a whole stack can
/// run under a deterministic simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(pub u64);
newtype_common!(Instant, u64);

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant(0);

    /// Nanoseconds since the epoch.
    #[inline]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + duration`, saturating at the end of time rather than wrapping.
    #[inline]
    pub fn saturating_add(self, duration: Duration) -> Instant {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    #[inline]
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lba_arithmetic_is_checked() {
        assert_eq!(Lba(10).checked_add(BlockCount(5)), Some(Lba(15)));
        assert_eq!(Lba(u64::MAX).checked_add(BlockCount(1)), None);
        assert_eq!(Lba(u64::MAX / 2).checked_byte_offset(4096), None);
        assert_eq!(Lba(3).checked_byte_offset(512), Some(1536));
        assert_eq!(Lba(3).checked_distance_from(Lba(5)), None);
        assert_eq!(Lba(5).checked_distance_from(Lba(3)), Some(2));
    }

    #[test]
    fn block_count_bytes_never_wrap() {
        assert_eq!(
            BlockCount(u32::MAX).checked_bytes(u32::MAX),
            Some(u32::MAX as u64 * u32::MAX as u64)
        );
        assert_eq!(BlockCount(8).checked_bytes(512), Some(4096));
        assert_eq!(BlockCount(1).checked_sub(BlockCount(2)), None);
    }

    #[test]
    fn instant_saturates() {
        let t = Instant(u64::MAX - 1).saturating_add(Duration::from_secs(1));
        assert_eq!(t, Instant(u64::MAX));
        assert_eq!(
            Instant(5).saturating_duration_since(Instant(9)),
            Duration::ZERO
        );
    }
}
