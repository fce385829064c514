//! Bodies of the fuzz targets, shared with the proptests in `tests/robustness.rs`. Nothing
//! may panic, whatever the bytes.
#![allow(dead_code, missing_docs, unreachable_pub)]

use block::{
    BlockCount, BlockDevice, BlockRequest, Instant, Lba, MemAddr, MemoryRegions, SgList, Tag,
    run_to_completion,
};
use vmdk::{
    DeltaFormat, Descriptor, MemSource, MetaRegion, OpenOptions, SparseHeader, VirtualDisk,
    format_sparse,
};

const DATA: MemAddr = MemAddr(0x1000_0000);
const META: MemAddr = MemAddr(0x8000_0000);
const META_LEN: usize = 2 << 20;
const SECTORS: u64 = 4096;

/// Parses `data` as a descriptor, emits it, edits it, parses the output.
pub fn descriptor(data: &[u8]) {
    if let Ok(mut d) = Descriptor::<64>::parse(data) {
        let _ = (
            d.cid(),
            d.parent_cid(),
            d.create_type(),
            d.geometry(),
            d.capacity_sectors(),
        );
        let _ = d.extents().count();
        let mut out = vec![0u8; data.len() + 512];
        if let Ok(n) = d.emit(&mut out) {
            assert_eq!(
                &out[..n],
                d.text(),
                "an unedited descriptor emits its own text"
            );
        }
        if d.set("CID", "12345678").is_ok()
            && let Ok(n) = d.emit(&mut out)
        {
            let _ = Descriptor::<64>::parse(&out[..n]).map(|d| d.cid());
        }
    }
}

/// A three-deep chain on in-memory files: a monolithicSparse base, a vmfsSparse (`COWD`)
/// delta and a hosted sparse delta, each with data in some grains.
pub fn chain() -> MemSource {
    let mut files = MemSource::new();
    let header = SparseHeader::new_layout(SECTORS, 128, 20).unwrap();
    files.insert(
        "base.vmdk",
        vec![0u8; ((header.overhead + SECTORS) * 512) as usize],
    );
    let text = format!(
        "# Disk DescriptorFile\nversion=1\nCID=0000abcd\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\n\n# Extent description\nRW {SECTORS} SPARSE \"base.vmdk\"\n"
    );
    let mut data = vec![0u8; 1 << 20];
    let mut meta = vec![0u8; META_LEN];
    let mut memory = MemoryRegions::<2>::new();
    memory.add(DATA, &mut data).unwrap();
    memory.add(META, &mut meta).unwrap();
    let mut dev = vmdk::MemDisk::new(files.file("base.vmdk").unwrap(), true);
    format_sparse(
        &mut dev,
        &mut memory,
        Instant(0),
        META,
        &header,
        text.as_bytes(),
    )
    .unwrap();
    let mut map = vec![0u8; 64];
    let mut work = vec![0u8; 32 << 10];
    let region = MetaRegion {
        addr: META,
        len: META_LEN as u64,
    };
    let mut disk = VirtualDisk::<_, 2, 4, 4>::open(
        &mut files,
        "base.vmdk",
        &mut work,
        region,
        &mut map,
        &mut memory,
        Instant(0),
        OpenOptions::default(),
    )
    .unwrap();
    write(&mut disk, &mut memory, 0, 256);
    disk.create_snapshot(
        &mut files,
        "s1.vmdk",
        DeltaFormat::VmfsSparse,
        &mut work,
        &mut memory,
        Instant(1),
    )
    .unwrap();
    write(&mut disk, &mut memory, 1000, 300);
    disk.create_snapshot(
        &mut files,
        "s2.vmdk",
        DeltaFormat::HostedSparse,
        &mut work,
        &mut memory,
        Instant(2),
    )
    .unwrap();
    write(&mut disk, &mut memory, 2500, 200);
    disk.close(&mut files, &mut work, &mut memory, Instant(3))
        .unwrap();
    files
}

fn write(disk: &mut impl BlockDevice, memory: &mut MemoryRegions<'_, 2>, at: u64, sectors: u32) {
    let sg = SgList::single(DATA, sectors * 512).unwrap();
    let req = BlockRequest::write(Tag(at), Lba(at), BlockCount(sectors), sg);
    let _ = run_to_completion(disk, memory, Instant(0), req, 64, &mut |_| {});
}

/// Lays `data` over the chain's files (each chunk: file index, 3-byte offset, length, bytes),
/// then opens the top, reads and writes every part of it, checks and consolidates it.
pub fn corrupted_chain(files: &MemSource, data: &[u8]) {
    let mut files = files.clone_deep();
    let names: Vec<String> = files.names().map(String::from).collect();
    let mut rest = data;
    for _ in 0..16 {
        if rest.len() < 5 {
            break;
        }
        let (head, tail) = rest.split_at(5);
        let name = &names[head[0] as usize % names.len()];
        let offset = u32::from_le_bytes([head[1], head[2], head[3], 0]) as usize;
        let len = (head[4] as usize).min(tail.len());
        let file = files.file(name).unwrap();
        let mut file = file.borrow_mut();
        if !file.is_empty() {
            for (i, &b) in tail[..len].iter().enumerate() {
                let at = (offset + i) % file.len();
                file[at] = b;
            }
        }
        rest = &tail[len..];
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut meta = vec![0u8; META_LEN];
    let mut memory = MemoryRegions::<2>::new();
    memory.add(DATA, &mut buf).unwrap();
    memory.add(META, &mut meta).unwrap();
    let mut map = vec![0u8; 64];
    let mut work = vec![0u8; 32 << 10];
    let region = MetaRegion {
        addr: META,
        len: META_LEN as u64,
    };
    let options = OpenOptions {
        read_only: false,
        parents_writable: true,
    };
    let Ok(mut disk) = VirtualDisk::<_, 2, 4, 4>::open(
        &mut files,
        "s2.vmdk",
        &mut work,
        region,
        &mut map,
        &mut memory,
        Instant(0),
        options,
    ) else {
        return;
    };
    let capacity = disk.geometry().block_count.min(SECTORS);
    let mut at = 0;
    while at < capacity {
        let n = (capacity - at).min(512);
        let sg = SgList::single(DATA, (n * 512) as u32).unwrap();
        let req = if at % 1024 == 0 {
            BlockRequest::write(Tag(at), Lba(at), BlockCount(n as u32), sg)
        } else {
            BlockRequest::read(Tag(at), Lba(at), BlockCount(n as u32), sg)
        };
        let _ = run_to_completion(&mut disk, &mut memory, Instant(0), req, 64, &mut |_| {});
        at += n;
    }
    let _ = disk.check(&mut memory, Instant(0));
    let _ = disk.runs(0).count();
    let _ = disk.consolidate(&mut memory, Instant(0));
    let _ = disk.close(&mut files, &mut work, &mut memory, Instant(0));
}
