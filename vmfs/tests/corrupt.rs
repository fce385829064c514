//! Bad input never panics or loops: proptest over corrupted copies of the real fixtures.
//!
//! A clean walk of a volume (mount, list every directory, stat every node, read links, RDM
//! records, the first bytes and a middle block of every file, its extent map from the start and
//! from the middle, check every address tree) records which device blocks it reads: that is the
//! metadata region. Each case then flips random bits in those blocks, or truncates the volume,
//! and walks again. Every operation must return (an error is fine); a panic or a request that
//! never completes fails the case.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use block::{
    BlockDevice, BlockError, BlockRequest, Completion, ErrorKind, Geometry, Instant, MemAddr,
    Memory, SgList, SubmitError, Tag,
};
use common::*;
use fss::{FileKind, FileRequest, FileSystem, NodeId};
use proptest::prelude::*;
use vmfs::{FileExtent, MetaBuffer, Vmfs};

const NOW: Instant = Instant::ZERO;

/// A device that corrupts what it reads: XORs bytes at volume offsets, ends early, and records
/// the blocks read.
struct Mutated {
    inner: Disk,
    flips: Vec<(u64, u8)>,
    limit_blocks: u64,
    pending: Vec<(Tag, u64, u32, SgList)>,
    refused: Vec<Completion>,
    trace: Rc<RefCell<BTreeSet<u64>>>,
}

impl BlockDevice for Mutated {
    fn geometry(&self) -> Geometry {
        let mut g = self.inner.geometry();
        g.block_count = g.block_count.min(self.limit_blocks);
        g
    }

    fn submit(&mut self, now: Instant, request: BlockRequest) -> Result<(), SubmitError> {
        let end = request.lba.0 + request.blocks.0 as u64;
        if end > self.limit_blocks {
            self.refused.push(Completion::err(
                request.tag,
                BlockError::with_info(ErrorKind::OutOfRange, request.lba.0),
            ));
            return Ok(());
        }
        {
            let mut trace = self.trace.borrow_mut();
            for lba in request.lba.0..end {
                trace.insert(lba);
            }
        }
        self.pending.push((
            request.tag,
            request.lba.0,
            request.blocks.0,
            request.sg.clone(),
        ));
        self.inner.submit(now, request)
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        let mut arrived = std::mem::take(&mut self.refused);
        let next = self.inner.poll(now, memory, &mut |c| arrived.push(c));
        for c in arrived {
            if let Some(i) = self.pending.iter().position(|p| p.0 == c.tag) {
                let (_, lba, blocks, sg) = self.pending.swap_remove(i);
                if c.is_ok() {
                    let start = lba * 512;
                    let end = start + blocks as u64 * 512;
                    for &(at, xor) in &self.flips {
                        if (start..end).contains(&at) {
                            let addr = sg.address_of(at - start).unwrap();
                            let mut b = [0u8];
                            memory.read(addr, &mut b).unwrap();
                            memory.write(addr, &[b[0] ^ xor]).unwrap();
                        }
                    }
                }
            }
            done(c);
        }
        next
    }
}

fn device(
    image: &str,
    flips: Vec<(u64, u8)>,
    limit_blocks: u64,
    trace: Rc<RefCell<BTreeSet<u64>>>,
) -> Mutated {
    Mutated {
        inner: open_device(image),
        flips,
        limit_blocks,
        pending: Vec::new(),
        refused: Vec::new(),
        trace,
    }
}

/// Reads `len` bytes at `offset`; an error is fine, never completing is not.
fn try_read(fs: &mut Vmfs<Mutated>, mem: &mut dyn Memory, node: NodeId, offset: u64, len: u64) {
    let Ok(handle) = fs.open(NOW, mem, node) else {
        return;
    };
    let sg = SgList::single(DATA_ADDR, len as u32).unwrap();
    if fs
        .submit(NOW, FileRequest::read(Tag(1), handle, offset, sg))
        .is_ok()
    {
        let mut done = false;
        for _ in 0..10_000 {
            fs.poll(NOW, mem, &mut |_| done = true);
            if done {
                break;
            }
        }
        assert!(done, "a file request never completed");
    }
    fs.close(handle).unwrap();
}

