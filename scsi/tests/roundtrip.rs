//! Round trips: `parse(emit(x)) == x` for every CDB and for sense data in both formats.

use proptest::prelude::*;

/// 2000 cases, 50 times more under `SOAK=1` (`cargo xtask soak`).
fn cases() -> u32 {
    if std::env::var_os("SOAK").is_some() {
        2000 * 50
    } else {
        2000
    }
}
use scsi::cdb::{Cdb, CdbRepr, CdbSize, Rw, RwKind};
use scsi::{Asc, Sense, SenseFormat, SenseKey, SenseKeySpecific, SenseRepr};

fn rw() -> impl Strategy<Value = CdbRepr> {
    let kind = prop_oneof![
        Just(RwKind::Read),
        Just(RwKind::Write),
        Just(RwKind::WriteAndVerify),
        Just(RwKind::Verify)
    ];
    let size = prop_oneof![
        Just(CdbSize::Six),
        Just(CdbSize::Ten),
        Just(CdbSize::Twelve),
        Just(CdbSize::Sixteen)
    ];
    (
        kind,
        size,
        any::<u64>(),
        any::<u32>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(0u8), Just(1), Just(3)],
        0u8..32,
    )
        .prop_filter_map(
            "no 6-byte verify",
            |(kind, size, lba, blocks, dpo, fua, bytchk, group)| {
                let verifying = matches!(kind, RwKind::WriteAndVerify | RwKind::Verify);
                if verifying && size == CdbSize::Six {
                    return None;
                }
                let rw = match size {
                    CdbSize::Six => Rw {
                        size,
                        lba: lba & 0x1F_FFFF,
                        blocks: blocks % 256 + 1,
                        dpo: false,
                        fua: false,
                        bytchk: 0,
                        group: 0,
                    },
                    CdbSize::Ten => Rw {
                        size,
                        lba: lba & 0xFFFF_FFFF,
                        blocks: blocks & 0xFFFF,
                        dpo,
                        fua: fua && !verifying,
                        bytchk: if verifying { bytchk } else { 0 },
                        group,
                    },
                    _ => Rw {
                        size,
                        lba: if size == CdbSize::Twelve {
                            lba & 0xFFFF_FFFF
                        } else {
                            lba
                        },
                        blocks,
                        dpo,
                        fua: fua && !verifying,
                        bytchk: if verifying { bytchk } else { 0 },
                        group,
                    },
                };
                Some(CdbRepr::ReadWrite(kind, rw))
            },
        )
}

