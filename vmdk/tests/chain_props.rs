//! Chains: a model check of writes, snapshots, consolidation and reopening on in-memory
//! files; cycles and corrupted descriptors or headers give errors, never panics.

mod common;

use block::{Instant, MemAddr, MemoryRegions};
use common::{DATA_ADDR, DATA_LEN, META_ADDR, read_all, write_at};
use proptest::prelude::*;
use vmdk::{
    DeltaFormat, ErrorKind, MemSource, MetaRegion, OpenOptions, SparseHeader, VirtualDisk,
    format_sparse,
};

const META_LEN: usize = 4 << 20;
const SECTORS: u64 = 8192;

fn regions<'a>(data: &'a mut [u8], meta: &'a mut [u8]) -> MemoryRegions<'a, 2> {
    let mut memory = MemoryRegions::<2>::new();
    memory.add(DATA_ADDR, data).unwrap();
    memory.add(META_ADDR, meta).unwrap();
    memory
}

fn meta() -> MetaRegion {
    MetaRegion {
        addr: META_ADDR,
        len: META_LEN as u64,
    }
}

/// A base disk: a flat one (text descriptor and a flat file) or a monolithicSparse one.
fn base(source: &mut MemSource, sparse: bool) {
    if sparse {
        let header = SparseHeader::new_layout(SECTORS, 128, 20).unwrap();
        let text = format!(
            "# Disk DescriptorFile\nversion=1\nCID=0000abcd\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\n\nRW {SECTORS} SPARSE \"base.vmdk\"\n"
        );
        source.insert(
            "base.vmdk",
            vec![0u8; ((header.overhead + SECTORS) * 512) as usize],
        );
        let file = source.file("base.vmdk").unwrap();
        let mut dev = vmdk::MemDisk::new(file, true);
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
    } else {
        source.insert("base-flat.bin", vec![0u8; (SECTORS * 512) as usize]);
        source.insert(
            "base.vmdk",
            format!(
                "# Disk DescriptorFile\nversion=1\nCID=0000abcd\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n# Extent description\nRW {SECTORS} FLAT \"base-flat.bin\" 0\n"
            )
            .into_bytes(),
        );
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, u64, u8),
    Zero(u64, u64),
    Snapshot(bool),
    Consolidate,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SECTORS, 1u64..300, any::<u8>()).prop_map(|(at, n, p)| Op::Write(at, n.min(SECTORS - at), p)),
        2 => (0..SECTORS, 1u64..600).prop_map(|(at, n)| Op::Zero(at, n.min(SECTORS - at))),
        2 => any::<bool>().prop_map(Op::Snapshot),
        1 => Just(Op::Consolidate),
        1 => Just(Op::Reopen),
    ]
}

