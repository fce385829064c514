//! The CLARiiON-style trespass: MODE SELECT (6) and (10) with the trespass page 0x22 on an
//! active/passive array that takes it, the arrays that take only START STOP UNIT, and every
//! malformed CDB or parameter list, command by command.

mod common;

use common::*;

use array::{ASC_NOT_READY_MANUAL_INTERVENTION, Array, ArrayConfig, Personality, TrespassCommand};
use block::{Instant, MemAddr, Memory, MemoryRegions, RamDisk, SgList, Tag};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scsi::cdb::CdbRepr;
use scsi::{
    Asc, CdbBytes, Command, CommandCompletion, DataDirection, LunConfig, NaaId, Residual, SenseKey,
    SenseKeySpecific, TaskAttribute, run_to_completion,
};

const DATA: MemAddr = MemAddr(0x1000);

/// The short form (after a 4-byte MODE SELECT (6) header), as Linux `scsi_dh_emc` sends it to
/// FC-series arrays.
const SHORT: [u8; 8] = [0, 0, 0, 0, 0x22, 0x02, 0x01, 0xFF];
/// The long form (after an 8-byte MODE SELECT (10) header), as sent to CX / AX arrays, here
/// with the HR bit set as `scsi_dh_emc` sets it by default.
const LONG: [u8; 19] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0x22, 0x09, 0x81, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0,
];

fn array(storage: &mut [u8], trespass: TrespassCommand, implicit: bool) -> Sim<'_> {
    let personality = Personality::ActivePassive {
        implicit_trespass: implicit,
    };
    let config = ArrayConfig::new(personality)
        .with_seed(7)
        .with_trespass(trespass);
    let mut a: Sim<'_> = Array::new(config);
    for (id, c) in [(1, 0), (2, 0), (3, 1), (4, 1)] {
        a.add_port(id, c).unwrap();
    }
    let disk = RamDisk::new(storage, 512).unwrap();
    let config = LunConfig::new("DGC", "RAID 5", "1", "SN", NaaId::registered(0x1405, 9));
    a.add_lun(disk, config, 0).unwrap();
    a
}

fn cdb6(byte1: u8, length: u8) -> CdbBytes {
    CdbBytes::new(&[0x15, byte1, 0, 0, length, 0]).unwrap()
}

fn cdb10(byte1: u8, length: u16) -> CdbBytes {
    let [hi, lo] = length.to_be_bytes();
    CdbBytes::new(&[0x55, byte1, 0, 0, 0, 0, 0, hi, lo, 0]).unwrap()
}

/// Sends `cdb` on `port` with `data` written at [`DATA`] and an SG list of `sent` bytes.
fn send(
    a: &mut Sim<'_>,
    mem: &mut MemoryRegions<'_, 1>,
    t: u64,
    port: u16,
    cdb: CdbBytes,
    data: &[u8],
    sent: u32,
) -> CommandCompletion {
    mem.write(DATA, data).unwrap();
    let command = Command {
        tag: Tag(t),
        attribute: TaskAttribute::Simple,
        nexus: nexus(port),
        cdb,
        direction: if sent > 0 {
            DataDirection::ToDevice
        } else {
            DataDirection::None
        },
        sg: if sent > 0 {
            SgList::single(DATA, sent).unwrap()
        } else {
            SgList::new()
        },
    };
    run_to_completion(a, mem, Instant(t), command, 64, &mut |_| {})
        .unwrap()
        .0
}

fn short(a: &mut Sim<'_>, mem: &mut MemoryRegions<'_, 1>, t: u64, port: u16) -> CommandCompletion {
    send(a, mem, t, port, cdb6(0x10, 8), &SHORT, 8)
}

fn start_unit() -> CdbRepr {
    CdbRepr::StartStopUnit {
        immed: false,
        power_condition_modifier: 0,
        power_condition: 0,
        no_flush: false,
        loej: false,
        start: true,
    }
}

fn is_passive(c: &CommandCompletion) -> bool {
    c.sense_repr()
        .is_some_and(|s| (s.key, s.asc) == (SenseKey::NOT_READY, ASC_NOT_READY_MANUAL_INTERVENTION))
}

