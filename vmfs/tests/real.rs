//! Reads the real ESXi-made VMFS5 and VMFS6 volumes of the shared fixtures (see
//! `../shared/fixtures/vmfs-real/README.md`) and checks every documented file.
//!
//! `vmfs5` and `vmfs6` are one-device ESXi LVM volumes and `vmfs5-span` an LVM volume spanning
//! two devices: all three are mounted through the real `lvm` crate (`common::open_volume`).
//! `vmfs5d` has no LVM header and mounts from the bare device.

mod common;

use block::{BlockDevice, Instant, MemAddr, Memory};
use common::*;
use fss::{FileKind, FileSystem, FsErrorKind, Switch};

const NOW: Instant = Instant::ZERO;
const GIB: u64 = 1 << 30;

fn system_files(v6: bool) -> Vec<&'static str> {
    let mut names = vec![
        ".fbb.sf", ".fdc.sf", ".pbc.sf", ".sbc.sf", ".vh.sf", ".pb2.sf", ".sdd.sf",
    ];
    if v6 {
        names.extend([".jbc.sf", ".unmap.sf"]);
    }
    names
}

fn check_volume(label: &str, v6: bool) {
    let mut buffers = Buffers::new();
    let mut memory = buffers.memory();
    let mem: &mut dyn Memory = &mut memory;
    let mut fs = mount(&format!("vmfs/{label}"), mem);
    let info = fs.info();
    assert_eq!(info.label.as_str(), label);
    assert_eq!(info.vmfs6, v6);
    // From `.fbb.sf` (vmkfstools -P would report the same counts).
    assert_eq!(info.file_blocks, 2048, "{label}");
    assert_eq!(info.large_file_blocks, if v6 { 4 } else { 0 }, "{label}");
    assert_eq!(fs.label(), label);

    // The root directory lists every documented file.
    let root: Vec<String> = list(&mut fs, mem, "/")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut expected = system_files(v6);
    expected.extend([
        "small",
        "big",
        "bigger",
        "symlink",
        "directory",
        "normal.vmdk",
        "normal-flat.vmdk",
        "large.vmdk",
        "large-flat.vmdk",
        "rdm.vmdk",
        "rdm-rdm.vmdk",
        "collision",
    ]);
    for name in &expected {
        assert!(
            root.iter().any(|n| n == name),
            "{label}: {name} missing from {root:?}"
        );
    }

    // System files.
    for name in system_files(v6) {
        let node = fs.lookup_path(NOW, mem, name).unwrap();
        let stat = fs.stat(NOW, mem, node).unwrap();
        let want = if name == ".sdd.sf" {
            FileKind::SystemDirectory
        } else {
            FileKind::SystemFile
        };
        assert_eq!(stat.kind, want, "{label}: {name}");
    }
    let fbb = read_file(&mut fs, mem, ".fbb.sf");
    let fbb_node = fs.lookup_path(NOW, mem, ".fbb.sf").unwrap();
    assert_eq!(fbb.len() as u64, fs.stat(NOW, mem, fbb_node).unwrap().size);
    let sdd = fs.lookup_path(NOW, mem, ".sdd.sf").unwrap();
    fs.readdir(NOW, mem, sdd, &mut |_| true).unwrap();

    // small: resident.
    assert_eq!(read_file(&mut fs, mem, "small"), b"tiny\n");

    // big: file blocks.
    let big = read_file(&mut fs, mem, "big");
    let mut want = b"Kusjes van SRT<3".repeat(65536);
    want.push(b'\n');
    assert!(big == want, "{label}: big differs");

    // bigger: MiB i is filled with i % 256.
    let node = fs.lookup_path(NOW, mem, "bigger").unwrap();
    assert_eq!(fs.stat(NOW, mem, node).unwrap().size, 128 << 20);
    let handle = fs.open(NOW, mem, node).unwrap();
    for part in 0..32u64 {
        let data = read_range(&mut fs, mem, handle, part * (4 << 20), 4 << 20, 1 << 20);
        for (i, chunk) in data.chunks(1 << 20).enumerate() {
            let mib = part * 4 + i as u64;
            assert!(
                chunk.iter().all(|&b| b == (mib % 256) as u8),
                "{label}: bigger MiB {mib}"
            );
        }
    }
    fs.close(handle).unwrap();

    // symlink.
    let node = fs.lookup_path(NOW, mem, "symlink").unwrap();
    assert_eq!(fs.stat(NOW, mem, node).unwrap().kind, FileKind::Symlink);
    let mut target = [0u8; 256];
    let n = fs.readlink(NOW, mem, node, &mut target).unwrap();
    assert_eq!(
        std::str::from_utf8(&target[..n]).unwrap(),
        format!("/vmfs/volumes/{label}/small")
    );

    // directory: 100 resident files.
    let entries = list(&mut fs, mem, "directory");
    for i in 1..=100 {
        let name = format!("file{i}");
        assert!(entries.iter().any(|(n, _)| *n == name), "{label}: {name}");
        assert_eq!(
            read_file(&mut fs, mem, &format!("directory/{name}")),
            format!("File {i}\n").as_bytes()
        );
    }
    assert_eq!(
        entries
            .iter()
            .filter(|(n, _)| n.starts_with("file"))
            .count(),
        100
    );

    // normal-flat.vmdk: pointer blocks; 0x42 at 42 GiB, zeros around it.
    let node = fs.lookup_path(NOW, mem, "normal-flat.vmdk").unwrap();
    assert_eq!(fs.stat(NOW, mem, node).unwrap().size, 69 * GIB);
    let handle = fs.open(NOW, mem, node).unwrap();
    let around = read_range(&mut fs, mem, handle, 42 * GIB - (1 << 20), 2 << 20, 1 << 20);
    let hit = 1 << 20;
    assert!(
        around[hit..hit + 512].iter().all(|&b| b == 0x42),
        "{label}: 0x42 at 42 GiB"
    );
    assert!(
        around[..hit]
            .iter()
            .chain(&around[hit + 512..])
            .all(|&b| b == 0)
    );
    for at in [0, GIB, 69 * GIB - (1 << 20)] {
        assert!(
            read_range(&mut fs, mem, handle, at, 1 << 20, 1 << 20)
                .iter()
                .all(|&b| b == 0)
        );
    }
    fs.close(handle).unwrap();

    // large-flat.vmdk: double-indirect pointer blocks; 0x42 at 117 GiB.
    let node = fs.lookup_path(NOW, mem, "large-flat.vmdk").unwrap();
    assert_eq!(fs.stat(NOW, mem, node).unwrap().size, 42 << 40);
    let handle = fs.open(NOW, mem, node).unwrap();
    let around = read_range(&mut fs, mem, handle, 117 * GIB - 4096, 8192, 8192);
    assert!(
        around[4096..4608].iter().all(|&b| b == 0x42),
        "{label}: 0x42 at 117 GiB"
    );
    assert!(
        around[..4096]
            .iter()
            .chain(&around[4608..])
            .all(|&b| b == 0)
    );
    for at in [0, 117 * GIB + (1 << 20), (42 << 40) - 4096] {
        assert!(
            read_range(&mut fs, mem, handle, at, 4096, 4096)
                .iter()
                .all(|&b| b == 0)
        );
    }
    fs.close(handle).unwrap();

    // rdm-rdm.vmdk: the mapping record.
    let node = fs.lookup_path(NOW, mem, "rdm-rdm.vmdk").unwrap();
    let stat = fs.stat(NOW, mem, node).unwrap();
    assert_eq!(stat.kind, FileKind::RawDeviceMap);
    assert_eq!(stat.size, 6969 * GIB);
    let rdm = fs.rdm_mapping(NOW, mem, node).unwrap();
    assert_eq!((rdm.id_type, rdm.id_len), (1, 26));
    assert_eq!(rdm.id_bytes(), b"QM00015             QEMU H");
    assert_eq!(
        fs.open(NOW, mem, node).unwrap_err().kind(),
        FsErrorKind::Unsupported
    );

    // VMDK descriptors.
    let fixtures = fixtures::dir().join("descriptors");
    for name in ["normal", "large", "rdm"] {
        let data = read_file(&mut fs, mem, &format!("{name}.vmdk"));
        let text = String::from_utf8(data).unwrap();
        assert!(
            text.starts_with("# Disk DescriptorFile"),
            "{label}: {name}.vmdk"
        );
        if !v6 {
            let want = std::fs::read(fixtures.join(format!("vmfs5-{name}.vmdk"))).unwrap();
            assert_eq!(text.as_bytes(), want, "{label}: {name}.vmdk");
        }
    }

    // collision: 19 names, each found by lookup.
    let entries = list(&mut fs, mem, "collision");
    let names: Vec<_> = entries
        .iter()
        .filter(|(n, _)| n != "." && n != "..")
        .collect();
    assert_eq!(names.len(), 19, "{label}: {names:?}");
    for (name, node) in &names {
        let found = fs
            .lookup_path(NOW, mem, &format!("collision/{name}"))
            .unwrap();
        assert_eq!(found.0, *node, "{label}: collision/{name}");
    }
    if v6 {
        // Every name, colliding or not, was found through the hash table and link groups.
        assert_eq!(
            fs.counters().linear_lookups,
            0,
            "{label}: {:?}",
            fs.counters()
        );
        assert!(fs.counters().hashed_lookups > 100);
    }
    assert_eq!(
        fs.lookup_path(NOW, mem, "collision/nope")
            .unwrap_err()
            .kind(),
        FsErrorKind::NotFound
    );

    // Through the switch, by label and by UUID, following the symbolic link.
    let uuid = fs.uuid().to_string();
    let small = fs.lookup_path(NOW, mem, "small").unwrap();
    let mut switch: Switch<'_, 2> = Switch::new();
    let id = switch.mount(&mut fs).unwrap();
    let by_label = switch
        .lookup(NOW, mem, &format!("/vmfs/volumes/{label}/symlink"), true)
        .unwrap();
    assert_eq!(by_label, (id, small));
    let by_uuid = switch
        .lookup(NOW, mem, &format!("/vmfs/volumes/{uuid}/small"), true)
        .unwrap();
    assert_eq!(by_uuid, (id, small));
}

