//! SPC/SBC semantics of the emulated `Lun`, command by command.

mod common;

use block::{DeviceFeatures, Operation, RamDisk, RequestFlags};
use common::*;
use scsi::cdb::{CdbRepr, CdbSize, Rw, RwKind};
use scsi::{
    AccessState, Asc, DataDirection, Lun, PortGroup, Residual, SenseKey, SenseKeySpecific, Status,
};

fn bytes(repr: CdbRepr) -> Vec<u8> {
    repr.to_bytes()[..repr.buffer_len()].to_vec()
}

fn rw(kind: RwKind, size: CdbSize, lba: u64, blocks: u32, fua: bool) -> Vec<u8> {
    bytes(CdbRepr::ReadWrite(
        kind,
        Rw {
            size,
            lba,
            blocks,
            dpo: false,
            fua,
            bytchk: 0,
            group: 0,
        },
    ))
}

macro_rules! rig {
    ($lun:ident, $mem:ident, $blocks:expr) => {
        rig!(
            $lun,
            $mem,
            $blocks,
            lun_config(),
            DeviceFeatures::UNMAP
                | DeviceFeatures::WRITE_ZEROES
                | DeviceFeatures::COMPARE_AND_WRITE
                | DeviceFeatures::UNMAP_READS_ZERO
                | DeviceFeatures::VOLATILE_CACHE
        )
    };
    ($lun:ident, $mem:ident, $blocks:expr, $config:expr, $features:expr) => {
        let mut disk_bytes = vec![0u8; $blocks * 512];
        let disk = RamDisk::<16>::new(&mut disk_bytes, 512)
            .unwrap()
            .with_features($features);
        let mut $lun: TestLun<'_> = Lun::new(Recorder::new(disk), $config);
        let mut $mem = vec![0u8; 64 * 1024];
    };
}

const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];

#[test]
fn power_on_unit_attention_is_reported_once_and_inquiry_is_exempt() {
    rig!(lun, mem, 64);
    let inq = bytes(CdbRepr::Inquiry {
        evpd: false,
        page_code: 0,
        allocation_length: 96,
    });
    let c = exec(&mut lun, &mut mem, 1, &inq, DataDirection::FromDevice, 96);
    assert!(c.is_good());
    assert_eq!(c.residual, Residual::Underflow(96 - 74));
    let c = exec(&mut lun, &mut mem, 1, &TUR, DataDirection::None, 0);
    assert_eq!(c.status, Status::CHECK_CONDITION);
    let s = sense(&c);
    assert_eq!(
        (s.key, s.asc),
        (SenseKey::UNIT_ATTENTION, Asc::POWER_ON_OCCURRED)
    );
    assert!(exec(&mut lun, &mut mem, 1, &TUR, DataDirection::None, 0).is_good());
    // A second initiator gets its own.
    let c = exec(&mut lun, &mut mem, 2, &TUR, DataDirection::None, 0);
    assert_eq!(sense(&c).asc, Asc::POWER_ON_OCCURRED);
}

#[test]
fn request_sense_returns_and_clears_the_unit_attention() {
    rig!(lun, mem, 64);
    let rs = bytes(CdbRepr::RequestSense {
        desc: false,
        allocation_length: 18,
    });
    let c = exec(&mut lun, &mut mem, 1, &rs, DataDirection::FromDevice, 18);
    assert!(c.is_good());
    assert_eq!(mem[0], 0x70);
    assert_eq!(mem[2], 0x06);
    assert_eq!((mem[12], mem[13]), (0x29, 0x01));
    let c = exec(&mut lun, &mut mem, 1, &rs, DataDirection::FromDevice, 18);
    assert!(c.is_good());
    assert_eq!((mem[2], mem[12]), (0x00, 0x00));
}

#[test]
fn read_write_round_trip_with_fua_and_residuals() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    for (i, b) in mem[..2048].iter_mut().enumerate() {
        *b = i as u8;
    }
    let w = rw(RwKind::Write, CdbSize::Ten, 8, 4, true);
    let c = exec(&mut lun, &mut mem, 1, &w, DataDirection::ToDevice, 2048);
    assert!(c.is_good(), "{c:?}");
    assert_eq!(lun.device().log.last().unwrap().3, RequestFlags::FUA);
    mem[..4096].fill(0);
    // A longer buffer: underflow.
    let r = rw(RwKind::Read, CdbSize::Sixteen, 8, 4, false);
    let c = exec(&mut lun, &mut mem, 1, &r, DataDirection::FromDevice, 4096);
    assert!(c.is_good());
    assert_eq!(c.residual, Residual::Underflow(2048));
    assert!(mem[..2048].iter().enumerate().all(|(i, b)| *b == i as u8));
    // A shorter buffer: overflow, the whole blocks that fit are read.
    mem[..2048].fill(0);
    let r = rw(RwKind::Read, CdbSize::Twelve, 8, 4, false);
    let c = exec(&mut lun, &mut mem, 1, &r, DataDirection::FromDevice, 1024);
    assert!(c.is_good());
    assert_eq!(c.residual, Residual::Overflow(1024));
    assert!(mem[..1024].iter().enumerate().all(|(i, b)| *b == i as u8));
    assert!(mem[1024..2048].iter().all(|b| *b == 0));
    // READ(6) with length 0 reads 256 blocks: out of range on a 64-block disk.
    let r6 = rw(RwKind::Read, CdbSize::Six, 0, 256, false);
    let c = exec(&mut lun, &mut mem, 1, &r6, DataDirection::FromDevice, 4096);
    assert_eq!(sense(&c).asc, Asc::LBA_OUT_OF_RANGE);
}

#[test]
fn write_with_mismatched_buffer_is_refused() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    let w = rw(RwKind::Write, CdbSize::Ten, 0, 2, false);
    let c = exec(&mut lun, &mut mem, 1, &w, DataDirection::ToDevice, 512);
    assert_eq!(sense(&c).asc, Asc::INVALID_FIELD_IN_COMMAND_IU);
    assert!(lun.device().log.is_empty(), "nothing reached the device");
}

#[test]
fn lba_out_of_range_reports_the_lba() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    let r = rw(RwKind::Read, CdbSize::Sixteen, 63, 2, false);
    let c = exec(&mut lun, &mut mem, 1, &r, DataDirection::FromDevice, 1024);
    let s = sense(&c);
    assert_eq!(
        (s.key, s.asc, s.information),
        (SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE, Some(63))
    );
    let r = rw(RwKind::Read, CdbSize::Sixteen, u64::MAX, 2, false);
    let c = exec(&mut lun, &mut mem, 1, &r, DataDirection::FromDevice, 1024);
    assert_eq!(sense(&c).asc, Asc::LBA_OUT_OF_RANGE);
}

#[test]
fn unsupported_opcode_and_invalid_fields() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    let c = exec(
        &mut lun,
        &mut mem,
        1,
        &[0x02, 0, 0, 0, 0, 0],
        DataDirection::None,
        0,
    );
    let s = sense(&c);
    assert_eq!(
        (s.key, s.asc),
        (
            SenseKey::ILLEGAL_REQUEST,
            Asc::INVALID_COMMAND_OPERATION_CODE
        )
    );
    // RDPROTECT on READ(10): byte 1, bit 7 is the top set bit of 0xE0.
    let c = exec(
        &mut lun,
        &mut mem,
        1,
        &[0x28, 0xE0, 0, 0, 0, 0, 0, 0, 1, 0],
        DataDirection::FromDevice,
        512,
    );
    let s = sense(&c);
    assert_eq!(s.asc, Asc::INVALID_FIELD_IN_CDB);
    assert_eq!(
        s.key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: true,
            bit: Some(7),
            byte: 1
        })
    );
    // Unknown VPD page.
    let inq = bytes(CdbRepr::Inquiry {
        evpd: true,
        page_code: 0x42,
        allocation_length: 64,
    });
    let c = exec(&mut lun, &mut mem, 1, &inq, DataDirection::FromDevice, 64);
    assert_eq!(
        sense(&c).key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: true,
            bit: None,
            byte: 2
        })
    );
    // Unknown service action of SERVICE ACTION IN (16).
    let mut sai = [0u8; 16];
    sai[0] = 0x9E;
    sai[1] = 0x1F;
    let c = exec(&mut lun, &mut mem, 1, &sai, DataDirection::FromDevice, 32);
    assert_eq!(
        sense(&c).key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: true,
            bit: Some(4),
            byte: 1
        })
    );
}

#[test]
fn write_protection() {
    let mut config = lun_config();
    config.write_protect = true;
    rig!(
        lun,
        mem,
        64,
        config,
        DeviceFeatures::UNMAP | DeviceFeatures::WRITE_ZEROES
    );
    clear_ua(&mut lun, &mut mem, 1);
    let w = rw(RwKind::Write, CdbSize::Ten, 0, 1, false);
    let c = exec(&mut lun, &mut mem, 1, &w, DataDirection::ToDevice, 512);
    let s = sense(&c);
    assert_eq!(
        (s.key, s.asc),
        (SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED)
    );
    // MODE SENSE shows WP.
    let ms = bytes(CdbRepr::ModeSense {
        ten: false,
        llbaa: false,
        dbd: true,
        page_control: 0,
        page_code: 0x08,
        subpage_code: 0,
        allocation_length: 255,
    });
    let c = exec(&mut lun, &mut mem, 1, &ms, DataDirection::FromDevice, 255);
    assert!(c.is_good());
    assert_eq!(mem[2] & 0x80, 0x80);
}

#[test]
fn compare_and_write_success_and_miscompare_offset() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    let caw = bytes(CdbRepr::CompareAndWrite {
        lba: 5,
        blocks: 1,
        dpo: false,
        fua: false,
        group: 0,
    });
    // Block 5 is zeros: compare zeros, write 0xAB.
    mem[..512].fill(0);
    mem[512..1024].fill(0xAB);
    let c = exec(&mut lun, &mut mem, 1, &caw, DataDirection::ToDevice, 1024);
    assert!(c.is_good(), "{c:?}");
    // Now the block holds 0xAB; compare against a buffer that differs at byte 100.
    mem[..512].fill(0xAB);
    mem[100] = 0;
    mem[512..1024].fill(0xCD);
    let c = exec(&mut lun, &mut mem, 1, &caw, DataDirection::ToDevice, 1024);
    let s = sense(&c);
    assert_eq!(
        (s.key, s.asc, s.information),
        (
            SenseKey::MISCOMPARE,
            Asc::MISCOMPARE_DURING_VERIFY,
            Some(100)
        )
    );
    // Unchanged: read back.
    let r = rw(RwKind::Read, CdbSize::Ten, 5, 1, false);
    let c = exec(&mut lun, &mut mem, 1, &r, DataDirection::FromDevice, 512);
    assert!(c.is_good());
    assert!(mem[..512].iter().all(|b| *b == 0xAB));
    // Too long.
    let caw2 = bytes(CdbRepr::CompareAndWrite {
        lba: 5,
        blocks: 2,
        dpo: false,
        fua: false,
        group: 0,
    });
    let c = exec(&mut lun, &mut mem, 1, &caw2, DataDirection::ToDevice, 2048);
    assert_eq!(
        sense(&c).key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: true,
            bit: None,
            byte: 13
        })
    );
}