/// CHECK CONDITION, ILLEGAL REQUEST with `asc`, and the field pointer if given.
#[track_caller]
fn assert_illegal(c: &CommandCompletion, asc: Asc, pointer: Option<(bool, u16, Option<u8>)>) {
    let s = c.sense_repr().unwrap_or_else(|| panic!("no sense: {c:?}"));
    assert_eq!((s.key, s.asc), (SenseKey::ILLEGAL_REQUEST, asc), "{s:?}");
    if let Some((in_cdb, byte, bit)) = pointer {
        assert_eq!(
            s.key_specific,
            Some(SenseKeySpecific::FieldPointer { in_cdb, bit, byte }),
            "{s:?}"
        );
    }
}

struct Fixture {
    storage: Vec<u8>,
    page: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            storage: vec![0u8; 64 * 512],
            page: vec![0u8; 1024],
        }
    }
}

macro_rules! setup {
    ($fx:ident, $a:ident, $mem:ident, $trespass:expr, $implicit:expr) => {
        let mut $fx = Fixture::new();
        let mut $mem = MemoryRegions::<1>::new();
        $mem.add(DATA, &mut $fx.page).unwrap();
        let mut $a = array(&mut $fx.storage, $trespass, $implicit);
    };
}

#[test]
fn mode_select_6_short_page_trespasses_to_the_receiving_controller() {
    setup!(fx, a, mem, TrespassCommand::ModeSelectPage22, false);
    assert!(run_past_ua(&mut a, &mut mem, 0, 1, &read()).is_good());
    assert!(is_passive(&run_past_ua(
        &mut a,
        &mut mem,
        1_000,
        3,
        &read()
    )));
    let c = short(&mut a, &mut mem, 2_000, 3);
    assert!(c.is_good(), "{c:?}");
    assert_eq!(c.residual, Residual::None);
    assert_eq!(a.owner(0), Some(1));
    // The same state changes as a START STOP UNIT trespass: the new owner serves, the old
    // one answers passive.
    assert!(run_past_ua(&mut a, &mut mem, 3_000, 4, &read()).is_good());
    assert!(is_passive(&run_past_ua(
        &mut a,
        &mut mem,
        4_000,
        1,
        &read()
    )));
    let stats = a.stats();
    assert_eq!(
        (
            stats.trespasses,
            stats.page22_trespasses,
            stats.start_stop_trespasses
        ),
        (1, 1, 0)
    );
}

/// A CLARiiON reports a trespass as UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET
/// OCCURRED (06/29/00) on the next command of each initiator, which Linux `scsi_dh_emc`
/// retries as the first I/O to the new path. A START STOP UNIT array raises none.
#[test]
fn a_trespass_is_reported_as_a_reset_unit_attention_on_the_next_command() {
    setup!(fx, a, mem, TrespassCommand::ModeSelectPage22, false);
    assert!(run_past_ua(&mut a, &mut mem, 0, 1, &read()).is_good());
    assert!(short(&mut a, &mut mem, 1_000, 3).is_good());
    let c = once(&mut a, &mut mem, 2_000, 4, &read());
    assert_eq!(
        key_asc(&c),
        (
            SenseKey::UNIT_ATTENTION,
            Asc::POWER_ON_RESET_OR_BUS_DEVICE_RESET
        )
    );
    assert!(once(&mut a, &mut mem, 3_000, 4, &read()).is_good());

    setup!(fx2, b, mem2, TrespassCommand::StartStopUnit, false);
    assert!(run_past_ua(&mut b, &mut mem2, 0, 1, &read()).is_good());
    assert!(run_past_ua(&mut b, &mut mem2, 1_000, 3, &start_unit()).is_good());
    assert_eq!(b.owner(0), Some(1));
    assert!(once(&mut b, &mut mem2, 2_000, 4, &read()).is_good());
}

