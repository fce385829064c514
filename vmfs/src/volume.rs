//! A mounted volume: metadata I/O, the pointer block cache, address resolution and directories.

use core::cell::Cell;

use block::{
    BlockCount, BlockDevice, BlockRequest, Completion, DEFAULT_SG_CAPACITY, Instant, Lba, MemAddr,
    Memory, SgList, Tag, run_to_completion,
};
use fss::{FileKind, FsError, FsErrorKind, Stat};

use crate::format::{
    self, Addr, DIR6_BLOCK_DIRENT, DIR6_BLOCK_HEADER, DIR6_BLOCK_LINK, DIR6_HEADER_BLOCK,
    DIR6_HEADER_BYTES, DIR6_LINK_GROUP_BYTES, DIR6_VERSIONS, DIRENT5_BYTES, DIRENT6_BYTES,
    FS_DESCRIPTOR_BYTES, FS_DESCRIPTOR_OFFSET, FileMeta, FsDescriptor, Layout, MAX_FD_ADDRS,
    RESOURCE_META_BYTES, RawDirEntry, RdmMapping, ResourceKind, ResourceMeta, desc_type, zla,
};

/// Bytes at the start of the metadata buffer used for synchronous metadata reads.
pub const SCRATCH_BYTES: u64 = 0x1_1000;
/// The most pointer blocks the cache holds.
pub const MAX_CACHE_SLOTS: usize = 64;
/// The fewest cache slots a mount accepts (a double-indirect lookup of a sub-block pointer
/// block may need three at once).
pub const MIN_CACHE_SLOTS: u64 = 4;
/// Files open at once.
pub const MAX_OPEN: usize = 16;
/// Nested resolutions (a sub-block resolved through `.sbc.sf`, itself through pointer blocks).
const MAX_DEPTH: u32 = 4;
/// Tag of synchronous metadata reads.
pub(crate) const SYNC_TAG: Tag = Tag(u64::MAX);
/// Largest synchronous file read into scratch.
const MAX_SYNC_READ: u64 = 0x1_0000;
/// Most allocated blocks [`Vmfs::check_file`] resolves in one file (64 TiB of 1 MiB blocks).
const MAX_CHECKED_BLOCKS: u64 = 1 << 26;
/// Largest directory we list (bounded walks).
const MAX_DIR_BYTES: u64 = 64 * 1024 * 1024;

/// Where the caller lends the file system its metadata memory: a region of the address space
/// that the [`Memory`] passed to every call maps writable.
///
/// The first [`SCRATCH_BYTES`] hold synchronous metadata reads; the rest is the pointer block
/// cache (4 KiB per slot on VMFS5, 64 KiB on VMFS6, at most [`MAX_CACHE_SLOTS`] slots, at least
/// four).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MetaBuffer {
    /// Start of the region.
    pub addr: MemAddr,
    /// Length in bytes.
    pub len: u64,
}

impl MetaBuffer {
    /// The length that gives a VMFS6 volume `slots` cache slots (VMFS5 gets sixteen times more).
    pub const fn recommended_len(slots: u64) -> u64 {
        SCRATCH_BYTES + slots * 0x1_0000
    }
}

/// A file as the reader needs it: its metadata and address array.
#[derive(Clone)]
pub(crate) struct FileMap {
    pub(crate) meta: FileMeta,
    /// Volume offset of the file descriptor.
    pub(crate) fd_offset: u64,
    pub(crate) block_shift: u32,
    pub(crate) addrs: [u64; MAX_FD_ADDRS],
    pub(crate) addr_count: u32,
}

impl FileMap {
    fn addr_at(&self, index: u64) -> Result<u64, FsError> {
        if index >= self.addr_count as u64 {
            return Err(FsError::corrupt(
                "file descriptor address array",
                self.meta.addr as u64,
            ));
        }
        Ok(self.addrs[index as usize])
    }

    pub(crate) fn kind(&self) -> FileKind {
        kind_of(self.meta.desc_type, self.meta.mode)
    }
}

fn kind_of(desc: u32, mode: u32) -> FileKind {
    match desc {
        desc_type::DIRECTORY => FileKind::Directory,
        desc_type::REGFILE => FileKind::Regular,
        desc_type::SYMLINK => FileKind::Symlink,
        desc_type::RDM => FileKind::RawDeviceMap,
        desc_type::SYSFILE if mode & 0o170000 == 0o040000 => FileKind::SystemDirectory,
        desc_type::SYSFILE => FileKind::SystemFile,
        _ => FileKind::Other,
    }
}

/// One step of resolving a file offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The next `n` bytes read as zeros.
    Zero(u64),
    /// The next `n` bytes are at this volume offset.
    Volume(u64, u64),
    /// The pointer block with this address must be read first.
    Need(u64),
}

pub(crate) struct CacheEntry {
    pub(crate) raw: u64,
    pub(crate) slot: u16,
    pub(crate) loading: bool,
    pub(crate) used: Cell<u64>,
}

/// What [`crate::Vmfs::info`] reports about a mounted volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// The label.
    pub label: heapless::String<128>,
    /// The UUID in VMFS text form.
    pub uuid: heapless::String<35>,
    /// Major version (14: VMFS5, 24: VMFS6).
    pub major_version: u32,
    /// Minor version.
    pub minor_version: u8,
    /// VMFS6.
    pub vmfs6: bool,
    /// VMFS-L (local) magic.
    pub local: bool,
    /// File block size.
    pub file_block_size: u64,
    /// Sub-block size.
    pub sub_block_size: u32,
    /// Metadata alignment (VMFS6).
    pub md_alignment: u32,
    /// Large file block size (VMFS6; the file block size on VMFS5).
    pub large_file_block_size: u64,
    /// Config flags.
    pub config: u32,
    /// Creation time, Unix seconds.
    pub creation_time: u32,
    /// Capacity of the device it is mounted from, bytes.
    pub device_bytes: u64,
    /// Pointer block cache slots.
    pub cache_slots: u16,
    /// File blocks (VMFS6: small file blocks) the volume has, from `.fbb.sf`.
    pub file_blocks: u64,
    /// Large file blocks (VMFS6), from `.fbb.sf`.
    pub large_file_blocks: u64,
}

/// What [`Vmfs::check_file`] found in a file's address tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FileCheck {
    /// Allocated blocks that resolve to volume ranges.
    pub data_blocks: u64,
    /// Allocated blocks that read as zeros (to be zeroed).
    pub zero_blocks: u64,
    /// Pointer blocks walked.
    pub pointer_blocks: u64,
}

/// Counters of the data path and the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Counters {
    /// Metadata reads sent to the device (synchronous and asynchronous).
    pub metadata_reads: u64,
    /// Data reads sent to the device.
    pub data_reads: u64,
    /// Pointer block lookups served from the cache.
    pub cache_hits: u64,
    /// Pointer blocks evicted.
    pub cache_evictions: u64,
    /// VMFS6 lookups answered through the directory hash table.
    pub hashed_lookups: u64,
    /// Lookups answered by scanning the directory.
    pub linear_lookups: u64,
}

