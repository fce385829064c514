//! Mapping invariants against a reference model, exactly-once under faults, and corrupted
//! headers that must never cause a panic.

mod common;

use block::testing::{ExactlyOnce, FaultConfig, FaultInjector};
use block::{
    BlockCount, BlockDevice, BlockRequest, Completion, ErrorKind, Instant, Lba, MemAddr, SgList,
    Tag,
};
use common::*;
use lvm::{
    LvmErrorKind, MetadataIo, MountMode, MountTable, Scan, Structure, Uuid, VolumeStatus, scan,
};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;
/// Device block where hand-made extents start (past the LVM 5 metadata).
const FIRST: u64 = 6 * MIB / 512;

fn vol_uuid() -> Uuid {
    Uuid {
        time_lo: 1,
        time_hi: 2,
        rand: 3,
        mac: [4; 6],
    }
}

/// Lays out extents of the given lengths round-robin-ish over 4 devices.
fn layout(lengths: &[(u64, usize)]) -> Vec<RawExtent> {
    let mut next = [FIRST; 4];
    lengths
        .iter()
        .map(|(blocks, device)| {
            let e = RawExtent {
                device: *device,
                device_lba: next[*device],
                blocks: *blocks,
            };
            next[*device] += blocks + 3; // leave gaps so device offsets differ from volume ones
            e
        })
        .collect()
}

fn disks_for(extents: &[RawExtent]) -> Vec<SparseDisk> {
    let mut disks: Vec<SparseDisk> = (0..4).map(|_| SparseDisk::new(8 * MIB, 512)).collect();
    raw_volume(&mut disks, extents, vol_uuid());
    disks
}

fn scan4(disks: &mut [SparseDisk], space: &mut Space) -> Scan<4, 32> {
    let mut memory = space.memory();
    let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
    scan(disks, &[None; 4], &mut io).unwrap()
}

fn extents_strategy() -> impl Strategy<Value = Vec<(u64, usize)>> {
    // Every device gets at least one extent, so every device is a member.
    proptest::collection::vec((1u64..40, 0usize..4), 1..12).prop_map(|mut v| {
        for d in 0..4 {
            v.push((1 + d as u64, d));
        }
        v
    })
}

/// Like [`layout`], but an extent follows the previous one on its device with no gap when
/// `touch` says so, so runs of extents can be contiguous on a device.
fn layout_touching(lengths: &[(u64, usize, bool)]) -> Vec<RawExtent> {
    let mut next = [FIRST; 4];
    lengths
        .iter()
        .map(|&(blocks, device, touch)| {
            if !touch {
                next[device] += 3;
            }
            let e = RawExtent {
                device,
                device_lba: next[device],
                blocks,
            };
            next[device] += blocks;
            e
        })
        .collect()
}

/// Where volume byte `offset` lives according to the extent list itself: member, device byte,
/// and the bytes contiguous on that member from there.
fn reference_locate(extents: &[RawExtent], offset: u64) -> Option<(u16, u64, u64)> {
    let mut start = 0u64;
    for (i, e) in extents.iter().enumerate() {
        let end = start + e.blocks * 512;
        if offset < end {
            let device_offset = e.device_lba * 512 + (offset - start);
            let mut device_end = (e.device_lba + e.blocks) * 512;
            for n in &extents[i + 1..] {
                if n.device != e.device || n.device_lba * 512 != device_end {
                    break;
                }
                device_end += n.blocks * 512;
            }
            return Some((e.device as u16, device_offset, device_end - device_offset));
        }
        start = end;
    }
    None
}