#[test]
fn mode_select_10_long_page_with_hr_trespasses_and_back() {
    setup!(fx, a, mem, TrespassCommand::ModeSelectPage22, false);
    let c = send(&mut a, &mut mem, 1_000, 4, cdb10(0x10, 19), &LONG, 19);
    assert!(c.is_good(), "{c:?}");
    assert_eq!(a.owner(0), Some(1));
    // The short page after a MODE SELECT (10) header, and an SG list longer than the list.
    let mut data = [0u8; 12];
    data[8..].copy_from_slice(&SHORT[4..]);
    let c = send(&mut a, &mut mem, 2_000, 2, cdb10(0x10, 12), &data, 16);
    assert!(c.is_good(), "{c:?}");
    assert_eq!(c.residual, Residual::Underflow(4));
    assert_eq!(a.owner(0), Some(0));
    // The long page after a MODE SELECT (6) header.
    let c = send(&mut a, &mut mem, 3_000, 3, cdb6(0x10, 15), &LONG[4..], 15);
    assert!(c.is_good(), "{c:?}");
    assert_eq!(a.owner(0), Some(1));
    assert_eq!((a.stats().trespasses, a.stats().page22_trespasses), (3, 3));
}

#[test]
fn the_trespass_page_on_the_owner_is_accepted_and_moves_nothing() {
    setup!(fx, a, mem, TrespassCommand::ModeSelectPage22, false);
    assert!(short(&mut a, &mut mem, 1_000, 1).is_good());
    assert_eq!(a.owner(0), Some(0));
    let stats = a.stats();
    assert_eq!((stats.trespasses, stats.page22_trespasses), (0, 1));
}

#[test]
fn block_descriptors_before_the_trespass_page_are_skipped() {
    setup!(fx, a, mem, TrespassCommand::ModeSelectPage22, false);
    // MODE SELECT (6): BLOCK DESCRIPTOR LENGTH 8, one descriptor, then the page.
    let mut data = vec![0, 0, 0, 8, 0, 0, 0, 0x40, 0, 0, 2, 0];
    data.extend_from_slice(&SHORT[4..]);
    let c = send(&mut a, &mut mem, 1_000, 3, cdb6(0x10, 16), &data, 16);
    assert!(c.is_good(), "{c:?}");
    assert_eq!(a.owner(0), Some(1));
}

#[test]
fn start_stop_unit_is_not_a_trespass_on_a_cx_array() {
    setup!(fx, a, mem, TrespassCommand::ModeSelectPage22, false);
    let c = run_past_ua(&mut a, &mut mem, 1_000, 3, &start_unit());
    assert!(is_passive(&c), "{c:?}");
    assert_eq!(a.owner(0), Some(0));
    // On the owner it reaches the LU (which starts the unit).
    assert!(run_past_ua(&mut a, &mut mem, 2_000, 1, &start_unit()).is_good());
    let stats = a.stats();
    assert_eq!((stats.trespasses, stats.start_stop_trespasses), (0, 0));
}

#[test]
fn a_start_stop_unit_array_does_not_know_the_trespass_page() {
    setup!(fx, a, mem, TrespassCommand::StartStopUnit, false);
    // The passive controller answers it like a media command; the owner's LU does not know
    // page 0x22.
    let c = short(&mut a, &mut mem, 1_000, 3);
    assert!(is_passive(&c), "{c:?}");
    let c = run_past_ua(&mut a, &mut mem, 2_000, 1, &read());
    assert!(c.is_good());
    let c = short(&mut a, &mut mem, 3_000, 1);
    assert_illegal(&c, Asc::INVALID_FIELD_IN_PARAMETER_LIST, None);
    assert_eq!(a.owner(0), Some(0));
    // START STOP UNIT moves it.
    assert!(run_past_ua(&mut a, &mut mem, 4_000, 3, &start_unit()).is_good());
    assert_eq!(a.owner(0), Some(1));
    let stats = a.stats();
    assert_eq!(
        (
            stats.trespasses,
            stats.start_stop_trespasses,
            stats.page22_trespasses
        ),
        (1, 1, 0)
    );
}

