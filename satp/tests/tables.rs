//! Each SATP's sense / transport error -> action table, case by case, and its path-state
//! bookkeeping (ALUA group reads, follow-over, activation; active/passive trespass rules).

use core::time::Duration;

use block::{BlockError, ErrorKind, Instant, Tag};
use psa::{ActivationOutcome, Path, PathId, PathName, PathState, Satp, SatpAction};
use satp::{ActivationRetry, ActivePassive, ActivePassiveConfig, Alua, AluaConfig, TrespassStyle};
use scsi::response::{TargetPortGroupDescriptor, report_target_port_groups};
use scsi::{
    AccessState, Asc, CommandCompletion, Nexus, Residual, SenseFormat, SenseKey, SenseRepr,
    ServiceResponse, Status,
};

const ZERO: Duration = Duration::ZERO;

fn paths(groups: &[Option<u16>]) -> Vec<Path> {
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut p = Path::new(
                PathName {
                    adapter: 1,
                    channel: 0,
                    target: i as u16,
                    lun: 0,
                },
                Nexus::default(),
                PathState::Active,
            );
            p.group = *g;
            p
        })
        .collect()
}

fn check(key: SenseKey, asc: Asc) -> CommandCompletion {
    CommandCompletion::check_condition(Tag(1), SenseRepr::new(key, asc).to_buf(SenseFormat::Fixed))
}

fn sdf() -> CommandCompletion {
    CommandCompletion {
        service: ServiceResponse::ServiceDeliveryFailure,
        ..CommandCompletion::good(Tag(1), Residual::None)
    }
}

fn rtpg(groups: &[(u16, AccessState, &[u16])]) -> Vec<u8> {
    let descriptors: Vec<_> = groups
        .iter()
        .map(|(id, state, ports)| TargetPortGroupDescriptor {
            preferred: false,
            state: *state,
            supported: AccessState::ALL_SUPPORTED,
            id: *id,
            status_code: 0,
            ports,
        })
        .collect();
    let mut buf = vec![0u8; 512];
    let n = report_target_port_groups(&descriptors, true, 10, &mut buf);
    buf.truncate(n);
    buf
}

/// Feeds `data` to the SATP as the answer to its pending read.
fn read_groups(alua: &mut Alua, now: Instant, paths: &mut [Path], data: &[u8]) {
    let cmd = alua.poll_command(now, paths).expect("a read is due");
    alua.command_done(
        now,
        &cmd,
        paths,
        &CommandCompletion::good(Tag(2), Residual::None),
        data,
    );
}