/// Maps the file from 0 and from its middle, a few calls each: an error is fine, a panic or
/// runs that do not follow each other are not.
fn try_map(fs: &mut Vmfs<Mutated>, mem: &mut dyn Memory, node: NodeId, size: u64) {
    let Ok(handle) = fs.open(NOW, mem, node) else {
        return;
    };
    let mut out = [FileExtent::EMPTY; 16];
    for start in [0, size / 2] {
        let mut at = start;
        for _ in 0..8 {
            let Ok(n) = fs.map_extents(NOW, mem, handle, at, &mut out) else {
                break;
            };
            if n == 0 {
                break;
            }
            for e in &out[..n] {
                assert_eq!(e.file_offset, at, "runs must follow each other");
                assert!(e.len > 0 && e.end() <= size, "{e:?} of a {size}-byte file");
                at = e.end();
            }
        }
    }
    fs.close(handle).unwrap();
}

/// Everything a reader does with a volume, bounded.
fn walk(fs: &mut Vmfs<Mutated>, mem: &mut dyn Memory) {
    let mut dirs = vec![(fs.root(), 0)];
    let mut visited = 0;
    while let Some((dir, depth)) = dirs.pop() {
        let mut entries = Vec::new();
        let _ = fs.readdir(NOW, mem, dir, &mut |e| {
            entries.push((e.name.to_vec(), e.node));
            entries.len() < 300
        });
        for (name, node) in entries {
            visited += 1;
            if visited > 400 {
                return;
            }
            let _ = fs.lookup(NOW, mem, dir, &name);
            if name == b"." || name == b".." {
                continue;
            }
            let Ok(stat) = fs.stat(NOW, mem, node) else {
                continue;
            };
            match stat.kind {
                FileKind::Directory | FileKind::SystemDirectory if depth < 4 => {
                    dirs.push((node, depth + 1))
                }
                FileKind::Symlink => {
                    let mut t = [0u8; 1024];
                    let _ = fs.readlink(NOW, mem, node, &mut t);
                }
                FileKind::RawDeviceMap => {
                    let _ = fs.rdm_mapping(NOW, mem, node);
                }
                _ => {}
            }
            if stat.kind.is_readable() && stat.size > 0 {
                try_read(fs, mem, node, 0, 64 * 1024);
                let middle = (stat.size / 2) & !0xFFF;
                try_read(fs, mem, node, middle, 4096);
                try_map(fs, mem, node, stat.size);
                if stat.size <= 256 << 20 {
                    let _ = fs.check_file(NOW, mem, node);
                }
            }
        }
    }
}

fn run(image: &str, flips: Vec<(u64, u8)>, limit: u64, trace: Rc<RefCell<BTreeSet<u64>>>) {
    let mut buffers = Buffers::new();
    let mut memory = buffers.memory();
    let buffer = MetaBuffer {
        addr: META_ADDR,
        len: META_LEN,
    };
    let dev = device(image, flips, limit, trace);
    if let Ok(mut fs) = Vmfs::mount(dev, buffer, NOW, &mut memory) {
        walk(&mut fs, &mut memory);
    }
    let _ = MemAddr(0);
}

/// The blocks a clean walk reads (the metadata region, plus the file data it samples).
fn metadata_blocks(image: &str) -> Vec<u64> {
    let trace = Rc::new(RefCell::new(BTreeSet::new()));
    run(image, Vec::new(), u64::MAX, trace.clone());
    let blocks: Vec<u64> = trace.borrow().iter().copied().collect();
    assert!(
        blocks.len() > 100,
        "{image}: the clean walk read only {} blocks",
        blocks.len()
    );
    blocks
}

