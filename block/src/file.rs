//! `FileDisk`: a block device over a host file (needs `std`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::addr::Instant;
use crate::device::{BlockDevice, DeviceFeatures, Geometry, SubmitError, SubmitErrorKind};
use crate::memory::Memory;
use crate::request::{
    BlockError, BlockRequest, Completion, DEFAULT_SG_CAPACITY, ErrorKind, Operation,
};

/// Zeros are written in chunks of this size, so zeroing a large range needs no large buffer.
const ZERO_CHUNK_BYTES: usize = 64 * 1024;

/// A block device over a host file, with positional I/O and up to `Q` outstanding requests.
///
/// Requests execute in submission order at the next poll. The file's length is fixed when the
/// disk is opened and must be a whole number of blocks. Unmap and write-zeroes write zeros, so
/// unmapped blocks read as zeros. Host I/O errors complete the request with
/// [`ErrorKind::MediumError`] at the first block of the range.
pub struct FileDisk<const Q: usize, const SG: usize = DEFAULT_SG_CAPACITY> {
    file: File,
    geometry: Geometry,
    pending: heapless::Deque<BlockRequest<SG>, Q>,
}

impl<const Q: usize, const SG: usize> FileDisk<Q, SG> {
    /// Opens `path` for reading and writing as a disk of `block_size`-byte blocks.
    pub fn open(path: impl AsRef<Path>, block_size: u32) -> io::Result<Self> {
        let file = File::options().read(true).write(true).open(path)?;
        Self::from_file(file, block_size, false)
    }

    /// Opens `path` read-only; writes complete with [`ErrorKind::WriteProtected`].
    pub fn open_read_only(path: impl AsRef<Path>, block_size: u32) -> io::Result<Self> {
        Self::from_file(File::open(path)?, block_size, true)
    }

    /// Wraps an open file.
    pub fn from_file(file: File, block_size: u32, read_only: bool) -> io::Result<Self> {
        let len = file.metadata()?.len();
        if block_size == 0 || !len.is_multiple_of(block_size as u64) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("file length {len} is not a whole number of {block_size}-byte blocks"),
            ));
        }
        let mut features = DeviceFeatures::UNMAP
            | DeviceFeatures::WRITE_ZEROES
            | DeviceFeatures::COMPARE_AND_WRITE
            | DeviceFeatures::UNMAP_READS_ZERO
            | DeviceFeatures::VOLATILE_CACHE;
        if read_only {
            features |= DeviceFeatures::READ_ONLY;
        }
        let geometry = Geometry {
            block_size,
            block_count: len / block_size as u64,
            max_transfer_blocks: (32 * 1024 * 1024) / block_size,
            queue_depth: u16::try_from(Q).unwrap_or(u16::MAX),
            features,
        };
        Ok(Self {
            file,
            geometry,
            pending: heapless::Deque::new(),
        })
    }

    fn execute(
        &self,
        request: &BlockRequest<SG>,
        memory: &mut dyn Memory,
    ) -> Result<(), BlockError> {
        request.validate(&self.geometry)?;
        let block_size = self.geometry.block_size as u64;
        let start = request.lba.0 * block_size;
        let len = request.blocks.0 as u64 * block_size;
        let medium = |_: io::Error| BlockError::with_info(ErrorKind::MediumError, request.lba.0);
        let fault = |_| BlockError::new(ErrorKind::MemoryFault);
        match request.operation {
            Operation::Read => {
                let mut at = start;
                for segment in request.sg.segments() {
                    let dst = memory
                        .slice_mut(segment.addr, segment.len as usize)
                        .map_err(fault)?;
                    self.file.read_exact_at(dst, at).map_err(medium)?;
                    at += segment.len as u64;
                }
                Ok(())
            }
            Operation::Write => {
                for segment in request.sg.segments() {
                    memory
                        .slice(segment.addr, segment.len as usize)
                        .map_err(fault)?;
                }
                self.write_sg(&request.sg, start, memory).map_err(medium)
            }
            Operation::Flush => self.file.sync_data().map_err(medium),
            Operation::Unmap | Operation::WriteZeroes => {
                self.write_zeros(start, len).map_err(medium)
            }
            Operation::CompareAndWrite => {
                let mut current = vec![0u8; len as usize];
                self.file
                    .read_exact_at(&mut current, start)
                    .map_err(medium)?;
                let expected = request
                    .sg
                    .slice(0, len)
                    .map_err(|_| ErrorKind::InvalidRequest)?;
                let new = request
                    .sg
                    .slice(len, len)
                    .map_err(|_| ErrorKind::InvalidRequest)?;
                if let Some(offset) = crate::ramdisk::first_difference(&current, &expected, memory)?
                {
                    return Err(BlockError::with_info(ErrorKind::Miscompare, offset));
                }
                for segment in new.segments() {
                    memory
                        .slice(segment.addr, segment.len as usize)
                        .map_err(fault)?;
                }
                self.write_sg(&new, start, memory).map_err(medium)
            }
        }
    }

    fn write_sg(
        &self,
        sg: &crate::SgList<SG>,
        start: u64,
        memory: &mut dyn Memory,
    ) -> io::Result<()> {
        let mut at = start;
        for segment in sg.segments() {
            let src = memory
                .slice(segment.addr, segment.len as usize)
                .map_err(|e| io::Error::other(e.to_string()))?;
            self.file.write_all_at(src, at)?;
            at += segment.len as u64;
        }
        Ok(())
    }

    fn write_zeros(&self, start: u64, len: u64) -> io::Result<()> {
        let zeros = vec![0u8; ZERO_CHUNK_BYTES];
        let mut done = 0u64;
        while done < len {
            let chunk = (len - done).min(ZERO_CHUNK_BYTES as u64) as usize;
            self.file.write_all_at(&zeros[..chunk], start + done)?;
            done += chunk as u64;
        }
        Ok(())
    }
}

impl<const Q: usize, const SG: usize> BlockDevice<SG> for FileDisk<Q, SG> {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn submit(&mut self, _now: Instant, request: BlockRequest<SG>) -> Result<(), SubmitError<SG>> {
        if self.pending.iter().any(|p| p.tag == request.tag) {
            return Err(SubmitError::new(SubmitErrorKind::DuplicateTag, request));
        }
        self.pending
            .push_back(request)
            .map_err(|request| SubmitError::new(SubmitErrorKind::QueueFull, request))
    }

    fn poll(
        &mut self,
        _now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        while let Some(request) = self.pending.pop_front() {
            let result = self.execute(&request, memory);
            done(Completion {
                tag: request.tag,
                result,
            });
        }
        None
    }
}