#[test]
fn compare_and_write_is_an_invalid_opcode_without_device_support() {
    rig!(lun, mem, 64, lun_config(), DeviceFeatures::empty());
    clear_ua(&mut lun, &mut mem, 1);
    let caw = bytes(CdbRepr::CompareAndWrite {
        lba: 5,
        blocks: 1,
        dpo: false,
        fua: false,
        group: 0,
    });
    let c = exec(&mut lun, &mut mem, 1, &caw, DataDirection::ToDevice, 1024);
    assert_eq!(sense(&c).asc, Asc::INVALID_COMMAND_OPERATION_CODE);
    let unmap = bytes(CdbRepr::Unmap {
        anchor: false,
        group: 0,
        parameter_list_length: 24,
    });
    let c = exec(&mut lun, &mut mem, 1, &unmap, DataDirection::ToDevice, 24);
    assert_eq!(sense(&c).asc, Asc::INVALID_COMMAND_OPERATION_CODE);
}

#[test]
fn synchronize_cache_is_a_flush() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    let sc = bytes(CdbRepr::SynchronizeCache {
        sixteen: false,
        immed: false,
        lba: 0,
        blocks: 0,
        group: 0,
    });
    assert!(exec(&mut lun, &mut mem, 1, &sc, DataDirection::None, 0).is_good());
    assert_eq!(lun.device().log.last().unwrap().0, Operation::Flush);
    let sc = bytes(CdbRepr::SynchronizeCache {
        sixteen: true,
        immed: false,
        lba: 60,
        blocks: 8,
        group: 0,
    });
    assert_eq!(
        sense(&exec(&mut lun, &mut mem, 1, &sc, DataDirection::None, 0)).asc,
        Asc::LBA_OUT_OF_RANGE
    );
}

#[test]
fn unmap_and_write_same() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    // Fill blocks 0..16 with 0xEE.
    mem[..8192].fill(0xEE);
    let w = rw(RwKind::Write, CdbSize::Ten, 0, 16, false);
    assert!(exec(&mut lun, &mut mem, 1, &w, DataDirection::ToDevice, 8192).is_good());
    // UNMAP blocks 2..4 and 10..11.
    let mut p = [0u8; 40];
    p[0..2].copy_from_slice(&38u16.to_be_bytes());
    p[2..4].copy_from_slice(&32u16.to_be_bytes());
    p[8..16].copy_from_slice(&2u64.to_be_bytes());
    p[16..20].copy_from_slice(&2u32.to_be_bytes());
    p[24..32].copy_from_slice(&10u64.to_be_bytes());
    p[32..36].copy_from_slice(&1u32.to_be_bytes());
    mem[..40].copy_from_slice(&p);
    let unmap = bytes(CdbRepr::Unmap {
        anchor: false,
        group: 0,
        parameter_list_length: 40,
    });
    let c = exec(&mut lun, &mut mem, 1, &unmap, DataDirection::ToDevice, 40);
    assert!(c.is_good(), "{c:?}");
    let unmaps: Vec<_> = lun
        .device()
        .log
        .iter()
        .filter(|l| l.0 == Operation::Unmap)
        .map(|l| (l.1, l.2))
        .collect();
    assert_eq!(unmaps, vec![(2, 2), (10, 1)]);
    // WRITE SAME (16) of a non-zero pattern over 20 blocks: repeated writes.
    mem[..512].fill(0x5A);
    let ws = bytes(CdbRepr::WriteSame {
        sixteen: true,
        lba: 20,
        blocks: 20,
        unmap: false,
        anchor: false,
        ndob: false,
        group: 0,
    });
    let c = exec(&mut lun, &mut mem, 1, &ws, DataDirection::ToDevice, 512);
    assert!(c.is_good(), "{c:?}");
    let r = rw(RwKind::Read, CdbSize::Ten, 20, 20, false);
    mem[..10240].fill(0);
    assert!(exec(&mut lun, &mut mem, 1, &r, DataDirection::FromDevice, 10240).is_good());
    assert!(mem[..10240].iter().all(|b| *b == 0x5A));
    // WRITE SAME (10) with UNMAP and zeros: one write-zeroes that may unmap.
    mem[..512].fill(0);
    let ws = bytes(CdbRepr::WriteSame {
        sixteen: false,
        lba: 0,
        blocks: 8,
        unmap: true,
        anchor: false,
        ndob: false,
        group: 0,
    });
    assert!(exec(&mut lun, &mut mem, 1, &ws, DataDirection::ToDevice, 512).is_good());
    let last = *lun.device().log.last().unwrap();
    assert_eq!(
        (last.0, last.3),
        (Operation::WriteZeroes, RequestFlags::MAY_UNMAP)
    );
    // Zero blocks is refused (WSNZ), pointing at the NUMBER OF LOGICAL BLOCKS field.
    let ws = bytes(CdbRepr::WriteSame {
        sixteen: false,
        lba: 0,
        blocks: 0,
        unmap: false,
        anchor: false,
        ndob: false,
        group: 0,
    });
    let c = exec(&mut lun, &mut mem, 1, &ws, DataDirection::ToDevice, 512);
    assert_eq!(
        sense(&c).key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: true,
            bit: None,
            byte: 7
        })
    );
    // UNMAP with a descriptor past the end.
    p[24..32].copy_from_slice(&63u64.to_be_bytes());
    p[32..36].copy_from_slice(&2u32.to_be_bytes());
    mem[..40].copy_from_slice(&p);
    let c = exec(&mut lun, &mut mem, 1, &unmap, DataDirection::ToDevice, 40);
    assert_eq!(sense(&c).asc, Asc::LBA_OUT_OF_RANGE);
    // UNMAP with a 4-byte parameter list.
    let short = bytes(CdbRepr::Unmap {
        anchor: false,
        group: 0,
        parameter_list_length: 4,
    });
    let c = exec(&mut lun, &mut mem, 1, &short, DataDirection::ToDevice, 4);
    assert_eq!(sense(&c).asc, Asc::PARAMETER_LIST_LENGTH_ERROR);
}

#[test]
fn capacity_change_and_reset_raise_unit_attentions() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    lun.device_mut().block_count = Some(32);
    let c = exec(&mut lun, &mut mem, 1, &TUR, DataDirection::None, 0);
    assert_eq!(sense(&c).asc, Asc::CAPACITY_DATA_HAS_CHANGED);
    let rc = bytes(CdbRepr::ReadCapacity10 { lba: 0, pmi: false });
    let c = exec(&mut lun, &mut mem, 1, &rc, DataDirection::FromDevice, 8);
    assert!(c.is_good());
    assert_eq!(&mem[..8], &[0, 0, 0, 31, 0, 0, 2, 0]);
    lun.reset();
    let c = exec(&mut lun, &mut mem, 1, &TUR, DataDirection::None, 0);
    assert_eq!(sense(&c).asc, Asc::BUS_DEVICE_RESET_FUNCTION_OCCURRED);
    assert!(exec(&mut lun, &mut mem, 1, &TUR, DataDirection::None, 0).is_good());
}

#[test]
fn spc2_reservations() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    clear_ua(&mut lun, &mut mem, 2);
    let reserve = bytes(CdbRepr::Reserve { ten: false });
    let release = bytes(CdbRepr::Release { ten: true });
    assert!(exec(&mut lun, &mut mem, 1, &reserve, DataDirection::None, 0).is_good());
    let r = rw(RwKind::Read, CdbSize::Ten, 0, 1, false);
    assert_eq!(
        exec(&mut lun, &mut mem, 2, &r, DataDirection::FromDevice, 512).status,
        Status::RESERVATION_CONFLICT
    );
    assert_eq!(
        exec(&mut lun, &mut mem, 2, &reserve, DataDirection::None, 0).status,
        Status::RESERVATION_CONFLICT
    );
    // INQUIRY and RELEASE from the other initiator are allowed; RELEASE has no effect.
    let inq = bytes(CdbRepr::Inquiry {
        evpd: false,
        page_code: 0,
        allocation_length: 36,
    });
    assert!(exec(&mut lun, &mut mem, 2, &inq, DataDirection::FromDevice, 36).is_good());
    assert!(exec(&mut lun, &mut mem, 2, &release, DataDirection::None, 0).is_good());
    assert!(exec(&mut lun, &mut mem, 1, &r, DataDirection::FromDevice, 512).is_good());
    assert!(exec(&mut lun, &mut mem, 1, &release, DataDirection::None, 0).is_good());
    assert!(exec(&mut lun, &mut mem, 2, &r, DataDirection::FromDevice, 512).is_good());
}

fn pr_out(
    lun: &mut TestLun<'_>,
    mem: &mut [u8],
    initiator: u64,
    action: u8,
    kind: u8,
    key: u64,
    sa_key: u64,
) -> scsi::CommandCompletion {
    let cdb = bytes(CdbRepr::PersistentReserveOut {
        action,
        scope: 0,
        kind,
        parameter_list_length: 24,
    });
    mem[..24].fill(0);
    mem[..8].copy_from_slice(&key.to_be_bytes());
    mem[8..16].copy_from_slice(&sa_key.to_be_bytes());
    exec(lun, mem, initiator, &cdb, DataDirection::ToDevice, 24)
}

