//! Shared helpers of the real-image tests: fixtures, decompression, and opening volumes the way
//! the host does.
//!
//! The `vmfs5`, `vmfs6` and `vmfs5-span` images are ESXi LVM volumes (one device, or two for the
//! span): the `lvm` crate scans their device headers, groups the devices into the volume and
//! mounts it as a `BlockDevice` that maps volume blocks through the physical extents, so these
//! tests read VMFS through the real storage stack. `vmfs5d` has no LVM header and is mounted
//! from the bare device.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::PathBuf;

use block::{
    BlockDevice, BlockRequest, Completion, DEFAULT_SG_CAPACITY, FileDisk, Geometry, Instant,
    MemAddr, Memory, MemoryRegions, SgList, SubmitError, Tag,
};
use fss::{FileHandle, FileRequest, FileSystem, NodeId};
use vmfs::{MetaBuffer, Vmfs};

pub const META_ADDR: MemAddr = MemAddr(0x1_0000_0000);
pub const DATA_ADDR: MemAddr = MemAddr(0x2_0000_0000);
pub const META_LEN: u64 = MetaBuffer::recommended_len(16);
pub const DATA_LEN: usize = 4 << 20;

/// The fixture image `fixtures/<rel>.bin.gz` inflated once into a sparse file.
pub fn image(rel: &str) -> PathBuf {
    fixtures::image(&format!("{rel}.bin.gz"))
}

/// Most devices (and volume members) one test volume has.
pub const MAX_DEVICES: usize = 4;
/// Most physical extent runs one test volume has.
pub const MAX_EXTENTS: usize = 32;
/// Requests an LVM volume keeps outstanding (as many as a device file).
pub const VOLUME_PARENTS: usize = 64;

/// A device image.
pub type DeviceFile = FileDisk<64>;
/// An LVM volume over device images, as the `lvm` crate mounts it.
pub type LvmVolume =
    lvm::Volume<Member, MAX_DEVICES, MAX_EXTENTS, VOLUME_PARENTS, DEFAULT_SG_CAPACITY>;

/// A member device of an LVM volume, boxed: the volume holds its members by value, and a few
/// `FileDisk`s (19 KB each with their request tables) moved through the unoptimised mount path
/// overflow a test thread's 2 MiB stack.
pub struct Member(pub Box<DeviceFile>);

impl BlockDevice for Member {
    fn geometry(&self) -> Geometry {
        self.0.geometry()
    }

    fn submit(&mut self, now: Instant, request: BlockRequest) -> Result<(), SubmitError> {
        self.0.submit(now, request)
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        self.0.poll(now, memory, done)
    }
}

/// What a file system is mounted from: an ESXi LVM volume through the real `lvm` crate (one or
/// more devices), or a bare device with no LVM header (`vmfs5d`).
pub enum Disk {
    Bare(Box<DeviceFile>),
    Lvm(Box<LvmVolume>),
}

impl BlockDevice for Disk {
    fn geometry(&self) -> Geometry {
        match self {
            Disk::Bare(d) => d.geometry(),
            Disk::Lvm(v) => v.geometry(),
        }
    }

    fn submit(&mut self, now: Instant, request: BlockRequest) -> Result<(), SubmitError> {
        match self {
            Disk::Bare(d) => d.submit(now, request),
            Disk::Lvm(v) => v.submit(now, request),
        }
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        match self {
            Disk::Bare(d) => d.poll(now, memory, done),
            Disk::Lvm(v) => v.poll(now, memory, done),
        }
    }
}

impl Disk {
    /// Whether this is an LVM volume (and not a bare device).
    pub fn is_lvm(&self) -> bool {
        matches!(self, Disk::Lvm(_))
    }
}

/// Scans `devices` (in any order) with the `lvm` crate and returns what they make up.
pub fn scan_devices(devices: &mut [Member]) -> lvm::Scan<MAX_DEVICES, MAX_EXTENTS> {
    const LVM_META: MemAddr = MemAddr(0x10_0000);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(LVM_META, &mut buffer).unwrap();
    let mut io = lvm::MetadataIo::new(&mut memory, LVM_META, 64 * 1024, Instant::ZERO).unwrap();
    // Fixture images carry no SCSI identity, so snapshot detection by identity does not apply.
    let identities = vec![None; devices.len()];
    lvm::scan::<_, 16, MAX_DEVICES, MAX_EXTENTS>(devices, &identities, &mut io).unwrap()
}

/// Opens the volume the device images `rels` hold: the bare device when a single image has no
/// LVM header, else the one complete LVM volume they make up, mounted through the `lvm` crate.
pub fn open_volume(rels: &[&str]) -> Disk {
    let mut devices: Vec<Member> = rels
        .iter()
        .map(|rel| Member(Box::new(FileDisk::open_read_only(image(rel), 512).unwrap())))
        .collect();
    let scanned = scan_devices(&mut devices);
    if scanned
        .devices
        .iter()
        .all(|d| *d == lvm::DeviceStatus::NoHeader)
    {
        assert_eq!(
            devices.len(),
            1,
            "{rels:?}: several devices without LVM headers"
        );
        return Disk::Bare(devices.remove(0).0);
    }
    assert_eq!(
        scanned.volumes.len(),
        1,
        "{rels:?}: not exactly one LVM volume"
    );
    let volume = &scanned.volumes[0];
    assert!(volume.is_complete(), "{rels:?}: {:?}", volume.status);
    let mut slots: Vec<Option<Member>> = devices.into_iter().map(Some).collect();
    let members: heapless::Vec<Member, MAX_DEVICES> = volume
        .member_devices()
        .map(|i| slots[i].take().expect("a device is a member twice"))
        .collect();
    let mut table = lvm::MountTable::<1>::new();
    let mounted = table
        .mount(volume, members, lvm::MountMode::Normal)
        .map_err(|refused| refused.error)
        .unwrap_or_else(|e| panic!("{rels:?}: mounting the LVM volume: {e}"));
    Disk::Lvm(Box::new(mounted))
}