#[test]
fn vmfs5_reads_every_documented_file() {
    check_volume("vmfs5", false);
}

#[test]
fn vmfs6_reads_every_documented_file() {
    check_volume("vmfs6", true);
}

#[test]
fn vmfs5d_mounts_from_the_bare_device_and_lists_system_files() {
    let mut buffers = Buffers::new();
    let mut memory = buffers.memory();
    let mem: &mut dyn Memory = &mut memory;
    let mut fs = mount("vmfs/vmfs5d", mem);
    assert!(!fs.device().is_lvm(), "vmfs5d has no LVM header");
    assert_eq!(fs.label(), "vmfs5d");
    let names: Vec<String> = list(&mut fs, mem, "/")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for name in system_files(false) {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
    // .sbc.sf is addressed through pointer blocks here: read its resource header.
    let sbc = read_file(&mut fs, mem, ".sbc.sf");
    assert_eq!(sbc.len(), 136_708_096);
    let _ = MemAddr(0);
}

/// `vmfs5-span`: an LVM volume of 4 GiB spanning two devices, scanned, grouped and mounted by
/// the `lvm` crate (devices given in reverse order: the volume orders its members). Its
/// `.fdc.sf` and `.sbc.sf` are addressed through `.pbc.sf` pointer blocks, so mounting must open
/// `.pbc.sf` first. Sizes and resource headers as `dissect.vmfs` reads them.
#[test]
fn vmfs5_span_mounts_through_lvm_and_lists_its_system_files() {
    let mut buffers = Buffers::new();
    let mut memory = buffers.memory();
    let mem: &mut dyn Memory = &mut memory;
    let mut fs = mount_devices(&["vmfs/span/vmfs5-span-1", "vmfs/span/vmfs5-span-0"], mem);
    assert!(fs.device().is_lvm());
    let geometry = fs.device().geometry();
    assert_eq!(geometry.block_count * geometry.block_size as u64, 4 * GIB);
    assert_eq!(fs.label(), "vmfs5-span");
    let info = fs.info();
    assert!(!info.vmfs6);
    assert_eq!(info.file_block_size, 512 * 1024);
    assert_eq!(info.file_blocks, 8192);

    let mut names: Vec<String> = list(&mut fs, mem, "/")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort();
    let mut expected: Vec<String> = system_files(false)
        .into_iter()
        .chain([".", ".."])
        .map(String::from)
        .collect();
    expected.sort();
    assert_eq!(names, expected);

    let sizes = [
        (".fbb.sf", 131_072),
        (".fdc.sf", 163_102_720),
        (".pbc.sf", 134_217_728),
        (".sbc.sf", 262_733_824),
        (".vh.sf", 4_194_304),
        (".pb2.sf", 1_179_648),
        (".sdd.sf", 280),
    ];
    for (name, size) in sizes {
        let node = fs.lookup_path(NOW, mem, name).unwrap();
        assert_eq!(fs.stat(NOW, mem, node).unwrap().size, size, "{name}");
    }
    // The resource headers of the two files addressed through pointer blocks.
    for (name, per_cluster, resource_bytes, group_bytes, resources) in [
        (".fdc.sf", 200, 2048, 0x191_0000, 79_384),
        (".sbc.sf", 64, 8192, 0x201_0000, 32_000),
    ] {
        let node = fs.lookup_path(NOW, mem, name).unwrap();
        let handle = fs.open(NOW, mem, node).unwrap();
        let header = read_range(&mut fs, mem, handle, 0, 512, 512);
        let meta = vmfs::format::ResourceMeta::parse(&header, false, 0).unwrap();
        assert_eq!(meta.per_cluster, per_cluster, "{name}");
        assert_eq!(meta.clusters_per_group, 64, "{name}");
        assert_eq!(meta.group_offset, 0x1_0000, "{name}");
        assert_eq!(meta.resource_bytes, resource_bytes, "{name}");
        assert_eq!(meta.group_bytes, group_bytes, "{name}");
        assert_eq!(meta.resources, resources, "{name}");
        fs.close(handle).unwrap();
    }
}

#[test]
fn warm_random_reads_cost_at_most_one_metadata_read() {
    for label in ["vmfs5", "vmfs6"] {
        let mut buffers = Buffers::new();
        let mut memory = buffers.memory();
        let mem: &mut dyn Memory = &mut memory;
        let mut fs = mount(&format!("vmfs/{label}"), mem);
        let node = fs.lookup_path(NOW, mem, "large-flat.vmdk").unwrap();
        let handle = fs.open(NOW, mem, node).unwrap();
        // Warm the top level.
        read_range(&mut fs, mem, handle, 117 * GIB, 4096, 4096);
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed % ((42 << 40) / 4096)) * 4096;
            let before = fs.counters().metadata_reads;
            read_range(&mut fs, mem, handle, at, 4096, 4096);
            let cost = fs.counters().metadata_reads - before;
            assert!(
                cost <= 1,
                "{label}: a warm 4 KiB read at {at:#x} cost {cost} metadata reads"
            );
        }
        fs.close(handle).unwrap();
    }
}

