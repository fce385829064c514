//! Slow-path metadata I/O: one request at a time through a caller-lent buffer region.

use block::{
    BlockCount, BlockDevice, BlockRequest, Instant, Lba, MemAddr, Memory, SgList, Tag,
    run_to_completion,
};

use crate::error::{LvmError, LvmErrorKind, Structure, err, err_v};

/// The smallest metadata buffer accepted: two 4 KiB blocks.
pub const MIN_METADATA_BUFFER: u32 = 8192;

/// How many polls a slow-path request may take before it is abandoned.
pub const DEFAULT_MAX_POLLS: usize = 1_000_000;

/// The tag slow-path requests carry. Slow paths run on devices nobody else is using.
const SLOW_TAG: Tag = Tag(0x4C56_4D00_0000_0001);

/// Everything a slow path (scan, create, span, grow, resignature) needs to move metadata: the
/// address space, a buffer region in it that the volume manager may use freely, and the time.
///
/// Each request is driven with [`run_to_completion`]; time moves forward with the devices'
/// timers and [`MetadataIo::now`] tells the caller where it ended.
pub struct MetadataIo<'m> {
    memory: &'m mut dyn Memory,
    buffer: MemAddr,
    buffer_len: u32,
    now: Instant,
    max_polls: usize,
}

impl<'m> MetadataIo<'m> {
    /// Uses `buffer_len` bytes at `buffer` in `memory` (at least [`MIN_METADATA_BUFFER`], a
    /// multiple of 4096; 64 KiB or more is faster) for metadata, starting at time `now`.
    pub fn new(
        memory: &'m mut dyn Memory,
        buffer: MemAddr,
        buffer_len: u32,
        now: Instant,
    ) -> Result<Self, LvmError> {
        if buffer_len < MIN_METADATA_BUFFER || !buffer_len.is_multiple_of(4096) {
            return Err(err_v(
                Structure::MetadataBuffer,
                LvmErrorKind::BadField,
                u64::from(buffer_len),
            ));
        }
        memory
            .slice_mut(buffer, buffer_len as usize)
            .map_err(|e| err(Structure::MetadataBuffer, LvmErrorKind::Memory(e)))?;
        Ok(Self {
            memory,
            buffer,
            buffer_len,
            now,
            max_polls: DEFAULT_MAX_POLLS,
        })
    }

    /// The same, giving up on a request after `max_polls` polls.
    pub fn with_max_polls(mut self, max_polls: usize) -> Self {
        self.max_polls = max_polls;
        self
    }

    /// The time after the last request.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The address space.
    pub fn memory(&mut self) -> &mut dyn Memory {
        self.memory
    }

    fn mem_err(e: block::MemoryError) -> LvmError {
        err(Structure::MetadataBuffer, LvmErrorKind::Memory(e))
    }

    /// The block-aligned range `[start, end)` covering `[offset, offset + len)`.
    fn aligned<D, const SG: usize>(
        device: &D,
        offset: u64,
        len: usize,
        structure: Structure,
    ) -> Result<(u64, u64, u32), LvmError>
    where
        D: BlockDevice<SG> + ?Sized,
    {
        let geometry = device.geometry();
        let bs = u64::from(geometry.block_size);
        if bs == 0 {
            return Err(err(structure, LvmErrorKind::BadField));
        }
        let end = offset.checked_add(len as u64).ok_or(err_v(
            structure,
            LvmErrorKind::Overflow,
            offset,
        ))?;
        let start = offset - offset % bs;
        let end = end.checked_next_multiple_of(bs).ok_or(err_v(
            structure,
            LvmErrorKind::Overflow,
            offset,
        ))?;
        let capacity = geometry
            .capacity_bytes()
            .ok_or(err(structure, LvmErrorKind::Overflow))?;
        if end > capacity {
            return Err(err_v(structure, LvmErrorKind::Truncated, offset));
        }
        Ok((start, end, geometry.block_size))
    }