/// A VMFS5 or VMFS6 file system mounted from a [`BlockDevice`], read-only.
pub struct Vmfs<D, const SG: usize = DEFAULT_SG_CAPACITY> {
    pub(crate) device: D,
    pub(crate) buffer: MetaBuffer,
    pub(crate) descriptor: FsDescriptor,
    pub(crate) layout: Layout,
    pub(crate) block_bytes: u64,
    pub(crate) max_transfer_bytes: u64,
    label: heapless::String<128>,
    uuid: heapless::String<35>,
    /// `.sbc.sf`, `.pbc.sf`, `.pb2.sf`, `.fdc.sf` (indexed by [`ResourceKind::index`]).
    pub(crate) sys: [Option<FileMap>; 4],
    pub(crate) res: [ResourceMeta; 4],
    pub(crate) cache: heapless::Vec<CacheEntry, MAX_CACHE_SLOTS>,
    pub(crate) cache_slots: u16,
    pub(crate) slot_bytes: u64,
    pub(crate) clock: Cell<u64>,
    pub(crate) counters: Counters,
    pub(crate) hits: Cell<u64>,
    file_blocks: u64,
    large_file_blocks: u64,
    pub(crate) open: [Option<FileMap>; MAX_OPEN],
    pub(crate) io: crate::io::Engine<SG>,
}

fn io_err(at: u64) -> impl Fn(block::BlockError) -> FsError {
    move |e| FsError::new(FsErrorKind::Io(e.kind()), "volume", at)
}

fn mem_err(addr: MemAddr) -> impl Fn(block::MemoryError) -> FsError {
    move |_| FsError::new(FsErrorKind::Buffer, "metadata buffer", addr.0)
}

impl<D: BlockDevice<SG>, const SG: usize> Vmfs<D, SG> {
    /// Mounts the VMFS file system on `device` (an LVM volume, or a bare device for volumes with
    /// no LVM header), reading metadata through `buffer` in `memory`.
    ///
    /// Reads the file system descriptor at 0x200000, the system file descriptors and resource
    /// file headers, and the root directory's descriptor. Fails with an error naming the
    /// structure and address of the first inconsistency found.
    pub fn mount(
        device: D,
        buffer: MetaBuffer,
        now: Instant,
        memory: &mut dyn Memory,
    ) -> Result<Self, FsError> {
        Self::mount_ordered(device, buffer, now, memory, &format::SYSTEM_FILE_OPEN_ORDER)
    }

    /// [`Vmfs::mount`], trying the system resource files in `order` first.
    fn mount_ordered(
        device: D,
        buffer: MetaBuffer,
        now: Instant,
        memory: &mut dyn Memory,
        order: &[(ResourceKind, u32, bool)],
    ) -> Result<Self, FsError> {
        let geometry = device.geometry();
        let block_bytes = geometry.block_size as u64;
        if !block_bytes.is_power_of_two() || !(512..=4096).contains(&block_bytes) {
            return Err(FsError::new(
                FsErrorKind::Unsupported,
                "device block size",
                block_bytes,
            ));
        }
        let usable = u32::try_from(buffer.len.min(u32::MAX as u64)).unwrap_or(u32::MAX);
        if buffer.len < SCRATCH_BYTES || memory.slice_mut(buffer.addr, usable as usize).is_err() {
            return Err(FsError::new(
                FsErrorKind::Buffer,
                "metadata buffer",
                buffer.addr.0,
            ));
        }
        let max_transfer_bytes = (geometry.max_transfer_blocks as u64)
            .saturating_mul(block_bytes)
            .clamp(block_bytes, 32 * 1024 * 1024);
        let mut fs = Vmfs {
            device,
            buffer,
            descriptor: FsDescriptor {
                magic: 0,
                major: 0,
                minor: 0,
                uuid: [0; 16],
                config: 0,
                label: [0; 128],
                file_block_size: 0,
                creation_time: 0,
                fdc_cluster_group_offset: 0,
                fdc_clusters_per_group: 0,
                sub_block_size: 0,
                md_alignment: 0,
                sfb_to_lfb_shift: 0,
            },
            layout: Layout {
                v6: false,
                fd_bytes: 0,
                fd_meta_offset: 0,
                fd_data_offset: 0,
                fd_data_bytes: 0,
                fd_addrs_offset: 0,
                fd_addr_count: 0,
                addr_bytes: 4,
                pb_shift: 0,
                cluster_header_bytes: 0,
                fbs_shift: 0,
                sbs_shift: 0,
                lfb_shift: 0,
                sfb_per_cluster: 1,
                dense_sb: false,
            },
            block_bytes,
            max_transfer_bytes: max_transfer_bytes - max_transfer_bytes % block_bytes,
            label: heapless::String::new(),
            uuid: heapless::String::new(),
            sys: [None, None, None, None],
            res: [ResourceMeta::default(); 4],
            cache: heapless::Vec::new(),
            cache_slots: 0,
            slot_bytes: 0,
            clock: Cell::new(0),
            counters: Counters::default(),
            hits: Cell::new(0),
            file_blocks: 0,
            large_file_blocks: 0,
            open: core::array::from_fn(|_| None),
            io: crate::io::Engine::new(),
        };
        // The descriptor.
        let scratch = fs.buffer.addr;
        fs.read_volume_sync(now, memory, FS_DESCRIPTOR_OFFSET, 512, scratch)?;
        let bytes = memory
            .slice(scratch, FS_DESCRIPTOR_BYTES)
            .map_err(mem_err(scratch))?;
        fs.descriptor = FsDescriptor::parse(bytes)?;
        fs.layout = Layout::new(&fs.descriptor);
        format::format_uuid(&fs.descriptor.uuid, &mut fs.uuid);
        match core::str::from_utf8(fs.descriptor.label_bytes()) {
            Ok(label) => {
                let _ = fs.label.push_str(label);
            }
            Err(_) => {
                let uuid = fs.uuid.clone();
                let _ = fs.label.push_str(&uuid);
            }
        }
        // The pointer block cache.
        fs.slot_bytes = fs.layout.pb_bytes();
        let slots = (fs.buffer.len - SCRATCH_BYTES) / fs.slot_bytes;
        if slots < MIN_CACHE_SLOTS {
            return Err(FsError::new(
                FsErrorKind::Buffer,
                "metadata buffer",
                fs.buffer.len,
            ));
        }
        fs.cache_slots = slots.min(MAX_CACHE_SLOTS as u64) as u16;
        // System files, each found at its fixed place, then its resource header. The pointer
        // block files come first: `.fdc.sf` and `.sbc.sf` of a larger volume are themselves
        // addressed through pointer blocks (ZLA 3; `vmfs5-span`'s 155 MiB `.fdc.sf` needs more
        // than the 256 file blocks of 512 KiB its descriptor can address directly), and reading
        // their resource header resolves those through `.pbc.sf`'s cluster layout. A file whose
        // header cannot be read yet (its pointer blocks live in a file opened after it) is
        // tried again once another has opened, so the order is a preference, not a
        // requirement; an error that remains when no file makes progress is returned.
        let mut state = [None::<Result<(), FsError>>; format::SYSTEM_FILE_OPEN_ORDER.len()];
        let order = &order[..order.len().min(state.len())];
        for _ in 0..order.len() {
            let mut progress = false;
            for (i, &(kind, addr, required)) in order.iter().enumerate() {
                if matches!(state[i], Some(Ok(()))) {
                    continue;
                }
                state[i] = Some(match fs.open_system_file(now, memory, kind, addr) {
                    Ok(()) => {
                        progress = true;
                        Ok(())
                    }
                    // An optional file whose descriptor is unusable is left closed.
                    Err((_, true)) if !required => Ok(()),
                    Err((e, _)) => Err(e),
                });
            }
            if !progress {
                break;
            }
        }
        for result in state.into_iter().flatten() {
            result?;
        }
        // `.fbb.sf`: on VMFS6 its child metadata gives the small file blocks per cluster that
        // SFB addresses are resolved with.
        let fbb_offset = format::system_fd_offset(&fs.descriptor, &fs.layout, format::FBB_ADDR)?;
        let fbb = fs.read_fd_at(now, memory, fbb_offset, format::FBB_ADDR)?;
        let at = fs.read_file_sync(now, memory, &fbb, 0, RESOURCE_META_BYTES as u64)?;
        let bytes = memory.slice(at, RESOURCE_META_BYTES).map_err(mem_err(at))?;
        let fbb_meta = ResourceMeta::parse(bytes, fs.layout.v6, fbb.fd_offset)?;
        fs.file_blocks = fbb_meta.resources;
        if fs.layout.v6 {
            let child = fbb_meta.child_offset as u64;
            let at = fs.read_file_sync(now, memory, &fbb, child, RESOURCE_META_BYTES as u64)?;
            let bytes = memory.slice(at, RESOURCE_META_BYTES).map_err(mem_err(at))?;
            let sfb = ResourceMeta::parse(bytes, true, fbb.fd_offset + child)?;
            if sfb.per_cluster == 0 || sfb.per_cluster > 0x2000 {
                return Err(FsError::corrupt(
                    "small file block resource metadata",
                    fbb.fd_offset,
                ));
            }
            fs.layout.sfb_per_cluster = sfb.per_cluster as u64;
            fs.file_blocks = sfb.resources;
            fs.large_file_blocks = fbb_meta.resources;
        }
        let root = fs.load_fd(now, memory, format::ROOT_DIR_ADDR)?;
        if root.kind() != FileKind::Directory {
            return Err(FsError::corrupt("root directory", root.fd_offset));
        }
        Ok(fs)
    }

