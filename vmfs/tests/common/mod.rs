//! Shared helpers of the real-image tests: fixtures, decompression, and a test-only
//! offset-shifting device standing in for the LVM layer.
//!
//! The `vmfs5` and `vmfs6` images are single-device LVM volumes: the LVM device header at
//! 0x100000 (magic 0xC001D00D) records in `dataOffset` (a little-endian u64 at 0x100000 + 0x7A)
//! where the first physical extent, and so the volume, starts on the device. With one extent
//! the volume is the rest of the device from there on, so `OffsetDevice` shifting every LBA by
//! `dataOffset` is that volume. Spanned volumes need the real `lvm` crate.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use block::{
    BlockDevice, BlockRequest, Completion, FileDisk, Geometry, Instant, MemAddr, Memory,
    MemoryRegions, SgList, SubmitError, Tag,
};
use fss::{FileHandle, FileRequest, FileSystem, NodeId};
use vmfs::{MetaBuffer, Vmfs};

pub const META_ADDR: MemAddr = MemAddr(0x1_0000_0000);
pub const DATA_ADDR: MemAddr = MemAddr(0x2_0000_0000);
pub const META_LEN: u64 = MetaBuffer::recommended_len(16);
pub const DATA_LEN: usize = 4 << 20;

pub fn fixtures_dir() -> PathBuf {
    let dir = match std::env::var_os("VMFS_REAL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/vmfs-real"),
    };
    assert!(
        dir.join("README.md").is_file(),
        "VMFS fixtures not found at {}: set VMFS_REAL_DIR to the vmfs-real fixtures directory \
         (the one holding vmfs/vmfs5.bin.gz)",
        dir.display()
    );
    dir
}

/// Decompresses `fixtures/<rel>.bin.gz` once into the build's temporary directory (never into
/// the repository), keeping it sparse, and returns the image path.
pub fn image(rel: &str) -> PathBuf {
    let src = fixtures_dir().join(format!("{rel}.bin.gz"));
    assert!(src.is_file(), "fixture {} is missing", src.display());
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vmfs-real");
    std::fs::create_dir_all(&out_dir).unwrap();
    let name = rel.replace('/', "_");
    let out = out_dir.join(format!("{name}.bin"));
    let done = out_dir.join(format!("{name}.done"));
    if done.is_file() && out.is_file() {
        return out;
    }
    let tmp = out_dir.join(format!("{name}.{}.tmp", std::process::id()));
    let mut decoder = flate2::read::GzDecoder::new(File::open(&src).unwrap());
    let mut file = File::create(&tmp).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = decoder.read(&mut buf[filled..]).unwrap();
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        if buf[..filled].iter().any(|&b| b != 0) {
            file.seek(SeekFrom::Start(len)).unwrap();
            file.write_all(&buf[..filled]).unwrap();
        }
        len += filled as u64;
    }
    file.set_len(len).unwrap();
    drop(file);
    std::fs::rename(&tmp, &out).unwrap();
    File::create(&done).unwrap();
    out
}

/// The volume's start on a device with a single-extent LVM header, or 0 with none.
pub fn lvm_data_offset(path: &Path) -> u64 {
    let file = File::open(path).unwrap();
    let mut header = [0u8; 0x200];
    file.read_exact_at(&mut header, 0x10_0000).unwrap();
    if u32::from_le_bytes(header[0..4].try_into().unwrap()) != 0xC001_D00D {
        return 0;
    }
    u64::from_le_bytes(header[0x7A..0x82].try_into().unwrap())
}

/// A device that is `inner` from block `start` on (test-only stand-in for a one-extent LVM
/// volume).
pub struct OffsetDevice<D> {
    pub inner: D,
    pub start: u64,
}

impl<D: BlockDevice> BlockDevice for OffsetDevice<D> {
    fn geometry(&self) -> Geometry {
        let mut g = self.inner.geometry();
        g.block_count = g.block_count.saturating_sub(self.start);
        g
    }

    fn submit(&mut self, now: Instant, mut request: BlockRequest) -> Result<(), SubmitError> {
        let end = request.end_lba().map(|e| e.0);
        if end.is_none_or(|e| e > self.geometry().block_count) {
            // Out of the volume: let the device refuse it at an address past its end.
            request.lba = block::Lba(u64::MAX - request.blocks.0 as u64);
        } else {
            request.lba = block::Lba(request.lba.0 + self.start);
        }
        self.inner.submit(now, request).map_err(|mut e| {
            e.request.lba = block::Lba(e.request.lba.0.wrapping_sub(self.start));
            e
        })
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        self.inner.poll(now, memory, done)
    }
}

pub type Disk = OffsetDevice<FileDisk<64>>;

pub fn open_device(rel: &str) -> Disk {
    let path = image(rel);
    let start = lvm_data_offset(&path);
    let inner = FileDisk::<64>::open_read_only(&path, 512).unwrap();
    OffsetDevice {
        inner,
        start: start / 512,
    }
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
    let buffer = MetaBuffer {
        addr: META_ADDR,
        len: META_LEN,
    };
    Vmfs::mount(open_device(rel), buffer, Instant::ZERO, memory)
        .unwrap_or_else(|e| panic!("mounting {rel}: {e}"))
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
