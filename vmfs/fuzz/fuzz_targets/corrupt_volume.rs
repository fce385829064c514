//! Fuzz target: a real VMFS volume with fuzzer-chosen bit flips in its metadata blocks.
#![no_main]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use block::{
    BlockDevice, BlockError, BlockRequest, Completion, DeviceFeatures, ErrorKind, Geometry,
    Instant, MemAddr, Memory, MemoryRegions, SgList, SubmitError, Tag,
};
use fss::{FileKind, FileRequest, FileSystem, NodeId};
use libfuzzer_sys::fuzz_target;
use vmfs::{FileExtent, MetaBuffer, Vmfs};

const NOW: Instant = Instant::ZERO;
const META: MemAddr = MemAddr(0x1000_0000);
const DATA: MemAddr = MemAddr(0x2000_0000);

/// A read-only device over an image file that flips bits and may end early; it records which
/// blocks are read.
struct Flipped<'a> {
    file: &'a File,
    blocks: u64,
    flips: &'a [(u64, u8)],
    queue: Vec<BlockRequest>,
    trace: Option<&'a mut BTreeSet<u64>>,
}

impl BlockDevice for Flipped<'_> {
    fn geometry(&self) -> Geometry {
        Geometry {
            block_size: 512,
            block_count: self.blocks,
            max_transfer_blocks: 1 << 16,
            queue_depth: 64,
            features: DeviceFeatures::READ_ONLY,
        }
    }

    fn submit(&mut self, _now: Instant, request: BlockRequest) -> Result<(), SubmitError> {
        self.queue.push(request);
        Ok(())
    }

    fn poll(
        &mut self,
        _now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        for request in std::mem::take(&mut self.queue) {
            let result = (|| {
                request.validate(&self.geometry())?;
                let start = request.lba.0 * 512;
                if let Some(trace) = self.trace.as_deref_mut() {
                    trace.extend(request.lba.0..request.lba.0 + request.blocks.0 as u64);
                }
                let mut at = start;
                for segment in request.sg.segments() {
                    let dst = memory
                        .slice_mut(segment.addr, segment.len as usize)
                        .map_err(|_| BlockError::new(ErrorKind::MemoryFault))?;
                    self.file
                        .read_exact_at(dst, at)
                        .map_err(|_| BlockError::new(ErrorKind::MediumError))?;
                    for &(off, xor) in self.flips {
                        if (at..at + segment.len as u64).contains(&off) {
                            dst[(off - at) as usize] ^= xor;
                        }
                    }
                    at += segment.len as u64;
                }
                Ok(())
            })();
            done(Completion {
                tag: request.tag,
                result,
            });
        }
        None
    }
}

fn image() -> PathBuf {
    if let Some(path) = std::env::var_os("VMFS_FUZZ_IMAGE") {
        return PathBuf::from(path);
    }
    let fixtures = std::env::var_os("VMFS_REAL_DIR").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/vmfs-real")
    });
    let out = std::env::temp_dir().join("vmfs-fuzz-vmfs5d.bin");
    if out.is_file() {
        return out;
    }
    let src = fixtures.join("vmfs/vmfs5d.bin.gz");
    let mut decoder = flate2::read::GzDecoder::new(File::open(&src).expect("fixture vmfs5d.bin.gz"));
    let tmp = out.with_extension(format!("{}.tmp", std::process::id()));
    let mut file = File::create(&tmp).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = decoder.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            file.seek(SeekFrom::Start(len)).unwrap();
            file.write_all(&buf[..n]).unwrap();
        }
        len += n as u64;
    }
    file.set_len(len).unwrap();
    std::fs::rename(&tmp, &out).unwrap();
    out
}

fn read(fs: &mut Vmfs<Flipped<'_>>, memory: &mut dyn Memory, node: NodeId, offset: u64) {
    let Ok(handle) = fs.open(NOW, memory, node) else {
        return;
    };
    let sg = SgList::single(DATA, 8192).unwrap();
    if fs.submit(NOW, FileRequest::read(Tag(1), handle, offset, sg)).is_ok() {
        let mut done = false;
        for _ in 0..1000 {
            fs.poll(NOW, memory, &mut |_| done = true);
            if done {
                break;
            }
        }
        assert!(done, "a file request never completed");
    }
    fs.close(handle).unwrap();
}