/// Opens the volume on the single device image `rel`.
pub fn open_device(rel: &str) -> Disk {
    open_volume(&[rel])
}

/// Buffers of one test: the metadata region and a data region.
pub struct Buffers {
    pub meta: Vec<u8>,
    pub data: Vec<u8>,
}

impl Buffers {
    pub fn new() -> Self {
        Self {
            meta: vec![0u8; META_LEN as usize],
            data: vec![0u8; DATA_LEN],
        }
    }

    pub fn memory(&mut self) -> MemoryRegions<'_, 2> {
        let mut m = MemoryRegions::new();
        m.add(META_ADDR, &mut self.meta).unwrap();
        m.add(DATA_ADDR, &mut self.data).unwrap();
        m
    }
}

pub fn mount(rel: &str, memory: &mut dyn Memory) -> Vmfs<Disk> {
    mount_devices(&[rel], memory)
}

/// Mounts the file system on the volume the device images `rels` make up.
pub fn mount_devices(rels: &[&str], memory: &mut dyn Memory) -> Vmfs<Disk> {
    let buffer = MetaBuffer {
        addr: META_ADDR,
        len: META_LEN,
    };
    Vmfs::mount(open_volume(rels), buffer, Instant::ZERO, memory)
        .unwrap_or_else(|e| panic!("mounting {rels:?}: {e}"))
}

/// Reads `len` bytes at `offset` of `handle` (offset aligned) through submit/poll, in requests
/// of at most `chunk` bytes, several outstanding at once.
pub fn read_range(
    fs: &mut dyn FileSystem,
    memory: &mut dyn Memory,
    handle: FileHandle,
    offset: u64,
    len: u64,
    chunk: u64,
) -> Vec<u8> {
    let align = fs.io_align() as u64;
    let start = offset - offset % align;
    let end = (offset + len).div_ceil(align) * align;
    let mut out = Vec::with_capacity((end - start) as usize);
    let slots = (DATA_LEN as u64 / chunk).clamp(1, 8);
    let mut at = start;
    let now = Instant::ZERO;
    while at < end {
        let mut submitted = Vec::new();
        for slot in 0..slots {
            if at >= end {
                break;
            }
            let n = chunk.min(end - at);
            let addr = MemAddr(DATA_ADDR.0 + slot * chunk);
            let sg = SgList::single(addr, n as u32).unwrap();
            let tag = Tag(at);
            fs.submit(now, FileRequest::read(tag, handle, at, sg))
                .map_err(|(e, _)| e)
                .unwrap();
            submitted.push((tag, addr, n));
            at += n;
        }
        let mut pending = submitted.len();
        let mut polls = 0;
        while pending > 0 {
            polls += 1;
            assert!(polls < 100_000, "file requests never completed");
            fs.poll(now, memory, &mut |c: Completion| {
                c.result.unwrap_or_else(|e| panic!("read failed: {e}"));
                pending -= 1;
            });
        }
        for (_, addr, n) in submitted {
            let mut buf = vec![0u8; n as usize];
            memory.read(addr, &mut buf).unwrap();
            out.extend_from_slice(&buf);
        }
    }
    let skip = (offset - start) as usize;
    out[skip..skip + len as usize].to_vec()
}

/// The whole content of the file at `path` in the volume.
pub fn read_file<D: BlockDevice>(fs: &mut Vmfs<D>, memory: &mut dyn Memory, path: &str) -> Vec<u8> {
    let node = fs.lookup_path(Instant::ZERO, memory, path).unwrap();
    read_node(fs, memory, node)
}

pub fn read_node<D: BlockDevice>(
    fs: &mut Vmfs<D>,
    memory: &mut dyn Memory,
    node: NodeId,
) -> Vec<u8> {
    let now = Instant::ZERO;
    let size = fs.stat(now, memory, node).unwrap().size;
    let handle = fs.open(now, memory, node).unwrap();
    let data = if size == 0 {
        Vec::new()
    } else {
        read_range(fs, memory, handle, 0, size, 1 << 20)
    };
    fs.close(handle).unwrap();
    data
}

pub fn list<D: BlockDevice>(
    fs: &mut Vmfs<D>,
    memory: &mut dyn Memory,
    path: &str,
) -> Vec<(String, u64)> {
    let now = Instant::ZERO;
    let node = fs.lookup_path(now, memory, path).unwrap();
    let mut names = Vec::new();
    fs.readdir(now, memory, node, &mut |e| {
        names.push((String::from_utf8_lossy(e.name).into_owned(), e.node.0));
        true
    })
    .unwrap();
    names
}
