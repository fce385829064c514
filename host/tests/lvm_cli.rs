//! `host lvm info` (human and `--json`) on the real ESXi LVM images of the shared fixtures
//! (`../shared/fixtures/vmfs-real/README.md`): the documented volume names, sizes and devices.
//! The recorded device names are paired with members in member order; each device's own header
//! records its disk identity (`QM00007`, `QM00009`, ...), which agrees with that pairing.

use std::process::Command;

use serde_json::Value;

const MIB: u64 = 1 << 20;

fn fixture(rel: &str) -> String {
    fixtures::path(rel).to_str().unwrap().to_string()
}

fn host(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "host {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `host lvm info` on `devices`, human and JSON.
fn info(devices: &[&str]) -> (String, Value) {
    let mut args = vec!["lvm", "info"];
    for d in devices {
        args.extend(["--device", d]);
    }
    let human = host(&args);
    args.insert(2, "--json");
    let json = serde_json::from_str(&host(&args)).unwrap();
    (human, json)
}

/// What one volume must show: name, LVM version, size, and per member (in member order) the
/// device path and the disk its recorded name belongs to.
struct Expected<'a> {
    name: &'a str,
    version: u64,
    size: u64,
    members: &'a [(&'a str, &'a str)],
    extents: usize,
}

fn check(devices: &[&str], want: &Expected<'_>) {
    let (human, json) = info(devices);
    let members = want.members.len();

    // JSON.
    let dev_json = json["devices"].as_array().unwrap();
    assert_eq!(dev_json.len(), devices.len());
    for (d, path) in dev_json.iter().zip(devices) {
        assert_eq!(d["path"], *path);
        assert_eq!(d["status"]["lvm"], true);
        assert_eq!(d["status"]["volumes"], 1);
    }
    let volumes = json["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 1, "{json}");
    let v = &volumes[0];
    assert_eq!(v["name"], want.name);
    assert_eq!(v["version"], want.version);
    assert_eq!(v["size_bytes"], want.size);
    assert_eq!(v["complete"], true);
    assert_eq!(v["status"], "complete");
    assert_eq!(v["snapshot"], false);
    assert_eq!(v["expected_members"], members as u64);
    let names = v["device_names"].as_array().unwrap();
    let member_json = v["members"].as_array().unwrap();
    assert_eq!(names.len(), members);
    assert_eq!(member_json.len(), members);
    for (i, (path, disk)) in want.members.iter().enumerate() {
        assert_eq!(member_json[i]["path"], *path, "member {i}");
        assert_eq!(member_json[i]["data_offset"], 0x110_0000, "member {i}");
        assert_eq!(member_json[i]["block_size"], 512, "member {i}");
        let name = names[i].as_str().unwrap();
        assert!(
            name.starts_with("t10.ATA_____QEMU_HARDDISK___")
                && name.contains(disk)
                && name.ends_with(":1"),
            "device name {i}: {name}"
        );
    }
    let extents = v["extents"].as_array().unwrap();
    assert_eq!(extents.len(), want.extents);
    let mut next = 0;
    for e in extents {
        assert_eq!(e["volume_offset"], next);
        next += e["length"].as_u64().unwrap();
    }
    assert_eq!(next, want.size, "extents cover the volume");

    // Human.
    for path in devices {
        assert!(
            human.contains(&format!("device {path}: LVM device, 1 volume(s)")),
            "{human}"
        );
    }
    assert!(
        human.contains(&format!("volume   {}\n", want.name)),
        "{human}"
    );
    assert!(
        human.contains(&format!("version  LVM {}\n", want.version)),
        "{human}"
    );
    assert!(
        human.contains(&format!(
            "size     {} bytes ({} MiB)\n",
            want.size,
            want.size / MIB
        )),
        "{human}"
    );
    assert!(human.contains("status   complete\n"), "{human}");
    assert!(
        human.contains(&format!("devices  {members} of {members}\n")),
        "{human}"
    );
    for (i, (path, disk)) in want.members.iter().enumerate() {
        let line = human
            .lines()
            .find(|l| l.starts_with(&format!("  [{i}] ")))
            .unwrap_or_else(|| panic!("no member {i} line in {human}"));
        assert!(line.contains(path), "{line}");
        assert!(line.contains("data at 0x1100000"), "{line}");
        assert!(line.contains(disk), "{line}");
    }
    let extent_lines = human.lines().filter(|l| l.contains(" -> [")).count();
    assert_eq!(extent_lines, want.extents, "{human}");
}

#[test]
fn info_on_single_device_volumes() {
    // LVM 5 records two 256 MiB extents, LVM 6 one of 512 MiB; both cover the volume.
    for (rel, name, version, extents) in [
        ("lvm/lvm5.bin.gz", "lvm5", 5, 2),
        ("lvm/lvm6.bin.gz", "lvm6", 6, 1),
    ] {
        let dev = fixture(rel);
        check(
            &[&dev],
            &Expected {
                name,
                version,
                size: 512 * MIB,
                members: &[(&dev, "QM00007")],
                extents,
            },
        );
    }
}

#[test]
fn info_on_the_spanned_volume_in_either_device_order() {
    let d0 = fixture("lvm/span/lvm5-span-0.bin.gz");
    let d1 = fixture("lvm/span/lvm5-span-1.bin.gz");
    let want = Expected {
        name: "lvm5-span",
        version: 5,
        size: 1024 * MIB,
        members: &[(&d0, "QM00009"), (&d1, "QM00011")],
        extents: 4,
    };
    check(&[&d0, &d1], &want);
    check(&[&d1, &d0], &want);
}

#[test]
fn info_on_the_vmfs5_span_volume() {
    let d0 = fixture("vmfs/span/vmfs5-span-0.bin.gz");
    let d1 = fixture("vmfs/span/vmfs5-span-1.bin.gz");
    let (_, json) = info(&[&d1, &d0]);
    let v = &json["volumes"][0];
    assert_eq!(v["size_bytes"], 4096 * MIB);
    assert_eq!(v["members"][0]["path"], d0.as_str());
    assert_eq!(v["members"][1]["path"], d1.as_str());
    assert!(v["device_names"][0].as_str().unwrap().contains("QM00013"));
    assert!(v["device_names"][1].as_str().unwrap().contains("QM00015"));
}
