//! A 4 KiB read through a 32-deep snapshot chain against the same read at depth 1, both served
//! from hosted sparse grains (the merged allocation map makes them cost the same), and reading a whole 256 MiB sparse disk through
//! the crate against `qemu-img convert -O raw` of the same disk (skipped without qemu-img).
#![allow(missing_docs)]

use std::hint::black_box;
use std::process::Command;

use block::{
    BlockCount, BlockDevice, BlockRequest, FileDisk, Instant, Lba, MemAddr, MemoryRegions, SgList,
    Tag, run_to_completion,
};
use criterion::{Criterion, criterion_group, criterion_main};
use vmdk::{
    DeltaFormat, MemSource, MetaRegion, OpenOptions, SparseHeader, VirtualDisk, format_sparse,
};

const DATA: MemAddr = MemAddr(0x1000_0000);
const META: MemAddr = MemAddr(0x8000_0000);
const META_LEN: usize = 8 << 20;
const SECTORS: u64 = 32 * 1024; // 16 MiB
const GRAIN_SECTORS: u64 = 128;

/// A monolithicSparse base, so that depth 1 and depth 32 both read sparse grains.
fn base(source: &mut MemSource) {
    let header = SparseHeader::new_layout(SECTORS, GRAIN_SECTORS, 20).unwrap();
    let text = format!(
        "# Disk DescriptorFile\nversion=1\nCID=0000abcd\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\n\n# Extent description\nRW {SECTORS} SPARSE \"base.vmdk\"\n"
    );
    source.insert(
        "base.vmdk",
        vec![0u8; ((header.overhead + SECTORS) * 512) as usize],
    );
    let mut dev = vmdk::MemDisk::new(source.file("base.vmdk").unwrap(), true);
    let mut scratch = [0u8; 512];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(0), &mut scratch).unwrap();
    format_sparse(
        &mut dev,
        &mut memory,
        Instant(0),
        MemAddr(0),
        &header,
        text.as_bytes(),
    )
    .unwrap();
}

fn write(disk: &mut impl BlockDevice, memory: &mut MemoryRegions<'_, 2>, sector: u64, tag: u64) {
    let sg = SgList::single(DATA, (GRAIN_SECTORS * 512) as u32).unwrap();
    let req = BlockRequest::write(Tag(tag), Lba(sector), BlockCount(GRAIN_SECTORS as u32), sg);
    let d = run_to_completion(disk, memory, Instant(0), req, 10, &mut |_| {}).unwrap();
    d.completion.result.unwrap();
}

/// A chain of `depth` layers over a flat base; every grain is written once, grain `g` in layer
/// `g % depth`, so reads are served from every depth.
fn chain(depth: usize, memory: &mut MemoryRegions<'_, 2>) -> (MemSource, String) {
    let mut source = MemSource::new();
    base(&mut source);
    let mut map = vec![0u8; 1024];
    let mut text = vec![0u8; 16 << 10];
    let meta = MetaRegion {
        addr: META,
        len: META_LEN as u64,
    };
    let mut disk = VirtualDisk::<_, 4, 32>::open(
        &mut source,
        "base.vmdk",
        &mut text,
        meta,
        &mut map,
        memory,
        Instant(0),
        OpenOptions::default(),
    )
    .unwrap();
    let grains = SECTORS / GRAIN_SECTORS;
    let mut top = String::from("base.vmdk");
    for layer in 0..depth {
        if layer > 0 {
            top = format!("s{layer}.vmdk");
            disk.create_snapshot(
                &mut source,
                &top,
                DeltaFormat::HostedSparse,
                &mut vec![0u8; 32 << 10],
                memory,
                Instant(layer as u64),
            )
            .unwrap();
        }
        for g in (0..grains).filter(|g| (*g as usize) % depth == layer) {
            write(&mut disk, memory, g * GRAIN_SECTORS, g + 1);
        }
    }
    disk.close(&mut source, &mut vec![0u8; 32 << 10], memory, Instant(0))
        .unwrap();
    assert_eq!(disk.depth(), depth);
    (source, top)
}