#[test]
fn persistent_reservations_register_reserve_preempt_release_clear() {
    rig!(lun, mem, 64);
    for i in 1..=3 {
        clear_ua(&mut lun, &mut mem, i);
    }
    let read = rw(RwKind::Read, CdbSize::Ten, 0, 1, false);
    let write = rw(RwKind::Write, CdbSize::Ten, 0, 1, false);
    // Register 1 and 2; a wrong key is a conflict.
    assert!(pr_out(&mut lun, &mut mem, 1, 0, 0, 0, 0xA).is_good());
    assert!(pr_out(&mut lun, &mut mem, 2, 0, 0, 0, 0xB).is_good());
    assert_eq!(
        pr_out(&mut lun, &mut mem, 2, 0, 0, 0x99, 0xC).status,
        Status::RESERVATION_CONFLICT
    );
    // READ KEYS.
    let rk = bytes(CdbRepr::PersistentReserveIn {
        action: 0,
        allocation_length: 64,
    });
    let c = exec(&mut lun, &mut mem, 3, &rk, DataDirection::FromDevice, 64);
    assert!(c.is_good());
    assert_eq!(&mem[4..8], &16u32.to_be_bytes());
    assert_eq!(&mem[8..16], &0xAu64.to_be_bytes());
    // 1 reserves WRITE EXCLUSIVE: 2 and 3 may read, not write.
    assert!(pr_out(&mut lun, &mut mem, 1, 1, 1, 0xA, 0).is_good());
    assert!(exec(&mut lun, &mut mem, 3, &read, DataDirection::FromDevice, 512).is_good());
    assert_eq!(
        exec(&mut lun, &mut mem, 2, &write, DataDirection::ToDevice, 512).status,
        Status::RESERVATION_CONFLICT
    );
    assert!(exec(&mut lun, &mut mem, 1, &write, DataDirection::ToDevice, 512).is_good());
    // Reserving again with another type is a conflict; SPC-2 RESERVE conflicts too.
    assert_eq!(
        pr_out(&mut lun, &mut mem, 1, 1, 3, 0xA, 0).status,
        Status::RESERVATION_CONFLICT
    );
    assert_eq!(
        exec(
            &mut lun,
            &mut mem,
            1,
            &bytes(CdbRepr::Reserve { ten: false }),
            DataDirection::None,
            0
        )
        .status,
        Status::RESERVATION_CONFLICT
    );
    // READ RESERVATION shows key A, type 1.
    let rr = bytes(CdbRepr::PersistentReserveIn {
        action: 1,
        allocation_length: 64,
    });
    assert!(exec(&mut lun, &mut mem, 3, &rr, DataDirection::FromDevice, 64).is_good());
    assert_eq!(&mem[8..16], &0xAu64.to_be_bytes());
    assert_eq!(mem[21], 1);
    // 2 preempts 1 with EXCLUSIVE ACCESS: 1 is unregistered and gets a unit attention.
    assert!(pr_out(&mut lun, &mut mem, 2, 4, 3, 0xB, 0xA).is_good());
    let c = exec(&mut lun, &mut mem, 1, &TUR, DataDirection::None, 0);
    assert_eq!(sense(&c).asc, Asc::REGISTRATIONS_PREEMPTED);
    assert_eq!(
        exec(&mut lun, &mut mem, 3, &read, DataDirection::FromDevice, 512).status,
        Status::RESERVATION_CONFLICT
    );
    assert!(exec(&mut lun, &mut mem, 2, &read, DataDirection::FromDevice, 512).is_good());
    // Releasing with the wrong type is INVALID RELEASE OF PERSISTENT RESERVATION.
    let c = pr_out(&mut lun, &mut mem, 2, 2, 1, 0xB, 0);
    assert_eq!(
        sense(&c).asc,
        Asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION
    );
    assert!(pr_out(&mut lun, &mut mem, 2, 2, 3, 0xB, 0).is_good());
    assert!(exec(&mut lun, &mut mem, 3, &read, DataDirection::FromDevice, 512).is_good());
    // Registrants-only: 3 registers with REGISTER AND IGNORE, 2 reserves type 6 (EA RO).
    assert!(pr_out(&mut lun, &mut mem, 3, 6, 0, 0x1234, 0xC).is_good());
    assert!(pr_out(&mut lun, &mut mem, 2, 1, 6, 0xB, 0).is_good());
    assert!(exec(&mut lun, &mut mem, 3, &write, DataDirection::ToDevice, 512).is_good());
    assert_eq!(
        exec(&mut lun, &mut mem, 1, &read, DataDirection::FromDevice, 512).status,
        Status::RESERVATION_CONFLICT
    );
    // CLEAR by 3: everyone else gets RESERVATIONS PREEMPTED.
    assert!(pr_out(&mut lun, &mut mem, 3, 3, 0, 0xC, 0).is_good());
    let c = exec(&mut lun, &mut mem, 2, &TUR, DataDirection::None, 0);
    assert_eq!(sense(&c).asc, Asc::RESERVATIONS_PREEMPTED);
    assert!(exec(&mut lun, &mut mem, 1, &write, DataDirection::ToDevice, 512).is_good());
    // All registrants: both registrants may write; the reservation survives one unregistering.
    assert!(pr_out(&mut lun, &mut mem, 1, 0, 0, 0, 0x1).is_good());
    assert!(pr_out(&mut lun, &mut mem, 2, 0, 0, 0, 0x2).is_good());
    assert!(pr_out(&mut lun, &mut mem, 1, 1, 7, 0x1, 0).is_good());
    assert!(exec(&mut lun, &mut mem, 2, &write, DataDirection::ToDevice, 512).is_good());
    assert_eq!(
        exec(&mut lun, &mut mem, 3, &write, DataDirection::ToDevice, 512).status,
        Status::RESERVATION_CONFLICT
    );
    assert!(pr_out(&mut lun, &mut mem, 1, 0, 0, 0x1, 0).is_good());
    assert_eq!(
        exec(&mut lun, &mut mem, 3, &write, DataDirection::ToDevice, 512).status,
        Status::RESERVATION_CONFLICT
    );
    assert!(pr_out(&mut lun, &mut mem, 2, 0, 0, 0x2, 0).is_good());
    assert!(exec(&mut lun, &mut mem, 3, &write, DataDirection::ToDevice, 512).is_good());
    // A bad type and a bad parameter list length.
    let c = pr_out(&mut lun, &mut mem, 1, 1, 2, 0, 0);
    assert_eq!(
        sense(&c).key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: true,
            bit: Some(3),
            byte: 2
        })
    );
    let cdb = bytes(CdbRepr::PersistentReserveOut {
        action: 0,
        scope: 0,
        kind: 0,
        parameter_list_length: 20,
    });
    let c = exec(&mut lun, &mut mem, 1, &cdb, DataDirection::ToDevice, 20);
    assert_eq!(sense(&c).asc, Asc::PARAMETER_LIST_LENGTH_ERROR);
}

#[test]
fn mode_select_switches_to_descriptor_sense() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    clear_ua(&mut lun, &mut mem, 2);
    let ms = bytes(CdbRepr::ModeSense {
        ten: false,
        llbaa: false,
        dbd: true,
        page_control: 0,
        page_code: 0x0A,
        subpage_code: 0,
        allocation_length: 255,
    });
    assert!(exec(&mut lun, &mut mem, 1, &ms, DataDirection::FromDevice, 255).is_good());
    let len = mem[0] as usize + 1;
    assert_eq!(len, 4 + 12);
    let mut page = mem[..len].to_vec();
    page[0] = 0;
    page[2] = 0;
    page[4 + 2] |= 0x04; // D_SENSE
    mem[..len].copy_from_slice(&page);
    let sel = bytes(CdbRepr::ModeSelect {
        ten: false,
        pf: true,
        sp: false,
        parameter_list_length: len as u16,
    });
    let c = exec(
        &mut lun,
        &mut mem,
        1,
        &sel,
        DataDirection::ToDevice,
        len as u32,
    );
    assert!(c.is_good(), "{c:?}");
    let c = exec(
        &mut lun,
        &mut mem,
        1,
        &[0x02, 0, 0, 0, 0, 0],
        DataDirection::None,
        0,
    );
    assert_eq!(c.sense[0], 0x72);
    // The other initiator is told.
    let c = exec(&mut lun, &mut mem, 2, &TUR, DataDirection::None, 0);
    assert_eq!(sense(&c).asc, Asc::MODE_PARAMETERS_CHANGED);
    // Changing a non-changeable bit (WCE) is refused with a pointer into the parameter list.
    let ms = bytes(CdbRepr::ModeSense {
        ten: false,
        llbaa: false,
        dbd: true,
        page_control: 0,
        page_code: 0x08,
        subpage_code: 0,
        allocation_length: 255,
    });
    assert!(exec(&mut lun, &mut mem, 1, &ms, DataDirection::FromDevice, 255).is_good());
    let len = mem[0] as usize + 1;
    mem[0] = 0;
    mem[4 + 2] ^= 0x04;
    let sel = bytes(CdbRepr::ModeSelect {
        ten: false,
        pf: true,
        sp: false,
        parameter_list_length: len as u16,
    });
    let c = exec(
        &mut lun,
        &mut mem,
        1,
        &sel,
        DataDirection::ToDevice,
        len as u32,
    );
    let s = sense(&c);
    assert_eq!(s.asc, Asc::INVALID_FIELD_IN_PARAMETER_LIST);
    assert_eq!(
        s.key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: false,
            bit: Some(2),
            byte: 6
        })
    );
    // Saved values are not supported.
    let ms = bytes(CdbRepr::ModeSense {
        ten: true,
        llbaa: false,
        dbd: false,
        page_control: 3,
        page_code: 0x3F,
        subpage_code: 0,
        allocation_length: 255,
    });
    let c = exec(&mut lun, &mut mem, 1, &ms, DataDirection::FromDevice, 255);
    assert_eq!(sense(&c).asc, Asc::SAVING_PARAMETERS_NOT_SUPPORTED);
}

#[test]
fn mode_sense_all_pages_with_block_descriptor() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    let ms = bytes(CdbRepr::ModeSense {
        ten: true,
        llbaa: true,
        dbd: false,
        page_control: 0,
        page_code: 0x3F,
        subpage_code: 0,
        allocation_length: 1024,
    });
    let c = exec(&mut lun, &mut mem, 1, &ms, DataDirection::FromDevice, 1024);
    assert!(c.is_good());
    let total = u16::from_be_bytes([mem[0], mem[1]]) as usize + 2;
    assert_eq!(total, 8 + 16 + 12 + 20 + 12);
    assert_eq!(mem[4] & 1, 1, "LONGLBA");
    assert_eq!(&mem[8..16], &64u64.to_be_bytes());
    assert_eq!(mem[24], 0x01);
    assert_eq!(mem[36], 0x08);
    assert_eq!(mem[38] & 0x04, 0x04, "WCE with a volatile cache");
    assert_eq!(mem[56], 0x0A);
    assert_eq!(c.residual, Residual::Underflow(1024 - total as u64));
}