#[test]
fn alua_table_case_by_case() {
    let c = AluaConfig::default();
    let tr = c.transition_retry;
    // (answer, other path usable, action, path 1 state after, groups re-read)
    let cases: Vec<(CommandCompletion, bool, SatpAction, PathState, bool)> = vec![
        (
            sdf(),
            true,
            SatpAction::Failover { delay: ZERO },
            PathState::Dead,
            false,
        ),
        (
            check(SenseKey::NOT_READY, Asc::ASYMMETRIC_ACCESS_TRANSITION),
            true,
            SatpAction::Failover { delay: ZERO },
            PathState::Transitioning,
            true,
        ),
        (
            check(SenseKey::NOT_READY, Asc::ASYMMETRIC_ACCESS_TRANSITION),
            false,
            SatpAction::Retry { delay: tr },
            PathState::Active,
            true,
        ),
        (
            check(SenseKey::NOT_READY, Asc::TARGET_PORT_STANDBY),
            true,
            SatpAction::Failover { delay: ZERO },
            PathState::Standby,
            true,
        ),
        (
            check(SenseKey::NOT_READY, Asc::TARGET_PORT_STANDBY),
            false,
            SatpAction::Activate,
            PathState::Standby,
            true,
        ),
        (
            check(SenseKey::NOT_READY, Asc::new(0x04, 0x03)),
            true,
            SatpAction::Failover { delay: ZERO },
            PathState::Standby,
            true,
        ),
        (
            check(SenseKey::NOT_READY, Asc::TARGET_PORT_UNAVAILABLE),
            true,
            SatpAction::Failover { delay: ZERO },
            PathState::Unavailable,
            true,
        ),
        (
            check(
                SenseKey::UNIT_ATTENTION,
                Asc::ASYMMETRIC_ACCESS_STATE_CHANGED,
            ),
            true,
            SatpAction::Retry { delay: ZERO },
            PathState::Active,
            true,
        ),
        (
            check(
                SenseKey::UNIT_ATTENTION,
                satp::alua::IMPLICIT_TRANSITION_FAILED,
            ),
            true,
            SatpAction::Retry { delay: ZERO },
            PathState::Active,
            true,
        ),
        (
            check(SenseKey::UNIT_ATTENTION, Asc::POWER_ON_OCCURRED),
            true,
            SatpAction::Retry { delay: ZERO },
            PathState::Active,
            false,
        ),
        (
            CommandCompletion::status(Tag(1), Status::BUSY),
            true,
            SatpAction::Retry {
                delay: c.base.busy_delay,
            },
            PathState::Active,
            false,
        ),
        (
            check(SenseKey::ILLEGAL_REQUEST, Asc::LOGICAL_UNIT_NOT_SUPPORTED),
            true,
            SatpAction::DeviceLost,
            PathState::Active,
            false,
        ),
        (
            check(SenseKey::MEDIUM_ERROR, Asc::UNRECOVERED_READ_ERROR),
            true,
            SatpAction::Fail(BlockError::new(ErrorKind::MediumError)),
            PathState::Active,
            false,
        ),
    ];
    for (i, (completion, other, action, state, reread)) in cases.into_iter().enumerate() {
        let mut alua: Alua = Alua::default();
        let mut p = paths(&[Some(1), Some(2)]);
        // The initial read.
        let data = rtpg(&[
            (1, AccessState::ActiveOptimized, &[1]),
            (2, AccessState::ActiveOptimized, &[2]),
        ]);
        read_groups(&mut alua, Instant(0), &mut p, &data);
        assert_eq!(alua.next_event(), None, "case {i}");
        if !other {
            p[0].state = PathState::Dead;
        }
        let now = Instant(1_000_000);
        assert_eq!(
            alua.evaluate(now, PathId(1), &mut p, &completion),
            action,
            "case {i}: {completion:?}"
        );
        assert_eq!(p[1].state, state, "case {i}");
        assert_eq!(alua.next_event() == Some(now), reread, "case {i}");
        assert_eq!(alua.poll_command(now, &p).is_some(), reread, "case {i}");
        // While the read is outstanding no timer is reported (the NMP would not ask).
        assert_eq!(alua.next_event(), None, "case {i}");
    }
}

#[test]
fn alua_reads_groups_rereads_during_transitions_and_times_out() {
    let mut alua: Alua = Alua::default();
    let mut p = paths(&[Some(1), Some(2), Some(1), Some(2)]);
    read_groups(
        &mut alua,
        Instant(0),
        &mut p,
        &rtpg(&[
            (1, AccessState::ActiveOptimized, &[1, 2]),
            (2, AccessState::ActiveNonOptimized, &[3, 4]),
        ]),
    );
    let states: Vec<_> = p.iter().map(|p| p.state).collect();
    assert_eq!(
        states,
        [
            PathState::Active,
            PathState::ActiveUnoptimized,
            PathState::Active,
            PathState::ActiveUnoptimized
        ]
    );
    // Group 1 goes transitioning: the read shows it, and the SATP re-reads every 2 s.
    let t = Instant(1_000_000_000);
    let transition = check(SenseKey::NOT_READY, Asc::ASYMMETRIC_ACCESS_TRANSITION);
    assert_eq!(
        alua.evaluate(t, PathId(0), &mut p, &transition),
        SatpAction::Failover { delay: ZERO }
    );
    let transitioning = rtpg(&[
        (1, AccessState::Transitioning, &[1, 2]),
        (2, AccessState::ActiveNonOptimized, &[3, 4]),
    ]);
    read_groups(&mut alua, t, &mut p, &transitioning);
    assert_eq!(p[2].state, PathState::Transitioning);
    let t2 = Instant(t.0 + 2_000_000_000);
    assert_eq!(alua.next_event(), Some(t2));
    assert!(alua.poll_command(Instant(t2.0 - 1), &p).is_none());
    read_groups(&mut alua, t2, &mut p, &transitioning);
    assert_eq!(alua.next_event(), Some(Instant(t2.0 + 2_000_000_000)));
    // Beyond the transition timeout the path is given up as unavailable.
    let late = Instant(t.0 + 61_000_000_000);
    p[1].state = PathState::ActiveUnoptimized;
    p[0].state = PathState::Active;
    assert_eq!(
        alua.evaluate(late, PathId(0), &mut p, &transition),
        SatpAction::Failover { delay: ZERO }
    );
    assert_eq!(p[0].state, PathState::Unavailable);
    // The transition ends: AO again, and the re-reads stop.
    let done = rtpg(&[
        (1, AccessState::ActiveOptimized, &[1, 2]),
        (2, AccessState::ActiveNonOptimized, &[3, 4]),
    ]);
    read_groups(&mut alua, late, &mut p, &done);
    assert_eq!(p[0].state, PathState::Active);
    assert_eq!(alua.next_event(), None);
    assert_eq!(alua.transition_since(), None);
    assert_eq!(alua.reads(), 4);
}

