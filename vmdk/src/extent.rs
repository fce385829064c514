//! Hosted sparse extents as block devices over the device that holds the extent file.
//!
//! Metadata (the header, grain directory sectors, grain tables) is read through the inner
//! device into a metadata region of the address space that the caller provides at
//! construction, and read back through the [`Memory`] lent to `poll`. The region holds, in
//! order: `C` grain table cache slots, one sector of scratch, one grain of scratch (partial
//! writes and inflated grains) and, for stream-optimized files, one compressed grain.
//!
//! Requests start at `poll` in submission order. A read or write of allocated grains whose
//! grain table is cached (the common case) becomes tagged child requests on the inner device,
//! and the request completes when they all have. A grain table that is not cached is loaded
//! asynchronously (directory sector, then table, as child requests) and the request retries.
//! A request that needs a new grain, a compressed grain, the first write's unclean flag, a
//! flush or zeroing is the slow path: it waits until nothing is outstanding, then runs
//! synchronously, driving the inner device with [`run_to_completion`].

use block::{
    BlockCount, BlockDevice, BlockError, BlockRequest, Completion, DeviceFeatures, ErrorKind as BE,
    Geometry, Instant, Lba, MemAddr, Memory, Operation, SgList, SubmitError, SubmitErrorKind, Tag,
    run_to_completion,
};

use crate::error::{Error, ErrorKind, Result, err};
use crate::sparse::{
    COMPRESS_DEFLATE, COWD_FREE_SECTOR_AT, COWD_HEADER_LEN, COWD_MAGIC, COWD_UNCLEAN_AT,
    CowdHeader, GD_AT_END, Grain, HEADER_LEN, MAGIC, Marker, SECTOR, SparseHeader, le32,
};

/// What [`SparseExtent::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckReport {
    /// Grains with data.
    pub allocated: u64,
    /// Grains marked zeroed.
    pub zeroed: u64,
    /// Grains placed inside the metadata area (corruption).
    pub grains_in_metadata: u64,
    /// Grain table entries (or directory entries) where the redundant copy differs.
    pub redundant_mismatches: u64,
    /// The sector after the last one in use.
    pub used_sectors: u64,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.grains_in_metadata == 0 && self.redundant_mismatches == 0
    }
}

/// How many polls a metadata or data transfer on the inner device may take.
pub const MAX_POLLS: usize = 1 << 20;
/// Bytes moved per step when copying between two places of the address space.
const BOUNCE: usize = 512;

/// A region of the address space lent to an extent for its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaRegion {
    /// Its first byte.
    pub addr: MemAddr,
    /// Its length in bytes.
    pub len: u64,
}

impl MetaRegion {
    /// Splits off the first `len` bytes, or `None` if the region is shorter.
    pub fn take(&mut self, len: u64) -> Option<MetaRegion> {
        if len > self.len {
            return None;
        }
        let head = MetaRegion {
            addr: self.addr,
            len,
        };
        self.addr = self.addr.checked_add(len)?;
        self.len -= len;
        Some(head)
    }
}

/// Bytes of metadata region a sparse extent with this header and `cache_slots` GT cache slots
/// needs.
pub fn meta_bytes_needed(header: &SparseHeader, cache_slots: usize) -> u64 {
    let mut n = header.gt_bytes() * cache_slots as u64 + SECTOR + header.grain_bytes();
    if header.is_compressed() {
        n += compressed_capacity(header);
    }
    n
}

fn compressed_capacity(header: &SparseHeader) -> u64 {
    // Deflate of incompressible data grows by a few bytes per 64 KiB block; the marker adds 12.
    header.grain_bytes() + 4096
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    gd_index: u64,
    gt_sector: u64,
    rgt_sector: Option<u64>,
    used: u64,
}

/// Synchronous transfer on an inner device: `sectors` sectors at `sector` to or from `sg`.
pub(crate) fn transfer<D: BlockDevice + ?Sized>(
    dev: &mut D,
    memory: &mut dyn Memory,
    now: Instant,
    tag: &mut u64,
    operation: Operation,
    sector: u64,
    sg: SgList,
) -> Result<()> {
    let bytes = sg.total_len();
    if bytes == 0 {
        return Ok(());
    }
    if bytes % SECTOR != 0 {
        return Err(err(ErrorKind::Io, sector));
    }
    let blocks = u32::try_from(bytes / SECTOR).map_err(|_| err(ErrorKind::BadSize, bytes))?;
    *tag = tag.wrapping_add(1);
    let request = match operation {
        Operation::Write => BlockRequest::write(Tag(*tag), Lba(sector), BlockCount(blocks), sg),
        Operation::Flush => BlockRequest::flush(Tag(*tag)),
        _ => BlockRequest::read(Tag(*tag), Lba(sector), BlockCount(blocks), sg),
    };
    let driven = run_to_completion(dev, memory, now, request, MAX_POLLS, &mut |_| {})?;
    driven.completion.result.map_err(Error::from)
}

/// Copies `len` bytes from `src` to `dst` inside the address space, through a small bounce
/// buffer.
pub(crate) fn copy_within(
    memory: &mut dyn Memory,
    src: MemAddr,
    dst: MemAddr,
    len: u64,
) -> Result<()> {
    let mut buf = [0u8; BOUNCE];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(BOUNCE as u64) as usize;
        let s = src.checked_add(done).ok_or(err(ErrorKind::Memory, 0))?;
        let d = dst.checked_add(done).ok_or(err(ErrorKind::Memory, 0))?;
        memory.read(s, &mut buf[..n])?;
        memory.write(d, &buf[..n])?;
        done += n as u64;
    }
    Ok(())
}

/// Copies `sg.total_len()` bytes starting at `src` into the places `sg` describes.
pub(crate) fn copy_to_sg(memory: &mut dyn Memory, src: MemAddr, sg: &SgList) -> Result<()> {
    let mut at = 0u64;
    for s in sg.segments() {
        copy_within(
            memory,
            src.checked_add(at).ok_or(err(ErrorKind::Memory, 0))?,
            s.addr,
            u64::from(s.len),
        )?;
        at += u64::from(s.len);
    }
    Ok(())
}

/// Copies the bytes `sg` describes to `dst` onwards.
pub(crate) fn copy_from_sg(memory: &mut dyn Memory, sg: &SgList, dst: MemAddr) -> Result<()> {
    let mut at = 0u64;
    for s in sg.segments() {
        copy_within(
            memory,
            s.addr,
            dst.checked_add(at).ok_or(err(ErrorKind::Memory, 0))?,
            u64::from(s.len),
        )?;
        at += u64::from(s.len);
    }
    Ok(())
}

/// Fills the places `sg` describes with zeros.
pub(crate) fn zero_sg(memory: &mut dyn Memory, sg: &SgList) -> Result<()> {
    for s in sg.segments() {
        memory.slice_mut(s.addr, s.len as usize)?.fill(0);
    }
    Ok(())
}

/// Fills `len` bytes at `addr` with zeros.
pub(crate) fn zero_range(memory: &mut dyn Memory, addr: MemAddr, len: u64) -> Result<()> {
    let len = usize::try_from(len).map_err(|_| err(ErrorKind::Memory, 0))?;
    memory.slice_mut(addr, len)?.fill(0);
    Ok(())
}

/// A hosted sparse extent (monolithicSparse, twoGbMaxExtentSparse, streamOptimized, the
/// delta disks QEMU makes) over the device `D` that holds its file, with a grain table cache of
/// `C` slots and up to `Q` outstanding requests.
///
/// As a [`BlockDevice`] of 512-byte blocks it reads unallocated grains as zeros; the
/// [`crate::VirtualDisk`] uses [`SparseExtent::grain`] and the piece-wise methods to fall
/// through to parents instead.
pub struct SparseExtent<D, const C: usize = 4, const Q: usize = 8> {
    dev: D,
    header: SparseHeader,
    /// The grain directory's sector (from the footer for stream-optimized files).
    gd_offset: u64,
    file_sectors: u64,
    next_free: u64,
    meta: MetaRegion,
    slots: heapless::Vec<Slot, C>,
    clock: u64,
    tag: u64,
    read_only: bool,
    /// An ESX delta (`COWD`) rather than a hosted sparse (`KDMV`) extent.
    cowd: bool,
    marked_unclean: bool,
    /// The grain currently inflated in the grain scratch, if any.
    inflated: Option<u64>,
    /// The asynchronous grain table load in flight, if any.
    load: Load,
    /// The error of the last failed load, for the request that waits on it.
    load_error: Option<(u64, Error)>,
    /// The asynchronous allocation in flight, if any.
    alloc: Alloc,
    /// Accepted requests by slot; a child's tag carries its parent's slot.
    jobs: heapless::Vec<Option<Job>, Q>,
    /// Slots whose children are not all submitted yet, in arrival order.
    order: heapless::Deque<u16, Q>,
    /// Children outstanding on the inner device.
    children: u32,
}

