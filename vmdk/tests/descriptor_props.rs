//! Descriptors: ESXi's own files round-trip byte-exact; generated ones round-trip; bad input
//! never panics.

use std::path::PathBuf;

use proptest::prelude::*;
use vmdk::descriptor::{Descriptor, NO_PARENT_CID, parse_cid};
use vmdk::{CreateType, ExtentType};

fn fixtures_dir() -> PathBuf {
    match std::env::var_os("VMFS_REAL_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/vmfs-real"),
    }
}

#[test]
fn esxi_descriptors_parse_and_round_trip() {
    let dir = fixtures_dir().join("descriptors");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "ESXi descriptor fixtures not found at {} ({e}); set VMFS_REAL_DIR to the \
             vmfs-real fixture directory",
            dir.display()
        )
    });
    let mut seen = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let text = std::fs::read(&path).unwrap();
        let d =
            Descriptor::<128>::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(d.version(), Some(1));
        assert_eq!(d.encoding(), Some(&b"UTF-8"[..]));
        assert_eq!(d.cid(), Some(0xfffffffe));
        assert_eq!(d.parent_cid(), Some(NO_PARENT_CID));
        assert!(matches!(
            d.create_type(),
            Some(CreateType::Vmfs | CreateType::VmfsRawDeviceMap)
        ));
        assert_eq!(d.adapter_type(), Some(&b"lsilogic"[..]));
        assert_eq!(d.virtual_hw_version(), Some(14));
        assert!(d.uuid().is_some() && d.long_content_id().is_some());
        let (c, h, s) = d.geometry().unwrap();
        assert_eq!((h, s), (255, 63));
        assert!(c > 0);
        let extent = d.extents().next().unwrap();
        assert!(matches!(
            extent.kind,
            ExtentType::Vmfs | ExtentType::VmfsRdm
        ));
        let mut out = vec![0u8; text.len() + 16];
        let n = d.emit(&mut out).unwrap();
        assert_eq!(&out[..n], &text[..], "{} round trip", path.display());
        seen += 1;
    }
    assert_eq!(
        seen,
        3,
        "expected three ESXi descriptors in {}",
        dir.display()
    );
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "# [ -~]{0,30}".prop_map(|s| s),
        (
            "[a-zA-Z][a-zA-Z0-9._]{0,15}",
            "[ -!#-~]{0,20}",
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(k, v, q, sp)| {
                let v = v.trim().to_string();
                let v = if q {
                    format!("\"{v}\"")
                } else if v.is_empty() {
                    "x".into()
                } else {
                    v
                };
                if sp {
                    format!("{k} = {v}")
                } else {
                    format!("{k}={v}")
                }
            }),
        (
            prop_oneof![Just("RW"), Just("RDONLY"), Just("NOACCESS")],
            any::<u32>(),
            prop_oneof![
                Just("FLAT"),
                Just("SPARSE"),
                Just("VMFS"),
                Just("VMFSSPARSE"),
                Just("VMFSRDM")
            ],
            "[a-z0-9_-]{1,12}\\.vmdk",
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(a, s, t, n, o)| match o {
                Some(o) => format!("{a} {s} {t} \"{n}\" {o}"),
                None => format!("{a} {s} {t} \"{n}\""),
            }),
    ]
}

proptest! {
    #[test]
    fn generated_descriptors_round_trip(
        lines in proptest::collection::vec(line(), 0..40),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
        cid in any::<u32>(),
    ) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut text = format!("version=1{nl}CID={cid:08x}{nl}createType=\"monolithicSparse\"{nl}");
        text.push_str(&lines.join(nl));
        if final_newline { text.push_str(nl); }
        let d = Descriptor::<64>::parse(text.as_bytes()).unwrap();
        prop_assert_eq!(d.cid(), Some(cid));
        let mut out = vec![0u8; text.len()];
        let n = d.emit(&mut out).unwrap();
        prop_assert_eq!(&out[..n], text.as_bytes());
        let mut d2 = d.clone();
        d2.set("CID", "0badcafe").unwrap();
        let mut out2 = vec![0u8; text.len() + 64];
        let n2 = d2.emit(&mut out2).unwrap();
        let back = Descriptor::<64>::parse(&out2[..n2]).unwrap();
        prop_assert_eq!(back.cid(), Some(0x0badcafe));
        prop_assert_eq!(back.extents().count(), d.extents().count());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(d) = Descriptor::<16>::parse(&bytes) {
            let _ = d.capacity_sectors();
            let _ = d.extents().count();
            let mut out = [0u8; 700];
            let _ = d.emit(&mut out);
        }
    }

    #[test]
    fn mutated_descriptors_never_panic(pos in 0usize..400, byte in any::<u8>()) {
        let mut text = b"# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"vmfs\"\n\nRW 90194313216 VMFS \"large-flat.vmdk\"\nRW 1 ZERO\n#DDB\nddb.geometry.cylinders = \"5614336\"\n".to_vec();
        let p = pos % text.len();
        text[p] = byte;
        let _ = Descriptor::<32>::parse(&text).map(|d| (d.geometry(), d.capacity_sectors()));
        let _ = parse_cid(&text[..p.min(8)]);
    }
}