#[derive(Debug, Clone)]
enum Op {
    Write { lba: u64, blocks: u32, seed: u8 },
    Read { lba: u64, blocks: u32 },
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Reads and writes through the volume match a flat reference buffer, whatever the extents.
    #[test]
    fn volume_matches_a_flat_model(lengths in extents_strategy(), ops in proptest::collection::vec((any::<bool>(), any::<u64>(), 1u32..80, any::<u8>()), 1..24)) {
        let extents = layout(&lengths);
        let mut disks = disks_for(&extents);
        let mut space = Space::new(MIB as usize);
        let found = scan4(&mut disks, &mut space);
        prop_assert_eq!(found.volumes.len(), 1);
        let v = found.volumes[0].clone();
        prop_assert_eq!(v.status, VolumeStatus::Complete);
        let order: Vec<usize> = v.member_devices().collect();
        prop_assert_eq!(order, vec![0, 1, 2, 3]);
        let total: u64 = extents.iter().map(|e| e.blocks).sum();
        let mut table = MountTable::<1>::new();
        let mut volume = table
            .mount::<_, 4, 32, 8, 16>(&v, heapless::Vec::from_iter(disks), MountMode::Normal)
            .map_err(|r| r.error)
            .unwrap();
        prop_assert_eq!(volume.geometry().block_count, total);
        let max = volume.geometry().max_transfer_blocks;
        let mut model = vec![0u8; (total * 512) as usize];
        let mut memory = space.memory();
        for (k, (write, lba, blocks, seed)) in ops.into_iter().enumerate() {
            let blocks = blocks.min(max).min(total as u32);
            let lba = lba % (total - blocks as u64 + 1);
            let op = if write { Op::Write { lba, blocks, seed } } else { Op::Read { lba, blocks } };
            match op {
                Op::Write { lba, blocks, seed } => {
                    let data: Vec<u8> = (0..blocks as usize * 512).map(|i| seed.wrapping_add(i as u8)).collect();
                    write_blocks(&mut volume, &mut memory, lba, &data, k as u64).unwrap();
                    model[(lba * 512) as usize..][..data.len()].copy_from_slice(&data);
                }
                Op::Read { lba, blocks } => {
                    let got = read_blocks(&mut volume, &mut memory, lba, blocks, k as u64).unwrap();
                    prop_assert!(got == model[(lba * 512) as usize..][..got.len()], "read at {}", lba);
                }
            }
        }
        // Out of range and too long requests complete with an error, once.
        let err = read_blocks(&mut volume, &mut memory, total, 1, 999).unwrap_err();
        prop_assert_eq!(err.kind(), ErrorKind::OutOfRange);
        // Devices are where the extents say: check one device byte directly.
        let devices = table.unmount(volume);
        let e = extents[0];
        let first_byte = devices[e.device].read_bytes(e.device_lba * 512, 1)[0];
        prop_assert_eq!(first_byte, model[0]);
    }

    /// `locate_bytes` agrees with the extent list at every probed byte, merges extents that
    /// continue on the same device, and answers `None` past the end; the byte it points at is
    /// the byte the volume reads there.
    #[test]
    fn locate_bytes_matches_the_extents(
        lengths in proptest::collection::vec((1u64..40, 0usize..4, any::<bool>()), 1..12),
        probes in proptest::collection::vec(any::<u64>(), 1..32),
    ) {
        let mut lengths = lengths;
        for d in 0..4 {
            lengths.push((1 + d as u64, d, false));
        }
        let extents = layout_touching(&lengths);
        let mut disks = disks_for(&extents);
        // Every block the extents use holds a byte of its own (device and block number).
        for e in &extents {
            let bytes: Vec<u8> = (e.device_lba..e.device_lba + e.blocks)
                .flat_map(|lba| [(lba * 7 + e.device as u64) as u8; 512])
                .collect();
            disks[e.device].write_bytes(e.device_lba * 512, &bytes);
        }
        let mut space = Space::new(MIB as usize);
        let found = scan4(&mut disks, &mut space);
        let v = found.volumes[0].clone();
        let total: u64 = extents.iter().map(|e| e.blocks).sum::<u64>() * 512;
        let mut table = MountTable::<1>::new();
        let mut volume = table
            .mount::<_, 4, 32, 8, 16>(&v, heapless::Vec::from_iter(disks), MountMode::Normal)
            .map_err(|r| r.error)
            .unwrap();
        let mut memory = space.memory();
        for probe in probes.iter().map(|p| p % (total + 1024)) {
            let got = volume.locate_bytes(probe);
            let want = reference_locate(&extents, probe);
            prop_assert_eq!(got.map(|r| (r.device, r.offset, r.len)), want, "at {}", probe);
            if let Some(r) = got {
                let block = read_blocks(&mut volume, &mut memory, probe / 512, 1, 1).unwrap();
                let device = &volume.devices()[usize::from(r.device)];
                let on_device = device.read_bytes(r.offset, 1)[0];
                prop_assert_eq!(on_device, block[(probe % 512) as usize], "byte {}", probe);
                prop_assert!(probe + r.len <= total);
            }
        }
        prop_assert_eq!(volume.locate_bytes(total), None);
        prop_assert_eq!(volume.locate_bytes(u64::MAX), None);
    }

