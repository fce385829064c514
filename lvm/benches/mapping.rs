//! Mapping overhead per I/O of a 4-device volume.
//!
//! - `map_only`: `ExtentMap::map` of a 4 KiB request (binary search and split).
//! - `volume_null_4k`: submit + poll of a 4 KiB read through a `Volume` whose members are null
//!   devices (complete at the next poll, move no data).
//! - `null_device_4k`: the same submit + poll straight on one null device: the baseline to
//!   subtract from `volume_null_4k`.
//!
//! Both device benches call through `&mut dyn BlockDevice`, as a layer above would.
#![allow(missing_docs, unreachable_pub)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use block::{
    BlockCount, BlockDevice, BlockRequest, Completion, DeviceFeatures, Geometry, Instant, Lba,
    MemAddr, Memory, MemoryRegions, SgList, SubmitError, Tag,
};
use common::{META_ADDR, META_LEN, RawExtent, SparseDisk, raw_volume};
use criterion::{Criterion, criterion_group, criterion_main};
use lvm::{MetadataIo, MountMode, MountTable, Scan, Uuid, scan};

const GIB: u64 = 1 << 30;

/// A device that completes every request at the next poll without moving data.
struct NullDisk {
    geometry: Geometry,
    pending: heapless::Vec<Tag, 64>,
}

impl NullDisk {
    fn new(block_count: u64) -> Self {
        Self {
            geometry: Geometry {
                block_size: 512,
                block_count,
                max_transfer_blocks: 1 << 16,
                queue_depth: 64,
                features: DeviceFeatures::empty(),
            },
            pending: heapless::Vec::new(),
        }
    }
}

impl BlockDevice for NullDisk {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn submit(&mut self, _now: Instant, request: BlockRequest) -> Result<(), SubmitError> {
        let tag = request.tag;
        self.pending
            .push(tag)
            .map_err(|_| SubmitError::new(block::SubmitErrorKind::QueueFull, request))
    }

    fn poll(
        &mut self,
        _now: Instant,
        _memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        for tag in self.pending.drain(..) {
            done(Completion::ok(tag));
        }
        None
    }
}

fn volume_4dev() -> lvm::ScannedVolume<4, 8> {
    let device_bytes = 2 * GIB;
    let mut disks: Vec<SparseDisk> = (0..4).map(|_| SparseDisk::new(device_bytes, 512)).collect();
    let extents: Vec<RawExtent> = (0..4)
        .map(|d| RawExtent {
            device: d,
            device_lba: 0x110_0000 / 512,
            blocks: GIB / 512,
        })
        .collect();
    raw_volume(&mut disks, &extents, Uuid::default());
    let mut meta = vec![0u8; META_LEN as usize];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(META_ADDR, &mut meta).unwrap();
    let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
    let found: Scan<4, 8> = scan(&mut disks, &[None; 4], &mut io).unwrap();
    assert!(found.volumes[0].is_complete());
    found.volumes[0].clone()
}

fn lbas() -> Vec<u64> {
    // A fixed pseudo-random walk over the 4 GiB volume, 4 KiB aligned.
    let blocks = 4 * GIB / 512;
    let mut x = 0x1234_5678_9abc_def0u64;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (blocks / 8)) * 8
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let scanned = volume_4dev();
    let lbas = lbas();
    let mut buf = vec![0u8; 4096];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(0x10_0000), &mut buf).unwrap();
    let sg = SgList::single(MemAddr(0x10_0000), 4096).unwrap();

    let devices: heapless::Vec<NullDisk, 4> =
        (0..4).map(|_| NullDisk::new(4 * GIB / 512)).collect();
    let mut table = MountTable::<1>::new();
    let mut volume = table
        .mount::<_, 4, 8, 32, 16>(&scanned, devices, MountMode::Normal)
        .map_err(|r| r.error)
        .unwrap();

    let mut group = c.benchmark_group("lvm");
    let map = volume.extent_map().clone();
    let mut i = 0usize;
    group.bench_function("map_only", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let mut sum = 0u64;
            map.map(black_box(lbas[i]), 8, |p| {
                sum = sum.wrapping_add(p.device_lba)
            });
            black_box(sum)
        })
    });
    let volume: &mut dyn BlockDevice = black_box(&mut volume);
    let mut i = 0usize;
    group.bench_function("volume_null_4k", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let r = BlockRequest::read(Tag(i as u64), Lba(lbas[i]), BlockCount(8), sg.clone());
            volume.submit(Instant(0), r).unwrap();
            let mut n = 0u32;
            volume.poll(Instant(0), &mut memory, &mut |_| n += 1);
            black_box(n)
        })
    });
    let mut null_disk = NullDisk::new(4 * GIB / 512);
    // Through `dyn`, as a layer above would call it, so the request is really built and moved.
    let null: &mut dyn BlockDevice = black_box(&mut null_disk);
    let mut i = 0usize;
    group.bench_function("null_device_4k", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let r = BlockRequest::read(Tag(i as u64), Lba(lbas[i]), BlockCount(8), sg.clone());
            null.submit(Instant(0), r).unwrap();
            let mut n = 0u32;
            null.poll(Instant(0), &mut memory, &mut |_| n += 1);
            black_box(n)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