fn open<'m>(
    source: &mut MemSource,
    top: &str,
    map: &'m mut [u8],
    memory: &mut MemoryRegions<'_, 2>,
) -> vmdk::Result<VirtualDisk<'m, vmdk::MemDisk>> {
    let mut text = vec![0u8; 16 << 10];
    let options = OpenOptions {
        read_only: false,
        parents_writable: true,
    };
    VirtualDisk::open(
        source,
        top,
        &mut text,
        meta(),
        map,
        memory,
        Instant(0),
        options,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever sequence of writes, snapshots (hosted or ESX deltas), consolidations and
    /// reopenings, the disk reads as the model says.
    #[test]
    fn chains_match_a_model(sparse_base in any::<bool>(), ops in proptest::collection::vec(op(), 1..24)) {
        let mut source = MemSource::new();
        base(&mut source, sparse_base);
        let mut model = vec![0u8; (SECTORS * 512) as usize];
        let mut data = vec![0u8; DATA_LEN];
        let mut metab = vec![0u8; META_LEN];
        let mut memory = regions(&mut data, &mut metab);
        let mut map = vec![0u8; 1024];
        let mut top = String::from("base.vmdk");
        let mut snapshots = 0;
        let mut disk = open(&mut source, &top, &mut map, &mut memory).unwrap();
        for op in ops {
            match op {
                Op::Write(at, n, pat) => {
                    let bytes: Vec<u8> = (0..n * 512).map(|k| pat ^ (k / 512) as u8).collect();
                    write_at(&mut disk, &mut memory, at * 512, &bytes);
                    model[(at * 512) as usize..((at + n) * 512) as usize].copy_from_slice(&bytes);
                }
                Op::Zero(at, n) => {
                    let req = block::BlockRequest::write_zeroes(block::Tag(at), block::Lba(at), block::BlockCount(n as u32));
                    let d = block::run_to_completion(&mut disk, &mut memory, Instant(0), req, 10, &mut |_| {}).unwrap();
                    d.completion.result.unwrap();
                    model[(at * 512) as usize..((at + n) * 512) as usize].fill(0);
                }
                Op::Snapshot(cowd) if disk.depth() < 8 => {
                    snapshots += 1;
                    let name = format!("s{snapshots}.vmdk");
                    let format = if cowd { DeltaFormat::VmfsSparse } else { DeltaFormat::HostedSparse };
                    disk.create_snapshot(&mut source, &name, format, &mut vec![0u8; 32 << 10], &mut memory, Instant(snapshots)).unwrap();
                    top = name;
                }
                Op::Consolidate if disk.depth() > 1 => {
                    disk.consolidate(&mut memory, Instant(0)).unwrap();
                    top = disk.layer(disk.depth() - 1).unwrap().name.to_string();
                }
                Op::Reopen => {
                    disk.close(&mut source, &mut vec![0u8; 32 << 10], &mut memory, Instant(0)).unwrap();
                    drop(disk);
                    disk = open(&mut source, &top, &mut map, &mut memory).unwrap();
                }
                _ => {}
            }
            let got = read_all(&mut disk, &mut memory);
            prop_assert!(got == model, "contents differ from the model");
        }
    }

    /// Corrupting bytes of any file of a chain gives an error or a readable disk, never a panic.
    #[test]
    fn corrupted_chains_never_panic(hits in proptest::collection::vec((0usize..4, 0usize..12_000, any::<u8>()), 1..6)) {
        let mut source = MemSource::new();
        base(&mut source, true);
        {
            let mut data = vec![0u8; DATA_LEN];
            let mut metab = vec![0u8; META_LEN];
            let mut memory = regions(&mut data, &mut metab);
            let mut map = vec![0u8; 1024];
            let mut disk = open(&mut source, "base.vmdk", &mut map, &mut memory).unwrap();
            write_at(&mut disk, &mut memory, 0, &[7u8; 69_632]);
            disk.create_snapshot(&mut source, "s1.vmdk", DeltaFormat::VmfsSparse, &mut vec![0u8; 32 << 10], &mut memory, Instant(1)).unwrap();
            write_at(&mut disk, &mut memory, 1 << 20, &[8u8; 69_632]);
            disk.create_snapshot(&mut source, "s2.vmdk", DeltaFormat::HostedSparse, &mut vec![0u8; 32 << 10], &mut memory, Instant(2)).unwrap();
            write_at(&mut disk, &mut memory, 2 << 20, &[9u8; 69_632]);
            disk.close(&mut source, &mut vec![0u8; 32 << 10], &mut memory, Instant(3)).unwrap();
        }
        let names: Vec<String> = source.names().map(String::from).collect();
        for (f, at, byte) in hits {
            let file = source.file(&names[f % names.len()]).unwrap();
            let mut file = file.borrow_mut();
            let len = file.len();
            if len > 0 {
                file[at % len] = byte;
            }
        }
        let mut data = vec![0u8; DATA_LEN];
        let mut metab = vec![0u8; META_LEN];
        let mut memory = regions(&mut data, &mut metab);
        let mut map = vec![0u8; 1024];
        if let Ok(mut disk) = open(&mut source, "s2.vmdk", &mut map, &mut memory) {
            use block::BlockDevice;
            let cap = disk.geometry().block_count.min(SECTORS);
            let mut at = 0;
            while at < cap {
                let n = (cap - at).min(256);
                let sg = block::SgList::single(DATA_ADDR, (n * 512) as u32).unwrap();
                let req = if at % 1024 == 0 {
                    block::BlockRequest::write(block::Tag(at), block::Lba(at), block::BlockCount(n as u32), sg)
                } else {
                    block::BlockRequest::read(block::Tag(at), block::Lba(at), block::BlockCount(n as u32), sg)
                };
                let _ = block::run_to_completion(&mut disk, &mut memory, Instant(0), req, 10, &mut |_| {});
                at += n;
            }
            let _ = disk.consolidate(&mut memory, Instant(0));
        }
    }

    /// Arbitrary descriptor text never panics the opener.
    #[test]
    fn arbitrary_descriptors_never_panic(text in "[ -~\n]{0,400}", sectors in any::<u64>()) {
        let mut source = MemSource::new();
        source.insert("flat.bin", vec![0u8; 4096]);
        source.insert("d.vmdk", format!("createType=\"monolithicFlat\"\nRW {sectors} FLAT \"flat.bin\" 0\n{text}").into_bytes());
        let mut data = vec![0u8; DATA_LEN];
        let mut metab = vec![0u8; META_LEN];
        let mut memory = regions(&mut data, &mut metab);
        let mut map = vec![0u8; 64];
        let _ = open(&mut source, "d.vmdk", &mut map, &mut memory).map(|d| d.capacity());
    }
}