/// Random 4 KiB reads in `large-flat.vmdk` (42 TiB, double-indirect) with a warm pointer block
/// cache: across the whole file (almost all holes, answered from cached pointer blocks), and
/// inside its one allocated block (each a device read). With a warm cache no read needs more
/// than one metadata read. The default run does 2,000 reads per case; for the
/// figures in BENCHMARKS.md run
/// `SOAK=1 cargo test --release -p vmfs --test real -- --nocapture random_reads`.
#[test]
fn random_reads_warm() {
    use fss::FileRequest;
    for label in ["vmfs5", "vmfs6"] {
        let mut buffers = Buffers::new();
        let mut memory = buffers.memory();
        let mem: &mut dyn Memory = &mut memory;
        let mut fs = mount(&format!("vmfs/{label}"), mem);
        let node = fs.lookup_path(NOW, mem, "large-flat.vmdk").unwrap();
        let handle = fs.open(NOW, mem, node).unwrap();
        for (what, base, span) in [
            ("whole file", 0u64, 42u64 << 40),
            ("allocated block", 117 * GIB, 1 << 20),
        ] {
            read_range(&mut fs, mem, handle, base, 4096, 4096);
            let before = fs.counters();
            let mut seed = 0x9E37_79B9_7F4A_7C15u64;
            let n = if std::env::var_os("SOAK").is_some() {
                200_000u64
            } else {
                2_000
            };
            let start = std::time::Instant::now();
            for i in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = base + (seed % (span / 4096)) * 4096;
                let sg = block::SgList::single(DATA_ADDR, 4096).unwrap();
                fs.submit(NOW, FileRequest::read(block::Tag(i), handle, at, sg))
                    .map_err(|(e, _)| e)
                    .unwrap();
                let mut done = false;
                while !done {
                    fs.poll(NOW, mem, &mut |c| {
                        c.result.unwrap();
                        done = true;
                    });
                }
            }
            let secs = start.elapsed().as_secs_f64();
            let after = fs.counters();
            println!(
                "{label} large-flat.vmdk random 4 KiB reads, {what}: {:.0} reads/s, {:.4} metadata reads/read, {:.3} device reads/read",
                n as f64 / secs,
                (after.metadata_reads - before.metadata_reads) as f64 / n as f64,
                (after.data_reads - before.data_reads) as f64 / n as f64,
            );
            // The bound: with a warm cache a random read costs at most one metadata read.
            assert!(
                after.metadata_reads - before.metadata_reads <= n,
                "{label} {what}: more than one metadata read per 4 KiB read"
            );
            assert!(
                after.data_reads - before.data_reads <= n,
                "{label} {what}: more than one device read per 4 KiB read"
            );
        }
    }
}
