//! `host vmfs` against the real fixture images, and against `debugvmfs` (Debian `vmfs-tools`)
//! on VMFS5 and `debugvmfs6` (`vmfs6-tools`) on VMFS6: `ls -l` and `cat` must agree byte for byte.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn image(name: &str) -> PathBuf {
    fixtures::image(&format!("vmfs/{name}.bin.gz"))
}

fn host(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "host {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `tool` (`debugvmfs` or `debugvmfs6`) on `image`; `debugvmfs6` prints a
/// `VMFS version: 6` line before the output, which is dropped.
fn oracle(tool: &str, package: &str, image: &Path, args: &[&str]) -> Vec<u8> {
    let found = Command::new(tool).arg("--help").output();
    assert!(
        found.is_ok(),
        "{tool} is not installed: install Debian's {package} (apt-get install -y {package})"
    );
    let out = Command::new(tool)
        .arg(image)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(out.status.success(), "{tool} {args:?} failed");
    let prefix = b"VMFS version: 6\n";
    match out.stdout.strip_prefix(prefix.as_slice()) {
        Some(rest) => rest.to_vec(),
        None => out.stdout,
    }
}

#[test]
fn ls_and_cat_agree_with_debugvmfs_on_vmfs5() {
    agree_with("vmfs5", "debugvmfs", "vmfs-tools");
}

#[test]
fn ls_and_cat_agree_with_debugvmfs6_on_vmfs6() {
    agree_with("vmfs6", "debugvmfs6", "vmfs6-tools");
}

fn agree_with(name: &str, tool: &str, package: &str) {
    let debugvmfs = |image: &Path, args: &[&str]| oracle(tool, package, image, args);
    let img = image(name);
    let dev = img.to_str().unwrap();
    for dir in ["/", "/directory", "/collision"] {
        let ours = host(&["vmfs", "ls", "--device", dev, dir]);
        let theirs = debugvmfs(&img, &["ls", "-l", dir]);
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "{name}: ls -l {dir}"
        );
    }
    for file in [
        "/small",
        "/big",
        "/bigger",
        "/normal.vmdk",
        "/large.vmdk",
        "/rdm.vmdk",
        "/directory/file42",
        "/.fbb.sf",
        "/.vh.sf",
    ] {
        let ours = host(&["vmfs", "cat", "--device", dev, file]);
        let theirs = debugvmfs(&img, &["cat", file]);
        assert!(
            ours == theirs,
            "cat {file}: {} vs {} bytes",
            ours.len(),
            theirs.len()
        );
    }
}

