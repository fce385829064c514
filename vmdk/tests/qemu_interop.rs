//! Interoperability with QEMU's VMDK driver, the oracle: disks qemu-img makes and qemu-io writes
//! read back identically through this crate, and disks this crate writes pass `qemu-img check`
//! and `qemu-img compare`.

mod common;

use block::{FileDisk, Instant, MemoryRegions};
use common::*;
use vmdk::descriptor::NO_PARENT_CID;
use vmdk::{
    Access, CreateType, DeltaFormat, DirSource, ErrorKind, ExtentSpec, ExtentType, MetaRegion,
    NewDescriptor, OpenOptions, SparseExtent, SparseHeader, VirtualDisk, format_sparse,
    write_descriptor,
};

const CAPACITY: u64 = 64 << 20;

fn with_memory<R>(f: impl FnOnce(&mut MemoryRegions<'_, 2>) -> R) -> R {
    let mut data = vec![0u8; DATA_LEN];
    let mut meta = vec![0u8; META_LEN];
    let mut memory = MemoryRegions::<2>::new();
    memory.add(DATA_ADDR, &mut data).unwrap();
    memory.add(META_ADDR, &mut meta).unwrap();
    f(&mut memory)
}

fn meta() -> MetaRegion {
    MetaRegion {
        addr: META_ADDR,
        len: META_LEN as u64,
    }
}

#[test]
fn qemu_written_sparse_extents_read_back_identically() {
    let dir = scratch_dir("sparse-read");
    for (i, sub) in ["monolithicSparse", "streamOptimized"].iter().enumerate() {
        let path = dir.join(format!("{sub}.vmdk"));
        let p = path.to_str().unwrap();
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            &format!("subformat={sub}"),
            p,
            "64M",
        ]);
        if *sub == "streamOptimized" {
            // qemu-io cannot rewrite a stream-optimized file in place; convert a written one.
            let src = dir.join("stream-src.vmdk");
            let s = src.to_str().unwrap();
            qemu_img(&["create", "-q", "-f", "vmdk", s, "64M"]);
            for (pat, off, len) in patterns(77, 24, CAPACITY) {
                qemu_io_write(&src, pat, off, len);
            }
            qemu_img(&[
                "convert",
                "-O",
                "vmdk",
                "-o",
                "subformat=streamOptimized",
                s,
                p,
            ]);
        } else {
            for (pat, off, len) in patterns(11 + i as u64, 24, CAPACITY) {
                qemu_io_write(&path, pat, off, len);
            }
        }
        let expected = convert_raw(&path);
        let ours = with_memory(|memory| {
            let disk = FileDisk::<4>::open_read_only(&path, 512).unwrap();
            let mut extent =
                SparseExtent::<_, 4>::open(disk, meta(), memory, Instant(0), true).unwrap();
            read_all(&mut extent, memory)
        });
        assert_eq!(ours.len(), expected.len(), "{sub}: capacity");
        assert_eq!(first_difference(&ours, &expected), None, "{sub}: contents");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sparse_extents_we_write_pass_qemu_check_and_compare() {
    let dir = scratch_dir("sparse-write");
    let path = dir.join("ours.vmdk");
    let sectors = CAPACITY / 512;
    let header = SparseHeader::new_layout(sectors, 128, 20).unwrap();
    let extents = [ExtentSpec {
        access: Access::ReadWrite,
        sectors,
        kind: ExtentType::Sparse,
        file_name: "ours.vmdk",
        offset: 0,
    }];
    let mut text = [0u8; 20 * 512];
    let text_len = write_descriptor(
        &NewDescriptor {
            cid: 0x1234_5678,
            parent_cid: NO_PARENT_CID,
            create_type: CreateType::MonolithicSparse,
            parent_file_name_hint: None,
            extents: &extents,
            ddb: &[("adapterType", "lsilogic")],
        },
        &mut text,
    )
    .unwrap();
    // The file must hold every grain we may append; trimmed to what is used afterwards.
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(CAPACITY + header.overhead * 512 + (1 << 20))
        .unwrap();
    drop(file);
    let mut expected = vec![0u8; CAPACITY as usize];
    let used = with_memory(|memory| {
        let mut disk = FileDisk::<4>::open(&path, 512).unwrap();
        format_sparse(
            &mut disk,
            memory,
            Instant(0),
            META_ADDR,
            &header,
            &text[..text_len],
        )
        .unwrap();
        let mut extent =
            SparseExtent::<_, 2>::open(disk, meta(), memory, Instant(0), false).unwrap();
        for (pat, off, len) in patterns(5, 40, CAPACITY) {
            let data: Vec<u8> = (0..len).map(|k| pat ^ (k as u8)).collect();
            write_at(&mut extent, memory, off, &data);
            expected[off as usize..(off + len) as usize].copy_from_slice(&data);
        }
        assert_eq!(
            first_difference(&read_all(&mut extent, memory), &expected),
            None
        );
        extent.close(memory, Instant(0)).unwrap();
        extent.used_sectors()
    });
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(used * 512)
        .unwrap();
    qemu_img(&["check", "-f", "vmdk", path.to_str().unwrap()]);
    let raw = dir.join("expected.raw");
    std::fs::write(&raw, &expected).unwrap();
    qemu_img(&[
        "compare",
        "-f",
        "vmdk",
        "-F",
        "raw",
        path.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Opens the virtual disk `name` in `dir` through the crate and hands it to `f`.
/// (On a thread with a large stack: a `VirtualDisk` with the default capacities holds every
/// layer's extents inline, about 300 KiB, moved around in unoptimized builds.)
fn with_disk<R: Send>(
    dir: &std::path::Path,
    name: &str,
    options: OpenOptions,
    f: impl FnOnce(&mut VirtualDisk<'_, FileDisk<4>>, &mut MemoryRegions<'_, 2>, &mut DirSource) -> R
    + Send,
) -> R {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(32 << 20)
            .spawn_scoped(scope, || with_disk_here(dir, name, options, f))
            .unwrap()
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

fn with_disk_here<R>(
    dir: &std::path::Path,
    name: &str,
    options: OpenOptions,
    f: impl FnOnce(&mut VirtualDisk<'_, FileDisk<4>>, &mut MemoryRegions<'_, 2>, &mut DirSource) -> R,
) -> R {
    let mut map = vec![0u8; 1 << 16];
    with_memory(|memory| {
        let mut source = DirSource::<4>::new(dir);
        let mut text = vec![0u8; 16 << 10];
        let mut disk = VirtualDisk::<_>::open(
            &mut source,
            name,
            &mut text,
            meta(),
            &mut map,
            memory,
            Instant(0),
            options,
        )
        .unwrap_or_else(|e| panic!("open {name}: {e}"));
        f(&mut disk, memory, &mut source)
    })
}

fn read_through_crate(dir: &std::path::Path, name: &str) -> Vec<u8> {
    with_disk(
        dir,
        name,
        OpenOptions {
            read_only: true,
            ..Default::default()
        },
        |disk, memory, _| read_all(disk, memory),
    )
}

#[test]
fn every_qemu_subformat_reads_back_identically() {
    let dir = scratch_dir("subformats");
    for (i, sub) in [
        "monolithicSparse",
        "monolithicFlat",
        "twoGbMaxExtentSparse",
        "twoGbMaxExtentFlat",
        "streamOptimized",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("{sub}.vmdk");
        let path = dir.join(&name);
        let p = path.to_str().unwrap();
        if *sub == "streamOptimized" {
            let src = dir.join("stream-src.vmdk");
            let s = src.to_str().unwrap();
            qemu_img(&["create", "-q", "-f", "vmdk", s, "64M"]);
            for (pat, off, len) in patterns(99, 16, CAPACITY) {
                qemu_io_write(&src, pat, off, len);
            }
            qemu_img(&[
                "convert",
                "-O",
                "vmdk",
                "-o",
                "subformat=streamOptimized",
                s,
                p,
            ]);
        } else {
            qemu_img(&[
                "create",
                "-q",
                "-f",
                "vmdk",
                "-o",
                &format!("subformat={sub}"),
                p,
                "64M",
            ]);
            for (pat, off, len) in patterns(31 + i as u64, 16, CAPACITY) {
                qemu_io_write(&path, pat, off, len);
            }
        }
        let expected = convert_raw(&path);
        let ours = read_through_crate(&dir, &name);
        assert_eq!(ours.len(), expected.len(), "{sub}: capacity");
        assert_eq!(first_difference(&ours, &expected), None, "{sub}: contents");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A monolithicSparse disk renamed after it was made still names its old file in its embedded
/// descriptor; the file itself is the extent (QEMU reads it the same way).
#[test]
fn renamed_and_copied_sparse_disks_read_their_own_grains() {
    let dir = scratch_dir("renamed");
    let made = dir.join("made.vmdk");
    qemu_img(&["create", "-q", "-f", "vmdk", made.to_str().unwrap(), "64M"]);
    for (pat, off, len) in patterns(7, 8, CAPACITY) {
        qemu_io_write(&made, pat, off, len);
    }
    let expected = convert_raw(&made);
    std::fs::rename(&made, dir.join("renamed.vmdk")).unwrap();
    assert_eq!(
        first_difference(&read_through_crate(&dir, "renamed.vmdk"), &expected),
        None
    );
    // A copy beside a different disk of the original name reads the copy, not that disk.
    std::fs::copy(dir.join("renamed.vmdk"), dir.join("copy.vmdk")).unwrap();
    qemu_img(&["create", "-q", "-f", "vmdk", made.to_str().unwrap(), "64M"]);
    assert_eq!(
        first_difference(&read_through_crate(&dir, "copy.vmdk"), &expected),
        None
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn multi_extent_descriptor_reads_back_identically() {
    let dir = scratch_dir("multi-extent");
    // Three flat extents, the middle one at an offset inside its file, with patterned data.
    // (qemu-io refuses to open several flat files writable at once, so the files are written
    // directly and qemu-img only reads. QEMU 10 also reads the first extent line twice when a
    // blank line directly precedes it, hence the comment line before the extents.)
    let fill = |len: usize, seed: u8| -> Vec<u8> {
        (0..len)
            .map(|k| seed.wrapping_add((k / 512) as u8) ^ (k as u8))
            .collect()
    };
    std::fs::write(dir.join("a.bin"), fill(4 << 20, 1)).unwrap();
    std::fs::write(dir.join("b.bin"), fill(6 << 20, 2)).unwrap();
    std::fs::write(dir.join("c.bin"), fill(2 << 20, 3)).unwrap();
    let text = "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentFlat\"\n\n# Extent description\nRW 8192 FLAT \"a.bin\" 0\nRW 8192 FLAT \"b.bin\" 4096\nRW 4096 FLAT \"c.bin\" 0\n\nddb.adapterType = \"ide\"\n";
    std::fs::write(dir.join("multi.vmdk"), text).unwrap();
    let expected = convert_raw(&dir.join("multi.vmdk"));
    assert_eq!(expected.len(), 10 << 20);
    assert_eq!(
        first_difference(&read_through_crate(&dir, "multi.vmdk"), &expected),
        None
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Makes a chain of `depth` disks (base, then deltas made by `qemu-img create -b`), writing
/// patterns into each top in turn. Returns the top's name.
fn qemu_chain(dir: &std::path::Path, depth: usize) -> String {
    let mut prev = String::from("base.vmdk");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        dir.join(&prev).to_str().unwrap(),
        "64M",
    ]);
    for (pat, off, len) in patterns(1000, 8, CAPACITY) {
        qemu_io_write(&dir.join(&prev), pat, off, len);
    }
    for level in 1..depth {
        let name = format!("delta{level}.vmdk");
        let child = dir.join(&name);
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-b",
            &prev,
            "-F",
            "vmdk",
            child.to_str().unwrap(),
        ]);
        for (pat, off, len) in patterns(1000 + level as u64, 8, CAPACITY) {
            qemu_io_write(&child, pat, off, len);
        }
        prev = name;
    }
    prev
}

#[test]
fn qemu_delta_chain_of_depth_4_reads_back_identically() {
    let dir = scratch_dir("chain");
    let top = qemu_chain(&dir, 4);
    let expected = convert_raw(&dir.join(&top));
    with_disk(
        &dir,
        &top,
        OpenOptions {
            read_only: true,
            ..Default::default()
        },
        |disk, memory, _| {
            assert_eq!(disk.depth(), 4);
            assert_eq!(disk.layer(0).unwrap().name.as_str(), "base.vmdk");
            for i in 1..4 {
                assert_eq!(
                    disk.layer(i).unwrap().parent_cid,
                    disk.layer(i - 1).unwrap().cid
                );
            }
            assert_eq!(first_difference(&read_all(disk, memory), &expected), None);
            assert!(disk.check(memory, Instant(0)).unwrap().is_clean());
            assert_eq!(
                map_depths(disk),
                qemu_map_depths(&dir.join(&top), disk.unit_sectors() * 512)
            );
        },
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The depth (0 = top) serving each grain, from the crate's allocation map.
fn map_depths(disk: &VirtualDisk<'_, FileDisk<4>>) -> Vec<Option<usize>> {
    let grain = disk.unit_sectors() * 512;
    let depth = disk.depth();
    let mut out = vec![None; (CAPACITY / grain) as usize];
    for (sector, sectors, layer) in disk.runs(0) {
        for g in sector * 512 / grain..(sector + sectors) * 512 / grain {
            out[g as usize] = layer.map(|l| depth - 1 - l);
        }
    }
    out
}

/// The depth serving each grain according to `qemu-img map --output=json`.
fn qemu_map_depths(path: &std::path::Path, grain: u64) -> Vec<Option<usize>> {
    let json = qemu_img(&["map", "--output=json", path.to_str().unwrap()]);
    let mut out = vec![None; (CAPACITY / grain) as usize];
    for line in json.lines().filter(|l| l.contains("\"start\"")) {
        let field = |name: &str| -> String {
            let at = line.find(&format!("\"{name}\": ")).unwrap() + name.len() + 4;
            line[at..]
                .split([',', '}'])
                .next()
                .unwrap()
                .trim()
                .to_string()
        };
        let start: u64 = field("start").parse().unwrap();
        let length: u64 = field("length").parse().unwrap();
        let present = field("present") == "true";
        let depth: usize = field("depth").parse().unwrap();
        for g in start / grain..(start + length).div_ceil(grain) {
            out[g as usize] = present.then_some(depth);
        }
    }
    out
}

#[test]
fn qemu_delta_chain_of_depth_32_reads_back_identically() {
    let dir = scratch_dir("chain32");
    let mut prev = String::from("base.vmdk");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        dir.join(&prev).to_str().unwrap(),
        "64M",
    ]);
    for level in 0..32u64 {
        if level > 0 {
            let name = format!("d{level}.vmdk");
            let child = dir.join(&name);
            qemu_img(&[
                "create",
                "-q",
                "-f",
                "vmdk",
                "-b",
                &prev,
                "-F",
                "vmdk",
                child.to_str().unwrap(),
            ]);
            prev = name;
        }
        // One write per layer.
        let (pat, off, len) = patterns(3000 + level, 1, CAPACITY)[0];
        qemu_io_write(&dir.join(&prev), pat, off, len);
    }
    let expected = convert_raw(&dir.join(&prev));
    with_disk(
        &dir,
        &prev,
        OpenOptions {
            read_only: true,
            ..Default::default()
        },
        |disk, memory, _| {
            assert_eq!(disk.depth(), 32);
            assert_eq!(first_difference(&read_all(disk, memory), &expected), None);
            assert_eq!(
                map_depths(disk),
                qemu_map_depths(&dir.join(&prev), disk.unit_sectors() * 512)
            );
        },
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn parent_cid_mismatch_is_refused() {
    let dir = scratch_dir("cid");
    let top = qemu_chain(&dir, 2);
    // Change the parent's CID in place (same length), as if it had been written since.
    let base = dir.join("base.vmdk");
    let mut bytes = std::fs::read(&base).unwrap();
    // (QEMU writes the CID without leading zeros: change its first digit, keep its length.)
    let at = bytes.windows(4).position(|w| w == b"CID=").unwrap() + 4;
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&base, bytes).unwrap();
    let mut map = vec![0u8; 1 << 16];
    let e = with_memory(|memory| {
        let mut source = DirSource::<4>::new(&dir);
        let mut text = vec![0u8; 16 << 10];
        VirtualDisk::<_>::open(
            &mut source,
            &top,
            &mut text,
            meta(),
            &mut map,
            memory,
            Instant(0),
            OpenOptions::default(),
        )
        .err()
        .unwrap()
    });
    assert_eq!(
        e.kind(),
        ErrorKind::CidMismatch,
        "{e:?} {:?}",
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn snapshots_we_create_pass_qemu_check_and_consolidate() {
    let dir = scratch_dir("snapshots");
    let top = qemu_chain(&dir, 2);
    let mut expected = convert_raw(&dir.join(&top));
    let options = OpenOptions {
        read_only: false,
        parents_writable: true,
    };
    with_disk(&dir, &top, options, |disk, memory, source| {
        for level in 0..2u64 {
            let name = format!("ours{level}.vmdk");
            disk.create_snapshot(
                source,
                &name,
                DeltaFormat::HostedSparse,
                &mut vec![0u8; 32 << 10],
                memory,
                Instant(level),
            )
            .unwrap();
            for (pat, off, len) in patterns(2000 + level, 12, CAPACITY) {
                let data: Vec<u8> = (0..len).map(|k| pat.wrapping_add(k as u8)).collect();
                write_at(disk, memory, off, &data);
                expected[off as usize..(off + len) as usize].copy_from_slice(&data);
            }
        }
        // Zero a range covering whole grains (zeroed-grain entries) and partial ones.
        for (at, len) in [(3 * 65536 + 4096, 5 * 65536), (40 << 20, 4096)] {
            use block::{BlockCount, BlockRequest, Lba, Tag, run_to_completion};
            let req =
                BlockRequest::write_zeroes(Tag(at), Lba(at / 512), BlockCount((len / 512) as u32));
            let d = run_to_completion(disk, memory, Instant(5), req, 100, &mut |_| {}).unwrap();
            d.completion.result.unwrap();
            expected[at as usize..(at + len) as usize].fill(0);
        }
        assert_eq!(disk.depth(), 4);
        assert_eq!(first_difference(&read_all(disk, memory), &expected), None);
        disk.close(source, &mut vec![0u8; 32 << 10], memory, Instant(9))
            .unwrap();
    });
    let raw = dir.join("expected.raw");
    std::fs::write(&raw, &expected).unwrap();
    for f in ["ours0.vmdk", "ours1.vmdk"] {
        qemu_img(&["check", "-f", "vmdk", dir.join(f).to_str().unwrap()]);
    }
    let top_path = dir.join("ours1.vmdk");
    qemu_img(&[
        "compare",
        "-f",
        "vmdk",
        "-F",
        "raw",
        top_path.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    // Consolidate our top delta into its parent, then the parent alone holds the same data.
    with_disk(&dir, "ours1.vmdk", options, |disk, memory, source| {
        disk.consolidate(memory, Instant(10)).unwrap();
        assert_eq!(disk.depth(), 3);
        assert_eq!(first_difference(&read_all(disk, memory), &expected), None);
        disk.close(source, &mut vec![0u8; 32 << 10], memory, Instant(11))
            .unwrap();
    });
    let parent = dir.join("ours0.vmdk");
    qemu_img(&["check", "-f", "vmdk", parent.to_str().unwrap()]);
    // The consolidated parent got a new CID: the old delta no longer opens on it.
    let mut map = vec![0u8; 1 << 16];
    let stale = with_memory(|memory| {
        let mut source = DirSource::<4>::new(&dir);
        let mut text = vec![0u8; 16 << 10];
        VirtualDisk::<_>::open(
            &mut source,
            "ours1.vmdk",
            &mut text,
            meta(),
            &mut map,
            memory,
            Instant(0),
            OpenOptions::default(),
        )
        .err()
        .map(|e| e.kind())
    });
    assert_eq!(stale, Some(ErrorKind::CidMismatch));
    qemu_img(&[
        "compare",
        "-f",
        "vmdk",
        "-F",
        "raw",
        parent.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn vmfs_sparse_deltas_we_write_read_back_through_qemu() {
    let dir = scratch_dir("cowd");
    let base = dir.join("base.vmdk");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-o",
        "subformat=monolithicFlat",
        base.to_str().unwrap(),
        "64M",
    ]);
    for (pat, off, len) in patterns(4242, 10, CAPACITY) {
        qemu_io_write(&base, pat, off, len);
    }
    let mut expected = convert_raw(&base);
    with_disk(
        &dir,
        "base.vmdk",
        OpenOptions::default(),
        |disk, memory, source| {
            disk.create_snapshot(
                source,
                "snap.vmdk",
                DeltaFormat::VmfsSparse,
                &mut vec![0u8; 32 << 10],
                memory,
                Instant(1),
            )
            .unwrap();
            for (pat, off, len) in patterns(4343, 20, CAPACITY) {
                let data: Vec<u8> = (0..len).map(|k| pat ^ (k >> 3) as u8).collect();
                write_at(disk, memory, off, &data);
                expected[off as usize..(off + len) as usize].copy_from_slice(&data);
            }
            disk.close(source, &mut vec![0u8; 32 << 10], memory, Instant(2))
                .unwrap();
        },
    );
    assert!(dir.join("snap-delta.vmdk").exists());
    // QEMU reads the ESX delta and its parent; so does the crate, reopened from the descriptor.
    let theirs = convert_raw(&dir.join("snap.vmdk"));
    assert_eq!(
        first_difference(&theirs, &expected),
        None,
        "qemu's reading of our COWD delta"
    );
    let ours = read_through_crate(&dir, "snap.vmdk");
    assert_eq!(
        first_difference(&ours, &expected),
        None,
        "our reading after reopening"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn writes_into_a_qemu_made_delta_pass_qemu_check_and_compare() {
    let dir = scratch_dir("write-qemu-delta");
    let top = qemu_chain(&dir, 3);
    let mut expected = convert_raw(&dir.join(&top));
    with_disk(
        &dir,
        &top,
        OpenOptions::default(),
        |disk, memory, source| {
            for (pat, off, len) in patterns(777, 24, CAPACITY) {
                let data: Vec<u8> = (0..len).map(|k| pat.wrapping_mul(k as u8 | 1)).collect();
                write_at(disk, memory, off, &data);
                expected[off as usize..(off + len) as usize].copy_from_slice(&data);
            }
            disk.close(source, &mut vec![0u8; 32 << 10], memory, Instant(1))
                .unwrap();
        },
    );
    let path = dir.join(&top);
    qemu_img(&["check", "-f", "vmdk", path.to_str().unwrap()]);
    let raw = dir.join("expected.raw");
    std::fs::write(&raw, &expected).unwrap();
    qemu_img(&[
        "compare",
        "-f",
        "vmdk",
        "-F",
        "raw",
        path.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Reads `len` bytes at byte `offset` of the disk through the crate.
fn read_range(
    disk: &mut VirtualDisk<'_, FileDisk<4>>,
    memory: &mut MemoryRegions<'_, 2>,
    offset: u64,
    len: u64,
) -> Vec<u8> {
    use block::{BlockCount, BlockRequest, Lba, Memory, SgList, Tag, run_to_completion};
    let sg = SgList::single(DATA_ADDR, len as u32).unwrap();
    let req = BlockRequest::read(
        Tag(offset),
        Lba(offset / 512),
        BlockCount((len / 512) as u32),
        sg,
    );
    let d = run_to_completion(disk, memory, Instant(0), req, 1000, &mut |_| {}).unwrap();
    d.completion.result.unwrap();
    let mut out = vec![0u8; len as usize];
    memory.read(DATA_ADDR, &mut out).unwrap();
    out
}

#[test]
fn two_gb_split_disks_of_3_gib_read_back_identically_across_extents() {
    use std::os::unix::fs::FileExt;
    let dir = scratch_dir("split-3g");
    let size = 3u64 << 30;
    for sub in ["twoGbMaxExtentSparse", "twoGbMaxExtentFlat"] {
        let name = format!("{sub}.vmdk");
        let path = dir.join(&name);
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            &format!("subformat={sub}"),
            path.to_str().unwrap(),
            "3G",
        ]);
        // Writes around the 2 GiB extent boundary and at random places.
        let mut writes = vec![
            (0x5au8, (2u64 << 30) - 96 * 1024, 200 * 1024),
            (0x6b, 0, 4096),
            (0x7c, size - 8192, 8192),
        ];
        writes.extend(patterns(909, 10, size));
        for &(pat, off, len) in &writes {
            qemu_io_write(&path, pat, off, len);
        }
        let raw = dir.join("split.raw");
        qemu_img(&[
            "convert",
            "-O",
            "raw",
            path.to_str().unwrap(),
            raw.to_str().unwrap(),
        ]);
        let raw = std::fs::File::open(&raw).unwrap();
        with_disk(
            &dir,
            &name,
            OpenOptions {
                read_only: true,
                ..Default::default()
            },
            |disk, memory, _| {
                assert_eq!(disk.layer(0).unwrap().extents, 2);
                let extents: Vec<_> = disk
                    .extents(0)
                    .map(|e| (e.start, e.sectors, e.file.to_string()))
                    .collect();
                let stem = sub.to_string();
                let suffix = if sub.ends_with("Sparse") { "s" } else { "f" };
                assert_eq!(
                    extents,
                    vec![
                        (0, 4 << 20, format!("{stem}-{suffix}001.vmdk")),
                        (4 << 20, 2 << 20, format!("{stem}-{suffix}002.vmdk")),
                    ]
                );
                assert_eq!(disk.capacity(), size / 512);
                let mut probes: Vec<(u64, u64)> = writes
                    .iter()
                    .map(|&(_, off, len)| (off / 512 * 512, (len + 1023) / 512 * 512))
                    .collect();
                probes.extend([(1 << 30, 65536), ((2 << 30) + (1 << 20), 65536)]);
                for (off, len) in probes {
                    let len = len.min(size - off).min(DATA_LEN as u64);
                    let mut want = vec![0u8; len as usize];
                    raw.read_exact_at(&mut want, off).unwrap();
                    let got = read_range(disk, memory, off, len);
                    assert_eq!(
                        first_difference(&got, &want),
                        None,
                        "{sub}: {len} bytes at {off}"
                    );
                }
            },
        );
        let _ = std::fs::remove_file(dir.join("split.raw"));
    }
    std::fs::remove_dir_all(dir).unwrap();
}
