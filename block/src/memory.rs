//! The address space that requests point into.
//!
//! Guest memory and the host's own buffers are regions of one address space, as they are for a
//! DMA-capable HBA. Only the device at the bottom of a stack touches data, through [`Memory`];
//! layers in between translate offsets and split [`SgList`]s without copying.

use core::fmt;

use crate::addr::MemAddr;
use crate::sg::SgList;

/// Why an access to the address space was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MemoryError {
    /// Part of the range `[addr, addr + len)` lies outside every region, or the range spans two
    /// regions (which are not guaranteed to be contiguous on the host side).
    Unmapped {
        /// The start of the refused range.
        addr: MemAddr,
        /// Its length in bytes.
        len: u64,
    },
    /// The range is mapped but may not be written.
    ReadOnly {
        /// The start of the refused range.
        addr: MemAddr,
    },
    /// A region added to a map overlaps one already there, or wraps the address space.
    Overlap {
        /// The base of the refused region.
        base: MemAddr,
    },
    /// The map already holds as many regions as it can.
    TooManyRegions,
    /// A buffer passed in does not have the length of the scatter-gather list it is copied to or
    /// from.
    LengthMismatch,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::Unmapped { addr, len } => {
                write!(f, "memory range {addr} + {len} bytes is not mapped")
            }
            MemoryError::ReadOnly { addr } => write!(f, "memory at {addr} is read-only"),
            MemoryError::Overlap { base } => write!(f, "memory region at {base} overlaps another"),
            MemoryError::TooManyRegions => f.write_str("memory map is full"),
            MemoryError::LengthMismatch => {
                f.write_str("buffer length differs from the scatter-gather list length")
            }
        }
    }
}

impl core::error::Error for MemoryError {}

/// An address space of byte regions, reached by address.
///
/// Implementations must refuse, with an error, every access that is not wholly inside one
/// region; no access may panic.
pub trait Memory {
    /// The bytes `[addr, addr + len)`, which must lie inside one region.
    fn slice(&self, addr: MemAddr, len: usize) -> Result<&[u8], MemoryError>;

    /// The bytes `[addr, addr + len)` for writing, which must lie inside one writable region.
    fn slice_mut(&mut self, addr: MemAddr, len: usize) -> Result<&mut [u8], MemoryError>;

    /// Copies `buf.len()` bytes from `addr` into `buf`.
    fn read(&self, addr: MemAddr, buf: &mut [u8]) -> Result<(), MemoryError> {
        buf.copy_from_slice(self.slice(addr, buf.len())?);
        Ok(())
    }

    /// Copies `data` to `addr`.
    fn write(&mut self, addr: MemAddr, data: &[u8]) -> Result<(), MemoryError> {
        self.slice_mut(addr, data.len())?.copy_from_slice(data);
        Ok(())
    }

    /// Gathers the bytes an SG list describes into `buf`, whose length must equal the list's.
    fn gather<const N: usize>(&self, sg: &SgList<N>, buf: &mut [u8]) -> Result<(), MemoryError>
    where
        Self: Sized,
    {
        gather(self, sg, buf)
    }

    /// Scatters `data` into the bytes an SG list describes; lengths must be equal.
    fn scatter<const N: usize>(&mut self, sg: &SgList<N>, data: &[u8]) -> Result<(), MemoryError>
    where
        Self: Sized,
    {
        scatter(self, sg, data)
    }
}

/// Gathers the bytes `sg` describes into `buf` (lengths must be equal). Works on `dyn Memory`.
///
/// Every segment is checked before any byte moves, so a refused list leaves `buf` untouched.
pub fn gather<const N: usize, M: Memory + ?Sized>(
    memory: &M,
    sg: &SgList<N>,
    buf: &mut [u8],
) -> Result<(), MemoryError> {
    if sg.total_len() != buf.len() as u64 {
        return Err(MemoryError::LengthMismatch);
    }
    for segment in sg.segments() {
        memory.slice(segment.addr, segment.len as usize)?;
    }
    let mut at = 0usize;
    for segment in sg.segments() {
        let len = segment.len as usize;
        buf[at..at + len].copy_from_slice(memory.slice(segment.addr, len)?);
        at += len;
    }
    Ok(())
}