#[test]
fn report_luns_and_supported_opcodes() {
    rig!(lun, mem, 64);
    let rl = bytes(CdbRepr::ReportLuns {
        select_report: 0,
        allocation_length: 64,
    });
    assert!(exec(&mut lun, &mut mem, 1, &rl, DataDirection::FromDevice, 64).is_good());
    assert_eq!(
        &mem[..16],
        &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    let rl = bytes(CdbRepr::ReportLuns {
        select_report: 0,
        allocation_length: 8,
    });
    let c = exec(&mut lun, &mut mem, 1, &rl, DataDirection::FromDevice, 8);
    assert_eq!(
        sense(&c).key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: true,
            bit: None,
            byte: 6
        })
    );
    clear_ua(&mut lun, &mut mem, 1);
    // One command: READ(10), with its usage bitmap.
    let one = bytes(CdbRepr::ReportSupportedOpcodes {
        rctd: false,
        reporting_options: 1,
        opcode: 0x28,
        service_action: 0,
        allocation_length: 64,
    });
    assert!(exec(&mut lun, &mut mem, 1, &one, DataDirection::FromDevice, 64).is_good());
    assert_eq!(&mem[..4], &[0, 3, 0, 10]);
    assert_eq!(
        &mem[4..14],
        &[0x28, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0xC0]
    );
    // Not supported opcode.
    let one = bytes(CdbRepr::ReportSupportedOpcodes {
        rctd: false,
        reporting_options: 1,
        opcode: 0x02,
        service_action: 0,
        allocation_length: 64,
    });
    assert!(exec(&mut lun, &mut mem, 1, &one, DataDirection::FromDevice, 64).is_good());
    assert_eq!(mem[1] & 7, 1);
    // All commands.
    let all = bytes(CdbRepr::ReportSupportedOpcodes {
        rctd: false,
        reporting_options: 0,
        opcode: 0,
        service_action: 0,
        allocation_length: 4096,
    });
    assert!(exec(&mut lun, &mut mem, 1, &all, DataDirection::FromDevice, 4096).is_good());
    let len = u32::from_be_bytes([mem[0], mem[1], mem[2], mem[3]]) as usize;
    let supported = scsi::COMMANDS.iter().filter(|s| lun.supports(s)).count();
    assert_eq!(len, 8 * supported);
}

#[test]
fn alua_groups_report_set_and_refuse_on_standby() {
    let groups = [
        PortGroup::new(1, AccessState::ActiveOptimized, &[1]),
        PortGroup::new(2, AccessState::Standby, &[2]),
    ];
    let config = lun_config().with_alua(3, &groups);
    rig!(lun, mem, 64, config, DeviceFeatures::UNMAP);
    clear_ua(&mut lun, &mut mem, 1);
    let rtpg = bytes(CdbRepr::ReportTargetPortGroups {
        extended: false,
        allocation_length: 256,
    });
    assert!(exec(&mut lun, &mut mem, 1, &rtpg, DataDirection::FromDevice, 256).is_good());
    assert_eq!(&mem[..4], &24u32.to_be_bytes());
    assert_eq!(mem[4] & 0x0F, 0);
    assert_eq!(&mem[6..8], &1u16.to_be_bytes());
    assert_eq!(mem[16] & 0x0F, 2);
    // A read through the standby port is refused; RTPG through it works.
    let read = rw(RwKind::Read, CdbSize::Ten, 0, 1, false);
    let c = exec_on(
        &mut lun,
        &mut mem,
        1,
        2,
        &read,
        DataDirection::FromDevice,
        512,
    );
    let s = sense(&c);
    assert_eq!(
        (s.key, s.asc),
        (SenseKey::NOT_READY, Asc::TARGET_PORT_STANDBY)
    );
    assert!(
        exec_on(
            &mut lun,
            &mut mem,
            1,
            2,
            &rtpg,
            DataDirection::FromDevice,
            256
        )
        .is_good()
    );
    // SET TARGET PORT GROUPS: group 2 active/optimized, group 1 standby.
    let stpg = bytes(CdbRepr::SetTargetPortGroups {
        parameter_list_length: 12,
    });
    mem[..12].copy_from_slice(&[0, 0, 0, 0, 0x00, 0, 0, 2, 0x02, 0, 0, 1]);
    assert!(exec(&mut lun, &mut mem, 1, &stpg, DataDirection::ToDevice, 12).is_good());
    assert!(
        exec_on(
            &mut lun,
            &mut mem,
            1,
            2,
            &read,
            DataDirection::FromDevice,
            512
        )
        .is_good()
    );
    // Unknown group.
    mem[..8].copy_from_slice(&[0, 0, 0, 0, 0x00, 0, 0, 9]);
    let stpg = bytes(CdbRepr::SetTargetPortGroups {
        parameter_list_length: 8,
    });
    let c = exec(&mut lun, &mut mem, 1, &stpg, DataDirection::ToDevice, 8);
    assert_eq!(
        sense(&c).key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: false,
            bit: None,
            byte: 6
        })
    );
    // An implicit transition raises ASYMMETRIC ACCESS STATE CHANGED.
    assert!(lun.set_port_group_state(2, AccessState::Transitioning));
    let c = exec(&mut lun, &mut mem, 1, &TUR, DataDirection::None, 0);
    assert_eq!(sense(&c).asc, Asc::ASYMMETRIC_ACCESS_STATE_CHANGED);
}

#[test]
fn start_stop_unit_and_get_lba_status() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    let stop = bytes(CdbRepr::StartStopUnit {
        immed: false,
        power_condition_modifier: 0,
        power_condition: 0,
        no_flush: false,
        loej: false,
        start: false,
    });
    assert!(exec(&mut lun, &mut mem, 1, &stop, DataDirection::None, 0).is_good());
    let c = exec(&mut lun, &mut mem, 1, &TUR, DataDirection::None, 0);
    assert_eq!(sense(&c).asc, Asc::INITIALIZING_COMMAND_REQUIRED);
    let start = bytes(CdbRepr::StartStopUnit {
        immed: false,
        power_condition_modifier: 0,
        power_condition: 0,
        no_flush: false,
        loej: false,
        start: true,
    });
    assert!(exec(&mut lun, &mut mem, 1, &start, DataDirection::None, 0).is_good());
    let gls = bytes(CdbRepr::GetLbaStatus {
        lba: 10,
        allocation_length: 24,
        report_type: 0,
    });
    assert!(exec(&mut lun, &mut mem, 1, &gls, DataDirection::FromDevice, 24).is_good());
    assert_eq!(&mem[..4], &20u32.to_be_bytes());
    assert_eq!(&mem[8..16], &10u64.to_be_bytes());
    assert_eq!(&mem[16..20], &54u32.to_be_bytes());
    let gls = bytes(CdbRepr::GetLbaStatus {
        lba: 64,
        allocation_length: 24,
        report_type: 0,
    });
    assert_eq!(
        sense(&exec(
            &mut lun,
            &mut mem,
            1,
            &gls,
            DataDirection::FromDevice,
            24
        ))
        .asc,
        Asc::LBA_OUT_OF_RANGE
    );
}

#[test]
fn read_capacity_16_reports_thin_provisioning() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    let rc = bytes(CdbRepr::ReadCapacity16 {
        lba: 0,
        pmi: false,
        allocation_length: 32,
    });
    assert!(exec(&mut lun, &mut mem, 1, &rc, DataDirection::FromDevice, 32).is_good());
    let d = scsi::response::ReadCapacity16Data::parse(&mem[..32]).unwrap();
    assert_eq!(
        (d.last_lba, d.block_len, d.lbpme, d.lbprz),
        (63, 512, true, true)
    );
}

#[test]
fn verify_write_and_verify_write6_and_prevent_allow() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    // WRITE AND VERIFY (10) is a forced-unit-access write.
    mem[..512].fill(0x11);
    let wav = bytes(CdbRepr::ReadWrite(
        RwKind::WriteAndVerify,
        Rw {
            size: CdbSize::Ten,
            lba: 3,
            blocks: 1,
            dpo: false,
            fua: false,
            bytchk: 0,
            group: 0,
        },
    ));
    assert!(exec(&mut lun, &mut mem, 1, &wav, DataDirection::ToDevice, 512).is_good());
    let last = *lun.device().log.last().unwrap();
    assert_eq!(
        (last.0, last.1, last.3),
        (Operation::Write, 3, RequestFlags::FUA)
    );
    // WRITE (6) then READ (16) back.
    mem[..512].fill(0x22);
    let w6 = rw(RwKind::Write, CdbSize::Six, 4, 1, false);
    assert!(exec(&mut lun, &mut mem, 1, &w6, DataDirection::ToDevice, 512).is_good());
    mem[..1024].fill(0);
    let r = rw(RwKind::Read, CdbSize::Sixteen, 3, 2, false);
    assert!(exec(&mut lun, &mut mem, 1, &r, DataDirection::FromDevice, 1024).is_good());
    assert!(mem[..512].iter().all(|b| *b == 0x11) && mem[512..1024].iter().all(|b| *b == 0x22));
    // VERIFY without byte check is a range check; with byte check it is not supported.
    let v = |bytchk, lba| {
        bytes(CdbRepr::ReadWrite(
            RwKind::Verify,
            Rw {
                size: CdbSize::Sixteen,
                lba,
                blocks: 4,
                dpo: false,
                fua: false,
                bytchk,
                group: 0,
            },
        ))
    };
    assert!(exec(&mut lun, &mut mem, 1, &v(0, 0), DataDirection::None, 0).is_good());
    assert_eq!(
        sense(&exec(
            &mut lun,
            &mut mem,
            1,
            &v(0, 62),
            DataDirection::None,
            0
        ))
        .asc,
        Asc::LBA_OUT_OF_RANGE
    );
    // BYTCHK 01b: blocks 3 and 4 hold 0x11 and 0x22, blocks 5 and 6 zeros.
    mem[..512].fill(0x11);
    mem[512..1024].fill(0x22);
    mem[1024..2048].fill(0);
    let c = exec(
        &mut lun,
        &mut mem,
        1,
        &v(1, 3),
        DataDirection::ToDevice,
        2048,
    );
    assert!(c.is_good(), "{c:?}");
    mem[1500] = 9;
    let c = exec(
        &mut lun,
        &mut mem,
        1,
        &v(1, 3),
        DataDirection::ToDevice,
        2048,
    );
    let s = sense(&c);
    assert_eq!(
        (s.key, s.asc, s.information),
        (
            SenseKey::MISCOMPARE,
            Asc::MISCOMPARE_DURING_VERIFY,
            Some(1500)
        )
    );
    // BYTCHK 11b: one block of data-out against every block of the range.
    mem[..512].fill(0);
    let c = exec(
        &mut lun,
        &mut mem,
        1,
        &v(3, 20),
        DataDirection::ToDevice,
        512,
    );
    assert!(c.is_good(), "{c:?}");
    let c = exec(
        &mut lun,
        &mut mem,
        1,
        &v(3, 2),
        DataDirection::ToDevice,
        512,
    );
    let s = sense(&c);
    assert_eq!(
        (s.key, s.information),
        (SenseKey::MISCOMPARE, Some(512)),
        "block 3 differs at its byte 0"
    );
    // The medium is unchanged by verification.
    let r = rw(RwKind::Read, CdbSize::Ten, 3, 1, false);
    assert!(exec(&mut lun, &mut mem, 1, &r, DataDirection::FromDevice, 512).is_good());
    assert!(mem[..512].iter().all(|b| *b == 0x11));
    // PREVENT ALLOW MEDIUM REMOVAL is accepted on a fixed disk.
    let pa = bytes(CdbRepr::PreventAllowMediumRemoval { prevent: 1 });
    assert!(exec(&mut lun, &mut mem, 1, &pa, DataDirection::None, 0).is_good());
}

