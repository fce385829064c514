//! `Vmfs::map_extents` on the real ESXi-made fixtures: for every file of `vmfs5` and `vmfs6`,
//! the bytes its extents point at (data read from the volume at the given offsets, zeros for
//! zero runs) are exactly the bytes the ordinary read path returns.

mod common;

use block::{BlockCount, BlockDevice, BlockRequest, Instant, Lba, Memory, SgList, Tag};
use common::*;
use fss::{FileHandle, FileKind, FileSystem, FsErrorKind, NodeId};
use vmfs::{ExtentKind, FileExtent, Vmfs};

const NOW: Instant = Instant::ZERO;
const GIB: u64 = 1 << 30;
/// Files up to this size are read whole through the read path and compared byte for byte.
const WHOLE: u64 = 300 << 20;

/// Every node under the root (system directory included), with its path; `.` and `..` skipped.
fn walk(fs: &mut Vmfs<Disk>, mem: &mut dyn Memory) -> Vec<(String, NodeId)> {
    let mut out = Vec::new();
    let mut dirs = vec![(String::new(), fs.root())];
    while let Some((path, dir)) = dirs.pop() {
        let mut entries = Vec::new();
        fs.readdir(NOW, mem, dir, &mut |e| {
            entries.push((String::from_utf8_lossy(e.name).into_owned(), e.node));
            true
        })
        .unwrap();
        for (name, node) in entries {
            if name == "." || name == ".." {
                continue;
            }
            let full = format!("{path}/{name}");
            if fs.stat(NOW, mem, node).unwrap().kind.is_dir() {
                dirs.push((full.clone(), node));
            }
            out.push((full, node));
        }
    }
    out
}