/// Maps the file from its start, a few calls: runs must follow each other inside the file.
fn map(fs: &mut Vmfs<Flipped<'_>>, memory: &mut dyn Memory, node: NodeId, size: u64) {
    let Ok(handle) = fs.open(NOW, memory, node) else {
        return;
    };
    let mut runs = [FileExtent::EMPTY; 8];
    let mut at = 0;
    for _ in 0..4 {
        let Ok(n) = fs.map_extents(NOW, memory, handle, at, &mut runs) else {
            break;
        };
        for run in &runs[..n] {
            assert!(run.file_offset == at && run.len > 0 && run.end() <= size);
            at = run.end();
        }
        if n == 0 {
            break;
        }
    }
    fs.close(handle).unwrap();
}

fn walk(device: Flipped<'_>) {
    let mut meta = vec![0u8; MetaBuffer::recommended_len(4) as usize];
    let mut data = vec![0u8; 8192];
    let mut memory = MemoryRegions::<2>::new();
    memory.add(META, &mut meta).unwrap();
    memory.add(DATA, &mut data).unwrap();
    let buffer = MetaBuffer {
        addr: META,
        len: MetaBuffer::recommended_len(4),
    };
    let Ok(mut fs) = Vmfs::mount(device, buffer, NOW, &mut memory) else {
        return;
    };
    let mut dirs = vec![(fs.root(), 0)];
    let mut visited = 0;
    while let Some((dir, depth)) = dirs.pop() {
        let mut entries = Vec::new();
        let _ = fs.readdir(NOW, &mut memory, dir, &mut |e| {
            entries.push((e.name.to_vec(), e.node));
            entries.len() < 100
        });
        for (name, node) in entries {
            visited += 1;
            if visited > 200 {
                return;
            }
            let _ = fs.lookup(NOW, &mut memory, dir, &name);
            if name == b"." || name == b".." {
                continue;
            }
            let Ok(stat) = fs.stat(NOW, &mut memory, node) else {
                continue;
            };
            match stat.kind {
                FileKind::Directory | FileKind::SystemDirectory if depth < 3 => {
                    dirs.push((node, depth + 1))
                }
                FileKind::Symlink => {
                    let mut target = [0u8; 1024];
                    let _ = fs.readlink(NOW, &mut memory, node, &mut target);
                }
                FileKind::RawDeviceMap => {
                    let _ = fs.rdm_mapping(NOW, &mut memory, node);
                }
                _ => {}
            }
            if stat.kind.is_readable() && stat.size > 0 {
                read(&mut fs, &mut memory, node, 0);
                read(&mut fs, &mut memory, node, (stat.size / 2) & !511);
                map(&mut fs, &mut memory, node, stat.size);
                if stat.size <= 64 << 20 {
                    let _ = fs.check_file(NOW, &mut memory, node);
                }
            }
        }
    }
}

struct Setup {
    file: File,
    blocks: u64,
    metadata: Vec<u64>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let file = File::open(image()).unwrap();
        let blocks = file.metadata().unwrap().len() / 512;
        let mut trace = BTreeSet::new();
        walk(Flipped {
            file: &file,
            blocks,
            flips: &[],
            queue: Vec::new(),
            trace: Some(&mut trace),
        });
        let metadata = trace.into_iter().collect();
        Setup {
            file,
            blocks,
            metadata,
        }
    })
}

fuzz_target!(|input: &[u8]| {
    let setup = setup();
    let n = setup.metadata.len() as u64;
    let flips: Vec<(u64, u8)> = input
        .chunks_exact(5)
        .take(64)
        .map(|c| {
            let block = setup.metadata[(u16::from_le_bytes([c[0], c[1]]) as u64 % n) as usize];
            let byte = u16::from_le_bytes([c[2], c[3]]) as u64 % 512;
            (block * 512 + byte, c[4].max(1))
        })
        .collect();
    let blocks = match input.len() % 5 {
        0 => setup.blocks,
        _ => setup.blocks * (*input.last().unwrap() as u64 + 1) / 257,
    };
    walk(Flipped {
        file: &setup.file,
        blocks,
        flips: &flips,
        queue: Vec::new(),
        trace: None,
    });
});
