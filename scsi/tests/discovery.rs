//! An initiator discovers a LU the way PSA will: through the `Transport` trait only, parsing
//! every answer with this crate's initiator-side parsers.

use block::{DeviceFeatures, Instant, MemAddr, Memory, MemoryRegions, RamDisk, SgList, Tag};
use scsi::response::{
    self, BlockLimits, InquiryData, LogicalBlockProvisioning, ReadCapacity16Data, vpd,
};
use scsi::{
    AccessState, Command, InitiatorId, Lun, LunConfig, NaaId, Nexus, PortGroup, Transport,
    run_to_completion,
};

const BUF: u64 = 0x4000;

/// Runs `repr` as a data-in command and returns the bytes that came back.
fn data_in<T: Transport>(
    lun: &mut T,
    memory: &mut MemoryRegions<'_, 1>,
    nexus: Nexus,
    repr: scsi::CdbRepr,
) -> Vec<u8> {
    // As an initiator does, retry after a unit attention (power on, here).
    let mut c = None;
    for _ in 0..4 {
        let sg = SgList::single(MemAddr(BUF), 4096).unwrap();
        let command = Command::new(Tag(1), nexus, &repr).data_in(sg);
        let (done, _) =
            run_to_completion(lun, memory, Instant(0), command, 8, &mut |_| {}).unwrap();
        let unit_attention = done
            .sense_repr()
            .is_some_and(|s| s.key == scsi::SenseKey::UNIT_ATTENTION);
        c = Some(done);
        if !unit_attention {
            break;
        }
    }
    let c = c.unwrap();
    assert!(c.is_good(), "{repr:?}: {c:?}");
    let moved = match c.residual {
        scsi::Residual::Underflow(n) => 4096 - n as usize,
        _ => 4096,
    };
    let mut out = vec![0u8; moved];
    memory.read(MemAddr(BUF), &mut out).unwrap();
    out
}

#[test]
fn initiator_discovers_identity_capacity_provisioning_and_paths() {
    let groups = [
        PortGroup::new(0x10, AccessState::ActiveOptimized, &[1, 2]),
        PortGroup::new(0x20, AccessState::ActiveNonOptimized, &[3, 4]),
    ];
    let naa = NaaId::registered_extended(0x00_A0_98, 0x1_2345_6789, 0xDEAD_BEEF);
    let config = LunConfig::new("NETAPP", "LUN C-Mode", "9800", "80Z3B$Q8", naa)
        .with_lun(7)
        .with_alua(3, &groups);
    let mut disk_bytes = vec![0u8; 256 * 4096];
    let disk = RamDisk::<8>::new(&mut disk_bytes, 4096)
        .unwrap()
        .with_max_transfer(128)
        .with_features(
            DeviceFeatures::UNMAP | DeviceFeatures::WRITE_ZEROES | DeviceFeatures::UNMAP_READS_ZERO,
        );
    let mut lun: Lun<_, 8> = Lun::new(disk, config);
    let mut page = vec![0u8; 4096];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(BUF), &mut page).unwrap();

    // REPORT LUNS through LUN 0 (not this LU): the LU list.
    let nexus0 = Nexus {
        initiator: InitiatorId(0x5000_0001),
        target_port: 3,
        lun: 0,
    };
    let luns = data_in(
        &mut lun,
        &mut memory,
        nexus0,
        scsi::CdbRepr::ReportLuns {
            select_report: 0,
            allocation_length: 4096,
        },
    );
    assert_eq!(
        response::parse_report_luns(&luns)
            .unwrap()
            .collect::<Vec<_>>(),
        vec![7]
    );

    let nexus = Nexus { lun: 7, ..nexus0 };
    // Standard INQUIRY: a disk with ALUA.
    let inquiry = data_in(
        &mut lun,
        &mut memory,
        nexus,
        scsi::CdbRepr::Inquiry {
            evpd: false,
            page_code: 0,
            allocation_length: 255,
        },
    );
    let inquiry = InquiryData::parse(&inquiry).unwrap();
    assert_eq!(
        (inquiry.peripheral_device_type, inquiry.tpgs, inquiry.multip),
        (0, 3, true)
    );
    assert_eq!(&inquiry.vendor, b"NETAPP  ");

    // VPD 0x83: the NAA name (the device's identity) and the path's port and group.
    let page83 = data_in(
        &mut lun,
        &mut memory,
        nexus,
        scsi::CdbRepr::Inquiry {
            evpd: true,
            page_code: vpd::DEVICE_IDENTIFICATION,
            allocation_length: 4096,
        },
    );
    let designators: Vec<_> = response::designators(&page83)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let naa_found = designators
        .iter()
        .find(|d| d.designator_type == 3 && d.association == 0)
        .unwrap();
    assert_eq!(naa_found.value, naa.as_bytes());
    let port = designators.iter().find(|d| d.designator_type == 4).unwrap();
    assert_eq!(port.value, &[0, 0, 0, 3]);
    let group = designators.iter().find(|d| d.designator_type == 5).unwrap();
    assert_eq!(group.value, &[0, 0, 0, 0x20]);

    // Capacity and limits.
    let rc = data_in(
        &mut lun,
        &mut memory,
        nexus,
        scsi::CdbRepr::ReadCapacity16 {
            lba: 0,
            pmi: false,
            allocation_length: 32,
        },
    );
    let rc = ReadCapacity16Data::parse(&rc).unwrap();
    assert_eq!(
        (rc.last_lba, rc.block_len, rc.lbpme, rc.lbprz),
        (255, 4096, true, true)
    );
    let b0 = data_in(
        &mut lun,
        &mut memory,
        nexus,
        scsi::CdbRepr::Inquiry {
            evpd: true,
            page_code: vpd::BLOCK_LIMITS,
            allocation_length: 255,
        },
    );
    let limits = BlockLimits::parse(&b0).unwrap();
    assert_eq!(limits.max_transfer, 128);
    let b2 = data_in(
        &mut lun,
        &mut memory,
        nexus,
        scsi::CdbRepr::Inquiry {
            evpd: true,
            page_code: vpd::LOGICAL_BLOCK_PROVISIONING,
            allocation_length: 255,
        },
    );
    let lbp = LogicalBlockProvisioning::parse(&b2).unwrap();
    assert!(lbp.lbpu && lbp.lbpws && lbp.lbprz == 1);

    // The paths, from REPORT TARGET PORT GROUPS (extended format).
    let rtpg = data_in(
        &mut lun,
        &mut memory,
        nexus,
        scsi::CdbRepr::ReportTargetPortGroups {
            extended: true,
            allocation_length: 4096,
        },
    );
    let (_, groups) = response::parse_target_port_groups(&rtpg).unwrap();
    let groups: Vec<(u16, Option<AccessState>, Vec<u16>)> = groups
        .map(|g| g.unwrap())
        .map(|g| {
            (
                g.id,
                AccessState::from_code(g.state_code),
                g.ports().collect(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        vec![
            (0x10, Some(AccessState::ActiveOptimized), vec![1, 2]),
            (0x20, Some(AccessState::ActiveNonOptimized), vec![3, 4]),
        ]
    );
}