#[test]
fn alua_follow_over_and_explicit_activation() {
    let mut alua: Alua = Alua::default();
    let mut p = paths(&[Some(1), Some(2)]);
    read_groups(
        &mut alua,
        Instant(0),
        &mut p,
        &rtpg(&[
            (1, AccessState::ActiveOptimized, &[1]),
            (2, AccessState::Standby, &[2]),
        ]),
    );
    // Another host moves the LUN to group 2 (2A/06): re-read, follow, do not revert.
    let ua = check(
        SenseKey::UNIT_ATTENTION,
        Asc::ASYMMETRIC_ACCESS_STATE_CHANGED,
    );
    let t = Instant(5);
    assert_eq!(
        alua.evaluate(t, PathId(0), &mut p, &ua),
        SatpAction::Retry { delay: ZERO }
    );
    read_groups(
        &mut alua,
        t,
        &mut p,
        &rtpg(&[
            (1, AccessState::Standby, &[1]),
            (2, AccessState::ActiveOptimized, &[2]),
        ]),
    );
    assert_eq!(
        (p[0].state, p[1].state),
        (PathState::Standby, PathState::Active)
    );
    assert_eq!(alua.followed(), 2);
    assert_eq!(alua.activations(), 0, "nothing reverted");
    // Group 2's only path dies and group 1 is standby: SET TARGET PORT GROUPS on path 0.
    assert_eq!(
        alua.evaluate(Instant(9), PathId(1), &mut p, &sdf()),
        SatpAction::Failover { delay: ZERO }
    );
    let standby = check(SenseKey::NOT_READY, Asc::TARGET_PORT_STANDBY);
    assert_eq!(
        alua.evaluate(Instant(10), PathId(0), &mut p, &standby),
        SatpAction::Activate
    );
    let act = alua
        .activation(Instant(10), &p)
        .expect("explicit activation");
    assert_eq!(act.path, PathId(0));
    assert_eq!(act.cdb.as_bytes()[..2], [0xA4, 0x0A]);
    assert_eq!(act.data.as_slice(), [0, 0, 0, 0, 0x00, 0, 0, 1]);
    alua.activation_done(Instant(11), &act, &mut p, ActivationOutcome::Good);
    assert_eq!(p[0].state, PathState::Active);
    assert_eq!(alua.activations(), 1);
    // The read that follows shows the change this host caused (group 1 AO): only group 2's
    // move to standby is counted as followed.
    read_groups(
        &mut alua,
        Instant(11),
        &mut p,
        &rtpg(&[
            (1, AccessState::ActiveOptimized, &[1]),
            (2, AccessState::Standby, &[2]),
        ]),
    );
    assert_eq!(alua.followed(), 3);
    // Implicit-only: no activation; the I/O waits for the array.
    let mut implicit: Alua = Alua::new(AluaConfig {
        explicit: false,
        ..AluaConfig::default()
    });
    let mut p = paths(&[Some(1)]);
    assert_eq!(
        implicit.evaluate(Instant(0), PathId(0), &mut p, &standby),
        SatpAction::Failover {
            delay: AluaConfig::default().transition_retry
        }
    );
    assert_eq!(implicit.activation(Instant(0), &p), None);
}