#[test]
fn commands_queue_and_complete_exactly_once_with_latency() {
    use block::{Instant, MemAddr, MemoryRegions, SgList, Tag};
    use scsi::{CdbBytes, Command, InitiatorId, Nexus, Transport};
    let mut disk_bytes = vec![0u8; 64 * 512];
    let disk = RamDisk::<4>::new(&mut disk_bytes, 512)
        .unwrap()
        .with_latency(std::time::Duration::from_micros(10));
    let mut lun: Lun<_, 8> = Lun::new(disk, lun_config());
    let mut mem = vec![0u8; 8 * 512];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(0x1000), &mut mem).unwrap();
    let nexus = Nexus {
        initiator: InitiatorId(1),
        target_port: 0,
        lun: 0,
    };
    let read = |tag: u64| {
        let cdb = CdbBytes::new(&rw(RwKind::Read, CdbSize::Ten, tag, 1, false)).unwrap();
        Command {
            attribute: scsi::TaskAttribute::Simple,
            tag: Tag(tag),
            nexus,
            cdb,
            direction: DataDirection::FromDevice,
            sg: SgList::single(MemAddr(0x1000 + 512 * tag), 512).unwrap(),
        }
    };
    // The first command takes the power-on unit attention.
    for tag in 0..8 {
        lun.submit(Instant(0), read(tag)).unwrap();
    }
    assert!(lun.submit(Instant(0), read(9)).is_err(), "queue full");
    let mut seen = Vec::new();
    let mut now = Instant(0);
    for _ in 0..32 {
        let next = lun.poll(now, &mut memory, &mut |c| seen.push((c.tag.0, c.status)));
        match next {
            Some(t) => now = t,
            None if lun.outstanding() == 0 => break,
            None => {}
        }
    }
    seen.sort_by_key(|(tag, _)| *tag);
    assert_eq!(seen.len(), 8);
    assert_eq!(
        seen.iter()
            .filter(|(_, s)| *s == Status::CHECK_CONDITION)
            .count(),
        1
    );
    assert_eq!(
        now,
        Instant(20_000),
        "the device's 4 slots served 7 reads in two rounds"
    );
}

#[test]
fn commands_to_another_lun_are_not_supported() {
    use block::{Instant, MemAddr, MemoryRegions, SgList, Tag};
    use scsi::{CdbBytes, Command, InitiatorId, Nexus, run_to_completion};
    let mut disk_bytes = vec![0u8; 64 * 512];
    let disk = RamDisk::<4>::new(&mut disk_bytes, 512).unwrap();
    let mut lun: Lun<_, 4> = Lun::new(disk, lun_config().with_lun(3));
    let mut mem = vec![0u8; 512];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(0x1000), &mut mem).unwrap();
    let mut run = |lun_number: u64, cdb: &[u8]| {
        let command = Command {
            attribute: scsi::TaskAttribute::Simple,
            tag: Tag(1),
            nexus: Nexus {
                initiator: InitiatorId(1),
                target_port: 0,
                lun: lun_number,
            },
            cdb: CdbBytes::new(cdb).unwrap(),
            direction: DataDirection::FromDevice,
            sg: SgList::single(MemAddr(0x1000), 64).unwrap(),
        };
        let (c, _) =
            run_to_completion(&mut lun, &mut memory, Instant(0), command, 8, &mut |_| {}).unwrap();
        let mut data = [0u8; 16];
        memory_read(&memory, &mut data);
        (c, data)
    };
    fn memory_read(memory: &MemoryRegions<'_, 1>, out: &mut [u8]) {
        use block::Memory;
        memory.read(MemAddr(0x1000), out).unwrap();
    }
    let inq = bytes(CdbRepr::Inquiry {
        evpd: false,
        page_code: 0,
        allocation_length: 36,
    });
    let (c, data) = run(5, &inq);
    assert!(c.is_good());
    assert_eq!(data[0], 0x7F, "peripheral qualifier 3, no device type");
    let (c, _) = run(5, &TUR);
    assert_eq!(sense(&c).asc, Asc::LOGICAL_UNIT_NOT_SUPPORTED);
    let rl = bytes(CdbRepr::ReportLuns {
        select_report: 0,
        allocation_length: 16,
    });
    let (c, data) = run(5, &rl);
    assert!(c.is_good());
    assert_eq!(
        &data[..16],
        &[0, 0, 0, 8, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0]
    );
    // The LU itself answers on LUN 3.
    let (c, data) = run(3, &inq);
    assert!(c.is_good());
    assert_eq!(data[0], 0x00);
}

#[test]
fn preempting_with_another_type_releases_for_the_other_registrants() {
    rig!(lun, mem, 64);
    for i in 1..=3 {
        clear_ua(&mut lun, &mut mem, i);
    }
    assert!(pr_out(&mut lun, &mut mem, 1, 0, 0, 0, 0xA).is_good());
    assert!(pr_out(&mut lun, &mut mem, 2, 0, 0, 0, 0xB).is_good());
    assert!(pr_out(&mut lun, &mut mem, 3, 0, 0, 0, 0xC).is_good());
    assert!(pr_out(&mut lun, &mut mem, 1, 1, 1, 0xA, 0).is_good());
    // 2 preempts 1 and changes the type: 1 loses its registration, 3 is told of the release.
    assert!(pr_out(&mut lun, &mut mem, 2, 4, 3, 0xB, 0xA).is_good());
    assert_eq!(
        lun.pending_unit_attentions(scsi::InitiatorId(1)),
        &[Asc::REGISTRATIONS_PREEMPTED]
    );
    assert_eq!(
        lun.pending_unit_attentions(scsi::InitiatorId(3)),
        &[Asc::RESERVATIONS_RELEASED]
    );
    assert!(lun.pending_unit_attentions(scsi::InitiatorId(2)).is_empty());
    // PREEMPT of a key nobody holds is a conflict.
    assert_eq!(
        pr_out(&mut lun, &mut mem, 2, 4, 3, 0xB, 0x77).status,
        Status::RESERVATION_CONFLICT
    );
}

#[test]
fn changing_the_lun_inventory_raises_a_unit_attention() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    lun.set_report_luns(&[0, 1, 300]);
    let c = exec(&mut lun, &mut mem, 1, &TUR, DataDirection::None, 0);
    assert_eq!(sense(&c).asc, Asc::REPORTED_LUNS_DATA_HAS_CHANGED);
    let rl = bytes(CdbRepr::ReportLuns {
        select_report: 0,
        allocation_length: 64,
    });
    assert!(exec(&mut lun, &mut mem, 1, &rl, DataDirection::FromDevice, 64).is_good());
    let luns: Vec<u64> = scsi::response::parse_report_luns(&mem[..64])
        .unwrap()
        .collect();
    assert_eq!(luns, vec![0, 1, 300]);
}

#[test]
fn synchronize_cache_with_immed_reports_before_the_flush_ends() {
    use block::{Instant, MemAddr, MemoryRegions, SgList, Tag};
    use scsi::{CdbBytes, Command, InitiatorId, Nexus, Transport};
    let mut disk_bytes = vec![0u8; 64 * 512];
    let disk = RamDisk::<4>::new(&mut disk_bytes, 512)
        .unwrap()
        .with_latency(std::time::Duration::from_micros(10));
    let mut lun: Lun<_, 4> = Lun::new(disk, lun_config());
    let mut mem = vec![0u8; 512];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(0x1000), &mut mem).unwrap();
    let nexus = Nexus {
        initiator: InitiatorId(1),
        target_port: 0,
        lun: 0,
    };
    let command = |repr: CdbRepr| Command {
        attribute: scsi::TaskAttribute::Simple,
        tag: Tag(1),
        nexus,
        cdb: CdbBytes::from_repr(&repr),
        direction: DataDirection::None,
        sg: SgList::new(),
    };
    let mut seen = Vec::new();
    // Power-on unit attention first.
    lun.submit(Instant(0), command(CdbRepr::TestUnitReady))
        .unwrap();
    lun.poll(Instant(0), &mut memory, &mut |c| seen.push(c));
    let sc = CdbRepr::SynchronizeCache {
        sixteen: true,
        immed: true,
        lba: 0,
        blocks: 0,
        group: 0,
    };
    lun.submit(Instant(0), command(sc)).unwrap();
    let next = lun.poll(Instant(0), &mut memory, &mut |c| seen.push(c));
    assert_eq!(seen.len(), 2);
    assert!(seen[1].is_good(), "GOOD before the flush finished");
    assert_eq!(
        next,
        Some(Instant(10_000)),
        "the flush is still at the device"
    );
    assert_eq!(lun.outstanding(), 1);
    // The tag may be reused at once.
    lun.submit(Instant(0), command(CdbRepr::TestUnitReady))
        .unwrap();
    let mut now = Instant(0);
    while lun.outstanding() > 0 {
        now = lun
            .poll(now, &mut memory, &mut |c| seen.push(c))
            .unwrap_or(now);
    }
    assert_eq!(seen.len(), 3, "the flush's own completion is not reported");
    // Without IMMED the status waits for the flush.
    let sc = CdbRepr::SynchronizeCache {
        sixteen: false,
        immed: false,
        lba: 0,
        blocks: 0,
        group: 0,
    };
    lun.submit(now, command(sc)).unwrap();
    lun.poll(now, &mut memory, &mut |c| seen.push(c));
    assert_eq!(seen.len(), 3);
}

