//! `host vmdk info|cat|map|check` against QEMU, the oracle: disks made by `qemu-img create`
//! (monolithicSparse, twoGbMaxExtentFlat, streamOptimized through `qemu-img convert`, and a
//! delta chain of depth 3 made with `-b`), written with `qemu-io`, then `cat` must equal
//! `qemu-img convert -O raw` byte for byte, `map --json` must agree with
//! `qemu-img map --output=json` on the allocated ranges and their depths, `info --json` with
//! `qemu-img info --backing-chain` on createType, capacity and CIDs, and `check` must pass
//! (and fail once a grain table is corrupted).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const CAPACITY: u64 = 64 << 20;

fn tool(name: &str) -> &str {
    let found = Command::new(name).arg("--version").output().is_ok();
    assert!(
        found,
        "`{name}` not found: install it with `apt-get install qemu-utils` (the QEMU disk image \
         tools are the oracle of these tests)"
    );
    name
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn qemu_img(args: &[&str]) -> Vec<u8> {
    run(Command::new(tool("qemu-img")).args(args))
}

fn qemu_io_write(path: &Path, pattern: u8, offset: u64, len: u64) {
    run(Command::new(tool("qemu-io")).args([
        "-f",
        "vmdk",
        "-c",
        &format!("write -P 0x{pattern:02x} {offset} {len}"),
        path.to_str().unwrap(),
    ]));
}

fn host_output(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .output()
        .unwrap()
}

fn host(args: &[&str]) -> Vec<u8> {
    let out = host_output(args);
    assert!(
        out.status.success(),
        "host {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn host_json(args: &[&str]) -> Value {
    serde_json::from_slice(&host(args)).unwrap()
}

/// A fresh temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("host-vmdk-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Deterministic writes `(pattern, offset, len)`, 512-aligned, inside the disk; some straddle
/// grain boundaries, some are sub-grain.
fn patterns(seed: u64, count: usize) -> Vec<(u8, u64, u64)> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..count)
        .map(|_| {
            let len = (next() % 256 + 1) * 512;
            let off = next() % ((CAPACITY - len) / 512) * 512;
            (next() as u8 | 1, off, len)
        })
        .collect()
}

fn write_patterns(path: &Path, seed: u64, count: usize) {
    for (pat, off, len) in patterns(seed, count) {
        qemu_io_write(path, pat, off, len);
    }
}

fn convert_raw(path: &Path) -> Vec<u8> {
    let raw = path.with_extension("raw");
    qemu_img(&["convert", "-O", "raw", s(path), s(&raw)]);
    let bytes = std::fs::read(&raw).unwrap();
    std::fs::remove_file(raw).unwrap();
    bytes
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Present ranges `(start, end, depth, data)`, adjacent ones of one depth and kind merged
/// (`data` is false for zeroed grains).
fn merged(ranges: impl Iterator<Item = (u64, u64, u64, bool)>) -> Vec<(u64, u64, u64, bool)> {
    let mut out: Vec<(u64, u64, u64, bool)> = Vec::new();
    for (start, len, depth, data) in ranges {
        match out.last_mut() {
            Some(last) if last.1 == start && last.2 == depth && last.3 == data => {
                last.1 = start + len
            }
            _ => out.push((start, start + len, depth, data)),
        }
    }
    out
}

fn present_ranges(json: &Value) -> Vec<(u64, u64, u64, bool)> {
    merged(
        json.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["present"] == true)
            .map(|r| {
                (
                    r["start"].as_u64().unwrap(),
                    r["length"].as_u64().unwrap(),
                    r["depth"].as_u64().unwrap(),
                    r["data"].as_bool().unwrap(),
                )
            }),
    )
}

