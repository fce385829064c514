//! Round trips of the response payloads: what the target side emits, the initiator side
//! parses back to the same values.

use proptest::prelude::*;

/// 500 cases, 50 times more under `SOAK=1` (`cargo xtask soak`).
fn cases() -> u32 {
    if std::env::var_os("SOAK").is_some() {
        500 * 50
    } else {
        500
    }
}
use scsi::response::{
    self, AccessState, BlockLimits, DeviceIdentification, InquiryData, LbaStatusDescriptor,
    LogicalBlockProvisioning, NaaId, ReadCapacity10Data, ReadCapacity16Data,
    TargetPortGroupDescriptor,
};

fn state() -> impl Strategy<Value = AccessState> {
    prop_oneof![
        Just(AccessState::ActiveOptimized),
        Just(AccessState::ActiveNonOptimized),
        Just(AccessState::Standby),
        Just(AccessState::Unavailable),
        Just(AccessState::Offline),
        Just(AccessState::Transitioning),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn inquiry(q in 0u8..8, t in 0u8..32, flags in any::<[bool; 7]>(), version in any::<u8>(), tpgs in 0u8..4,
               vendor in any::<[u8; 8]>(), product in any::<[u8; 16]>(), revision in any::<[u8; 4]>(),
               version_descriptors in any::<[u16; 8]>()) {
        let d = InquiryData {
            peripheral_qualifier: q, peripheral_device_type: t, removable: flags[0], version,
            hisup: flags[1], tpgs, third_party_copy: flags[2], protect: flags[3], multip: flags[4],
            cmdque: flags[5], vendor, product, revision, version_descriptors,
        };
        let mut buf = [0u8; 96];
        let n = d.emit(&mut buf);
        prop_assert_eq!(InquiryData::parse(&buf[..n]), Some(d));
    }

    #[test]
    fn block_limits(v in any::<(bool, u8, u16, u32, u32, u32, u32, u32, u32)>(),
                    alignment in proptest::option::of(0u32..0x8000_0000), ws in any::<u64>()) {
        let d = BlockLimits {
            wsnz: v.0, max_compare_and_write: v.1, optimal_transfer_granularity: v.2,
            max_transfer: v.3, optimal_transfer: v.4, max_prefetch: v.5, max_unmap_lba_count: v.6,
            max_unmap_descriptors: v.7, optimal_unmap_granularity: v.8,
            unmap_granularity_alignment: alignment, max_write_same: ws,
        };
        let mut buf = [0u8; 64];
        let n = d.emit(&mut buf);
        prop_assert_eq!(BlockLimits::parse(&buf[..n]), Ok(d));
    }

    #[test]
    fn logical_block_provisioning(t in any::<u8>(), f in any::<[bool; 4]>(), lbprz in 0u8..8, p in 0u8..8) {
        let d = LogicalBlockProvisioning {
            threshold_exponent: t, lbpu: f[0], lbpws: f[1], lbpws10: f[2], lbprz, anc_sup: f[3],
            provisioning_type: p,
        };
        let mut buf = [0u8; 8];
        let n = d.emit(&mut buf);
        prop_assert_eq!(LogicalBlockProvisioning::parse(&buf[..n]), Ok(d));
    }

    #[test]
    fn read_capacity(last in any::<u64>(), len in any::<u32>(), e in 0u8..16, f in any::<[bool; 2]>(), a in 0u16..0x4000) {
        let d = ReadCapacity16Data { last_lba: last, block_len: len, lbppbe: e, lbpme: f[0], lbprz: f[1], lowest_aligned_lba: a };
        let mut buf = [0u8; 32];
        prop_assert_eq!(d.emit(&mut buf), 32);
        prop_assert_eq!(ReadCapacity16Data::parse(&buf), Some(d));
        let d = ReadCapacity10Data { last_lba: last as u32, block_len: len };
        prop_assert_eq!(d.emit(&mut buf), 8);
        prop_assert_eq!(ReadCapacity10Data::parse(&buf), Some(d));
    }

    #[test]
    fn report_luns(luns in proptest::collection::vec(0u64..0x4000, 0..32)) {
        let mut buf = [0u8; 512];
        let n = response::report_luns(&luns, &mut buf);
        let back: Vec<u64> = response::parse_report_luns(&buf[..n]).unwrap().collect();
        prop_assert_eq!(back, luns);
    }

    #[test]
    fn lba_status(ds in proptest::collection::vec((any::<u64>(), any::<u32>(), 0u8..16), 0..16)) {
        let ds: Vec<LbaStatusDescriptor> = ds.into_iter().map(|(lba, blocks, status)| LbaStatusDescriptor { lba, blocks, status }).collect();
        let mut buf = [0u8; 512];
        let n = response::lba_status(&ds, &mut buf);
        let back: Vec<_> = response::parse_lba_status(&buf[..n]).unwrap().collect();
        prop_assert_eq!(back, ds);
    }

    #[test]
    fn target_port_groups(groups in proptest::collection::vec((any::<bool>(), state(), any::<u8>(), any::<u16>(), any::<u8>(),
                                                              proptest::collection::vec(any::<u16>(), 0..8)), 0..4),
                          extended in any::<bool>(), secs in any::<u8>()) {
        let descriptors: Vec<TargetPortGroupDescriptor<'_>> = groups.iter().map(|(preferred, state, supported, id, status_code, ports)| {
            TargetPortGroupDescriptor { preferred: *preferred, state: *state, supported: *supported, id: *id, status_code: *status_code, ports }
        }).collect();
        let mut buf = [0u8; 1024];
        let n = response::report_target_port_groups(&descriptors, extended, secs, &mut buf);
        let (transition, parsed) = response::parse_target_port_groups(&buf[..n]).unwrap();
        prop_assert_eq!(transition, extended.then_some(secs));
        let parsed: Vec<_> = parsed.collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(parsed.len(), descriptors.len());
        for (p, d) in parsed.iter().zip(&descriptors) {
            prop_assert_eq!((p.preferred, AccessState::from_code(p.state_code), p.supported, p.id, p.status_code),
                            (d.preferred, Some(d.state), d.supported, d.id, d.status_code));
            prop_assert_eq!(p.ports().collect::<Vec<_>>(), d.ports.to_vec());
        }
    }

    #[test]
    fn device_identification(oui in 0u32..0x100_0000, id in 0u64..(1 << 36), ext in proptest::option::of(any::<u64>()),
                             vendor in any::<[u8; 8]>(), vs in proptest::collection::vec(any::<u8>(), 0..48),
                             port in proptest::option::of(any::<u16>()), group in proptest::option::of(any::<u16>())) {
        let naa = match ext {
            Some(e) => NaaId::registered_extended(oui, id, e),
            None => NaaId::registered(oui, id),
        };
        let page = DeviceIdentification { naa, vendor, vendor_specific: &vs, relative_target_port: port, target_port_group: group };
        let mut buf = [0u8; 256];
        let n = page.emit(&mut buf);
        let ds: Vec<_> = response::designators(&buf[..n]).unwrap().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(ds[0].designator_type, 3);
        prop_assert_eq!(ds[0].value, naa.as_bytes());
        prop_assert_eq!(ds[0].value[0] >> 4, if ext.is_some() { 6 } else { 5 });
        prop_assert_eq!(ds[1].designator_type, 1);
        prop_assert_eq!(&ds[1].value[..8], &vendor[..]);
        prop_assert_eq!(&ds[1].value[8..], &vs[..]);
        let mut i = 2;
        if let Some(p) = port {
            prop_assert_eq!((ds[i].designator_type, ds[i].association), (4, 1));
            prop_assert_eq!(&ds[i].value[2..], &p.to_be_bytes()[..]);
            i += 1;
        }
        if let Some(g) = group {
            prop_assert_eq!((ds[i].designator_type, ds[i].association), (5, 1));
            prop_assert_eq!(&ds[i].value[2..], &g.to_be_bytes()[..]);
            i += 1;
        }
        prop_assert_eq!(ds.len(), i);
    }

    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = InquiryData::parse(&data);
        let _ = BlockLimits::parse(&data);
        let _ = LogicalBlockProvisioning::parse(&data);
        let _ = ReadCapacity16Data::parse(&data);
        if let Ok(it) = response::designators(&data) { let _ = it.count(); }
        if let Ok(it) = response::parse_report_luns(&data) { let _ = it.count(); }
        if let Ok(it) = response::parse_lba_status(&data) { let _ = it.count(); }
        if let Ok((_, it)) = response::parse_target_port_groups(&data) { let _ = it.count(); }
    }
}