#[test]
fn other_mode_pages_are_passive_on_the_non_owner_and_for_the_lu_on_the_owner() {
    setup!(fx, a, mem, TrespassCommand::ModeSelectPage22, false);
    // The control page 0x0A (12 bytes), unchanged.
    let mut control = vec![0, 0, 0, 0, 0x0A, 0x0A];
    control.extend_from_slice(&[0u8; 10]);
    assert!(run_past_ua(&mut a, &mut mem, 0, 1, &read()).is_good());
    let sense_control = CdbRepr::ModeSense {
        ten: false,
        llbaa: false,
        dbd: true,
        page_control: 0,
        page_code: 0x0A,
        subpage_code: 0,
        allocation_length: 16,
    };
    let mut cmd = Command::new(Tag(500), nexus(1), &sense_control);
    cmd = cmd.data_in(SgList::single(DATA, 16).unwrap());
    let c = run_to_completion(&mut a, &mut mem, Instant(500), cmd, 64, &mut |_| {})
        .unwrap()
        .0;
    assert!(c.is_good(), "{c:?}");
    let mut current = [0u8; 16];
    mem.read(DATA, &mut current).unwrap();
    control[4..].copy_from_slice(&current[4..]);
    let c = send(&mut a, &mut mem, 1_000, 3, cdb6(0x10, 16), &control, 16);
    assert!(is_passive(&c), "{c:?}");
    let c = send(&mut a, &mut mem, 2_000, 1, cdb6(0x10, 16), &control, 16);
    assert!(c.is_good(), "{c:?}");
    // An unknown page: passive on the non-owner, the LU's INVALID FIELD IN PARAMETER LIST
    // on the owner.
    let unknown = [0, 0, 0, 0, 0x23, 0x02, 0x01, 0xFF];
    let c = send(&mut a, &mut mem, 3_000, 3, cdb6(0x10, 8), &unknown, 8);
    assert!(is_passive(&c), "{c:?}");
    let c = send(&mut a, &mut mem, 4_000, 1, cdb6(0x10, 8), &unknown, 8);
    assert_illegal(&c, Asc::INVALID_FIELD_IN_PARAMETER_LIST, None);
    // No list at all: passive, and GOOD on the owner.
    let c = send(&mut a, &mut mem, 5_000, 3, cdb6(0x10, 0), &[], 0);
    assert!(is_passive(&c), "{c:?}");
    let c = send(&mut a, &mut mem, 6_000, 1, cdb6(0x10, 0), &[], 0);
    assert!(c.is_good(), "{c:?}");
    // A header with no page.
    let c = send(&mut a, &mut mem, 7_000, 3, cdb6(0x10, 4), &[0, 0, 0, 0], 4);
    assert!(is_passive(&c), "{c:?}");
    assert_eq!(a.owner(0), Some(0));
    assert_eq!(a.stats().page22_trespasses, 0);
}

#[test]
fn with_implicit_trespass_another_page_on_the_non_owner_moves_the_lun_and_reaches_the_lu() {
    setup!(fx, a, mem, TrespassCommand::ModeSelectPage22, true);
    let unknown = [0, 0, 0, 0, 0x23, 0x02, 0x01, 0xFF];
    let mut c = send(&mut a, &mut mem, 1_000, 3, cdb6(0x10, 8), &unknown, 8);
    if c.sense_repr()
        .is_some_and(|s| s.key == SenseKey::UNIT_ATTENTION)
    {
        c = send(&mut a, &mut mem, 2_000, 3, cdb6(0x10, 8), &unknown, 8);
    }
    assert_illegal(&c, Asc::INVALID_FIELD_IN_PARAMETER_LIST, None);
    assert_eq!(a.owner(0), Some(1));
    assert_eq!((a.stats().trespasses, a.stats().page22_trespasses), (1, 0));
}

/// One malformed MODE SELECT: the CDB, the list, the SG length, and what must come back.
struct Case {
    name: &'static str,
    cdb: CdbBytes,
    data: Vec<u8>,
    sent: u32,
    asc: Asc,
    pointer: Option<(bool, u16, Option<u8>)>,
}