fn chain_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("chain");
    for depth in [1usize, 32] {
        let mut data = vec![0u8; 1 << 20];
        let mut metab = vec![0u8; META_LEN];
        let mut memory = MemoryRegions::<2>::new();
        memory.add(DATA, &mut data).unwrap();
        memory.add(META, &mut metab).unwrap();
        let (mut source, top) = chain(depth, &mut memory);
        let mut map = vec![0u8; 1024];
        let mut text = vec![0u8; 16 << 10];
        let meta = MetaRegion {
            addr: META,
            len: META_LEN as u64,
        };
        let mut disk = VirtualDisk::<_, 4, 32>::open(
            &mut source,
            &top,
            &mut text,
            meta,
            &mut map,
            &mut memory,
            Instant(0),
            OpenOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        let sg = SgList::single(DATA, 4096).unwrap();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        group.bench_function(format!("read_4k_depth_{depth}"), |b| {
            b.iter(|| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let lba = (x % (SECTORS / 8)) * 8;
                let req = BlockRequest::read(Tag(x), Lba(lba), BlockCount(8), sg.clone());
                disk.submit(Instant(0), req).unwrap();
                let mut ok = false;
                disk.poll(Instant(0), &mut memory, &mut |c| ok = c.is_ok());
                assert!(black_box(ok));
            })
        });
    }
    group.finish();
}

/// Depth 32 against depth 1 measured interleaved (alternating batches of reads), so that the
/// shared machine's load drifts affect both alike; prints the median ratio of 41 rounds.
fn chain_ratio_interleaved(_c: &mut Criterion) {
    let mut bufs: Vec<(Vec<u8>, Vec<u8>)> = (0..2)
        .map(|_| (vec![0u8; 1 << 20], vec![0u8; META_LEN]))
        .collect();
    let mut memories: Vec<MemoryRegions<'_, 2>> = bufs
        .iter_mut()
        .map(|(data, meta)| {
            let mut m = MemoryRegions::<2>::new();
            m.add(DATA, data).unwrap();
            m.add(META, meta).unwrap();
            m
        })
        .collect();
    let mut setups = Vec::new();
    for (depth, memory) in [1usize, 32].into_iter().zip(memories.iter_mut()) {
        setups.push(chain(depth, memory));
    }
    let mut maps = vec![vec![0u8; 1024]; 2];
    let mut texts = vec![vec![0u8; 16 << 10]; 2];
    let meta = MetaRegion {
        addr: META,
        len: META_LEN as u64,
    };
    let mut disks = Vec::new();
    for (((source, top), map), (text, memory)) in setups
        .iter_mut()
        .zip(maps.iter_mut())
        .zip(texts.iter_mut().zip(memories.iter_mut()))
    {
        let disk = VirtualDisk::<_, 4, 32>::open(
            source,
            top,
            text,
            meta,
            map,
            memory,
            Instant(0),
            OpenOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        disks.push(disk);
    }
    let sg = SgList::single(DATA, 4096).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut ratios = Vec::new();
    for _ in 0..41 {
        let mut times = [0f64; 2];
        for (k, (disk, memory)) in disks.iter_mut().zip(memories.iter_mut()).enumerate() {
            let start = std::time::Instant::now();
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let lba = (x % (SECTORS / 8)) * 8;
                let req = BlockRequest::read(Tag(x), Lba(lba), BlockCount(8), sg.clone());
                disk.submit(Instant(0), req).unwrap();
                let mut ok = false;
                disk.poll(Instant(0), memory, &mut |c| ok = c.is_ok());
                assert!(black_box(ok));
            }
            times[k] = start.elapsed().as_secs_f64();
        }
        ratios.push(times[1] / times[0]);
    }
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "chain/interleaved: depth 32 / depth 1 median ratio {:.3} (min {:.3}, max {:.3}, 41 rounds of 20000 reads each)",
        ratios[20], ratios[0], ratios[40]
    );
}

