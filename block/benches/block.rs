//! Costs of the block vocabulary: splitting an SG list, and one 4 KiB request's submit + poll
//! round trip on a `RamDisk`.
#![allow(missing_docs)]

use std::hint::black_box;

use block::{
    BlockCount, BlockDevice, BlockRequest, Instant, Lba, MemAddr, MemoryRegions, RamDisk, Segment,
    SgList, Tag,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn sg_split(c: &mut Criterion) {
    let segments: Vec<Segment> = (0..16)
        .map(|i| Segment::new(MemAddr(i * 0x10_000), 4096))
        .collect();
    let list = SgList::<16>::from_segments(&segments).unwrap();
    let mut group = c.benchmark_group("sg");
    group.bench_function("split_at_middle_16_segments", |b| {
        b.iter(|| {
            black_box(&list)
                .split_at(black_box(8 * 4096 + 100))
                .unwrap()
        })
    });
    group.bench_function("slice_4k_of_16_segments", |b| {
        b.iter(|| {
            black_box(&list)
                .slice(black_box(5 * 4096 + 17), 4096)
                .unwrap()
        })
    });
    group.finish();
}

fn ramdisk_round_trip(c: &mut Criterion) {
    let mut storage = vec![0u8; 1024 * 4096];
    let mut disk = RamDisk::<'_, 32>::new(&mut storage, 512).unwrap();
    let mut page = vec![0u8; 4096];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(0x10_0000), &mut page).unwrap();
    let sg = SgList::single(MemAddr(0x10_0000), 4096).unwrap();
    let mut group = c.benchmark_group("ramdisk");
    let mut tag = 0u64;
    for (name, write) in [
        ("read_4k_submit_poll", false),
        ("write_4k_submit_poll", true),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                tag += 1;
                let lba = Lba((tag * 8) % (1024 * 8));
                let request = if write {
                    BlockRequest::write(Tag(tag), lba, BlockCount(8), sg.clone())
                } else {
                    BlockRequest::read(Tag(tag), lba, BlockCount(8), sg.clone())
                };
                disk.submit(Instant(0), request).unwrap();
                let mut ok = false;
                disk.poll(Instant(0), &mut memory, &mut |c| ok = c.is_ok());
                assert!(ok);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sg_split, ramdisk_round_trip);
criterion_main!(benches);