fn with(base: &[u8], at: usize, value: u8) -> Vec<u8> {
    let mut v = base.to_vec();
    v[at] = value;
    v
}

fn malformed() -> Vec<Case> {
    let param = |byte, bit| Some((false, byte, bit));
    let in_cdb = |byte, bit| Some((true, byte, bit));
    let mut long_extra = LONG.to_vec();
    long_extra.extend_from_slice(&[0x0A, 0x0A]);
    vec![
        Case {
            name: "truncated header (6)",
            cdb: cdb6(0x10, 3),
            data: SHORT[..3].to_vec(),
            sent: 3,
            asc: Asc::PARAMETER_LIST_LENGTH_ERROR,
            pointer: None,
        },
        Case {
            name: "truncated header (10)",
            cdb: cdb10(0x10, 7),
            data: LONG[..7].to_vec(),
            sent: 7,
            asc: Asc::PARAMETER_LIST_LENGTH_ERROR,
            pointer: None,
        },
        Case {
            name: "list ends after the page code",
            cdb: cdb6(0x10, 5),
            data: SHORT[..5].to_vec(),
            sent: 5,
            asc: Asc::PARAMETER_LIST_LENGTH_ERROR,
            pointer: None,
        },
        Case {
            name: "list shorter than the short page",
            cdb: cdb6(0x10, 7),
            data: SHORT[..7].to_vec(),
            sent: 7,
            asc: Asc::PARAMETER_LIST_LENGTH_ERROR,
            pointer: None,
        },
        Case {
            name: "list shorter than the long page",
            cdb: cdb10(0x10, 18),
            data: LONG[..18].to_vec(),
            sent: 18,
            asc: Asc::PARAMETER_LIST_LENGTH_ERROR,
            pointer: None,
        },
        Case {
            name: "page length 3",
            cdb: cdb6(0x10, 8),
            data: with(&SHORT, 5, 3),
            sent: 8,
            asc: Asc::INVALID_FIELD_IN_PARAMETER_LIST,
            pointer: param(5, None),
        },
        Case {
            name: "page length 0",
            cdb: cdb10(0x10, 19),
            data: with(&LONG, 9, 0),
            sent: 19,
            asc: Asc::INVALID_FIELD_IN_PARAMETER_LIST,
            pointer: param(9, None),
        },
        Case {
            name: "another page after the trespass page",
            cdb: cdb10(0x10, 21),
            data: long_extra,
            sent: 21,
            asc: Asc::INVALID_FIELD_IN_PARAMETER_LIST,
            pointer: param(19, None),
        },
        Case {
            name: "one stray byte after the trespass page",
            cdb: cdb6(0x10, 9),
            data: [&SHORT[..], &[0][..]].concat(),
            sent: 9,
            asc: Asc::INVALID_FIELD_IN_PARAMETER_LIST,
            pointer: param(8, None),
        },
        Case {
            name: "trespass code 2",
            cdb: cdb6(0x10, 8),
            data: with(&SHORT, 6, 0x02),
            sent: 8,
            asc: Asc::INVALID_FIELD_IN_PARAMETER_LIST,
            pointer: param(6, None),
        },
        Case {
            name: "trespass target 0x05 (short)",
            cdb: cdb6(0x10, 8),
            data: with(&SHORT, 7, 0x05),
            sent: 8,
            asc: Asc::INVALID_FIELD_IN_PARAMETER_LIST,
            pointer: param(7, None),
        },
        Case {
            name: "trespass target 0xFF00 (long)",
            cdb: cdb10(0x10, 19),
            data: with(&LONG, 12, 0x00),
            sent: 19,
            asc: Asc::INVALID_FIELD_IN_PARAMETER_LIST,
            pointer: param(11, None),
        },
        Case {
            name: "SPF set on the trespass page",
            cdb: cdb6(0x10, 8),
            data: with(&SHORT, 4, 0x62),
            sent: 8,
            asc: Asc::INVALID_FIELD_IN_PARAMETER_LIST,
            pointer: param(4, Some(6)),
        },
        Case {
            name: "block descriptor length beyond the list (6)",
            cdb: cdb6(0x10, 8),
            data: with(&SHORT, 3, 8),
            sent: 8,
            asc: Asc::INVALID_FIELD_IN_PARAMETER_LIST,
            pointer: param(3, None),
        },
        Case {
            name: "block descriptor length beyond the list (10)",
            cdb: cdb10(0x10, 19),
            data: with(&LONG, 6, 1),
            sent: 19,
            asc: Asc::INVALID_FIELD_IN_PARAMETER_LIST,
            pointer: param(6, None),
        },
        Case {
            name: "parameter list length beyond the data sent (6)",
            cdb: cdb6(0x10, 8),
            data: SHORT.to_vec(),
            sent: 6,
            asc: Asc::INVALID_FIELD_IN_CDB,
            pointer: in_cdb(4, None),
        },
        Case {
            name: "parameter list length beyond the data sent (10)",
            cdb: cdb10(0x10, 19),
            data: LONG.to_vec(),
            sent: 0,
            asc: Asc::INVALID_FIELD_IN_CDB,
            pointer: in_cdb(7, None),
        },
        Case {
            name: "SP set",
            cdb: cdb6(0x11, 8),
            data: SHORT.to_vec(),
            sent: 8,
            asc: Asc::INVALID_FIELD_IN_CDB,
            pointer: in_cdb(1, Some(0)),
        },
        Case {
            name: "PF clear",
            cdb: cdb10(0x00, 19),
            data: LONG.to_vec(),
            sent: 19,
            asc: Asc::INVALID_FIELD_IN_CDB,
            pointer: in_cdb(1, Some(4)),
        },
    ]
}