/// The `gd_index` of a cache slot that holds no table.
const NO_TABLE: u64 = u64::MAX;
/// Tags of a grain table load's children (slot `0xffff_ffff` is never a request's).
pub(crate) const META_TAG: u64 = 0xffff_ffff << 32;

/// Tags of an asynchronous allocation's children (slot `0xffff_fffe`).
pub(crate) const ALLOC_TAG: u64 = 0xffff_fffe << 32;

/// An asynchronous allocation of one grain (copy-on-write), one stage at a time.
#[derive(Debug, Clone)]
enum Alloc {
    Idle,
    /// Waiting for the grain's previous contents in the grain scratch (the caller fills it).
    Filling {
        grain: u64,
        offset: u64,
        slot: usize,
        at: u64,
    },
    /// The new grain's data is being written at sector `at`.
    Writing {
        grain: u64,
        slot: usize,
        at: u64,
    },
    /// The grain table sector (then, if `redundant`, its redundant copy) is being written.
    Table {
        grain: u64,
        slot: usize,
        redundant: bool,
    },
}

/// What an allocation's completion led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllocStep {
    /// Still in flight.
    Pending,
    /// Finished: the grain is allocated and both tables point at it.
    Done,
    /// Failed; the grain stays as it was (its space may leak).
    Failed(BlockError),
}

/// An asynchronous grain table load.
#[derive(Debug, Clone, Copy)]
enum Load {
    Idle,
    /// Reading the directory sector that holds `gd_index`'s entry.
    Dir {
        gd_index: u64,
        slot: usize,
    },
    /// Reading the table into `slot`.
    Table {
        gd_index: u64,
        slot: usize,
        gt_sector: u64,
    },
}

/// A request being served by a [`SparseExtent`] as a block device.
struct Job {
    request: BlockRequest,
    /// Grain table loads started for it; past the cache size it takes the slow path.
    loads: usize,
    planned: u64,
    all_planned: bool,
    started: bool,
    outstanding: u32,
    error: Option<BlockError>,
    next_child: u32,
}

/// Tags of synchronous (metadata, slow-path) transfers start here, above every child tag.
pub(crate) const SYNC_TAGS: u64 = 1 << 63;

impl<D: BlockDevice, const C: usize, const Q: usize> SparseExtent<D, C, Q> {
    /// Opens the sparse extent held by `dev`, using `meta` (at least
    /// [`meta_bytes_needed`] bytes, and at least one sector) for its metadata.
    ///
    /// Reads the header (and, for stream-optimized files, the footer), then walks every grain
    /// table once to check that each entry points inside the file and to find where new grains
    /// go. Stream-optimized extents open read-only.
    pub fn open(
        mut dev: D,
        meta: MetaRegion,
        memory: &mut dyn Memory,
        now: Instant,
        read_only: bool,
    ) -> Result<Self> {
        let geometry = dev.geometry();
        if geometry.block_size as u64 != SECTOR {
            return Err(err(ErrorKind::Unsupported, u64::from(geometry.block_size)));
        }
        if meta.len < SECTOR {
            return Err(err(ErrorKind::BufferTooSmall, SECTOR));
        }
        let file_sectors = geometry.block_count;
        let mut tag = SYNC_TAGS;
        let sector_sg =
            SgList::single(meta.addr, SECTOR as u32).map_err(|_| err(ErrorKind::Memory, 0))?;
        transfer(
            &mut dev,
            memory,
            now,
            &mut tag,
            Operation::Read,
            0,
            sector_sg.clone(),
        )?;
        let mut bytes = [0u8; HEADER_LEN];
        memory.read(meta.addr, &mut bytes)?;
        let mut cowd = None;
        let mut header = match le32(&bytes, 0) {
            MAGIC => SparseHeader::parse(&bytes)?,
            COWD_MAGIC => {
                if meta.len < COWD_HEADER_LEN as u64 {
                    return Err(err(ErrorKind::BufferTooSmall, COWD_HEADER_LEN as u64));
                }
                let sg = SgList::single(meta.addr, COWD_HEADER_LEN as u32)
                    .map_err(|_| err(ErrorKind::Memory, 0))?;
                transfer(&mut dev, memory, now, &mut tag, Operation::Read, 0, sg)?;
                let mut b = [0u8; COWD_HEADER_LEN];
                memory.read(meta.addr, &mut b)?;
                let c = CowdHeader::parse(&b)?;
                cowd = Some(c);
                c.as_sparse()
            }
            m => return Err(err(ErrorKind::BadHeader, u64::from(m))),
        };
        let mut read_only = read_only || geometry.features.contains(DeviceFeatures::READ_ONLY);
        if header.gd_offset == GD_AT_END {
            // Footer: marker, header copy, end-of-stream marker in the last three sectors.
            let at = file_sectors
                .checked_sub(2)
                .ok_or(err(ErrorKind::BadHeader, file_sectors))?;
            transfer(
                &mut dev,
                memory,
                now,
                &mut tag,
                Operation::Read,
                at,
                sector_sg,
            )?;
            memory.read(meta.addr, &mut bytes)?;
            let footer = SparseHeader::parse(&bytes)?;
            if footer.gd_offset == GD_AT_END || footer.capacity != header.capacity {
                return Err(err(ErrorKind::BadHeader, at));
            }
            header = footer;
        }
        if header.is_compressed() {
            read_only = true;
            if header.compress_algorithm != COMPRESS_DEFLATE {
                return Err(err(
                    ErrorKind::Unsupported,
                    u64::from(header.compress_algorithm),
                ));
            }
        }
        if meta.len < meta_bytes_needed(&header, C) {
            return Err(err(
                ErrorKind::BufferTooSmall,
                meta_bytes_needed(&header, C),
            ));
        }
        if C == 0 {
            return Err(err(ErrorKind::CapacityExceeded, 0));
        }
        let gd_end = header
            .gd_offset
            .checked_add(header.gd_sectors())
            .ok_or(err(ErrorKind::BadMetadata, header.gd_offset))?;
        if header.gd_offset == 0 || gd_end > file_sectors {
            return Err(err(ErrorKind::BadMetadata, header.gd_offset));
        }
        if header.has_redundant_gd() {
            let rgd_end = header
                .rgd_offset
                .checked_add(header.gd_sectors())
                .ok_or(err(ErrorKind::BadMetadata, header.rgd_offset))?;
            if rgd_end > file_sectors {
                return Err(err(ErrorKind::BadMetadata, header.rgd_offset));
            }
        }
        let mut extent = Self {
            dev,
            gd_offset: header.gd_offset,
            header,
            file_sectors,
            next_free: header
                .overhead
                .max(gd_end)
                .max(cowd.map_or(0, |c| u64::from(c.free_sector))),
            meta,
            slots: heapless::Vec::new(),
            clock: 0,
            tag,
            read_only,
            cowd: cowd.is_some(),
            marked_unclean: false,
            inflated: None,
            load: Load::Idle,
            load_error: None,
            alloc: Alloc::Idle,
            jobs: heapless::Vec::new(),
            order: heapless::Deque::new(),
            children: 0,
        };
        extent.scan(memory, now, &mut |_, _| {})?;
        Ok(extent)
    }

    /// The validated header (the footer's, for stream-optimized files).
    pub fn header(&self) -> &SparseHeader {
        &self.header
    }