    /// Many requests in flight over faulty members: every parent completes exactly once, and
    /// a parent fails whenever one of its children failed.
    #[test]
    fn parents_complete_exactly_once_under_faults(lengths in extents_strategy(), seed in any::<u64>(), reqs in proptest::collection::vec((any::<u64>(), 1u32..64, any::<bool>()), 1..40)) {
        let extents = layout(&lengths);
        let disks = disks_for(&extents);
        let mut space = Space::new(MIB as usize);
        let mut plain = disks.clone();
        let found = scan4(&mut plain, &mut space);
        let v = found.volumes[0].clone();
        let config = FaultConfig {
            fail_ppm: 150_000,
            delay_ppm: 300_000,
            max_delay: core::time::Duration::from_micros(50),
            reorder: true,
            ..FaultConfig::default()
        };
        let faulty: heapless::Vec<FaultInjector<SparseDisk, 32>, 4> = disks
            .into_iter()
            .enumerate()
            .map(|(i, d)| FaultInjector::new(d, seed.wrapping_add(i as u64), config))
            .collect();
        let mut table = MountTable::<1>::new();
        let volume = table
            .mount::<_, 4, 32, 8, 16>(&v, faulty, MountMode::Normal)
            .map_err(|r| r.error)
            .unwrap();
        let total = volume.geometry().block_count;
        let max = volume.geometry().max_transfer_blocks;
        let mut checked = ExactlyOnce::<_, 64>::new(volume);
        let mut memory = space.memory();
        let mut now = Instant(0);
        let mut completions: Vec<Completion> = vec![];
        let mut submitted = 0u64;
        for (k, (lba, blocks, write)) in reqs.into_iter().enumerate() {
            let blocks = blocks.min(max).min(total as u32);
            let lba = lba % (total - blocks as u64 + 1);
            // Each request gets its own 64 KiB of the data buffer.
            let addr = MemAddr(DATA_ADDR.0 + (k as u64 % 8) * 65536);
            let sg = SgList::single(addr, blocks * 512).unwrap();
            let r = if write {
                BlockRequest::write(Tag(k as u64), Lba(lba), BlockCount(blocks), sg)
            } else {
                BlockRequest::read(Tag(k as u64), Lba(lba), BlockCount(blocks), sg)
            };
            // Back-pressure: poll until accepted.
            let mut r = Some(r);
            for _ in 0..1000 {
                match checked.submit(now, r.take().unwrap()) {
                    Ok(()) => { submitted += 1; break; }
                    Err(e) => {
                        prop_assert_eq!(e.kind, block::SubmitErrorKind::QueueFull);
                        r = Some(e.request);
                        let next = checked.poll(now, &mut memory, &mut |c| completions.push(c));
                        now = next.unwrap_or(now).max(Instant(now.0 + 1000));
                    }
                }
            }
            prop_assert!(r.is_none(), "never accepted");
        }
        for _ in 0..10_000 {
            if checked.outstanding() == 0 { break; }
            let next = checked.poll(now, &mut memory, &mut |c| completions.push(c));
            now = next.unwrap_or(now).max(Instant(now.0 + 1000));
        }
        prop_assert_eq!(checked.outstanding(), 0);
        prop_assert!(checked.violations().is_empty(), "{:?}", checked.violations());
        // Children that failed fail their parents: no error is swallowed.
        let failed_children: u64 = checked.inner().devices().iter().map(|d| d.stats().failed).sum();
        let failed_parents = completions.iter().filter(|c| !c.is_ok()).count() as u64;
        prop_assert_eq!(failed_children > 0, failed_parents > 0);
        prop_assert_eq!(completions.len() as u64, submitted);
        let mut tags: Vec<u64> = completions.iter().map(|c| c.tag.0).collect();
        tags.sort();
        tags.dedup();
        prop_assert_eq!(tags.len() as u64, submitted);
    }

    /// Corrupting any bytes of the metadata never panics: the scan reports the device or the
    /// volume as invalid with an error naming a structure, or (if the damage is harmless) the
    /// volume still mounts and reads stay inside it.
    #[test]
    fn corrupted_metadata_never_panics(lengths in extents_strategy(), hits in proptest::collection::vec((0usize..4, 0u64..0x1000, any::<u8>(), 0usize..4), 1..8)) {
        let extents = layout(&lengths);
        let mut disks = disks_for(&extents);
        let l = lvm::wire::Layout::new(5, 0).unwrap();
        for (device, at, value, region) in hits {
            let base = match region {
                0 => lvm::wire::HEADER_OFFSET,                       // device header
                1 => l.volume_descriptor_offset(0).unwrap(),         // volume descriptor
                2 => l.pe_entry_offset(0).unwrap(),                  // extent table
                _ => l.pe_entry_offset(0).unwrap() - 0x400,          // bitmap
            };
            let at = base + at % 0x200;
            disks[device].write_bytes(at, &[value]);
        }
        let mut space = Space::new(MIB as usize);
        let found = scan4(&mut disks, &mut space);
        for status in found.devices.iter() {
            if let lvm::DeviceStatus::Invalid(e) = status {
                let _ = e.structure().name();
                let _ = format!("{e}");
            }
        }
        for v in found.volumes.iter() {
            if v.status != VolumeStatus::Complete {
                continue;
            }
            let devices: heapless::Vec<SparseDisk, 4> =
                v.member_devices().map(|i| disks[i].clone()).collect();
            let mut table = MountTable::<1>::new();
            if let Ok(mut volume) = table.mount::<_, 4, 32, 8, 16>(v, devices, MountMode::Normal) {
                let total = volume.geometry().block_count;
                let mut memory = space.memory();
                let n = (total.min(64)) as u32;
                let _ = read_blocks(&mut volume, &mut memory, 0, n, 1);
                let _ = read_blocks(&mut volume, &mut memory, total - 1, 1, 2);
                prop_assert!(read_blocks(&mut volume, &mut memory, total, 1, 3).is_err());
            }
        }
    }
}

