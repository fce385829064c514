//! Failed activations against the simulated array, through psa's NMP device with the
//! data-verifying workload (nothing lost, duplicated or corrupted; every I/O completes once):
//!
//! - mismatched trespass styles (a START STOP UNIT SATP on an array that trespasses only on
//!   MODE SELECT page 0x22, and CLARiiON-style SATPs on a START STOP UNIT array) with the
//!   owner unreachable: activation commands stay within `retries + 1` per give-up period,
//!   I/O that needs the trespass fails with NOT READY within the retries' time instead of
//!   looping, and I/O resumes when the owner's links return;
//! - a transient failure of the first activation (BUSY, 02/04/03, 02/04/0A, UNIT ATTENTION,
//!   the path dying under it) on matching styles and on explicit ALUA: retried after the
//!   back-off or at once, then I/O proceeds with nothing failed;
//! - SET TARGET PORT GROUPS refused by an implicit-only ALUA array: given up at once, and the
//!   group the array then makes optimized by itself is used (implicit fallback).
//!
//! Every run is seeded; a failing label names the seed. `SOAK=1` runs 4 seeds instead of 1;
//! `MATRIX_SEED=n` runs seed `n` only.

#[path = "../../psa/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use array::{Fault, LinkFailure, Personality, TrespassCommand};
use block::testing::ExactlyOnce;
use block::{ErrorKind, Instant};
use common::*;
use psa::{NmpConfig, NmpDevice, Psp, Satp};
use psp::{Mru, RoundRobin, RrConfig};
use satp::{ActivationRetry, ActivePassive, ActivePassiveConfig, Alua, AluaConfig, TrespassStyle};
use scsi::{AccessState, Asc, CommandCompletion, SenseKey, Status};

const SCRATCH: block::MemAddr = block::MemAddr(0x10_0000);

type Dev<'a, 'b, S, P> = NmpDevice<Scripted<&'b mut Sim<'a>>, S, P, 4, 64, 8>;

fn seeds() -> Vec<u64> {
    let n = if std::env::var("SOAK").is_ok_and(|v| v == "1") {
        4
    } else {
        1
    };
    match std::env::var("MATRIX_SEED") {
        Ok(seed) => vec![seed.parse().expect("MATRIX_SEED is a number")],
        Err(_) => (0..n).map(|i| 0xAC7 + i).collect(),
    }
}

/// Scans the array as two adapters (vmhba1: ports 1 and 3, vmhba2: ports 2 and 4) and
/// claims the device with `satp` and `psp`, through a transport that answers the first
/// activation commands from `script`.
fn claim<'a, 'b, S: Satp, P: Psp>(
    array: &'b mut Sim<'a>,
    memory: &mut block::MemoryRegions<'_, 2>,
    satp: S,
    psp: P,
    script: Vec<Option<CommandCompletion>>,
) -> (Dev<'a, 'b, S, P>, Instant) {
    let (device, now) = scan_four_paths(&mut *array, memory);
    let config = NmpConfig {
        scratch: Some(SCRATCH),
        ..NmpConfig::default()
    };
    let nmp =
        NmpDevice::new(Scripted::new(array, script), &device, satp, psp, config).expect("claim");
    (nmp, now)
}

fn ap() -> Personality {
    Personality::ActivePassive {
        implicit_trespass: false,
    }
}

fn ap_satp(style: TrespassStyle) -> ActivePassive {
    ActivePassive::new(ActivePassiveConfig {
        style,
        ..ActivePassiveConfig::default()
    })
}

fn rr_small() -> RoundRobin {
    RoundRobin::new(RrConfig {
        iops: 10,
        ..RrConfig::default()
    })
}

/// Both links of controller 0 (the owner, the AO group) fail at 10 ms; they return at `up`
/// (ms) if given.
fn owner_links_down(up: Option<u64>) -> Vec<(u64, Fault)> {
    let mut v = Vec::new();
    for port in [1, 2] {
        v.push((
            10 * MS,
            Fault::LinkDown {
                port,
                failure: LinkFailure::Error,
            },
        ));
        if let Some(up) = up {
            v.push((up * MS, Fault::LinkUp { port }));
        }
    }
    v
}

