//! Scatter-gather lists: where in memory the bytes of a request live.
//!
//! A list is a fixed-capacity sequence of [`Segment`]s (address, length). Layers split and slice
//! lists to route parts of a request to different places below; no operation here touches the
//! bytes themselves.

use core::fmt;

use crate::addr::MemAddr;
use crate::request::DEFAULT_SG_CAPACITY;

/// One contiguous run of bytes in the address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Segment {
    /// Where the run starts.
    pub addr: MemAddr,
    /// How many bytes it holds.
    pub len: u32,
}

impl Segment {
    /// A segment of `len` bytes at `addr`.
    #[inline]
    pub const fn new(addr: MemAddr, len: u32) -> Self {
        Self { addr, len }
    }

    /// The address one past the last byte, or `None` if the segment wraps the address space.
    #[inline]
    pub const fn checked_end(&self) -> Option<MemAddr> {
        self.addr.checked_add(self.len as u64)
    }
}

/// Why a scatter-gather operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SgError {
    /// The result would need more segments than the list can hold.
    CapacityExceeded,
    /// An offset or length lies past the end of the list.
    OutOfRange,
    /// A segment wraps around the end of the address space, or the total length overflows.
    AddressOverflow,
}

impl fmt::Display for SgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SgError::CapacityExceeded => "scatter-gather list capacity exceeded",
            SgError::OutOfRange => "offset or length past the end of the scatter-gather list",
            SgError::AddressOverflow => "scatter-gather segment wraps the address space",
        })
    }
}

impl core::error::Error for SgError {}

/// A scatter-gather list of at most `N` segments.
///
/// Invariants, kept by every constructor and operation: no segment is empty, no segment wraps
/// the address space, and the total length is the sum of the segment lengths.
#[derive(Clone, PartialEq, Eq)]
pub struct SgList<const N: usize = DEFAULT_SG_CAPACITY> {
    segments: heapless::Vec<Segment, N>,
    total_len: u64,
}

impl<const N: usize> Default for SgList<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for SgList<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SgList")
            .field("total_len", &self.total_len)
            .field("segments", &self.segments.as_slice())
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl<const N: usize> defmt::Format for SgList<N> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "SgList {{ total_len: {}, segments: {} }}",
            self.total_len,
            self.segments.len()
        )
    }
}

impl<const N: usize> SgList<N> {
    /// The maximum number of segments.
    pub const CAPACITY: usize = N;

    /// An empty list.
    #[inline]
    pub const fn new() -> Self {
        Self {
            segments: heapless::Vec::new(),
            total_len: 0,
        }
    }

    /// A list of one segment of `len` bytes at `addr`.
    pub fn single(addr: MemAddr, len: u32) -> Result<Self, SgError> {
        let mut list = Self::new();
        list.push(Segment::new(addr, len))?;
        Ok(list)
    }

    /// A list holding `segments` in order (empty segments are dropped).
    pub fn from_segments(segments: &[Segment]) -> Result<Self, SgError> {
        let mut list = Self::new();
        for segment in segments {
            list.push(*segment)?;
        }
        Ok(list)
    }

    /// The segments, in order.
    #[inline]
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The total number of bytes the list describes.
    #[inline]
    pub const fn total_len(&self) -> u64 {
        self.total_len
    }

    /// Whether the list describes no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Removes every segment.
    pub fn clear(&mut self) {
        self.segments.clear();
        self.total_len = 0;
    }

    /// Appends a segment. An empty segment is accepted and ignored; a segment that continues the
    /// last one exactly is merged into it, so it takes no extra slot.
    pub fn push(&mut self, segment: Segment) -> Result<(), SgError> {
        if segment.len == 0 {
            return Ok(());
        }
        segment.checked_end().ok_or(SgError::AddressOverflow)?;
        let total_len = self
            .total_len
            .checked_add(segment.len as u64)
            .ok_or(SgError::AddressOverflow)?;
        if let Some(last) = self.segments.last_mut()
            && last.checked_end() == Some(segment.addr)
            && let Some(len) = last.len.checked_add(segment.len)
        {
            last.len = len;
            self.total_len = total_len;
            return Ok(());
        }
        self.segments
            .push(segment)
            .map_err(|_| SgError::CapacityExceeded)?;
        self.total_len = total_len;
        Ok(())
    }

    /// Appends every segment of `other` (concatenation).
    ///
    /// On error `self` is left unchanged.
    pub fn extend_from<const M: usize>(&mut self, other: &SgList<M>) -> Result<(), SgError> {
        let mut joined = self.clone();
        for segment in other.segments() {
            joined.push(*segment)?;
        }
        *self = joined;
        Ok(())
    }

