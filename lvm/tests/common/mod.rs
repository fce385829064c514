//! Helpers shared by the integration tests: fixtures, memory, synchronous volume I/O.
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::fs::File;

use std::path::{Path, PathBuf};

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

/// The fixture `relative` (e.g. `lvm/lvm5.bin.gz`) inflated once into a sparse file.
pub fn image(relative: &str) -> PathBuf {
    fixtures::image(relative)
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

/// An in-memory sparse disk: blocks never written read as zeros. Completes at the next poll.
#[derive(Clone)]
pub struct SparseDisk {
    blocks: std::collections::HashMap<u64, Vec<u8>>,
    geometry: block::Geometry,
    pending: std::collections::VecDeque<BlockRequest>,
}

impl SparseDisk {
    pub fn new(bytes: u64, block_size: u32) -> Self {
        Self {
            blocks: Default::default(),
            geometry: block::Geometry {
                block_size,
                block_count: bytes / block_size as u64,
                max_transfer_blocks: 1 << 16,
                queue_depth: 32,
                features: block::DeviceFeatures::UNMAP
                    | block::DeviceFeatures::WRITE_ZEROES
                    | block::DeviceFeatures::UNMAP_READS_ZERO,
            },
            pending: Default::default(),
        }
    }

    pub fn with_queue_depth(mut self, depth: u16) -> Self {
        self.geometry.queue_depth = depth;
        self
    }

    pub fn bs(&self) -> u64 {
        self.geometry.block_size as u64
    }

    pub fn read_bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        let bs = self.bs();
        let mut out = vec![0u8; len];
        for (i, b) in out.iter_mut().enumerate() {
            let at = offset + i as u64;
            if let Some(block) = self.blocks.get(&(at / bs)) {
                *b = block[(at % bs) as usize];
            }
        }
        out
    }

    pub fn write_bytes(&mut self, offset: u64, data: &[u8]) {
        let bs = self.bs();
        for (i, b) in data.iter().enumerate() {
            let at = offset + i as u64;
            let block = self
                .blocks
                .entry(at / bs)
                .or_insert_with(|| vec![0u8; bs as usize]);
            block[(at % bs) as usize] = *b;
        }
    }

    /// The non-zero blocks, for comparing whole disks.
    pub fn snapshot(&self) -> Vec<(u64, Vec<u8>)> {
        let mut v: Vec<_> = self
            .blocks
            .iter()
            .filter(|(_, b)| b.iter().any(|&x| x != 0))
            .map(|(k, b)| (*k, b.clone()))
            .collect();
        v.sort();
        v
    }

    fn execute(
        &mut self,
        r: &BlockRequest,
        memory: &mut dyn Memory,
    ) -> Result<(), block::BlockError> {
        r.validate(&self.geometry)?;
        let bs = self.bs();
        let start = r.lba.0 * bs;
        let len = r.blocks.0 as u64 * bs;
        match r.operation {
            block::Operation::Read => {
                let data = self.read_bytes(start, len as usize);
                block::scatter(memory, &r.sg, &data)
                    .map_err(|_| block::BlockError::new(block::ErrorKind::MemoryFault))
            }
            block::Operation::Write => {
                let mut data = vec![0u8; len as usize];
                block::gather(memory, &r.sg, &mut data)
                    .map_err(|_| block::BlockError::new(block::ErrorKind::MemoryFault))?;
                self.write_bytes(start, &data);
                Ok(())
            }
            block::Operation::Unmap | block::Operation::WriteZeroes => {
                for b in r.lba.0..r.lba.0 + r.blocks.0 as u64 {
                    self.blocks.remove(&b);
                }
                Ok(())
            }
            block::Operation::Flush => Ok(()),
            _ => Err(block::BlockError::new(block::ErrorKind::Unsupported)),
        }
    }
}

impl BlockDevice for SparseDisk {
    fn geometry(&self) -> block::Geometry {
        self.geometry
    }