/// Scatters `data` into the bytes `sg` describes (lengths must be equal). Works on `dyn Memory`.
///
/// Every segment is checked before any byte moves, so a refused list changes no memory.
pub fn scatter<const N: usize, M: Memory + ?Sized>(
    memory: &mut M,
    sg: &SgList<N>,
    data: &[u8],
) -> Result<(), MemoryError> {
    if sg.total_len() != data.len() as u64 {
        return Err(MemoryError::LengthMismatch);
    }
    for segment in sg.segments() {
        memory.slice_mut(segment.addr, segment.len as usize)?;
    }
    let mut at = 0usize;
    for segment in sg.segments() {
        let len = segment.len as usize;
        memory
            .slice_mut(segment.addr, len)?
            .copy_from_slice(&data[at..at + len]);
        at += len;
    }
    Ok(())
}

impl<M: Memory + ?Sized> Memory for &mut M {
    fn slice(&self, addr: MemAddr, len: usize) -> Result<&[u8], MemoryError> {
        (**self).slice(addr, len)
    }

    fn slice_mut(&mut self, addr: MemAddr, len: usize) -> Result<&mut [u8], MemoryError> {
        (**self).slice_mut(addr, len)
    }
}

struct Region<'a> {
    base: MemAddr,
    bytes: RegionBytes<'a>,
}

enum RegionBytes<'a> {
    Writable(&'a mut [u8]),
    ReadOnly(&'a [u8]),
}

impl Region<'_> {
    fn len(&self) -> u64 {
        match &self.bytes {
            RegionBytes::Writable(b) => b.len() as u64,
            RegionBytes::ReadOnly(b) => b.len() as u64,
        }
    }

    /// The offset of `[addr, addr + len)` in this region, if it lies wholly inside.
    fn offset_of(&self, addr: MemAddr, len: usize) -> Option<usize> {
        let offset = addr.0.checked_sub(self.base.0)?;
        let end = offset.checked_add(len as u64)?;
        (end <= self.len()).then_some(offset as usize)
    }
}

/// An address space of up to `R` borrowed byte regions, each placed at a base address.
///
/// Accesses are bounds-checked: a range outside every region, or spanning two regions, is
/// refused with [`MemoryError::Unmapped`].
///
/// ```
/// use block::{MemAddr, Memory, MemoryRegions};
///
/// let mut guest = [0u8; 4096];
/// let mut host = [0u8; 512];
/// let mut memory = MemoryRegions::<2>::new();
/// memory.add(MemAddr(0x10_0000), &mut guest)?;
/// memory.add(MemAddr(0xF000_0000), &mut host)?;
/// memory.write(MemAddr(0x10_0010), b"hello")?;
/// let mut back = [0u8; 5];
/// memory.read(MemAddr(0x10_0010), &mut back)?;
/// assert_eq!(&back, b"hello");
/// assert!(memory.read(MemAddr(0x10_0FFE), &mut back).is_err()); // runs past the region
/// # Ok::<(), block::MemoryError>(())
/// ```
pub struct MemoryRegions<'a, const R: usize> {
    regions: heapless::Vec<Region<'a>, R>,
}

impl<const R: usize> Default for MemoryRegions<'_, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, const R: usize> MemoryRegions<'a, R> {
    /// An empty address space.
    pub const fn new() -> Self {
        Self {
            regions: heapless::Vec::new(),
        }
    }

    /// Maps the writable `bytes` at `base`.
    pub fn add(&mut self, base: MemAddr, bytes: &'a mut [u8]) -> Result<(), MemoryError> {
        self.insert(Region {
            base,
            bytes: RegionBytes::Writable(bytes),
        })
    }

    /// Maps the read-only `bytes` at `base`; writes there fail with [`MemoryError::ReadOnly`].
    pub fn add_read_only(&mut self, base: MemAddr, bytes: &'a [u8]) -> Result<(), MemoryError> {
        self.insert(Region {
            base,
            bytes: RegionBytes::ReadOnly(bytes),
        })
    }

    fn insert(&mut self, region: Region<'a>) -> Result<(), MemoryError> {
        let base = region.base;
        let end = base
            .0
            .checked_add(region.len())
            .ok_or(MemoryError::Overlap { base })?;
        for other in self.regions.iter() {
            let other_end = other.base.0 + other.len();
            if base.0 < other_end && other.base.0 < end {
                return Err(MemoryError::Overlap { base });
            }
        }
        self.regions
            .push(region)
            .map_err(|_| MemoryError::TooManyRegions)
    }