/// Checks that no `give_up` period of simulated time holds more than `retries + 1` of the
/// activation commands sent at `sent`.
fn assert_bounded(label: &str, sent: &[(Instant, u8)], retry: &ActivationRetry) {
    let per = usize::from(retry.retries) + 1;
    for (i, w) in sent.windows(per + 1).enumerate() {
        let span = Duration::from_nanos(w[per].0.0 - w[0].0.0);
        assert!(
            span >= retry.give_up,
            "{label}: activation commands {i}..={} within {span:?}: {sent:?}",
            i + per
        );
    }
}

/// A mismatched trespass style while the owner's links are down from 10 ms to 40 s, under a
/// paced workload (3,000 I/Os over about 75 s of simulated time).
fn mismatched<P: Psp>(style: TrespassStyle, array_takes: TrespassCommand, psp: fn() -> P) {
    const UP_MS: u64 = 40_000;
    for seed in seeds() {
        let mut storage = vec![0u8; DISK_BLOCKS as usize * BLOCK];
        let mut scratch = vec![0u8; 2048];
        let mut buffers = vec![0u8; QD * BUFFER_LEN];
        let mut memory = memory_regions(&mut scratch, &mut buffers);
        let mut array = make_array_with(&mut storage, ap(), seed, array_takes);
        let (mut nmp, start) = claim(&mut array, &mut memory, ap_satp(style), psp(), vec![]);
        let label = format!(
            "{} ({style:?}) x {} on an array that takes {array_takes:?} / seed {seed}",
            nmp.satp().name(),
            nmp.psp().name()
        );
        schedule(
            nmp.transport_mut().inner,
            start,
            &owner_links_down(Some(UP_MS)),
        );
        let mut dev: ExactlyOnce<_, 128> = ExactlyOnce::new(nmp);
        let ios = 3_000;
        let think = Duration::from_millis(400);
        let out = run_workload_with(&mut dev, &mut memory, start, ios, seed, think);
        let nmp = dev.into_inner();
        let retry = nmp.satp().config().retry;
        let sent = &nmp.transport().sent;
        let stats = nmp.transport().inner.stats();
        let elapsed = Duration::from_nanos(out.end.0 - start.0);
        eprintln!(
            "{label}: {} activation commands, {} passive answers, {} ok, {:?} failed, \
             longest failed I/O {:?}, {elapsed:?} simulated",
            sent.len(),
            stats.passive,
            out.ok,
            out.failed,
            out.max_failed_latency
        );
        // Nothing lost or duplicated (the workload checks data and exactly-once); failures
        // are NOT READY only, and come within the retries' time rather than hanging.
        assert_eq!(out.completed, ios, "{label}");
        let not_ready = out.failed.get(&ErrorKind::NotReady).copied().unwrap_or(0);
        assert!(
            not_ready > 0 && not_ready == out.failures(),
            "{label}: {out:?}"
        );
        let cycle = retry.delay * u32::from(retry.retries);
        assert!(
            out.max_failed_latency <= cycle + Duration::from_secs(1),
            "{label}: {out:?}"
        );
        // At most retries + 1 activation commands per give-up period, one at a time, and
        // none of them moved anything.
        assert!(!sent.is_empty(), "{label}");
        assert_bounded(&label, sent, &retry);
        assert!(
            sent.len() <= 2 * (usize::from(retry.retries) + 1),
            "{label}"
        );
        assert_eq!(nmp.transport().max_outstanding, 1, "{label}");
        assert_eq!(
            (
                stats.trespasses,
                stats.start_stop_trespasses,
                stats.page22_trespasses
            ),
            (0, 0, 0),
            "{label}"
        );
        let satp = nmp.satp();
        assert_eq!(satp.failed_trespasses() as usize, sent.len(), "{label}");
        assert_eq!(satp.trespasses(), 0, "{label}");
        assert!(satp.give_ups() >= 1, "{label}");
        let top = nmp.esxtop();
        assert_eq!(top.stats.activations as usize, sent.len(), "{label}");
        // The owner's links came back at 40 s: I/O resumed there (probes every second).
        let last = out.last_failure.expect("failures");
        assert!(
            last.0 - start.0 < (UP_MS + 3_000) * MS,
            "{label}: last failure at {last:?}"
        );
        assert!(out.ok_after_last_failure >= 100, "{label}: {out:?}");
        assert_eq!((top.active, top.queued), (0, 0), "{label}");
    }
}

#[test]
fn start_stop_unit_satp_on_a_page22_array_stays_bounded() {
    mismatched(
        TrespassStyle::StartStopUnit,
        TrespassCommand::ModeSelectPage22,
        Mru::new,
    );
    mismatched(
        TrespassStyle::StartStopUnit,
        TrespassCommand::ModeSelectPage22,
        rr_small,
    );
}