#[test]
fn subcommands_read_both_versions_and_gz_devices() {
    let gz = fixtures::dir().join("vmfs/vmfs6.bin.gz");
    let dev = gz.to_str().unwrap();
    let info: serde_json::Value =
        serde_json::from_slice(&host(&["vmfs", "info", "--json", "--device", dev])).unwrap();
    assert_eq!(info["label"], "vmfs6");
    assert_eq!(info["vmfs"], 6);
    assert_eq!(
        host(&["vmfs", "cat", "--device", dev, "/symlink"]),
        b"tiny\n"
    );
    assert_eq!(
        host(&[
            "vmfs",
            "cat",
            "--device",
            dev,
            "/vmfs/volumes/vmfs6/directory/file7"
        ]),
        b"File 7\n"
    );
    let stat: serde_json::Value = serde_json::from_slice(&host(&[
        "vmfs", "stat", "--json", "--device", dev, "/symlink",
    ]))
    .unwrap();
    assert_eq!(stat["target"], "/vmfs/volumes/vmfs6/small");
    let stat: serde_json::Value = serde_json::from_slice(&host(&[
        "vmfs",
        "stat",
        "--json",
        "--device",
        dev,
        "/rdm-rdm.vmdk",
    ]))
    .unwrap();
    assert_eq!(stat["rdm"]["id"], "QM00015             QEMU H");
    let ls: serde_json::Value = serde_json::from_slice(&host(&[
        "vmfs",
        "ls",
        "--json",
        "--device",
        dev,
        "/directory",
    ]))
    .unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 102);
    for name in ["vmfs5", "vmfs6", "vmfs5d"] {
        let img = image(name);
        let fsck: serde_json::Value = serde_json::from_slice(&host(&[
            "vmfs",
            "fsck",
            "--json",
            "--device",
            img.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(fsck["problems"].as_array().unwrap().len(), 0, "{name}");
    }
    let cat_json = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["vmfs", "cat", "--json", "--device", dev, "/"])
        .output()
        .unwrap();
    assert!(!cat_json.status.success());
    assert!(cat_json.stdout.is_empty());
    assert!(String::from_utf8_lossy(&cat_json.stderr).contains("--json does not apply"));
    let two = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["vmfs", "info", "--device", dev, "--device", dev])
        .output()
        .unwrap();
    assert!(!two.status.success());
    // The same device twice is not a two-device volume.
    assert!(String::from_utf8_lossy(&two.stderr).contains("devices do not match the volume"));
    let span = fixtures::dir().join("vmfs/span/vmfs5-span-0.bin.gz");
    let one_of_two = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["vmfs", "info", "--device", span.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!one_of_two.status.success());
    assert!(
        String::from_utf8_lossy(&one_of_two.stderr).contains("incomplete: 1 of 2 devices present")
    );
}

/// Issue 8: `vmfs5-span` (LVM spanning two devices + VMFS5) mounts through the `lvm` crate and
/// lists its system files, whichever order the devices are given in. Names and sizes as
/// `dissect.vmfs` lists them (`debugvmfs` crashes on this volume, so it is no oracle here).
#[test]
fn vmfs5_span_mounts_across_two_devices_and_lists_its_system_files() {
    let d0 = image("span/vmfs5-span-0");
    let d1 = image("span/vmfs5-span-1");
    let (d0, d1) = (d0.to_str().unwrap(), d1.to_str().unwrap());
    for devices in [[d0, d1], [d1, d0]] {
        let args = |cmd: &'static [&'static str]| {
            let mut a: Vec<&str> = vec!["vmfs"];
            a.extend(cmd);
            for d in devices {
                a.extend(["--device", d]);
            }
            a
        };
        let info: serde_json::Value =
            serde_json::from_slice(&host(&args(&["info", "--json"]))).unwrap();
        assert_eq!(info["label"], "vmfs5-span");
        assert_eq!(info["vmfs"], 5);
        let mut ls_args = args(&["ls", "--json"]);
        ls_args.push("/");
        let ls: serde_json::Value = serde_json::from_slice(&host(&ls_args)).unwrap();
        let mut listed: Vec<(String, u64)> = ls
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["size"].as_u64().unwrap(),
                )
            })
            .collect();
        listed.sort();
        let mut expected: Vec<(String, u64)> = [
            (".", 1260),
            ("..", 1260),
            (".fbb.sf", 131_072),
            (".fdc.sf", 163_102_720),
            (".pbc.sf", 134_217_728),
            (".sbc.sf", 262_733_824),
            (".vh.sf", 4_194_304),
            (".pb2.sf", 1_179_648),
            (".sdd.sf", 280),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
        expected.sort();
        assert_eq!(listed, expected);
        let mut plain = args(&["ls"]);
        plain.push("/");
        let text = String::from_utf8(host(&plain)).unwrap();
        assert_eq!(text.lines().count(), 9, "{text}");
        let fsck: serde_json::Value =
            serde_json::from_slice(&host(&args(&["fsck", "--json"]))).unwrap();
        assert_eq!(fsck["problems"].as_array().unwrap().len(), 0, "{fsck}");
        assert_eq!(fsck["files"], 6);
        assert_eq!(fsck["directories"], 2);
    }
}

