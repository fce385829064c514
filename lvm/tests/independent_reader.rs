//! Volumes we create, span and grow are read by an independent reader, the Python package
//! `dissect.vmfs`, which must list the same name, size and devices and read the same bytes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use block::{BlockDevice, FileDisk, Instant};
use common::*;
use lvm::{
    CreateVolume, DiskId, MetadataIo, MountMode, MountTable, NewDevice, Scan, ScannedVolume, Uuid,
    VolumeStatus, create, grow, resignature, scan, span,
};

const MIB: u64 = 1 << 20;
const UNIT: u64 = 256 * MIB;
const DATA: u64 = 17 * MIB;

type Disk = FileDisk<8>;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Makes sure `dissect.vmfs` can be imported, installing it with pip if needed.
fn ensure_dissect() {
    let importable = || {
        Command::new(python())
            .args(["-c", "import dissect.vmfs.lvm"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if importable() {
        return;
    }
    let _ = Command::new(python())
        .args(["-m", "pip", "install", "--quiet", "dissect.vmfs"])
        .status();
    assert!(
        importable(),
        "the independent reader dissect.vmfs is not importable by `{}`; install it with \
         `python3 -m pip install dissect.vmfs` (or point PYTHON at an interpreter that has it)",
        python()
    );
}

fn uuid(n: u8) -> Uuid {
    Uuid {
        time_lo: 0x6900_0000 + u32::from(n),
        time_hi: 0x1234_5678,
        rand: 0x4242 + u16::from(n),
        mac: [0x00, 0x50, 0x56, 0x00, 0x00, n],
    }
}

fn identity(n: u8) -> DiskId {
    DiskId::from_designator(3, &[0x60, 0x00, 0x0c, 0x29, 0, 0, 0, n]).unwrap()
}

fn name(n: u8) -> String {
    format!("naa.6000c29000000{n:02x}:1")
}

fn rescan<const N: usize>(disks: &mut [Disk], space: &mut Space) -> Scan<N, 16> {
    let mut memory = space.memory();
    let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
    let ids: Vec<_> = (0..disks.len()).map(|i| Some(identity(i as u8))).collect();
    scan(disks, &ids, &mut io).unwrap()
}

fn only_volume(found: &Scan<4, 16>) -> ScannedVolume<4, 16> {
    assert_eq!(found.volumes.len(), 1, "{:?}", found.volumes);
    let v = found.volumes[0].clone();
    assert_eq!(v.status, VolumeStatus::Complete, "{v:?}");
    v
}

/// Deterministic bytes for volume offset `at`.
fn pattern(at: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let x = (at + i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (x >> 56) as u8
        })
        .collect()
}

fn build(version: u32, tag: &str) -> (Vec<PathBuf>, Vec<Disk>, ScannedVolume<4, 16>) {
    let paths: Vec<PathBuf> = [DATA + 2 * UNIT, DATA + 2 * UNIT, DATA + UNIT]
        .iter()
        .enumerate()
        .map(|(i, len)| scratch(&format!("{tag}-dev{i}.bin"), *len))
        .collect();
    let mut disks: Vec<Disk> = paths
        .iter()
        .map(|p| FileDisk::open(p, 512).unwrap())
        .collect();
    let mut space = Space::new(MIB as usize);
    let volume_name = format!("ours-{tag}");
    {
        let mut memory = space.memory();
        let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
        let params = CreateVolume {
            version,
            name: &volume_name,
            volume_uuid: uuid(100),
            units: Some(1),
            time_us: 1_700_000_000_000_000,
        };
        let dev0 = NewDevice {
            disk_id: identity(0),
            device_uuid: uuid(0),
            name: &name(0),
        };
        create(&mut disks[0], &mut io, &params, &dev0).unwrap();
    }
    // Create: one unit on device 0.
    let v = only_volume(&rescan::<4>(&mut disks[..1], &mut space));
    assert_eq!(v.logical_size, UNIT);
    assert_eq!(v.version, version);
    // Grow on device 0.
    {
        let mut memory = space.memory();
        let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
        grow(&mut disks[..1], &v, &mut io, 1, 1_700_000_000_000_001).unwrap();
    }
    let v = only_volume(&rescan::<4>(&mut disks[..1], &mut space));
    assert_eq!(v.logical_size, 2 * UNIT);
    // Span onto device 1 (one unit), then grow there.
    {
        let mut memory = space.memory();
        let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
        let dev1 = NewDevice {
            disk_id: identity(1),
            device_uuid: uuid(1),
            name: &name(1),
        };
        span(
            &mut disks[..2],
            &v,
            &mut io,
            &dev1,
            Some(1),
            1_700_000_000_000_002,
        )
        .unwrap();
    }
    let v = only_volume(&rescan::<4>(&mut disks[..2], &mut space));
    assert_eq!(v.logical_size, 3 * UNIT);
    {
        let mut memory = space.memory();
        let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
        grow(&mut disks[..2], &v, &mut io, 1, 1_700_000_000_000_003).unwrap();
    }
    let v = only_volume(&rescan::<4>(&mut disks[..2], &mut space));
    assert_eq!(v.logical_size, 4 * UNIT);
    // Span onto device 2, taking all it holds.
    {
        let mut memory = space.memory();
        let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
        let dev2 = NewDevice {
            disk_id: identity(2),
            device_uuid: uuid(2),
            name: &name(2),
        };
        span(
            &mut disks[..3],
            &v,
            &mut io,
            &dev2,
            None,
            1_700_000_000_000_004,
        )
        .unwrap();
    }
    let v = only_volume(&rescan::<4>(&mut disks, &mut space));
    assert_eq!(v.logical_size, 5 * UNIT);
    assert_eq!(v.members.len(), 3);
    (paths, disks, v)
}

fn check_with_dissect(version: u32, tag: &str) {
    ensure_dissect();
    let (paths, disks, v) = build(version, tag);
    // Write distinct bytes at places that cross extent and device boundaries.
    let ranges: Vec<(u64, usize)> = vec![
        (0, 64 * 1024),
        (UNIT - 4096, 8192),                // extent boundary on device 0
        (2 * UNIT - MIB / 2, MIB as usize), // device 0 -> device 1
        (4 * UNIT - 512, 1024),             // device 1 -> device 2
        (5 * UNIT - 4096, 4096),            // last block
    ];
    let mut space = Space::new(MIB as usize);
    let mut table = MountTable::<2>::new();
    let devices = heapless::Vec::from_iter(disks);
    let mut volume = table
        .mount::<_, 4, 16, 8, 16>(&v, devices, MountMode::Normal)
        .map_err(|r| r.error)
        .unwrap();
    assert_eq!(volume.geometry().block_count * 512, 5 * UNIT);
    {
        let mut memory = space.memory();
        for (k, (at, len)) in ranges.iter().enumerate() {
            write_blocks(
                &mut volume,
                &mut memory,
                at / 512,
                &pattern(*at, *len),
                k as u64,
            )
            .unwrap();
            let back =
                read_blocks(&mut volume, &mut memory, at / 512, (*len / 512) as u32, 50).unwrap();
            assert!(back == pattern(*at, *len), "our own read-back at {at:#x}");
        }
    }
    let _ = table.unmount(volume);

    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dissect-{tag}"));
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    let spec: Vec<String> = ranges.iter().map(|(a, l)| format!("{a}:{l}")).collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dissect_reader.py");
    let output = Command::new(python())
        .arg(&script)
        .arg(&out_dir)
        .arg(spec.join(","))
        .args(&paths)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "dissect reader failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    // A tiny check of the JSON without a JSON crate: the fields we need, spelled exactly.
    let expect_name = format!("\"name\": \"ours-{tag}\"");
    assert!(stdout.contains(&expect_name), "{stdout}");
    assert!(
        stdout.contains(&format!("\"size\": {}", 5 * UNIT)),
        "{stdout}"
    );
    assert!(stdout.contains("\"valid\": true"), "{stdout}");
    assert!(
        stdout.contains(&format!("\"uuid\": \"{}\"", v.uuid)),
        "{stdout}"
    );
    let names: Vec<String> = (0..3).map(|i| format!("\"{}\"", name(i))).collect();
    assert!(
        stdout.contains(&format!("\"device_names\": [{}]", names.join(", "))),
        "{stdout}"
    );
    let uuids: Vec<String> = (0..3).map(|i| format!("\"{}\"", uuid(i))).collect();
    assert!(
        stdout.contains(&format!("\"device_uuids\": [{}]", uuids.join(", "))),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("\"name\"").count(),
        1,
        "one volume: {stdout}"
    );
    for (k, (at, len)) in ranges.iter().enumerate() {
        let theirs = std::fs::read(out_dir.join(format!("v0_r{k}.bin"))).unwrap();
        assert!(
            theirs == pattern(*at, *len),
            "dissect.vmfs reads different bytes at volume offset {at:#x}"
        );
    }
}

#[test]
fn dissect_agrees_on_lvm5_volumes_we_make() {
    check_with_dissect(5, "v5");
}

#[test]
fn dissect_agrees_on_lvm6_volumes_we_make() {
    check_with_dissect(6, "v6");
}

#[test]
fn dissect_reads_a_resignatured_snapshot_under_its_new_uuid() {
    use std::io::Write;
    ensure_dissect();
    let (paths, disks, v) = build(5, "resig");
    drop(disks);
    // Volume bytes at offset 0 live 17 MiB into device 0.
    let marker = pattern(0, 4096);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&paths[0])
            .unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(DATA)).unwrap();
        f.write_all(&marker).unwrap();
    }
    // The array presents sparse copies of the three LUNs under new identities 10, 11, 12.
    let copies: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            let c = p.with_extension("snap.bin");
            let ok = Command::new("cp")
                .arg("--sparse=always")
                .arg(p)
                .arg(&c)
                .status()
                .unwrap()
                .success();
            assert!(ok, "cp failed");
            c
        })
        .collect();
    let mut snaps: Vec<Disk> = copies
        .iter()
        .map(|p| FileDisk::open(p, 512).unwrap())
        .collect();
    let mut space = Space::new(MIB as usize);
    let found: Scan<4, 16> = {
        let mut memory = space.memory();
        let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
        let ids: Vec<_> = (10..13).map(|n| Some(identity(n))).collect();
        scan(&mut snaps, &ids, &mut io).unwrap()
    };
    let snap = found.volumes[0].clone();
    assert_eq!(snap.status, VolumeStatus::Snapshot);
    assert_eq!(snap.uuid, v.uuid);
    let names: Vec<String> = (10..13).map(name).collect();
    {
        let mut memory = space.memory();
        let mut io = MetadataIo::new(&mut memory, META_ADDR, META_LEN, Instant(0)).unwrap();
        let new: Vec<NewDevice<'_>> = (0..3)
            .map(|i| NewDevice {
                disk_id: identity(10 + i as u8),
                device_uuid: uuid(20 + i as u8),
                name: &names[i],
            })
            .collect();
        resignature(&mut snaps, &snap, &mut io, uuid(200), &new, 5).unwrap();
    }
    drop(snaps);
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dissect-resig");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dissect_reader.py");
    let output = Command::new(python())
        .arg(&script)
        .arg(&out_dir)
        .arg("0:4096")
        .args(&copies)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "dissect reader failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains(&format!("\"uuid\": \"{}\"", uuid(200))),
        "{stdout}"
    );
    assert!(stdout.contains("\"name\": \"ours-resig\""), "{stdout}");
    assert!(stdout.contains("\"valid\": true"), "{stdout}");
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    assert!(
        stdout.contains(&format!("\"device_names\": [{}]", quoted.join(", "))),
        "{stdout}"
    );
    let theirs = std::fs::read(out_dir.join("v0_r0.bin")).unwrap();
    assert!(
        theirs == marker,
        "dissect.vmfs reads different bytes from the resignatured copy"
    );
    for c in &copies {
        let _ = std::fs::remove_file(c);
    }
}
