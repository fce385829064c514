//! Sparse extents: header round trips, a model check of reads and writes on a RAM disk, and
//! corrupted metadata that must give errors, never panics.

use block::{
    BlockCount, BlockDevice, BlockRequest, Instant, Lba, MemAddr, Memory, MemoryRegions, RamDisk,
    SgList, Tag, run_to_completion,
};
use proptest::prelude::*;
use vmdk::sparse::{FLAG_COMPRESSED, FLAG_ZEROED_GTE, Marker, MarkerType};
use vmdk::{MetaRegion, SparseExtent, SparseHeader, format_sparse};

const DATA: MemAddr = MemAddr(0x10_0000);
const META: MemAddr = MemAddr(0x100_0000);

fn header_strategy() -> impl Strategy<Value = SparseHeader> {
    (
        1u32..=3,
        any::<u32>(),
        1u64..(1 << 44),
        0u32..=11,
        any::<u64>(),
        any::<u64>(),
        1u32..=32,
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(
            |(version, flags, capacity, g, d_off, d_size, gtes, rgd, gd, over, unclean)| {
                let flags = flags & !(FLAG_COMPRESSED) | 1;
                SparseHeader {
                    version,
                    flags,
                    capacity,
                    grain_size: 1 << g,
                    descriptor_offset: d_off,
                    descriptor_size: d_size,
                    num_gtes_per_gt: gtes * 128,
                    rgd_offset: rgd,
                    gd_offset: gd,
                    overhead: over,
                    unclean_shutdown: unclean,
                    compress_algorithm: 0,
                }
            },
        )
}

/// Formats a sparse extent of `sectors` with `grain` sectors per grain into `storage`.
fn formatted(storage: &mut [u8], sectors: u64, grain: u64, meta: &mut [u8]) -> SparseHeader {
    let header = SparseHeader::new_layout(sectors, grain, 1).unwrap();
    let mut disk = RamDisk::<4>::new(storage, 512).unwrap();
    let mut memory = MemoryRegions::<1>::new();
    memory.add(META, meta).unwrap();
    format_sparse(
        &mut disk,
        &mut memory,
        Instant(0),
        META,
        &header,
        b"# none\n",
    )
    .unwrap();
    header
}

fn io<D: BlockDevice>(
    dev: &mut D,
    memory: &mut MemoryRegions<'_, 2>,
    write: bool,
    sector: u64,
    sectors: u32,
) -> Result<(), block::BlockError> {
    let sg = SgList::single(DATA, sectors * 512).unwrap();
    let req = if write {
        BlockRequest::write(Tag(sector), Lba(sector), BlockCount(sectors), sg)
    } else {
        BlockRequest::read(Tag(sector), Lba(sector), BlockCount(sectors), sg)
    };
    run_to_completion(dev, memory, Instant(0), req, 100, &mut |_| {})
        .unwrap()
        .completion
        .result
}

proptest! {
    #[test]
    fn header_round_trips(h in header_strategy()) {
        let mut b = [0u8; 512];
        h.emit(&mut b).unwrap();
        prop_assert_eq!(SparseHeader::parse(&b).unwrap(), h);
    }

    #[test]
    fn arbitrary_headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), magic in any::<bool>()) {
        let mut bytes = bytes;
        if magic && bytes.len() >= 4 {
            bytes[..4].copy_from_slice(b"KDMV");
        }
        if let Ok(h) = SparseHeader::parse(&bytes) {
            let _ = (h.gd_entries(), h.gd_sectors(), h.grains(), h.gt_sectors());
        }
        let _ = Marker::parse(&bytes);
    }

    #[test]
    fn markers_round_trip(lba in any::<u64>(), size in 1u32.., sectors in any::<u64>(), t in 0usize..4) {
        let kinds = [MarkerType::EndOfStream, MarkerType::GrainTable, MarkerType::GrainDirectory, MarkerType::Footer];
        for m in [Marker::Grain { lba, size }, Marker::Meta { sectors, kind: kinds[t] }] {
            let mut b = [0u8; 16];
            m.emit(&mut b).unwrap();
            prop_assert_eq!(Marker::parse(&b).unwrap(), m);
        }
    }

    /// Reads and writes at random places agree with a flat model, and the file stays readable
    /// after reopening.
    #[test]
    fn reads_and_writes_match_a_model(ops in proptest::collection::vec((any::<bool>(), 0u64..500, 1u32..40, any::<u8>()), 1..30)) {
        let sectors = 512u64;
        let mut storage = vec![0u8; 2 << 20];
        let mut meta = vec![0u8; 1 << 20];
        let mut data = vec![0u8; 64 * 512];
        let header = formatted(&mut storage, sectors, 8, &mut meta);
        let mut model = vec![0u8; (sectors * 512) as usize];
        let mut memory = MemoryRegions::<2>::new();
        memory.add(DATA, &mut data).unwrap();
        memory.add(META, &mut meta).unwrap();
        let region = MetaRegion { addr: META, len: 1 << 20 };
        let disk = RamDisk::<4>::new(&mut storage, 512).unwrap();
        let mut extent = SparseExtent::<_, 2>::open(disk, region, &mut memory, Instant(0), false).unwrap();
        prop_assert_eq!(*extent.header(), header);
        for (write, at, n, pat) in ops {
            let n = n.min((sectors - at) as u32);
            let range = (at * 512) as usize..((at + n as u64) * 512) as usize;
            if write {
                let bytes: Vec<u8> = (0..n * 512).map(|k| pat ^ (k / 512) as u8).collect();
                memory.write(DATA, &bytes).unwrap();
                io(&mut extent, &mut memory, true, at, n).unwrap();
                model[range].copy_from_slice(&bytes);
            } else {
                io(&mut extent, &mut memory, false, at, n).unwrap();
                let mut got = vec![0u8; (n * 512) as usize];
                memory.read(DATA, &mut got).unwrap();
                prop_assert_eq!(&got[..], &model[range]);
            }
        }
        let mut text = [0u8; 512];
        prop_assert_eq!(extent.read_embedded_descriptor(&mut memory, Instant(0), &mut text).unwrap(), 512);
        prop_assert_eq!(&text[..7], b"# none\n");
        prop_assert_eq!(text[7], 0);
        extent.close(&mut memory, Instant(0)).unwrap();
        let disk = extent.into_inner();
        let mut again = SparseExtent::<_, 1>::open(disk, region, &mut memory, Instant(0), true).unwrap();
        prop_assert!(!again.header().unclean_shutdown);
        for chunk in 0..(sectors / 64) {
            io(&mut again, &mut memory, false, chunk * 64, 64).unwrap();
            let mut got = vec![0u8; 64 * 512];
            memory.read(DATA, &mut got).unwrap();
            let start = (chunk * 64 * 512) as usize;
            prop_assert_eq!(&got[..], &model[start..start + 64 * 512]);
        }
    }

    /// Corrupting any metadata byte gives an error or a readable disk, never a panic.
    #[test]
    fn corrupted_metadata_never_panics(hits in proptest::collection::vec((0usize..40 * 512, any::<u8>()), 1..8), zeroed in any::<bool>()) {
        let sectors = 2048u64;
        let mut storage = vec![0u8; 2 << 20];
        let mut meta = vec![0u8; 1 << 20];
        let mut data = vec![0u8; 64 * 512];
        let header = formatted(&mut storage, sectors, 8, &mut meta);
        {
            let mut memory = MemoryRegions::<2>::new();
            memory.add(DATA, &mut data).unwrap();
            memory.add(META, &mut meta).unwrap();
            let region = MetaRegion { addr: META, len: 1 << 20 };
            let disk = RamDisk::<4>::new(&mut storage, 512).unwrap();
            let mut extent = SparseExtent::<_, 2>::open(disk, region, &mut memory, Instant(0), false).unwrap();
            for at in [0u64, 100, 900, 2000] {
                io(&mut extent, &mut memory, true, at, 8).unwrap();
            }
        }
        if zeroed {
            storage[8] |= FLAG_ZEROED_GTE as u8;
        }
        let meta_end = (header.overhead * 512) as usize;
        for (at, byte) in hits {
            let at = at % meta_end.max(1);
            storage[at] = byte;
        }
        let mut memory = MemoryRegions::<2>::new();
        memory.add(DATA, &mut data).unwrap();
        memory.add(META, &mut meta).unwrap();
        let region = MetaRegion { addr: META, len: 1 << 20 };
        let disk = RamDisk::<4>::new(&mut storage, 512).unwrap();
        if let Ok(mut extent) = SparseExtent::<_, 2>::open(disk, region, &mut memory, Instant(0), false) {
            let cap = extent.capacity().min(4096);
            let mut at = 0;
            while at < cap {
                let n = (cap - at).min(64) as u32;
                let _ = io(&mut extent, &mut memory, at % 128 == 0, at, n);
                at += u64::from(n);
            }
        }
    }
}