    /// The capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.header.capacity
    }

    /// Grain size in sectors.
    pub fn grain_sectors(&self) -> u64 {
        self.header.grain_size
    }

    /// The sector after the last one in use: the file's length once trimmed.
    pub fn used_sectors(&self) -> u64 {
        self.next_free
    }

    /// Whether writes are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The inner device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Gives the inner device back.
    pub fn into_inner(self) -> D {
        self.dev
    }

    fn slot_addr(&self, slot: usize) -> MemAddr {
        MemAddr(self.meta.addr.0 + slot as u64 * self.header.gt_bytes())
    }

    fn sector_scratch(&self) -> MemAddr {
        MemAddr(self.meta.addr.0 + C as u64 * self.header.gt_bytes())
    }

    /// The grain scratch: one grain of the metadata region, free for the caller between calls.
    pub fn grain_scratch(&self) -> MemAddr {
        MemAddr(self.sector_scratch().0 + SECTOR)
    }

    fn compressed_buf(&self) -> MemAddr {
        MemAddr(self.grain_scratch().0 + self.header.grain_bytes())
    }

    fn io(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        op: Operation,
        sector: u64,
        addr: MemAddr,
        bytes: u64,
    ) -> Result<()> {
        let len = u32::try_from(bytes).map_err(|_| err(ErrorKind::BadSize, bytes))?;
        let sg = SgList::single(addr, len).map_err(|_| err(ErrorKind::Memory, addr.0))?;
        transfer(&mut self.dev, memory, now, &mut self.tag, op, sector, sg)
    }

    fn check_range(&self, sector: u64, sectors: u64) -> Result<()> {
        match sector.checked_add(sectors) {
            Some(end) if sector > 0 && end <= self.file_sectors => Ok(()),
            _ => Err(err(ErrorKind::BadMetadata, sector)),
        }
    }

    /// Reads the directory entry `index` of the directory at `dir`.
    fn dir_entry(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        dir: u64,
        index: u64,
    ) -> Result<u64> {
        let byte = index * 4;
        let scratch = self.sector_scratch();
        self.io(
            memory,
            now,
            Operation::Read,
            dir + byte / SECTOR,
            scratch,
            SECTOR,
        )?;
        let mut e = [0u8; 4];
        memory.read(MemAddr(scratch.0 + byte % SECTOR), &mut e)?;
        Ok(u64::from(u32::from_le_bytes(e)))
    }

    /// The cache slot holding grain table `gd_index`, loading it on a miss; `None` if the
    /// table is not allocated.
    fn table(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        gd_index: u64,
    ) -> Result<Option<usize>> {
        self.clock += 1;
        if let Some(i) = self.slots.iter().position(|s| s.gd_index == gd_index) {
            self.slots[i].used = self.clock;
            // A slot of gt_sector 0 remembers that the table is not allocated.
            return Ok((self.slots[i].gt_sector != 0).then_some(i));
        }
        if gd_index >= self.header.gd_entries() {
            return Err(err(ErrorKind::BadMetadata, gd_index));
        }
        let gt_sector = self.dir_entry(memory, now, self.gd_offset, gd_index)?;
        if gt_sector == 0 {
            return Ok(None);
        }
        self.check_range(gt_sector, self.header.gt_sectors())?;
        let slot = Slot {
            gd_index,
            gt_sector,
            rgt_sector: None,
            used: self.clock,
        };
        let i = if self.slots.len() < C {
            let _ = self.slots.push(slot);
            self.slots.len() - 1
        } else {
            let (i, _) = self
                .slots
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.used)
                .ok_or(err(ErrorKind::CapacityExceeded, 0))?;
            self.slots[i] = slot;
            i
        };
        let addr = self.slot_addr(i);
        if let Err(e) = self.io(
            memory,
            now,
            Operation::Read,
            gt_sector,
            addr,
            self.header.gt_bytes(),
        ) {
            // Slots are tied to their memory by index: invalidate, never move.
            self.slots[i].gd_index = NO_TABLE;
            return Err(e);
        }
        Ok(Some(i))
    }

    fn entry(&self, memory: &dyn Memory, slot: usize, index: u64) -> Result<u32> {
        let mut e = [0u8; 4];
        memory.read(MemAddr(self.slot_addr(slot).0 + index * 4), &mut e)?;
        Ok(u32::from_le_bytes(e))
    }

    fn decode(&self, gte: u32, grain: u64) -> Result<Grain> {
        let g = Grain::from_gte(gte, self.header.has_zeroed_gte());
        if let Grain::At(s) = g {
            let len = if self.header.is_compressed() {
                1
            } else {
                self.header.grain_size
            };
            self.check_range(s, len)
                .map_err(|_| err(ErrorKind::BadMetadata, grain))?;
        }
        Ok(g)
    }

    /// What the grain table says about `grain` if its table is in the cache (no I/O), else
    /// `None`. Used to send the common case straight to the inner device.
    pub fn cached_grain(&self, memory: &dyn Memory, grain: u64) -> Option<Result<Grain>> {
        if grain >= self.header.grains() {
            return Some(Err(err(ErrorKind::BadMetadata, grain)));
        }
        let per = u64::from(self.header.num_gtes_per_gt);
        let slot = self.slots.iter().position(|s| s.gd_index == grain / per)?;
        if self.slots[slot].gt_sector == 0 {
            return Some(Ok(Grain::Unallocated));
        }
        Some(
            self.entry(memory, slot, grain % per)
                .and_then(|gte| self.decode(gte, grain)),
        )
    }

    /// The grain directory index of `grain`.
    pub(crate) fn gd_index_of(&self, grain: u64) -> u64 {
        grain / u64::from(self.header.num_gtes_per_gt)
    }

    /// Whether an asynchronous grain table load is in flight.
    pub(crate) fn load_busy(&self) -> bool {
        !matches!(self.load, Load::Idle)
    }

    /// The error of a failed load of table `gd_index`, once.
    pub(crate) fn take_load_error(&mut self, gd_index: u64) -> Option<Error> {
        match self.load_error {
            Some((g, e)) if g == gd_index => {
                self.load_error = None;
                Some(e)
            }
            _ => None,
        }
    }

    /// Starts loading grain table `gd_index` into the cache without waiting: the directory
    /// sector is read into the sector scratch, then the table into a cache slot, as child
    /// requests on the inner device tagged [`META_TAG`]. Returns `false` if a load is
    /// already in flight or the device refused (try again at a later poll).
    pub(crate) fn start_load(&mut self, now: Instant, gd_index: u64) -> Result<bool> {
        if self.load_busy() {
            return Ok(false);
        }
        if gd_index >= self.header.gd_entries() {
            return Err(err(ErrorKind::BadMetadata, gd_index));
        }
        let byte = gd_index * 4;
        let sg = SgList::single(self.sector_scratch(), SECTOR as u32)
            .map_err(|_| err(ErrorKind::Memory, 0))?;
        let req = BlockRequest::read(
            Tag(META_TAG),
            Lba(self.gd_offset + byte / SECTOR),
            BlockCount(1),
            sg,
        );
        if self.dev.submit(now, req).is_err() {
            return Ok(false);
        }
        // The victim slot is invalidated now, so that nothing reads it while it fills.
        self.clock += 1;
        let slot = if self.slots.len() < C {
            let _ = self.slots.push(Slot {
                gd_index: NO_TABLE,
                gt_sector: 0,
                rgt_sector: None,
                used: self.clock,
            });
            self.slots.len() - 1
        } else {
            let pinned = self.pinned_slot();
            let (i, _) = self
                .slots
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != pinned)
                .min_by_key(|(_, s)| s.used)
                .ok_or(err(ErrorKind::CapacityExceeded, 0))?;
            self.slots[i].gd_index = NO_TABLE;
            i
        };
        self.load = Load::Dir { gd_index, slot };
        Ok(true)
    }

    /// The cache slot an allocation in flight holds on to.
    fn pinned_slot(&self) -> Option<usize> {
        match self.alloc {
            Alloc::Idle => None,
            Alloc::Filling { slot, .. }
            | Alloc::Writing { slot, .. }
            | Alloc::Table { slot, .. } => Some(slot),
        }
    }

    /// Abandons the allocation in flight before its data is written (the grain stays as it
    /// was; the sector reserved for it is not reused).
    pub(crate) fn abort_alloc(&mut self) {
        self.alloc = Alloc::Idle;
        self.inflated = None;
    }

    /// Whether an asynchronous allocation is in flight.
    pub(crate) fn alloc_busy(&self) -> bool {
        !matches!(self.alloc, Alloc::Idle)
    }

    /// Whether grain `grain` can be allocated asynchronously now: writable with the unclean
    /// flag set, not compressed, nothing else in flight on the metadata, its table cached and
    /// allocated, the redundant table's place known, and the grain unallocated or zeroed.
    pub(crate) fn can_alloc(&self, memory: &dyn Memory, grain: u64) -> bool {
        if !self.ready_for_direct_writes()
            || self.header.is_compressed()
            || self.load_busy()
            || self.alloc_busy()
        {
            return false;
        }
        let Some(slot) = self
            .slots
            .iter()
            .position(|s| s.gd_index == self.gd_index_of(grain))
        else {
            return false;
        };
        let s = &self.slots[slot];
        if s.gt_sector == 0 || (self.header.has_redundant_gd() && s.rgt_sector.is_none()) {
            return false;
        }
        matches!(
            self.cached_grain(memory, grain),
            Some(Ok(Grain::Unallocated | Grain::Zero))
        ) && self
            .next_free
            .checked_add(self.header.grain_size)
            .is_some_and(|e| e <= self.file_sectors)
    }

    /// Starts allocating `grain` for a write at byte `offset` of it (check
    /// [`Self::can_alloc`] first). The grain's previous contents must then be put in the grain
    /// scratch (zeros, or a parent's data) before [`Self::alloc_filled`] is called. Returns
    /// whether the previous contents are plain zeros (a zeroed-grain entry), which
    /// `alloc_filled` then writes itself.
    pub(crate) fn begin_alloc(
        &mut self,
        memory: &dyn Memory,
        grain: u64,
        offset: u64,
    ) -> Result<bool> {
        let slot = self
            .slots
            .iter()
            .position(|s| s.gd_index == self.gd_index_of(grain))
            .ok_or(err(ErrorKind::BadMetadata, grain))?;
        let zeroed = matches!(self.cached_grain(memory, grain), Some(Ok(Grain::Zero)));
        let at = self.allocate(self.header.grain_size)?;
        self.inflated = None;
        self.alloc = Alloc::Filling {
            grain,
            offset,
            slot,
            at,
        };
        Ok(zeroed)
    }

    /// The grain scratch holds the previous contents (or `zeros` asks for them): lays the
    /// write's `piece` over them and writes the new grain (a child tagged [`ALLOC_TAG`]).
    pub(crate) fn alloc_filled(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        zeros: bool,
        piece: &SgList,
    ) -> AllocStep {
        let Alloc::Filling {
            grain,
            offset,
            slot,
            at,
        } = core::mem::replace(&mut self.alloc, Alloc::Idle)
        else {
            return AllocStep::Failed(BlockError::new(BE::InvalidRequest));
        };
        let scratch = self.grain_scratch();
        let grain_bytes = self.header.grain_bytes();
        let result = (|| -> Result<()> {
            if zeros {
                zero_range(memory, scratch, grain_bytes)?;
            }
            copy_from_sg(memory, piece, MemAddr(scratch.0 + offset))?;
            let len =
                u32::try_from(grain_bytes).map_err(|_| err(ErrorKind::BadSize, grain_bytes))?;
            let sg = SgList::single(scratch, len).map_err(|_| err(ErrorKind::Memory, 0))?;
            let blocks = BlockCount((grain_bytes / SECTOR) as u32);
            let req = BlockRequest::write(Tag(ALLOC_TAG), Lba(at), blocks, sg);
            self.dev
                .submit(now, req)
                .map_err(|_| err(ErrorKind::Io, at))
        })();
        match result {
            Ok(()) => {
                self.alloc = Alloc::Writing { grain, slot, at };
                AllocStep::Pending
            }
            Err(e) => AllocStep::Failed(e.to_block_error()),
        }
    }

    /// Takes the completion of an allocation child on this extent's device.
    pub(crate) fn on_alloc_completion(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        completion: Completion,
    ) -> AllocStep {
        let state = core::mem::replace(&mut self.alloc, Alloc::Idle);
        if let Err(e) = completion.result {
            return AllocStep::Failed(e);
        }
        let per = u64::from(self.header.num_gtes_per_gt);
        let result = (|| -> Result<Option<Alloc>> {
            let (grain, slot, redundant) = match state {
                Alloc::Writing { grain, slot, at } => {
                    // Data is on disk: point the cached table at it, then write its sector.
                    let v = u32::try_from(at).map_err(|_| err(ErrorKind::BadSize, at))?;
                    let addr = self.slot_addr(slot);
                    memory.write(MemAddr(addr.0 + (grain % per) * 4), &v.to_le_bytes())?;
                    (grain, slot, false)
                }
                Alloc::Table {
                    grain,
                    slot,
                    redundant: false,
                } if self.header.has_redundant_gd() => (grain, slot, true),
                _ => return Ok(None),
            };
            let in_table = (grain % per) * 4 / SECTOR * SECTOR;
            let table = if redundant {
                self.slots[slot]
                    .rgt_sector
                    .ok_or(err(ErrorKind::BadMetadata, grain))?
            } else {
                self.slots[slot].gt_sector
            };
            let sg = SgList::single(MemAddr(self.slot_addr(slot).0 + in_table), SECTOR as u32)
                .map_err(|_| err(ErrorKind::Memory, 0))?;
            let req = BlockRequest::write(
                Tag(ALLOC_TAG | 1),
                Lba(table + in_table / SECTOR),
                BlockCount(1),
                sg,
            );
            self.dev
                .submit(now, req)
                .map_err(|_| err(ErrorKind::Io, table))?;
            Ok(Some(Alloc::Table {
                grain,
                slot,
                redundant,
            }))
        })();
        match result {
            Ok(Some(next)) => {
                self.alloc = next;
                AllocStep::Pending
            }
            Ok(None) => AllocStep::Done,
            Err(e) => AllocStep::Failed(e.to_block_error()),
        }
    }

    /// Takes the completion of the load's child request (tag [`META_TAG`]).
    pub(crate) fn on_load_completion(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        completion: Completion,
    ) {
        let load = core::mem::replace(&mut self.load, Load::Idle);
        let result = (|| -> Result<Option<Load>> {
            completion.result.map_err(Error::from)?;
            match load {
                Load::Idle => Ok(None),
                Load::Dir { gd_index, slot } => {
                    let mut e = [0u8; 4];
                    memory.read(
                        MemAddr(self.sector_scratch().0 + (gd_index * 4) % SECTOR),
                        &mut e,
                    )?;
                    let gt_sector = u64::from(u32::from_le_bytes(e));
                    if gt_sector == 0 {
                        self.slots[slot] = Slot {
                            gd_index,
                            gt_sector: 0,
                            rgt_sector: None,
                            used: self.clock,
                        };
                        return Ok(None);
                    }
                    self.check_range(gt_sector, self.header.gt_sectors())?;
                    let len = u32::try_from(self.header.gt_bytes())
                        .map_err(|_| err(ErrorKind::BadSize, 0))?;
                    let sg = SgList::single(self.slot_addr(slot), len)
                        .map_err(|_| err(ErrorKind::Memory, 0))?;
                    let blocks = BlockCount((self.header.gt_bytes() / SECTOR) as u32);
                    let req = BlockRequest::read(Tag(META_TAG | 1), Lba(gt_sector), blocks, sg);
                    self.dev
                        .submit(now, req)
                        .map_err(|_| err(ErrorKind::Io, gt_sector))?;
                    Ok(Some(Load::Table {
                        gd_index,
                        slot,
                        gt_sector,
                    }))
                }
                Load::Table {
                    gd_index,
                    slot,
                    gt_sector,
                } => {
                    self.slots[slot] = Slot {
                        gd_index,
                        gt_sector,
                        rgt_sector: None,
                        used: self.clock,
                    };
                    Ok(None)
                }
            }
        })();
        match result {
            Ok(Some(next)) => self.load = next,
            Ok(None) => {}
            Err(e) => {
                if let Load::Dir { gd_index, .. } | Load::Table { gd_index, .. } = load {
                    self.load_error = Some((gd_index, e));
                }
            }
        }
    }

    /// Whether this is an ESX delta (`COWD`) extent.
    pub fn is_cowd(&self) -> bool {
        self.cowd
    }

    /// Whether grains of this extent are compressed (stream-optimized).
    pub fn is_compressed(&self) -> bool {
        self.header.is_compressed()
    }

    /// Whether a write may go straight to the inner device: writable, and the
    /// unclean-shutdown flag already set.
    pub fn ready_for_direct_writes(&self) -> bool {
        !self.read_only && self.marked_unclean
    }

    /// The inner device, to submit data transfers of allocated grains to.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    /// What the grain table says about `grain` (grain index from the start of the extent).
    pub fn grain(&mut self, memory: &mut dyn Memory, now: Instant, grain: u64) -> Result<Grain> {
        if grain >= self.header.grains() {
            return Err(err(ErrorKind::BadMetadata, grain));
        }
        let per = u64::from(self.header.num_gtes_per_gt);
        match self.table(memory, now, grain / per)? {
            None => Ok(Grain::Unallocated),
            Some(slot) => {
                let gte = self.entry(memory, slot, grain % per)?;
                self.decode(gte, grain)
            }
        }
    }

    /// Visits every grain whose entry is not [`Grain::Unallocated`], checking each entry and
    /// moving the allocation point past every table and grain.
    pub fn scan(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        visit: &mut dyn FnMut(u64, Grain),
    ) -> Result<()> {
        let per = u64::from(self.header.num_gtes_per_gt);
        let grains = self.header.grains();
        for gd_index in 0..self.header.gd_entries() {
            let Some(slot) = self.table(memory, now, gd_index)? else {
                continue;
            };
            let gt_end = self.slots[slot].gt_sector + self.header.gt_sectors();
            self.next_free = self.next_free.max(gt_end);
            let first = gd_index * per;
            let n = per.min(grains - first);
            for i in 0..n {
                let gte = self.entry(memory, slot, i)?;
                let g = self.decode(gte, first + i)?;
                if let Grain::At(s) = g
                    && !self.header.is_compressed()
                {
                    self.next_free = self.next_free.max(s + self.header.grain_size);
                }
                if g != Grain::Unallocated {
                    visit(first + i, g);
                }
            }
        }
        if self.header.has_redundant_gd() && !self.read_only {
            for gd_index in 0..self.header.gd_entries() {
                let r = self.dir_entry(memory, now, self.header.rgd_offset, gd_index)?;
                if r != 0 {
                    self.check_range(r, self.header.gt_sectors())?;
                    self.next_free = self.next_free.max(r + self.header.gt_sectors());
                }
            }
        }
        Ok(())
    }

    /// Inflates the compressed grain whose marker is at `sector` into the grain scratch.
    fn inflate(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        grain: u64,
        sector: u64,
    ) -> Result<()> {
        if self.inflated == Some(grain) {
            return Ok(());
        }
        self.inflated = None;
        let scratch = self.sector_scratch();
        self.io(memory, now, Operation::Read, sector, scratch, SECTOR)?;
        let mut m = [0u8; 16];
        memory.read(scratch, &mut m)?;
        let (lba, size) = match Marker::parse(&m)? {
            Marker::Grain { lba, size } => (lba, u64::from(size)),
            Marker::Meta { .. } => return Err(err(ErrorKind::BadMetadata, sector)),
        };
        if lba != grain * self.header.grain_size || size > compressed_capacity(&self.header) - 12 {
            return Err(err(ErrorKind::BadMetadata, sector));
        }
        let sectors = (size + 12).div_ceil(SECTOR);
        self.check_range(sector, sectors)?;
        let buf = self.compressed_buf();
        self.io(memory, now, Operation::Read, sector, buf, sectors * SECTOR)?;
        let out = self.grain_scratch();
        let grain_bytes = self.header.grain_bytes();
        let n = inflate_within(memory, MemAddr(buf.0 + 12), size, out, grain_bytes)?;
        let expected = grain_bytes.min((self.header.capacity - lba) * SECTOR);
        if n < expected {
            return Err(err(ErrorKind::Inflate, grain));
        }
        self.inflated = Some(grain);
        Ok(())
    }

    /// Reads `sg.total_len()` bytes at byte `offset` of grain `grain` into `sg`, returning
    /// `false` (and moving nothing) if the grain is unallocated.
    pub fn read_piece(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        grain: u64,
        offset: u64,
        sg: &SgList,
    ) -> Result<bool> {
        match self.grain(memory, now, grain)? {
            Grain::Unallocated => Ok(false),
            Grain::Zero => {
                zero_sg(memory, sg)?;
                Ok(true)
            }
            Grain::At(sector) if self.header.is_compressed() => {
                self.inflate(memory, now, grain, sector)?;
                copy_to_sg(memory, MemAddr(self.grain_scratch().0 + offset), sg)?;
                Ok(true)
            }
            Grain::At(sector) => {
                transfer(
                    &mut self.dev,
                    memory,
                    now,
                    &mut self.tag,
                    Operation::Read,
                    sector + offset / SECTOR,
                    sg.clone(),
                )?;
                Ok(true)
            }
        }
    }

    /// Rewrites the little-endian `u32` at byte `at` of the file (read-modify-write of its
    /// sector), keeping every other byte.
    fn patch_u32(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        at: u64,
        value: u32,
    ) -> Result<()> {
        let scratch = self.sector_scratch();
        self.io(memory, now, Operation::Read, at / SECTOR, scratch, SECTOR)?;
        memory.write(MemAddr(scratch.0 + at % SECTOR), &value.to_le_bytes())?;
        self.io(memory, now, Operation::Write, at / SECTOR, scratch, SECTOR)
    }

    fn mark_unclean(&mut self, memory: &mut dyn Memory, now: Instant, unclean: bool) -> Result<()> {
        if self.cowd {
            let free = u32::try_from(self.next_free)
                .map_err(|_| err(ErrorKind::BadSize, self.next_free))?;
            self.patch_u32(memory, now, COWD_FREE_SECTOR_AT as u64, free)?;
            self.patch_u32(memory, now, COWD_UNCLEAN_AT as u64, u32::from(unclean))?;
            self.header.unclean_shutdown = unclean;
            self.marked_unclean = unclean;
            return Ok(());
        }
        let mut h = self.header;
        // The on-disk header of a stream-optimized file is never rewritten (read-only anyway).
        h.unclean_shutdown = unclean;
        let mut bytes = [0u8; HEADER_LEN];
        h.emit(&mut bytes)?;
        let scratch = self.sector_scratch();
        memory.write(scratch, &bytes)?;
        self.io(memory, now, Operation::Write, 0, scratch, SECTOR)?;
        self.header.unclean_shutdown = unclean;
        self.marked_unclean = unclean;
        Ok(())
    }

    fn allocate(&mut self, sectors: u64) -> Result<u64> {
        let at = self.next_free;
        let end = at.checked_add(sectors).ok_or(err(ErrorKind::BadSize, at))?;
        if end > self.file_sectors {
            return Err(err(ErrorKind::BadSize, end));
        }
        self.next_free = end;
        Ok(at)
    }

    /// Allocates and zeroes grain table `gd_index` (and its redundant copy), updating both
    /// directories; returns its cache slot.
    fn new_table(&mut self, memory: &mut dyn Memory, now: Instant, gd_index: u64) -> Result<usize> {
        let gts = self.header.gt_sectors();
        let gt = self.allocate(gts)?;
        let rgt = if self.header.has_redundant_gd() {
            Some(self.allocate(gts)?)
        } else {
            None
        };
        // Zero a slot's worth of memory and write it to both tables.
        let existing = self.slots.iter().position(|s| s.gd_index == gd_index);
        let i = if let Some(i) = existing {
            self.slots[i] = Slot {
                gd_index,
                gt_sector: gt,
                rgt_sector: rgt,
                used: self.clock,
            };
            i
        } else if self.slots.len() < C {
            let _ = self.slots.push(Slot {
                gd_index,
                gt_sector: gt,
                rgt_sector: rgt,
                used: self.clock,
            });
            self.slots.len() - 1
        } else {
            let (i, _) = self
                .slots
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.used)
                .ok_or(err(ErrorKind::CapacityExceeded, 0))?;
            self.slots[i] = Slot {
                gd_index,
                gt_sector: gt,
                rgt_sector: rgt,
                used: self.clock,
            };
            i
        };
        let addr = self.slot_addr(i);
        zero_range(memory, addr, self.header.gt_bytes())?;
        self.io(
            memory,
            now,
            Operation::Write,
            gt,
            addr,
            self.header.gt_bytes(),
        )?;
        if let Some(r) = rgt {
            self.io(
                memory,
                now,
                Operation::Write,
                r,
                addr,
                self.header.gt_bytes(),
            )?;
        }
        // Tables first, then the directories point at them.
        self.set_dir_entry(memory, now, self.gd_offset, gd_index, gt)?;
        if let Some(r) = rgt {
            self.set_dir_entry(memory, now, self.header.rgd_offset, gd_index, r)?;
        }
        Ok(i)
    }

    fn set_dir_entry(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        dir: u64,
        index: u64,
        value: u64,
    ) -> Result<()> {
        let byte = index * 4;
        let scratch = self.sector_scratch();
        let sector = dir + byte / SECTOR;
        self.io(memory, now, Operation::Read, sector, scratch, SECTOR)?;
        let v = u32::try_from(value).map_err(|_| err(ErrorKind::BadSize, value))?;
        memory.write(MemAddr(scratch.0 + byte % SECTOR), &v.to_le_bytes())?;
        self.io(memory, now, Operation::Write, sector, scratch, SECTOR)
    }

    /// Sets grain `grain`'s entry in both grain tables.
    fn set_entry(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        slot: usize,
        grain: u64,
        value: u32,
    ) -> Result<()> {
        let per = u64::from(self.header.num_gtes_per_gt);
        let index = grain % per;
        let addr = self.slot_addr(slot);
        memory.write(MemAddr(addr.0 + index * 4), &value.to_le_bytes())?;
        let in_table = (index * 4) / SECTOR * SECTOR;
        let sector_addr = MemAddr(addr.0 + in_table);
        let gt = self.slots[slot].gt_sector;
        self.io(
            memory,
            now,
            Operation::Write,
            gt + in_table / SECTOR,
            sector_addr,
            SECTOR,
        )?;
        if self.header.has_redundant_gd() {
            let rgt = match self.slots[slot].rgt_sector {
                Some(r) => r,
                None => {
                    let gd_index = self.slots[slot].gd_index;
                    let r = self.dir_entry(memory, now, self.header.rgd_offset, gd_index)?;
                    self.check_range(r, self.header.gt_sectors())?;
                    self.slots[slot].rgt_sector = Some(r);
                    r
                }
            };
            self.io(
                memory,
                now,
                Operation::Write,
                rgt + in_table / SECTOR,
                sector_addr,
                SECTOR,
            )?;
        }
        Ok(())
    }

    /// Writes `sg` at byte `offset` of grain `grain`. If the grain is not yet allocated, a new
    /// grain is appended: `fill` first puts the grain's previous contents in the grain scratch
    /// (zeros, or a parent's data), then `sg` is laid over it, the grain is written, and both
    /// grain tables are updated (data before metadata).
    pub fn write_piece(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        grain: u64,
        offset: u64,
        sg: &SgList,
        fill: &mut dyn FnMut(&mut dyn Memory, Instant, MemAddr) -> Result<()>,
    ) -> Result<()> {
        if self.read_only {
            return Err(err(ErrorKind::ReadOnly, grain));
        }
        if grain >= self.header.grains() {
            return Err(err(ErrorKind::BadMetadata, grain));
        }
        if !self.marked_unclean {
            self.mark_unclean(memory, now, true)?;
        }
        let per = u64::from(self.header.num_gtes_per_gt);
        let slot = match self.table(memory, now, grain / per)? {
            Some(s) => s,
            None => self.new_table(memory, now, grain / per)?,
        };
        let gte = self.entry(memory, slot, grain % per)?;
        match self.decode(gte, grain)? {
            Grain::At(sector) => transfer(
                &mut self.dev,
                memory,
                now,
                &mut self.tag,
                Operation::Write,
                sector + offset / SECTOR,
                sg.clone(),
            ),
            state => {
                let scratch = self.grain_scratch();
                let grain_bytes = self.header.grain_bytes();
                self.inflated = None;
                if offset != 0 || sg.total_len() != grain_bytes {
                    if state == Grain::Zero {
                        zero_range(memory, scratch, grain_bytes)?;
                    } else {
                        fill(memory, now, scratch)?;
                    }
                }
                copy_from_sg(memory, sg, MemAddr(scratch.0 + offset))?;
                let at = self.allocate(self.header.grain_size)?;
                self.io(memory, now, Operation::Write, at, scratch, grain_bytes)?;
                let v = u32::try_from(at).map_err(|_| err(ErrorKind::BadSize, at))?;
                // The table may have been evicted by `fill` reading through this extent.
                let slot = match self.table(memory, now, grain / per)? {
                    Some(s) => s,
                    None => return Err(err(ErrorKind::BadMetadata, grain)),
                };
                self.set_entry(memory, now, slot, grain, v)
            }
        }
    }

    /// Makes `len` bytes at byte `offset` of grain `grain` read as zeros. An allocated grain
    /// gets zeros written; a whole unallocated grain becomes a zeroed-grain entry when the
    /// header allows them; otherwise, when `parent_has_data`, the grain is copied up with
    /// `fill` and the range zeroed in the copy. An unallocated grain with nothing below
    /// already reads as zeros and is left alone.
    #[allow(clippy::too_many_arguments)]
    pub fn zero_piece(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        grain: u64,
        offset: u64,
        len: u64,
        parent_has_data: bool,
        fill: &mut dyn FnMut(&mut dyn Memory, Instant, MemAddr) -> Result<()>,
    ) -> Result<()> {
        if self.read_only {
            return Err(err(ErrorKind::ReadOnly, grain));
        }
        let grain_bytes = self.header.grain_bytes();
        if grain >= self.header.grains() || offset.checked_add(len).is_none_or(|e| e > grain_bytes)
        {
            return Err(err(ErrorKind::BadMetadata, grain));
        }
        let per = u64::from(self.header.num_gtes_per_gt);
        let state = self.grain(memory, now, grain)?;
        if state == Grain::Zero || (state == Grain::Unallocated && !parent_has_data) {
            return Ok(());
        }
        if !self.marked_unclean {
            self.mark_unclean(memory, now, true)?;
        }
        let scratch = self.grain_scratch();
        self.inflated = None;
        match state {
            Grain::At(sector) => {
                zero_range(memory, scratch, len)?;
                self.io(
                    memory,
                    now,
                    Operation::Write,
                    sector + offset / SECTOR,
                    scratch,
                    len,
                )
            }
            _ => {
                let whole = offset == 0 && len == grain_bytes;
                let value = if whole && self.header.has_zeroed_gte() {
                    1
                } else {
                    if !whole {
                        fill(memory, now, scratch)?;
                    }
                    zero_range(memory, MemAddr(scratch.0 + offset), len)?;
                    let at = self.allocate(self.header.grain_size)?;
                    self.io(memory, now, Operation::Write, at, scratch, grain_bytes)?;
                    u32::try_from(at).map_err(|_| err(ErrorKind::BadSize, at))?
                };
                let slot = match self.table(memory, now, grain / per)? {
                    Some(s) => s,
                    None => self.new_table(memory, now, grain / per)?,
                };
                self.set_entry(memory, now, slot, grain, value)
            }
        }
    }

    /// Copies the embedded descriptor (its whole area, NUL padding included) into `out`,
    /// returning how many bytes were copied; parse it with [`crate::Descriptor::parse`].
    pub fn read_embedded_descriptor(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        out: &mut [u8],
    ) -> Result<usize> {
        let (at, bytes) = self.descriptor_area(out.len())?;
        // Sector by sector through the sector scratch: the area may exceed a grain.
        let scratch = self.sector_scratch();
        for (i, chunk) in out[..bytes as usize]
            .chunks_mut(SECTOR as usize)
            .enumerate()
        {
            self.io(memory, now, Operation::Read, at + i as u64, scratch, SECTOR)?;
            memory.read(scratch, chunk)?;
        }
        Ok(bytes as usize)
    }

    /// Replaces the embedded descriptor with `text` (padded with NULs), for instance one
    /// emitted after [`crate::Descriptor::set`]. It must fit the area the header reserves.
    pub fn write_embedded_descriptor(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        text: &[u8],
    ) -> Result<()> {
        if self.read_only {
            return Err(err(ErrorKind::ReadOnly, 0));
        }
        let (at, bytes) = self.descriptor_area(usize::MAX)?;
        if text.len() as u64 > bytes {
            return Err(err(ErrorKind::BufferTooSmall, bytes));
        }
        let scratch = self.sector_scratch();
        for i in 0..bytes / SECTOR {
            zero_range(memory, scratch, SECTOR)?;
            let from = (i * SECTOR) as usize;
            if let Some(chunk) = text.get(from..text.len().min(from + SECTOR as usize)) {
                memory.write(scratch, chunk)?;
            }
            self.io(memory, now, Operation::Write, at + i, scratch, SECTOR)?;
        }
        Ok(())
    }

    fn descriptor_area(&self, room: usize) -> Result<(u64, u64)> {
        let h = &self.header;
        if self.cowd || h.descriptor_offset == 0 || h.descriptor_size == 0 {
            return Err(err(ErrorKind::BadDescriptor, 0));
        }
        let bytes = h
            .descriptor_size
            .checked_mul(SECTOR)
            .ok_or(err(ErrorKind::BadSize, 0))?;
        if bytes > room as u64 {
            return Err(err(ErrorKind::BufferTooSmall, bytes));
        }
        self.check_range(h.descriptor_offset, h.descriptor_size)?;
        Ok((h.descriptor_offset, bytes))
    }

    /// Checks the extent's metadata: every grain table and grain inside the file (done at
    /// open too), no grain inside the metadata before `overhead` (hosted, uncompressed), and
    /// the redundant grain tables equal to the primary ones.
    pub fn check(&mut self, memory: &mut dyn Memory, now: Instant) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let overhead = self.header.overhead;
        let compressed = self.header.is_compressed();
        let cowd = self.cowd;
        let mut low = 0u64;
        self.scan(memory, now, &mut |_, g| match g {
            Grain::Zero => report.zeroed += 1,
            Grain::At(s) => {
                report.allocated += 1;
                if !compressed && !cowd && s < overhead {
                    low += 1;
                }
            }
            Grain::Unallocated => {}
        })?;
        report.grains_in_metadata = low;
        if self.header.has_redundant_gd() {
            let per = u64::from(self.header.num_gtes_per_gt);
            let scratch = self.grain_scratch();
            self.inflated = None;
            for gd_index in 0..self.header.gd_entries() {
                let r = self.dir_entry(memory, now, self.header.rgd_offset, gd_index)?;
                let Some(slot) = self.table(memory, now, gd_index)? else {
                    if r != 0 {
                        report.redundant_mismatches += 1;
                    }
                    continue;
                };
                if r == 0 {
                    report.redundant_mismatches += 1;
                    continue;
                }
                self.check_range(r, self.header.gt_sectors())?;
                let bytes = self.header.gt_bytes().min(self.header.grain_bytes());
                self.io(memory, now, Operation::Read, r, scratch, bytes)?;
                for i in 0..(bytes / 4).min(per) {
                    let a = self.entry(memory, slot, i)?;
                    let mut b = [0u8; 4];
                    memory.read(MemAddr(scratch.0 + i * 4), &mut b)?;
                    if a != u32::from_le_bytes(b) {
                        report.redundant_mismatches += 1;
                    }
                }
            }
        }
        report.used_sectors = self.next_free;
        Ok(report)
    }

    /// Marks the extent cleanly closed (clears the unclean-shutdown flag) after flushing.
    pub fn close(&mut self, memory: &mut dyn Memory, now: Instant) -> Result<()> {
        if self.marked_unclean {
            transfer(
                &mut self.dev,
                memory,
                now,
                &mut self.tag,
                Operation::Flush,
                0,
                SgList::new(),
            )?;
            self.mark_unclean(memory, now, false)?;
        }
        Ok(())
    }

    fn execute(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        request: &BlockRequest,
    ) -> core::result::Result<(), BlockError> {
        request.validate(&self.geometry())?;
        match request.operation {
            Operation::Flush => {
                return transfer(
                    &mut self.dev,
                    memory,
                    now,
                    &mut self.tag,
                    Operation::Flush,
                    0,
                    SgList::new(),
                )
                .map_err(Error::to_block_error);
            }
            Operation::Read | Operation::Write => {}
            Operation::WriteZeroes | Operation::Unmap => {}
            _ => return Err(BlockError::new(BE::Unsupported)),
        }
        let grain_bytes = self.header.grain_bytes();
        let start = request.lba.0 * SECTOR;
        let zeroing = matches!(request.operation, Operation::WriteZeroes | Operation::Unmap);
        let total = if zeroing {
            u64::from(request.blocks.0) * SECTOR
        } else {
            request.sg.total_len()
        };
        let mut done = 0u64;
        while done < total {
            let pos = start + done;
            let grain = pos / grain_bytes;
            let offset = pos % grain_bytes;
            let n = (grain_bytes - offset).min(total - done);
            if zeroing {
                self.zero_piece(memory, now, grain, offset, n, false, &mut |m, _, at| {
                    zero_range(m, at, grain_bytes)
                })
                .map_err(|e| BlockError::with_info(e.to_block_error().kind(), pos / SECTOR))?;
                done += n;
                continue;
            }
            let piece = request
                .sg
                .slice(done, n)
                .map_err(|_| BlockError::new(BE::InvalidRequest))?;
            let r = if request.operation == Operation::Read {
                self.read_piece(memory, now, grain, offset, &piece)
                    .and_then(|served| {
                        if served {
                            Ok(())
                        } else {
                            zero_sg(memory, &piece)
                        }
                    })
            } else {
                self.write_piece(memory, now, grain, offset, &piece, &mut |m, _, at| {
                    zero_range(m, at, grain_bytes)
                })
            };
            r.map_err(|e| BlockError::with_info(e.to_block_error().kind(), pos / SECTOR))?;
            done += n;
        }
        Ok(())
    }
}

