//! The data path under device faults: delayed, reordered and failed completions of data and
//! metadata reads. Every file request completes exactly once; successful ones carry the right
//! bytes; nothing hangs.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use block::testing::{FaultConfig, FaultInjector};
use block::{ErrorKind, Instant, MemAddr, Memory, SgList, Tag};
use common::*;
use fss::{FileRequest, FileSystem};
use vmfs::{MetaBuffer, Vmfs};

const GIB: u64 = 1 << 30;

#[test]
fn every_request_completes_once_with_right_data_under_faults() {
    for (label, seed) in [("vmfs5", 1u64), ("vmfs6", 2), ("vmfs6", 3)] {
        let mut buffers = Buffers::new();
        let mut memory = buffers.memory();
        let mem: &mut dyn Memory = &mut memory;
        let device = FaultInjector::<_, 64>::new(
            open_device(&format!("vmfs/{label}")),
            seed,
            FaultConfig::default(),
        );
        let buffer = MetaBuffer {
            addr: META_ADDR,
            len: MetaBuffer::recommended_len(4),
        };
        let mut fs = Vmfs::mount(device, buffer, Instant::ZERO, mem).unwrap();
        let bigger = fs.lookup_path(Instant::ZERO, mem, "bigger").unwrap();
        let large = fs
            .lookup_path(Instant::ZERO, mem, "large-flat.vmdk")
            .unwrap();
        let normal = fs
            .lookup_path(Instant::ZERO, mem, "normal-flat.vmdk")
            .unwrap();
        let handles = [
            fs.open(Instant::ZERO, mem, bigger).unwrap(),
            fs.open(Instant::ZERO, mem, large).unwrap(),
            fs.open(Instant::ZERO, mem, normal).unwrap(),
        ];
        fs.device_mut().set_config(FaultConfig {
            fail_ppm: 30_000,
            fail_kind: ErrorKind::MediumError,
            delay_ppm: 500_000,
            max_delay: Duration::from_micros(500),
            reorder: true,
            ..FaultConfig::default()
        });

        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next_rand = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        // tag -> (file, offset, slot)
        let mut outstanding: HashMap<u64, (usize, u64, usize)> = HashMap::new();
        let mut free_slots: Vec<usize> = (0..16).collect();
        let mut now = Instant::ZERO;
        let (mut ok, mut failed, mut submitted) = (0u64, 0u64, 0u64);
        let mut polls = 0u64;
        while submitted < 600 || !outstanding.is_empty() {
            while submitted < 600 && !free_slots.is_empty() {
                let file = (next_rand() % 3) as usize;
                let offset = match file {
                    0 => (next_rand() % ((128 << 20) / 4096)) * 4096,
                    1 => 117 * GIB - (1 << 20) + (next_rand() % 768) * 4096,
                    _ => 42 * GIB - (1 << 20) + (next_rand() % 768) * 4096,
                };
                let slot = free_slots.pop().unwrap();
                let len = 64 * 1024;
                let addr = MemAddr(DATA_ADDR.0 + slot as u64 * len);
                let sg = SgList::single(addr, len as u32).unwrap();
                let tag = 1000 + submitted;
                fs.submit(now, FileRequest::read(Tag(tag), handles[file], offset, sg))
                    .map_err(|(e, _)| e)
                    .unwrap();
                outstanding.insert(tag, (file, offset, slot));
                submitted += 1;
            }
            if polls.is_multiple_of(5) {
                // Slow paths in between: synchronous metadata reads (and pointer block fetches
                // into the same small cache) while data and metadata reads are in flight.
                let _ = fs.check_file(now, mem, large);
                let _ = fs.check_file(now, mem, normal);
                let _ = fs.lookup_path(now, mem, "directory/file7");
            }
            let mut finished = Vec::new();
            let next = fs.poll(now, mem, &mut |c| finished.push(c));
            for c in finished {
                let (file, offset, slot) = outstanding.remove(&c.tag.0).unwrap_or_else(|| {
                    panic!("{label}: tag {} completed twice or unknown", c.tag.0)
                });
                free_slots.push(slot);
                if c.result.is_err() {
                    failed += 1;
                    continue;
                }
                ok += 1;
                let mut data = vec![0u8; 64 * 1024];
                mem.read(MemAddr(DATA_ADDR.0 + slot as u64 * 65536), &mut data)
                    .unwrap();
                for (i, b) in data.iter().enumerate() {
                    let at = offset + i as u64;
                    let want = match file {
                        0 => ((at >> 20) % 256) as u8,
                        1 if (117 * GIB..117 * GIB + 512).contains(&at) => 0x42,
                        2 if (42 * GIB..42 * GIB + 512).contains(&at) => 0x42,
                        _ => 0,
                    };
                    assert_eq!(*b, want, "{label}: file {file} byte {at:#x}");
                }
            }
            now = match next {
                Some(t) if t > now => t,
                _ => Instant(now.0 + 10_000),
            };
            polls += 1;
            assert!(polls < 1_000_000, "{label}: requests never completed");
        }
        assert!(ok > 300, "{label}: only {ok} succeeded");
        assert!(failed > 0, "{label}: no injected failure reached a request");
        let stats = fs.device().stats();
        assert!(stats.delayed > 0 && stats.failed > 0);
        assert!(!fs.has_outstanding());
        for h in handles {
            fs.close(h).unwrap();
        }
    }
}

