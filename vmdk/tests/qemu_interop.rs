//! Interoperability with QEMU's VMDK driver, the oracle: disks qemu-img makes and qemu-io writes
//! read back identically through this crate, and disks this crate writes pass `qemu-img check`
//! and `qemu-img compare`.

mod common;

use block::{FileDisk, Instant, MemAddr, MemoryRegions};
use common::*;
use vmdk::descriptor::NO_PARENT_CID;
use vmdk::{
    Access, CreateType, ExtentSpec, ExtentType, MetaRegion, NewDescriptor, SparseExtent,
    SparseHeader, format_sparse, write_descriptor,
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
    let _ = MemAddr(0);
    std::fs::remove_dir_all(dir).unwrap();
}