#[test]
fn active_passive_table_case_by_case() {
    let passive = check(SenseKey::NOT_READY, satp::ap::NOT_READY_PASSIVE);
    let base = ActivePassiveConfig::default().base;
    // (answer, others usable, action, path 1 state after)
    let cases: Vec<(CommandCompletion, bool, SatpAction, PathState)> = vec![
        (
            sdf(),
            true,
            SatpAction::Failover { delay: ZERO },
            PathState::Dead,
        ),
        (
            passive.clone(),
            true,
            SatpAction::Failover { delay: ZERO },
            PathState::Standby,
        ),
        (
            passive.clone(),
            false,
            SatpAction::Activate,
            PathState::Standby,
        ),
        (
            check(SenseKey::NOT_READY, Asc::TARGET_PORT_STANDBY),
            false,
            SatpAction::Activate,
            PathState::Standby,
        ),
        (
            check(SenseKey::NOT_READY, Asc::BECOMING_READY),
            true,
            SatpAction::Retry {
                delay: base.not_ready_delay,
            },
            PathState::Active,
        ),
        (
            CommandCompletion::status(Tag(1), Status::TASK_SET_FULL),
            true,
            SatpAction::Retry {
                delay: base.busy_delay,
            },
            PathState::Active,
        ),
        (
            check(SenseKey::UNIT_ATTENTION, Asc::POWER_ON_OCCURRED),
            true,
            SatpAction::Retry { delay: ZERO },
            PathState::Active,
        ),
        (
            check(SenseKey::ILLEGAL_REQUEST, Asc::LOGICAL_UNIT_NOT_SUPPORTED),
            true,
            SatpAction::DeviceLost,
            PathState::Active,
        ),
    ];
    for (i, (completion, others, action, state)) in cases.into_iter().enumerate() {
        let mut ap = ActivePassive::default();
        let mut p = paths(&[None, None]);
        if !others {
            p[0].state = PathState::Dead;
        }
        assert_eq!(
            ap.evaluate(Instant(0), PathId(1), &mut p, &completion),
            action,
            "case {i}"
        );
        assert_eq!(p[1].state, state, "case {i}");
    }
}

#[test]
fn active_passive_trespasses_once_and_not_back() {
    let passive = check(SenseKey::NOT_READY, satp::ap::NOT_READY_PASSIVE);
    let mut ap = ActivePassive::default();
    // Paths 0, 1 on the owner (both dead now); 2, 3 on the passive controller.
    let mut p = paths(&[None, None, None, None]);
    p[0].state = PathState::Dead;
    p[1].state = PathState::Dead;
    let t = Instant(1_000_000_000);
    assert_eq!(
        ap.evaluate(t, PathId(2), &mut p, &passive),
        SatpAction::Failover { delay: ZERO }
    );
    assert_eq!(
        ap.evaluate(t, PathId(3), &mut p, &passive),
        SatpAction::Activate
    );
    let act = ap.activation(t, &p).expect("trespass");
    assert_eq!(act.path, PathId(2));
    assert_eq!(act.cdb.as_bytes(), [0x1B, 0, 0, 0, 0x01, 0]);
    ap.activation_done(t, &act, &mut p, ActivationOutcome::Good);
    assert_eq!(ap.trespasses(), 1);
    assert_eq!(
        (p[2].state, p[3].state),
        (PathState::Active, PathState::Active)
    );
    // The old owner's paths return (probed back to active); they answer passive and are
    // standby again, with active paths left: no trespass back.
    p[0].state = PathState::Active;
    let t2 = Instant(t.0 + 10_000_000_000);
    assert_eq!(
        ap.evaluate(t2, PathId(0), &mut p, &passive),
        SatpAction::Failover { delay: ZERO }
    );
    assert_eq!(p[0].state, PathState::Standby);
    // A probe's GOOD on the passive path keeps it standby while others are usable.
    ap.path_ok(t2, PathId(0), &mut p);
    assert_eq!(p[0].state, PathState::Standby);
    assert_eq!(ap.trespasses(), 1);
    // Within the hold-off, a passive answer with nothing usable waits instead.
    let mut ap = ActivePassive::default();
    let mut p = paths(&[None, None]);
    p[0].state = PathState::Dead;
    ap.evaluate(t, PathId(1), &mut p, &passive);
    let act = ap.activation(t, &p).expect("trespass");
    ap.activation_done(t, &act, &mut p, ActivationOutcome::Good);
    let soon = Instant(t.0 + 500_000_000);
    assert_eq!(
        ap.evaluate(soon, PathId(1), &mut p, &passive),
        SatpAction::Failover {
            delay: Duration::from_millis(1500)
        }
    );
}