/// Everything the tools must agree with QEMU on, for the disk `top` of `depth` layers.
fn compare_with_qemu(top: &Path, create_type: &str, depth: usize) {
    // cat: byte for byte what qemu-img convert gives.
    let expected = convert_raw(top);
    let ours = host(&["vmdk", "cat", s(top)]);
    assert_eq!(ours.len(), expected.len(), "{create_type}: cat length");
    assert_eq!(
        first_difference(&ours, &expected),
        None,
        "{create_type}: cat contents"
    );

    // map: the same present ranges at the same depths.
    let ours = host_json(&["vmdk", "map", "--json", s(top)]);
    let qemu: Value = serde_json::from_slice(&qemu_img(&["map", "--output=json", s(top)])).unwrap();
    let (ours_ranges, qemu_ranges) = (present_ranges(&ours), present_ranges(&qemu));
    assert!(!ours_ranges.is_empty(), "{create_type}: nothing allocated");
    assert_eq!(ours_ranges, qemu_ranges, "{create_type}: map");
    // The ranges cover the disk in order.
    let mut at = 0;
    for r in ours.as_array().unwrap() {
        assert_eq!(r["start"].as_u64().unwrap(), at);
        at += r["length"].as_u64().unwrap();
    }
    assert_eq!(at, CAPACITY);

    // info: createType, capacity and the chain's CIDs as qemu-img reads them.
    let info = host_json(&["vmdk", "info", "--json", s(top)]);
    assert_eq!(info["create_type"], create_type);
    assert_eq!(info["capacity_bytes"], CAPACITY);
    assert_eq!(info["depth"], depth);
    let qemu: Value = serde_json::from_slice(&qemu_img(&[
        "info",
        "--backing-chain",
        "--output=json",
        s(top),
    ]))
    .unwrap();
    let qemu = qemu.as_array().unwrap();
    let chain = info["chain"].as_array().unwrap();
    assert_eq!(chain.len(), depth);
    assert_eq!(qemu.len(), depth);
    for (i, (ours, theirs)) in chain.iter().zip(qemu).enumerate() {
        let data = &theirs["format-specific"]["data"];
        let hex = |v: &Value| format!("{:08x}", v.as_u64().unwrap());
        assert_eq!(ours["depth"], i);
        assert_eq!(ours["create_type"], data["create-type"]);
        assert_eq!(ours["cid"].as_str().unwrap(), hex(&data["cid"]));
        assert_eq!(
            ours["parent_cid"].as_str().unwrap(),
            hex(&data["parent-cid"])
        );
        let name = Path::new(theirs["filename"].as_str().unwrap()).file_name();
        assert_eq!(
            Some(std::ffi::OsStr::new(ours["file"].as_str().unwrap())),
            name
        );
        assert!(!ours["extents"].as_array().unwrap().is_empty());
        if i + 1 < depth {
            assert_eq!(ours["parent_cid"], chain[i + 1]["cid"], "chain links");
        } else {
            assert_eq!(ours["parent_cid"], "ffffffff");
        }
    }

    // check: clean, human and JSON; human info and map run too.
    let report = host_json(&["vmdk", "check", "--json", s(top)]);
    assert_eq!(report["clean"], true, "{report}");
    let text = String::from_utf8(host(&["vmdk", "check", s(top)])).unwrap();
    assert!(text.contains("no errors found"), "{text}");
    let text = String::from_utf8(host(&["vmdk", "info", s(top)])).unwrap();
    assert!(text.contains(create_type), "{text}");
    let text = String::from_utf8(host(&["vmdk", "map", s(top)])).unwrap();
    assert!(text.starts_with("Offset"), "{text}");
}

#[test]
fn monolithic_sparse_agrees_with_qemu() {
    let dir = Scratch::new("sparse");
    let disk = dir.path("disk.vmdk");
    qemu_img(&["create", "-q", "-f", "vmdk", s(&disk), "64M"]);
    write_patterns(&disk, 1, 12);
    compare_with_qemu(&disk, "monolithicSparse", 1);
}