/// Inflates the zlib stream of `len` bytes at `src` into `out_len` bytes at `out`; returns the
/// number of bytes produced.
pub(crate) fn inflate_within(
    memory: &mut dyn Memory,
    src: MemAddr,
    len: u64,
    out: MemAddr,
    out_len: u64,
) -> Result<u64> {
    use miniz_oxide::inflate::TINFLStatus;
    use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
    let out_len = usize::try_from(out_len).map_err(|_| err(ErrorKind::BadSize, out_len))?;
    let mut state = DecompressorOxide::new();
    let mut chunk = [0u8; 4096];
    let mut consumed = 0u64;
    let mut out_pos = 0usize;
    // Every round consumes input or produces output, or ends; bound it anyway.
    let max_rounds = len + out_len as u64 + 16;
    for _ in 0..max_rounds {
        let n = (len - consumed).min(chunk.len() as u64) as usize;
        memory.read(MemAddr(src.0 + consumed), &mut chunk[..n])?;
        let more = consumed + (n as u64) < len;
        let mut flags = inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER
            | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        if more {
            flags |= inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
        }
        let out_buf = memory.slice_mut(out, out_len)?;
        let (status, used, produced) = decompress(&mut state, &chunk[..n], out_buf, out_pos, flags);
        consumed += used as u64;
        out_pos += produced;
        match status {
            TINFLStatus::Done => return Ok(out_pos as u64),
            TINFLStatus::NeedsMoreInput if more => {}
            TINFLStatus::HasMoreOutput if out_pos < out_len => {}
            _ => return Err(err(ErrorKind::Inflate, consumed)),
        }
        if used == 0 && produced == 0 && !more {
            return Err(err(ErrorKind::Inflate, consumed));
        }
    }
    Err(err(ErrorKind::Inflate, consumed))
}