fn corrupt_cases(image: &'static str) {
    let blocks = metadata_blocks(image);
    let total = open_device(image).geometry().block_count;
    let config = ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let n = blocks.len();
    proptest!(config, |(
        picks in prop::collection::vec((0..n, 0u64..512, 0u8..8), 1..12),
        truncate in prop::option::weighted(0.15, 0u64..1_000_000),
    )| {
        let flips = picks
            .iter()
            .map(|&(b, byte, bit)| (blocks[b] * 512 + byte, 1u8 << bit))
            .collect();
        let limit = truncate.map_or(total, |t| t * total / 1_000_000);
        run(image, flips, limit, Rc::new(RefCell::new(BTreeSet::new())));
    });
    // Denser: whole random bytes in the first blocks read (the file system descriptor, the
    // system file descriptors, resource headers, the root directory).
    let head = n.min(96);
    proptest!(config, |(picks in prop::collection::vec((0..head, 0u64..512, 1u8..=255), 1..24))| {
        let flips = picks
            .iter()
            .map(|&(b, byte, xor)| (blocks[b] * 512 + byte, xor))
            .collect();
        run(image, flips, total, Rc::new(RefCell::new(BTreeSet::new())));
    });
}

#[test]
fn corrupted_vmfs5_never_panics_or_loops() {
    corrupt_cases("vmfs/vmfs5");
}

#[test]
fn corrupted_vmfs6_never_panics_or_loops() {
    corrupt_cases("vmfs/vmfs6");
}

#[test]
fn corrupted_vmfs5d_never_panics_or_loops() {
    corrupt_cases("vmfs/vmfs5d");
}

/// A data block past the end of a (truncated) volume: the map fails where a read fails, with
/// the same kind of error, instead of pointing the caller outside the volume.
#[test]
fn map_and_read_fail_alike_past_the_end_of_the_volume() {
    let mut buffers = Buffers::new();
    let mut memory = buffers.memory();
    let buffer = MetaBuffer {
        addr: META_ADDR,
        len: META_LEN,
    };
    let trace = Rc::new(RefCell::new(BTreeSet::new()));
    let full = device("vmfs/vmfs5", Vec::new(), u64::MAX, trace.clone());
    let mut fs = Vmfs::mount(full, buffer, NOW, &mut memory).unwrap();
    let node = fs.lookup_path(NOW, &mut memory, "bigger").unwrap();
    let handle = fs.open(NOW, &mut memory, node).unwrap();
    let mut out = [FileExtent::EMPTY; 1];
    fs.map_extents(NOW, &mut memory, handle, 0, &mut out)
        .unwrap();
    let start = out[0].volume_offset().unwrap();
    // Cut the volume one block into the file's first run.
    let cut = device("vmfs/vmfs5", Vec::new(), start / 512 + 1, trace);
    let mut fs = Vmfs::mount(cut, buffer, NOW, &mut memory).unwrap();
    let node = fs.lookup_path(NOW, &mut memory, "bigger").unwrap();
    let handle = fs.open(NOW, &mut memory, node).unwrap();
    let mapped = fs
        .map_extents(NOW, &mut memory, handle, 0, &mut out)
        .unwrap_err();
    assert_eq!(mapped.kind(), fss::FsErrorKind::Io(ErrorKind::OutOfRange));
    assert_eq!(mapped.at(), start);
    let sg = SgList::single(DATA_ADDR, 1 << 20).unwrap();
    fs.submit(NOW, FileRequest::read(Tag(1), handle, 0, sg))
        .map_err(|(e, _)| e)
        .unwrap();
    let mut result = None;
    for _ in 0..100 {
        fs.poll(NOW, &mut memory, &mut |c| result = Some(c.result));
        if result.is_some() {
            break;
        }
    }
    let read = result.expect("the read completes").unwrap_err();
    assert_eq!(read.kind(), ErrorKind::OutOfRange);
}