#[test]
fn parent_cycles_are_refused() {
    let mut source = MemSource::new();
    source.insert("a.vmdk", b"version=1\nCID=00000001\nparentCID=00000002\nparentFileNameHint=\"b.vmdk\"\ncreateType=\"monolithicFlat\"\nRW 2048 ZERO\n".to_vec());
    source.insert("b.vmdk", b"version=1\nCID=00000002\nparentCID=00000001\nparentFileNameHint=\"a.vmdk\"\ncreateType=\"monolithicFlat\"\nRW 2048 ZERO\n".to_vec());
    let mut data = vec![0u8; DATA_LEN];
    let mut metab = vec![0u8; META_LEN];
    let mut memory = regions(&mut data, &mut metab);
    let mut map = vec![0u8; 64];
    let e = open(&mut source, "a.vmdk", &mut map, &mut memory)
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::ChainTooLong);
}

#[test]
fn absurd_sizes_and_unknown_types_are_errors() {
    let cases: [&[u8]; 4] = [
        b"createType=\"monolithicFlat\"\nRW 18446744073709551615 FLAT \"f\" 0\nRW 1 FLAT \"f\" 0\n",
        b"createType=\"monolithicFlat\"\nRW 99999999 FLAT \"f\" 0\n",
        b"createType=\"weird\"\nRW 8 FLAT \"f\" 0\n",
        b"createType=\"seSparse\"\nRW 8 SESPARSE \"f\"\n",
    ];
    for text in cases {
        let mut source = MemSource::new();
        source.insert("f", vec![0u8; 4096]);
        source.insert("d.vmdk", text.to_vec());
        let mut data = vec![0u8; DATA_LEN];
        let mut metab = vec![0u8; META_LEN];
        let mut memory = regions(&mut data, &mut metab);
        let mut map = vec![0u8; 1 << 16];
        assert!(open(&mut source, "d.vmdk", &mut map, &mut memory).is_err());
    }
}

#[test]
fn a_partial_last_grain_is_copied_on_write() {
    // 1000 sectors: the last 64 KiB grain holds only 104 of them.
    let sectors = 1000u64;
    let mut source = MemSource::new();
    let base: Vec<u8> = (0..sectors * 512).map(|k| (k / 512) as u8 ^ 0x5a).collect();
    source.insert("b-flat.bin", base.clone());
    source.insert("b.vmdk", format!("# Disk DescriptorFile\nversion=1\nCID=00000001\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n# Extent description\nRW {sectors} FLAT \"b-flat.bin\" 0\n").into_bytes());
    let mut data = vec![0u8; DATA_LEN];
    let mut metab = vec![0u8; META_LEN];
    let mut memory = regions(&mut data, &mut metab);
    let mut map = vec![0u8; 64];
    let mut disk = open(&mut source, "b.vmdk", &mut map, &mut memory).unwrap();
    disk.create_snapshot(
        &mut source,
        "s.vmdk",
        DeltaFormat::HostedSparse,
        &mut vec![0u8; 32 << 10],
        &mut memory,
        Instant(1),
    )
    .unwrap();
    let mut model = base;
    // The first write (sector 0) sets the unclean flag synchronously; later ones allocate
    // asynchronously, the last grain included.
    for (at, n) in [(0u64, 1u64), (990, 4), (900, 8), (996, 4)] {
        let bytes = vec![0xEEu8; (n * 512) as usize];
        write_at(&mut disk, &mut memory, at * 512, &bytes);
        model[(at * 512) as usize..((at + n) * 512) as usize].copy_from_slice(&bytes);
        assert!(read_all(&mut disk, &mut memory) == model);
    }
    disk.close(
        &mut source,
        &mut vec![0u8; 32 << 10],
        &mut memory,
        Instant(2),
    )
    .unwrap();
    drop(disk);
    let mut disk = open(&mut source, "s.vmdk", &mut map, &mut memory).unwrap();
    assert!(read_all(&mut disk, &mut memory) == model);
}
