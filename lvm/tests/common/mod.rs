//! Helpers shared by the integration tests: fixtures, memory, synchronous volume I/O.
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use block::{
    BlockCount, BlockDevice, BlockRequest, Completion, Instant, Lba, MemAddr, Memory,
    MemoryRegions, SgList, Tag,
};

/// Where the metadata buffer lives in the test address space.
pub const META_ADDR: MemAddr = MemAddr(0x1000_0000);
/// Size of the metadata buffer.
pub const META_LEN: u32 = 64 * 1024;
/// Where data buffers live.
pub const DATA_ADDR: MemAddr = MemAddr(0x2000_0000);

/// The directory of the real ESXi images.
pub fn fixtures_dir() -> PathBuf {
    let dir = match std::env::var_os("VMFS_REAL_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/vmfs-real"),
    };
    assert!(
        dir.join("lvm/lvm5.bin.gz").is_file(),
        "real ESXi fixtures not found at {}: set VMFS_REAL_DIR to the vmfs-real fixture directory \
         (the one holding lvm/lvm5.bin.gz)",
        dir.display()
    );
    dir
}

static DECOMPRESS: Mutex<()> = Mutex::new(());

/// Decompresses `relative` (e.g. `lvm/lvm5.bin.gz`) once into the build directory, sparsely,
/// and returns the path of the image.
pub fn image(relative: &str) -> PathBuf {
    let source = fixtures_dir().join(relative);
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vmfs-real");
    std::fs::create_dir_all(&out_dir).unwrap();
    let name = relative
        .replace('/', "_")
        .trim_end_matches(".gz")
        .to_string();
    let out = out_dir.join(&name);
    let done = out_dir.join(format!("{name}.done"));
    let _guard = DECOMPRESS.lock().unwrap_or_else(|e| e.into_inner());
    if done.exists() && out.exists() {
        return out;
    }
    let tmp = out_dir.join(format!("{name}.tmp"));
    let mut input = flate2::read::GzDecoder::new(File::open(&source).unwrap());
    let mut file = File::create(&tmp).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = input.read(&mut buf[filled..]).unwrap();
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        if buf[..filled].iter().all(|&b| b == 0) {
            file.seek(SeekFrom::Current(filled as i64)).unwrap();
        } else {
            file.write_all(&buf[..filled]).unwrap();
        }
        total += filled as u64;
    }
    file.set_len(total).unwrap();
    drop(file);
    std::fs::rename(&tmp, &out).unwrap();
    File::create(&done).unwrap();
    out
}

/// A scratch file of `len` bytes (sparse) in the build directory.
pub fn scratch(name: &str, len: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lvm-scratch");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let f = File::create(&path).unwrap();
    f.set_len(len).unwrap();
    path
}

/// Reads `blocks` blocks at `lba` of `device` into `out` through `memory` at `DATA_ADDR`,
/// polling until done.
pub fn read_blocks<D: BlockDevice>(
    device: &mut D,
    memory: &mut dyn Memory,
    lba: u64,
    blocks: u32,
    tag: u64,
) -> Result<Vec<u8>, block::BlockError> {
    let bs = device.geometry().block_size;
    let len = blocks * bs;
    let sg = SgList::single(DATA_ADDR, len).unwrap();
    let request = BlockRequest::read(Tag(tag), Lba(lba), BlockCount(blocks), sg);
    run(device, memory, request)?;
    let mut out = vec![0u8; len as usize];
    memory.read(DATA_ADDR, &mut out).unwrap();
    Ok(out)
}

/// Writes `data` at `lba` of `device` through `memory` at `DATA_ADDR`.
pub fn write_blocks<D: BlockDevice>(
    device: &mut D,
    memory: &mut dyn Memory,
    lba: u64,
    data: &[u8],
    tag: u64,
) -> Result<(), block::BlockError> {
    let bs = device.geometry().block_size;
    memory.write(DATA_ADDR, data).unwrap();
    let blocks = (data.len() / bs as usize) as u32;
    let sg = SgList::single(DATA_ADDR, data.len() as u32).unwrap();
    run(
        device,
        memory,
        BlockRequest::write(Tag(tag), Lba(lba), BlockCount(blocks), sg),
    )
}

fn run<D: BlockDevice>(
    device: &mut D,
    memory: &mut dyn Memory,
    request: BlockRequest,
) -> Result<(), block::BlockError> {
    let tag = request.tag;
    device.submit(Instant(0), request).expect("submit refused");
    let mut result = None;
    for _ in 0..1000 {
        device.poll(Instant(0), memory, &mut |c: Completion| {
            assert_eq!(c.tag, tag, "unexpected completion");
            assert!(result.is_none(), "completed twice");
            result = Some(c.result);
        });
        if let Some(r) = result {
            return r;
        }
    }
    panic!("request never completed");
}

/// An address space with a metadata buffer and a data buffer of `data_len` bytes.
pub struct Space {
    pub meta: Vec<u8>,
    pub data: Vec<u8>,
}

impl Space {
    pub fn new(data_len: usize) -> Self {
        Self {
            meta: vec![0; META_LEN as usize],
            data: vec![0; data_len],
        }
    }

    pub fn memory(&mut self) -> MemoryRegions<'_, 2> {
        let mut m = MemoryRegions::new();
        m.add(META_ADDR, &mut self.meta).unwrap();
        m.add(DATA_ADDR, &mut self.data).unwrap();
        m
    }
}

/// Asserts every byte of `bytes` is `value` (fast even in debug builds).
pub fn assert_filled(bytes: &[u8], value: u8, what: &str) {
    let pattern = [value; 4096];
    for (i, chunk) in bytes.chunks(4096).enumerate() {
        assert!(
            chunk == &pattern[..chunk.len()],
            "{what}: byte run {i} is not {value:#x}"
        );
    }
}
