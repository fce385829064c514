//! Volumes made by ESXi: scan, group, mount and read them.

mod common;

use block::{BlockDevice, FileDisk, Instant};
use common::*;
use lvm::{DeviceStatus, DiskId, MetadataIo, MountMode, MountTable, Scan, VolumeStatus, scan};

const MIB: u64 = 1 << 20;

type Disk = FileDisk<8>;

fn open(relative: &str) -> Disk {
    FileDisk::open_read_only(image(relative), 512).unwrap()
}

fn scan_all<const N: usize>(disks: &mut [Disk], space: &mut Space) -> Scan<N, 16> {
    let mut memory = space.memory();
    let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
    let identities = vec![None; disks.len()];
    scan::<_, 16, N, 16>(disks, &identities, &mut io).unwrap()
}

/// Reads every MiB of a mounted volume (with `shift` bytes of offset, so requests straddle MiB
/// and device boundaries) and checks MiB i holds i % 256.
fn check_pattern<D: BlockDevice>(volume: &mut D, space: &mut Space, shift: u64) {
    let bs = volume.geometry().block_size as u64;
    let size = volume.geometry().block_count * bs;
    let mut memory = space.memory();
    let mut at = shift;
    let mut tag = 1;
    while at + MIB <= size {
        let bytes = read_blocks(volume, &mut memory, at / bs, (MIB / bs) as u32, tag).unwrap();
        tag += 1;
        let split = ((MIB - at % MIB) % MIB) as usize;
        let first = at / MIB;
        if split == 0 {
            assert_filled(&bytes, (first % 256) as u8, "volume MiB");
        } else {
            assert_filled(&bytes[..split], (first % 256) as u8, "volume MiB (head)");
            assert_filled(
                &bytes[split..],
                ((first + 1) % 256) as u8,
                "volume MiB (tail)",
            );
        }
        at += MIB;
    }
}

fn single(relative: &str, name: &str, version: u32) {
    let mut space = Space::new(MIB as usize);
    let mut disks = [open(relative)];
    let found = scan_all::<4>(&mut disks, &mut space);
    assert!(matches!(
        found.devices[0],
        DeviceStatus::Lvm { volumes: 1, .. }
    ));
    assert_eq!(found.volumes.len(), 1);
    let v = &found.volumes[0];
    assert_eq!(v.name.as_str(), Some(name));
    assert_eq!(v.logical_size, 512 * MIB);
    assert_eq!(v.version, version);
    assert_eq!(v.status, VolumeStatus::Complete);
    assert_eq!(v.device_names.len(), 1);
    assert_eq!(
        v.device_names[0].as_str(),
        Some("t10.ATA_____QEMU_HARDDISK___________________________QM00007_____________:1")
    );
    let v = v.clone();
    let [disk] = disks;
    let mut table = MountTable::<4>::new();
    let mut volume = table
        .mount::<_, 4, 16, 8, 16>(&v, heapless::Vec::from_iter([disk]), MountMode::Normal)
        .map_err(|r| r.error)
        .unwrap();
    assert_eq!(volume.geometry().block_count * 512, 512 * MIB);
    check_pattern(&mut volume, &mut space, 0);
}

#[test]
fn lvm5_reads_as_documented() {
    single("lvm/lvm5.bin.gz", "lvm5", 5);
}

#[test]
fn lvm6_reads_as_documented() {
    single("lvm/lvm6.bin.gz", "lvm6", 6);
}

