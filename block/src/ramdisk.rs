//! `RamDisk`: a block device over a borrowed byte buffer.

use core::time::Duration;

use crate::addr::Instant;
use crate::device::{BlockDevice, DeviceFeatures, Geometry, SubmitError, SubmitErrorKind};
use crate::memory::{Memory, MemoryError};
use crate::request::{
    BlockError, BlockRequest, Completion, DEFAULT_SG_CAPACITY, ErrorKind, Operation,
};
use crate::sg::SgList;

struct Pending<const SG: usize> {
    due: Instant,
    sequence: u64,
    request: BlockRequest<SG>,
}

/// Why a [`RamDisk`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RamDiskError {
    /// The block size is zero, or the buffer is not a whole number of blocks.
    BadBlockSize,
}

impl core::fmt::Display for RamDiskError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("block size is zero or does not divide the buffer length")
    }
}

impl core::error::Error for RamDiskError {}

/// A block device over a borrowed buffer, with up to `Q` outstanding requests.
///
/// A request submitted at `now` completes at `now + latency`; requests with the same due time
/// complete in submission order. A request takes effect when it completes, so among overlapping
/// writes the last one completed wins. Unmap and write-zeroes make blocks read as zeros
/// (LBPRZ); compare-and-write compares and writes atomically.
///
/// ```
/// use block::{BlockCount, BlockDevice, BlockRequest, Instant, Lba, MemAddr, MemoryRegions, RamDisk, SgList, Tag};
///
/// let mut disk_bytes = [0u8; 8 * 512];
/// let mut disk = RamDisk::<4>::new(&mut disk_bytes, 512).unwrap();
///
/// let mut buffer = *b"hello, block device!";
/// let mut page = [0u8; 512];
/// page[..buffer.len()].copy_from_slice(&buffer);
/// let mut memory = MemoryRegions::<1>::new();
/// memory.add(MemAddr(0x1000), &mut page).unwrap();
///
/// let sg = SgList::single(MemAddr(0x1000), 512).unwrap();
/// disk.submit(Instant(0), BlockRequest::write(Tag(1), Lba(3), BlockCount(1), sg)).unwrap();
/// let mut completed = None;
/// disk.poll(Instant(0), &mut memory, &mut |c| completed = Some(c));
/// assert!(completed.unwrap().is_ok());
/// assert_eq!(&disk.contents()[3 * 512..3 * 512 + 6], b"hello,");
/// ```
pub struct RamDisk<'a, const Q: usize, const SG: usize = DEFAULT_SG_CAPACITY> {
    storage: &'a mut [u8],
    geometry: Geometry,
    latency: Duration,
    pending: heapless::Vec<Pending<SG>, Q>,
    next_sequence: u64,
}

impl<'a, const Q: usize, const SG: usize> RamDisk<'a, Q, SG> {
    /// A disk of `storage.len() / block_size` blocks, completing requests at the next poll.
    pub fn new(storage: &'a mut [u8], block_size: u32) -> Result<Self, RamDiskError> {
        if block_size == 0 || !storage.len().is_multiple_of(block_size as usize) {
            return Err(RamDiskError::BadBlockSize);
        }
        let geometry = Geometry {
            block_size,
            block_count: (storage.len() / block_size as usize) as u64,
            max_transfer_blocks: u32::MAX,
            queue_depth: u16::try_from(Q).unwrap_or(u16::MAX),
            features: DeviceFeatures::UNMAP
                | DeviceFeatures::WRITE_ZEROES
                | DeviceFeatures::COMPARE_AND_WRITE
                | DeviceFeatures::UNMAP_READS_ZERO,
        };
        Ok(Self {
            storage,
            geometry,
            latency: Duration::ZERO,
            pending: heapless::Vec::new(),
            next_sequence: 0,
        })
    }

    /// The same disk, completing each request `latency` after its submission.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The same disk, refusing transfers longer than `blocks`.
    pub fn with_max_transfer(mut self, blocks: u32) -> Self {
        self.geometry.max_transfer_blocks = blocks;
        self
    }

    /// The same disk, with `features` replacing the default set.
    pub fn with_features(mut self, features: DeviceFeatures) -> Self {
        self.geometry.features = features;
        self
    }

    /// The bytes of the disk, for inspection.
    pub fn contents(&self) -> &[u8] {
        self.storage
    }