#[test]
fn two_gb_max_extent_flat_agrees_with_qemu() {
    let dir = Scratch::new("flat");
    let disk = dir.path("disk.vmdk");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-o",
        "subformat=twoGbMaxExtentFlat",
        s(&disk),
        "64M",
    ]);
    write_patterns(&disk, 2, 8);
    compare_with_qemu(&disk, "twoGbMaxExtentFlat", 1);
    let info = host_json(&["vmdk", "info", "--json", s(&disk)]);
    let extent = &info["chain"][0]["extents"][0];
    assert_eq!(extent["kind"], "flat");
    assert_eq!(extent["file"], "disk-f001.vmdk");
}

#[test]
fn stream_optimized_agrees_with_qemu() {
    let dir = Scratch::new("stream");
    let src = dir.path("src.vmdk");
    let disk = dir.path("disk.vmdk");
    qemu_img(&["create", "-q", "-f", "vmdk", s(&src), "64M"]);
    write_patterns(&src, 3, 12);
    qemu_img(&[
        "convert",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        s(&src),
        s(&disk),
    ]);
    compare_with_qemu(&disk, "streamOptimized", 1);
    let info = host_json(&["vmdk", "info", "--json", s(&disk)]);
    assert_eq!(info["chain"][0]["extents"][0]["kind"], "streamOptimized");
}

#[test]
fn delta_chain_of_depth_3_agrees_with_qemu() {
    let dir = Scratch::new("chain");
    let base = dir.path("base.vmdk");
    qemu_img(&["create", "-q", "-f", "vmdk", s(&base), "64M"]);
    write_patterns(&base, 10, 10);
    let mut prev = "base.vmdk".to_string();
    for level in 1..3 {
        let name = format!("delta{level}.vmdk");
        let child = dir.path(&name);
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-b",
            &prev,
            "-F",
            "vmdk",
            s(&child),
        ]);
        write_patterns(&child, 10 + level, 10);
        prev = name;
    }
    let top = dir.path(&prev);
    compare_with_qemu(&top, "monolithicSparse", 3);
    let info = host_json(&["vmdk", "info", "--json", s(&top)]);
    let files: Vec<&str> = info["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["delta2.vmdk", "delta1.vmdk", "base.vmdk"]);

    // A relative path from another working directory resolves the chain the same way.
    let out = Command::new(env!("CARGO_BIN_EXE_host"))
        .current_dir(&dir.0)
        .args(["vmdk", "info", "--json", "delta2.vmdk"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let relative: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(relative, info);
}

#[test]
fn zeroed_grains_in_a_chain_agree_with_qemu() {
    // Zeroed-grain entries (qemu's zeroed_grain option, `write -z`) in a delta hide the
    // parent's data: cat reads zeros there, map reports them present without data.
    let dir = Scratch::new("zeroed");
    let base = dir.path("base.vmdk");
    let top = dir.path("top.vmdk");
    qemu_img(&["create", "-q", "-f", "vmdk", s(&base), "64M"]);
    qemu_io_write(&base, 0x11, 0, 1 << 20);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-o",
        "zeroed_grain=on",
        "-b",
        "base.vmdk",
        "-F",
        "vmdk",
        s(&top),
    ]);
    write_patterns(&top, 20, 6);
    for (off, len) in [(256 << 10, 128 << 10), (8 << 20, 64 << 10)] {
        run(Command::new(tool("qemu-io")).args([
            "-f",
            "vmdk",
            "-c",
            &format!("write -z {off} {len}"),
            s(&top),
        ]));
    }
    let map = host_json(&["vmdk", "map", "--json", s(&top)]);
    assert!(
        map.as_array()
            .unwrap()
            .iter()
            .any(|r| r["present"] == true && r["data"] == false && r["depth"] == 0),
        "{map}"
    );
    compare_with_qemu(&top, "monolithicSparse", 2);
}