#[test]
fn check_finds_a_redundant_table_that_differs() {
    let mut storage = vec![0u8; 2 << 20];
    let mut meta = vec![0u8; 1 << 20];
    let mut data = vec![0u8; 64 * 512];
    let header = formatted(&mut storage, 512, 8, &mut meta);
    let region = MetaRegion {
        addr: META,
        len: 1 << 20,
    };
    {
        let mut memory = MemoryRegions::<2>::new();
        memory.add(DATA, &mut data).unwrap();
        memory.add(META, &mut meta).unwrap();
        let disk = RamDisk::<4>::new(&mut storage, 512).unwrap();
        let mut extent =
            SparseExtent::<_, 2>::open(disk, region, &mut memory, Instant(0), false).unwrap();
        io(&mut extent, &mut memory, true, 16, 8).unwrap();
        let report = extent.check(&mut memory, Instant(0)).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.allocated, 1);
        extent.close(&mut memory, Instant(0)).unwrap();
    }
    // The first redundant grain table follows the redundant directory; corrupt entry 2.
    let rgt = (header.rgd_offset + header.gd_sectors()) as usize * 512;
    storage[rgt + 8] ^= 0x40;
    let mut memory = MemoryRegions::<2>::new();
    memory.add(DATA, &mut data).unwrap();
    memory.add(META, &mut meta).unwrap();
    let disk = RamDisk::<4>::new(&mut storage, 512).unwrap();
    let mut extent =
        SparseExtent::<_, 2>::open(disk, region, &mut memory, Instant(0), true).unwrap();
    assert_eq!(
        extent
            .check(&mut memory, Instant(0))
            .unwrap()
            .redundant_mismatches,
        1
    );
}