#[test]
fn active_passive_retests_paths_that_were_passive_long_ago() {
    // An array-side trespass: the active path answers passive; the path that answered
    // passive long ago is tried again before any trespass.
    let passive = check(SenseKey::NOT_READY, satp::ap::NOT_READY_PASSIVE);
    let mut ap = ActivePassive::default();
    let mut p = paths(&[None, None]);
    assert_eq!(
        ap.evaluate(Instant(0), PathId(1), &mut p, &passive),
        SatpAction::Failover { delay: ZERO }
    );
    let later = Instant(1_000_000_000);
    assert_eq!(
        ap.evaluate(later, PathId(0), &mut p, &passive),
        SatpAction::Failover { delay: ZERO }
    );
    assert_eq!(
        (p[0].state, p[1].state),
        (PathState::Standby, PathState::Active)
    );
    assert_eq!(ap.trespasses(), 0);
}

#[test]
fn cx_trespass_page() {
    let (cdb, data) = ActivePassive::trespass_command(TrespassStyle::ModeSelectPage22);
    assert_eq!(cdb.as_bytes(), [0x15, 0x10, 0, 0, 8, 0]);
    assert_eq!(data.as_slice(), [0, 0, 0, 0, 0x22, 0x02, 0x01, 0xFF]);
    let mut ap = ActivePassive::new(ActivePassiveConfig {
        style: TrespassStyle::ModeSelectPage22,
        ..ActivePassiveConfig::default()
    });
    let mut p = paths(&[None]);
    let passive = check(SenseKey::NOT_READY, satp::ap::NOT_READY_PASSIVE);
    assert_eq!(
        ap.evaluate(Instant(0), PathId(0), &mut p, &passive),
        SatpAction::Activate
    );
    let act = ap.activation(Instant(0), &p).unwrap();
    assert_eq!((act.cdb, act.data.clone()), (cdb, data));
}

#[test]
fn cx_trespass_page_long_form() {
    let (cdb, data) = ActivePassive::trespass_command(TrespassStyle::ModeSelect10Page22);
    assert_eq!(cdb.as_bytes(), [0x55, 0x10, 0, 0, 0, 0, 0, 0, 19, 0]);
    assert_eq!(
        data.as_slice(),
        [
            0, 0, 0, 0, 0, 0, 0, 0, 0x22, 0x09, 0x01, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0
        ]
    );
    let mut ap = ActivePassive::new(ActivePassiveConfig {
        style: TrespassStyle::ModeSelect10Page22,
        ..ActivePassiveConfig::default()
    });
    let mut p = paths(&[None, None]);
    p[0].state = PathState::Dead;
    let passive = check(SenseKey::NOT_READY, satp::ap::NOT_READY_PASSIVE);
    assert_eq!(
        ap.evaluate(Instant(0), PathId(1), &mut p, &passive),
        SatpAction::Activate
    );
    let act = ap.activation(Instant(0), &p).unwrap();
    assert_eq!(act.path, PathId(1), "sent on the passive path");
    assert_eq!((act.cdb, act.data.clone()), (cdb, data));
    ap.activation_done(Instant(0), &act, &mut p, ActivationOutcome::Good);
    assert_eq!(ap.trespasses(), 1);
    assert_eq!(p[1].state, PathState::Active);
    assert_eq!(ap.name(), satp::VMW_SATP_CX);
    assert_eq!(ActivePassive::default().name(), satp::VMW_SATP_DEFAULT_AP);
}