#[test]
fn verify_with_byte_check_needs_compare_and_write_in_the_device() {
    rig!(lun, mem, 64, lun_config(), DeviceFeatures::empty());
    clear_ua(&mut lun, &mut mem, 1);
    let v = bytes(CdbRepr::ReadWrite(
        RwKind::Verify,
        Rw {
            size: CdbSize::Ten,
            lba: 0,
            blocks: 1,
            dpo: false,
            fua: false,
            bytchk: 1,
            group: 0,
        },
    ));
    let c = exec(&mut lun, &mut mem, 1, &v, DataDirection::ToDevice, 512);
    assert_eq!(
        sense(&c).key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: true,
            bit: Some(2),
            byte: 1
        })
    );
}

#[test]
fn preempt_and_abort_aborts_the_queued_commands_of_the_preempted() {
    use block::{Instant, MemAddr, MemoryRegions, SgList, Tag};
    use scsi::{CdbBytes, Command, InitiatorId, Nexus, Transport};
    rig!(lun, mem, 64);
    for i in 1..=2 {
        clear_ua(&mut lun, &mut mem, i);
    }
    assert!(pr_out(&mut lun, &mut mem, 1, 0, 0, 0, 0xA).is_good());
    assert!(pr_out(&mut lun, &mut mem, 2, 0, 0, 0, 0xB).is_good());
    assert!(pr_out(&mut lun, &mut mem, 1, 1, 3, 0xA, 0).is_good());
    mem[..24].fill(0);
    mem[..8].copy_from_slice(&0xBu64.to_be_bytes());
    mem[8..16].copy_from_slice(&0xAu64.to_be_bytes());
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(BASE), &mut mem).unwrap();
    let nexus = |i| Nexus {
        initiator: InitiatorId(i),
        target_port: 1,
        lun: 0,
    };
    let preempt = CdbRepr::PersistentReserveOut {
        action: 5,
        scope: 0,
        kind: 3,
        parameter_list_length: 24,
    };
    lun.submit(
        Instant(0),
        Command::new(Tag(1), nexus(2), &preempt)
            .data_out(SgList::single(MemAddr(BASE), 24).unwrap()),
    )
    .unwrap();
    let read = CdbBytes::new(&rw(RwKind::Read, CdbSize::Ten, 0, 1, false)).unwrap();
    let mut command = Command::new(Tag(2), nexus(1), &CdbRepr::TestUnitReady)
        .data_in(SgList::single(MemAddr(BASE + 512), 512).unwrap());
    command.cdb = read;
    lun.submit(Instant(0), command).unwrap();
    let mut seen = Vec::new();
    lun.poll(Instant(0), &mut memory, &mut |c| {
        seen.push((c.tag.0, c.status))
    });
    seen.sort_by_key(|(t, _)| *t);
    assert_eq!(seen, vec![(1, Status::GOOD), (2, Status::TASK_ABORTED)]);
    assert_eq!(
        lun.pending_unit_attentions(scsi::InitiatorId(1)),
        &[Asc::REGISTRATIONS_PREEMPTED]
    );
}

#[test]
fn read_full_status_and_nexus_loss() {
    rig!(lun, mem, 64);
    for i in 1..=2 {
        clear_ua(&mut lun, &mut mem, i);
    }
    assert!(pr_out(&mut lun, &mut mem, 1, 0, 0, 0, 0xA).is_good());
    assert!(pr_out(&mut lun, &mut mem, 2, 0, 0, 0, 0xB).is_good());
    assert!(pr_out(&mut lun, &mut mem, 2, 1, 5, 0xB, 0).is_good());
    let fs = bytes(CdbRepr::PersistentReserveIn {
        action: 3,
        allocation_length: 512,
    });
    let c = exec(&mut lun, &mut mem, 1, &fs, DataDirection::FromDevice, 512);
    assert!(c.is_good(), "{c:?}");
    assert_eq!(&mem[4..8], &96u32.to_be_bytes());
    let d1 = &mem[8..56];
    let d2 = &mem[56..104];
    assert_eq!(&d1[..8], &0xAu64.to_be_bytes());
    assert_eq!((d1[12], d1[13]), (0x00, 0), "registered through one port");
    assert_eq!(&d1[18..20], &1u16.to_be_bytes());
    assert_eq!(&d2[..8], &0xBu64.to_be_bytes());
    assert_eq!((d2[12], d2[13]), (0x01, 5), "holder of a WE RO reservation");
    assert_eq!(&d2[20..24], &24u32.to_be_bytes());
    assert_eq!(d2[24], 0x06, "SAS TransportID");
    assert_eq!(&d2[28..36], &2u64.to_be_bytes());
    // Nexus loss: a unit attention, the SPC-2 reservation goes, registrations stay.
    lun.nexus_loss(scsi::InitiatorId(2));
    assert_eq!(
        lun.pending_unit_attentions(scsi::InitiatorId(2)),
        &[Asc::I_T_NEXUS_LOSS_OCCURRED]
    );
    let rk = bytes(CdbRepr::PersistentReserveIn {
        action: 0,
        allocation_length: 64,
    });
    assert!(exec(&mut lun, &mut mem, 1, &rk, DataDirection::FromDevice, 64).is_good());
    assert_eq!(&mem[4..8], &16u32.to_be_bytes());
}

#[test]
fn read_full_status_with_every_registration_slot_in_use() {
    rig!(lun, mem, 64);
    for i in 0..scsi::lun::MAX_REGISTRATIONS as u64 {
        clear_ua(&mut lun, &mut mem, 100 + i);
        assert!(pr_out(&mut lun, &mut mem, 100 + i, 0, 0, 0, 1 + i).is_good());
    }
    clear_ua(&mut lun, &mut mem, 1);
    let c = pr_out(&mut lun, &mut mem, 1, 0, 0, 0, 0x99);
    assert_eq!(sense(&c).asc, Asc::INSUFFICIENT_REGISTRATION_RESOURCES);
    let fs = bytes(CdbRepr::PersistentReserveIn {
        action: 3,
        allocation_length: 0xFFFF,
    });
    let c = exec(&mut lun, &mut mem, 1, &fs, DataDirection::FromDevice, 4096);
    assert!(c.is_good());
    assert_eq!(c.residual, Residual::Underflow(4096 - 8 - 48 * 32));
}

#[test]
fn alua_and_reservations_are_checked_before_the_cdb_fields() {
    let groups = [
        PortGroup::new(1, AccessState::ActiveOptimized, &[1]),
        PortGroup::new(2, AccessState::Standby, &[2]),
    ];
    rig!(
        lun,
        mem,
        64,
        lun_config().with_alua(1, &groups),
        DeviceFeatures::UNMAP
    );
    clear_ua(&mut lun, &mut mem, 1);
    clear_ua(&mut lun, &mut mem, 2);
    // A READ(10) with a reserved bit set, through the standby port: NOT READY first.
    let bad_read = [0x28, 0xE0, 0, 0, 0, 0, 0, 0, 1, 0];
    let c = exec_on(
        &mut lun,
        &mut mem,
        1,
        2,
        &bad_read,
        DataDirection::FromDevice,
        512,
    );
    assert_eq!(sense(&c).asc, Asc::TARGET_PORT_STANDBY);
    // An unknown opcode through the standby port: NOT READY too.
    let c = exec_on(
        &mut lun,
        &mut mem,
        1,
        2,
        &[0x02, 0, 0, 0, 0, 0],
        DataDirection::None,
        0,
    );
    assert_eq!(sense(&c).asc, Asc::TARGET_PORT_STANDBY);
    // An INQUIRY with a bad field through the standby port: the field error.
    let c = exec_on(
        &mut lun,
        &mut mem,
        1,
        2,
        &[0x12, 0x02, 0, 0, 36, 0],
        DataDirection::FromDevice,
        36,
    );
    assert_eq!(sense(&c).asc, Asc::INVALID_FIELD_IN_CDB);
    // Under another initiator's SPC-2 reservation, the bad READ is a conflict.
    let reserve = bytes(CdbRepr::Reserve { ten: false });
    assert!(exec(&mut lun, &mut mem, 2, &reserve, DataDirection::None, 0).is_good());
    let c = exec(
        &mut lun,
        &mut mem,
        1,
        &bad_read,
        DataDirection::FromDevice,
        512,
    );
    assert_eq!(c.status, Status::RESERVATION_CONFLICT);
}

#[test]
fn get_lba_status_reports_what_the_lu_unmapped() {
    // A device that unmaps but has no write-zeroes: WRITE SAME with UNMAP becomes an unmap.
    rig!(
        lun,
        mem,
        64,
        lun_config(),
        DeviceFeatures::UNMAP | DeviceFeatures::UNMAP_READS_ZERO
    );
    clear_ua(&mut lun, &mut mem, 1);
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
    assert!(exec(&mut lun, &mut mem, 1, &unmap, DataDirection::ToDevice, 24).is_good());
    mem[..512].fill(0);
    let ws = bytes(CdbRepr::WriteSame {
        sixteen: true,
        lba: 40,
        blocks: 4,
        unmap: true,
        anchor: false,
        ndob: false,
        group: 0,
    });
    assert!(exec(&mut lun, &mut mem, 1, &ws, DataDirection::ToDevice, 512).is_good());
    // Writing block 10 maps it again.
    let w = rw(RwKind::Write, CdbSize::Ten, 10, 1, false);
    assert!(exec(&mut lun, &mut mem, 1, &w, DataDirection::ToDevice, 512).is_good());
    let gls = bytes(CdbRepr::GetLbaStatus {
        lba: 0,
        allocation_length: 1024,
        report_type: 0,
    });
    assert!(exec(&mut lun, &mut mem, 1, &gls, DataDirection::FromDevice, 1024).is_good());
    let runs: Vec<_> = scsi::response::parse_lba_status(&mem[..1024])
        .unwrap()
        .map(|d| (d.lba, d.blocks, d.status))
        .collect();
    assert_eq!(
        runs,
        vec![
            (0, 8, 0),
            (8, 2, 1),
            (10, 1, 0),
            (11, 5, 1),
            (16, 24, 0),
            (40, 4, 1),
            (44, 20, 0)
        ]
    );
    // An allocation length for one descriptor gets the first run only.
    let gls = bytes(CdbRepr::GetLbaStatus {
        lba: 9,
        allocation_length: 24,
        report_type: 0,
    });
    assert!(exec(&mut lun, &mut mem, 1, &gls, DataDirection::FromDevice, 24).is_good());
    let runs: Vec<_> = scsi::response::parse_lba_status(&mem[..24])
        .unwrap()
        .map(|d| (d.lba, d.blocks, d.status))
        .collect();
    assert_eq!(runs, vec![(9, 1, 1)]);
}