#[test]
fn a_disk_of_70_extent_files_opens_and_maps_like_qemu() {
    // 140 GiB in 2 GiB flat files (sparse on the host): more extents than the first disk
    // shape holds, so the tool opens it in the wide one.
    let dir = Scratch::new("wide");
    let disk = dir.path("wide.vmdk");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-o",
        "subformat=twoGbMaxExtentFlat",
        s(&disk),
        "140G",
    ]);
    let at = 130u64 << 30;
    qemu_io_write(&disk, 0x77, at - 4096, 8192);
    let info = host_json(&["vmdk", "info", "--json", s(&disk)]);
    assert_eq!(info["capacity_bytes"], 140u64 << 30);
    let extents = info["chain"][0]["extents"].as_array().unwrap();
    assert_eq!(extents.len(), 70);
    assert_eq!(extents[69]["file"], "wide-f070.vmdk");

    let ours = host_json(&["vmdk", "map", "--json", s(&disk)]);
    let qemu: Value =
        serde_json::from_slice(&qemu_img(&["map", "--output=json", s(&disk)])).unwrap();
    assert_eq!(present_ranges(&ours), present_ranges(&qemu));
    // One range per extent file, each naming its file.
    let ranges = ours.as_array().unwrap();
    assert_eq!(ranges.len(), 70);
    assert_eq!(ranges[65]["file"], "wide-f066.vmdk");
    assert_eq!(ranges[65]["start"], 65u64 << 31);

    let report = host_json(&["vmdk", "check", "--json", s(&disk)]);
    assert_eq!(report["clean"], true, "{report}");
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The byte offsets of the first grain table's entry 0 (primary and redundant) of a
/// monolithicSparse file made by qemu-img.
fn first_gte(file: &[u8]) -> (usize, usize) {
    assert_eq!(&file[..4], b"KDMV");
    let rgd = le64(file, 48) as usize * 512;
    let gd = le64(file, 56) as usize * 512;
    (
        le32(file, gd) as usize * 512,
        le32(file, rgd) as usize * 512,
    )
}

#[test]
fn check_fails_on_a_corrupted_grain_table() {
    let dir = Scratch::new("corrupt");
    let disk = dir.path("disk.vmdk");
    qemu_img(&["create", "-q", "-f", "vmdk", s(&disk), "64M"]);
    qemu_io_write(&disk, 0x5a, 0, 128 << 10);
    let clean = std::fs::read(&disk).unwrap();
    assert_eq!(
        host_json(&["vmdk", "check", "--json", s(&disk)])["clean"],
        true
    );
    let (gt, rgt) = first_gte(&clean);
    assert_ne!(le32(&clean, gt), 0, "grain 0 is allocated");
    assert_eq!(le32(&clean, gt), le32(&clean, rgt));

    // The redundant table disagrees with the primary one.
    let mut bad = clean.clone();
    bad[rgt..rgt + 4].copy_from_slice(&(le32(&clean, rgt) + 128).to_le_bytes());
    std::fs::write(&disk, &bad).unwrap();
    let out = host_output(&["vmdk", "check", s(&disk)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ERRORS FOUND"));
    let report = host_json_any(&["vmdk", "check", "--json", s(&disk)]);
    assert_eq!(report["clean"], false);
    assert!(report["report"]["redundant_mismatches"].as_u64().unwrap() > 0);

    // A grain table entry pointing far outside the file.
    let mut bad = clean.clone();
    bad[gt..gt + 4].copy_from_slice(&0x0fff_0000u32.to_le_bytes());
    std::fs::write(&disk, &bad).unwrap();
    let out = host_output(&["vmdk", "check", s(&disk)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ERRORS FOUND"));

    // A grain placed inside the metadata (on the grain directory).
    let mut bad = clean.clone();
    bad[gt..gt + 4].copy_from_slice(&(le64(&clean, 56) as u32).to_le_bytes());
    std::fs::write(&disk, &bad).unwrap();
    let out = host_output(&["vmdk", "check", s(&disk)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // A descriptor that does not exist is a usage error.
    let out = host_output(&["vmdk", "check", s(&dir.path("missing.vmdk"))]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// `host` JSON output whatever the exit status.
fn host_json_any(args: &[&str]) -> Value {
    serde_json::from_slice(&host_output(args).stdout).unwrap()
}