#[test]
fn page22_satps_on_a_start_stop_unit_array_stay_bounded() {
    mismatched(
        TrespassStyle::ModeSelect10Page22,
        TrespassCommand::StartStopUnit,
        Mru::new,
    );
    mismatched(
        TrespassStyle::ModeSelect10Page22,
        TrespassCommand::StartStopUnit,
        rr_small,
    );
    mismatched(
        TrespassStyle::ModeSelectPage22,
        TrespassCommand::StartStopUnit,
        Mru::new,
    );
}

/// The first activation's answers that the SATPs retry (the array's own answer comes after).
fn transient_answers() -> Vec<(&'static str, CommandCompletion)> {
    vec![
        (
            "BUSY",
            CommandCompletion::status(block::Tag(0), Status::BUSY),
        ),
        (
            "02/04/03",
            check_condition(SenseKey::NOT_READY, Asc::new(0x04, 0x03)),
        ),
        (
            "02/04/0A",
            check_condition(SenseKey::NOT_READY, Asc::ASYMMETRIC_ACCESS_TRANSITION),
        ),
        (
            "06/29/00",
            check_condition(SenseKey::UNIT_ATTENTION, Asc::POWER_ON_OCCURRED),
        ),
        ("path dead", delivery_failure()),
    ]
}

/// The owner's links go down for good at 10 ms; the first activation fails with each of
/// [`transient_answers`], the second is the array's: one trespass (or SET TARGET PORT
/// GROUPS), then every I/O succeeds.
fn transient<S: Satp, P: Psp>(
    personality: Personality,
    array_takes: TrespassCommand,
    satp: fn() -> S,
    psp: fn() -> P,
    inspect: impl Fn(&str, &S),
) {
    for seed in seeds() {
        for (answer, completion) in transient_answers() {
            let mut storage = vec![0u8; DISK_BLOCKS as usize * BLOCK];
            let mut scratch = vec![0u8; 2048];
            let mut buffers = vec![0u8; QD * BUFFER_LEN];
            let mut memory = memory_regions(&mut scratch, &mut buffers);
            let mut array = make_array_with(&mut storage, personality, seed, array_takes);
            let script = vec![Some(completion)];
            let (mut nmp, start) = claim(&mut array, &mut memory, satp(), psp(), script);
            let label = format!(
                "{} x {} on {}, first activation answered {answer} / seed {seed}",
                nmp.satp().name(),
                nmp.psp().name(),
                personality_name(personality)
            );
            schedule(nmp.transport_mut().inner, start, &owner_links_down(None));
            let mut dev: ExactlyOnce<_, 128> = ExactlyOnce::new(nmp);
            let ios = 3_000;
            let out = run_workload(&mut dev, &mut memory, start, ios, seed);
            assert_eq!(out.completed, ios, "{label}");
            assert_eq!(out.failures(), 0, "{label}: {out:?}");
            let nmp = dev.into_inner();
            let t = nmp.transport();
            assert_eq!(t.sent.len(), 2, "{label}: {:?}", t.sent);
            let gap = Duration::from_nanos(t.sent[1].0.0 - t.sent[0].0.0);
            // BUSY and NOT READY wait out the back-off; the others are retried at once (the
            // NMP's 100 ms after a failure).
            let backoff = matches!(answer, "BUSY" | "02/04/03" | "02/04/0A");
            let want = if backoff {
                ActivationRetry::default().delay
            } else {
                Duration::from_millis(100)
            };
            assert!(
                gap >= want && gap < want + Duration::from_millis(100),
                "{label}: {gap:?}"
            );
            let stats = nmp.esxtop().stats;
            assert_eq!((stats.activations, stats.activation_failures), (2, 1));
            if matches!(personality, Personality::ActivePassive { .. }) {
                assert_eq!(t.inner.stats().trespasses, 1, "{label}");
                assert_eq!(t.inner.owner(0), Some(1), "{label}");
            }
            eprintln!(
                "{label}: activations {:?} ms apart, {} ok",
                gap.as_millis(),
                out.ok
            );
            inspect(&label, nmp.satp());
        }
    }
}

