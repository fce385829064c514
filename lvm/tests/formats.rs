//! Version and block-size variations, and refusals that name the structure.

mod common;

use block::{BlockDevice, Instant};
use common::*;
use lvm::{
    CreateVolume, DiskId, LvmErrorKind, MetadataIo, MountMode, MountTable, NewDevice, Scan,
    Structure, Uuid, VolumeStatus, create, scan,
};

const MIB: u64 = 1 << 20;
const UNIT: u64 = 256 * MIB;

fn new_device() -> NewDevice<'static> {
    NewDevice {
        disk_id: DiskId::from_designator(3, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap(),
        device_uuid: Uuid::default(),
        name: "naa.0102030405060708:1",
    }
}

fn params(version: u32, name: &str) -> CreateVolume<'_> {
    CreateVolume {
        version,
        name,
        volume_uuid: Uuid {
            time_lo: 9,
            ..Uuid::default()
        },
        units: None,
        time_us: 0,
    }
}

#[test]
fn lvm3_devices_are_read_with_the_lvm5_layout_and_no_device_names() {
    let extents = vec![
        RawExtent {
            device: 0,
            device_lba: 3 * MIB / 512,
            blocks: 64,
        },
        RawExtent {
            device: 1,
            device_lba: 3 * MIB / 512,
            blocks: 32,
        },
    ];
    let mut disks: Vec<SparseDisk> = (0..2).map(|_| SparseDisk::new(4 * MIB, 512)).collect();
    raw_volume(&mut disks, &extents, Uuid::default());
    for d in disks.iter_mut() {
        d.write_bytes(lvm::wire::HEADER_OFFSET + 4, &3u32.to_le_bytes());
    }
    let mut space = Space::new(MIB as usize);
    let mut memory = space.memory();
    let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
    let found: Scan<4, 8> = scan(&mut disks, &[None, None], &mut io).unwrap();
    let v = &found.volumes[0];
    assert_eq!(v.version, 3);
    assert_eq!(v.status, VolumeStatus::Complete);
    assert!(v.device_names.is_empty());
    assert_eq!(v.logical_size, 96 * 512);
}

#[test]
fn four_k_native_devices_work() {
    let mut space = Space::new(MIB as usize);
    let mut disk = SparseDisk::new(17 * MIB + UNIT, 4096);
    {
        let mut memory = space.memory();
        let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
        create(&mut disk, &mut io, &params(6, "fourk"), &new_device()).unwrap();
    }
    let mut disks = [disk];
    let found: Scan<4, 8> = {
        let mut memory = space.memory();
        let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
        scan(&mut disks, &[None], &mut io).unwrap()
    };
    let v = found.volumes[0].clone();
    assert_eq!(v.status, VolumeStatus::Complete);
    assert_eq!(v.members[0].header.block_size, 4096);
    let [disk] = disks;
    let mut table = MountTable::<1>::new();
    let mut volume = table
        .mount::<_, 4, 8, 4, 16>(&v, heapless::Vec::from_iter([disk]), MountMode::Normal)
        .map_err(|r| r.error)
        .unwrap();
    assert_eq!(volume.geometry().block_size, 4096);
    assert_eq!(volume.geometry().block_count, UNIT / 4096);
    let mut memory = space.memory();
    write_blocks(&mut volume, &mut memory, 5, &[0x5A; 4096], 1).unwrap();
    let devices = table.unmount(volume);
    assert_filled(
        &devices[0].read_bytes(17 * MIB + 5 * 4096, 4096),
        0x5A,
        "4Kn block",
    );
}

#[test]
fn created_headers_sit_where_esxi_puts_them() {
    for (version, table_offset, pe_offset) in
        [(5u32, 0x100200u64, 0x180600u64), (6, 0x101000, 0x182000)]
    {
        let mut space = Space::new(MIB as usize);
        let mut disk = SparseDisk::new(17 * MIB + 2 * UNIT, 512);
        let mut memory = space.memory();
        let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
        create(&mut disk, &mut io, &params(version, "where"), &new_device()).unwrap();
        assert_eq!(disk.read_bytes(0x100000, 4), 0xC001D00Du32.to_le_bytes());
        assert_eq!(disk.read_bytes(table_offset + 0x14, 5), b"where");
        // The first extent: used, at the data offset, volume offset 0.
        assert_eq!(disk.read_bytes(pe_offset, 1), [1]);
        assert_eq!(
            disk.read_bytes(pe_offset + 9, 8),
            0x110_0000u64.to_le_bytes()
        );
        let entries = if version == 5 { 2u32 } else { 1 };
        assert_eq!(disk.read_bytes(0x100000 + 0x6A, 4), entries.to_le_bytes());
    }
}

#[test]
fn refusals_name_the_structure() {
    let mut space = Space::new(MIB as usize);
    let mut disk = SparseDisk::new(17 * MIB + UNIT, 512);
    let mut memory = space.memory();
    let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
    let e = create(&mut disk, &mut io, &params(4, "x"), &new_device()).unwrap_err();
    assert_eq!(
        (e.structure(), e.kind()),
        (Structure::DeviceHeader, LvmErrorKind::UnsupportedVersion)
    );
    let long = "n".repeat(65);
    let e = create(&mut disk, &mut io, &params(5, &long), &new_device()).unwrap_err();
    assert_eq!(e.structure(), Structure::VolumeDescriptor);
    let mut small = SparseDisk::new(17 * MIB + UNIT - 512, 512);
    let e = create(&mut small, &mut io, &params(5, "x"), &new_device()).unwrap_err();
    assert_eq!(
        (e.structure(), e.kind()),
        (Structure::Volume, LvmErrorKind::NoSpace)
    );
    assert!(
        e.to_string().starts_with("LVM volume: no free space"),
        "{e}"
    );
    // A metadata buffer that is too small is refused up front.
    let e = MetadataIo::new(&mut memory, META_ADDR, 4096, Instant(0))
        .err()
        .unwrap();
    assert_eq!(e.structure(), Structure::MetadataBuffer);
}
