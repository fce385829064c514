//! Descriptors: ESXi's own files round-trip byte-exact; generated ones round-trip; bad input
//! never panics.

use std::path::PathBuf;

use proptest::prelude::*;
use vmdk::descriptor::{Descriptor, NO_PARENT_CID, parse_cid};
use vmdk::{CreateType, ExtentType};

#[test]
fn esxi_descriptors_parse_and_round_trip() {
    let dir = fixtures::dir().join("descriptors");
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

/// A device of a given size that completes every request without moving data, standing for
/// the VMFS files and RDM LUNs the ESXi descriptors name.
struct ZeroDisk {
    blocks: u64,
    done: Vec<block::Tag>,
}

impl block::BlockDevice for ZeroDisk {
    fn geometry(&self) -> block::Geometry {
        block::Geometry {
            block_size: 512,
            block_count: self.blocks,
            max_transfer_blocks: 1 << 16,
            queue_depth: 8,
            features: block::DeviceFeatures::READ_ONLY,
        }
    }

    fn submit(
        &mut self,
        _: block::Instant,
        r: block::BlockRequest,
    ) -> Result<(), block::SubmitError> {
        self.done.push(r.tag);
        Ok(())
    }

    fn poll(
        &mut self,
        _: block::Instant,
        _: &mut dyn block::Memory,
        done: &mut dyn FnMut(block::Completion),
    ) -> Option<block::Instant> {
        for tag in self.done.drain(..) {
            done(block::Completion::ok(tag));
        }
        None
    }
}

struct EsxiFiles(PathBuf);

impl vmdk::ExtentSource for EsxiFiles {
    type Device = ZeroDisk;

    fn open(&mut self, name: &str, _writable: bool) -> vmdk::Result<ZeroDisk> {
        // Every extent file is as large as the extent line says (read from the descriptor).
        let blocks = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .find_map(|text| {
                let d = Descriptor::<128>::parse(&text).ok()?;
                d.extents()
                    .find(|x| x.file_name_str() == Some(name))
                    .map(|x| x.sectors)
            })
            .ok_or(vmdk::Error::new(vmdk::ErrorKind::Io, 0))?;
        Ok(ZeroDisk {
            blocks,
            done: Vec::new(),
        })
    }

    fn read_head(&mut self, name: &str, buf: &mut [u8]) -> vmdk::Result<usize> {
        let text = std::fs::read(self.0.join(name))
            .map_err(|_| vmdk::Error::new(vmdk::ErrorKind::Io, 0))?;
        let n = text.len().min(buf.len());
        buf[..n].copy_from_slice(&text[..n]);
        Ok(n)
    }

    fn create(&mut self, _: &str, _: u64) -> vmdk::Result<ZeroDisk> {
        Err(vmdk::Error::new(vmdk::ErrorKind::Unsupported, 0))
    }
}

#[test]
fn esxi_descriptors_open_as_virtual_disks() {
    let dir = fixtures::dir().join("descriptors");
    let mut source = EsxiFiles(dir.clone());
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let text = std::fs::read(dir.join(&name)).unwrap();
        let expected = Descriptor::<128>::parse(&text)
            .unwrap()
            .capacity_sectors()
            .unwrap();
        let mut data = vec![0u8; 4096];
        let mut memory = block::MemoryRegions::<1>::new();
        memory.add(block::MemAddr(0x1000), &mut data).unwrap();
        let mut text_buf = vec![0u8; 16 << 10];
        let mut map = vec![0u8; 4096];
        let meta = vmdk::MetaRegion {
            addr: block::MemAddr(0x1000),
            len: 0,
        };
        let options = vmdk::OpenOptions {
            read_only: true,
            ..Default::default()
        };
        let mut disk = vmdk::VirtualDisk::<_>::open(
            &mut source,
            &name,
            &mut text_buf,
            meta,
            &mut map,
            &mut memory,
            block::Instant(0),
            options,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(disk.capacity(), expected, "{name}");
        assert_eq!(disk.depth(), 1);
        assert_eq!(disk.layer(0).unwrap().cid, 0xfffffffe);
        // Reads reach the extent's device, even at the end of a 42 TB disk.
        use block::BlockDevice;
        let sg = block::SgList::single(block::MemAddr(0x1000), 4096).unwrap();
        let last = disk.geometry().block_count - 8;
        let req =
            block::BlockRequest::read(block::Tag(1), block::Lba(last), block::BlockCount(8), sg);
        let d = block::run_to_completion(
            &mut disk,
            &mut memory,
            block::Instant(0),
            req,
            10,
            &mut |_| {},
        )
        .unwrap();
        assert!(d.completion.is_ok(), "{name}: {:?}", d.completion);
    }
}
