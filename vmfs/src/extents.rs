//! The extent map of an open file: where each run of its bytes lives on the volume, resolved
//! exactly as the read path resolves it, so that a caller can move file data itself (for
//! example straight from the device image to its destination) and get the same bytes a read
//! returns.

use block::{BlockDevice, ErrorKind, Instant, Memory};
use fss::{FileHandle, FsError, FsErrorKind};

use crate::format::zla;
use crate::volume::{FileMap, Step, Vmfs};

/// The most resolution steps (one per file block, sub-block, or hole below a missing pointer
/// block) one [`Vmfs::map_extents`] call takes, so a call on a huge sparse file returns in
/// bounded time; the caller continues from the end of the last extent.
pub const MAP_STEPS_PER_CALL: usize = 1 << 16;

/// Where a run of a file's bytes lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ExtentKind {
    /// The bytes are on the volume, contiguously, from this byte offset (a multiple of the
    /// volume's block size, unless the map was asked from a file offset that is not).
    Data {
        /// Volume byte offset of the extent's first byte.
        volume_offset: u64,
    },
    /// The bytes read as zeros: a hole, an unallocated block or pointer block, or a block that
    /// is allocated but marked to be zeroed.
    Zero,
    /// The bytes are stored inside the file's descriptor (small files), which lies on the volume
    /// like any metadata: the read path reads them from this volume byte offset, and so may the
    /// caller (the descriptor is not rewritten while the volume is mounted read-only).
    Resident {
        /// Volume byte offset of the extent's first byte, inside the file descriptor.
        volume_offset: u64,
    },
}

/// One run of a file: `len` bytes from `file_offset`, all of one [`ExtentKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FileExtent {
    /// Offset of the run in the file.
    pub file_offset: u64,
    /// Length in bytes (at least one).
    pub len: u64,
    /// Where the bytes are.
    pub kind: ExtentKind,
}

impl FileExtent {
    /// A placeholder to initialise arrays with (an empty run of zeros at offset 0).
    pub const EMPTY: Self = Self {
        file_offset: 0,
        len: 0,
        kind: ExtentKind::Zero,
    };

    /// The file offset just past the run.
    pub const fn end(&self) -> u64 {
        self.file_offset.saturating_add(self.len)
    }

    /// The volume byte offset of the first byte, for data and resident runs.
    pub const fn volume_offset(&self) -> Option<u64> {
        match self.kind {
            ExtentKind::Data { volume_offset } | ExtentKind::Resident { volume_offset } => {
                Some(volume_offset)
            }
            ExtentKind::Zero => None,
        }
    }

    /// Grows this run by `len` bytes of `kind` when they continue it (zeros after zeros, data
    /// right after data on the volume). Returns whether it did.
    fn extend(&mut self, kind: ExtentKind, len: u64) -> bool {
        let continues = match (self.kind, kind) {
            (ExtentKind::Zero, ExtentKind::Zero) => true,
            (ExtentKind::Data { volume_offset: a }, ExtentKind::Data { volume_offset: b })
            | (
                ExtentKind::Resident { volume_offset: a },
                ExtentKind::Resident { volume_offset: b },
            ) => a.checked_add(self.len) == Some(b),
            _ => false,
        };
        if continues {
            self.len = self.len.saturating_add(len);
        }
        continues
    }
}

impl<D: BlockDevice<SG>, const SG: usize> Vmfs<D, SG> {
    /// Maps the open file `handle` from file offset `offset`: fills `out` with its runs in file
    /// order, each as long as possible (adjacent blocks that are contiguous on the volume make
    /// one [`ExtentKind::Data`] run, consecutive holes one [`ExtentKind::Zero`] run), and returns
    /// how many it filled. The runs cover the file from `offset` without gaps and end at most
    /// at its size; `0` means `offset` is at or past the end (or `out` is empty). Continue from
    /// the [`FileExtent::end`] of the last run: a call stops when `out` is full or after
    /// [`MAP_STEPS_PER_CALL`] steps, so a long run may continue in the next call.
    ///
    /// Addresses are resolved by the same code as file reads, through the same bounded pointer
    /// block cache; pointer blocks not cached are read synchronously through the device, like
    /// other metadata. Reading each data or resident run's `len` bytes at its volume offset, and
    /// `len` zeros for each zero run, gives exactly the bytes a file read returns. An address a
    /// read would fail on fails the map the same way: corrupt metadata with the structure and
    /// address, or [`ErrorKind::OutOfRange`] for a block past the end of the volume (where a
    /// read's device request fails).
    pub fn map_extents(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        handle: FileHandle,
        offset: u64,
        out: &mut [FileExtent],
    ) -> Result<usize, FsError> {
        let file: FileMap = self
            .open
            .get(handle.0 as usize)
            .and_then(Option::clone)
            .ok_or(FsError::new(
                FsErrorKind::BadHandle,
                "file handle",
                handle.0 as u64,
            ))?;
        let size = file.meta.size;
        let resident = file.meta.zla == zla::RESIDENT;
        let capacity = self.device.geometry().capacity_bytes().unwrap_or(u64::MAX);
        let mut at = offset;
        let mut count = 0usize;
        for _ in 0..MAP_STEPS_PER_CALL {
            if at >= size {
                break;
            }
            let (len, kind) = match self.map_sync(now, memory, &file, at)? {
                Step::Zero(n) => (n.min(size - at).max(1), ExtentKind::Zero),
                Step::Volume(volume_offset, n) => {
                    let len = n.min(size - at);
                    // Checked as a read from the device block holding `at` would be.
                    let lead = at % self.block_bytes;
                    let bad = || FsError::corrupt("data block address", volume_offset);
                    let start = volume_offset.checked_sub(lead).ok_or_else(bad)?;
                    let (n, want) = (n.saturating_add(lead), len.saturating_add(lead));
                    let read = self.data_read_len(start, n, want)?;
                    if start.checked_add(read).is_none_or(|end| end > capacity) {
                        return Err(FsError::new(
                            FsErrorKind::Io(ErrorKind::OutOfRange),
                            "volume",
                            start,
                        ));
                    }
                    let kind = if resident {
                        ExtentKind::Resident { volume_offset }
                    } else {
                        ExtentKind::Data { volume_offset }
                    };
                    (len, kind)
                }
                // `map_sync` reads every pointer block it needs before it returns.
                Step::Need(raw) => {
                    return Err(FsError::new(
                        FsErrorKind::Buffer,
                        "pointer block cache",
                        raw,
                    ));
                }
            };
            let merged = count > 0 && out[count - 1].extend(kind, len);
            if !merged {
                let Some(slot) = out.get_mut(count) else {
                    break;
                };
                *slot = FileExtent {
                    file_offset: at,
                    len,
                    kind,
                };
                count += 1;
            }
            at += len;
        }
        Ok(count)
    }
}
