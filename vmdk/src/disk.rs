//! Virtual disks: a descriptor's extents, and a chain of delta disks over a base.
//!
//! A [`VirtualDisk`] holds the layers of a snapshot chain (index 0 is the base, the last is the
//! top, which takes the writes). Each layer is a descriptor's extents: flat, zero or hosted
//! sparse. A merged allocation map (one byte per grain, in a caller's buffer) records which
//! layer serves each grain, so a read goes straight to that layer whatever the chain's depth.

use block::{
    BlockDevice, BlockError, BlockRequest, Completion, DeviceFeatures, ErrorKind as BE, Geometry,
    Instant, MemAddr, Memory, Operation, SgList, SubmitError, SubmitErrorKind,
};

use crate::descriptor::{
    Access, CreateType, Descriptor, ExtentSpec, ExtentType, NO_PARENT_CID, NewDescriptor,
    write_descriptor,
};
use crate::error::{Error, ErrorKind, Result, err};
use crate::extent::{
    MetaRegion, SparseExtent, format_cowd, format_sparse, transfer, zero_range, zero_sg,
};
use crate::sparse::{COWD_GTES_PER_GT, COWD_MAGIC, CowdHeader, MAGIC, SECTOR, SparseHeader, le32};

/// Grain table cache slots of each sparse extent of a virtual disk.
pub const CACHE_SLOTS: usize = 4;
/// The longest file name a layer records.
pub const MAX_NAME: usize = 256;
/// A map entry for a grain no layer has: it reads as zeros.
pub const UNALLOCATED: u8 = 0xFF;
/// Sectors of embedded descriptor in the sparse files this crate creates (as QEMU does).
pub const EMBEDDED_DESCRIPTOR_SECTORS: u64 = 20;
/// Sectors of the unit of the allocation map when no layer is sparse.
const FLAT_UNIT_SECTORS: u64 = 128;
use crate::extent::{ALLOC_TAG, AllocStep, META_TAG, SYNC_TAGS};

type Sparse<D> = SparseExtent<D, CACHE_SLOTS, 1>;

/// Where a virtual disk's files come from: the host's file system, or anything else that can
/// hand out block devices by name.
pub trait ExtentSource {
    /// The device type of an opened file.
    type Device: BlockDevice;

    /// Opens the file `name` (as written in a descriptor, relative to the top descriptor's
    /// directory) as a device of 512-byte blocks.
    fn open(&mut self, name: &str, writable: bool) -> Result<Self::Device>;

    /// Reads up to `buf.len()` bytes from the start of file `name`; returns how many.
    fn read_head(&mut self, name: &str, buf: &mut [u8]) -> Result<usize>;

    /// Creates file `name`, `sectors` long (sparse on hosts that can), and opens it writable.
    fn create(&mut self, name: &str, sectors: u64) -> Result<Self::Device>;

    /// Writes a small text file (a descriptor) `name`. The default refuses.
    fn write_text(&mut self, name: &str, text: &[u8]) -> Result<()> {
        let _ = (name, text);
        Err(err(ErrorKind::Unsupported, 0))
    }

    /// Makes file `name` at least `sectors` long (sparse on hosts that can), so that a
    /// writable sparse extent has room to append grains; [`VirtualDisk::close`] trims it back.
    /// The default does nothing: writes that need new grains then fail once the file is full.
    fn reserve(&mut self, name: &str, sectors: u64) -> Result<()> {
        let _ = (name, sectors);
        Ok(())
    }

    /// Shortens file `name` to `sectors` once it is closed cleanly. The default does nothing.
    fn trim(&mut self, name: &str, sectors: u64) -> Result<()> {
        let _ = (name, sectors);
        Ok(())
    }
}

/// What kind of extent an [`ExtentInfo`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentKind {
    /// Raw bytes of a file from `offset` sectors on (FLAT, VMFS, RDM).
    Flat {
        /// Where the extent starts in its file.
        offset: u64,
    },
    /// No file; reads zeros.
    Zero,
    /// A hosted sparse (`KDMV`) file.
    HostedSparse,
    /// A stream-optimized (compressed) sparse file, read-only.
    StreamOptimized,
    /// An ESX delta (`COWD`) file.
    VmfsSparse,
}

/// One extent of a layer, for `info`-style tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentInfo<'a> {
    /// Its first virtual sector.
    pub start: u64,
    /// Its size in sectors.
    pub sectors: u64,
    /// Its file (empty for a zero extent).
    pub file: &'a str,
    /// What it is.
    pub kind: ExtentKind,
}

/// The format of a new snapshot's delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaFormat {
    /// A monolithicSparse (`KDMV`) file with an embedded descriptor, as QEMU makes.
    HostedSparse,
    /// A `vmfsSparse` descriptor and a `COWD` delta file, as ESX makes.
    VmfsSparse,
}

/// How to open a virtual disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// Open every layer read-only.
    pub read_only: bool,
    /// Open the parents writable too (needed to consolidate).
    pub parents_writable: bool,
}

/// One extent of a layer. (No heap to box the sparse variant in; layers are few.)
#[allow(clippy::large_enum_variant)]
enum LayerExtent<D: BlockDevice> {
    Flat { dev: D, offset: u64, writable: bool },
    Zero,
    Sparse(Sparse<D>),
}

struct Placed<D: BlockDevice> {
    /// Children outstanding on this extent's device.
    inflight: u32,
    file: heapless::String<MAX_NAME>,
    start: u64,
    sectors: u64,
    extent: LayerExtent<D>,
}

/// What a layer of a chain is, for `info`-style tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The descriptor's file name.
    pub name: heapless::String<MAX_NAME>,
    /// `CID`.
    pub cid: u32,
    /// `parentCID`.
    pub parent_cid: u32,
    /// `createType`.
    pub create_type: CreateType,
    /// Number of extents.
    pub extents: usize,
}

struct Layer<D: BlockDevice, const E: usize> {
    info: LayerInfo,
    /// Written since it was opened: its `CID` changes at close.
    written: bool,
    extents: heapless::Vec<Placed<D>, E>,
}

impl<D: BlockDevice, const E: usize> Layer<D, E> {
    /// Reads `sg` at virtual sector `sector`, all inside this layer.
    fn read(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        tag: &mut u64,
        sector: u64,
        sg: &SgList,
    ) -> Result<()> {
        let mut done = 0u64;
        let total = sg.total_len();
        for placed in self.extents.iter_mut() {
            if done >= total {
                break;
            }
            let pos = sector + done / SECTOR;
            let end = placed.start + placed.sectors;
            if pos < placed.start || pos >= end {
                continue;
            }
            let rel = pos - placed.start;
            let n = ((end - pos) * SECTOR).min(total - done);
            let piece = sg.slice(done, n).map_err(|_| err(ErrorKind::Memory, 0))?;
            match &mut placed.extent {
                LayerExtent::Flat { dev, offset, .. } => {
                    transfer(dev, memory, now, tag, Operation::Read, *offset + rel, piece)?
                }
                LayerExtent::Zero => zero_sg(memory, &piece)?,
                LayerExtent::Sparse(s) => {
                    let gb = s.header().grain_bytes();
                    let mut at = 0;
                    while at < n {
                        let byte = rel * SECTOR + at;
                        let m = (gb - byte % gb).min(n - at);
                        let p = piece.slice(at, m).map_err(|_| err(ErrorKind::Memory, 0))?;
                        if !s.read_piece(memory, now, byte / gb, byte % gb, &p)? {
                            zero_sg(memory, &p)?;
                        }
                        at += m;
                    }
                }
            }
            done += n;
        }
        if done < total {
            return Err(err(ErrorKind::BadMetadata, sector));
        }
        Ok(())
    }
}

/// A virtual disk: the layers of a snapshot chain, each a descriptor's extents, with a merged
/// allocation map in `map` (one byte per grain: the index of the layer serving it).
///
/// `E` is the most extents per layer, `DEPTH` the longest chain, `Q` the most outstanding
/// requests. As a [`BlockDevice`] of 512-byte blocks, requests start in order at `poll`: one
/// whose pieces are all served without metadata I/O (allocated grains with cached tables,
/// flat and zero extents, unallocated grains) becomes tagged child requests on the serving
/// layers' devices and completes, once, with the first error, when they all have; a grain
/// table missing from a cache is loaded asynchronously first, and a copy-on-write of a new
/// grain in the top delta runs asynchronously in stages (one at a time); anything else (a new
/// grain table, the first write's unclean flag, a flush, zeroing) is the slow path, run
/// synchronously once nothing is outstanding.
///
/// The structure holds every layer's extents inline (no heap): with the defaults and a
/// device type of a few hundred bytes it is tens of kilobytes, so keep it off small stacks.
pub struct VirtualDisk<
    'm,
    D: BlockDevice,
    const E: usize = 4,
    const DEPTH: usize = 32,
    const Q: usize = 32,