    fn transfer<D, const SG: usize>(
        &mut self,
        device: &mut D,
        write: bool,
        start: u64,
        len: u64,
        structure: Structure,
    ) -> Result<(), LvmError>
    where
        D: BlockDevice<SG> + ?Sized,
    {
        let geometry = device.geometry();
        let bs = u64::from(geometry.block_size);
        let max = u64::from(geometry.max_transfer_blocks.max(1)) * bs;
        let mut done = 0u64;
        // Bounded: each round moves at least one block of at most `buffer_len` bytes.
        while done < len {
            let chunk = (len - done).min(max);
            let sg = SgList::<SG>::single(
                MemAddr(self.buffer.0 + done),
                u32::try_from(chunk).map_err(|_| err(structure, LvmErrorKind::Overflow))?,
            )
            .map_err(|_| err(Structure::MetadataBuffer, LvmErrorKind::CapacityExceeded))?;
            let lba = Lba((start + done) / bs);
            let blocks = BlockCount((chunk / bs) as u32);
            let request = if write {
                BlockRequest::write(SLOW_TAG, lba, blocks, sg)
            } else {
                BlockRequest::read(SLOW_TAG, lba, blocks, sg)
            };
            let driven = run_to_completion(
                device,
                self.memory,
                self.now,
                request,
                self.max_polls,
                &mut |_| {},
            )
            .map_err(|e| err_v(structure, LvmErrorKind::Drive(e), start))?;
            self.now = driven.now;
            driven
                .completion
                .result
                .map_err(|e| err_v(structure, LvmErrorKind::Io(e.kind()), start + done))?;
            done += chunk;
        }
        Ok(())
    }

    /// Reads `len` bytes at byte `offset` of `device` and returns them (they stay valid until
    /// the next call). `len` plus the alignment slack must fit the buffer.
    pub fn read<D, const SG: usize>(
        &mut self,
        device: &mut D,
        offset: u64,
        len: usize,
        structure: Structure,
    ) -> Result<&[u8], LvmError>
    where
        D: BlockDevice<SG> + ?Sized,
    {
        let (start, end, _) = Self::aligned(device, offset, len, structure)?;
        if end - start > u64::from(self.buffer_len) {
            return Err(err_v(
                Structure::MetadataBuffer,
                LvmErrorKind::CapacityExceeded,
                end - start,
            ));
        }
        self.transfer(device, false, start, end - start, structure)?;
        let skip = offset - start;
        self.memory
            .slice(MemAddr(self.buffer.0 + skip), len)
            .map_err(Self::mem_err)
    }

    /// Reads the blocks around `[offset, offset + len)`, lets `edit` change those bytes, and
    /// writes the blocks back.
    pub fn modify<D, const SG: usize>(
        &mut self,
        device: &mut D,
        offset: u64,
        len: usize,
        structure: Structure,
        edit: impl FnOnce(&mut [u8]) -> Result<(), LvmError>,
    ) -> Result<(), LvmError>
    where
        D: BlockDevice<SG> + ?Sized,
    {
        let (start, end, _) = Self::aligned(device, offset, len, structure)?;
        if end - start > u64::from(self.buffer_len) {
            return Err(err_v(
                Structure::MetadataBuffer,
                LvmErrorKind::CapacityExceeded,
                end - start,
            ));
        }
        self.transfer(device, false, start, end - start, structure)?;
        let skip = offset - start;
        let bytes = self
            .memory
            .slice_mut(MemAddr(self.buffer.0 + skip), len)
            .map_err(Self::mem_err)?;
        edit(bytes)?;
        self.transfer(device, true, start, end - start, structure)
    }

    /// Writes zeros over `[offset, offset + len)`, which must be block aligned.
    pub fn zero<D, const SG: usize>(
        &mut self,
        device: &mut D,
        offset: u64,
        len: u64,
        structure: Structure,
    ) -> Result<(), LvmError>
    where
        D: BlockDevice<SG> + ?Sized,
    {
        let bs = u64::from(device.geometry().block_size);
        if bs == 0 || !offset.is_multiple_of(bs) || !len.is_multiple_of(bs) {
            return Err(err_v(structure, LvmErrorKind::BadField, offset));
        }
        let chunk_max = u64::from(self.buffer_len) / bs * bs;
        self.memory
            .slice_mut(self.buffer, chunk_max as usize)
            .map_err(Self::mem_err)?
            .fill(0);
        let mut done = 0u64;
        // Bounded: each round zeroes at least one block.
        while done < len {
            let chunk = (len - done).min(chunk_max);
            let at = offset
                .checked_add(done)
                .ok_or(err(structure, LvmErrorKind::Overflow))?;
            Self::aligned(device, at, chunk as usize, structure)?;
            self.transfer(device, true, at, chunk, structure)?;
            done += chunk;
        }
        Ok(())
    }
}
