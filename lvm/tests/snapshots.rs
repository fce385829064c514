//! Snapshot LUNs: detection, refusal, force-mount and resignature.

mod common;

use block::{BlockDevice, Instant};
use common::*;
use lvm::{
    CreateVolume, DiskId, LvmErrorKind, MetadataIo, MountMode, MountTable, NewDevice, Scan, Uuid,
    VolumeStatus, create, resignature, scan, span,
};

const MIB: u64 = 1 << 20;
const UNIT: u64 = 256 * MIB;

fn uuid(n: u8) -> Uuid {
    Uuid {
        time_lo: 0x6a00_0000 + u32::from(n),
        time_hi: 7,
        rand: u16::from(n),
        mac: [2, 0, 0, 0, 0, n],
    }
}

fn id(n: u8) -> DiskId {
    DiskId::from_designator(3, &[0x60, 0, 0, 0, 0, 0, 0xAB, n]).unwrap()
}

fn scan_with(disks: &mut [SparseDisk], ids: &[u8], space: &mut Space) -> Scan<8, 16> {
    let mut memory = space.memory();
    let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
    let ids: Vec<_> = ids.iter().map(|n| Some(id(*n))).collect();
    scan(disks, &ids, &mut io).unwrap()
}

/// A two-device volume `orig` on devices with identities 0 and 1, with data written.
fn original(space: &mut Space) -> Vec<SparseDisk> {
    let mut disks = vec![
        SparseDisk::new(17 * MIB + UNIT, 512),
        SparseDisk::new(17 * MIB + UNIT, 512),
    ];
    {
        let mut memory = space.memory();
        let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
        let params = CreateVolume {
            version: 6,
            name: "orig",
            volume_uuid: uuid(50),
            units: None,
            time_us: 1,
        };
        let n0 = NewDevice {
            disk_id: id(0),
            device_uuid: uuid(0),
            name: "naa.0:1",
        };
        create(&mut disks[0], &mut io, &params, &n0).unwrap();
    }
    let found = scan_with(&mut disks[..1], &[0], space);
    let v = found.volumes[0].clone();
    {
        let mut memory = space.memory();
        let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
        let n1 = NewDevice {
            disk_id: id(1),
            device_uuid: uuid(1),
            name: "naa.1:1",
        };
        span(&mut disks[..2], &v, &mut io, &n1, None, 2).unwrap();
    }
    // Data at the device boundary.
    disks[0].write_bytes(17 * MIB + UNIT - 512, &[0x11; 512]);
    disks[1].write_bytes(17 * MIB, &[0x22; 512]);
    disks
}