    /// The device the volume is mounted from.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably (for example to change a test double's behaviour after mount).
    /// Requests must not be submitted to it directly while file requests are outstanding.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Unmounts, handing the device back. Outstanding requests are dropped.
    pub fn into_device(self) -> D {
        self.device
    }

    /// Counters of metadata and data reads and of the pointer block cache.
    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        c.cache_hits = self.hits.get();
        c
    }

    /// What the file system descriptor says.
    pub fn info(&self) -> VolumeInfo {
        let d = &self.descriptor;
        VolumeInfo {
            label: self.label.clone(),
            uuid: self.uuid.clone(),
            major_version: d.major,
            minor_version: d.minor,
            vmfs6: self.layout.v6,
            local: d.magic == format::VMFSL_MAGIC,
            file_block_size: d.file_block_size,
            sub_block_size: d.sub_block_size,
            md_alignment: d.md_alignment,
            large_file_block_size: 1u64 << self.layout.lfb_shift,
            config: d.config,
            creation_time: d.creation_time,
            device_bytes: self.device.geometry().capacity_bytes().unwrap_or(u64::MAX),
            cache_slots: self.cache_slots,
            file_blocks: self.file_blocks,
            large_file_blocks: self.large_file_blocks,
        }
    }

    pub(crate) fn label_str(&self) -> &str {
        &self.label
    }

    pub(crate) fn uuid_str(&self) -> &str {
        &self.uuid
    }

    // ---------------------------------------------------------------- synchronous metadata I/O

    /// Reads `len` bytes at volume offset `offset` (both block aligned) to `dst`.
    pub(crate) fn read_volume_sync(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        offset: u64,
        len: u64,
        dst: MemAddr,
    ) -> Result<(), FsError> {
        let bb = self.block_bytes;
        if !offset.is_multiple_of(bb) || !len.is_multiple_of(bb) || len == 0 {
            return Err(FsError::corrupt("unaligned metadata address", offset));
        }
        let mut done = 0u64;
        while done < len {
            let chunk = (len - done).min(self.max_transfer_bytes);
            let at = offset + done;
            let to = dst.checked_add(done).ok_or(FsError::new(
                FsErrorKind::Buffer,
                "metadata buffer",
                dst.0,
            ))?;
            let sg = SgList::<SG>::single(to, chunk as u32)
                .map_err(|_| FsError::new(FsErrorKind::Buffer, "metadata buffer", to.0))?;
            let request =
                BlockRequest::read(SYNC_TAG, Lba(at / bb), BlockCount((chunk / bb) as u32), sg);
            self.counters.metadata_reads += 1;
            let stash = &mut self.io.stash;
            let driven =
                run_to_completion(&mut self.device, memory, now, request, 1 << 16, &mut |c| {
                    let _ = stash.push_back(c);
                })
                .map_err(|_| {
                    FsError::new(FsErrorKind::Io(block::ErrorKind::Timeout), "volume", at)
                })?;
            driven.completion.result.map_err(io_err(at))?;
            done += chunk;
        }
        Ok(())
    }

    /// Reads a file descriptor at volume offset `offset` and checks it names itself `addr`.
    fn read_fd_at(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        offset: u64,
        addr: u32,
    ) -> Result<FileMap, FsError> {
        let fd_bytes = self.layout.fd_bytes as u64;
        let scratch = self.buffer.addr;
        self.read_volume_sync(now, memory, offset, fd_bytes, scratch)?;
        let bytes = memory
            .slice(scratch, fd_bytes as usize)
            .map_err(mem_err(scratch))?;
        self.parse_fd(bytes, offset, addr)
    }

    fn parse_fd(&self, b: &[u8], offset: u64, addr: u32) -> Result<FileMap, FsError> {
        let l = &self.layout;
        let bad = || FsError::corrupt("file descriptor", offset);
        let meta = FileMeta::parse(b.get(l.fd_meta_offset as usize..).ok_or_else(bad)?, offset)?;
        if meta.addr != addr {
            return Err(bad());
        }
        let block_shift = format::pow2_shift(meta.block_size, 512, 1 << 30).ok_or_else(bad)?;
        match meta.zla {
            zla::NONE => {
                if meta.desc_type != desc_type::RDM {
                    return Err(bad());
                }
            }
            zla::RESIDENT => {
                if meta.size > l.fd_data_bytes as u64 {
                    return Err(bad());
                }
            }
            zla::FILE_BLOCK
            | zla::SUB_BLOCK
            | zla::POINTER_BLOCK
            | zla::POINTER2_BLOCK
            | zla::DOUBLE => {}
            _ => {
                return Err(FsError::new(
                    FsErrorKind::Unsupported,
                    "zero-level address type",
                    offset,
                ));
            }
        }
        let mut addrs = [0u64; MAX_FD_ADDRS];
        let count = l.fd_addr_count.min(MAX_FD_ADDRS as u32);
        let base = l.fd_addrs_offset as usize;
        for (i, slot) in addrs.iter_mut().take(count as usize).enumerate() {
            *slot = if l.v6 {
                format::u64_at(b, base + 8 * i).ok_or_else(bad)?
            } else {
                format::u32_at(b, base + 4 * i).ok_or_else(bad)? as u64
            };
        }
        Ok(FileMap {
            meta,
            fd_offset: offset,
            block_shift,
            addrs,
            addr_count: count,
        })
    }

    /// Opens system resource file `addr` from its fixed-place descriptor and reads its resource
    /// header. An error says whether it was the descriptor itself that could not be read.
    fn open_system_file(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        kind: ResourceKind,
        addr: u32,
    ) -> Result<(), (FsError, bool)> {
        let offset = format::system_fd_offset(&self.descriptor, &self.layout, addr)
            .map_err(|e| (e, false))?;
        let map = self
            .read_fd_at(now, memory, offset, addr)
            .map_err(|e| (e, true))?;
        let mut header = |fs: &mut Self| {
            if map.meta.desc_type != desc_type::SYSFILE {
                return Err(FsError::corrupt("system file descriptor", offset));
            }
            let at = fs.read_file_sync(now, memory, &map, 0, RESOURCE_META_BYTES as u64)?;
            let bytes = memory.slice(at, RESOURCE_META_BYTES).map_err(mem_err(at))?;
            ResourceMeta::parse(bytes, fs.layout.v6, map.fd_offset)
        };
        let meta = header(self).map_err(|e| (e, false))?;
        self.res[kind.index()] = meta;
        self.sys[kind.index()] = Some(map);
        Ok(())
    }

    /// Reads the file descriptor with address `addr` through `.fdc.sf`.
    pub(crate) fn load_fd(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        addr: u32,
    ) -> Result<FileMap, FsError> {
        let Addr::Resource {
            cluster, resource, ..
        } = format::fd_addr(addr as u64)?
        else {
            return Err(FsError::corrupt("file descriptor address", addr as u64));
        };
        let kind = ResourceKind::FileDescriptor;
        let in_file = self.res[kind.index()]
            .offset(cluster, resource, self.layout.cluster_header_bytes)
            .ok_or(FsError::corrupt("file descriptor address", addr as u64))?;
        let fdc = self.sys[kind.index()]
            .clone()
            .ok_or(FsError::corrupt("file descriptor address", addr as u64))?;
        if in_file
            .checked_add(self.layout.fd_bytes as u64)
            .is_none_or(|end| end > fdc.meta.size)
        {
            return Err(FsError::corrupt("file descriptor address", addr as u64));
        }
        match self.map_sync(now, memory, &fdc, in_file)? {
            Step::Volume(offset, len) if len >= self.layout.fd_bytes as u64 => {
                self.read_fd_at(now, memory, offset, addr)
            }
            _ => Err(FsError::corrupt("file descriptor address", addr as u64)),
        }
    }

    /// Resolves `offset` of `file`, reading pointer blocks synchronously as needed.
    pub(crate) fn map_sync(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        file: &FileMap,
        offset: u64,
    ) -> Result<Step, FsError> {
        for _ in 0..16 {
            match self.map(&*memory, file, offset, 0)? {
                Step::Need(raw) => self.fetch_sync(now, memory, raw, 0)?,
                step => return Ok(step),
            }
        }
        Err(FsError::new(
            FsErrorKind::Buffer,
            "pointer block cache",
            file.meta.addr as u64,
        ))
    }

    /// Reads pointer block `raw` into the cache.
    fn fetch_sync(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        raw: u64,
        depth: u32,
    ) -> Result<(), FsError> {
        if depth > MAX_DEPTH {
            return Err(FsError::corrupt("pointer block chain", raw));
        }
        for _ in 0..8 {
            match self.pb_location(&*memory, raw, 0)? {
                Step::Need(inner) => self.fetch_sync(now, memory, inner, depth + 1)?,
                Step::Volume(offset, len) => {
                    let slot = self.cache_alloc(raw).ok_or(FsError::new(
                        FsErrorKind::Buffer,
                        "pointer block cache",
                        raw,
                    ))?;
                    let dst = self.slot_addr(slot);
                    let result = self.read_volume_sync(now, memory, offset, len, dst);
                    // Completions that arrived meanwhile (maybe an asynchronous read into this
                    // very slot) are applied first, so the slot's state is current.
                    self.drain_stash();
                    match result {
                        Ok(()) => {
                            self.cache_loaded(raw, slot);
                            if let Some(e) = self.cache.iter_mut().find(|e| e.raw == raw) {
                                e.loading = false;
                            }
                            return Ok(());
                        }
                        Err(e) => {
                            self.cache_drop(raw, slot);
                            return Err(e);
                        }
                    }
                }
                Step::Zero(_) => return Err(FsError::corrupt("pointer block address", raw)),
            }
        }
        Err(FsError::new(
            FsErrorKind::Buffer,
            "pointer block cache",
            raw,
        ))
    }

    /// Reads `len` (at most 64 KiB) bytes at `offset` of `file` into scratch and returns where
    /// they start. Holes read as zeros.
    pub(crate) fn read_file_sync(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        file: &FileMap,
        offset: u64,
        len: u64,
    ) -> Result<MemAddr, FsError> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= file.meta.size && len <= MAX_SYNC_READ)
            .ok_or(FsError::corrupt("file range", file.meta.addr as u64))?;
        let bb = self.block_bytes;
        let pad = offset % bb;
        let base = self.buffer.addr;
        let mut at = offset;
        let mut guard = 0u32;
        while at < end {
            guard += 1;
            if guard > 1024 {
                return Err(FsError::corrupt("file map", file.meta.addr as u64));
            }
            let dst_off = at - offset + pad; // position of byte `at` in scratch
            match self.map_sync(now, memory, file, at)? {
                Step::Zero(n) => {
                    let n = n.min(end - at).max(1);
                    let dst = MemAddr(base.0 + dst_off);
                    memory
                        .slice_mut(dst, n as usize)
                        .map_err(mem_err(dst))?
                        .fill(0);
                    at += n;
                }
                Step::Volume(vol, n) => {
                    let n = n.min(end - at).max(1);
                    let lead = vol % bb;
                    let start = vol - lead;
                    let total = (lead + n).div_ceil(bb) * bb;
                    if dst_off < lead || dst_off - lead + total > SCRATCH_BYTES {
                        return Err(FsError::corrupt("unaligned file data", vol));
                    }
                    let dst = MemAddr(base.0 + dst_off - lead);
                    // Bytes before `dst_off` were already placed; re-reading the lead would
                    // clobber them, so read the lead elsewhere when it overlaps earlier data.
                    if lead != 0 && at != offset {
                        return Err(FsError::corrupt("unaligned file data", vol));
                    }
                    self.read_volume_sync(now, memory, start, total, dst)?;
                    at += n;
                }
                Step::Need(raw) => {
                    // map_sync fetches pointer blocks before returning; reaching this means the
                    // cache could not keep one.
                    return Err(FsError::new(
                        FsErrorKind::Buffer,
                        "pointer block cache",
                        raw,
                    ));
                }
            }
        }
        Ok(MemAddr(base.0 + pad))
    }

    // ---------------------------------------------------------------- address resolution

    /// Resolves `offset` of `file` without I/O: zeros, a volume range, or a pointer block that
    /// must be read first.
    pub(crate) fn map(
        &self,
        memory: &dyn Memory,
        file: &FileMap,
        offset: u64,
        depth: u32,
    ) -> Result<Step, FsError> {
        if depth > MAX_DEPTH {
            return Err(FsError::corrupt("address chain", file.meta.addr as u64));
        }
        let m = &file.meta;
        let block_bytes = 1u64 << file.block_shift;
        let in_block = offset & (block_bytes - 1);
        let rest_of_block = block_bytes - in_block;
        let index = offset >> file.block_shift;
        let pb_shift = self.layout.pb_shift;
        let pb_mask = (1u64 << pb_shift) - 1;
        match m.zla {
            zla::RESIDENT => {
                let data = self.layout.fd_data_bytes as u64;
                if offset >= data {
                    return Ok(Step::Zero(u64::MAX));
                }
                let vol = file
                    .fd_offset
                    .checked_add(self.layout.fd_data_offset as u64 + offset)
                    .ok_or(FsError::corrupt("file descriptor", file.fd_offset))?;
                Ok(Step::Volume(vol, data - offset))
            }
            zla::FILE_BLOCK | zla::SUB_BLOCK => {
                let raw = file.addr_at(index)?;
                self.data_step(memory, raw, offset, rest_of_block, depth)
            }
            zla::POINTER_BLOCK | zla::POINTER2_BLOCK => {
                let pb = file.addr_at(index >> pb_shift)?;
                if pb == 0 {
                    return Ok(Step::Zero(hole(offset, file.block_shift + pb_shift)));
                }
                match self.pb_entry(memory, pb, index & pb_mask)? {
                    None => Ok(Step::Need(pb)),
                    Some(raw) => self.data_step(memory, raw, offset, rest_of_block, depth),
                }
            }
            zla::DOUBLE => {
                let top = file.addr_at(index >> (2 * pb_shift))?;
                if top == 0 {
                    return Ok(Step::Zero(hole(offset, file.block_shift + 2 * pb_shift)));
                }
                let pb = match self.pb_entry(memory, top, (index >> pb_shift) & pb_mask)? {
                    None => return Ok(Step::Need(top)),
                    Some(0) => return Ok(Step::Zero(hole(offset, file.block_shift + pb_shift))),
                    Some(pb) => pb,
                };
                match self.pb_entry(memory, pb, index & pb_mask)? {
                    None => Ok(Step::Need(pb)),
                    Some(raw) => self.data_step(memory, raw, offset, rest_of_block, depth),
                }
            }
            _ => Err(FsError::new(
                FsErrorKind::Unsupported,
                "zero-level address type",
                file.fd_offset,
            )),
        }
    }

    /// The device read that serves `want` bytes (`0 < want <= n`) of a data step of `n` bytes
    /// at volume offset `vol`: `want` rounded up to whole device blocks. The read path and the
    /// extent map both check data steps here. A step that does not start on a device block, or
    /// whose rounded read would run past the step (only a step shorter than a block may be
    /// padded: the tail of resident data), is corrupt.
    pub(crate) fn data_read_len(&self, vol: u64, n: u64, want: u64) -> Result<u64, FsError> {
        let bb = self.block_bytes;
        let len = want.div_ceil(bb).checked_mul(bb);
        match len {
            Some(len) if want > 0 && want <= n && vol.is_multiple_of(bb) && len <= n.max(bb) => {
                Ok(len)
            }
            _ => Err(FsError::corrupt("data block address", vol)),
        }
    }

    /// Resolves a data address found for file offset `offset`.
    fn data_step(
        &self,
        memory: &dyn Memory,
        raw: u64,
        offset: u64,
        rest_of_block: u64,
        depth: u32,
    ) -> Result<Step, FsError> {
        let l = &self.layout;
        let bad = || FsError::corrupt("data block address", raw);
        let unit = |shift: u32, number: u64| -> Result<Step, FsError> {
            let unit_bytes = 1u64 << shift;
            let in_unit = offset & (unit_bytes - 1);
            let vol = number
                .checked_mul(unit_bytes)
                .and_then(|v| v.checked_add(in_unit))
                .ok_or_else(bad)?;
            Ok(Step::Volume(vol, rest_of_block.min(unit_bytes - in_unit)))
        };
        match format::decode_addr(raw, l)? {
            Addr::Null => Ok(Step::Zero(rest_of_block)),
            Addr::FileBlock { tbz: true, .. }
            | Addr::SmallFileBlock { tbz: true, .. }
            | Addr::LargeFileBlock { tbz: true, .. } => Ok(Step::Zero(rest_of_block)),
            Addr::FileBlock { block, .. } => unit(l.fbs_shift, block),
            Addr::SmallFileBlock {
                cluster, resource, ..
            } => {
                if resource >= l.sfb_per_cluster {
                    return Err(bad());
                }
                let block = cluster
                    .checked_mul(l.sfb_per_cluster)
                    .and_then(|b| b.checked_add(resource))
                    .ok_or_else(bad)?;
                unit(l.fbs_shift, block)
            }
            Addr::LargeFileBlock { block, .. } => unit(l.lfb_shift, block),
            Addr::Resource {
                kind: ResourceKind::SubBlock,
                cluster,
                resource,
            } => {
                let sb_bytes = 1u64 << l.sbs_shift;
                let in_unit = offset & (sb_bytes - 1);
                let kind = ResourceKind::SubBlock;
                let meta = &self.res[kind.index()];
                if meta.resource_bytes as u64 != sb_bytes {
                    return Err(FsError::corrupt("sub-block resource file", raw));
                }
                let in_file = meta
                    .offset(cluster, resource, l.cluster_header_bytes)
                    .and_then(|o| o.checked_add(in_unit))
                    .ok_or_else(bad)?;
                let sbc = self.sys[kind.index()].as_ref().ok_or_else(bad)?;
                if in_file >= sbc.meta.size {
                    return Err(bad());
                }
                let want = rest_of_block.min(sb_bytes - in_unit);
                Ok(match self.map(memory, sbc, in_file, depth + 1)? {
                    Step::Volume(v, n) => Step::Volume(v, n.min(want)),
                    Step::Zero(n) => Step::Zero(n.min(want)),
                    need => need,
                })
            }
            Addr::Resource { .. } => Err(bad()),
        }
    }

    /// Where pointer block `raw` lives on the volume (or which pointer block must be read to
    /// know).
    pub(crate) fn pb_location(
        &self,
        memory: &dyn Memory,
        raw: u64,
        depth: u32,
    ) -> Result<Step, FsError> {
        let bad = || FsError::corrupt("pointer block address", raw);
        let Addr::Resource {
            kind,
            cluster,
            resource,
        } = format::decode_addr(raw, &self.layout)?
        else {
            return Err(bad());
        };
        if kind == ResourceKind::FileDescriptor {
            return Err(bad());
        }
        // A pointer block of a resource file that is not open (absent, or not opened yet while
        // mounting) cannot be located: its cluster layout is unknown.
        let file = self.sys[kind.index()].as_ref().ok_or_else(bad)?;
        let meta = &self.res[kind.index()];
        let pb_bytes = self.layout.pb_bytes();
        if (meta.resource_bytes as u64) < pb_bytes {
            return Err(FsError::corrupt(kind.name(), raw));
        }
        let in_file = meta
            .offset(cluster, resource, self.layout.cluster_header_bytes)
            .ok_or_else(bad)?;
        if in_file
            .checked_add(pb_bytes)
            .is_none_or(|end| end > file.meta.size)
        {
            return Err(bad());
        }
        match self.map(memory, file, in_file, depth + 1)? {
            Step::Volume(v, n) if n >= pb_bytes && v % self.block_bytes == 0 => {
                Ok(Step::Volume(v, pb_bytes))
            }
            Step::Need(inner) => Ok(Step::Need(inner)),
            _ => Err(bad()),
        }
    }

    /// Entry `index` of cached pointer block `raw`, or `None` when it is not cached.
    fn pb_entry(&self, memory: &dyn Memory, raw: u64, index: u64) -> Result<Option<u64>, FsError> {
        let Some(entry) = self.cache.iter().find(|e| e.raw == raw && !e.loading) else {
            return Ok(None);
        };
        let tick = self.clock.get() + 1;
        self.clock.set(tick);
        entry.used.set(tick);
        self.hits.set(self.hits.get() + 1);
        let size = self.layout.addr_bytes as u64;
        let at = MemAddr(self.slot_addr(entry.slot).0 + index * size);
        let bytes = memory.slice(at, size as usize).map_err(mem_err(at))?;
        Ok(Some(if size == 8 {
            format::u64_at(bytes, 0).unwrap_or(0)
        } else {
            format::u32_at(bytes, 0).unwrap_or(0) as u64
        }))
    }

    // ---------------------------------------------------------------- pointer block cache

    pub(crate) fn slot_addr(&self, slot: u16) -> MemAddr {
        MemAddr(self.buffer.addr.0 + SCRATCH_BYTES + slot as u64 * self.slot_bytes)
    }

    /// Whether a read of `raw` is in flight.
    pub(crate) fn cache_loading(&self, raw: u64) -> bool {
        self.cache.iter().any(|e| e.raw == raw && e.loading)
    }

    /// A slot for `raw`, marked loading: the one it already has (a re-read writes the same
    /// bytes), a free one, or the least recently used loaded one. A slot that an asynchronous
    /// metadata read is still filling is never handed to another address.
    pub(crate) fn cache_alloc(&mut self, raw: u64) -> Option<u16> {
        let tick = self.clock.get() + 1;
        self.clock.set(tick);
        if let Some(e) = self.cache.iter_mut().find(|e| e.raw == raw) {
            e.loading = true;
            e.used.set(tick);
            return Some(e.slot);
        }
        if self.cache.len() < self.cache_slots as usize {
            let slot = (0..self.cache_slots)
                .find(|s| self.cache.iter().all(|e| e.slot != *s) && !self.io.slot_busy(*s))?;
            let _ = self.cache.push(CacheEntry {
                raw,
                slot,
                loading: true,
                used: Cell::new(tick),
            });
            return Some(slot);
        }
        let io = &self.io;
        let victim = self
            .cache
            .iter_mut()
            .filter(|e| !e.loading && !io.slot_busy(e.slot))
            .min_by_key(|e| e.used.get())?;
        victim.raw = raw;
        victim.loading = true;
        victim.used.set(tick);
        self.counters.cache_evictions += 1;
        Some(victim.slot)
    }

    /// Marks `raw`, read into `slot`, usable.
    pub(crate) fn cache_loaded(&mut self, raw: u64, slot: u16) {
        if self.io.slot_busy(slot) {
            return; // another read into the slot is still in flight
        }
        if let Some(e) = self
            .cache
            .iter_mut()
            .find(|e| e.raw == raw && e.slot == slot)
        {
            e.loading = false;
        }
    }

    /// Forgets `raw` after a failed read into `slot`, unless a read into the slot is still in
    /// flight (its completion decides).
    pub(crate) fn cache_drop(&mut self, raw: u64, slot: u16) {
        if self.io.slot_busy(slot) {
            return;
        }
        if let Some(i) = self
            .cache
            .iter()
            .position(|e| e.raw == raw && e.slot == slot)
        {
            self.cache.swap_remove(i);
        }
    }

    // ---------------------------------------------------------------- nodes and directories

    pub(crate) fn node_addr(node: fss::NodeId) -> Result<u32, FsError> {
        u32::try_from(node.0)
            .ok()
            .filter(|a| a & 7 == 4)
            .ok_or(FsError::new(FsErrorKind::NotFound, "node", node.0))
    }

    pub(crate) fn stat_of(file: &FileMap) -> Stat {
        let m = &file.meta;
        Stat {
            node: fss::NodeId(m.addr as u64),
            kind: file.kind(),
            size: m.size,
            mode: m.mode,
            links: m.links,
            uid: m.uid,
            gid: m.gid,
            mtime: m.mtime,
            ctime: m.ctime,
            atime: m.atime,
            block_size: m.block_size,
            blocks: m.blocks,
        }
    }

    /// The raw device mapping record of RDM file `node`.
    pub fn rdm_mapping(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        node: fss::NodeId,
    ) -> Result<RdmMapping, FsError> {
        let file = self.load_fd(now, memory, Self::node_addr(node)?)?;
        if file.meta.desc_type != desc_type::RDM {
            return Err(FsError::new(FsErrorKind::NotAnRdm, "node", node.0));
        }
        let at = file.fd_offset + self.layout.fd_data_offset as u64;
        let scratch = self.buffer.addr;
        self.read_volume_sync(now, memory, at, 512, scratch)?;
        let bytes = memory
            .slice(scratch, RdmMapping::BYTES)
            .map_err(mem_err(scratch))?;
        RdmMapping::parse(bytes, at)
    }

    /// Hands every entry of directory `dir` to `each` until it returns `false`.
    pub(crate) fn dir_entries(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        dir: &FileMap,
        each: &mut dyn FnMut(&RawDirEntry) -> bool,
    ) -> Result<usize, FsError> {
        if !dir.kind().is_dir() {
            return Err(FsError::new(
                FsErrorKind::NotADirectory,
                "node",
                dir.meta.addr as u64,
            ));
        }
        if self.layout.v6 {
            self.dir6_entries(now, memory, dir, each)
        } else {
            self.dir5_entries(now, memory, dir, each)
        }
    }

    fn dir5_entries(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        dir: &FileMap,
        each: &mut dyn FnMut(&RawDirEntry) -> bool,
    ) -> Result<usize, FsError> {
        let size = dir.meta.size;
        if size > MAX_DIR_BYTES {
            return Err(FsError::corrupt("directory size", dir.fd_offset));
        }
        let v6 = self.layout.v6;
        let entry_bytes = if v6 { DIRENT6_BYTES } else { DIRENT5_BYTES } as u64;
        let count = size / entry_bytes;
        let per_chunk = (0x2000 / entry_bytes).max(1);
        let mut handed = 0usize;
        let mut i = 0u64;
        while i < count {
            let n = per_chunk.min(count - i);
            let at = self.read_file_sync(now, memory, dir, i * entry_bytes, n * entry_bytes)?;
            for k in 0..n {
                let mut raw = [0u8; DIRENT6_BYTES];
                let src = MemAddr(at.0 + k * entry_bytes);
                memory
                    .read(src, &mut raw[..entry_bytes as usize])
                    .map_err(mem_err(src))?;
                let Some(entry) = RawDirEntry::parse(&raw, v6) else {
                    continue;
                };
                if entry.addr == 0 {
                    continue;
                }
                handed += 1;
                if !each(&entry) {
                    return Ok(handed);
                }
            }
            i += n;
        }
        Ok(handed)
    }

    fn dir6_entries(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        dir: &FileMap,
        each: &mut dyn FnMut(&RawDirEntry) -> bool,
    ) -> Result<usize, FsError> {
        let bad = |what: &'static str| FsError::corrupt(what, dir.fd_offset);
        if dir.meta.size > MAX_DIR_BYTES {
            return Err(bad("directory size"));
        }
        let md = self.descriptor.md_alignment as u64;
        let mut header = [0u8; DIR6_HEADER_BYTES];
        let at = self.read_file_sync(now, memory, dir, 0, DIR6_HEADER_BYTES as u64)?;
        memory.read(at, &mut header).map_err(mem_err(at))?;
        let version = format::u32_at(&header, 0).unwrap_or(0);
        if !DIR6_VERSIONS.contains(&version) {
            return Err(bad("directory header"));
        }
        let mut remaining = format::u32_at(&header, 4).unwrap_or(0) as u64;
        let map_count = format::u32_at(&header, 0x0c).unwrap_or(0) as usize;
        if map_count > 128 {
            return Err(bad("directory header"));
        }
        let mut handed = 0usize;
        for special in [0x3B8usize, 0x4D8] {
            if remaining == 0 {
                return Ok(handed);
            }
            let Some(entry) = RawDirEntry::parse(&header[special..special + DIRENT6_BYTES], true)
            else {
                return Err(bad("directory header"));
            };
            if entry.addr != 0 {
                remaining -= 1;
                handed += 1;
                if !each(&entry) {
                    return Ok(handed);
                }
            }
        }
        let nibbles = 2 * md - 2 * DIR6_BLOCK_HEADER as u64;
        let mut map_block = [0u8; 4096];
        let mut block = [0u8; 4096];
        for i in 0..map_count {
            if remaining == 0 {
                break;
            }
            let number = format::u32_at(&header, 0x10 + 4 * i).unwrap_or(0) as u64;
            let offset = block_offset(number, md).ok_or_else(|| bad("directory block"))?;
            if offset + md > dir.meta.size {
                return Err(bad("directory allocation map"));
            }
            let at = self.read_file_sync(now, memory, dir, offset, md)?;
            memory
                .read(at, &mut map_block[..md as usize])
                .map_err(mem_err(at))?;
            for nibble in 0..nibbles {
                if remaining == 0 {
                    break;
                }
                let byte = map_block[DIR6_BLOCK_HEADER + (nibble / 2) as usize];
                let value = if nibble % 2 == 0 {
                    byte >> 4
                } else {
                    byte & 0xF
                };
                if value & 3 != DIR6_BLOCK_DIRENT {
                    continue;
                }
                let index = (i as u64) * nibbles + nibble;
                let offset = block_offset(index, md).ok_or_else(|| bad("directory block"))?;
                if offset + md > dir.meta.size {
                    return Err(bad("directory allocation map"));
                }
                let at = self.read_file_sync(now, memory, dir, offset, md)?;
                memory
                    .read(at, &mut block[..md as usize])
                    .map_err(mem_err(at))?;
                let slots = format::u16_at(&block, 4).unwrap_or(0) as u64;
                if slots > (md - DIR6_BLOCK_HEADER as u64) / DIRENT6_BYTES as u64 {
                    return Err(bad("directory block"));
                }
                for slot in 0..slots as usize {
                    if (block[8 + slot / 8] >> (slot % 8)) & 1 != 0 {
                        continue;
                    }
                    let start = DIR6_BLOCK_HEADER + slot * DIRENT6_BYTES;
                    let Some(entry) =
                        RawDirEntry::parse(&block[start..start + DIRENT6_BYTES], true)
                    else {
                        return Err(bad("directory entry"));
                    };
                    remaining -= 1;
                    handed += 1;
                    if !each(&entry) {
                        return Ok(handed);
                    }
                    if remaining == 0 {
                        break;
                    }
                }
            }
        }
        Ok(handed)
    }

    /// The node named `name` in `dir`.
    pub(crate) fn find_entry(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        dir: &FileMap,
        name: &[u8],
    ) -> Result<u32, FsError> {
        if name == b"." {
            return Ok(dir.meta.addr);
        }
        if self.layout.v6 && name != b".." {
            if let Some(addr) = self.find_hashed(now, memory, dir, name)? {
                self.counters.hashed_lookups += 1;
                return Ok(addr);
            }
            self.counters.linear_lookups += 1;
        }
        let mut found = None;
        self.dir_entries(now, memory, dir, &mut |e| {
            if e.name() == name {
                found = Some(e.addr);
                false
            } else {
                true
            }
        })?;
        found.ok_or(FsError::new(
            FsErrorKind::NotFound,
            "directory entry",
            dir.meta.addr as u64,
        ))
    }

    /// Walks the whole address tree of `node` (its address array and every pointer block under
    /// it) and checks that every allocated block resolves inside the volume. Bounded by the
    /// tree's size; pointer blocks are read synchronously through the cache.
    pub fn check_file(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        node: fss::NodeId,
    ) -> Result<FileCheck, FsError> {
        let file = self.load_fd(now, memory, Self::node_addr(node)?)?;
        let mut check = FileCheck::default();
        let shift = file.block_shift;
        let pb_shift = self.layout.pb_shift;
        let per_pb = 1u64 << pb_shift;
        let levels = match file.meta.zla {
            zla::FILE_BLOCK | zla::SUB_BLOCK => 0,
            zla::POINTER_BLOCK | zla::POINTER2_BLOCK => 1,
            zla::DOUBLE => 2,
            _ => return Ok(check),
        };
        for top in 0..file.addr_count as u64 {
            let raw = file.addrs[top as usize];
            if raw == 0 {
                continue;
            }
            let block_bytes = 1u64 << shift;
            let offset_of = |index: u64| {
                index
                    .checked_mul(block_bytes)
                    .filter(|o| *o < file.meta.size)
            };
            let Some(first) = per_pb.checked_pow(levels).and_then(|s| top.checked_mul(s)) else {
                continue;
            };
            let Some(first_offset) = offset_of(first) else {
                continue;
            };
            if levels == 0 {
                self.check_block(now, memory, &file, first_offset, &mut check)?;
                continue;
            }
            check.pointer_blocks += 1;
            for second in 0..per_pb {
                let Some(entry) = self.pb_entry_sync(now, memory, raw, second)? else {
                    continue;
                };
                let Some(index) = first.checked_add(second * per_pb.pow(levels - 1)) else {
                    break;
                };
                let Some(offset) = offset_of(index) else {
                    break;
                };
                if levels == 1 {
                    self.check_block(now, memory, &file, offset, &mut check)?;
                    continue;
                }
                check.pointer_blocks += 1;
                for third in 0..per_pb {
                    if self.pb_entry_sync(now, memory, entry, third)?.is_none() {
                        continue;
                    }
                    let Some(offset) = index.checked_add(third).and_then(offset_of) else {
                        break;
                    };
                    self.check_block(now, memory, &file, offset, &mut check)?;
                }
            }
        }
        Ok(check)
    }

    /// Entry `index` of pointer block `raw` (read if needed); `None` when the entry is zero.
    fn pb_entry_sync(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        raw: u64,
        index: u64,
    ) -> Result<Option<u64>, FsError> {
        for _ in 0..4 {
            if let Some(entry) = self.pb_entry(&*memory, raw, index)? {
                return Ok((entry != 0).then_some(entry));
            }
            self.fetch_sync(now, memory, raw, 0)?;
        }
        Err(FsError::new(
            FsErrorKind::Buffer,
            "pointer block cache",
            raw,
        ))
    }

    fn check_block(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        file: &FileMap,
        offset: u64,
        check: &mut FileCheck,
    ) -> Result<(), FsError> {
        if check.data_blocks + check.zero_blocks >= MAX_CHECKED_BLOCKS {
            return Err(FsError::corrupt("address tree too large", file.fd_offset));
        }
        let capacity = self.device.geometry().capacity_bytes().unwrap_or(u64::MAX);
        match self.map_sync(now, memory, file, offset)? {
            Step::Volume(vol, len) => {
                if vol.checked_add(len).is_none_or(|end| end > capacity) {
                    return Err(FsError::corrupt("data block address", vol));
                }
                check.data_blocks += 1;
            }
            _ => check.zero_blocks += 1,
        }
        Ok(())
    }

    /// Looks `name` up through a VMFS6 directory's hash table and link groups. `None` when the
    /// hash path does not lead to an entry of that name (the caller then scans the directory).
    fn find_hashed(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        dir: &FileMap,
        name: &[u8],
    ) -> Result<Option<u32>, FsError> {
        let in_root = dir.meta.addr == format::ROOT_DIR_ADDR;
        let Some((link_hash, slot)) = format::name_hash(name, in_root) else {
            return Ok(None);
        };
        let md = self.descriptor.md_alignment as u64;
        let size = dir.meta.size;
        let table = DIR6_HEADER_BYTES as u64 + slot * 4;
        if table + 4 > size {
            return Err(FsError::corrupt("directory hash table", dir.fd_offset));
        }
        let mut word = [0u8; 4];
        let at = self.read_file_sync(now, memory, dir, table, 4)?;
        memory.read(at, &mut word).map_err(mem_err(at))?;
        let mut location = u32::from_le_bytes(word);
        for _ in 0..1024 {
            let (kind, block, index) = format::dir6_location(location);
            let base = block_offset(block, md)
                .and_then(|o| o.checked_add(DIR6_BLOCK_HEADER as u64))
                .ok_or(FsError::corrupt("directory location", location as u64))?;
            match kind {
                0 => return Ok(None),
                DIR6_BLOCK_DIRENT => {
                    let offset = base + index * DIRENT6_BYTES as u64;
                    if index >= (md - DIR6_BLOCK_HEADER as u64) / DIRENT6_BYTES as u64
                        || offset + DIRENT6_BYTES as u64 > size
                    {
                        return Err(FsError::corrupt("directory location", location as u64));
                    }
                    let mut raw = [0u8; DIRENT6_BYTES];
                    let at = self.read_file_sync(now, memory, dir, offset, raw.len() as u64)?;
                    memory.read(at, &mut raw).map_err(mem_err(at))?;
                    let entry = RawDirEntry::parse(&raw, true)
                        .ok_or(FsError::corrupt("directory entry", offset))?;
                    return Ok((entry.name() == name && entry.addr != 0).then_some(entry.addr));
                }
                DIR6_BLOCK_LINK => {
                    let offset = base + index * DIR6_LINK_GROUP_BYTES as u64;
                    if index >= (md - DIR6_BLOCK_HEADER as u64) / DIR6_LINK_GROUP_BYTES as u64
                        || offset + DIR6_LINK_GROUP_BYTES as u64 > size
                    {
                        return Err(FsError::corrupt("directory link group", location as u64));
                    }
                    let mut group = [0u8; DIR6_LINK_GROUP_BYTES];
                    let at = self.read_file_sync(now, memory, dir, offset, group.len() as u64)?;
                    memory.read(at, &mut group).map_err(mem_err(at))?;
                    if format::u16_at(&group, 0) != Some(slot as u16) {
                        return Ok(None);
                    }
                    let used = group[2].saturating_sub(group[3]).min(12) as usize;
                    let next = format::u32_at(&group, 0x4e).unwrap_or(0);
                    location = (0..used)
                        .find(|k| format::u16_at(&group, 6 + 6 * k + 4) == Some(link_hash))
                        .and_then(|k| format::u32_at(&group, 6 + 6 * k))
                        .unwrap_or(next);
                }
                _ => return Err(FsError::corrupt("directory location", location as u64)),
            }
        }
        Err(FsError::corrupt("directory link chain", dir.fd_offset))
    }

    /// Completions of other requests that arrived during synchronous reads.
    pub(crate) fn take_stash(&mut self) -> Option<Completion> {
        self.io.stash.pop_front()
    }
}