fn cdb() -> impl Strategy<Value = CdbRepr> {
    prop_oneof![
        Just(CdbRepr::TestUnitReady),
        (any::<bool>(), any::<u8>()).prop_map(|(desc, allocation_length)| CdbRepr::RequestSense {
            desc,
            allocation_length
        }),
        (any::<bool>(), any::<u8>(), any::<u16>()).prop_map(|(evpd, page, allocation_length)| {
            CdbRepr::Inquiry {
                evpd,
                page_code: if evpd { page } else { 0 },
                allocation_length,
            }
        }),
        rw(),
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0u8..4,
            0u8..64,
            any::<u8>(),
            any::<u16>()
        )
            .prop_map(
                |(ten, llbaa, dbd, page_control, page_code, subpage_code, len)| {
                    CdbRepr::ModeSense {
                        ten,
                        llbaa: ten && llbaa,
                        dbd,
                        page_control,
                        page_code,
                        subpage_code,
                        allocation_length: if ten { len } else { len & 0xFF },
                    }
                }
            ),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<u16>()).prop_map(
            |(ten, pf, sp, len)| {
                CdbRepr::ModeSelect {
                    ten,
                    pf,
                    sp,
                    parameter_list_length: if ten { len } else { len & 0xFF },
                }
            }
        ),
        (
            any::<bool>(),
            0u8..16,
            0u8..16,
            any::<bool>(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(immed, power_condition_modifier, power_condition, no_flush, loej, start)| {
                    CdbRepr::StartStopUnit {
                        immed,
                        power_condition_modifier,
                        power_condition,
                        no_flush,
                        loej,
                        start,
                    }
                }
            ),
        (0u8..4).prop_map(|prevent| CdbRepr::PreventAllowMediumRemoval { prevent }),
        any::<bool>().prop_map(|ten| CdbRepr::Reserve { ten }),
        any::<bool>().prop_map(|ten| CdbRepr::Release { ten }),
        (any::<u32>(), any::<bool>()).prop_map(|(lba, pmi)| CdbRepr::ReadCapacity10 {
            lba: if pmi { lba } else { 0 },
            pmi
        }),
        (any::<u64>(), any::<bool>(), any::<u32>()).prop_map(|(lba, pmi, allocation_length)| {
            CdbRepr::ReadCapacity16 {
                lba: if pmi { lba } else { 0 },
                pmi,
                allocation_length,
            }
        }),
        (any::<u64>(), any::<u32>(), 0u8..4).prop_map(|(lba, allocation_length, report_type)| {
            CdbRepr::GetLbaStatus {
                lba,
                allocation_length,
                report_type,
            }
        }),
        (
            any::<bool>(),
            any::<u64>(),
            any::<u32>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0u8..32
        )
            .prop_map(|(sixteen, lba, blocks, unmap, anchor, ndob, group)| {
                CdbRepr::WriteSame {
                    sixteen,
                    lba: if sixteen { lba } else { lba & 0xFFFF_FFFF },
                    blocks: if sixteen { blocks } else { blocks & 0xFFFF },
                    unmap,
                    anchor,
                    ndob: sixteen && ndob,
                    group,
                }
            }),
        (any::<bool>(), 0u8..32, any::<u16>()).prop_map(
            |(anchor, group, parameter_list_length)| {
                CdbRepr::Unmap {
                    anchor,
                    group,
                    parameter_list_length,
                }
            }
        ),
        (
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
            any::<u32>(),
            0u8..32
        )
            .prop_map(
                |(sixteen, immed, lba, blocks, group)| CdbRepr::SynchronizeCache {
                    sixteen,
                    immed,
                    lba: if sixteen { lba } else { lba & 0xFFFF_FFFF },
                    blocks: if sixteen { blocks } else { blocks & 0xFFFF },
                    group,
                }
            ),
        (
            any::<u64>(),
            any::<u8>(),
            any::<bool>(),
            any::<bool>(),
            0u8..32
        )
            .prop_map(|(lba, blocks, dpo, fua, group)| CdbRepr::CompareAndWrite {
                lba,
                blocks,
                dpo,
                fua,
                group
            }),
        (any::<u8>(), any::<u32>()).prop_map(|(select_report, allocation_length)| {
            CdbRepr::ReportLuns {
                select_report,
                allocation_length,
            }
        }),
        (0u8..4, any::<u16>()).prop_map(|(action, allocation_length)| {
            CdbRepr::PersistentReserveIn {
                action,
                allocation_length,
            }
        }),
        (0u8..7, 0u8..16, 0u8..16, any::<u32>()).prop_map(
            |(action, scope, kind, parameter_list_length)| {
                CdbRepr::PersistentReserveOut {
                    action,
                    scope,
                    kind,
                    parameter_list_length,
                }
            }
        ),
        (any::<bool>(), any::<u32>()).prop_map(|(extended, allocation_length)| {
            CdbRepr::ReportTargetPortGroups {
                extended,
                allocation_length,
            }
        }),
        any::<u32>().prop_map(|parameter_list_length| CdbRepr::SetTargetPortGroups {
            parameter_list_length
        }),
        (
            any::<bool>(),
            0u8..4,
            any::<u8>(),
            any::<u16>(),
            any::<u32>()
        )
            .prop_map(
                |(rctd, reporting_options, opcode, service_action, allocation_length)| {
                    CdbRepr::ReportSupportedOpcodes {
                        rctd,
                        reporting_options,
                        opcode,
                        service_action,
                        allocation_length,
                    }
                }
            ),
    ]
}