#[test]
fn malformed_trespasses_are_illegal_requests_on_either_controller_and_move_nothing() {
    for case in malformed() {
        for port in [1, 3] {
            setup!(fx, a, mem, TrespassCommand::ModeSelectPage22, false);
            let c = send(
                &mut a, &mut mem, 1_000, port, case.cdb, &case.data, case.sent,
            );
            let label = format!("{} on port {port}: {c:?}", case.name);
            let s = c.sense_repr().unwrap_or_else(|| panic!("{label}"));
            assert_eq!(
                (s.key, s.asc),
                (SenseKey::ILLEGAL_REQUEST, case.asc),
                "{label}"
            );
            if let Some((in_cdb, byte, bit)) = case.pointer {
                assert_eq!(
                    s.key_specific,
                    Some(SenseKeySpecific::FieldPointer { in_cdb, bit, byte }),
                    "{label}"
                );
            }
            assert_eq!(a.owner(0), Some(0), "{label}");
            let stats = a.stats();
            assert_eq!(
                (stats.trespasses, stats.page22_trespasses),
                (0, 0),
                "{label}"
            );
            assert_eq!(a.outstanding(), 0, "{label}");
            // The array still works.
            assert!(short(&mut a, &mut mem, 2_000, 3).is_good(), "{label}");
            assert_eq!(a.owner(0), Some(1), "{label}");
        }
    }
}

#[test]
fn a_list_outside_the_initiators_memory_is_a_data_phase_error() {
    setup!(fx, a, mem, TrespassCommand::ModeSelectPage22, false);
    let command = Command {
        tag: Tag(9),
        attribute: TaskAttribute::Simple,
        nexus: nexus(3),
        cdb: cdb6(0x10, 8),
        direction: DataDirection::ToDevice,
        sg: SgList::single(MemAddr(0x9_0000), 8).unwrap(),
    };
    let c = run_to_completion(&mut a, &mut mem, Instant(0), command, 64, &mut |_| {})
        .unwrap()
        .0;
    assert_eq!(
        key_asc(&c),
        (SenseKey::ABORTED_COMMAND, Asc::DATA_PHASE_ERROR)
    );
    assert_eq!(a.owner(0), Some(0));
}