#[test]
fn get_lba_status_report_types_filter_the_runs() {
    rig!(lun, mem, 64, lun_config(), DeviceFeatures::UNMAP);
    clear_ua(&mut lun, &mut mem, 1);
    let mut p = [0u8; 40];
    p[0..2].copy_from_slice(&38u16.to_be_bytes());
    p[2..4].copy_from_slice(&32u16.to_be_bytes());
    p[8..16].copy_from_slice(&8u64.to_be_bytes());
    p[16..20].copy_from_slice(&8u32.to_be_bytes());
    p[24..32].copy_from_slice(&32u64.to_be_bytes());
    p[32..36].copy_from_slice(&4u32.to_be_bytes());
    mem[..40].copy_from_slice(&p);
    let unmap = bytes(CdbRepr::Unmap {
        anchor: false,
        group: 0,
        parameter_list_length: 40,
    });
    assert!(exec(&mut lun, &mut mem, 1, &unmap, DataDirection::ToDevice, 40).is_good());
    let mut query = |report_type| {
        let gls = bytes(CdbRepr::GetLbaStatus {
            lba: 0,
            allocation_length: 1024,
            report_type,
        });
        assert!(exec(&mut lun, &mut mem, 1, &gls, DataDirection::FromDevice, 1024).is_good());
        scsi::response::parse_lba_status(&mem[..1024])
            .unwrap()
            .map(|d| (d.lba, d.blocks, d.status))
            .collect::<Vec<_>>()
    };
    assert_eq!(query(3), vec![(8, 8, 1), (32, 4, 1)]);
    assert_eq!(query(2), vec![(0, 8, 0), (16, 16, 0), (36, 28, 0)]);
    assert_eq!(query(0).len(), 5);
}

#[test]
fn a_failed_background_flush_is_a_deferred_error() {
    use block::testing::{FaultConfig, FaultInjector};
    use block::{ErrorKind, Instant, MemAddr, MemoryRegions, SgList, Tag};
    use scsi::{CdbBytes, Command, InitiatorId, Nexus, Transport};
    let mut disk_bytes = vec![0u8; 64 * 512];
    let disk = RamDisk::<4>::new(&mut disk_bytes, 512).unwrap();
    let always_fail = FaultConfig {
        fail_ppm: 1_000_000,
        fail_kind: ErrorKind::MediumError,
        ..FaultConfig::default()
    };
    let device = FaultInjector::<_, 4>::new(disk, 1, always_fail);
    let mut lun: Lun<_, 4> = Lun::new(device, lun_config());
    let mut mem = vec![0u8; 512];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(0x1000), &mut mem).unwrap();
    let nexus = Nexus {
        initiator: InitiatorId(1),
        target_port: 0,
        lun: 0,
    };
    let mut run = |repr: CdbRepr| {
        let command = Command {
            attribute: scsi::TaskAttribute::Simple,
            tag: Tag(1),
            nexus,
            cdb: CdbBytes::from_repr(&repr),
            direction: DataDirection::None,
            sg: SgList::new(),
        };
        let (c, _) =
            scsi::run_to_completion(&mut lun, &mut memory, Instant(0), command, 8, &mut |_| {})
                .unwrap();
        // Let background work finish.
        for _ in 0..4 {
            lun.poll(Instant(0), &mut memory, &mut |c| panic!("{c:?}"));
        }
        c
    };
    assert_eq!(
        sense(&run(CdbRepr::TestUnitReady)).asc,
        Asc::POWER_ON_OCCURRED
    );
    let sc = CdbRepr::SynchronizeCache {
        sixteen: false,
        immed: true,
        lba: 0,
        blocks: 0,
        group: 0,
    };
    assert!(run(sc).is_good());
    let c = run(CdbRepr::TestUnitReady);
    let s = sense(&c);
    assert!(s.deferred);
    assert_eq!((s.key, s.asc), (SenseKey::MEDIUM_ERROR, Asc::WRITE_ERROR));
    assert_eq!(c.sense[0], 0x71, "deferred, fixed format");
    assert!(run(CdbRepr::TestUnitReady).is_good());
}

#[test]
fn task_attributes_order_the_task_set() {
    use block::{Instant, MemAddr, MemoryRegions, SgList, Tag};
    use scsi::{Command, InitiatorId, Nexus, TaskAttribute, Transport};
    let mut disk_bytes = vec![0u8; 64 * 512];
    let disk = RamDisk::<8>::new(&mut disk_bytes, 512)
        .unwrap()
        .with_latency(std::time::Duration::from_micros(10));
    let mut lun: Lun<_, 8> = Lun::new(disk, lun_config());
    let mut mem = vec![0u8; 8 * 512];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(0x1000), &mut mem).unwrap();
    let nexus = Nexus {
        initiator: InitiatorId(1),
        target_port: 0,
        lun: 0,
    };
    let read = |tag: u64, attribute| {
        let repr = CdbRepr::ReadWrite(
            RwKind::Read,
            Rw {
                size: CdbSize::Ten,
                lba: tag,
                blocks: 1,
                dpo: false,
                fua: false,
                bytchk: 0,
                group: 0,
            },
        );
        Command::new(Tag(tag), nexus, &repr)
            .with_attribute(attribute)
            .data_in(SgList::single(MemAddr(0x1000 + 512 * tag), 512).unwrap())
    };
    let mut log: Vec<(u64, u64)> = Vec::new();
    // Consume the power-on unit attention.
    lun.submit(
        Instant(0),
        Command::new(Tag(0), nexus, &CdbRepr::TestUnitReady),
    )
    .unwrap();
    lun.poll(Instant(0), &mut memory, &mut |_| {});
    lun.submit(Instant(0), read(1, TaskAttribute::Simple))
        .unwrap();
    lun.submit(Instant(0), read(2, TaskAttribute::Simple))
        .unwrap();
    lun.submit(Instant(0), read(3, TaskAttribute::Ordered))
        .unwrap();
    lun.submit(Instant(0), read(4, TaskAttribute::Simple))
        .unwrap();
    lun.submit(
        Instant(0),
        Command::new(Tag(5), nexus, &CdbRepr::TestUnitReady)
            .with_attribute(TaskAttribute::HeadOfQueue),
    )
    .unwrap();
    let mut now = Instant(0);
    for _ in 0..16 {
        let next = lun.poll(now, &mut memory, &mut |c| {
            assert!(c.is_good(), "{c:?}");
            log.push((c.tag.0, now.0))
        });
        match next {
            Some(t) => now = t,
            None if lun.outstanding() == 0 => break,
            None => {}
        }
    }
    // HEAD OF QUEUE at once; 1 and 2 together; the ORDERED 3 after them; 4 after 3.
    assert_eq!(
        log,
        vec![(5, 0), (1, 10_000), (2, 10_000), (3, 20_000), (4, 30_000)]
    );
    // ACA is refused: no ACA condition exists.
    let aca =
        Command::new(Tag(6), nexus, &CdbRepr::TestUnitReady).with_attribute(TaskAttribute::Aca);
    let (c, _) = scsi::run_to_completion(&mut lun, &mut memory, now, aca, 4, &mut |_| {}).unwrap();
    assert_eq!(sense(&c).asc, Asc::INVALID_FIELD_IN_COMMAND_IU);
}

#[allow(clippy::too_many_arguments)]
fn pr_out_on(
    lun: &mut TestLun<'_>,
    mem: &mut [u8],
    initiator: u64,
    port: u16,
    action: u8,
    kind: u8,
    key: u64,
    sa_key: u64,
    all_tg_pt: bool,
) -> scsi::CommandCompletion {
    let cdb = bytes(CdbRepr::PersistentReserveOut {
        action,
        scope: 0,
        kind,
        parameter_list_length: 24,
    });
    mem[..24].fill(0);
    mem[..8].copy_from_slice(&key.to_be_bytes());
    mem[8..16].copy_from_slice(&sa_key.to_be_bytes());
    mem[20] = if all_tg_pt { 0x04 } else { 0 };
    exec_on(lun, mem, initiator, port, &cdb, DataDirection::ToDevice, 24)
}

#[test]
fn registrations_belong_to_an_i_t_nexus_unless_all_target_ports() {
    rig!(lun, mem, 64);
    for i in 1..=2 {
        clear_ua(&mut lun, &mut mem, i);
    }
    let write = rw(RwKind::Write, CdbSize::Ten, 0, 1, false);
    // Initiator 1 registers through port 1 only and reserves WRITE EXCLUSIVE, REGISTRANTS ONLY.
    assert!(pr_out_on(&mut lun, &mut mem, 1, 1, 0, 0, 0, 0xA, false).is_good());
    assert!(pr_out_on(&mut lun, &mut mem, 1, 1, 1, 5, 0xA, 0, false).is_good());
    assert!(
        exec_on(
            &mut lun,
            &mut mem,
            1,
            1,
            &write,
            DataDirection::ToDevice,
            512
        )
        .is_good()
    );
    // Through port 2 the same initiator is another, unregistered, I_T nexus.
    let c = exec_on(
        &mut lun,
        &mut mem,
        1,
        2,
        &write,
        DataDirection::ToDevice,
        512,
    );
    assert_eq!(c.status, Status::RESERVATION_CONFLICT);
    // Initiator 2 registers with ALL_TG_PT: a registrant through every port.
    assert!(pr_out_on(&mut lun, &mut mem, 2, 1, 0, 0, 0, 0xB, true).is_good());
    assert!(
        exec_on(
            &mut lun,
            &mut mem,
            2,
            2,
            &write,
            DataDirection::ToDevice,
            512
        )
        .is_good()
    );
    assert!(
        exec_on(
            &mut lun,
            &mut mem,
            2,
            3,
            &write,
            DataDirection::ToDevice,
            512
        )
        .is_good()
    );
    // And may unregister through another port.
    assert!(pr_out_on(&mut lun, &mut mem, 2, 3, 0, 0, 0xB, 0, false).is_good());
    let c = exec_on(
        &mut lun,
        &mut mem,
        2,
        1,
        &write,
        DataDirection::ToDevice,
        512,
    );
    assert_eq!(c.status, Status::RESERVATION_CONFLICT);
    // REPORT CAPABILITIES says ALL_TG_PT is supported (ATP_C).
    let caps = bytes(CdbRepr::PersistentReserveIn {
        action: 2,
        allocation_length: 8,
    });
    assert!(exec(&mut lun, &mut mem, 1, &caps, DataDirection::FromDevice, 8).is_good());
    assert_eq!(mem[2] & 0x04, 0x04);
}