fn key_specific(key: SenseKey) -> BoxedStrategy<Option<SenseKeySpecific>> {
    match key {
        SenseKey::ILLEGAL_REQUEST => proptest::option::of(
            (any::<bool>(), proptest::option::of(0u8..8), any::<u16>()).prop_map(
                |(in_cdb, bit, byte)| SenseKeySpecific::FieldPointer { in_cdb, bit, byte },
            ),
        )
        .boxed(),
        SenseKey::NOT_READY | SenseKey::NO_SENSE => {
            proptest::option::of(any::<u16>().prop_map(SenseKeySpecific::Progress)).boxed()
        }
        _ => proptest::option::of(
            (0u16..0x8000, any::<u8>()).prop_map(|(a, b)| SenseKeySpecific::Raw(a, b)),
        )
        .boxed(),
    }
}

fn sense(format: SenseFormat) -> impl Strategy<Value = SenseRepr> {
    (0u8..16)
        .prop_flat_map(move |key| {
            let key = SenseKey(key);
            let info = match format {
                SenseFormat::Fixed => {
                    proptest::option::of(any::<u32>().prop_map(u64::from)).boxed()
                }
                SenseFormat::Descriptor => proptest::option::of(any::<u64>()).boxed(),
            };
            let cs = match format {
                SenseFormat::Fixed => proptest::option::of((1u32..).prop_map(u64::from)).boxed(),
                SenseFormat::Descriptor => proptest::option::of(any::<u64>()).boxed(),
            };
            (
                Just(key),
                any::<bool>(),
                any::<u8>(),
                any::<u8>(),
                info,
                cs,
                key_specific(key),
            )
        })
        .prop_map(
            |(key, deferred, asc, ascq, information, command_specific, key_specific)| SenseRepr {
                deferred,
                key,
                asc: Asc::new(asc, ascq),
                information,
                command_specific,
                key_specific,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn every_cdb_round_trips(repr in cdb()) {
        let bytes = repr.to_bytes();
        let len = repr.buffer_len();
        let view = Cdb::new_checked(&bytes[..len]).unwrap();
        prop_assert_eq!(view.len(), len);
        prop_assert_eq!(CdbRepr::parse(&view), Ok(repr));
    }

    #[test]
    fn fixed_sense_round_trips(repr in sense(SenseFormat::Fixed)) {
        let mut buf = [0u8; 64];
        let len = repr.emit(SenseFormat::Fixed, &mut buf).unwrap();
        prop_assert_eq!(len, 18);
        let parsed = SenseRepr::parse(&Sense::new_checked(&buf[..len]).unwrap()).unwrap();
        prop_assert_eq!(parsed, repr);
    }

    #[test]
    fn descriptor_sense_round_trips(repr in sense(SenseFormat::Descriptor)) {
        let mut buf = [0u8; 64];
        let len = repr.emit(SenseFormat::Descriptor, &mut buf).unwrap();
        prop_assert_eq!(len, repr.buffer_len(SenseFormat::Descriptor));
        let parsed = SenseRepr::parse(&Sense::new_checked(&buf[..len]).unwrap()).unwrap();
        prop_assert_eq!(parsed, repr);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
        if let Ok(view) = Cdb::new_checked(&bytes[..]) {
            let _ = view.lba();
            let _ = view.transfer_length();
            let _ = view.control();
            if let Ok(repr) = CdbRepr::parse(&view) {
                // Whatever parses re-emits to the same meaning.
                let again = repr.to_bytes();
                prop_assert_eq!(CdbRepr::parse(&Cdb::new_checked(&again[..]).unwrap()), Ok(repr));
            }
        }
        if let Ok(view) = Sense::new_checked(&bytes[..]) {
            let _ = view.key();
            let _ = view.asc();
            let _ = SenseRepr::parse(&view);
        }
    }
}