#[test]
fn a_data_in_buffer_on_mode_select_is_refused() {
    setup!(fx, a, mem, TrespassCommand::ModeSelectPage22, false);
    mem.write(DATA, &SHORT).unwrap();
    let command = Command::new(Tag(9), nexus(3), &CdbRepr::TestUnitReady);
    let command = Command {
        cdb: cdb6(0x10, 8),
        ..command
    }
    .data_in(SgList::single(DATA, 8).unwrap());
    let c = run_to_completion(&mut a, &mut mem, Instant(0), command, 64, &mut |_| {})
        .unwrap()
        .0;
    assert_illegal(&c, Asc::INVALID_FIELD_IN_COMMAND_IU, None);
    assert_eq!(a.owner(0), Some(0));
}

/// Random CDBs and lists (mostly near-trespasses with a byte or length changed) never
/// panic; every answer is GOOD (a trespass, then the LU is owned by the receiving
/// controller), ILLEGAL REQUEST, the passive answer, or a data phase error; ownership moves
/// only on a GOOD trespass. Seeded: a failure names the seed.
#[test]
fn random_mode_selects_never_panic_and_move_ownership_only_when_good() {
    let seed = std::env::var("TRESPASS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x22u64);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    setup!(fx, a, mem, TrespassCommand::ModeSelectPage22, false);
    for round in 0..4_000u64 {
        let ten = rng.random_range(0..2) == 0;
        let mut data: Vec<u8> = if ten { LONG.to_vec() } else { SHORT.to_vec() };
        if rng.random_range(0..3) == 0 {
            // The other form after this header.
            data = if ten {
                [&[0u8; 8][..], &SHORT[4..]].concat()
            } else {
                LONG[4..].to_vec()
            };
        }
        for _ in 0..rng.random_range(0..3) {
            let at = rng.random_range(0..data.len() as u64) as usize;
            data[at] = rng.random::<u8>();
        }
        if rng.random_range(0..4) == 0 {
            let extra = rng.random_range(0..6) as usize;
            data.extend((0..extra).map(|_| rng.random::<u8>()));
        }
        let mut length = data.len() as u16;
        if rng.random_range(0..4) == 0 {
            length = rng.random_range(0..32) as u16;
        }
        let byte1 = if rng.random_range(0..8) == 0 {
            rng.random::<u8>() & 0x1F
        } else {
            0x10
        };
        let cdb = if ten {
            cdb10(byte1, length)
        } else {
            cdb6(byte1, length.min(255) as u8)
        };
        let sent = if rng.random_range(0..5) == 0 {
            rng.random_range(0..40) as u32
        } else {
            data.len() as u32
        };
        let port = [1, 2, 3, 4][rng.random_range(0..4) as usize];
        let before = a.owner(0);
        let page22_before = a.stats().page22_trespasses;
        let t = 1_000 * (round + 1);
        let c = send(&mut a, &mut mem, t, port, cdb, &data, sent);
        let label = format!("seed {seed} round {round}: {cdb:?} {data:02x?} sent {sent}: {c:?}");
        let moved = a.owner(0) != before;
        let accepted = a.stats().page22_trespasses != page22_before;
        if c.is_good() {
            if accepted {
                let controller = if port <= 2 { 0 } else { 1 };
                assert_eq!(a.owner(0), Some(controller), "{label}");
            } else {
                assert!(!moved, "{label}");
            }
        } else {
            assert!(!moved && !accepted, "{label}");
            let s = c.sense_repr().unwrap_or_else(|| panic!("{label}"));
            assert!(
                matches!(
                    (s.key, s.asc),
                    (SenseKey::ILLEGAL_REQUEST, _)
                        | (SenseKey::NOT_READY, ASC_NOT_READY_MANUAL_INTERVENTION)
                        | (SenseKey::ABORTED_COMMAND, Asc::DATA_PHASE_ERROR)
                        | (SenseKey::UNIT_ATTENTION, _)
                ),
                "{label}"
            );
        }
        assert_eq!(a.outstanding(), 0, "{label}");
    }
    // Plenty of each kind of answer.
    assert!(a.stats().page22_trespasses > 100);
}
