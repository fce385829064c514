//! `host vmfs` against the real fixture images, and against `debugvmfs` (Debian `vmfs-tools`)
//! on VMFS5 and `debugvmfs6` (`vmfs6-tools`) on VMFS6: `ls -l` and `cat` must agree byte for byte.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures_dir() -> PathBuf {
    let dir = match std::env::var_os("VMFS_REAL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/vmfs-real"),
    };
    assert!(
        dir.join("vmfs/vmfs5.bin.gz").is_file(),
        "VMFS fixtures not found at {}: set VMFS_REAL_DIR to the vmfs-real fixtures directory",
        dir.display()
    );
    dir
}

fn image(name: &str) -> PathBuf {
    host::volumes::plain_image(&fixtures_dir().join(format!("vmfs/{name}.bin.gz"))).unwrap()
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
    let gz = fixtures_dir().join("vmfs/vmfs6.bin.gz");
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
    let two = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["vmfs", "info", "--device", dev, "--device", dev])
        .output()
        .unwrap();
    assert!(!two.status.success());
    // The same device twice is not a two-device volume.
    assert!(String::from_utf8_lossy(&two.stderr).contains("devices do not match the volume"));
    let span = fixtures_dir().join("vmfs/span/vmfs5-span-0.bin.gz");
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