    fn submit(&mut self, _now: Instant, request: BlockRequest) -> Result<(), block::SubmitError> {
        if self.pending.iter().any(|p| p.tag == request.tag) {
            return Err(block::SubmitError::new(
                block::SubmitErrorKind::DuplicateTag,
                request,
            ));
        }
        if self.pending.len() >= self.geometry.queue_depth as usize {
            return Err(block::SubmitError::new(
                block::SubmitErrorKind::QueueFull,
                request,
            ));
        }
        self.pending.push_back(request);
        Ok(())
    }

    fn poll(
        &mut self,
        _now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        while let Some(r) = self.pending.pop_front() {
            let result = self.execute(&r, memory);
            done(Completion { tag: r.tag, result });
        }
        None
    }
}

/// One extent of a hand-made volume: `blocks` blocks on device `device` at device block
/// `device_lba`, in volume order.
#[derive(Debug, Clone, Copy)]
pub struct RawExtent {
    pub device: usize,
    pub device_lba: u64,
    pub blocks: u64,
}

/// Writes LVM 5 headers straight onto `disks` for a volume made of `extents` (in volume order),
/// with the wire API (no `create`): a way to build volumes with small, interleaved extents.
pub fn raw_volume(disks: &mut [SparseDisk], extents: &[RawExtent], uuid: lvm::Uuid) {
    use lvm::wire::*;
    let layout = Layout::new(5, 0).unwrap();
    let bs = disks[0].bs();
    let size: u64 = extents.iter().map(|e| e.blocks * bs).sum();
    let n = disks.len();
    for (d, disk) in disks.iter_mut().enumerate() {
        let mine: Vec<(u64, &RawExtent)> = {
            let mut logical = 0;
            let mut v = vec![];
            for e in extents {
                if e.device == d {
                    v.push((logical, e));
                }
                logical += e.blocks * bs;
            }
            v
        };
        let header = DeviceHeaderRepr {
            major_version: 5,
            minor_version: 21,
            disk_id: DiskId::from_designator(3, &[d as u8; 8]).unwrap(),
            block_size: bs as u32,
            total_bytes: disk.geometry().block_count * bs,
            num_volumes: 1,
            num_pes: mine.len() as u32,
            last_pe_index: mine.len().saturating_sub(1) as u32,
            generation: 1,
            data_offset: DEFAULT_DATA_OFFSET,
            device_uuid: lvm::Uuid {
                rand: d as u16,
                ..uuid
            },
            init_time_us: 0,
            mod_time_us: 0,
            locked_by: lvm::Uuid::default(),
            locked_when_us: 0,
            unknown0: 0,
            num_pe_maps: 1,
            ext_metadata_offset: 0,
            md_alignment: 0,
            num_pes6: 0,
            flags: 0,
        };
        let mut buf = vec![0u8; 512];
        header
            .emit(&mut DeviceHeader::new_checked(&mut buf[..]).unwrap())
            .unwrap();
        disk.write_bytes(HEADER_OFFSET, &buf);
        let desc = VolumeDescriptorRepr {
            logical_size: size,
            generation: 1,
            state: 1,
            name: lvm::Label::new("raw").unwrap(),
            uuid,
            snap_id: 1,
            creation_time_us: 0,
            volume_id: 0,
            num_pes: 1,
            first_pe: d as u64,
            last_pe: d as u64,
            mod_time_us: 0,
            num_devs: n as u32,
            consumed_pes: 0,
        };
        let mut buf = vec![0u8; 512];
        desc.emit(&mut VolumeDescriptor::new_checked(&mut buf[..]).unwrap())
            .unwrap();
        disk.write_bytes(layout.volume_descriptor_offset(0).unwrap(), &buf);
        for (k, (logical, e)) in mine.iter().enumerate() {
            let entry = PeEntryRepr {
                used: true,
                pe_id: k as u32,
                volume_id: 0,
                physical_offset: e.device_lba * bs,
                logical_offset: *logical,
                length: e.blocks * bs,
                version: 1,
            };
            let mut buf = vec![0u8; 128];
            entry
                .emit(&mut PeEntry::new_checked(&mut buf[..]).unwrap())
                .unwrap();
            disk.write_bytes(layout.pe_entry_offset(k as u32).unwrap(), &buf);
        }
    }
}
