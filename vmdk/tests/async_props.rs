//! The virtual disk's data path under concurrency: many requests outstanding at once over
//! inner devices that delay and reorder completions; every request completes exactly once and
//! the contents follow a model.

mod common;

use std::time::Duration;

use block::testing::{ExactlyOnce, FaultConfig, FaultInjector};
use block::{
    BlockCount, BlockDevice, BlockRequest, Instant, Lba, MemAddr, Memory, MemoryRegions, SgList,
    Tag,
};
use common::{META_ADDR, read_all};
use proptest::prelude::*;
use vmdk::{DeltaFormat, ExtentSource, MemDisk, MemSource, MetaRegion, OpenOptions, VirtualDisk};

/// 16 MiB: with 8-sector grains, eight grain tables, more than a 4-slot cache holds.
const SECTORS: u64 = 32768;
const META_LEN: usize = 4 << 20;
/// Each outstanding request gets its own 64 KiB buffer.
const BUFFERS: MemAddr = MemAddr(0x1000_0000);
const BUFFER_LEN: u64 = 64 * 1024;
const DEPTH: usize = 16;

/// `MemSource` files behind a fault injector that delays and reorders completions.
struct Slow {
    files: MemSource,
    seed: u64,
}

impl ExtentSource for Slow {
    type Device = FaultInjector<MemDisk, 64>;

    fn open(&mut self, name: &str, writable: bool) -> vmdk::Result<Self::Device> {
        self.seed += 1;
        let config = FaultConfig {
            delay_ppm: 600_000,
            max_delay: Duration::from_micros(50),
            reorder: true,
            ..FaultConfig::default()
        };
        Ok(FaultInjector::new(
            self.files.open(name, writable)?,
            self.seed,
            config,
        ))
    }

    fn read_head(&mut self, name: &str, buf: &mut [u8]) -> vmdk::Result<usize> {
        self.files.read_head(name, buf)
    }

    fn create(&mut self, name: &str, sectors: u64) -> vmdk::Result<Self::Device> {
        self.files.create(name, sectors)?;
        self.open(name, true)
    }

    fn reserve(&mut self, name: &str, sectors: u64) -> vmdk::Result<()> {
        self.files.reserve(name, sectors)
    }