fn qemu_side_by_side(c: &mut Criterion) {
    if Command::new("qemu-img").arg("--version").output().is_err() {
        eprintln!(
            "qemu-img not found (apt-get install qemu-utils): skipping the side-by-side bench"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("vmdk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("disk.vmdk");
    let run = |args: &[&str]| {
        assert!(
            Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap()
                .status
                .success()
        )
    };
    run(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "vmdk",
        img.to_str().unwrap(),
        "256M",
    ]);
    // Half the grains written, in 1 MiB runs every 2 MiB.
    let mut cmds = Vec::new();
    for i in 0..128u64 {
        cmds.push("-c".to_string());
        cmds.push(format!(
            "write -P 0x{:02x} {} 1M",
            (i % 200) + 1,
            i * 2 * 1024 * 1024
        ));
    }
    let mut qio = Command::new("qemu-io");
    qio.args(["-f", "vmdk"])
        .args(&cmds)
        .arg(img.to_str().unwrap());
    assert!(qio.output().unwrap().status.success());
    let mut group = c.benchmark_group("whole_disk_256m");
    group.sample_size(10);
    group.bench_function("vmdk_crate_read_all", |b| {
        let mut data = vec![0u8; 1 << 20];
        let mut metab = vec![0u8; 1 << 20];
        b.iter(|| {
            let mut memory = MemoryRegions::<2>::new();
            memory.add(DATA, &mut data).unwrap();
            memory.add(META, &mut metab).unwrap();
            let dev = FileDisk::<4>::open_read_only(&img, 512).unwrap();
            let meta = MetaRegion {
                addr: META,
                len: 1 << 20,
            };
            let mut e =
                vmdk::SparseExtent::<_, 4>::open(dev, meta, &mut memory, Instant(0), true).unwrap();
            let sg = SgList::single(DATA, 1 << 20).unwrap();
            for i in 0..256u64 {
                let req = BlockRequest::read(Tag(i), Lba(i * 2048), BlockCount(2048), sg.clone());
                let d = run_to_completion(&mut e, &mut memory, Instant(0), req, 10, &mut |_| {})
                    .unwrap();
                d.completion.result.unwrap();
            }
        })
    });
    let raw = dir.join("out.raw");
    group.bench_function("qemu_img_convert_raw", |b| {
        b.iter(|| {
            run(&[
                "qemu-img",
                "convert",
                "-O",
                "raw",
                img.to_str().unwrap(),
                raw.to_str().unwrap(),
            ])
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

/// A 64 MiB chain made by QEMU (`qemu-img create -b`, one `qemu-io` write per layer), 32 deep
/// against 1 deep, read whole through the crate (`DirSource`, `VirtualDisk`) and by
/// `qemu-img convert -O raw`.
fn qemu_chain_side_by_side(c: &mut Criterion) {
    if Command::new("qemu-img").arg("--version").output().is_err() {
        eprintln!(
            "qemu-img not found (apt-get install qemu-utils): skipping the chain side-by-side bench"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("vmdk-bench-chain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        assert!(
            Command::new(args[0])
                .args(&args[1..])
                .current_dir(&dir)
                .output()
                .unwrap()
                .status
                .success()
        )
    };
    run(&["qemu-img", "create", "-q", "-f", "vmdk", "base.vmdk", "64M"]);
    let mut prev = String::from("base.vmdk");
    for level in 0..32u64 {
        if level > 0 {
            let name = format!("d{level}.vmdk");
            run(&[
                "qemu-img", "create", "-q", "-f", "vmdk", "-b", &prev, "-F", "vmdk", &name,
            ]);
            prev = name;
        }
        // 1 MiB per layer at a different place, so that every depth serves some data.
        let cmd = format!(
            "write -P 0x{:02x} {} 1M",
            level + 1,
            level * 2 * 1024 * 1024
        );
        run(&["qemu-io", "-f", "vmdk", "-c", &cmd, &prev]);
    }
    let mut group = c.benchmark_group("qemu_chain_64m");
    group.sample_size(10);
    for (label, top) in [("depth_1", "base.vmdk"), ("depth_32", prev.as_str())] {
        group.bench_function(format!("vmdk_crate_read_all_{label}"), |b| {
            let mut data = vec![0u8; 1 << 20];
            let mut metab = vec![0u8; META_LEN];
            let mut map = vec![0u8; 1024];
            let mut text = vec![0u8; 16 << 10];
            b.iter(|| {
                let mut memory = MemoryRegions::<2>::new();
                memory.add(DATA, &mut data).unwrap();
                memory.add(META, &mut metab).unwrap();
                let mut source = vmdk::DirSource::<4>::new(&dir);
                let meta = MetaRegion {
                    addr: META,
                    len: META_LEN as u64,
                };
                let options = OpenOptions {
                    read_only: true,
                    ..Default::default()
                };
                let mut disk = VirtualDisk::<_, 4, 32>::open(
                    &mut source,
                    top,
                    &mut text,
                    meta,
                    &mut map,
                    &mut memory,
                    Instant(0),
                    options,
                )
                .unwrap();
                let sg = SgList::single(DATA, 1 << 20).unwrap();
                for i in 0..64u64 {
                    let req =
                        BlockRequest::read(Tag(i), Lba(i * 2048), BlockCount(2048), sg.clone());
                    let d = run_to_completion(
                        &mut disk,
                        &mut memory,
                        Instant(0),
                        req,
                        100,
                        &mut |_| {},
                    )
                    .unwrap();
                    d.completion.result.unwrap();
                }
            })
        });
        group.bench_function(format!("qemu_img_convert_raw_{label}"), |b| {
            b.iter(|| run(&["qemu-img", "convert", "-O", "raw", top, "out.raw"]))
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(
    benches,
    chain_read,
    chain_ratio_interleaved,
    qemu_side_by_side,
    qemu_chain_side_by_side
);
criterion_main!(benches);