/// Runs `host args` with `env` set, its standard output going to `sink`; returns its stderr.
fn host_into(args: &[&str], env: &[(&str, &str)], sink: Stdio) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(sink)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "host {args:?} {env:?} failed: {err}");
    err
}

/// `host vmfs cat` of `file`, four ways: the zero-copy path into a pipe and into a regular
/// file, the block-stack path (`--no-zero-copy`, and the environment variable) into a pipe.
/// All must be the same bytes; returns them.
fn cat_every_way(devices: &[&str], file: &str, scratch: &Path) -> Vec<u8> {
    let mut args = vec!["vmfs", "cat"];
    for d in devices {
        args.extend(["--device", d]);
    }
    args.push(file);
    let fast_pipe = host(&args);
    let out_file = scratch.join("cat.out");
    host_into(
        &args,
        &[],
        Stdio::from(std::fs::File::create(&out_file).unwrap()),
    );
    let fast_file = std::fs::read(&out_file).unwrap();
    // Into /dev/null (sendfile, which the kernel completes without touching the data).
    host_into(
        &args,
        &[],
        Stdio::from(std::fs::File::create("/dev/null").unwrap()),
    );
    let mut slow_args = args.clone();
    slow_args.insert(2, "--no-zero-copy");
    let slow_pipe = host(&slow_args);
    let env_off = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(&args)
        .env(host::vmfs_cli::NO_ZERO_COPY_ENV, "1")
        .output()
        .unwrap();
    assert!(env_off.status.success());
    let what = format!("{devices:?} {file}");
    assert!(
        fast_pipe == slow_pipe,
        "{what}: zero-copy and block paths differ (pipe)"
    );
    assert!(
        fast_file == slow_pipe,
        "{what}: zero-copy into a file differs"
    );
    assert!(
        env_off.stdout == slow_pipe,
        "{what}: {}=1 differs",
        host::vmfs_cli::NO_ZERO_COPY_ENV
    );
    slow_pipe
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("vmfs-cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The zero-copy `cat` (extents mapped, data copied by the kernel from the image file) writes
/// exactly what the block-stack path and `debugvmfs`/`debugvmfs6` write, into pipes and files,
/// for resident, file-block, pointer-block and system files; `.gz` devices qualify too.
#[test]
fn zero_copy_cat_agrees_with_the_block_path_and_debugvmfs() {
    for (name, tool, package) in [
        ("vmfs5", "debugvmfs", "vmfs-tools"),
        ("vmfs6", "debugvmfs6", "vmfs6-tools"),
    ] {
        let dir = scratch(name);
        let img = image(name);
        let dev = img.to_str().unwrap();
        for file in [
            "/small",
            "/symlink",
            "/big",
            "/bigger",
            "/directory/file42",
            "/normal.vmdk",
            "/.fbb.sf",
            "/.vh.sf",
            "/.fdc.sf",
        ] {
            let ours = cat_every_way(&[dev], file, &dir);
            // debugvmfs does not follow symbolic links: compare with their target.
            let target = if file == "/symlink" { "/small" } else { file };
            let theirs = oracle(tool, package, &img, &["cat", target]);
            assert!(
                ours == theirs,
                "{name} cat {file}: {} vs {} bytes",
                ours.len(),
                theirs.len()
            );
        }
        let gz = fixtures::dir().join(format!("vmfs/{name}.bin.gz"));
        let from_gz = cat_every_way(&[gz.to_str().unwrap()], "/big", &dir);
        assert_eq!(from_gz.len(), (1 << 20) + 1);
    }
    // Through an LVM volume spanning two devices (debugvmfs cannot read it: the two paths and
    // the sizes must agree).
    let dir = scratch("span");
    let d0 = image("span/vmfs5-span-0");
    let d1 = image("span/vmfs5-span-1");
    let devices = [d1.to_str().unwrap(), d0.to_str().unwrap()];
    for (file, size) in [
        (".fbb.sf", 131_072),
        (".pb2.sf", 1_179_648),
        (".vh.sf", 4_194_304),
    ] {
        let bytes = cat_every_way(&devices, &format!("/{file}"), &dir);
        assert_eq!(bytes.len(), size, "{file}");
    }
}

/// Runs `host vmfs map --json` on `file`.
fn map_json(devices: &[&str], file: &str) -> serde_json::Value {
    let mut args = vec!["vmfs", "map", "--json"];
    for d in devices {
        args.extend(["--device", d]);
    }
    args.push(file);
    serde_json::from_slice(&host(&args)).unwrap()
}

/// The runs of a `map --json` answer as (kind, file offset, length).
fn runs(map: &serde_json::Value) -> Vec<(String, u64, u64)> {
    map["extents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["file_offset"].as_u64().unwrap(),
                e["length"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A copy of `vmfs5` in which `/bigger` (128 file blocks of 1 MiB, addressed directly from its
/// descriptor) has holes and to-be-zeroed blocks: block 3 unallocated (address 0), block 7
/// marked to be zeroed (VMFS5 file block address bit 5), blocks 8 and 9 unallocated. Found by
/// its address array (`(block << 6) | 1` for each block) in `.fdc.sf`.
fn vmfs5_with_holes(dir: &Path) -> PathBuf {
    const MIB: u64 = 1 << 20;
    let src = image("vmfs5");
    let dev = src.to_str().unwrap();
    let first = map_json(&[dev], "/bigger")["extents"][0]["volume_offset"]
        .as_u64()
        .unwrap();
    let block = first / MIB;
    let pattern: Vec<u8> = (0..4u64)
        .flat_map(|i| ((((block + i) << 6) | 1) as u32).to_le_bytes())
        .collect();
    let fdc = map_json(&[dev], "/.fdc.sf");
    let image = std::fs::File::open(&src).unwrap();
    let mut hits = Vec::new();
    for e in fdc["extents"].as_array().unwrap() {
        let at = e["device_offset"].as_u64().unwrap();
        let mut area = vec![0u8; e["length"].as_u64().unwrap() as usize];
        std::os::unix::fs::FileExt::read_exact_at(&image, &mut area, at).unwrap();
        hits.extend(
            area.windows(pattern.len())
                .enumerate()
                .filter(|(_, w)| *w == pattern.as_slice())
                .map(|(i, _)| at + i as u64),
        );
    }
    assert_eq!(
        hits.len(),
        1,
        "/bigger's address array in .fdc.sf: {hits:?}"
    );
    let addrs = hits[0];
    let dst = dir.join("vmfs5-holes.bin");
    let copied = Command::new("cp")
        .args(["--sparse=always", dev, dst.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copied.success());
    let file = std::fs::OpenOptions::new().write(true).open(&dst).unwrap();
    let put = |index: u64, value: u32| {
        std::os::unix::fs::FileExt::write_all_at(&file, &value.to_le_bytes(), addrs + 4 * index)
            .unwrap()
    };
    put(3, 0);
    put(7, ((((block + 7) << 6) | 1) as u32) | 0x20);
    put(8, 0);
    put(9, 0);
    dst
}

/// Holes and to-be-zeroed blocks: `map` shows them as zero runs (merged where adjacent), and the
/// zero-copy `cat` writes zeros there exactly like the block path and `debugvmfs`.
#[test]
fn holes_and_to_be_zeroed_blocks_map_and_cat_as_zeros() {
    const MIB: u64 = 1 << 20;
    let dir = scratch("holes");
    let img = vmfs5_with_holes(&dir);
    let dev = img.to_str().unwrap();
    let map = map_json(&[dev], "/bigger");
    let z = |a: u64, b: u64| ("zero".to_string(), a * MIB, (b - a) * MIB);
    let d = |a: u64, b: u64| ("data".to_string(), a * MIB, (b - a) * MIB);
    assert_eq!(
        runs(&map),
        vec![d(0, 3), z(3, 4), d(4, 7), z(7, 10), d(10, 128)]
    );
    let ours = cat_every_way(&[dev], "/bigger", &dir);
    let want: Vec<u8> = (0..128u64)
        .flat_map(|mib| {
            let byte = if [3, 7, 8, 9].contains(&mib) {
                0
            } else {
                mib as u8
            };
            std::iter::repeat_n(byte, MIB as usize)
        })
        .collect();
    assert!(ours == want, "cat /bigger with holes");
    let theirs = oracle("debugvmfs", "vmfs-tools", &img, &["cat", "/bigger"]);
    assert!(ours == theirs, "debugvmfs reads the holes differently");
}

/// `len` bytes at `offset` of the file at `path`.
fn read_at(path: &str, offset: u64, len: u64) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; len as usize];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, offset).unwrap();
    buf
}

/// `host vmfs map`: every data and resident row points at the bytes `cat` writes for that part
/// of the file, in the image file of the device it names; holes are zero rows; through LVM the
/// device offsets differ from the volume offsets; a spanned volume lists its devices.
#[test]
fn map_points_at_the_bytes_cat_writes() {
    const GIB: u64 = 1 << 30;
    for name in ["vmfs5", "vmfs6"] {
        let img = image(name);
        let dev = img.to_str().unwrap();
        for file in ["/small", "/big", "/bigger", "/directory/file42", "/.fbb.sf"] {
            let map = map_json(&[dev], file);
            let bytes = host(&["vmfs", "cat", "--device", dev, file]);
            assert_eq!(map["size"].as_u64().unwrap(), bytes.len() as u64);
            assert_eq!(map["devices"].as_array().unwrap().len(), 1);
            let image_path = map["devices"][0]["image"].as_str().unwrap().to_string();
            let mut at = 0u64;
            for e in map["extents"].as_array().unwrap() {
                let (offset, len) = (
                    e["file_offset"].as_u64().unwrap(),
                    e["length"].as_u64().unwrap(),
                );
                assert_eq!(offset, at, "{name}{file}: rows follow each other");
                let want = &bytes[offset as usize..(offset + len) as usize];
                match e["kind"].as_str().unwrap() {
                    "zero" => assert!(want.iter().all(|&b| b == 0)),
                    kind => {
                        assert!(kind == "data" || kind == "resident", "{kind}");
                        let on_device = e["device_offset"].as_u64().unwrap();
                        // The LVM header and metadata come before the volume on the device.
                        assert!(on_device > e["volume_offset"].as_u64().unwrap());
                        assert!(
                            read_at(&image_path, on_device, len) == want,
                            "{name}{file}: {e}"
                        );
                    }
                }
                at += len;
            }
            assert_eq!(at, bytes.len() as u64);
        }
        let small = runs(&map_json(&[dev], "/small"));
        assert_eq!(small, vec![("resident".to_string(), 0, 5)]);
        // A thin 69 GiB disk: one allocated block holding the 0x42s at 42 GiB.
        let map = map_json(&[dev], "/normal-flat.vmdk");
        let rows = runs(&map);
        assert_eq!(
            rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            ["zero", "data", "zero"],
            "{name}"
        );
        let data = &map["extents"][1];
        let into = 42 * GIB - data["file_offset"].as_u64().unwrap();
        let on_device = data["device_offset"].as_u64().unwrap() + into;
        assert_eq!(read_at(dev, on_device, 512), vec![0x42; 512], "{name}");
        assert_eq!(rows[2].1 + rows[2].2, 69 * GIB);
        // The text form: a header, one row per run, then the devices.
        let text = String::from_utf8(host(&["vmfs", "map", "--device", dev, "/normal-flat.vmdk"]))
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("Offset") && lines[0].contains("Device offset"));
        assert!(
            lines[1].starts_with("0x0 ") && lines[1].contains(" zero "),
            "{text}"
        );
        assert!(lines[2].contains(" data "), "{text}");
        assert_eq!(lines[4], format!("device 0: {dev}"));
        // Symbolic links are followed; raw device mappings have no data to map.
        assert_eq!(runs(&map_json(&[dev], "/symlink")), small);
        let rdm = Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["vmfs", "map", "--device", dev, "/rdm-rdm.vmdk"])
            .output()
            .unwrap();
        assert!(!rdm.status.success());
        assert!(String::from_utf8_lossy(&rdm.stderr).contains("unsupported"));
    }
    // Two devices: the map names both, and every row's bytes are in the image it names.
    let d0 = image("span/vmfs5-span-0");
    let d1 = image("span/vmfs5-span-1");
    let devices = [d1.to_str().unwrap(), d0.to_str().unwrap()];
    for file in ["/.fbb.sf", "/.sbc.sf"] {
        let map = map_json(&devices, file);
        let listed: Vec<&str> = map["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["image"].as_str().unwrap())
            .collect();
        assert_eq!(listed.len(), 2);
        let mut args = vec!["vmfs", "cat"];
        for d in devices {
            args.extend(["--device", d]);
        }
        args.push(file);
        let bytes = host(&args);
        for e in map["extents"].as_array().unwrap() {
            let offset = e["file_offset"].as_u64().unwrap();
            let len = e["length"].as_u64().unwrap().min(1 << 20);
            let want = &bytes[offset as usize..(offset + len) as usize];
            let device = e["device"].as_u64().unwrap() as usize;
            let at = e["device_offset"].as_u64().unwrap();
            assert!(read_at(listed[device], at, len) == want, "span {file}: {e}");
        }
    }
}

/// The zero-copy path moves no file data through the block stack (no data reads, a handful of
/// metadata reads for the map), and applies only when every device is a regular file.
#[test]
fn zero_copy_cat_moves_no_data_through_the_block_stack() {
    use host::vmfs_cli::{Buffers, cat, cat_zero_copy, mount, open_plain_images, resolve};
    let dir = scratch("counters");
    let mut buffers = Buffers::default();
    let mut memory = buffers.memory();
    let mut m = mount(&[image("vmfs5")], &mut memory).unwrap();
    let node = resolve(&mut m.fs, &mut memory, "/bigger", true).unwrap();
    let files = open_plain_images(&m.images).expect("plain image files");
    let fast = dir.join("fast");
    let before = m.fs.counters();
    let n = cat_zero_copy(
        &mut m.fs,
        &mut memory,
        node,
        &files,
        &mut std::fs::File::create(&fast).unwrap(),
    )
    .unwrap();
    let after = m.fs.counters();
    assert_eq!(n, 128 << 20);
    assert_eq!(after.data_reads, before.data_reads);
    assert!(
        after.metadata_reads - before.metadata_reads <= 4,
        "{before:?} -> {after:?}"
    );
    let slow = dir.join("slow");
    cat(
        &mut m.fs,
        &mut memory,
        node,
        &mut std::fs::File::create(&slow).unwrap(),
    )
    .unwrap();
    assert!(m.fs.counters().data_reads > after.data_reads);
    assert!(std::fs::read(&fast).unwrap() == std::fs::read(&slow).unwrap());
    assert!(open_plain_images(&[PathBuf::from("/dev/null")]).is_none());
    // Into a pipe, cat grows the pipe's buffer to 1 MiB where the system allows it.
    let img = image("vmfs5");
    let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["vmfs", "cat", "--device", img.to_str().unwrap(), "/small"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    assert!(child.wait().unwrap().success());
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .map_or(0, |s| s.trim().parse().unwrap_or(0));
    if limit >= 1 << 20 {
        assert_eq!(rustix::pipe::fcntl_getpipe_size(&stdout).unwrap(), 1 << 20);
    }
    assert!(open_plain_images(&[dir.join("missing")]).is_none());
}