> {
    layers: heapless::Vec<Layer<D, E>, DEPTH>,
    map: &'m mut [u8],
    unit_sectors: u64,
    capacity: u64,
    meta: MetaRegion,
    tag: u64,
    read_only: bool,
    /// Accepted requests by slot; a child's tag carries its parent's slot.
    slots: heapless::Vec<Option<Inflight>, Q>,
    /// Slots whose children are not all submitted yet, in arrival order.
    order: heapless::Deque<u16, Q>,
    /// Children outstanding on all inner devices.
    children: u32,
    /// Sparse extents with a grain table load in flight.
    loading: u32,
    /// Per layer, children and loads in flight, so that polling skips idle layers without
    /// touching them (a deep chain costs no more than a shallow one).
    busy: [u32; DEPTH],
    /// The asynchronous copy-on-write allocation in flight, if any (one at a time).
    alloc: Option<AllocOwner>,
}

/// Who an allocation in flight works for, and where.
#[derive(Debug, Clone, Copy)]
struct AllocOwner {
    /// The request's slot.
    slot: usize,
    /// The top layer's extent that allocates.
    extent: usize,
    /// The map unit (grain) being allocated.
    unit: u64,
    /// The extent whose device reads the previous contents, while that read is in flight.
    fill: Option<(usize, usize)>,
    /// The write's piece: bytes `[piece_at, piece_at + piece_len)` of the request's SG list.
    piece_at: u64,
    piece_len: u64,
}

/// A request being served: its children are submitted in order from `planned` bytes on.
struct Inflight {
    request: BlockRequest,
    /// Grain table loads started for it; past the cache size it takes the slow path.
    loads: usize,
    /// Bytes of the request whose children were submitted (or that were served directly).
    planned: u64,
    /// Whether every child has been submitted (or the request was served synchronously).
    all_planned: bool,
    /// Whether the request was checked and found servable without metadata I/O.
    started: bool,
    outstanding: u32,
    error: Option<BlockError>,
    next_child: u32,
}

/// What stands in the way of serving a request without synchronous metadata I/O.
enum Obstacle {
    /// A grain table of extent `extent` of layer `layer` is not cached: load it
    /// asynchronously, then retry.
    Miss {
        layer: usize,
        extent: usize,
        gd_index: u64,
    },
    /// Allocation, copy-on-write, a compressed grain, a flush: the slow path.
    Slow,
}

/// How one piece of a request is served without metadata I/O.
enum Route {
    /// Zeros are copied into the memory (unallocated or zeroed grain, zero extent).
    Zeros,
    /// A transfer on extent `extent` of layer `layer` at `sector` of its device.
    Device {
        layer: usize,
        extent: usize,
        sector: u64,
    },
}

fn copy_name(name: &[u8]) -> Result<heapless::String<MAX_NAME>> {
    let s = core::str::from_utf8(name).map_err(|_| err(ErrorKind::BadDescriptor, 0))?;
    let mut out = heapless::String::new();
    out.push_str(s)
        .map_err(|_| err(ErrorKind::CapacityExceeded, name.len() as u64))?;
    Ok(out)
}

/// Finds the descriptor text in the head of a file: the whole head for a text descriptor, the
/// embedded descriptor for a hosted sparse file. Returns its range in `head`.
fn descriptor_text(head: &[u8], len: usize) -> Result<(usize, usize)> {
    let head = &head[..len];
    if head.len() >= 4 && le32(head, 0) == MAGIC {
        let h = SparseHeader::parse(head)?;
        let start = h
            .descriptor_offset
            .checked_mul(SECTOR)
            .ok_or(err(ErrorKind::BadHeader, 0))?;
        let size = h
            .descriptor_size
            .checked_mul(SECTOR)
            .ok_or(err(ErrorKind::BadHeader, 0))?;
        if h.descriptor_offset == 0 || size == 0 {
            return Err(err(ErrorKind::BadDescriptor, 0));
        }
        let end = start
            .checked_add(size)
            .ok_or(err(ErrorKind::BadHeader, 0))?;
        if end > head.len() as u64 {
            return Err(err(ErrorKind::BufferTooSmall, end));
        }
        return Ok((start as usize, end as usize));
    }
    if head.len() >= 4 && le32(head, 0) == COWD_MAGIC {
        return Err(err(ErrorKind::Unsupported, u64::from(COWD_MAGIC)));
    }
    Ok((0, head.len()))
}