#[test]
fn a_transient_trespass_failure_is_retried_and_io_proceeds() {
    let check = |label: &str, s: &ActivePassive| {
        assert_eq!((s.trespasses(), s.failed_trespasses()), (1, 1), "{label}");
        assert!(s.retry_state().is_clear(), "{label}");
    };
    transient(
        ap(),
        TrespassCommand::StartStopUnit,
        ActivePassive::default,
        Mru::new,
        check,
    );
    transient(
        ap(),
        TrespassCommand::ModeSelectPage22,
        || ap_satp(TrespassStyle::ModeSelect10Page22),
        rr_small,
        check,
    );
}

fn alua_standby() -> Personality {
    Personality::Alua {
        explicit: true,
        non_owner: AccessState::Standby,
    }
}

#[test]
fn a_transient_stpg_failure_is_retried_and_io_proceeds() {
    transient(
        alua_standby(),
        TrespassCommand::StartStopUnit,
        Alua::<4>::default,
        Mru::new,
        |label, s| {
            assert_eq!(
                (s.activations(), s.activation_failures()),
                (2, 1),
                "{label}"
            );
            assert!(s.retry_state(2).is_some_and(|r| r.is_clear()), "{label}");
            assert!(s.groups().contains(&(2, AccessState::ActiveOptimized)));
        },
    );
}

/// An explicit ALUA SATP on an implicit-only array with a standby group: the AO group's links
/// fail at 10 ms, SET TARGET PORT GROUPS is refused (05/20/00) and given up on at once, I/O
/// fails fast with NOT READY; at 3 s the array makes the standby group optimized by itself,
/// and I/O follows it (implicit fallback) with no further SET TARGET PORT GROUPS.
#[test]
fn a_refused_stpg_falls_back_to_implicit_alua() {
    let personality = Personality::Alua {
        explicit: false,
        non_owner: AccessState::Standby,
    };
    for seed in seeds() {
        let mut storage = vec![0u8; DISK_BLOCKS as usize * BLOCK];
        let mut scratch = vec![0u8; 2048];
        let mut buffers = vec![0u8; QD * BUFFER_LEN];
        let mut memory = memory_regions(&mut scratch, &mut buffers);
        let mut array = make_array(&mut storage, personality, seed);
        let satp: Alua<4> = Alua::new(AluaConfig::default());
        let (mut nmp, start) = claim(&mut array, &mut memory, satp, rr_small(), vec![]);
        let label = format!("VMW_SATP_ALUA (explicit) on implicit-only ALUA / seed {seed}");
        let mut faults = owner_links_down(None);
        faults.push((
            3_000 * MS,
            Fault::Transition {
                lun: 0,
                group: 2,
                to: AccessState::ActiveOptimized,
                duration: Duration::from_millis(100),
            },
        ));
        schedule(nmp.transport_mut().inner, start, &faults);
        let mut dev: ExactlyOnce<_, 128> = ExactlyOnce::new(nmp);
        let ios = 3_000;
        let think = Duration::from_millis(30);
        let out = run_workload_with(&mut dev, &mut memory, start, ios, seed, think);
        let nmp = dev.into_inner();
        eprintln!(
            "{label}: {} SET TARGET PORT GROUPS, {} ok, {:?} failed, longest failed I/O {:?}",
            nmp.transport().sent.len(),
            out.ok,
            out.failed,
            out.max_failed_latency
        );
        assert_eq!(out.completed, ios, "{label}");
        let not_ready = out.failed.get(&ErrorKind::NotReady).copied().unwrap_or(0);
        assert!(
            not_ready > 0 && not_ready == out.failures(),
            "{label}: {out:?}"
        );
        assert!(
            out.max_failed_latency < Duration::from_millis(500),
            "{label}: {out:?}"
        );
        let last = out.last_failure.expect("failures");
        assert!(last.0 - start.0 < 3_200 * MS, "{label}: {last:?}");
        assert!(out.ok_after_last_failure >= 1_000, "{label}: {out:?}");
        let t = nmp.transport();
        assert_eq!(t.sent.len(), 1, "{label}: {:?}", t.sent);
        assert_eq!(t.sent[0].1, 0xA4, "{label}: SET TARGET PORT GROUPS");
        let s = nmp.satp();
        assert_eq!((s.activation_failures(), s.give_ups()), (1, 1), "{label}");
        assert!(s.groups().contains(&(2, AccessState::ActiveOptimized)));
        use psa::PathState::*;
        let states: Vec<_> = nmp.paths().iter().map(|p| p.state).collect();
        assert_eq!(states, [Dead, Active, Dead, Active], "{label}");
    }
}