#[test]
fn mode_select_10_and_write_same_without_a_data_buffer() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    let ms = bytes(CdbRepr::ModeSense {
        ten: true,
        llbaa: false,
        dbd: false,
        page_control: 0,
        page_code: 0x0A,
        subpage_code: 0,
        allocation_length: 255,
    });
    assert!(exec(&mut lun, &mut mem, 1, &ms, DataDirection::FromDevice, 255).is_good());
    let len = u16::from_be_bytes([mem[0], mem[1]]) as usize + 2;
    assert_eq!(
        len,
        8 + 8 + 12,
        "header, short block descriptor, control page"
    );
    mem[0] = 0;
    mem[1] = 0;
    mem[16 + 2] |= 0x04;
    let sel = bytes(CdbRepr::ModeSelect {
        ten: true,
        pf: true,
        sp: false,
        parameter_list_length: len as u16,
    });
    assert!(
        exec(
            &mut lun,
            &mut mem,
            1,
            &sel,
            DataDirection::ToDevice,
            len as u32
        )
        .is_good()
    );
    let c = exec(
        &mut lun,
        &mut mem,
        1,
        &[0x02, 0, 0, 0, 0, 0],
        DataDirection::None,
        0,
    );
    assert_eq!(c.sense[0], 0x72, "descriptor format now");
    // Saving pages is refused.
    let sel = bytes(CdbRepr::ModeSelect {
        ten: true,
        pf: true,
        sp: true,
        parameter_list_length: len as u16,
    });
    let c = exec(
        &mut lun,
        &mut mem,
        1,
        &sel,
        DataDirection::ToDevice,
        len as u32,
    );
    assert_eq!(sense(&c).asc, Asc::INVALID_FIELD_IN_CDB);
    // WRITE SAME (16) with NDOB zeroes the range without a buffer.
    mem[..4096].fill(0xAA);
    let w = rw(RwKind::Write, CdbSize::Ten, 0, 8, false);
    assert!(exec(&mut lun, &mut mem, 1, &w, DataDirection::ToDevice, 4096).is_good());
    let ws = bytes(CdbRepr::WriteSame {
        sixteen: true,
        lba: 2,
        blocks: 3,
        unmap: false,
        anchor: false,
        ndob: true,
        group: 0,
    });
    assert!(exec(&mut lun, &mut mem, 1, &ws, DataDirection::None, 0).is_good());
    let r = rw(RwKind::Read, CdbSize::Ten, 0, 8, false);
    assert!(exec(&mut lun, &mut mem, 1, &r, DataDirection::FromDevice, 4096).is_good());
    assert!(mem[..1024].iter().all(|b| *b == 0xAA));
    assert!(mem[1024..2560].iter().all(|b| *b == 0));
    assert!(mem[2560..4096].iter().all(|b| *b == 0xAA));
}

#[test]
fn a_parameter_list_longer_than_the_buffer_is_an_invalid_cdb_field() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    let unmap = bytes(CdbRepr::Unmap {
        anchor: false,
        group: 0,
        parameter_list_length: 40,
    });
    let c = exec(&mut lun, &mut mem, 1, &unmap, DataDirection::ToDevice, 24);
    assert_eq!(
        sense(&c).key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: true,
            bit: None,
            byte: 7
        })
    );
    let pr = bytes(CdbRepr::PersistentReserveOut {
        action: 0,
        scope: 0,
        kind: 0,
        parameter_list_length: 24,
    });
    let c = exec(&mut lun, &mut mem, 1, &pr, DataDirection::ToDevice, 16);
    assert_eq!(
        sense(&c).key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: true,
            bit: None,
            byte: 5
        })
    );
    // A longer buffer is an underflow.
    mem[..32].fill(0);
    mem[8..16].copy_from_slice(&7u64.to_be_bytes());
    let c = exec(&mut lun, &mut mem, 1, &pr, DataDirection::ToDevice, 32);
    assert!(c.is_good());
    assert_eq!(c.residual, Residual::Underflow(8));
}

#[test]
fn register_with_specified_initiator_ports() {
    rig!(lun, mem, 64);
    for i in [1, 5, 6] {
        clear_ua(&mut lun, &mut mem, i);
    }
    let sas = |address: u64| {
        let mut id = [0u8; 24];
        id[0] = 0x06;
        id[4..12].copy_from_slice(&address.to_be_bytes());
        id
    };
    let send = |lun: &mut TestLun<'_>,
                mem: &mut [u8],
                action: u8,
                ids: &[[u8; 24]],
                extra_len: Option<u32>| {
        let len = 28 + 24 * ids.len();
        mem[..len].fill(0);
        mem[8..16].copy_from_slice(&0x77u64.to_be_bytes());
        mem[20] = 0x08;
        mem[24..28].copy_from_slice(&extra_len.unwrap_or(24 * ids.len() as u32).to_be_bytes());
        for (i, id) in ids.iter().enumerate() {
            mem[28 + 24 * i..52 + 24 * i].copy_from_slice(id);
        }
        let cdb = bytes(CdbRepr::PersistentReserveOut {
            action,
            scope: 0,
            kind: 1,
            parameter_list_length: len as u32,
        });
        exec(lun, mem, 1, &cdb, DataDirection::ToDevice, len as u32)
    };
    // A wrong ADDITIONAL PARAMETER DATA LENGTH, an iSCSI TransportID, SPEC_I_PT on RESERVE.
    let c = send(&mut lun, &mut mem, 0, &[sas(5)], Some(48));
    assert_eq!(sense(&c).asc, Asc::PARAMETER_LIST_LENGTH_ERROR);
    let mut iscsi = sas(5);
    iscsi[0] = 0x05;
    let c = send(&mut lun, &mut mem, 0, &[sas(6), iscsi], None);
    assert_eq!(
        sense(&c).key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: false,
            bit: None,
            byte: 52
        })
    );
    let c = send(&mut lun, &mut mem, 1, &[sas(5)], None);
    assert_eq!(
        sense(&c).key_specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: false,
            bit: Some(3),
            byte: 20
        })
    );
    // Nothing was registered by the refused commands.
    let rk = bytes(CdbRepr::PersistentReserveIn {
        action: 0,
        allocation_length: 64,
    });
    assert!(exec(&mut lun, &mut mem, 1, &rk, DataDirection::FromDevice, 64).is_good());
    assert_eq!(&mem[4..8], &0u32.to_be_bytes());
    // Register 1, 5 and 6 at once; 5 may then reserve with the key.
    assert!(send(&mut lun, &mut mem, 0, &[sas(5), sas(6)], None).is_good());
    assert!(exec(&mut lun, &mut mem, 1, &rk, DataDirection::FromDevice, 64).is_good());
    assert_eq!(&mem[4..8], &24u32.to_be_bytes());
    assert!(pr_out(&mut lun, &mut mem, 5, 1, 1, 0x77, 0).is_good());
    // Specifying an initiator already registered is a conflict.
    let c = pr_out(&mut lun, &mut mem, 1, 0, 0, 0x77, 0);
    assert!(c.is_good(), "1 unregisters");
    let c = send(&mut lun, &mut mem, 0, &[sas(6)], None);
    assert_eq!(c.status, Status::RESERVATION_CONFLICT);
}

#[test]
fn a_full_device_queue_is_back_pressure_not_failure() {
    use block::{Instant, MemAddr, MemoryRegions, SgList, Tag};
    use scsi::{Command, InitiatorId, Nexus, Transport};
    let mut disk_bytes = vec![0u8; 64 * 512];
    // One slot below, four above.
    let disk = RamDisk::<1>::new(&mut disk_bytes, 512)
        .unwrap()
        .with_latency(std::time::Duration::from_micros(5));
    let mut lun: Lun<_, 4> = Lun::new(disk, lun_config());
    let mut mem = vec![0u8; 4 * 512];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(0x1000), &mut mem).unwrap();
    let nexus = Nexus {
        initiator: InitiatorId(1),
        target_port: 0,
        lun: 0,
    };
    lun.submit(
        Instant(0),
        Command::new(Tag(9), nexus, &CdbRepr::TestUnitReady),
    )
    .unwrap();
    lun.poll(Instant(0), &mut memory, &mut |_| {});
    for tag in 0..4u64 {
        let repr = CdbRepr::ReadWrite(
            RwKind::Read,
            Rw {
                size: CdbSize::Ten,
                lba: tag,
                blocks: 1,
                dpo: false,
                fua: false,
                bytchk: 0,
                group: 0,
            },
        );
        let command = Command::new(Tag(tag), nexus, &repr)
            .data_in(SgList::single(MemAddr(0x1000 + 512 * tag), 512).unwrap());
        lun.submit(Instant(0), command).unwrap();
    }
    let mut done = Vec::new();
    let mut now = Instant(0);
    for _ in 0..32 {
        let next = lun.poll(now, &mut memory, &mut |c| {
            assert!(c.is_good(), "{c:?}");
            done.push((c.tag.0, now.0));
        });
        match next {
            Some(t) => now = t,
            None => break,
        }
    }
    assert_eq!(
        done,
        vec![(0, 5_000), (1, 10_000), (2, 15_000), (3, 20_000)]
    );
    assert_eq!(lun.outstanding(), 0);
}

#[test]
fn injected_unit_attentions_reach_their_initiators() {
    rig!(lun, mem, 64);
    clear_ua(&mut lun, &mut mem, 1);
    clear_ua(&mut lun, &mut mem, 2);
    lun.raise_unit_attention(Some(scsi::InitiatorId(1)), Asc::MODE_PARAMETERS_CHANGED);
    lun.raise_unit_attention(None, Asc::ASYMMETRIC_ACCESS_STATE_CHANGED);
    assert_eq!(
        sense(&exec(&mut lun, &mut mem, 1, &TUR, DataDirection::None, 0)).asc,
        Asc::MODE_PARAMETERS_CHANGED
    );
    assert_eq!(
        sense(&exec(&mut lun, &mut mem, 1, &TUR, DataDirection::None, 0)).asc,
        Asc::ASYMMETRIC_ACCESS_STATE_CHANGED
    );
    assert!(exec(&mut lun, &mut mem, 1, &TUR, DataDirection::None, 0).is_good());
    assert_eq!(
        sense(&exec(&mut lun, &mut mem, 2, &TUR, DataDirection::None, 0)).asc,
        Asc::ASYMMETRIC_ACCESS_STATE_CHANGED
    );
    // A new initiator still sees power on first.
    lun.raise_unit_attention(Some(scsi::InitiatorId(9)), Asc::CAPACITY_DATA_HAS_CHANGED);
    assert_eq!(
        lun.pending_unit_attentions(scsi::InitiatorId(9)),
        &[Asc::POWER_ON_OCCURRED, Asc::CAPACITY_DATA_HAS_CHANGED]
    );
}