#[test]
fn snapshot_is_detected_refused_force_mounted_and_resignatured() {
    let mut space = Space::new(MIB as usize);
    let orig = original(&mut space);
    // The array presents copies of both LUNs under new identities 2 and 3.
    let mut all = vec![
        orig[0].clone(),
        orig[1].clone(),
        orig[0].clone(),
        orig[1].clone(),
    ];
    let found = scan_with(&mut all, &[0, 1, 2, 3], &mut space);
    assert_eq!(found.volumes.len(), 2);
    let (a, b) = (&found.volumes[0], &found.volumes[1]);
    assert_eq!(a.uuid, b.uuid, "same volume UUID on both");
    assert_eq!(a.status, VolumeStatus::Complete);
    assert_eq!(b.status, VolumeStatus::Snapshot);
    assert_eq!(b.member_devices().collect::<Vec<_>>(), vec![2, 3]);
    let (a, b) = (a.clone(), b.clone());

    let [d0, d1, s0, s1]: [SparseDisk; 4] = all.try_into().ok().unwrap();
    let mut table = MountTable::<4>::new();
    let original = table
        .mount::<_, 8, 16, 8, 16>(&a, heapless::Vec::from_iter([d0, d1]), MountMode::Normal)
        .map_err(|r| r.error)
        .unwrap();
    // Not mounted by default.
    let refused = table
        .mount::<_, 8, 16, 8, 16>(&b, heapless::Vec::from_iter([s0, s1]), MountMode::Normal)
        .err()
        .unwrap();
    assert_eq!(refused.error.kind(), LvmErrorKind::NotAllowed);
    // Never beside a volume with the same UUID, even forced.
    let refused = table
        .mount::<_, 8, 16, 8, 16>(&b, refused.devices, MountMode::Force)
        .err()
        .unwrap();
    assert_eq!(refused.error.kind(), LvmErrorKind::AlreadyMounted);
    // Force-mount once the original is gone: keeps the UUID, writes nothing.
    let [d0, d1]: [SparseDisk; 2] = table.unmount(original).into_array().ok().unwrap();
    let before: Vec<_> = refused.devices.iter().map(|d| d.snapshot()).collect();
    let mut forced = table
        .mount::<_, 8, 16, 8, 16>(&b, refused.devices, MountMode::Force)
        .map_err(|r| r.error)
        .unwrap();
    assert_eq!(forced.uuid(), a.uuid);
    {
        let mut memory = space.memory();
        let bytes = read_blocks(&mut forced, &mut memory, (UNIT - 512) / 512, 2, 1).unwrap();
        assert_filled(&bytes[..512], 0x11, "snapshot, device 0 side");
        assert_filled(&bytes[512..], 0x22, "snapshot, device 1 side");
    }
    let mut snap = table.unmount(forced);
    let after: Vec<_> = snap.iter().map(|d| d.snapshot()).collect();
    assert!(before == after, "force-mount wrote to the devices");

    // Resignature: new UUID, actual identities recorded.
    {
        let mut memory = space.memory();
        let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
        let new = [
            NewDevice {
                disk_id: id(2),
                device_uuid: uuid(12),
                name: "naa.2:1",
            },
            NewDevice {
                disk_id: id(3),
                device_uuid: uuid(13),
                name: "naa.3:1",
            },
        ];
        resignature(&mut snap, &b, &mut io, uuid(99), &new, 3).unwrap();
    }
    let [s0, s1]: [SparseDisk; 2] = snap.into_array().ok().unwrap();
    let mut all = vec![d0, d1, s0, s1];
    let found = scan_with(&mut all, &[0, 1, 2, 3], &mut space);
    assert_eq!(found.volumes.len(), 2);
    assert!(
        found
            .volumes
            .iter()
            .all(|v| v.status == VolumeStatus::Complete)
    );
    let resigned = found
        .volumes
        .iter()
        .find(|v| v.uuid == uuid(99))
        .unwrap()
        .clone();
    assert_eq!(resigned.name.as_str(), Some("orig"));
    assert_eq!(resigned.device_names[1].as_str(), Some("naa.3:1"));
    let a = found
        .volumes
        .iter()
        .find(|v| v.uuid == uuid(50))
        .unwrap()
        .clone();
    // Both mount side by side now.
    let [d0, d1, s0, s1]: [SparseDisk; 4] = all.try_into().ok().unwrap();
    let mut first = table
        .mount::<_, 8, 16, 8, 16>(&a, heapless::Vec::from_iter([d0, d1]), MountMode::Normal)
        .map_err(|r| r.error)
        .unwrap();
    let mut second = table
        .mount::<_, 8, 16, 8, 16>(
            &resigned,
            heapless::Vec::from_iter([s0, s1]),
            MountMode::Normal,
        )
        .map_err(|r| r.error)
        .unwrap();
    let mut memory = space.memory();
    let x = read_blocks(&mut first, &mut memory, (UNIT - 512) / 512, 2, 1).unwrap();
    let y = read_blocks(&mut second, &mut memory, (UNIT - 512) / 512, 2, 1).unwrap();
    assert_eq!(x, y);
    assert_eq!(first.geometry().block_count, second.geometry().block_count);
}

#[test]
fn a_copy_presented_under_the_same_identity_conflicts() {
    // Two devices claiming the same place in the same volume (e.g. a copy whose identity the
    // caller does not know): the volume is reported invalid, never mounted.
    let mut space = Space::new(MIB as usize);
    let orig = original(&mut space);
    let mut all = vec![orig[0].clone(), orig[1].clone(), orig[0].clone()];
    let mut memory = space.memory();
    let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
    let found: Scan<8, 16> = scan(&mut all, &[None, None, None], &mut io).unwrap();
    assert_eq!(found.volumes.len(), 1);
    assert!(
        matches!(found.volumes[0].status, VolumeStatus::Invalid(_)),
        "{:?}",
        found.volumes[0].status
    );
}