#[test]
fn bad_requests_complete_with_errors_and_full_tables_push_back() {
    use fss::{FileHandle, FsErrorKind};
    let mut buffers = Buffers::new();
    let mut memory = buffers.memory();
    let mem: &mut dyn Memory = &mut memory;
    let mut fs = mount("vmfs/vmfs6", mem);
    let now = Instant::ZERO;
    let small = fs.lookup_path(now, mem, "small").unwrap();
    let h = fs.open(now, mem, small).unwrap();
    let sg = |len: u32| SgList::single(DATA_ADDR, len).unwrap();
    let bad = [
        FileRequest::read(Tag(1), h, 1, sg(512)), // unaligned offset
        FileRequest::read(Tag(2), h, 0, sg(100)), // unaligned length
        FileRequest::read(Tag(3), h, 4096, sg(512)), // past the end of a 5-byte file
        FileRequest::read(Tag(4), FileHandle(9), 0, sg(512)), // not open
        FileRequest {
            len: 1024,
            ..FileRequest::read(Tag(5), h, 0, sg(512)) // SG shorter than the length
        },
    ];
    for r in bad {
        fs.submit(now, r).map_err(|(e, _)| e).unwrap();
    }
    // A duplicate tag is handed back at once.
    let (e, _) = fs
        .submit(now, FileRequest::read(Tag(1), h, 0, sg(512)))
        .unwrap_err();
    assert_eq!(e.kind(), FsErrorKind::InvalidRequest);
    assert_eq!(
        fs.close(h).unwrap_err().kind(),
        FsErrorKind::InvalidRequest,
        "close with requests outstanding"
    );
    let mut seen = Vec::new();
    for _ in 0..10 {
        fs.poll(now, mem, &mut |c| {
            assert_eq!(c.result.unwrap_err().kind(), ErrorKind::InvalidRequest);
            seen.push(c.tag.0);
        });
    }
    seen.sort();
    assert_eq!(seen, [1, 2, 3, 4, 5]);

    // The request table is bounded: the request after the last slot is handed back.
    for i in 0..vmfs::MAX_REQUESTS as u64 {
        fs.submit(now, FileRequest::read(Tag(100 + i), h, 0, sg(512)))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let (e, back) = fs
        .submit(now, FileRequest::read(Tag(99), h, 0, sg(512)))
        .unwrap_err();
    assert_eq!((e.kind(), back.tag), (FsErrorKind::NoSpace, Tag(99)));
    let mut done = 0;
    while done < vmfs::MAX_REQUESTS {
        fs.poll(now, mem, &mut |c| {
            c.result.unwrap();
            done += 1;
        });
    }
    // The 512-byte read of a 5-byte resident file: the bytes, then zeros.
    let mut data = [0u8; 512];
    mem.read(DATA_ADDR, &mut data).unwrap();
    assert_eq!(&data[..5], b"tiny\n");
    assert!(data[5..].iter().all(|&b| b == 0));
    fs.close(h).unwrap();
    assert_eq!(fs.close(h).unwrap_err().kind(), FsErrorKind::BadHandle);
}