    /// The part of the list from byte `offset`, `len` bytes long, as a new list. No data moves.
    pub fn slice(&self, offset: u64, len: u64) -> Result<Self, SgError> {
        let end = offset.checked_add(len).ok_or(SgError::OutOfRange)?;
        if end > self.total_len {
            return Err(SgError::OutOfRange);
        }
        let mut out = Self::new();
        if len == 0 {
            return Ok(out);
        }
        let mut segment_start = 0u64;
        for segment in self.segments.iter() {
            let segment_end = segment_start + segment.len as u64;
            if segment_end > offset && segment_start < end {
                let from = offset.max(segment_start);
                let to = end.min(segment_end);
                let skip = from - segment_start;
                // Both fit in u32: they are bounded by the segment's own u32 length.
                let piece = Segment::new(MemAddr(segment.addr.0 + skip), (to - from) as u32);
                // `out` can never need more segments than `self` has.
                out.push(piece)?;
            }
            if segment_end >= end {
                break;
            }
            segment_start = segment_end;
        }
        Ok(out)
    }

    /// Splits the list at byte `offset` into the part before and the part from there on.
    ///
    /// One pass over the segments; each half needs at most as many segments as `self` has.
    pub fn split_at(&self, offset: u64) -> Result<(Self, Self), SgError> {
        if offset > self.total_len {
            return Err(SgError::OutOfRange);
        }
        let mut head = Self::new();
        let mut tail = Self::new();
        let mut segment_start = 0u64;
        for segment in self.segments.iter() {
            let segment_end = segment_start + segment.len as u64;
            if segment_end <= offset {
                head.push_unmerged(*segment)?;
            } else if segment_start >= offset {
                tail.push_unmerged(*segment)?;
            } else {
                // The cut falls inside this segment; both parts fit in u32 as the segment does.
                let before = (offset - segment_start) as u32;
                head.push_unmerged(Segment::new(segment.addr, before))?;
                let rest = Segment::new(
                    MemAddr(segment.addr.0 + before as u64),
                    segment.len - before,
                );
                tail.push_unmerged(rest)?;
            }
            segment_start = segment_end;
        }
        Ok((head, tail))
    }

    /// Appends a non-empty segment taken from a valid list, without the merge check.
    fn push_unmerged(&mut self, segment: Segment) -> Result<(), SgError> {
        self.segments
            .push(segment)
            .map_err(|_| SgError::CapacityExceeded)?;
        self.total_len += segment.len as u64;
        Ok(())
    }

    /// The address of byte `offset` of the list, or `None` past its end.
    pub fn address_of(&self, offset: u64) -> Option<MemAddr> {
        let mut segment_start = 0u64;
        for segment in self.segments.iter() {
            let segment_end = segment_start + segment.len as u64;
            if offset < segment_end {
                return segment.addr.checked_add(offset - segment_start);
            }
            segment_start = segment_end;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(addr: u64, len: u32) -> Segment {
        Segment::new(MemAddr(addr), len)
    }

    #[test]
    fn push_merges_contiguous_and_skips_empty() {
        let mut list = SgList::<4>::new();
        list.push(seg(0x1000, 512)).unwrap();
        list.push(seg(0x1200, 512)).unwrap();
        list.push(seg(0x9000, 0)).unwrap();
        assert_eq!(list.segments(), &[seg(0x1000, 1024)]);
        assert_eq!(list.total_len(), 1024);
    }

    #[test]
    fn capacity_is_enforced() {
        let mut list = SgList::<2>::new();
        list.push(seg(0, 1)).unwrap();
        list.push(seg(10, 1)).unwrap();
        assert_eq!(list.push(seg(20, 1)), Err(SgError::CapacityExceeded));
        assert_eq!(list.total_len(), 2);
    }

    #[test]
    fn wrapping_segment_is_refused() {
        let mut list = SgList::<2>::new();
        assert_eq!(
            list.push(seg(u64::MAX - 1, 4)),
            Err(SgError::AddressOverflow)
        );
        assert!(list.is_empty());
    }

    #[test]
    fn split_inside_a_segment() {
        let list = SgList::<4>::from_segments(&[seg(0x1000, 100), seg(0x5000, 50)]).unwrap();
        let (head, tail) = list.split_at(120).unwrap();
        assert_eq!(head.segments(), &[seg(0x1000, 100), seg(0x5000, 20)]);
        assert_eq!(tail.segments(), &[seg(0x5014, 30)]);
        assert_eq!(list.split_at(151), Err(SgError::OutOfRange));
        assert_eq!(list.address_of(149), Some(MemAddr(0x5031)));
        assert_eq!(list.address_of(150), None);
    }

    #[test]
    fn slice_past_end_is_an_error() {
        let list = SgList::<4>::single(MemAddr(0), 10).unwrap();
        assert_eq!(list.slice(5, 6), Err(SgError::OutOfRange));
        assert_eq!(list.slice(u64::MAX, 2), Err(SgError::OutOfRange));
        assert!(list.slice(10, 0).unwrap().is_empty());
    }
}