    /// The number of outstanding requests.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    fn next_due(&self) -> Option<usize> {
        self.pending
            .iter()
            .enumerate()
            .min_by_key(|(_, p)| (p.due, p.sequence))
            .map(|(index, _)| index)
    }

    fn execute(
        &mut self,
        request: &BlockRequest<SG>,
        memory: &mut dyn Memory,
    ) -> Result<(), BlockError> {
        request.validate(&self.geometry)?;
        let block_size = self.geometry.block_size;
        // validate() proved the range lies inside the storage, so these cannot overflow.
        let start = (request.lba.0 * block_size as u64) as usize;
        let len = request.blocks.0 as usize * block_size as usize;
        let range = &mut self.storage[start..start + len];
        match request.operation {
            Operation::Read => copy_to_memory(range, &request.sg, memory),
            Operation::Write => copy_from_memory(range, &request.sg, memory),
            Operation::Flush => Ok(()),
            Operation::Unmap | Operation::WriteZeroes => {
                range.fill(0);
                Ok(())
            }
            Operation::CompareAndWrite => {
                let len = len as u64;
                let expected = request
                    .sg
                    .slice(0, len)
                    .map_err(|_| ErrorKind::InvalidRequest)?;
                let new = request
                    .sg
                    .slice(len, len)
                    .map_err(|_| ErrorKind::InvalidRequest)?;
                if let Some(offset) = first_difference(range, &expected, memory)? {
                    return Err(BlockError::with_info(ErrorKind::Miscompare, offset));
                }
                copy_from_memory(range, &new, memory)
            }
        }
    }
}

fn memory_fault(_: MemoryError) -> BlockError {
    BlockError::new(ErrorKind::MemoryFault)
}

/// Copies `bytes` out to the memory `sg` describes (a device-to-memory DMA).
pub(crate) fn copy_to_memory<const SG: usize>(
    bytes: &[u8],
    sg: &SgList<SG>,
    memory: &mut dyn Memory,
) -> Result<(), BlockError> {
    crate::memory::scatter(memory, sg, bytes).map_err(memory_fault)
}

/// Copies the memory `sg` describes into `bytes` (a memory-to-device DMA). Every segment is
/// checked first, so a bad address leaves `bytes` unchanged.
pub(crate) fn copy_from_memory<const SG: usize>(
    bytes: &mut [u8],
    sg: &SgList<SG>,
    memory: &mut dyn Memory,
) -> Result<(), BlockError> {
    crate::memory::gather(memory, sg, bytes).map_err(memory_fault)
}

/// The offset of the first byte where `bytes` and the memory `sg` describes differ.
pub(crate) fn first_difference<const SG: usize>(
    bytes: &[u8],
    sg: &SgList<SG>,
    memory: &mut dyn Memory,
) -> Result<Option<u64>, BlockError> {
    let mut at = 0usize;
    for segment in sg.segments() {
        let len = segment.len as usize;
        let theirs = memory.slice(segment.addr, len).map_err(memory_fault)?;
        let ours = bytes.get(at..at + len).ok_or(ErrorKind::InvalidRequest)?;
        if let Some(i) = ours.iter().zip(theirs).position(|(a, b)| a != b) {
            return Ok(Some((at + i) as u64));
        }
        at += len;
    }
    Ok(None)
}