impl<'m, D: BlockDevice, const E: usize, const DEPTH: usize, const Q: usize>
    VirtualDisk<'m, D, E, DEPTH, Q>
{
    const DEPTH_FITS_MAP: () = assert!(DEPTH < UNALLOCATED as usize && DEPTH > 0);

    /// Opens the virtual disk whose (top) descriptor is file `name`, following
    /// `parentFileNameHint` down the chain (checking each parent's `CID` against its child's
    /// `parentCID`) for at most `DEPTH` layers.
    ///
    /// `text` holds each descriptor while it is parsed (20 sectors cover what QEMU and VMware
    /// write); `meta` is the address-space region the sparse extents keep their metadata in
    /// (what is left is kept for snapshots); `map` needs one byte per grain of the disk.
    #[allow(clippy::too_many_arguments)]
    pub fn open<S: ExtentSource<Device = D>>(
        source: &mut S,
        name: &str,
        text: &mut [u8],
        meta: MetaRegion,
        map: &'m mut [u8],
        memory: &mut dyn Memory,
        now: Instant,
        options: OpenOptions,
    ) -> Result<Self> {
        let () = Self::DEPTH_FITS_MAP;
        let mut disk = Self {
            layers: heapless::Vec::new(),
            map,
            unit_sectors: 0,
            capacity: 0,
            meta,
            tag: SYNC_TAGS,
            read_only: options.read_only,
            slots: heapless::Vec::new(),
            order: heapless::Deque::new(),
            children: 0,
            loading: 0,
            busy: [0; DEPTH],
            alloc: None,
        };
        let mut next: Option<(heapless::String<MAX_NAME>, u32)> =
            Some((copy_name(name.as_bytes())?, 0));
        let mut top = true;
        for _ in 0..=DEPTH {
            let Some((file, expected_cid)) = next.take() else {
                break;
            };
            if disk.layers.is_full() {
                return Err(err(ErrorKind::ChainTooLong, DEPTH as u64));
            }
            let writable = !options.read_only && (top || options.parents_writable);
            let (layer, parent) = disk.open_layer(source, &file, text, memory, now, writable)?;
            if !top && layer.info.cid != expected_cid {
                return Err(err(ErrorKind::CidMismatch, u64::from(layer.info.cid)));
            }
            next = parent.map(|p| (p, layer.info.parent_cid));
            let _ = disk.layers.push(layer);
            top = false;
        }
        if next.is_some() {
            return Err(err(ErrorKind::ChainTooLong, DEPTH as u64));
        }
        // Loaded top first; the base is layer 0.
        disk.layers.reverse();
        disk.build_map(memory, now)?;
        Ok(disk)
    }

    /// Opens one descriptor's extents; returns the layer and its parent's file name.
    fn open_layer<S: ExtentSource<Device = D>>(
        &mut self,
        source: &mut S,
        file: &str,
        text: &mut [u8],
        memory: &mut dyn Memory,
        now: Instant,
        writable: bool,
    ) -> Result<(Layer<D, E>, Option<heapless::String<MAX_NAME>>)> {
        let len = source.read_head(file, text)?;
        // A descriptor embedded in a sparse file (monolithicSparse, streamOptimized) describes
        // that very file: its sparse extent is the file itself, whatever name the descriptor
        // recorded when it was made (the file may have been renamed or copied since), as QEMU
        // reads it.
        let embedded = len >= 4 && le32(text, 0) == MAGIC;
        let (start, end) = descriptor_text(text, len.min(text.len()))?;
        let d = Descriptor::<128>::parse(&text[start..end])?;
        let create_type = d.create_type().ok_or(err(ErrorKind::BadDescriptor, 0))?;
        let info = LayerInfo {
            name: copy_name(file.as_bytes())?,
            cid: d.cid().unwrap_or(NO_PARENT_CID),
            parent_cid: d.parent_cid().unwrap_or(NO_PARENT_CID),
            create_type,
            extents: d.extents().count(),
        };
        let parent = match (info.parent_cid, d.parent_file_name_hint()) {
            (NO_PARENT_CID, _) | (_, None) => None,
            (_, Some(hint)) => Some(copy_name(hint)?),
        };
        let capacity = d.capacity_sectors().ok_or(err(ErrorKind::BadSize, 0))?;
        if capacity == 0 || capacity > crate::sparse::MAX_CAPACITY_SECTORS {
            return Err(err(ErrorKind::BadSize, capacity));
        }
        if self.capacity == 0 {
            self.capacity = capacity;
        } else if self.capacity != capacity {
            return Err(err(ErrorKind::BadSize, capacity));
        }
        let mut layer = Layer {
            info,
            written: false,
            extents: heapless::Vec::new(),
        };
        let mut start_sector = 0u64;
        for x in d.extents() {
            if layer.extents.is_full() {
                return Err(err(ErrorKind::CapacityExceeded, E as u64));
            }
            let w = writable && x.access == Access::ReadWrite;
            let extent = match x.kind {
                ExtentType::Zero => LayerExtent::Zero,
                k if k.is_flat_like() => {
                    let name = x.file_name_str().ok_or(err(ErrorKind::BadDescriptor, 0))?;
                    let dev = source.open(name, w)?;
                    let end = x
                        .offset
                        .checked_add(x.sectors)
                        .ok_or(err(ErrorKind::BadSize, x.offset))?;
                    if end > dev.geometry().block_count
                        || dev.geometry().block_size as u64 != SECTOR
                    {
                        return Err(err(ErrorKind::BadSize, end));
                    }
                    LayerExtent::Flat {
                        dev,
                        offset: x.offset,
                        writable: w,
                    }
                }
                ExtentType::Sparse | ExtentType::VmfsSparse => {
                    let name = if embedded {
                        file
                    } else {
                        x.file_name_str().ok_or(err(ErrorKind::BadDescriptor, 0))?
                    };
                    let mut dev = source.open(name, w)?;
                    if w {
                        // Room for every grain and table the extent may still need.
                        let tables = x.sectors / 64 + 64;
                        let room = dev
                            .geometry()
                            .block_count
                            .checked_add(x.sectors)
                            .and_then(|n| n.checked_add(tables))
                            .ok_or(err(ErrorKind::BadSize, x.sectors))?;
                        drop(dev);
                        source.reserve(name, room)?;
                        dev = source.open(name, w)?;
                    }
                    let s = Sparse::open(dev, self.meta, memory, now, !w)?;
                    if s.capacity() < x.sectors {
                        return Err(err(ErrorKind::BadSize, x.sectors));
                    }
                    let used = crate::extent::meta_bytes_needed(s.header(), CACHE_SLOTS);
                    self.meta
                        .take(used)
                        .ok_or(err(ErrorKind::BufferTooSmall, used))?;
                    let g = s.grain_sectors();
                    if self.unit_sectors == 0 {
                        self.unit_sectors = g;
                    }
                    if g != self.unit_sectors || !start_sector.is_multiple_of(g) {
                        return Err(err(ErrorKind::Unsupported, g));
                    }
                    LayerExtent::Sparse(s)
                }
                _ => return Err(err(ErrorKind::Unsupported, 0)),
            };
            let file = copy_name(x.file_name.unwrap_or(b""))?;
            let _ = layer.extents.push(Placed {
                inflight: 0,
                file,
                start: start_sector,
                sectors: x.sectors,
                extent,
            });
            start_sector += x.sectors;
        }
        Ok((layer, parent))
    }

    fn build_map(&mut self, memory: &mut dyn Memory, now: Instant) -> Result<()> {
        if self.unit_sectors == 0 {
            // No sparse extent: any unit works; the smallest power of two from 64 KiB up that
            // lets `map` cover the disk (a later snapshot uses it as its grain).
            let per_entry = self.capacity.div_ceil(self.map.len().max(1) as u64);
            self.unit_sectors = per_entry.max(FLAT_UNIT_SECTORS).next_power_of_two();
        }
        let units = self.capacity.div_ceil(self.unit_sectors);
        let units = usize::try_from(units).map_err(|_| err(ErrorKind::BufferTooSmall, units))?;
        if self.map.len() < units {
            return Err(err(ErrorKind::BufferTooSmall, units as u64));
        }
        self.map[..units].fill(UNALLOCATED);
        let unit = self.unit_sectors;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for placed in layer.extents.iter_mut() {
                match &mut placed.extent {
                    LayerExtent::Sparse(s) => {
                        let first = placed.start / unit;
                        let map = &mut *self.map;
                        s.scan(memory, now, &mut |g, _| {
                            if let Some(m) = map.get_mut((first + g) as usize) {
                                *m = i as u8;
                            }
                        })?;
                    }
                    _ => {
                        let a = placed.start / unit;
                        let b = (placed.start + placed.sectors).div_ceil(unit);
                        self.map[a as usize..b as usize].fill(i as u8);
                    }
                }
            }
        }
        Ok(())
    }

    /// The capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The number of layers (1 for a disk without snapshots).
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// What layer `i` is (0 is the base).
    pub fn layer(&self, i: usize) -> Option<&LayerInfo> {
        self.layers.get(i).map(|l| &l.info)
    }

    /// The extents of layer `i` (0 is the base), in order, for `info`-style tools.
    pub fn extents(&self, i: usize) -> impl Iterator<Item = ExtentInfo<'_>> + '_ {
        self.layers.get(i).into_iter().flat_map(|l| {
            l.extents.iter().map(|p| ExtentInfo {
                start: p.start,
                sectors: p.sectors,
                file: &p.file,
                kind: match &p.extent {
                    LayerExtent::Flat { offset, .. } => ExtentKind::Flat { offset: *offset },
                    LayerExtent::Zero => ExtentKind::Zero,
                    LayerExtent::Sparse(s) if s.is_cowd() => ExtentKind::VmfsSparse,
                    LayerExtent::Sparse(s) if s.is_compressed() => ExtentKind::StreamOptimized,
                    LayerExtent::Sparse(_) => ExtentKind::HostedSparse,
                },
            })
        })
    }

    /// Sectors per entry of the allocation map (the grain size).
    pub fn unit_sectors(&self) -> u64 {
        self.unit_sectors
    }

    /// The layer that serves map unit `unit`, or `None` if no layer has it (it reads as zeros).
    pub fn serving_layer(&self, unit: u64) -> Option<usize> {
        let v = *self.map.get(usize::try_from(unit).ok()?)?;
        (v != UNALLOCATED).then_some(v as usize)
    }

    /// The allocation map as runs: `(first sector, sectors, serving layer)` for each run of
    /// grains served by the same layer (`None`: no layer has them; they read as zeros), in
    /// order, from sector `from` on. For `map`-style tools.
    pub fn runs(&self, from: u64) -> impl Iterator<Item = (u64, u64, Option<usize>)> + '_ {
        let unit = self.unit_sectors.max(1);
        let units = self.capacity.div_ceil(unit);
        let mut u = from / unit;
        core::iter::from_fn(move || {
            if u >= units {
                return None;
            }
            let v = *self.map.get(u as usize)?;
            let start = u;
            while u < units && self.map.get(u as usize) == Some(&v) {
                u += 1;
            }
            let first = start * unit;
            let end = (u * unit).min(self.capacity);
            Some((first, end - first, (v != UNALLOCATED).then_some(v as usize)))
        })
    }

    /// Visits each grain that the sparse extents of layer `i` (0 is the base) have, allocated
    /// or zeroed, as `(map unit, grain)`; flat and zero extents are not visited. For
    /// `map`-style tools that tell zeroed grains from data. Call it with no request
    /// outstanding.
    pub fn scan_layer(
        &mut self,
        i: usize,
        memory: &mut dyn Memory,
        now: Instant,
        visit: &mut dyn FnMut(u64, crate::sparse::Grain),
    ) -> Result<()> {
        let unit = self.unit_sectors.max(1);
        let layer = self
            .layers
            .get_mut(i)
            .ok_or(err(ErrorKind::ChainTooLong, i as u64))?;
        for placed in layer.extents.iter_mut() {
            if let LayerExtent::Sparse(s) = &mut placed.extent {
                let first = placed.start / unit;
                s.scan(memory, now, &mut |g, grain| visit(first + g, grain))?;
            }
        }
        Ok(())
    }

    /// Checks every sparse extent of every layer (see [`SparseExtent::check`]); returns the
    /// reports summed. Call it with no request outstanding.
    pub fn check(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
    ) -> Result<crate::extent::CheckReport> {
        let mut total = crate::extent::CheckReport::default();
        for layer in self.layers.iter_mut() {
            for placed in layer.extents.iter_mut() {
                if let LayerExtent::Sparse(s) = &mut placed.extent {
                    let r = s.check(memory, now)?;
                    total.allocated += r.allocated;
                    total.zeroed += r.zeroed;
                    total.grains_in_metadata += r.grains_in_metadata;
                    total.redundant_mismatches += r.redundant_mismatches;
                    total.used_sectors += r.used_sectors;
                }
            }
        }
        Ok(total)
    }

    /// Flushes every writable device.
    fn flush_all(&mut self, memory: &mut dyn Memory, now: Instant) -> Result<()> {
        for layer in self.layers.iter_mut() {
            for placed in layer.extents.iter_mut() {
                match &mut placed.extent {
                    LayerExtent::Flat {
                        dev,
                        writable: true,
                        ..
                    } => transfer(
                        dev,
                        memory,
                        now,
                        &mut self.tag,
                        Operation::Flush,
                        0,
                        SgList::new(),
                    )?,
                    LayerExtent::Sparse(s) if !s.is_read_only() => transfer(
                        s.device_mut(),
                        memory,
                        now,
                        &mut self.tag,
                        Operation::Flush,
                        0,
                        SgList::new(),
                    )?,
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Makes `sectors` sectors at `sector` read as zeros (write-zeroes and unmap: a delta
    /// cannot give space back while a parent holds data, so both zero). Whole grains of a
    /// sparse top become zeroed-grain entries where the header allows them.
    fn zero_range(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        sector: u64,
        sectors: u64,
    ) -> Result<()> {
        if self.read_only {
            return Err(err(ErrorKind::ReadOnly, sector));
        }
        let unit_bytes = self.unit_sectors * SECTOR;
        let total = sectors * SECTOR;
        let top_index = self
            .layers
            .len()
            .checked_sub(1)
            .ok_or(err(ErrorKind::BadMetadata, 0))?;
        let (below, top) = self.layers.split_at_mut(top_index);
        let top = &mut top[0];
        top.written = true;
        let mut done = 0u64;
        while done < total {
            let byte = sector * SECTOR + done;
            let unit = byte / unit_bytes;
            let pos = byte / SECTOR;
            let placed = top
                .extents
                .iter_mut()
                .find(|p| pos >= p.start && pos < p.start + p.sectors)
                .ok_or(err(ErrorKind::BadMetadata, pos))?;
            let rel = pos - placed.start;
            let n = (unit_bytes - byte % unit_bytes)
                .min(total - done)
                .min((placed.sectors - rel) * SECTOR);
            let serving = *self
                .map
                .get(unit as usize)
                .ok_or(err(ErrorKind::BadMetadata, unit))?;
            match &mut placed.extent {
                LayerExtent::Flat {
                    dev,
                    offset,
                    writable,
                } => {
                    if !*writable {
                        return Err(err(ErrorKind::ReadOnly, pos));
                    }
                    self.tag = self.tag.wrapping_add(1);
                    let blocks =
                        u32::try_from(n / SECTOR).map_err(|_| err(ErrorKind::BadSize, n))?;
                    let req = BlockRequest::write_zeroes(
                        block::Tag(self.tag),
                        block::Lba(*offset + rel),
                        block::BlockCount(blocks),
                    );
                    let driven = block::run_to_completion(
                        dev,
                        memory,
                        now,
                        req,
                        crate::extent::MAX_POLLS,
                        &mut |_| {},
                    )?;
                    driven.completion.result.map_err(Error::from)?;
                }
                LayerExtent::Zero => {}
                LayerExtent::Sparse(s) => {
                    let tag = &mut self.tag;
                    let unit_start = unit * self.unit_sectors;
                    let capacity = self.capacity;
                    let below = &mut *below;
                    let parent_has_data = serving != UNALLOCATED && (serving as usize) < top_index;
                    let mut fill = |m: &mut dyn Memory, now: Instant, at: MemAddr| -> Result<()> {
                        match below.get_mut(serving as usize) {
                            Some(layer) if serving != UNALLOCATED => {
                                // The last grain of a disk may be partial: zero the rest.
                                let fill = unit_bytes.min((capacity - unit_start) * SECTOR);
                                if fill < unit_bytes {
                                    zero_range(m, at, unit_bytes)?;
                                }
                                let len = u32::try_from(fill)
                                    .map_err(|_| err(ErrorKind::BadSize, fill))?;
                                let sg = SgList::single(at, len)
                                    .map_err(|_| err(ErrorKind::Memory, 0))?;
                                layer.read(m, now, tag, unit_start, &sg)
                            }
                            _ => zero_range(m, at, unit_bytes),
                        }
                    };
                    let gb = s.header().grain_bytes();
                    s.zero_piece(
                        memory,
                        now,
                        rel * SECTOR / gb,
                        (rel * SECTOR) % gb,
                        n,
                        parent_has_data,
                        &mut fill,
                    )?;
                    if serving != UNALLOCATED {
                        self.map[unit as usize] = top_index as u8;
                    }
                }
            }
            done += n;
        }
        Ok(())
    }

    fn read_range(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        sector: u64,
        sg: &SgList,
    ) -> Result<()> {
        let unit_bytes = self.unit_sectors * SECTOR;
        let total = sg.total_len();
        let mut done = 0u64;
        while done < total {
            let byte = sector * SECTOR + done;
            let unit = byte / unit_bytes;
            // Coalesce following units served by the same layer.
            let serving = *self
                .map
                .get(unit as usize)
                .ok_or(err(ErrorKind::BadMetadata, unit))?;
            let mut end = (unit + 1) * unit_bytes;
            while end < sector * SECTOR + total
                && self.map.get((end / unit_bytes) as usize) == Some(&serving)
            {
                end += unit_bytes;
            }
            let n = (end - byte).min(total - done);
            let piece = sg.slice(done, n).map_err(|_| err(ErrorKind::Memory, 0))?;
            if serving == UNALLOCATED {
                zero_sg(memory, &piece)?;
            } else {
                let layer = self
                    .layers
                    .get_mut(serving as usize)
                    .ok_or(err(ErrorKind::BadMetadata, unit))?;
                layer.read(memory, now, &mut self.tag, byte / SECTOR, &piece)?;
            }
            done += n;
        }
        Ok(())
    }

    fn write_range(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        sector: u64,
        sg: &SgList,
    ) -> Result<()> {
        if self.read_only {
            return Err(err(ErrorKind::ReadOnly, sector));
        }
        let unit_bytes = self.unit_sectors * SECTOR;
        let total = sg.total_len();
        let top_index = self
            .layers
            .len()
            .checked_sub(1)
            .ok_or(err(ErrorKind::BadMetadata, 0))?;
        let (below, top) = self.layers.split_at_mut(top_index);
        let top = &mut top[0];
        top.written = true;
        let mut done = 0u64;
        while done < total {
            let byte = sector * SECTOR + done;
            let unit = byte / unit_bytes;
            let pos = byte / SECTOR;
            let placed = top
                .extents
                .iter_mut()
                .find(|p| pos >= p.start && pos < p.start + p.sectors)
                .ok_or(err(ErrorKind::BadMetadata, pos))?;
            let rel = pos - placed.start;
            let n = (unit_bytes - byte % unit_bytes)
                .min(total - done)
                .min((placed.sectors - rel) * SECTOR);
            let piece = sg.slice(done, n).map_err(|_| err(ErrorKind::Memory, 0))?;
            let serving = *self
                .map
                .get(unit as usize)
                .ok_or(err(ErrorKind::BadMetadata, unit))?;
            match &mut placed.extent {
                LayerExtent::Flat {
                    dev,
                    offset,
                    writable,
                } => {
                    if !*writable {
                        return Err(err(ErrorKind::ReadOnly, pos));
                    }
                    transfer(
                        dev,
                        memory,
                        now,
                        &mut self.tag,
                        Operation::Write,
                        *offset + rel,
                        piece,
                    )?;
                }
                LayerExtent::Zero => return Err(err(ErrorKind::ReadOnly, pos)),
                LayerExtent::Sparse(s) => {
                    let tag = &mut self.tag;
                    let unit_start = unit * self.unit_sectors;
                    let capacity = self.capacity;
                    let below = &mut *below;
                    let mut fill = |m: &mut dyn Memory, now: Instant, at: MemAddr| -> Result<()> {
                        match below.get_mut(serving as usize) {
                            Some(layer) if serving != UNALLOCATED => {
                                // The last grain of a disk may be partial: zero the rest.
                                let fill = unit_bytes.min((capacity - unit_start) * SECTOR);
                                if fill < unit_bytes {
                                    zero_range(m, at, unit_bytes)?;
                                }
                                let len = u32::try_from(fill)
                                    .map_err(|_| err(ErrorKind::BadSize, fill))?;
                                let sg = SgList::single(at, len)
                                    .map_err(|_| err(ErrorKind::Memory, 0))?;
                                layer.read(m, now, tag, unit_start, &sg)
                            }
                            _ => zero_range(m, at, unit_bytes),
                        }
                    };
                    let gb = s.header().grain_bytes();
                    s.write_piece(
                        memory,
                        now,
                        rel * SECTOR / gb,
                        (rel * SECTOR) % gb,
                        &piece,
                        &mut fill,
                    )?;
                    self.map[unit as usize] = top_index as u8;
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Flushes every writable extent and marks the sparse ones cleanly closed; a host may then
    /// trim the top's file to what it uses.
    ///
    /// Every layer written since it was opened gets a new `CID` in its descriptor first (as
    /// QEMU and VMware do when content changes), so that a delta made earlier from it no longer
    /// opens. `text` is a work buffer for the descriptors (twice the largest one). Call it with
    /// no request outstanding.
    pub fn close<S: ExtentSource<Device = D>>(
        &mut self,
        source: &mut S,
        text: &mut [u8],
        memory: &mut dyn Memory,
        now: Instant,
    ) -> Result<()> {
        if self.children > 0 || self.slots.iter().any(Option::is_some) {
            return Err(err(ErrorKind::Io, u64::from(self.children)));
        }
        for i in 0..self.layers.len() {
            if self.layers[i].written {
                self.new_cid(i, source, text, memory, now)?;
                self.layers[i].written = false;
            }
        }
        for layer in self.layers.iter_mut() {
            for placed in layer.extents.iter_mut() {
                match &mut placed.extent {
                    LayerExtent::Sparse(s) if !s.is_read_only() => {
                        s.close(memory, now)?;
                    }
                    LayerExtent::Flat {
                        dev,
                        writable: true,
                        ..
                    } => {
                        transfer(
                            dev,
                            memory,
                            now,
                            &mut self.tag,
                            Operation::Flush,
                            0,
                            SgList::new(),
                        )?;
                    }
                    _ => {}
                }
            }
        }
        // Trim the sparse files written to what they use.
        for layer in self.layers.iter() {
            for placed in layer.extents.iter() {
                if let LayerExtent::Sparse(s) = &placed.extent
                    && !s.is_read_only()
                {
                    source.trim(&placed.file, s.used_sectors())?;
                }
            }
        }
        Ok(())
    }

    /// Gives layer `i` a new `CID`, rewriting its descriptor (embedded or a text file).
    fn new_cid<S: ExtentSource<Device = D>>(
        &mut self,
        i: usize,
        source: &mut S,
        text: &mut [u8],
        memory: &mut dyn Memory,
        now: Instant,
    ) -> Result<()> {
        let half = text.len() / 2;
        let (old, out) = text.split_at_mut(half);
        let layer = &mut self.layers[i];
        let embedded = match &mut layer.extents[..] {
            [placed] if placed.file == layer.info.name => match &mut placed.extent {
                LayerExtent::Sparse(s) => Some(s),
                _ => None,
            },
            _ => None,
        };
        let len = match &embedded {
            Some(_) => None,
            None => Some(source.read_head(&layer.info.name, old)?),
        };
        let embedded = match embedded {
            Some(s) => {
                s.read_embedded_descriptor(memory, now, old)?;
                Some(s)
            }
            None => None,
        };
        let len = len.unwrap_or(old.len());
        let mut d = Descriptor::<128>::parse(&old[..len.min(old.len())])?;
        let previous = layer.info.cid;
        let mut cid =
            (previous ^ (now.as_nanos() as u32) ^ 0x9e37_79b9).wrapping_mul(0x85eb_ca6b) | 1;
        if cid == NO_PARENT_CID || cid == previous {
            cid = previous.wrapping_add(0x1111_1111) | 1;
        }
        let mut hex = heapless::String::<8>::new();
        core::fmt::Write::write_fmt(&mut hex, format_args!("{cid:08x}"))
            .map_err(|_| err(ErrorKind::BufferTooSmall, 8))?;
        d.set("CID", &hex)?;
        let n = d.emit(out)?;
        match embedded {
            Some(s) => s.write_embedded_descriptor(memory, now, &out[..n])?,
            None => source.write_text(&layer.info.name, &out[..n])?,
        }
        layer.info.cid = cid;
        Ok(())
    }

    /// Creates a snapshot: a new delta on top of the current top, which is never written again.
    /// `name` is the new descriptor's file: for [`DeltaFormat::HostedSparse`] a
    /// monolithicSparse file with its descriptor embedded (as `qemu-img create -b` makes), for
    /// [`DeltaFormat::VmfsSparse`] a text descriptor (`createType="vmfsSparse"`) next to a
    /// `COWD` file named after it with `-delta` (as ESX makes). `text` is a work buffer for
    /// descriptors, as for [`VirtualDisk::close`]. Call it with no request outstanding.
    pub fn create_snapshot<S: ExtentSource<Device = D>>(
        &mut self,
        source: &mut S,
        name: &str,
        format: DeltaFormat,
        text: &mut [u8],
        memory: &mut dyn Memory,
        now: Instant,
    ) -> Result<()> {
        if self.read_only {
            return Err(err(ErrorKind::ReadOnly, 0));
        }
        if self.children > 0 || self.slots.iter().any(Option::is_some) {
            return Err(err(ErrorKind::Io, u64::from(self.children)));
        }
        // The parent's content is final now: give it its new CID before the delta records it.
        let top_index = self
            .layers
            .len()
            .checked_sub(1)
            .ok_or(err(ErrorKind::BadMetadata, 0))?;
        if self.layers[top_index].written {
            self.new_cid(top_index, source, text, memory, now)?;
            self.layers[top_index].written = false;
        }
        if self.layers.is_full() {
            return Err(err(ErrorKind::ChainTooLong, DEPTH as u64));
        }
        if self.meta.len < SECTOR {
            return Err(err(ErrorKind::BufferTooSmall, SECTOR));
        }
        let top = self.layers.last().ok_or(err(ErrorKind::BadMetadata, 0))?;
        let parent_cid = top.info.cid;
        let parent_name = top.info.name.clone();
        // A new content ID that differs from the parent's.
        let cid =
            (parent_cid ^ (now.as_nanos() as u32) ^ 0x5a5a_1234).wrapping_mul(2_654_435_761) | 1;
        let cid = if cid == NO_PARENT_CID || cid == parent_cid {
            0x1357_9bdf
        } else {
            cid
        };
        let mut delta_name = heapless::String::<MAX_NAME>::new();
        let (create_type, kind) = match format {
            DeltaFormat::HostedSparse => {
                delta_name
                    .push_str(name)
                    .map_err(|_| err(ErrorKind::CapacityExceeded, 0))?;
                (CreateType::MonolithicSparse, ExtentType::Sparse)
            }
            DeltaFormat::VmfsSparse => {
                let stem = name.strip_suffix(".vmdk").unwrap_or(name);
                delta_name
                    .push_str(stem)
                    .map_err(|_| err(ErrorKind::CapacityExceeded, 0))?;
                delta_name
                    .push_str("-delta.vmdk")
                    .map_err(|_| err(ErrorKind::CapacityExceeded, 0))?;
                (CreateType::VmfsSparse, ExtentType::VmfsSparse)
            }
        };
        let extents = [ExtentSpec {
            access: Access::ReadWrite,
            sectors: self.capacity,
            kind,
            file_name: &delta_name,
            offset: 0,
        }];
        let mut text = [0u8; 2048];
        let len = write_descriptor(
            &NewDescriptor {
                cid,
                parent_cid,
                create_type,
                parent_file_name_hint: Some(&parent_name),
                extents: &extents,
                ddb: &[("virtualHWVersion", "4"), ("adapterType", "lsilogic")],
            },
            &mut text,
        )?;
        let grain_sectors = self.capacity.div_ceil(self.unit_sectors) * self.unit_sectors;
        let s = match format {
            DeltaFormat::HostedSparse => {
                let header = SparseHeader::new_layout(
                    self.capacity,
                    self.unit_sectors,
                    EMBEDDED_DESCRIPTOR_SECTORS,
                )?;
                let sectors = grain_sectors
                    .checked_add(header.overhead)
                    .ok_or(err(ErrorKind::BadSize, 0))?;
                let mut dev = source.create(&delta_name, sectors)?;
                format_sparse(&mut dev, memory, now, self.meta.addr, &header, &text[..len])?;
                Sparse::open(dev, self.meta, memory, now, false)?
            }
            DeltaFormat::VmfsSparse => {
                let header = CowdHeader::new_layout(self.capacity, self.unit_sectors)?;
                let tables =
                    u64::from(header.gd_entries) * u64::from(COWD_GTES_PER_GT) * 4 / SECTOR;
                let sectors = grain_sectors
                    .checked_add(u64::from(header.free_sector) + tables)
                    .ok_or(err(ErrorKind::BadSize, 0))?;
                source.write_text(name, &text[..len])?;
                let mut dev = source.create(&delta_name, sectors)?;
                format_cowd(&mut dev, memory, now, self.meta.addr, &header, &parent_name)?;
                Sparse::open(dev, self.meta, memory, now, false)?
            }
        };
        let used = crate::extent::meta_bytes_needed(s.header(), CACHE_SLOTS);
        self.meta
            .take(used)
            .ok_or(err(ErrorKind::BufferTooSmall, used))?;
        let mut extents = heapless::Vec::new();
        let _ = extents.push(Placed {
            inflight: 0,
            file: delta_name,
            start: 0,
            sectors: self.capacity,
            extent: LayerExtent::Sparse(s),
        });
        let layer = Layer {
            written: false,
            info: LayerInfo {
                name: copy_name(name.as_bytes())?,
                cid,
                parent_cid,
                create_type,
                extents: 1,
            },
            extents,
        };
        self.layers
            .push(layer)
            .map_err(|_| err(ErrorKind::ChainTooLong, DEPTH as u64))?;
        Ok(())
    }

    /// Consolidates: copies every grain the top layer holds into its parent, then drops the
    /// top from the chain (its file may then be deleted). The parent must have been opened
    /// writable ([`OpenOptions::parents_writable`]). Call it with no request outstanding.
    pub fn consolidate(&mut self, memory: &mut dyn Memory, now: Instant) -> Result<()> {
        if self.children > 0 || self.loading > 0 || self.slots.iter().any(Option::is_some) {
            return Err(err(ErrorKind::Io, u64::from(self.children)));
        }
        let n = self.layers.len();
        if n < 2 {
            return Err(err(ErrorKind::BadMetadata, 0));
        }
        let top_index = n - 1;
        let unit = self.unit_sectors;
        let unit_bytes = unit * SECTOR;
        let units = self.capacity.div_ceil(unit);
        let (below, top) = self.layers.split_at_mut(top_index);
        let top = &mut top[0];
        let parent = &mut below[top_index - 1];
        parent.written = true;
        let scratch = match top.extents.iter().find_map(|p| match &p.extent {
            LayerExtent::Sparse(s) => Some(s.grain_scratch()),
            _ => None,
        }) {
            Some(s) => s,
            None => return Err(err(ErrorKind::Unsupported, 0)),
        };
        let len = u32::try_from(unit_bytes).map_err(|_| err(ErrorKind::BadSize, unit_bytes))?;
        let sg = SgList::single(scratch, len).map_err(|_| err(ErrorKind::Memory, 0))?;
        for u in 0..units {
            if self.map[u as usize] != top_index as u8 {
                continue;
            }
            let sector = u * unit;
            let sectors = unit.min(self.capacity - sector);
            let sg = sg
                .slice(0, sectors * SECTOR)
                .map_err(|_| err(ErrorKind::Memory, 0))?;
            top.read(memory, now, &mut self.tag, sector, &sg)?;
            // Write the grain into the parent at the same place.
            let placed = parent
                .extents
                .iter_mut()
                .find(|p| sector >= p.start && sector < p.start + p.sectors)
                .ok_or(err(ErrorKind::BadMetadata, sector))?;
            let rel = sector - placed.start;
            match &mut placed.extent {
                LayerExtent::Flat {
                    dev,
                    offset,
                    writable: true,
                } => {
                    transfer(
                        dev,
                        memory,
                        now,
                        &mut self.tag,
                        Operation::Write,
                        *offset + rel,
                        sg,
                    )?;
                }
                LayerExtent::Sparse(s) => {
                    let gb = s.header().grain_bytes();
                    s.write_piece(memory, now, rel * SECTOR / gb, 0, &sg, &mut |m, _, at| {
                        zero_range(m, at, gb)
                    })?;
                }
                _ => return Err(err(ErrorKind::ReadOnly, sector)),
            }
            self.map[u as usize] = (top_index - 1) as u8;
        }
        self.layers.pop();
        Ok(())
    }

    fn execute(
        &mut self,
        memory: &mut dyn Memory,
        now: Instant,
        request: &BlockRequest,
    ) -> core::result::Result<(), BlockError> {
        request.validate(&self.geometry())?;
        let r = match request.operation {
            Operation::Read => self.read_range(memory, now, request.lba.0, &request.sg),
            Operation::Write => self.write_range(memory, now, request.lba.0, &request.sg),
            Operation::Flush => self.flush_all(memory, now),
            Operation::WriteZeroes | Operation::Unmap => {
                self.zero_range(memory, now, request.lba.0, u64::from(request.blocks.0))
            }
            _ => return Err(BlockError::new(BE::Unsupported)),
        };
        r.map_err(Error::to_block_error)
    }
}

impl<D: BlockDevice, const E: usize, const DEPTH: usize, const Q: usize> BlockDevice
    for VirtualDisk<'_, D, E, DEPTH, Q>
{
    fn geometry(&self) -> Geometry {
        let mut features = DeviceFeatures::UNMAP_READS_ZERO;
        if self.read_only {
            features |= DeviceFeatures::READ_ONLY;
        } else {
            features |= DeviceFeatures::WRITE_ZEROES | DeviceFeatures::UNMAP;
        }
        Geometry {
            block_size: SECTOR as u32,
            block_count: self.capacity,
            max_transfer_blocks: 1 << 16,
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
            .slots
            .iter()
            .flatten()
            .any(|r| r.request.tag == request.tag)
        {
            return Err(SubmitError::new(SubmitErrorKind::DuplicateTag, request));
        }
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None if !self.slots.is_full() => {
                let _ = self.slots.push(None);
                self.slots.len() - 1
            }
            None => return Err(SubmitError::new(SubmitErrorKind::QueueFull, request)),
        };
        if self.order.push_back(slot as u16).is_err() {
            return Err(SubmitError::new(SubmitErrorKind::QueueFull, request));
        }
        self.slots[slot] = Some(Inflight {
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

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        let mut next = None;
        // Each round reaps children, starts what can start and completes what is done; a
        // device that finishes at its next poll needs one more round. Bounded.
        for _ in 0..Q + 2 {
            let mut progress = false;
            next = self.reap(now, memory, &mut progress);
            let children_before = self.children;
            while let Some(&slot) = self.order.front() {
                if !self.plan(slot as usize, now, memory) {
                    break;
                }
                self.order.pop_front();
                progress = true;
            }
            progress |= self.children != children_before;
            for slot in self.slots.iter_mut() {
                if let Some(r) = slot
                    && r.all_planned
                    && r.outstanding == 0
                {
                    let result = match r.error {
                        Some(e) => Err(e),
                        None => Ok(()),
                    };
                    done(Completion {
                        tag: r.request.tag,
                        result,
                    });
                    *slot = None;
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        // Work left that no device timer will bring back: ask to be polled again now.
        if next.is_none() && (self.children > 0 || self.loads_busy() || !self.order.is_empty()) {
            return Some(now);
        }
        next
    }
}

impl<D: BlockDevice, const E: usize, const DEPTH: usize, const Q: usize>
    VirtualDisk<'_, D, E, DEPTH, Q>
{
    /// Whether any sparse extent has a grain table load in flight.
    fn loads_busy(&self) -> bool {
        self.loading > 0
    }

    /// Polls every inner device with children outstanding and accounts their completions to
    /// their parents. Returns the earliest timer a device asked for.
    fn reap(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        progress: &mut bool,
    ) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        if self.children == 0 && !self.loads_busy() {
            return None;
        }
        let slots = &mut self.slots;
        let children = &mut self.children;
        let loading = &mut self.loading;
        let mut alloc_events: heapless::Vec<((usize, usize), Completion), 4> = heapless::Vec::new();
        for (li, (layer, busy)) in self.layers.iter_mut().zip(self.busy.iter_mut()).enumerate() {
            if *busy == 0 {
                continue;
            }
            for (ei, placed) in layer.extents.iter_mut().enumerate() {
                let mut alloc_event = None;
                let extent_loading =
                    matches!(&placed.extent, LayerExtent::Sparse(s) if s.load_busy());
                if placed.inflight == 0 && !extent_loading {
                    continue;
                }
                let mut meta = None;
                let inflight = &mut placed.inflight;
                let mut account = |c: Completion| {
                    if c.tag.0 >> 32 == META_TAG >> 32 {
                        meta = Some(c);
                        *progress = true;
                        return;
                    }
                    if c.tag.0 >> 32 == ALLOC_TAG >> 32 {
                        alloc_event = Some(c);
                        *progress = true;
                        return;
                    }
                    let slot = (c.tag.0 >> 32) as usize;
                    if let Some(Some(r)) = slots.get_mut(slot) {
                        r.outstanding = r.outstanding.saturating_sub(1);
                        if let Err(e) = c.result
                            && r.error.is_none()
                        {
                            r.error = Some(e);
                        }
                    }
                    *inflight = inflight.saturating_sub(1);
                    *children = children.saturating_sub(1);
                    *busy = busy.saturating_sub(1);
                    *progress = true;
                };
                let t = match &mut placed.extent {
                    LayerExtent::Flat { dev, .. } => dev.poll(now, memory, &mut account),
                    LayerExtent::Sparse(s) => s.device_mut().poll(now, memory, &mut account),
                    LayerExtent::Zero => None,
                };
                if let Some(c) = alloc_event {
                    let _ = alloc_events.push(((li, ei), c));
                }
                if let (Some(c), LayerExtent::Sparse(s)) = (meta, &mut placed.extent) {
                    s.on_load_completion(memory, now, c);
                    if !s.load_busy() {
                        *loading = loading.saturating_sub(1);
                        *busy = busy.saturating_sub(1);
                    }
                }
                if let Some(t) = t {
                    next = Some(next.map_or(t, |n: Instant| n.min(t)));
                }
            }
        }
        for (from, c) in alloc_events {
            self.on_alloc_event(from, c, now, memory);
        }
        next
    }

    /// How piece `[sector, sector + bytes)` (inside one map unit) is served without metadata
    /// I/O, or `None` if it needs the slow path. Also returns the bytes the route covers.
    fn route(
        &self,
        memory: &dyn Memory,
        write: bool,
        sector: u64,
        bytes: u64,
    ) -> Option<(Route, u64)> {
        let unit = sector / self.unit_sectors;
        let serving = *self.map.get(unit as usize)?;
        let layer_index = if write {
            self.layers.len().checked_sub(1)?
        } else {
            serving as usize
        };
        if !write && serving == UNALLOCATED {
            return Some((Route::Zeros, bytes));
        }
        let layer = self.layers.get(layer_index)?;
        let (extent, placed) = layer
            .extents
            .iter()
            .enumerate()
            .find(|(_, p)| sector >= p.start && sector < p.start + p.sectors)?;
        let rel = sector - placed.start;
        let n = bytes.min((placed.sectors - rel) * SECTOR);
        let route = match &placed.extent {
            LayerExtent::Zero if !write => Route::Zeros,
            LayerExtent::Zero => return None,
            LayerExtent::Flat {
                offset, writable, ..
            } => {
                if write && !*writable {
                    return None;
                }
                Route::Device {
                    layer: layer_index,
                    extent,
                    sector: offset + rel,
                }
            }
            LayerExtent::Sparse(s) => {
                if s.is_compressed() || (write && !s.ready_for_direct_writes()) {
                    return None;
                }
                let g = s.grain_sectors();
                match s.cached_grain(memory, rel / g)? {
                    Ok(crate::sparse::Grain::At(at)) => Route::Device {
                        layer: layer_index,
                        extent,
                        sector: at + rel % g,
                    },
                    Ok(_) if !write => Route::Zeros,
                    _ => return None,
                }
            }
        };
        Some((route, n))
    }

    /// The first obstacle to serving `request` without synchronous metadata I/O, or `None`.
    fn obstacle(&self, memory: &dyn Memory, request: &BlockRequest) -> Option<Obstacle> {
        let write = request.operation == Operation::Write;
        let unit_bytes = self.unit_sectors * SECTOR;
        let total = request.sg.total_len();
        let mut at = 0;
        for _ in 0..=total / SECTOR {
            if at >= total {
                return None;
            }
            let byte = request.lba.0 * SECTOR + at;
            let bytes = (unit_bytes - byte % unit_bytes).min(total - at);
            match self.route(memory, write, byte / SECTOR, bytes) {
                Some((_, n)) if n > 0 => at += n,
                _ if write && self.fill_plan(memory, byte / SECTOR).is_some() => at += bytes,
                _ => {
                    return Some(
                        self.miss(memory, write, byte / SECTOR)
                            .unwrap_or(Obstacle::Slow),
                    );
                }
            }
        }
        Some(Obstacle::Slow)
    }

    /// If the write piece at `sector` can be served by an asynchronous allocation in the top
    /// layer: the top extent, and how to get the grain's previous contents (`None`: zeros).
    fn fill_plan(&self, memory: &dyn Memory, sector: u64) -> Option<(usize, Option<Route>)> {
        if self.alloc.is_some() {
            return None;
        }
        let top = self.layers.len().checked_sub(1)?;
        let (extent, placed) = self.layers[top]
            .extents
            .iter()
            .enumerate()
            .find(|(_, p)| sector >= p.start && sector < p.start + p.sectors)?;
        let LayerExtent::Sparse(s) = &placed.extent else {
            return None;
        };
        let rel = sector - placed.start;
        if s.grain_sectors() != self.unit_sectors || !s.can_alloc(memory, rel / s.grain_sectors()) {
            return None;
        }
        let unit = sector / self.unit_sectors;
        let serving = *self.map.get(unit as usize)?;
        if serving == UNALLOCATED || serving as usize >= top {
            return Some((extent, None));
        }
        let unit_start = unit * self.unit_sectors;
        let unit_bytes = (self.unit_sectors * SECTOR).min((self.capacity - unit_start) * SECTOR);
        match self.route(memory, false, unit_start, unit_bytes)? {
            (Route::Zeros, _) => Some((extent, None)),
            (route, n) if n == unit_bytes => Some((extent, Some(route))),
            _ => None,
        }
    }

    /// Starts allocating the grain of the write piece `piece` at `sector` for the request in
    /// `slot`. Returns `Err` with the error the request fails with.
    fn start_alloc(
        &mut self,
        slot: usize,
        sector: u64,
        (piece_at, piece): (u64, SgList),
        now: Instant,
        memory: &mut dyn Memory,
    ) -> core::result::Result<(), BlockError> {
        let Some((extent, fill)) = self.fill_plan(memory, sector) else {
            return Err(BlockError::with_info(BE::MediumError, sector));
        };
        let top = self.layers.len() - 1;
        let unit = sector / self.unit_sectors;
        let unit_bytes = self.unit_sectors * SECTOR;
        let placed = &mut self.layers[top].extents[extent];
        let rel = sector - placed.start;
        let LayerExtent::Sparse(s) = &mut placed.extent else {
            return Err(BlockError::new(BE::MediumError));
        };
        let g = s.grain_sectors();
        let whole = rel.is_multiple_of(g) && piece.total_len() == g * SECTOR;
        let zeroed = s
            .begin_alloc(memory, rel / g, (rel % g) * SECTOR)
            .map_err(Error::to_block_error)?;
        let scratch = s.grain_scratch();
        placed.inflight += 1;
        self.busy[top] += 1;
        self.children += 1;
        if let Some(Some(r)) = self.slots.get_mut(slot) {
            r.outstanding += 1;
        }
        let mut owner = AllocOwner {
            slot,
            extent,
            unit,
            fill: None,
            piece_at,
            piece_len: piece.total_len(),
        };
        match fill {
            Some(Route::Device {
                layer,
                extent: fe,
                sector: at,
            }) if !whole && !zeroed => {
                // The last grain of a disk may be partial: read what exists, zero the rest.
                let unit_start = unit * self.unit_sectors;
                let fill_bytes = unit_bytes.min((self.capacity - unit_start) * SECTOR);
                if fill_bytes < unit_bytes {
                    let _ = zero_range(memory, scratch, unit_bytes);
                }
                let len = u32::try_from(fill_bytes).unwrap_or(0);
                let submitted = SgList::single(scratch, len)
                    .map_err(|_| BlockError::new(BE::MemoryFault))
                    .and_then(|sg| {
                        let blocks = block::BlockCount(len / SECTOR as u32);
                        let req = BlockRequest::read(
                            block::Tag(ALLOC_TAG | 2),
                            block::Lba(at),
                            blocks,
                            sg,
                        );
                        let fp = &mut self.layers[layer].extents[fe];
                        let r = match &mut fp.extent {
                            LayerExtent::Flat { dev, .. } => dev.submit(now, req),
                            LayerExtent::Sparse(p) => p.device_mut().submit(now, req),
                            LayerExtent::Zero => Ok(()),
                        };
                        r.map_err(|_| BlockError::new(BE::QueueFull))?;
                        fp.inflight += 1;
                        Ok(())
                    });
                match submitted {
                    Ok(()) => {
                        self.busy[layer] += 1;
                        owner.fill = Some((layer, fe));
                        self.alloc = Some(owner);
                    }
                    Err(e) => {
                        self.alloc = Some(owner);
                        if let LayerExtent::Sparse(s) = &mut self.layers[top].extents[extent].extent
                        {
                            s.abort_alloc();
                        }
                        self.finish_alloc(AllocStep::Failed(e));
                    }
                }
            }
            _ => {
                self.alloc = Some(owner);
                let LayerExtent::Sparse(s) = &mut self.layers[top].extents[extent].extent else {
                    return Ok(());
                };
                let step = s.alloc_filled(memory, now, true, &piece);
                if step != AllocStep::Pending {
                    self.finish_alloc(step);
                }
            }
        }
        Ok(())
    }

    /// Ends the allocation in flight: accounts it to its request, and on success points the
    /// map at the top layer.
    fn finish_alloc(&mut self, step: AllocStep) {
        let Some(owner) = self.alloc.take() else {
            return;
        };
        let top = self.layers.len() - 1;
        if let Some(p) = self.layers[top].extents.get_mut(owner.extent) {
            p.inflight = p.inflight.saturating_sub(1);
        }
        self.busy[top] = self.busy[top].saturating_sub(1);
        self.children = self.children.saturating_sub(1);
        if let Some(Some(r)) = self.slots.get_mut(owner.slot) {
            r.outstanding = r.outstanding.saturating_sub(1);
            if let AllocStep::Failed(e) = step {
                r.error.get_or_insert(e);
            }
        }
        if step == AllocStep::Done
            && let Some(m) = self.map.get_mut(owner.unit as usize)
        {
            *m = top as u8;
        }
    }

    /// Takes an allocation child's completion (from the fill device or the top's device).
    fn on_alloc_event(
        &mut self,
        from: (usize, usize),
        completion: Completion,
        now: Instant,
        memory: &mut dyn Memory,
    ) {
        let Some(owner) = self.alloc else {
            return;
        };
        let top = self.layers.len() - 1;
        let step = if owner.fill == Some(from) && completion.tag.0 == ALLOC_TAG | 2 {
            let piece = match self.slots.get(owner.slot) {
                Some(Some(r)) => r.request.sg.slice(owner.piece_at, owner.piece_len).ok(),
                _ => None,
            };
            let (layer, fe) = from;
            if let Some(p) = self.layers[layer].extents.get_mut(fe) {
                p.inflight = p.inflight.saturating_sub(1);
            }
            self.busy[layer] = self.busy[layer].saturating_sub(1);
            if let Some(a) = self.alloc.as_mut() {
                a.fill = None;
            }
            let LayerExtent::Sparse(s) = &mut self.layers[top].extents[owner.extent].extent else {
                return;
            };
            match completion.result {
                Ok(()) => match piece {
                    Some(piece) => s.alloc_filled(memory, now, false, &piece),
                    None => {
                        s.abort_alloc();
                        AllocStep::Failed(BlockError::new(BE::InvalidRequest))
                    }
                },
                Err(e) => {
                    s.abort_alloc();
                    AllocStep::Failed(e)
                }
            }
        } else {
            let LayerExtent::Sparse(s) = &mut self.layers[top].extents[owner.extent].extent else {
                return;
            };
            s.on_alloc_completion(memory, now, completion)
        };
        if step != AllocStep::Pending {
            self.finish_alloc(step);
        }
    }

    /// If the piece at `sector` is held up only by an uncached grain table, which one.
    fn miss(&self, memory: &dyn Memory, write: bool, sector: u64) -> Option<Obstacle> {
        let unit = sector / self.unit_sectors;
        let serving = *self.map.get(unit as usize)?;
        let layer = if write {
            self.layers.len().checked_sub(1)?
        } else {
            serving as usize
        };
        let (extent, placed) = self
            .layers
            .get(layer)?
            .extents
            .iter()
            .enumerate()
            .find(|(_, p)| sector >= p.start && sector < p.start + p.sectors)?;
        let LayerExtent::Sparse(s) = &placed.extent else {
            return None;
        };
        let grain = (sector - placed.start) / s.grain_sectors();
        if s.is_compressed()
            || grain >= s.header().grains()
            || s.cached_grain(memory, grain).is_some()
        {
            return None;
        }
        Some(Obstacle::Miss {
            layer,
            extent,
            gd_index: s.gd_index_of(grain),
        })
    }

    /// Advances the request in `slot`: starts it (directly or, when metadata I/O is needed and
    /// nothing else is in flight, synchronously), then submits its children. Returns whether
    /// every child is submitted; `false` leaves it at the head of the queue for a later poll.
    fn plan(&mut self, slot: usize, now: Instant, memory: &mut dyn Memory) -> bool {
        let Some(Some(r)) = self.slots.get(slot) else {
            return true;
        };
        if !r.started {
            let request = r.request.clone();
            let loads = r.loads;
            let is_rw = matches!(request.operation, Operation::Read | Operation::Write);
            let direct = match request.validate(&self.geometry()) {
                Err(e) => Some(Err(e)),
                Ok(()) if self.read_only && request.operation.is_write() => {
                    Some(Err(BlockError::new(BE::WriteProtected)))
                }
                Ok(())
                    if !is_rw
                        && !matches!(
                            request.operation,
                            Operation::Flush | Operation::WriteZeroes | Operation::Unmap
                        ) =>
                {
                    Some(Err(BlockError::new(BE::Unsupported)))
                }
                Ok(()) => match if is_rw {
                    self.obstacle(memory, &request)
                } else {
                    Some(Obstacle::Slow)
                } {
                    None => {
                        if request.operation == Operation::Write
                            && let Some(top) = self.layers.last_mut()
                        {
                            top.written = true;
                        }
                        None
                    }
                    Some(Obstacle::Miss {
                        layer,
                        extent,
                        gd_index,
                    }) if loads < CACHE_SLOTS => {
                        let LayerExtent::Sparse(s) = &mut self.layers[layer].extents[extent].extent
                        else {
                            return false;
                        };
                        if let Some(e) = s.take_load_error(gd_index) {
                            Some(Err(e.to_block_error()))
                        } else {
                            match s.start_load(now, gd_index) {
                                Ok(started) => {
                                    if started {
                                        self.loading += 1;
                                        self.busy[layer] += 1;
                                        if let Some(Some(r)) = self.slots.get_mut(slot) {
                                            r.loads += 1;
                                        }
                                    }
                                    return false;
                                }
                                Err(e) => Some(Err(e.to_block_error())),
                            }
                        }
                    }
                    Some(_) => {
                        // Slow path: metadata I/O, allocation, copy-on-write, flush, zeroing.
                        // Runs alone, once nothing else is in flight.
                        if self.children > 0 || self.loads_busy() {
                            return false;
                        }
                        Some(self.execute(memory, now, &request))
                    }
                },
            };
            let Some(Some(r)) = self.slots.get_mut(slot) else {
                return true;
            };
            match direct {
                Some(result) => {
                    r.error = result.err();
                    r.all_planned = true;
                    return true;
                }
                None => r.started = true,
            }
        }
        self.submit_children(slot, now, memory)
    }

    fn submit_children(&mut self, slot: usize, now: Instant, memory: &mut dyn Memory) -> bool {
        let unit_bytes = self.unit_sectors * SECTOR;
        let Some(Some(r)) = self.slots.get(slot) else {
            return true;
        };
        let request = r.request.clone();
        let write = request.operation == Operation::Write;
        let total = request.sg.total_len();
        let mut at = r.planned;
        let mut child = r.next_child;
        let mut failure = None;
        let mut blocked = false;
        for _ in 0..=total / SECTOR {
            if at >= total {
                break;
            }
            let byte = request.lba.0 * SECTOR + at;
            let bytes = (unit_bytes - byte % unit_bytes).min(total - at);
            let Some((route, n)) = self.route(memory, write, byte / SECTOR, bytes) else {
                if write && self.alloc.is_some() {
                    // One allocation at a time: continue once it is done.
                    blocked = true;
                    break;
                }
                let Ok(piece) = request.sg.slice(at, bytes) else {
                    failure = Some(BlockError::new(BE::InvalidRequest));
                    break;
                };
                if !write {
                    failure = Some(BlockError::with_info(BE::MediumError, byte / SECTOR));
                    break;
                }
                if let Err(e) = self.start_alloc(slot, byte / SECTOR, (at, piece), now, memory) {
                    failure = Some(e);
                    break;
                }
                at += bytes;
                continue;
            };
            let Ok(piece) = request.sg.slice(at, n) else {
                failure = Some(BlockError::new(BE::InvalidRequest));
                break;
            };
            match route {
                Route::Zeros => {
                    if zero_sg(memory, &piece).is_err() {
                        failure = Some(BlockError::new(BE::MemoryFault));
                        break;
                    }
                }
                Route::Device {
                    layer,
                    extent,
                    sector,
                } => {
                    let tag = block::Tag(((slot as u64) << 32) | u64::from(child));
                    let blocks = block::BlockCount((n / SECTOR) as u32);
                    let lba = block::Lba(sector);
                    let req = if write {
                        BlockRequest::write(tag, lba, blocks, piece)
                    } else {
                        BlockRequest::read(tag, lba, blocks, piece)
                    };
                    let placed = &mut self.layers[layer].extents[extent];
                    let submitted = match &mut placed.extent {
                        LayerExtent::Flat { dev, .. } => dev.submit(now, req),
                        LayerExtent::Sparse(s) => s.device_mut().submit(now, req),
                        LayerExtent::Zero => Ok(()),
                    };
                    match submitted {
                        Ok(()) => {
                            placed.inflight += 1;
                            self.children += 1;
                            self.busy[layer] += 1;
                            child += 1;
                            if let Some(Some(r)) = self.slots.get_mut(slot) {
                                r.outstanding += 1;
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
        let Some(Some(r)) = self.slots.get_mut(slot) else {
            return true;
        };
        r.planned = at;
        r.next_child = child;
        if let Some(e) = failure {
            if r.error.is_none() {
                r.error = Some(e);
            }
            r.all_planned = true;
            return true;
        }
        if blocked {
            return false;
        }
        r.all_planned = true;
        true
    }
}