/// The bytes from `offset` to the end of the aligned `1 << shift`-byte span holding it: the
/// rest of a hole left by a missing pointer block, which covers every block that pointer block
/// would address (`shift` is the block shift plus the pointer bits of each missing level).
fn hole(offset: u64, shift: u32) -> u64 {
    let span = 1u64.checked_shl(shift).unwrap_or(0);
    match span {
        0 => u64::MAX - offset,
        _ => span - (offset & (span - 1)),
    }
}

/// Offset of VMFS6 directory block `number` in the directory file.
fn block_offset(number: u64, md: u64) -> Option<u64> {
    number.checked_mul(md)?.checked_add(DIR6_HEADER_BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use block::{FileDisk, MemoryRegions};

    use std::path::PathBuf;
    use std::vec;
    use std::vec::Vec;

    /// The `vmfs5d` fixture (VMFS5 on a bare device), decompressed once (sparse) into the
    /// system's temporary directory.
    fn vmfs5d() -> PathBuf {
        fixtures::image("vmfs/vmfs5d.bin.gz")
    }

    fn mount_vmfs5d(order: &[(ResourceKind, u32, bool)]) -> Result<Vmfs<FileDisk<16>>, FsError> {
        let disk = FileDisk::<16>::open_read_only(vmfs5d(), 512).unwrap();
        let len = MetaBuffer::recommended_len(4);
        let mut meta: Vec<u8> = vec![0u8; len as usize];
        let mut memory = MemoryRegions::<1>::new();
        memory.add(MemAddr(0x1000_0000), &mut meta).unwrap();
        let buffer = MetaBuffer {
            addr: MemAddr(0x1000_0000),
            len,
        };
        Vmfs::mount_ordered(disk, buffer, Instant::ZERO, &mut memory, order)
    }

    /// `.sbc.sf` of `vmfs5d` is addressed through `.pbc.sf` pointer blocks: its resource header
    /// cannot be read before `.pbc.sf` is open, and a mount that tries the files in the worst
    /// order still opens every one of them (it tries `.sbc.sf` again once `.pbc.sf` is open).
    #[test]
    fn system_files_open_whatever_order_they_are_tried_in() {
        let sbc_alone = [(ResourceKind::SubBlock, format::SBC_ADDR, true)];
        let error = mount_vmfs5d(&sbc_alone).err().expect(".sbc.sf alone");
        assert_eq!(error.structure(), "pointer block address");
        let preferred = mount_vmfs5d(&format::SYSTEM_FILE_OPEN_ORDER).unwrap();
        let mut reversed = format::SYSTEM_FILE_OPEN_ORDER;
        reversed.reverse();
        let fs = mount_vmfs5d(&reversed).unwrap();
        for (kind, _, _) in format::SYSTEM_FILE_OPEN_ORDER {
            assert!(fs.sys[kind.index()].is_some(), "{}", kind.name());
            assert_eq!(fs.res[kind.index()], preferred.res[kind.index()]);
        }
        assert_eq!(fs.res[ResourceKind::SubBlock.index()].resource_bytes, 8192);
    }
}