/// The failed activations of each kind: (answer, path state after, what a request that finds
/// no usable path gets at once, and after the back-off).
fn failure_cases() -> Vec<(ActivationOutcome, &'static str, bool, SatpAction)> {
    let check = |key, asc| ActivationOutcome::CheckCondition { key, asc };
    // Asked 1 ms after the failure.
    let later = SatpAction::Failover {
        delay: Duration::from_millis(1999),
    };
    let fail = SatpAction::Fail(BlockError::new(ErrorKind::NotReady));
    vec![
        // The passive controller refuses the trespass (a command of the wrong style).
        (
            check(SenseKey::NOT_READY, satp::ap::NOT_READY_PASSIVE),
            "02/04/03",
            false,
            later,
        ),
        (
            check(SenseKey::NOT_READY, Asc::ASYMMETRIC_ACCESS_TRANSITION),
            "02/04/0A",
            false,
            later,
        ),
        (
            ActivationOutcome::Status(Status::BUSY),
            "BUSY",
            false,
            later,
        ),
        (
            ActivationOutcome::Status(Status::RESERVATION_CONFLICT),
            "RESERVATION CONFLICT",
            false,
            later,
        ),
        // Refused as malformed or unknown: given up at once.
        (
            check(SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB),
            "05/24/00",
            false,
            fail,
        ),
        (
            check(
                SenseKey::ILLEGAL_REQUEST,
                Asc::INVALID_FIELD_IN_PARAMETER_LIST,
            ),
            "05/26/00",
            false,
            fail,
        ),
        (
            check(
                SenseKey::ILLEGAL_REQUEST,
                Asc::INVALID_COMMAND_OPERATION_CODE,
            ),
            "05/20/00",
            false,
            fail,
        ),
        // Over at once: retried at once.
        (
            check(SenseKey::UNIT_ATTENTION, Asc::POWER_ON_OCCURRED),
            "06/29/00",
            false,
            SatpAction::Activate,
        ),
        // The path died under the command: dead; the retry goes on another path.
        (
            ActivationOutcome::Transport,
            "transport",
            true,
            SatpAction::Activate,
        ),
    ]
}

/// Paths 1 and 2 (the passive controller's) both answer passive at `now`, so no path is
/// left to re-test: what the SATP then does.
fn both(ap: &mut ActivePassive, now: Instant, p: &mut [Path]) -> SatpAction {
    let passive = check(SenseKey::NOT_READY, satp::ap::NOT_READY_PASSIVE);
    let first = ap.evaluate(now, PathId(1), p, &passive);
    if first != (SatpAction::Failover { delay: ZERO }) {
        return first;
    }
    ap.evaluate(now, PathId(2), p, &passive)
}

#[test]
fn active_passive_failed_trespass_case_by_case() {
    let passive = check(SenseKey::NOT_READY, satp::ap::NOT_READY_PASSIVE);
    let t = Instant(1_000_000_000);
    let soon = Instant(t.0 + 1_000_000);
    for (outcome, name, dead, action) in failure_cases() {
        let mut ap = ActivePassive::default();
        // Path 0 on the owner (dead); 1 and 2 on the passive controller.
        let mut p = paths(&[None, None, None]);
        p[0].state = PathState::Dead;
        ap.evaluate(t, PathId(1), &mut p, &passive);
        assert_eq!(
            ap.evaluate(t, PathId(2), &mut p, &passive),
            SatpAction::Activate,
            "{name}"
        );
        let act = ap.activation(t, &p).expect("trespass");
        assert_eq!(act.path, PathId(1), "{name}");
        ap.activation_done(t, &act, &mut p, outcome);
        assert_eq!(ap.failed_trespasses(), 1, "{name}");
        assert_eq!(ap.trespasses(), 0, "{name}");
        assert_eq!(ap.retry_state().last_failure(), Some(outcome), "{name}");
        let expect = if dead {
            PathState::Dead
        } else {
            PathState::Standby
        };
        assert_eq!(p[1].state, expect, "{name}");
        // A request that finds no usable path right after.
        let on = if dead { PathId(2) } else { PathId(1) };
        assert_eq!(ap.evaluate(soon, on, &mut p, &passive), action, "{name}");
        match action {
            SatpAction::Activate => {
                let next = ap.activation(soon, &p).expect("retried at once");
                assert_eq!(next.path, on, "{name}: on a path that is not dead");
            }
            SatpAction::Failover { .. } => {
                assert_eq!(
                    ap.activation(soon, &p),
                    None,
                    "{name}: not before the back-off"
                );
                // After the back-off: activate again.
                let later = Instant(t.0 + 2_000_000_000);
                assert_eq!(both(&mut ap, later, &mut p), SatpAction::Activate, "{name}");
                assert_eq!(ap.give_ups(), 0, "{name}");
            }
            _ => {
                assert_eq!(ap.give_ups(), 1, "{name}");
                assert_eq!(ap.activation(soon, &p), None, "{name}: given up");
                // The give-up lasts 30 s, then a new cycle starts.
                let before = Instant(t.0 + 29_999_000_000);
                assert_eq!(both(&mut ap, before, &mut p), action, "{name}");
                let after = Instant(t.0 + 30_000_000_000);
                assert_eq!(both(&mut ap, after, &mut p), SatpAction::Activate, "{name}");
            }
        }
    }
}

