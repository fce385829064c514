//! Helpers shared by the integration tests: qemu-img / qemu-io, and reading disks through the
//! crate with a host address space.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

use block::{
    BlockCount, BlockDevice, BlockRequest, Instant, Lba, MemAddr, MemoryRegions, SgList, Tag,
    run_to_completion,
};

/// Where the data buffer lives in the test address space.
pub const DATA_ADDR: MemAddr = MemAddr(0x1000_0000);
/// Bytes of data buffer.
pub const DATA_LEN: usize = 1 << 20;
/// Where the metadata region lives.
pub const META_ADDR: MemAddr = MemAddr(0x8000_0000);
/// Bytes of metadata region.
pub const META_LEN: usize = 16 << 20;

pub fn tool(name: &str) -> PathBuf {
    let found = Command::new(name).arg("--version").output().is_ok();
    assert!(
        found,
        "`{name}` not found: install it with `apt-get install qemu-utils` (the QEMU disk \
         image tools are the oracle of these tests)"
    );
    PathBuf::from(name)
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn qemu_img(args: &[&str]) -> String {
    run(Command::new(tool("qemu-img")).args(args))
}

pub fn qemu_io_write(path: &Path, pattern: u8, offset: u64, len: u64) {
    run(Command::new(tool("qemu-io")).args([
        "-f",
        "vmdk",
        "-c",
        &format!("write -P 0x{pattern:02x} {offset} {len}"),
        path.to_str().unwrap(),
    ]));
}

pub fn convert_raw(path: &Path) -> Vec<u8> {
    let raw = path.with_extension("raw");
    qemu_img(&[
        "convert",
        "-O",
        "raw",
        path.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&raw).unwrap();
    std::fs::remove_file(raw).unwrap();
    bytes
}

/// A fresh directory for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmdk-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A deterministic list of (pattern, offset, len) writes inside `capacity` bytes, 512-aligned.
pub fn patterns(seed: u64, count: usize, capacity: u64) -> Vec<(u8, u64, u64)> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..count)
        .map(|i| {
            let len = (next() % 256 + 1) * 512;
            let offset = (next() % ((capacity - len) / 512)) * 512;
            (0x11u8.wrapping_add((i as u8).wrapping_mul(7)), offset, len)
        })
        .collect()
}

/// Reads the whole of `dev` through the crate, 1 MiB at a time.
pub fn read_all<D: BlockDevice>(dev: &mut D, memory: &mut MemoryRegions<'_, 2>) -> Vec<u8> {
    use block::Memory;
    let g = dev.geometry();
    let total = g.block_count * 512;
    let mut out = Vec::with_capacity(total as usize);
    let mut at = 0u64;
    let mut tag = 1u64;
    while at < total {
        let n = (total - at).min(DATA_LEN as u64);
        let sg = SgList::single(DATA_ADDR, n as u32).unwrap();
        let req = BlockRequest::read(Tag(tag), Lba(at / 512), BlockCount((n / 512) as u32), sg);
        tag += 1;
        let d = run_to_completion(dev, memory, Instant(0), req, 1000, &mut |_| {}).unwrap();
        d.completion
            .result
            .unwrap_or_else(|e| panic!("read at {at}: {e}"));
        let mut buf = vec![0u8; n as usize];
        memory.read(DATA_ADDR, &mut buf).unwrap();
        out.extend_from_slice(&buf);
        at += n;
    }
    out
}

/// Writes `data` at byte `offset` of `dev` through the crate.
pub fn write_at<D: BlockDevice>(
    dev: &mut D,
    memory: &mut MemoryRegions<'_, 2>,
    offset: u64,
    data: &[u8],
) {
    use block::Memory;
    let mut done = 0usize;
    while done < data.len() {
        let n = (data.len() - done).min(DATA_LEN);
        memory.write(DATA_ADDR, &data[done..done + n]).unwrap();
        let sg = SgList::single(DATA_ADDR, n as u32).unwrap();
        let lba = (offset + done as u64) / 512;
        let req = BlockRequest::write(Tag(lba + 1), Lba(lba), BlockCount((n / 512) as u32), sg);
        let d = run_to_completion(dev, memory, Instant(0), req, 1000, &mut |_| {}).unwrap();
        d.completion
            .result
            .unwrap_or_else(|e| panic!("write at {offset}: {e}"));
        done += n;
    }
}

/// Index of the first differing byte, for readable assertion messages.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}