    /// The number of mapped regions.
    pub fn region_count(&self) -> usize {
        self.regions.len()
    }
}

impl<const R: usize> Memory for MemoryRegions<'_, R> {
    fn slice(&self, addr: MemAddr, len: usize) -> Result<&[u8], MemoryError> {
        for region in self.regions.iter() {
            if let Some(offset) = region.offset_of(addr, len) {
                let bytes: &[u8] = match &region.bytes {
                    RegionBytes::Writable(b) => b,
                    RegionBytes::ReadOnly(b) => b,
                };
                return Ok(&bytes[offset..offset + len]);
            }
        }
        Err(MemoryError::Unmapped {
            addr,
            len: len as u64,
        })
    }

    fn slice_mut(&mut self, addr: MemAddr, len: usize) -> Result<&mut [u8], MemoryError> {
        for region in self.regions.iter_mut() {
            if let Some(offset) = region.offset_of(addr, len) {
                return match &mut region.bytes {
                    RegionBytes::Writable(b) => Ok(&mut b[offset..offset + len]),
                    RegionBytes::ReadOnly(_) => Err(MemoryError::ReadOnly { addr }),
                };
            }
        }
        Err(MemoryError::Unmapped {
            addr,
            len: len as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sg::Segment;

    #[test]
    fn overlapping_regions_are_refused() {
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        let mut c = [0u8; 16];
        let mut memory = MemoryRegions::<4>::new();
        memory.add(MemAddr(100), &mut a).unwrap();
        assert_eq!(
            memory.add(MemAddr(110), &mut b),
            Err(MemoryError::Overlap { base: MemAddr(110) })
        );
        assert!(memory.add(MemAddr(u64::MAX - 4), &mut c).is_err());
    }

    #[test]
    fn access_across_two_adjacent_regions_is_refused() {
        let mut a = [1u8; 16];
        let mut b = [2u8; 16];
        let mut memory = MemoryRegions::<2>::new();
        memory.add(MemAddr(0), &mut a).unwrap();
        memory.add(MemAddr(16), &mut b).unwrap();
        assert!(memory.slice(MemAddr(8), 16).is_err());
        assert_eq!(memory.slice(MemAddr(16), 16).unwrap(), &[2u8; 16]);
    }

    #[test]
    fn huge_addresses_do_not_panic() {
        let mut a = [0u8; 16];
        let mut memory = MemoryRegions::<1>::new();
        memory.add(MemAddr(0), &mut a).unwrap();
        assert!(memory.slice(MemAddr(u64::MAX), usize::MAX).is_err());
        assert!(memory.slice_mut(MemAddr(8), usize::MAX).is_err());
    }

    #[test]
    fn read_only_regions_refuse_writes() {
        let a = [7u8; 8];
        let mut memory = MemoryRegions::<1>::new();
        memory.add_read_only(MemAddr(0), &a).unwrap();
        assert_eq!(
            memory.write(MemAddr(0), &[1]),
            Err(MemoryError::ReadOnly { addr: MemAddr(0) })
        );
        let mut out = [0u8; 2];
        memory.read(MemAddr(6), &mut out).unwrap();
        assert_eq!(out, [7, 7]);
    }

    #[test]
    fn gather_and_scatter_follow_segment_order() {
        let mut a = [0u8; 32];
        let mut memory = MemoryRegions::<1>::new();
        memory.add(MemAddr(0), &mut a).unwrap();
        let sg = SgList::<2>::from_segments(&[
            Segment::new(MemAddr(20), 3),
            Segment::new(MemAddr(2), 2),
        ])
        .unwrap();
        memory.scatter(&sg, b"abcde").unwrap();
        let mut out = [0u8; 5];
        memory.gather(&sg, &mut out).unwrap();
        assert_eq!(&out, b"abcde");
        assert_eq!(memory.slice(MemAddr(2), 2).unwrap(), b"de");
        let bad = SgList::<2>::from_segments(&[
            Segment::new(MemAddr(0), 2),
            Segment::new(MemAddr(31), 2),
        ])
        .unwrap();
        assert!(memory.scatter(&bad, b"zzzz").is_err());
        assert_eq!(
            memory.slice(MemAddr(0), 2).unwrap(),
            &[0, 0],
            "refused scatter moved no byte"
        );
    }
}