impl<D: BlockDevice, const C: usize, const Q: usize> BlockDevice for SparseExtent<D, C, Q> {
    fn geometry(&self) -> Geometry {
        let mut features = DeviceFeatures::UNMAP_READS_ZERO;
        if self.read_only {
            features |= DeviceFeatures::READ_ONLY;
        } else {
            features |= DeviceFeatures::WRITE_ZEROES | DeviceFeatures::UNMAP;
        }
        Geometry {
            block_size: SECTOR as u32,
            block_count: self.header.capacity,
            max_transfer_blocks: self.dev.geometry().max_transfer_blocks.max(1),
            queue_depth: u16::try_from(Q).unwrap_or(u16::MAX),
            features,
        }
    }

    fn submit(
        &mut self,
        _now: Instant,
        request: BlockRequest,
    ) -> core::result::Result<(), SubmitError> {
        if self
            .jobs
            .iter()
            .flatten()
            .any(|j| j.request.tag == request.tag)
        {
            return Err(SubmitError::new(SubmitErrorKind::DuplicateTag, request));
        }
        let slot = match self.jobs.iter().position(Option::is_none) {
            Some(i) => i,
            None if !self.jobs.is_full() => {
                let _ = self.jobs.push(None);
                self.jobs.len() - 1
            }
            None => return Err(SubmitError::new(SubmitErrorKind::QueueFull, request)),
        };
        if self.order.push_back(slot as u16).is_err() {
            return Err(SubmitError::new(SubmitErrorKind::QueueFull, request));
        }
        self.jobs[slot] = Some(Job {
            request,
            loads: 0,
            planned: 0,
            all_planned: false,
            started: false,
            outstanding: 0,
            error: None,
            next_child: 0,
        });
        Ok(())
    }