/// The whole map of `handle`, `batch` extents per call, merged across calls.
fn map_all(
    fs: &mut Vmfs<Disk>,
    mem: &mut dyn Memory,
    handle: FileHandle,
    size: u64,
    batch: usize,
) -> Vec<FileExtent> {
    let mut extents: Vec<FileExtent> = Vec::new();
    let mut at = 0;
    let mut buf = vec![FileExtent::EMPTY; batch];
    for _ in 0..1_000_000 {
        let n = fs.map_extents(NOW, mem, handle, at, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        for e in &buf[..n] {
            assert_eq!(e.file_offset, at, "runs leave a gap or overlap");
            assert!(e.len > 0);
            at = e.end();
            match extents.last_mut() {
                Some(last) if last.kind == ExtentKind::Zero && e.kind == ExtentKind::Zero => {
                    last.len += e.len
                }
                Some(last)
                    if matches!(
                        (last.kind, e.kind),
                        (ExtentKind::Data { .. }, ExtentKind::Data { .. })
                    ) && last.volume_offset().unwrap() + last.len
                        == e.volume_offset().unwrap() =>
                {
                    last.len += e.len
                }
                _ => extents.push(*e),
            }
        }
    }
    assert_eq!(at, size, "the runs end at the file size");
    // Runs within one call are maximal: neighbours never continue each other.
    let mut buf = vec![FileExtent::EMPTY; 4096];
    let n = fs.map_extents(NOW, mem, handle, 0, &mut buf).unwrap();
    for pair in buf[..n].windows(2) {
        let contiguous = match (pair[0].kind, pair[1].kind) {
            (ExtentKind::Zero, ExtentKind::Zero) => true,
            (ExtentKind::Data { volume_offset: a }, ExtentKind::Data { volume_offset: b }) => {
                a + pair[0].len == b
            }
            _ => false,
        };
        assert!(
            !contiguous,
            "{:?} and {:?} were not merged",
            pair[0], pair[1]
        );
    }
    extents
}

/// `len` bytes of the volume at `offset` (block aligned), read through its device.
fn read_volume(fs: &mut Vmfs<Disk>, mem: &mut dyn Memory, offset: u64, len: u64) -> Vec<u8> {
    let bb = fs.device().geometry().block_size as u64;
    assert_eq!(offset % bb, 0, "data runs start on a device block");
    let total = len.div_ceil(bb) * bb;
    let mut out = Vec::with_capacity(total as usize);
    let mut done = 0;
    while done < total {
        let n = (total - done).min(DATA_LEN as u64);
        let sg = SgList::single(DATA_ADDR, n as u32).unwrap();
        let request = BlockRequest::read(
            Tag(7),
            Lba((offset + done) / bb),
            BlockCount((n / bb) as u32),
            sg,
        );
        let driven =
            block::run_to_completion(fs.device_mut(), mem, NOW, request, 1000, &mut |_| {})
                .unwrap();
        driven.completion.result.unwrap();
        let mut buf = vec![0u8; n as usize];
        mem.read(DATA_ADDR, &mut buf).unwrap();
        out.extend_from_slice(&buf);
        done += n;
    }
    out.truncate(len as usize);
    out
}

/// The bytes of `extent` as the map says they are.
fn extent_bytes(fs: &mut Vmfs<Disk>, mem: &mut dyn Memory, extent: &FileExtent) -> Vec<u8> {
    match extent.kind {
        ExtentKind::Zero => vec![0u8; extent.len as usize],
        ExtentKind::Data { volume_offset } | ExtentKind::Resident { volume_offset } => {
            read_volume(fs, mem, volume_offset, extent.len)
        }
    }
}

fn check_volume(label: &str) {
    let mut buffers = Buffers::new();
    let mut memory = buffers.memory();
    let mem: &mut dyn Memory = &mut memory;
    let mut fs = mount(&format!("vmfs/{label}"), mem);
    let block = fs.info().file_block_size;
    let mut mapped = 0;
    for (path, node) in walk(&mut fs, mem) {
        let stat = fs.stat(NOW, mem, node).unwrap();
        if stat.kind == FileKind::RawDeviceMap {
            // No data to map: opening it is refused, as for reads.
            let e = fs.open(NOW, mem, node).unwrap_err();
            assert_eq!(e.kind(), FsErrorKind::Unsupported, "{label}{path}");
            continue;
        }
        let handle = fs.open(NOW, mem, node).unwrap();
        let size = stat.size;
        let extents = map_all(&mut fs, mem, handle, size, 3);
        if size <= WHOLE {
            let mut bytes = Vec::with_capacity(size as usize);
            for e in &extents {
                bytes.extend(extent_bytes(&mut fs, mem, e));
            }
            fs.close(handle).unwrap();
            let want = read_node(&mut fs, mem, node);
            assert!(bytes == want, "{label}{path}: mapped bytes differ");
        } else {
            // Too large to read whole: every data run is compared in full, every zero run at
            // both ends and in the middle.
            for e in &extents {
                match e.kind {
                    ExtentKind::Zero => {
                        let n = e.len.min(1 << 20);
                        for at in [e.file_offset, e.file_offset + e.len / 2, e.end() - n] {
                            let got = read_range(&mut fs, mem, handle, at, n, 1 << 20);
                            assert!(got.iter().all(|&b| b == 0), "{label}{path} at {at:#x}");
                        }
                    }
                    _ => {
                        let want = read_range(&mut fs, mem, handle, e.file_offset, e.len, 1 << 20);
                        assert!(
                            extent_bytes(&mut fs, mem, e) == want,
                            "{label}{path}: run {e:?} differs"
                        );
                    }
                }
            }
            fs.close(handle).unwrap();
        }
        mapped += 1;

        // What the fixtures README says about the files.
        let kinds: Vec<_> = extents
            .iter()
            .map(|e| match e.kind {
                ExtentKind::Data { .. } => 'd',
                ExtentKind::Zero => 'z',
                ExtentKind::Resident { .. } => 'r',
            })
            .collect::<Vec<char>>();
        let data_bytes: u64 = extents
            .iter()
            .filter(|e| matches!(e.kind, ExtentKind::Data { .. }))
            .map(|e| e.len)
            .sum();
        match path.as_str() {
            "/small" => assert_eq!(
                (kinds.as_slice(), extents[0].len),
                (&['r'][..], 5),
                "{label}"
            ),
            "/big" | "/bigger" => {
                assert!(
                    kinds.iter().all(|&k| k == 'd'),
                    "{label}{path}: {extents:?}"
                );
                assert_eq!(data_bytes, size);
            }
            "/normal-flat.vmdk" | "/large-flat.vmdk" => {
                let at = if path == "/normal-flat.vmdk" {
                    42 * GIB
                } else {
                    117 * GIB
                };
                assert_eq!(kinds, ['z', 'd', 'z'], "{label}{path}: {extents:?}");
                let data = extents[1];
                assert!(
                    data.file_offset <= at && at + 512 <= data.end(),
                    "{label}{path}"
                );
                assert_eq!(data.file_offset % block, 0, "{label}{path}");
                assert!(data.len <= 512 << 20, "{label}{path}: {data:?}");
                println!("{label}{path}: {extents:?}");
            }
            _ => {}
        }
        if path.starts_with("/directory/file") {
            assert_eq!(kinds, ['r'], "{label}{path}");
        }
    }
    assert!(mapped > 130, "{label}: only {mapped} files mapped");
}

#[test]
fn vmfs5_extents_reproduce_every_file() {
    check_volume("vmfs5");
}

#[test]
fn vmfs6_extents_reproduce_every_file() {
    check_volume("vmfs6");
}

/// The map obeys its arguments: a bad handle is refused, an offset past the end maps to
/// nothing, a map from the middle of a run starts there, and a one-slot array takes one run.
#[test]
fn map_extents_arguments() {
    let mut buffers = Buffers::new();
    let mut memory = buffers.memory();
    let mem: &mut dyn Memory = &mut memory;
    let mut fs = mount("vmfs/vmfs5", mem);
    let mut out = [FileExtent::EMPTY; 4];
    let e = fs
        .map_extents(NOW, mem, FileHandle(3), 0, &mut out)
        .unwrap_err();
    assert_eq!(e.kind(), FsErrorKind::BadHandle);
    let node = fs.lookup_path(NOW, mem, "normal-flat.vmdk").unwrap();
    let handle = fs.open(NOW, mem, node).unwrap();
    assert_eq!(
        fs.map_extents(NOW, mem, handle, 69 * GIB, &mut out)
            .unwrap(),
        0
    );
    assert_eq!(fs.map_extents(NOW, mem, handle, 0, &mut []).unwrap(), 0);
    let n = fs.map_extents(NOW, mem, handle, 12345, &mut out).unwrap();
    assert_eq!(n, 3);
    assert_eq!(out[0].file_offset, 12345);
    assert_eq!(out[0].kind, ExtentKind::Zero);
    assert_eq!(out[2].end(), 69 * GIB);
    let data = out[1];
    let mut one = [FileExtent::EMPTY; 1];
    let inside = data.file_offset + 4096;
    assert_eq!(
        fs.map_extents(NOW, mem, handle, inside, &mut one).unwrap(),
        1
    );
    assert_eq!(one[0].file_offset, inside);
    assert_eq!(one[0].end(), data.end());
    assert_eq!(
        one[0].kind,
        ExtentKind::Data {
            volume_offset: data.volume_offset().unwrap() + 4096
        }
    );
    fs.close(handle).unwrap();
    // From offsets that are not block aligned, inside data and resident runs: the runs start
    // there and point at the bytes a read returns.
    for (path, offset) in [("bigger", 12_345u64), ("big", (1 << 20) - 7), ("small", 3)] {
        let node = fs.lookup_path(NOW, mem, path).unwrap();
        let size = fs.stat(NOW, mem, node).unwrap().size;
        let handle = fs.open(NOW, mem, node).unwrap();
        let n = fs.map_extents(NOW, mem, handle, offset, &mut out).unwrap();
        assert_eq!(out[0].file_offset, offset, "{path}");
        assert_eq!(out[n - 1].end(), size, "{path}");
        let want = read_range(&mut fs, mem, handle, offset, size - offset, 1 << 20);
        let mut got = Vec::new();
        for e in &out[..n] {
            let at = e.volume_offset().unwrap();
            let lead = at % 512;
            got.extend_from_slice(
                &read_volume(&mut fs, mem, at - lead, lead + e.len)[lead as usize..],
            );
        }
        assert!(got == want, "{path} from {offset}");
        fs.close(handle).unwrap();
    }
}