#[test]
fn extent_past_the_device_end_names_the_extent_table() {
    let extents = layout(&[(8, 0), (8, 1), (8, 2), (8, 3)]);
    let mut disks = disks_for(&extents);
    // Shrink device 2 so its extent runs past the end.
    let mut small = SparseDisk::new(FIRST * 512 + 4 * 512, 512);
    for (block, bytes) in disks[2].snapshot() {
        if block < FIRST + 4 {
            small.write_bytes(block * 512, &bytes);
        }
    }
    disks[2] = small;
    let mut space = Space::new(MIB as usize);
    let found = scan4(&mut disks, &mut space);
    match found.devices[2] {
        lvm::DeviceStatus::Invalid(e) => {
            assert_eq!(e.structure(), Structure::PeEntry);
            assert_eq!(e.kind(), LvmErrorKind::ExtentOutOfRange);
        }
        other => panic!("{other:?}"),
    }
    // Without device 2 the volume is incomplete.
    assert!(matches!(
        found.volumes[0].status,
        VolumeStatus::Incomplete {
            found: 3,
            expected: 4
        }
    ));
}

#[test]
fn overlapping_extents_are_refused() {
    // Two extents of device 0 at the same device offset.
    let mut extents = layout(&[(8, 0), (8, 1), (8, 2), (8, 3), (8, 0)]);
    extents[4].device_lba = extents[0].device_lba + 4;
    let mut disks = disks_for(&extents);
    let mut space = Space::new(MIB as usize);
    let found = scan4(&mut disks, &mut space);
    match found.devices[0] {
        lvm::DeviceStatus::Invalid(e) => {
            assert_eq!(e.structure(), Structure::PeEntry);
            assert_eq!(e.kind(), LvmErrorKind::OverlappingExtents);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_hole_in_the_volume_is_refused() {
    let extents = layout(&[(8, 0), (8, 1), (8, 2), (8, 3)]);
    let mut disks = disks_for(&extents);
    // Move the logical offset of device 3's extent forward, leaving a hole.
    let l = lvm::wire::Layout::new(5, 0).unwrap();
    let at = l.pe_entry_offset(0).unwrap() + 0x11;
    let logical = 24u64 * 512 + 512;
    disks[3].write_bytes(at, &logical.to_le_bytes());
    let mut space = Space::new(MIB as usize);
    let found = scan4(&mut disks, &mut space);
    match found.volumes[0].status {
        VolumeStatus::Invalid(e) => assert_eq!(e.structure(), Structure::Volume),
        other => panic!("{other:?}"),
    }
}

#[test]
fn back_pressure_refuses_cleanly_when_a_member_is_full() {
    let extents = layout(&[(64, 0), (64, 1), (64, 2), (64, 3)]);
    let disks: Vec<SparseDisk> = disks_for(&extents)
        .into_iter()
        .map(|d| d.with_queue_depth(1))
        .collect();
    let mut space = Space::new(MIB as usize);
    let mut plain = disks.clone();
    let v = scan4(&mut plain, &mut space).volumes[0].clone();
    let mut table = MountTable::<1>::new();
    let mut volume = table
        .mount::<_, 4, 32, 8, 16>(&v, heapless::Vec::from_iter(disks), MountMode::Normal)
        .map_err(|r| r.error)
        .unwrap();
    let sg = || SgList::single(DATA_ADDR, 512).unwrap();
    volume
        .submit(
            Instant(0),
            BlockRequest::read(Tag(1), Lba(0), BlockCount(1), sg()),
        )
        .unwrap();
    // Same member, its queue (depth 1) is taken: refused, nothing submitted.
    let e = volume
        .submit(
            Instant(0),
            BlockRequest::read(Tag(2), Lba(1), BlockCount(1), sg()),
        )
        .unwrap_err();
    assert_eq!(e.kind, block::SubmitErrorKind::QueueFull);
    // Duplicate tag.
    let e = volume
        .submit(
            Instant(0),
            BlockRequest::read(Tag(1), Lba(64), BlockCount(1), sg()),
        )
        .unwrap_err();
    assert_eq!(e.kind, block::SubmitErrorKind::DuplicateTag);
    // Another member is free.
    volume
        .submit(
            Instant(0),
            BlockRequest::read(Tag(3), Lba(64), BlockCount(1), sg()),
        )
        .unwrap();
    let mut memory = space.memory();
    let mut seen = vec![];
    volume.poll(Instant(0), &mut memory, &mut |c| seen.push(c.tag.0));
    seen.sort();
    assert_eq!(seen, vec![1, 3]);
    assert_eq!(volume.outstanding(), 0);
}

#[test]
fn flush_reaches_every_member_and_completes_once() {
    let extents = layout(&[(8, 0), (8, 1), (8, 2), (8, 3)]);
    let disks = disks_for(&extents);
    let mut space = Space::new(MIB as usize);
    let mut plain = disks.clone();
    let v = scan4(&mut plain, &mut space).volumes[0].clone();
    let mut table = MountTable::<1>::new();
    let mut volume = table
        .mount::<_, 4, 32, 8, 16>(&v, heapless::Vec::from_iter(disks), MountMode::Normal)
        .map_err(|r| r.error)
        .unwrap();
    volume
        .submit(Instant(0), BlockRequest::flush(Tag(7)))
        .unwrap();
    volume
        .submit(
            Instant(0),
            BlockRequest::unmap(Tag(8), Lba(0), BlockCount(32)),
        )
        .unwrap();
    // A request of no blocks completes, successfully, without reaching any member.
    volume
        .submit(
            Instant(0),
            BlockRequest::read(Tag(9), Lba(3), BlockCount(0), SgList::new()),
        )
        .unwrap();
    let mut memory = space.memory();
    let mut seen = vec![];
    volume.poll(Instant(0), &mut memory, &mut |c| {
        seen.push((c.tag.0, c.is_ok()))
    });
    seen.sort();
    assert_eq!(seen, vec![(7, true), (8, true), (9, true)]);
}

#[path = "../fuzz/fuzz_targets/harness.rs"]
mod harness;

/// The fuzz target's input for a valid 2-device volume: device count, then per device its
/// header, volume table entry and first extent entries.
fn valid_fuzz_input() -> Vec<u8> {
    let extents = vec![
        RawExtent {
            device: 0,
            device_lba: 3 * MIB / 512,
            blocks: 16,
        },
        RawExtent {
            device: 1,
            device_lba: 3 * MIB / 512,
            blocks: 8,
        },
    ];
    let mut disks: Vec<SparseDisk> = (0..2)
        .map(|_| SparseDisk::new(harness::DEVICE_BYTES as u64, 512))
        .collect();
    raw_volume(&mut disks, &extents, vol_uuid());
    let l = lvm::wire::Layout::new(5, 0).unwrap();
    let mut input = vec![1u8]; // 2 devices
    for d in &disks {
        input.extend(d.read_bytes(lvm::wire::HEADER_OFFSET, 512));
        input.extend(d.read_bytes(l.volume_descriptor_offset(0).unwrap(), 512));
        input.extend(d.read_bytes(l.pe_entry_offset(0).unwrap(), 512));
    }
    input
}

#[test]
fn fuzz_harness_mounts_a_valid_input() {
    // The harness reaches the mount and I/O paths with an undamaged input.
    let input = valid_fuzz_input();
    assert_eq!(harness::run(&input), 1);
    // `LVM_FUZZ_SEED=path` saves the input as a seed for the fuzz corpus.
    if let Some(path) = std::env::var_os("LVM_FUZZ_SEED") {
        std::fs::write(path, &input).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The fuzz target's body on arbitrary bytes.
    #[test]
    fn fuzz_harness_survives_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..4000)) {
        harness::run(&data);
    }

    /// The fuzz target's body on a valid volume with a few bytes changed.
    #[test]
    fn fuzz_harness_survives_mutations(hits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..12)) {
        let mut input = valid_fuzz_input();
        for (at, value) in hits {
            let len = input.len();
            input[1 + at % (len - 1)] = value;
        }
        harness::run(&input);
    }
}