    fn write_text(&mut self, name: &str, text: &[u8]) -> vmdk::Result<()> {
        self.files.write_text(name, text)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn concurrent_requests_complete_once_and_match_a_model(
        seed in any::<u64>(),
        batches in proptest::collection::vec(proptest::collection::vec((any::<bool>(), 0u64..(SECTORS / 128), 0u64..120, 1u64..9, any::<u8>()), 1..DEPTH), 1..8),
        snapshot_at in 0usize..8,
        sparse_base in any::<bool>(),
    ) {
        let mut files = MemSource::new();
        if sparse_base {
            // 8-sector grains: eight grain tables, so that the 4-slot cache misses and loads
            // tables asynchronously.
            let header = vmdk::SparseHeader::new_layout(SECTORS, 8, 20).unwrap();
            let text = format!("# Disk DescriptorFile\nversion=1\nCID=00000001\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\n\n# Extent description\nRW {SECTORS} SPARSE \"base.vmdk\"\n");
            files.insert("base.vmdk", vec![0u8; ((header.overhead + SECTORS) * 512) as usize]);
            let mut dev = files.open("base.vmdk", true).unwrap();
            let mut scratch = vec![0u8; 512];
            let mut m = MemoryRegions::<1>::new();
            m.add(MemAddr(0), &mut scratch).unwrap();
            vmdk::format_sparse(&mut dev, &mut m, Instant(0), MemAddr(0), &header, text.as_bytes()).unwrap();
        } else {
            files.insert("base-flat.bin", vec![0u8; (SECTORS * 512) as usize]);
            files.insert("base.vmdk", format!("# Disk DescriptorFile\nversion=1\nCID=00000001\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n# Extent description\nRW {SECTORS} FLAT \"base-flat.bin\" 0\n").into_bytes());
        }
        let mut source = Slow { files, seed };
        let mut buffers = vec![0u8; DEPTH * BUFFER_LEN as usize];
        let mut metab = vec![0u8; META_LEN];
        let mut memory = MemoryRegions::<2>::new();
        memory.add(BUFFERS, &mut buffers).unwrap();
        memory.add(META_ADDR, &mut metab).unwrap();
        let mut map = vec![0u8; 8192];
        let mut text = vec![0u8; 16 << 10];
        let meta = MetaRegion { addr: META_ADDR, len: META_LEN as u64 };
        let disk = VirtualDisk::<_, 4, 8, 32>::open(&mut source, "base.vmdk", &mut text, meta, &mut map, &mut memory, Instant(0), OpenOptions::default()).unwrap();
        let mut disk = ExactlyOnce::<_, 64>::new(disk);
        let mut model = vec![0u8; (SECTORS * 512) as usize];
        let mut now = Instant(0);
        let mut tag = 0u64;
        for (b, batch) in batches.into_iter().enumerate() {
            if b == snapshot_at {
                let name = format!("s{b}.vmdk");
                disk.inner_mut().create_snapshot(&mut source, &name, DeltaFormat::HostedSparse, &mut vec![0u8; 32 << 10], &mut memory, now).unwrap();
            }
            // One request per grain-sized region at most, so that none overlap.
            let mut used = std::collections::HashSet::new();
            let mut expected_reads = Vec::new();
            let mut submitted = 0;
            for (i, (write, region, offset, sectors, pat)) in batch.into_iter().enumerate() {
                if !used.insert(region) {
                    continue;
                }
                let sector = region * 128 + offset.min(128 - sectors);
                let bytes = sectors * 512;
                let buf = MemAddr(BUFFERS.0 + i as u64 * BUFFER_LEN);
                let sg = SgList::single(buf, bytes as u32).unwrap();
                tag += 1;
                let range = (sector * 512) as usize..(sector * 512 + bytes) as usize;
                let req = if write {
                    let data: Vec<u8> = (0..bytes).map(|k| pat ^ (k >> 9) as u8).collect();
                    memory.write(buf, &data).unwrap();
                    model[range].copy_from_slice(&data);
                    BlockRequest::write(Tag(tag), Lba(sector), BlockCount(sectors as u32), sg)
                } else {
                    expected_reads.push((buf, model[range].to_vec()));
                    BlockRequest::read(Tag(tag), Lba(sector), BlockCount(sectors as u32), sg)
                };
                disk.submit(now, req).unwrap();
                submitted += 1;
            }
            let mut completed = 0;
            for _ in 0..10_000 {
                let next = disk.poll(now, &mut memory, &mut |c| {
                    assert!(c.is_ok(), "{c:?}");
                    completed += 1;
                });
                if completed == submitted {
                    break;
                }
                now = next.map_or(now, |t| t.max(now));
            }
            prop_assert_eq!(completed, submitted);
            for (buf, want) in expected_reads {
                prop_assert!(memory.slice(buf, want.len()).unwrap() == &want[..]);
            }
        }
        prop_assert!(disk.violations().is_empty(), "{:?}", disk.violations());
        // `read_all` reads through the same 1 MiB at `DATA_ADDR` (the request buffers).
        assert_eq!(common::DATA_ADDR, BUFFERS);
        let got = read_all(disk.inner_mut(), &mut memory);
        prop_assert!(got == model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The same for one sparse extent used directly as a block device.
    #[test]
    fn sparse_extent_concurrent_requests_complete_once_and_match_a_model(
        seed in any::<u64>(),
        batches in proptest::collection::vec(proptest::collection::vec((any::<bool>(), 0u64..(SECTORS / 128), 0u64..120, 1u64..9, any::<u8>()), 1..DEPTH), 1..8),
    ) {
        // 8-sector grains: eight grain tables and a one-slot cache, so that requests miss the
        // cache and load tables asynchronously.
        let header = vmdk::SparseHeader::new_layout(SECTORS, 8, 0).unwrap();
        let mut files = MemSource::new();
        files.insert("s.vmdk", vec![0u8; ((header.overhead + SECTORS + 64) * 512) as usize]);
        let mut buffers = vec![0u8; DEPTH * BUFFER_LEN as usize];
        let mut metab = vec![0u8; META_LEN];
        let mut memory = MemoryRegions::<2>::new();
        memory.add(BUFFERS, &mut buffers).unwrap();
        memory.add(META_ADDR, &mut metab).unwrap();
        let mut dev = files.open("s.vmdk", true).unwrap();
        vmdk::format_sparse(&mut dev, &mut memory, Instant(0), META_ADDR, &header, &[]).unwrap();
        let mut source = Slow { files, seed };
        let dev = source.open("s.vmdk", true).unwrap();
        let meta = MetaRegion { addr: META_ADDR, len: META_LEN as u64 };
        let extent = vmdk::SparseExtent::<_, 1, 32>::open(dev, meta, &mut memory, Instant(0), false).unwrap();
        let mut disk = ExactlyOnce::<_, 64>::new(extent);
        let mut model = vec![0u8; (SECTORS * 512) as usize];
        let mut now = Instant(0);
        let mut tag = 0u64;
        for batch in batches {
            let mut used = std::collections::HashSet::new();
            let mut expected_reads = Vec::new();
            let mut submitted = 0;
            for (i, (write, region, offset, sectors, pat)) in batch.into_iter().enumerate() {
                if !used.insert(region) {
                    continue;
                }
                let sector = region * 128 + offset.min(128 - sectors);
                let bytes = sectors * 512;
                let buf = MemAddr(BUFFERS.0 + i as u64 * BUFFER_LEN);
                let sg = SgList::single(buf, bytes as u32).unwrap();
                tag += 1;
                let range = (sector * 512) as usize..(sector * 512 + bytes) as usize;
                let req = if write {
                    let data: Vec<u8> = (0..bytes).map(|k| pat ^ (k >> 9) as u8).collect();
                    memory.write(buf, &data).unwrap();
                    model[range].copy_from_slice(&data);
                    BlockRequest::write(Tag(tag), Lba(sector), BlockCount(sectors as u32), sg)
                } else {
                    expected_reads.push((buf, model[range].to_vec()));
                    BlockRequest::read(Tag(tag), Lba(sector), BlockCount(sectors as u32), sg)
                };
                disk.submit(now, req).unwrap();
                submitted += 1;
            }
            let mut completed = 0;
            for _ in 0..10_000 {
                let next = disk.poll(now, &mut memory, &mut |c| {
                    assert!(c.is_ok(), "{c:?}");
                    completed += 1;
                });
                if completed == submitted {
                    break;
                }
                now = next.map_or(now, |t| t.max(now));
            }
            prop_assert_eq!(completed, submitted);
            for (buf, want) in expected_reads {
                prop_assert!(memory.slice(buf, want.len()).unwrap() == &want[..]);
            }
        }
        prop_assert!(disk.violations().is_empty(), "{:?}", disk.violations());
        prop_assert!(read_all(disk.inner_mut(), &mut memory) == model);
    }
}