    /// Reads and writes of allocated grains whose grain table is cached go to the inner
    /// device as tagged children (the request completes once, with the first error); anything
    /// needing metadata I/O (a table miss, a new grain, a compressed grain) or a flush runs
    /// synchronously, alone, once earlier requests' children have completed.
    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        let mut next = None;
        for _ in 0..Q + 2 {
            let mut progress = false;
            if self.children > 0 || self.load_busy() {
                let jobs = &mut self.jobs;
                let children = &mut self.children;
                let mut meta = None;
                next = self.dev.poll(now, memory, &mut |c| {
                    if c.tag.0 >> 32 == META_TAG >> 32 {
                        meta = Some(c);
                        progress = true;
                        return;
                    }
                    let slot = (c.tag.0 >> 32) as usize;
                    if let Some(Some(j)) = jobs.get_mut(slot) {
                        j.outstanding = j.outstanding.saturating_sub(1);
                        if let Err(e) = c.result
                            && j.error.is_none()
                        {
                            j.error = Some(e);
                        }
                    }
                    *children = children.saturating_sub(1);
                    progress = true;
                });
                if let Some(c) = meta {
                    self.on_load_completion(memory, now, c);
                }
            }
            let before = self.children;
            while let Some(&slot) = self.order.front() {
                if !self.plan(slot as usize, now, memory) {
                    break;
                }
                self.order.pop_front();
                progress = true;
            }
            progress |= self.children != before;
            for job in self.jobs.iter_mut() {
                if let Some(j) = job
                    && j.all_planned
                    && j.outstanding == 0
                {
                    let result = j.error.map_or(Ok(()), Err);
                    done(Completion {
                        tag: j.request.tag,
                        result,
                    });
                    *job = None;
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        if next.is_none() && (self.children > 0 || self.load_busy() || !self.order.is_empty()) {
            return Some(now);
        }
        next
    }
}

/// How one piece of a request is served without metadata I/O.
enum Direct {
    Zeros,
    At(u64),
}

/// What stands in the way of serving a request without synchronous metadata I/O.
enum Obstacle {
    /// Grain table `gd_index` is not cached: load it asynchronously, then retry.
    Miss(u64),
    /// Allocation, a compressed grain, the first write's unclean flag: the slow path.
    Slow,
}

impl<D: BlockDevice, const C: usize, const Q: usize> SparseExtent<D, C, Q> {
    /// How the piece at byte `pos` (inside one grain) is served without metadata I/O.
    fn direct(&self, memory: &dyn Memory, write: bool, pos: u64) -> Option<Direct> {
        if self.header.is_compressed() || (write && !self.ready_for_direct_writes()) {
            return None;
        }
        let grain_bytes = self.header.grain_bytes();
        match self.cached_grain(memory, pos / grain_bytes)? {
            Ok(Grain::At(s)) => Some(Direct::At(s + (pos % grain_bytes) / SECTOR)),
            Ok(_) if !write => Some(Direct::Zeros),
            _ => None,
        }
    }

    /// The first obstacle to serving `request` directly, or `None` if there is none.
    fn obstacle(&self, memory: &dyn Memory, request: &BlockRequest) -> Option<Obstacle> {
        if !matches!(request.operation, Operation::Read | Operation::Write) {
            return Some(Obstacle::Slow);
        }
        let write = request.operation == Operation::Write;
        let grain_bytes = self.header.grain_bytes();
        let total = request.sg.total_len();
        let mut at = 0;
        while at < total {
            let pos = request.lba.0 * SECTOR + at;
            if self.direct(memory, write, pos).is_none() {
                let grain = pos / grain_bytes;
                let cached = self.cached_grain(memory, grain).is_some();
                return Some(
                    if cached || self.header.is_compressed() || grain >= self.header.grains() {
                        Obstacle::Slow
                    } else {
                        Obstacle::Miss(self.gd_index_of(grain))
                    },
                );
            }
            at += (grain_bytes - pos % grain_bytes).min(total - at);
        }
        None
    }

    fn plan(&mut self, slot: usize, now: Instant, memory: &mut dyn Memory) -> bool {
        let Some(Some(job)) = self.jobs.get(slot) else {
            return true;
        };
        if !job.started {
            let request = job.request.clone();
            let direct = match request.validate(&self.geometry()) {
                Err(e) => Some(Err(e)),
                Ok(()) => match self.obstacle(memory, &request) {
                    None => None,
                    Some(Obstacle::Miss(_)) if job.loads >= C => {
                        // More tables than the cache holds: the slow path walks them.
                        if self.children > 0 || self.load_busy() {
                            return false;
                        }
                        Some(self.execute(memory, now, &request))
                    }
                    Some(Obstacle::Miss(gd_index)) => {
                        if let Some(e) = self.take_load_error(gd_index) {
                            Some(Err(e.to_block_error()))
                        } else {
                            match self.start_load(now, gd_index) {
                                Ok(started) => {
                                    if started && let Some(Some(job)) = self.jobs.get_mut(slot) {
                                        job.loads += 1;
                                    }
                                    return false;
                                }
                                Err(e) => Some(Err(e.to_block_error())),
                            }
                        }
                    }
                    Some(Obstacle::Slow) => {
                        if self.children > 0 || self.load_busy() {
                            return false;
                        }
                        Some(self.execute(memory, now, &request))
                    }
                },
            };
            let Some(Some(job)) = self.jobs.get_mut(slot) else {
                return true;
            };
            match direct {
                Some(result) => {
                    job.error = result.err();
                    job.all_planned = true;
                    return true;
                }
                None => job.started = true,
            }
        }
        let Some(Some(job)) = self.jobs.get(slot) else {
            return true;
        };
        let request = job.request.clone();
        let write = request.operation == Operation::Write;
        let grain_bytes = self.header.grain_bytes();
        let total = request.sg.total_len();
        let mut at = job.planned;
        let mut child = job.next_child;
        let mut failure = None;
        let mut blocked = false;
        while at < total {
            let pos = request.lba.0 * SECTOR + at;
            let n = (grain_bytes - pos % grain_bytes).min(total - at);
            let Ok(piece) = request.sg.slice(at, n) else {
                failure = Some(BlockError::new(BE::InvalidRequest));
                break;
            };
            match self.direct(memory, write, pos) {
                None => {
                    failure = Some(BlockError::with_info(BE::MediumError, pos / SECTOR));
                    break;
                }
                Some(Direct::Zeros) => {
                    if zero_sg(memory, &piece).is_err() {
                        failure = Some(BlockError::new(BE::MemoryFault));
                        break;
                    }
                }
                Some(Direct::At(sector)) => {
                    let tag = Tag(((slot as u64) << 32) | u64::from(child));
                    let blocks = BlockCount((n / SECTOR) as u32);
                    let req = if write {
                        BlockRequest::write(tag, Lba(sector), blocks, piece)
                    } else {
                        BlockRequest::read(tag, Lba(sector), blocks, piece)
                    };
                    match self.dev.submit(now, req) {
                        Ok(()) => {
                            self.children += 1;
                            child += 1;
                            if let Some(Some(job)) = self.jobs.get_mut(slot) {
                                job.outstanding += 1;
                            }
                        }
                        Err(e) if e.kind == SubmitErrorKind::QueueFull => {
                            blocked = true;
                            break;
                        }
                        Err(_) => {
                            failure = Some(BlockError::new(BE::InvalidRequest));
                            break;
                        }
                    }
                }
            }
            at += n;
        }
        let Some(Some(job)) = self.jobs.get_mut(slot) else {
            return true;
        };
        job.planned = at;
        job.next_child = child;
        if let Some(e) = failure {
            job.error.get_or_insert(e);
            job.all_planned = true;
            return true;
        }
        if blocked {
            return false;
        }
        job.all_planned = true;
        true
    }
}

/// Writes the metadata of a new, empty hosted sparse extent described by `header` onto `dev`
/// (which must be at least `header.overhead` sectors long): the header, the embedded
/// `descriptor` (if `header.descriptor_size` is not 0), both grain directories pointing at
/// preallocated, zeroed grain tables. `scratch` is a sector of the address space.
pub fn format_sparse<D: BlockDevice + ?Sized>(
    dev: &mut D,
    memory: &mut dyn Memory,
    now: Instant,
    scratch: MemAddr,
    header: &SparseHeader,
    descriptor: &[u8],
) -> Result<()> {
    let geometry = dev.geometry();
    if geometry.block_size as u64 != SECTOR || geometry.block_count < header.overhead {
        return Err(err(ErrorKind::BadSize, geometry.block_count));
    }
    if descriptor.len() as u64 > header.descriptor_size * SECTOR {
        return Err(err(ErrorKind::BufferTooSmall, descriptor.len() as u64));
    }
    let mut tag = 0u64;
    let mut put =
        |memory: &mut dyn Memory, tag: &mut u64, sector: u64, bytes: &[u8]| -> Result<()> {
            let s = memory.slice_mut(scratch, SECTOR as usize)?;
            s.fill(0);
            s[..bytes.len()].copy_from_slice(bytes);
            let sg =
                SgList::single(scratch, SECTOR as u32).map_err(|_| err(ErrorKind::Memory, 0))?;
            transfer(dev, memory, now, tag, Operation::Write, sector, sg)
        };
    let mut h = [0u8; HEADER_LEN];
    header.emit(&mut h)?;
    put(memory, &mut tag, 0, &h)?;
    for i in 0..header.descriptor_size {
        let from = (i * SECTOR) as usize;
        let chunk = descriptor
            .get(from..descriptor.len().min(from + SECTOR as usize))
            .unwrap_or(&[]);
        put(memory, &mut tag, header.descriptor_offset + i, chunk)?;
    }
    let gts = header.gt_sectors();
    let entries = header.gd_entries();
    let mut dirs: heapless::Vec<u64, 2> = heapless::Vec::new();
    if header.has_redundant_gd() {
        let _ = dirs.push(header.rgd_offset);
    }
    let _ = dirs.push(header.gd_offset);
    for dir in dirs {
        let tables = dir + header.gd_sectors();
        for s in 0..header.gd_sectors() {
            let mut sector = [0u8; SECTOR as usize];
            for (k, e) in sector.chunks_exact_mut(4).enumerate() {
                let index = s * (SECTOR / 4) + k as u64;
                if index < entries {
                    let gt = u32::try_from(tables + index * gts)
                        .map_err(|_| err(ErrorKind::BadSize, index))?;
                    e.copy_from_slice(&gt.to_le_bytes());
                }
            }
            put(memory, &mut tag, dir + s, &sector)?;
        }
        for s in 0..entries * gts {
            put(memory, &mut tag, tables + s, &[])?;
        }
    }
    Ok(())
}

/// Writes a new, empty ESX delta (`COWD`) extent described by `header` onto `dev`: the
/// four-sector header naming `parent`, and a zeroed grain directory (grain tables are
/// allocated on first write). `scratch` is a sector of the address space.
pub fn format_cowd<D: BlockDevice + ?Sized>(
    dev: &mut D,
    memory: &mut dyn Memory,
    now: Instant,
    scratch: MemAddr,
    header: &CowdHeader,
    parent: &str,
) -> Result<()> {
    let mut bytes = [0u8; COWD_HEADER_LEN];
    header.emit(parent, &mut bytes)?;
    let gd_sectors = (u64::from(header.gd_entries) * 4).div_ceil(SECTOR);
    if dev.geometry().block_count < u64::from(header.gd_offset) + gd_sectors {
        return Err(err(ErrorKind::BadSize, dev.geometry().block_count));
    }
    let mut tag = 0u64;
    let sg = SgList::single(scratch, SECTOR as u32).map_err(|_| err(ErrorKind::Memory, 0))?;
    for (i, chunk) in bytes.chunks(SECTOR as usize).enumerate() {
        memory.write(scratch, chunk)?;
        transfer(
            dev,
            memory,
            now,
            &mut tag,
            Operation::Write,
            i as u64,
            sg.clone(),
        )?;
    }
    zero_range(memory, scratch, SECTOR)?;
    for s in 0..gd_sectors {
        transfer(
            dev,
            memory,
            now,
            &mut tag,
            Operation::Write,
            u64::from(header.gd_offset) + s,
            sg.clone(),
        )?;
    }
    Ok(())
}
