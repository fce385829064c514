//! Oracle tests: the sg3_utils tools, written by nobody here, decode the bytes our `Lun`
//! answers with (offline, through `--inhex`), and the decoding must show exactly the fields we
//! configured.
//!
//! Needs the Debian package `sg3-utils` (`apt-get install -y sg3-utils`); without it these
//! tests fail and say so.

mod common;

use std::path::PathBuf;
use std::process::Command as Process;
use std::sync::atomic::{AtomicUsize, Ordering};

use block::{DeviceFeatures, RamDisk};
use common::*;
use scsi::cdb::{CdbRepr, CdbSize, Rw, RwKind};
use scsi::{AccessState, CommandCompletion, DataDirection, Lun, PortGroup, Residual, SenseFormat};

fn bytes(repr: CdbRepr) -> Vec<u8> {
    repr.to_bytes()[..repr.buffer_len()].to_vec()
}

/// Writes `data` to a fresh temporary file.
fn temp_file(data: &[u8]) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("scsi-oracle-{}-{n}.bin", std::process::id()));
    std::fs::write(&path, data).unwrap();
    path
}

/// Runs an sg3_utils tool and returns its standard output (and error).
fn tool(name: &str, args: &[&str]) -> String {
    let output = Process::new(name).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{name}` ({e}): the oracle tests need sg3_utils; \
             install it with `apt-get update && apt-get install -y sg3-utils`"
        )
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "`{name} {args:?}` failed: {text}");
    text
}

/// Runs `name` on `data` written to a file passed as `--inhex=FILE` with `--raw`.
fn decode(name: &str, data: &[u8], extra: &[&str]) -> String {
    let path = temp_file(data);
    let inhex = format!("--inhex={}", path.display());
    let mut args = vec!["--raw", inhex.as_str()];
    args.extend_from_slice(extra);
    let out = tool(name, &args);
    let _ = std::fs::remove_file(&path);
    out
}

fn decode_sense(sense: &[u8]) -> String {
    let path = temp_file(sense);
    let out = tool(
        "sg_decode_sense",
        &[&format!("--binary={}", path.display())],
    );
    let _ = std::fs::remove_file(&path);
    out
}

#[track_caller]
fn assert_shows(decoded: &str, expected: &str) {
    // Column alignment is the tool's business: compare with whitespace runs collapsed.
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        squash(decoded).contains(&squash(expected)),
        "expected {expected:?} in the sg3_utils decoding:\n{decoded}"
    );
}

const THIN: DeviceFeatures = DeviceFeatures::UNMAP
    .union(DeviceFeatures::WRITE_ZEROES)
    .union(DeviceFeatures::COMPARE_AND_WRITE)
    .union(DeviceFeatures::UNMAP_READS_ZERO);

/// Runs `cdb` on a fresh LU (ALUA groups 0x11 {port 3} and 0x22 {port 4}, thin if `features`
/// says so), through port 3, after clearing the power-on unit attention; returns the data-in
/// bytes and the completion.
fn answer(
    features: DeviceFeatures,
    cdb: &[u8],
    prepare: &dyn Fn(&mut TestLun<'_>, &mut [u8]),
) -> (Vec<u8>, CommandCompletion) {
    let groups = [
        PortGroup::new(0x11, AccessState::ActiveOptimized, &[3]),
        PortGroup::new(0x22, AccessState::Standby, &[4]),
    ];
    let config = lun_config().with_alua(1, &groups);
    let mut disk_bytes = vec![0u8; 128 * 512];
    let disk = RamDisk::<16>::new(&mut disk_bytes, 512)
        .unwrap()
        .with_features(features);
    let mut lun: TestLun<'_> = Lun::new(Recorder::new(disk), config);
    let mut mem = vec![0u8; 8192];
    clear_ua(&mut lun, &mut mem, 1);
    prepare(&mut lun, &mut mem);
    let len = 4096u32;
    let c = exec_on(
        &mut lun,
        &mut mem,
        1,
        3,
        cdb,
        DataDirection::FromDevice,
        len,
    );
    let n = match c.residual {
        Residual::Underflow(r) => len as usize - r as usize,
        _ => len as usize,
    };
    (mem[..n].to_vec(), c)
}

fn vpd(features: DeviceFeatures, page: u8) -> String {
    let cdb = bytes(CdbRepr::Inquiry {
        evpd: true,
        page_code: page,
        allocation_length: 4096,
    });
    let (data, c) = answer(features, &cdb, &|_, _| {});
    assert!(c.is_good(), "{c:?}");
    decode("sg_vpd", &data, &[])
}

#[test]
fn standard_inquiry_decodes_to_the_configured_identity() {
    let cdb = bytes(CdbRepr::Inquiry {
        evpd: false,
        page_code: 0,
        allocation_length: 4096,
    });
    let (data, c) = answer(THIN, &cdb, &|_, _| {});
    assert!(c.is_good());
    let out = decode("sg_inq", &data, &[]);
    for expected in [
        "PQual=0  PDT=0",
        "version=0x06  [SPC-4]",
        "HiSUP=1  Resp_data_format=2",
        "TPGS=1",
        "MultiP=1",
        "CmdQue=1",
        "Peripheral device type: disk",
        "Vendor identification: ACME",
        "Product identification: VDISK",
        "Product revision level: 0001",
    ] {
        assert_shows(&out, expected);
    }
    let out = decode("sg_inq", &data, &["--descriptors"]);
    for expected in [
        "SAM-5 (no version claimed)",
        "SPC-4 (no version claimed)",
        "SBC-3 (no version claimed)",
    ] {
        assert_shows(&out, expected);
    }
}

#[test]
fn vpd_supported_pages_lists_every_page_we_emit() {
    let out = vpd(THIN, 0x00);
    for expected in [
        "Supported VPD pages [sv]",
        "Unit serial number [sn]",
        "Device identification [di]",
        "Block limits (SBC) [bl]",
        "Block device characteristics (SBC) [bdc]",
        "Logical block provisioning (SBC) [lbpv]",
    ] {
        assert_shows(&out, expected);
    }
}

#[test]
fn vpd_unit_serial_number() {
    assert_shows(&vpd(THIN, 0x80), "Unit serial number: SN-12345");
}

#[test]
fn vpd_device_identification_designators() {
    let out = vpd(THIN, 0x83);
    for expected in [
        "designator type: NAA,  code set: Binary",
        "0x5001405012345678",
        "designator type: T10 vendor identification,  code set: ASCII",
        "vendor id: ACME",
        "vendor specific: VDISK           SN-12345",
        "Target port:",
        "Relative target port: 0x3",
        "Target port group: 0x11",
    ] {
        assert_shows(&out, expected);
    }
}

#[test]
fn vpd_block_limits() {
    let out = vpd(THIN, 0xB0);
    for expected in [
        "Write same non-zero (WSNZ): 1",
        "Maximum compare and write length: 1 blocks",
        "Maximum unmap LBA count: 65536",
        "Maximum unmap block descriptor count: 16",
        "Optimal unmap granularity: 1 blocks",
        "Maximum write same length: 0x10000 blocks",
    ] {
        assert_shows(&out, expected);
    }
    let out = vpd(DeviceFeatures::empty(), 0xB0);
    assert_shows(&out, "Maximum compare and write length: 0 blocks");
    assert_shows(&out, "Maximum unmap LBA count: 0");
}

#[test]
fn vpd_block_device_characteristics() {
    assert_shows(&vpd(THIN, 0xB1), "Non-rotating medium (e.g. solid state)");
}

#[test]
fn vpd_logical_block_provisioning_follows_the_device() {
    let out = vpd(THIN, 0xB2);
    for expected in [
        "Unmap command supported (LBPU): 1",
        "Write same (16) with unmap bit supported (LBPWS): 1",
        "Write same (10) with unmap bit supported (LBPWS10): 1",
        "Logical block provisioning read zeros (LBPRZ): 1",
        "Provisioning type: 2 (thin provisioned)",
    ] {
        assert_shows(&out, expected);
    }
    let out = vpd(DeviceFeatures::empty(), 0xB2);
    assert_shows(&out, "Unmap command supported (LBPU): 0");
    assert_shows(&out, "Logical block provisioning read zeros (LBPRZ): 0");
}

#[test]
fn get_lba_status() {
    let cdb = bytes(CdbRepr::GetLbaStatus {
        lba: 10,
        allocation_length: 24,
        report_type: 0,
    });
    let (data, c) = answer(THIN, &cdb, &|_, _| {});
    assert!(c.is_good());
    let out = decode("sg_get_lba_status", &data, &[]);
    assert_shows(
        &out,
        "LBA: 0x000000000000000a  blocks:         118  mapped (or unknown)",
    );
}

fn sense_of(c: &CommandCompletion) -> &[u8] {
    assert_eq!(c.status, scsi::Status::CHECK_CONDITION, "{c:?}");
    &c.sense
}

#[test]
fn sense_invalid_field_in_cdb_with_field_pointer() {
    // RDPROTECT=1 in READ(10): byte 1 bit 5.
    let (_, c) = answer(THIN, &[0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0], &|_, _| {});
    let out = decode_sense(sense_of(&c));
    assert_shows(&out, "Fixed format, current; Sense key: Illegal Request");
    assert_shows(&out, "Additional sense: Invalid field in cdb");
    assert_shows(&out, "Error in Command: byte 1 bit 5");
}

#[test]
fn sense_invalid_opcode_and_lba_out_of_range() {
    let (_, c) = answer(THIN, &[0x02, 0, 0, 0, 0, 0], &|_, _| {});
    assert_shows(
        &decode_sense(sense_of(&c)),
        "Invalid command operation code",
    );
    let read = bytes(CdbRepr::ReadWrite(
        RwKind::Read,
        Rw {
            size: CdbSize::Sixteen,
            lba: 127,
            blocks: 2,
            dpo: false,
            fua: false,
            bytchk: 0,
            group: 0,
        },
    ));
    let (_, c) = answer(THIN, &read, &|_, _| {});
    let out = decode_sense(sense_of(&c));
    assert_shows(&out, "Logical block address out of range");
    assert_shows(&out, "Info fld=0x7f [127]");
}

#[test]
fn sense_unit_attention_and_descriptor_format_miscompare() {
    let repr = scsi::SenseRepr::new(scsi::SenseKey::UNIT_ATTENTION, scsi::Asc::POWER_ON_OCCURRED);
    let out = decode_sense(&repr.to_buf(SenseFormat::Fixed));
    assert_shows(&out, "Sense key: Unit Attention");
    assert_shows(&out, "Additional sense: Power on occurred");
    let repr = scsi::SenseRepr::new(
        scsi::SenseKey::MISCOMPARE,
        scsi::Asc::MISCOMPARE_DURING_VERIFY,
    )
    .with_information(100);
    let out = decode_sense(&repr.to_buf(SenseFormat::Descriptor));
    assert_shows(&out, "Descriptor format, current; Sense key: Miscompare");
    assert_shows(&out, "Miscompare during verify operation");
    assert_shows(&out, "Information: 0x0000000000000064");
    let repr = scsi::SenseRepr::invalid_field_in_parameter_list(6, Some(2));
    let out = decode_sense(&repr.to_buf(SenseFormat::Descriptor));
    assert_shows(&out, "Invalid field in parameter list");
    assert_shows(&out, "Error in Data parameters: byte 6 bit 2");
}

#[test]
fn every_asc_in_our_table_has_the_name_sg3_utils_gives_it() {
    for (asc, name) in scsi::ASC_TABLE {
        let repr = scsi::SenseRepr::new(scsi::SenseKey::ILLEGAL_REQUEST, *asc);
        let out = decode_sense(&repr.to_buf(SenseFormat::Fixed));
        let line = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Additional sense: "))
            .unwrap_or_else(|| panic!("no additional sense line for {asc:?}:\n{out}"));
        assert_eq!(line.to_ascii_uppercase(), *name, "ASC {asc:?}");
    }
}

#[test]
fn cdbs_we_emit_are_named_by_sg_decode_sense() {
    let cases: [(CdbRepr, &str); 6] = [
        (
            CdbRepr::ReadWrite(
                RwKind::Read,
                Rw {
                    size: CdbSize::Ten,
                    lba: 0x1234,
                    blocks: 8,
                    dpo: false,
                    fua: true,
                    bytchk: 0,
                    group: 0,
                },
            ),
            "Read(10)",
        ),
        (
            CdbRepr::CompareAndWrite {
                lba: 1,
                blocks: 1,
                dpo: false,
                fua: false,
                group: 0,
            },
            "Compare and write",
        ),
        (
            CdbRepr::ReadCapacity16 {
                lba: 0,
                pmi: false,
                allocation_length: 32,
            },
            "Read capacity(16)",
        ),
        (
            CdbRepr::Unmap {
                anchor: false,
                group: 0,
                parameter_list_length: 24,
            },
            "Unmap",
        ),
        (
            CdbRepr::ReportTargetPortGroups {
                extended: true,
                allocation_length: 64,
            },
            "Report target port groups",
        ),
        (
            CdbRepr::PersistentReserveOut {
                action: 4,
                scope: 0,
                kind: 3,
                parameter_list_length: 24,
            },
            "Persistent reserve out, preempt",
        ),
    ];
    for (repr, name) in cases {
        let hex: Vec<String> = bytes(repr).iter().map(|b| format!("{b:02x}")).collect();
        let mut args = vec!["--cdb"];
        args.extend(hex.iter().map(String::as_str));
        let out = tool("sg_decode_sense", &args);
        assert_shows(&out, name);
    }
}

#[test]
fn every_command_we_know_has_the_name_sg3_utils_gives_it() {
    for spec in scsi::COMMANDS {
        let mut cdb = vec![0u8; usize::from(spec.cdb_len)];
        cdb[0] = spec.opcode;
        if let Some(sa) = spec.service_action {
            cdb[1] = sa;
        }
        // The minimal CDB is one we parse.
        let view = scsi::Cdb::new_checked(&cdb[..]).unwrap();
        assert!(CdbRepr::parse(&view).is_ok(), "{}", spec.name);
        let hex: Vec<String> = cdb.iter().map(|b| format!("{b:02x}")).collect();
        let mut args = vec!["--cdb"];
        args.extend(hex.iter().map(String::as_str));
        let out = tool("sg_decode_sense", &args);
        assert_eq!(out.trim().to_ascii_uppercase(), spec.name, "{cdb:02x?}");
    }
}

#[test]
fn sense_from_a_lun_in_descriptor_format_carries_a_64_bit_lba() {
    let mut config = lun_config();
    config.descriptor_sense = true;
    let mut disk_bytes = vec![0u8; 16 * 512];
    let disk = RamDisk::<16>::new(&mut disk_bytes, 512).unwrap();
    let mut lun: TestLun<'_> = Lun::new(Recorder::new(disk), config);
    let mut mem = vec![0u8; 4096];
    clear_ua(&mut lun, &mut mem, 1);
    let read = bytes(CdbRepr::ReadWrite(
        RwKind::Read,
        Rw {
            size: CdbSize::Sixteen,
            lba: 0x1_0000_0000,
            blocks: 1,
            dpo: false,
            fua: false,
            bytchk: 0,
            group: 0,
        },
    ));
    let c = exec(&mut lun, &mut mem, 1, &read, DataDirection::FromDevice, 512);
    let out = decode_sense(sense_of(&c));
    assert_shows(
        &out,
        "Descriptor format, current; Sense key: Illegal Request",
    );
    assert_shows(&out, "Logical block address out of range");
    assert_shows(&out, "Information: 0x0000000100000000");
}

#[test]
fn get_lba_status_shows_deallocated_extents() {
    let unmap_8_to_16 = |lun: &mut TestLun<'_>, mem: &mut [u8]| {
        let mut p = [0u8; 24];
        p[0..2].copy_from_slice(&22u16.to_be_bytes());
        p[2..4].copy_from_slice(&16u16.to_be_bytes());
        p[8..16].copy_from_slice(&8u64.to_be_bytes());
        p[16..20].copy_from_slice(&8u32.to_be_bytes());
        mem[..24].copy_from_slice(&p);
        let unmap = bytes(CdbRepr::Unmap {
            anchor: false,
            group: 0,
            parameter_list_length: 24,
        });
        assert!(exec(lun, mem, 1, &unmap, DataDirection::ToDevice, 24).is_good());
    };
    let cdb = bytes(CdbRepr::GetLbaStatus {
        lba: 4,
        allocation_length: 4096,
        report_type: 0,
    });
    let (data, c) = answer(THIN, &cdb, &unmap_8_to_16);
    assert!(c.is_good());
    let out = decode("sg_get_lba_status", &data, &["--maxlen=4096"]);
    assert_shows(
        &out,
        "[1] LBA: 0x0000000000000004 blocks: 4 mapped (or unknown)",
    );
    assert_shows(&out, "[2] LBA: 0x0000000000000008 blocks: 8 deallocated");
    assert_shows(
        &out,
        "[3] LBA: 0x0000000000000010 blocks: 112 mapped (or unknown)",
    );
}