#[test]
fn active_passive_gives_up_after_the_retries_and_a_success_resets() {
    let passive = check(SenseKey::NOT_READY, satp::ap::NOT_READY_PASSIVE);
    let refused = ActivationOutcome::CheckCondition {
        key: SenseKey::NOT_READY,
        asc: satp::ap::NOT_READY_PASSIVE,
    };
    let config = ActivePassiveConfig {
        retry: ActivationRetry {
            retries: 2,
            delay: Duration::from_millis(500),
            give_up: Duration::from_secs(10),
        },
        ..ActivePassiveConfig::default()
    };
    let mut ap = ActivePassive::new(config);
    let mut p = paths(&[None, None]);
    p[0].state = PathState::Dead;
    // Ask every 10 ms for 12 s: 3 trespasses (0, 0.5, 1 s), then NOT READY until 11 s, then
    // a new cycle.
    let mut sent = Vec::new();
    let mut failed = 0;
    for i in 0..1200u64 {
        let now = Instant(i * 10_000_000);
        match ap.evaluate(now, PathId(1), &mut p, &passive) {
            SatpAction::Activate => {
                let act = ap.activation(now, &p).expect("trespass");
                sent.push(now.0 / 1_000_000);
                ap.activation_done(now, &act, &mut p, refused);
            }
            SatpAction::Failover { delay } => assert!(delay <= config.retry.delay),
            SatpAction::Fail(e) => {
                assert_eq!(e.kind(), ErrorKind::NotReady);
                failed += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sent, [0, 500, 1000, 11000, 11500]);
    assert_eq!(failed, 999, "given up from 1 s to 11 s, asked every 10 ms");
    assert_eq!((ap.failed_trespasses(), ap.give_ups()), (5, 1));
    // The next one succeeds: the retry state is cleared, the path active.
    let now = Instant(12_000_000_000);
    assert_eq!(
        ap.evaluate(now, PathId(1), &mut p, &passive),
        SatpAction::Activate
    );
    let act = ap.activation(now, &p).expect("trespass");
    ap.activation_done(now, &act, &mut p, ActivationOutcome::Good);
    assert!(ap.retry_state().is_clear());
    assert_eq!((ap.trespasses(), p[1].state), (1, PathState::Active));
}

#[test]
fn alua_failed_stpg_case_by_case() {
    let standby = check(SenseKey::NOT_READY, Asc::TARGET_PORT_STANDBY);
    let t = Instant(1_000_000_000);
    let soon = Instant(t.0 + 1_000_000);
    for (outcome, name, dead, action) in failure_cases() {
        let mut alua: Alua = Alua::default();
        // Group 1 (AO) on path 0, dead; group 2 (standby) on paths 1 and 2.
        let mut p = paths(&[Some(1), Some(2), Some(2)]);
        read_groups(
            &mut alua,
            Instant(0),
            &mut p,
            &rtpg(&[
                (1, AccessState::ActiveOptimized, &[1]),
                (2, AccessState::Standby, &[2, 3]),
            ]),
        );
        p[0].state = PathState::Dead;
        assert_eq!(
            alua.evaluate(t, PathId(1), &mut p, &standby),
            SatpAction::Activate,
            "{name}"
        );
        // The re-read the standby answer asked for (the NMP asks for the activation after it).
        read_groups(
            &mut alua,
            t,
            &mut p,
            &rtpg(&[
                (1, AccessState::ActiveOptimized, &[1]),
                (2, AccessState::Standby, &[2, 3]),
            ]),
        );
        let act = alua.activation(t, &p).expect("SET TARGET PORT GROUPS");
        assert_eq!(act.path, PathId(1), "{name}");
        alua.activation_done(t, &act, &mut p, outcome);
        assert_eq!(alua.activation_failures(), 1, "{name}");
        assert_eq!(
            alua.retry_state(2).and_then(|r| r.last_failure()),
            Some(outcome),
            "{name}"
        );
        // Implicit behaviour: the groups are re-read at once.
        assert_eq!(alua.next_event(), Some(t), "{name}");
        let expect = if dead {
            PathState::Dead
        } else {
            PathState::Standby
        };
        assert_eq!(p[1].state, expect, "{name}");
        let on = if dead { PathId(2) } else { PathId(1) };
        assert_eq!(alua.evaluate(soon, on, &mut p, &standby), action, "{name}");
        match action {
            SatpAction::Activate => {
                let next = alua.activation(soon, &p).expect("retried at once");
                assert_eq!(next.path, on, "{name}");
            }
            SatpAction::Failover { .. } => {
                assert_eq!(alua.activation(soon, &p), None, "{name}");
                // The re-read shows the array made group 2 non-optimized by itself: used,
                // with no activation.
                read_groups(
                    &mut alua,
                    soon,
                    &mut p,
                    &rtpg(&[
                        (1, AccessState::ActiveOptimized, &[1]),
                        (2, AccessState::ActiveNonOptimized, &[2, 3]),
                    ]),
                );
                assert_eq!(p[1].state, PathState::ActiveUnoptimized, "{name}");
                assert_eq!(alua.activations(), 1, "{name}");
            }
            _ => {
                assert_eq!(alua.give_ups(), 1, "{name}");
                assert_eq!(alua.activation(soon, &p), None, "{name}");
            }
        }
    }
}

#[test]
fn alua_tries_another_group_while_one_backs_off_and_a_success_resets() {
    let standby = check(SenseKey::NOT_READY, Asc::TARGET_PORT_STANDBY);
    let mut alua: Alua = Alua::default();
    // Group 1 (AO) dead; groups 2 and 3 standby.
    let mut p = paths(&[Some(1), Some(2), Some(3)]);
    read_groups(
        &mut alua,
        Instant(0),
        &mut p,
        &rtpg(&[
            (1, AccessState::ActiveOptimized, &[1]),
            (2, AccessState::Standby, &[2]),
            (3, AccessState::Standby, &[3]),
        ]),
    );
    p[0].state = PathState::Dead;
    let t = Instant(1_000_000);
    assert_eq!(
        alua.evaluate(t, PathId(1), &mut p, &standby),
        SatpAction::Activate
    );
    let act = alua.activation(t, &p).unwrap();
    assert_eq!(act.data[6..], [0, 2], "group 2 first");
    let busy = ActivationOutcome::Status(Status::BUSY);
    alua.activation_done(t, &act, &mut p, busy);
    // Group 2 backs off; group 3 is tried at once.
    assert_eq!(
        alua.evaluate(t, PathId(2), &mut p, &standby),
        SatpAction::Activate
    );
    let act = alua.activation(t, &p).unwrap();
    assert_eq!(act.data[6..], [0, 3]);
    alua.activation_done(t, &act, &mut p, busy);
    // Both back off: wait for the earlier.
    assert_eq!(
        alua.evaluate(t, PathId(2), &mut p, &standby),
        SatpAction::Failover {
            delay: Duration::from_secs(2)
        }
    );
    // After the back-off group 2 is activated and answers GOOD: its state is cleared.
    let later = Instant(t.0 + 2_000_000_000);
    assert_eq!(
        alua.evaluate(later, PathId(1), &mut p, &standby),
        SatpAction::Activate
    );
    let act = alua.activation(later, &p).unwrap();
    assert_eq!(act.data[6..], [0, 2]);
    alua.activation_done(later, &act, &mut p, ActivationOutcome::Good);
    assert!(alua.retry_state(2).is_some_and(|r| r.is_clear()));
    assert_eq!(p[1].state, PathState::Active);
    assert_eq!((alua.activations(), alua.activation_failures()), (3, 2));
    // With a usable path, nothing is activated (follow-over), even when asked.
    assert_eq!(alua.activation(later, &p), None);
    // The implicit-only SATP never activates, whatever failed.
    let mut implicit: Alua = Alua::new(AluaConfig {
        explicit: false,
        ..AluaConfig::default()
    });
    assert_eq!(implicit.activation(later, &p), None);
}