impl<const Q: usize, const SG: usize> BlockDevice<SG> for RamDisk<'_, Q, SG> {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn submit(&mut self, now: Instant, request: BlockRequest<SG>) -> Result<(), SubmitError<SG>> {
        if self.pending.iter().any(|p| p.request.tag == request.tag) {
            return Err(SubmitError::new(SubmitErrorKind::DuplicateTag, request));
        }
        let pending = Pending {
            due: now.saturating_add(self.latency),
            sequence: self.next_sequence,
            request,
        };
        match self.pending.push(pending) {
            Ok(()) => {
                self.next_sequence += 1;
                Ok(())
            }
            Err(pending) => Err(SubmitError::new(
                SubmitErrorKind::QueueFull,
                pending.request,
            )),
        }
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        // Each pass removes one request, so the loop ends within Q passes.
        while let Some(index) = self.next_due() {
            if self.pending[index].due > now {
                return Some(self.pending[index].due);
            }
            let pending = self.pending.swap_remove(index);
            let result = self.execute(&pending.request, memory);
            done(Completion {
                tag: pending.request.tag,
                result,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{BlockCount, Lba, MemAddr, Tag};
    use crate::memory::MemoryRegions;

    fn run(
        disk: &mut RamDisk<'_, 4>,
        memory: &mut dyn Memory,
        request: BlockRequest,
    ) -> Completion {
        disk.submit(Instant(0), request).unwrap();
        let mut out = None;
        disk.poll(Instant(0), memory, &mut |c| out = Some(c));
        out.unwrap()
    }

    #[test]
    fn latency_delays_completion() {
        let mut bytes = [0u8; 1024];
        let mut disk = RamDisk::<4>::new(&mut bytes, 512)
            .unwrap()
            .with_latency(Duration::from_micros(5));
        let mut page = [0u8; 512];
        let mut memory = MemoryRegions::<1>::new();
        memory.add(MemAddr(0), &mut page).unwrap();
        let sg = SgList::single(MemAddr(0), 512).unwrap();
        disk.submit(
            Instant(1000),
            BlockRequest::read(Tag(7), Lba(0), BlockCount(1), sg),
        )
        .unwrap();
        let mut seen = 0;
        assert_eq!(
            disk.poll(Instant(1000), &mut memory, &mut |_| seen += 1),
            Some(Instant(6000))
        );
        assert_eq!(seen, 0);
        assert_eq!(
            disk.poll(Instant(6000), &mut memory, &mut |_| seen += 1),
            None
        );
        assert_eq!(seen, 1);
    }

    #[test]
    fn queue_full_hands_the_request_back() {
        let mut bytes = [0u8; 512];
        let mut disk = RamDisk::<1>::new(&mut bytes, 512).unwrap();
        disk.submit(Instant(0), BlockRequest::flush(Tag(1)))
            .unwrap();
        let refused = disk
            .submit(Instant(0), BlockRequest::flush(Tag(2)))
            .unwrap_err();
        assert_eq!(refused.kind, SubmitErrorKind::QueueFull);
        assert_eq!(refused.request.tag, Tag(2));
    }

    #[test]
    fn out_of_range_and_bad_length_complete_with_errors() {
        let mut bytes = [0u8; 1024];
        let mut disk = RamDisk::<4>::new(&mut bytes, 512).unwrap();
        let mut page = [0u8; 1024];
        let mut memory = MemoryRegions::<1>::new();
        memory.add(MemAddr(0), &mut page).unwrap();
        let sg = SgList::single(MemAddr(0), 1024).unwrap();
        let c = run(
            &mut disk,
            &mut memory,
            BlockRequest::read(Tag(1), Lba(1), BlockCount(2), sg.clone()),
        );
        assert_eq!(
            c.result,
            Err(BlockError::with_info(ErrorKind::OutOfRange, 1))
        );
        let c = run(
            &mut disk,
            &mut memory,
            BlockRequest::read(Tag(2), Lba(0), BlockCount(1), sg),
        );
        assert_eq!(c.result.unwrap_err().kind(), ErrorKind::InvalidRequest);
        let c = run(
            &mut disk,
            &mut memory,
            BlockRequest::unmap(Tag(3), Lba(u64::MAX), BlockCount(2)),
        );
        assert_eq!(c.result.unwrap_err().kind(), ErrorKind::OutOfRange);
    }

    #[test]
    fn unmapped_guest_address_is_a_memory_fault_and_writes_nothing() {
        let mut bytes = [9u8; 512];
        let mut disk = RamDisk::<4>::new(&mut bytes, 512).unwrap();
        let mut page = [1u8; 256];
        let mut memory = MemoryRegions::<1>::new();
        memory.add(MemAddr(0), &mut page).unwrap();
        let sg = SgList::from_segments(&[
            crate::sg::Segment::new(MemAddr(0), 256),
            crate::sg::Segment::new(MemAddr(0x10_0000), 256),
        ])
        .unwrap();
        let c = run(
            &mut disk,
            &mut memory,
            BlockRequest::write(Tag(1), Lba(0), BlockCount(1), sg),
        );
        assert_eq!(c.result.unwrap_err().kind(), ErrorKind::MemoryFault);
        assert!(disk.contents().iter().all(|&b| b == 9));
    }

    #[test]
    fn compare_and_write_reports_first_difference() {
        let mut bytes = [0u8; 1024];
        bytes[600] = 5;
        let mut disk = RamDisk::<4>::new(&mut bytes, 512).unwrap();
        let mut buf = [0u8; 2048];
        buf[1024..].fill(0xAA);
        let mut memory = MemoryRegions::<1>::new();
        memory.add(MemAddr(0), &mut buf).unwrap();
        let sg = SgList::single(MemAddr(0), 2048).unwrap();
        let c = run(
            &mut disk,
            &mut memory,
            BlockRequest::compare_and_write(Tag(1), Lba(0), BlockCount(2), sg.clone()),
        );
        assert_eq!(
            c.result,
            Err(BlockError::with_info(ErrorKind::Miscompare, 600))
        );
        assert_eq!(disk.contents()[0], 0, "a miscompare writes nothing");
        memory.write(MemAddr(600), &[5]).unwrap();
        let c = run(
            &mut disk,
            &mut memory,
            BlockRequest::compare_and_write(Tag(2), Lba(0), BlockCount(2), sg),
        );
        assert!(c.is_ok());
        assert!(disk.contents().iter().all(|&b| b == 0xAA));
    }

    #[test]
    fn read_only_and_unsupported() {
        let mut bytes = [0u8; 512];
        let mut disk = RamDisk::<4>::new(&mut bytes, 512)
            .unwrap()
            .with_features(DeviceFeatures::READ_ONLY);
        let mut memory = MemoryRegions::<1>::new();
        let c = run(
            &mut disk,
            &mut memory,
            BlockRequest::unmap(Tag(1), Lba(0), BlockCount(1)),
        );
        assert_eq!(c.result.unwrap_err().kind(), ErrorKind::Unsupported);
        let c = run(
            &mut disk,
            &mut memory,
            BlockRequest::write(Tag(2), Lba(0), BlockCount(0), SgList::new()),
        );
        assert_eq!(c.result.unwrap_err().kind(), ErrorKind::WriteProtected);
        assert!(RamDisk::<4>::new(&mut [0u8; 100], 512).is_err());
    }
}