#[test]
fn span_reads_across_the_device_boundary() {
    let mut space = Space::new(MIB as usize);
    let mut disks = [
        open("lvm/span/lvm5-span-1.bin.gz"),
        open("lvm/span/lvm5-span-0.bin.gz"),
    ];
    let found = scan_all::<4>(&mut disks, &mut space);
    assert_eq!(found.volumes.len(), 1);
    let v = found.volumes[0].clone();
    assert_eq!(v.name.as_str(), Some("lvm5-span"));
    assert_eq!(v.logical_size, 1024 * MIB);
    assert_eq!(v.status, VolumeStatus::Complete);
    assert_eq!(v.members.len(), 2);
    // Member order follows the extents, not the scan order.
    assert_eq!(v.member_devices().collect::<Vec<_>>(), vec![1, 0]);
    assert_eq!(v.device_names.len(), 2);
    assert!(v.device_names[0].as_str().unwrap().contains("QM00009"));
    assert!(v.device_names[1].as_str().unwrap().contains("QM00011"));
    let [d1, d0] = disks;
    let mut table = MountTable::<4>::new();
    let mut volume = table
        .mount::<_, 4, 16, 8, 16>(&v, heapless::Vec::from_iter([d0, d1]), MountMode::Normal)
        .map_err(|r| r.error)
        .unwrap();
    // One pass aligned to MiB, one shifted by half a MiB: every read of the second pass
    // straddles two MiB, and the one at 511.5 MiB straddles the two devices.
    check_pattern(&mut volume, &mut space, 0);
    check_pattern(&mut volume, &mut space, MIB / 2);
    let mut memory = space.memory();
    let bytes = read_blocks(&mut volume, &mut memory, (512 * MIB - 4096) / 512, 16, 99).unwrap();
    assert_filled(&bytes[..4096], 255, "last block of device 0");
    assert_filled(&bytes[4096..], 0, "first block of device 1");
    // Byte offsets to (member, device offset, contiguous bytes): MiB i of the volume is MiB i
    // of the pattern in the member's image file, and no run crosses a device boundary.
    let members = [
        image("lvm/span/lvm5-span-0.bin.gz"),
        image("lvm/span/lvm5-span-1.bin.gz"),
    ];
    let files: Vec<std::fs::File> = members
        .iter()
        .map(|p| std::fs::File::open(p).unwrap())
        .collect();
    let mut runs = 0;
    let mut at = 0u64;
    while at < 1024 * MIB {
        let r = volume.locate_bytes(at + 3).unwrap();
        let mut byte = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(
            &files[usize::from(r.device)],
            &mut byte,
            r.offset,
        )
        .unwrap();
        assert_eq!(byte[0], (at / MIB % 256) as u8, "volume MiB {}", at / MIB);
        let whole = volume.locate_bytes(at).unwrap();
        assert_eq!(whole.offset + 3, r.offset);
        assert_eq!(whole.len, r.len + 3);
        at += whole.len.min(MIB);
        if whole.len <= MIB {
            runs += 1;
        }
    }
    assert_eq!(runs, 2, "one run per device");
    assert_eq!(volume.locate_bytes(1024 * MIB), None);
}

#[test]
fn one_span_device_alone_is_incomplete_and_never_mounted() {
    let mut space = Space::new(MIB as usize);
    for relative in ["lvm/span/lvm5-span-0.bin.gz", "lvm/span/lvm5-span-1.bin.gz"] {
        let mut disks = [open(relative)];
        let found = scan_all::<4>(&mut disks, &mut space);
        let v = found.volumes[0].clone();
        assert!(
            matches!(
                v.status,
                VolumeStatus::Incomplete {
                    found: 1,
                    expected: 2
                }
            ),
            "{relative}: {:?}",
            v.status
        );
        let [d] = disks;
        let mut table = MountTable::<4>::new();
        let refused = table
            .mount::<_, 4, 16, 8, 16>(&v, heapless::Vec::from_iter([d]), MountMode::Force)
            .err()
            .expect("an incomplete volume must not mount");
        assert_eq!(refused.error.kind(), lvm::LvmErrorKind::Incomplete);
    }
}

#[test]
fn recorded_identity_mismatch_is_a_snapshot() {
    let mut space = Space::new(MIB as usize);
    let mut disks = [open("lvm/lvm5.bin.gz")];
    let mut memory = space.memory();
    let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
    let real = DiskId::from_designator(1, b"QM00007             QEMU H").unwrap();
    let found: Scan<4, 16> = scan(&mut disks, &[Some(real)], &mut io).unwrap();
    assert_eq!(found.volumes[0].status, VolumeStatus::Complete);
    let other = DiskId::from_designator(3, b"\x60\x00\x00\x00\x00\x00\x00\x01").unwrap();
    let found: Scan<4, 16> = scan(&mut disks, &[Some(other)], &mut io).unwrap();
    assert_eq!(found.volumes[0].status, VolumeStatus::Snapshot);
}
