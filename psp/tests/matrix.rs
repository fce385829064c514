//! The scenario matrix: every SATP x PSP pair against its array personality (DefaultAa on
//! active/active, ActivePassive with START STOP UNIT on an active/passive array that takes
//! it, ActivePassive CX-style with MODE SELECT page 0x22 on one that takes only that, Alua on
//! ALUA), under every recoverable fault kind of the array, with psa's data-verifying
//! workload in simulated time through the NMP device (nothing lost, duplicated or corrupted;
//! nothing fails; on active/passive, exactly the expected trespass commands and ownership
//! moves); then the expected path behaviour of each policy. Every run is seeded; a failing
//! label names the seed to replay.
//!
//! `SOAK=1` runs 4 seeds of 20,000 I/Os per cell instead of 1 of 3,000; `MATRIX_SEED=n`
//! runs seed `n` only (the seed a failure label names, to replay it).

#[path = "../../psa/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use array::{Fault, LinkFailure, Personality, TrespassCommand};
use block::Instant;
use block::testing::ExactlyOnce;
use common::*;
use psa::{NmpConfig, NmpDevice, Psp, Satp};
use psp::{Fixed, LatencyConfig, Mru, QueueLength, RoundRobin, RrConfig, ServiceTime};
use satp::{ActivePassive, ActivePassiveConfig, Alua, DefaultAa, TrespassStyle};
use scsi::{AccessState, Status};

const SCRATCH: block::MemAddr = block::MemAddr(0x10_0000);

type Dev<'a, 'b, S, P> = NmpDevice<&'b mut Sim<'a>, S, P, 4, 64, 8>;

fn config() -> NmpConfig {
    NmpConfig {
        scratch: Some(SCRATCH),
        ..NmpConfig::default()
    }
}

/// Scans the array as two adapters (vmhba1: ports 1 and 3, vmhba2: ports 2 and 4) and
/// claims the device with `satp` and `psp`.
fn claim_pair<'a, 'b, S: Satp, P: Psp>(
    array: &'b mut Sim<'a>,
    memory: &mut block::MemoryRegions<'_, 2>,
    satp: S,
    psp: P,
) -> (Dev<'a, 'b, S, P>, Instant) {
    claim_with_config(array, memory, satp, psp, config())
}

fn claim_with_config<'a, 'b, S: Satp, P: Psp>(
    array: &'b mut Sim<'a>,
    memory: &mut block::MemoryRegions<'_, 2>,
    satp: S,
    psp: P,
    config: NmpConfig,
) -> (Dev<'a, 'b, S, P>, Instant) {
    let (device, now) = scan_four_paths(&mut *array, memory);
    let nmp = NmpDevice::new(array, &device, satp, psp, config).expect("claim");
    (nmp, now)
}

/// An array personality and, for active/passive, the trespass command it takes.
#[derive(Debug, Clone, Copy)]
struct Kind {
    personality: Personality,
    trespass: TrespassCommand,
}

impl From<Personality> for Kind {
    fn from(personality: Personality) -> Self {
        Kind {
            personality,
            trespass: TrespassCommand::StartStopUnit,
        }
    }
}

impl Kind {
    fn name(&self) -> &'static str {
        match (self.personality, self.trespass) {
            (Personality::ActivePassive { .. }, TrespassCommand::ModeSelectPage22) => "AP (CX)",
            (p, _) => personality_name(p),
        }
    }

    fn is_active_passive(&self) -> bool {
        matches!(self.personality, Personality::ActivePassive { .. })
    }
}

fn soak() -> bool {
    std::env::var("SOAK").is_ok_and(|v| v == "1")
}

const OWNER_LINKS_DOWN: &str = "owner's links down and back";
const CONTROLLER_FAILURE: &str = "controller failure";
const ARRAY_TRESPASS: &str = "array-side trespass and back";

/// The recoverable faults of the array (each undone before the APD timeout).
fn faults(personality: Personality) -> Vec<(&'static str, Vec<(u64, Fault)>)> {
    let mut v = vec![
        ("no fault", vec![]),
        (
            "link down, timeouts",
            vec![
                (
                    10 * MS,
                    Fault::LinkDown {
                        port: 1,
                        failure: LinkFailure::Timeout,
                    },
                ),
                (400 * MS, Fault::LinkUp { port: 1 }),
            ],
        ),
        (
            "links down, transport errors",
            vec![
                (
                    10 * MS,
                    Fault::LinkDown {
                        port: 1,
                        failure: LinkFailure::Error,
                    },
                ),
                (
                    20 * MS,
                    Fault::LinkDown {
                        port: 3,
                        failure: LinkFailure::Error,
                    },
                ),
                (300 * MS, Fault::LinkUp { port: 1 }),
                (400 * MS, Fault::LinkUp { port: 3 }),
            ],
        ),
        (
            "flapping link",
            vec![(
                5 * MS,
                Fault::Flap {
                    port: 1,
                    period: Duration::from_millis(3),
                    duration: Duration::from_millis(60),
                    failure: LinkFailure::Error,
                },
            )],
        ),
        (
            CONTROLLER_FAILURE,
            vec![
                (10 * MS, Fault::ControllerFail { controller: 0 }),
                (2 * SEC, Fault::ControllerRestore { controller: 0 }),
            ],
        ),
        (
            "BUSY and TASK SET FULL",
            vec![
                (
                    5 * MS,
                    Fault::Congestion {
                        port: None,
                        status: Status::BUSY,
                        permille: 200,
                        duration: Duration::from_millis(20),
                    },
                ),
                (
                    30 * MS,
                    Fault::QueueLimit {
                        lun: 0,
                        limit: Some(4),
                    },
                ),
                (
                    60 * MS,
                    Fault::QueueLimit {
                        lun: 0,
                        limit: None,
                    },
                ),
                (
                    30 * MS,
                    Fault::Congestion {
                        port: Some(1),
                        status: Status::TASK_SET_FULL,
                        permille: 200,
                        duration: Duration::from_millis(20),
                    },
                ),
            ],
        ),
        (
            "unit attentions",
            (1..8u64)
                .map(|i| (i * 5 * MS, Fault::UnitAttention { lun: 0 }))
                .collect(),
        ),
        (
            "added latency",
            vec![
                (
                    5 * MS,
                    Fault::Latency {
                        port: 1,
                        extra: Duration::from_millis(2),
                    },
                ),
                (
                    40 * MS,
                    Fault::Latency {
                        port: 1,
                        extra: Duration::ZERO,
                    },
                ),
            ],
        ),
        (
            ARRAY_TRESPASS,
            vec![
                (
                    10 * MS,
                    Fault::Trespass {
                        lun: 0,
                        controller: 1,
                    },
                ),
                (
                    40 * MS,
                    Fault::Trespass {
                        lun: 0,
                        controller: 0,
                    },
                ),
            ],
        ),
        (
            // Both links to controller 0 (the owner, and the AO group) fail and return while
            // the workload runs (its cells probe every 5 ms so the paths come back in time):
            // active/passive must trespass once, and not back.
            OWNER_LINKS_DOWN,
            owner_links_down(10, Some(25)),
        ),
        (
            "all paths down, back before the APD timeout",
            vec![
                (
                    10 * MS,
                    Fault::AllPathsDown {
                        failure: LinkFailure::Error,
                    },
                ),
                (1500 * MS, Fault::AllPathsUp),
            ],
        ),
    ];
    if matches!(personality, Personality::Alua { .. }) {
        v.push((
            "ALUA transitions",
            vec![
                (
                    10 * MS,
                    Fault::Transition {
                        lun: 0,
                        group: 1,
                        to: AccessState::ActiveNonOptimized,
                        duration: Duration::from_millis(300),
                    },
                ),
                (
                    900 * MS,
                    Fault::Transition {
                        lun: 0,
                        group: 1,
                        to: AccessState::ActiveOptimized,
                        duration: Duration::from_millis(100),
                    },
                ),
            ],
        ));
    }
    v
}

/// The trespass commands an active/passive cell must send under fault `name`, and the
/// ownership moves the array must make (its own and the host's), when `spreads` (the PSP
/// spreads I/O over every usable path, rather than staying on one as MRU and FIXED do).
fn expected_trespasses(name: &str, spreads: bool) -> (u64, u64) {
    match name {
        // No active path is left: one trespass, to controller 1.
        OWNER_LINKS_DOWN => (1, 1),
        // The array fails over by itself; the surviving controller's paths answer GOOD.
        CONTROLLER_FAILURE => (0, 1),
        // The array moves the LUN to controller 1 and back 30 ms later. MRU and FIXED find
        // a path of the owner each time (it has not answered passive). A spreading PSP has
        // had every path answer passive within the SATP's 50 ms window: it trespasses once,
        // on the first standby path, path 0, which leads to the owner again: the array
        // accepts it and moves nothing (both moves are the array's own).
        ARRAY_TRESPASS => (u64::from(spreads), 2),
        _ => (0, 0),
    }
}

/// Runs every fault of `kind` with fresh `satp()` and `psp()`. On active/passive arrays,
/// also checks the trespass commands (of the array's kind only) and ownership moves against
/// [`expected_trespasses`], and the final owner.
fn cell<S: Satp, P: Psp>(test: &str, kind: impl Into<Kind>, satp: fn() -> S, psp: fn() -> P) {
    let kind = kind.into();
    let personality = kind.personality;
    let (seeds, ios) = if soak() { (4, 20_000) } else { (1, 3_000) };
    let seeds: Vec<u64> = match std::env::var("MATRIX_SEED") {
        Ok(seed) => vec![seed.parse().expect("MATRIX_SEED is a number")],
        Err(_) => (0..seeds).map(|i| 0x5A7 + i).collect(),
    };
    for (name, faults) in faults(personality) {
        for &seed in &seeds {
            let mut storage = vec![0u8; DISK_BLOCKS as usize * BLOCK];
            let mut scratch = vec![0u8; 2048];
            let mut buffers = vec![0u8; QD * BUFFER_LEN];
            let mut memory = memory_regions(&mut scratch, &mut buffers);
            let mut array = make_array_with(&mut storage, personality, seed, kind.trespass);
            let nmp_config = if name == OWNER_LINKS_DOWN {
                NmpConfig {
                    probe_interval: Duration::from_millis(5),
                    ..config()
                }
            } else {
                config()
            };
            let (mut nmp, start) =
                claim_with_config(&mut array, &mut memory, satp(), psp(), nmp_config);
            let label = format!(
                "{test}: {} x {} on {} / {name} / seed {seed}",
                nmp.satp().name(),
                nmp.psp().name(),
                kind.name()
            );
            if std::env::var("MATRIX_TRACE").is_ok() {
                eprintln!("{label}");
            }
            schedule(nmp.transport_mut(), start, &faults);
            let mut dev: ExactlyOnce<_, 128> = ExactlyOnce::new(nmp);
            let out = run_workload(&mut dev, &mut memory, start, ios, seed);
            assert_eq!(out.completed, ios, "{label}");
            assert_eq!(out.failures(), 0, "{label}: {out:?}");
            assert!(out.reads_verified >= ios / 4, "{label}: {out:?}");
            let nmp = dev.into_inner();
            let top = nmp.esxtop();
            assert_eq!((top.active, top.queued), (0, 0), "{label}");
            if kind.is_active_passive() {
                let stats = nmp.transport().stats();
                let (sent, other) = match kind.trespass {
                    TrespassCommand::StartStopUnit => {
                        (stats.start_stop_trespasses, stats.page22_trespasses)
                    }
                    _ => (stats.page22_trespasses, stats.start_stop_trespasses),
                };
                let spreads = !matches!(nmp.psp().name(), "VMW_PSP_MRU" | "VMW_PSP_FIXED");
                let (commands, moves) = expected_trespasses(name, spreads);
                let counts = format!(
                    "{label}: trespass commands {sent} (other kind {other}), ownership moves {}",
                    stats.trespasses
                );
                assert_eq!((sent, other), (commands, 0), "{counts}");
                assert_eq!(stats.trespasses, moves, "{counts}");
                let owner = u8::from(matches!(name, OWNER_LINKS_DOWN | CONTROLLER_FAILURE));
                assert_eq!(nmp.transport().owner(0), Some(owner), "{counts}");
                if name == OWNER_LINKS_DOWN {
                    // The old owner's paths came back during the run, and no trespass
                    // followed them.
                    use psa::PathState::*;
                    let states: Vec<_> = nmp.paths().iter().map(|p| p.state).collect();
                    assert!(
                        states[0] != Dead && states[2] != Dead,
                        "{counts}: {states:?}"
                    );
                    assert_eq!((states[1], states[3]), (Active, Active), "{counts}");
                }
            }
        }
    }
}

fn ap() -> Personality {
    Personality::ActivePassive {
        implicit_trespass: false,
    }
}

/// An active/passive array that trespasses on MODE SELECT page 0x22 only (CLARiiON-style).
fn cx() -> Kind {
    Kind {
        personality: ap(),
        trespass: TrespassCommand::ModeSelectPage22,
    }
}

/// The CLARiiON-style SATP, long form (MODE SELECT (10)), as for CX / AX arrays.
fn cx_satp() -> ActivePassive {
    ActivePassive::new(ActivePassiveConfig {
        style: TrespassStyle::ModeSelect10Page22,
        ..ActivePassiveConfig::default()
    })
}

/// The CLARiiON-style SATP, short form (MODE SELECT (6)), as for FC-series arrays.
fn cx_short_satp() -> ActivePassive {
    ActivePassive::new(ActivePassiveConfig {
        style: TrespassStyle::ModeSelectPage22,
        ..ActivePassiveConfig::default()
    })
}

fn rr() -> RoundRobin {
    RoundRobin::default()
}
fn rr_small() -> RoundRobin {
    RoundRobin::new(RrConfig {
        iops: 10,
        ..RrConfig::default()
    })
}
fn rr_ano() -> RoundRobin {
    RoundRobin::new(RrConfig {
        iops: 10,
        use_ano: true,
        ..RrConfig::default()
    })
}
fn rr_latency() -> RoundRobin {
    RoundRobin::new(RrConfig {
        latency: Some(LatencyConfig::default()),
        ..RrConfig::default()
    })
}

macro_rules! matrix {
    ($($test:ident: $personality:expr, $satp:expr, $psp:expr;)*) => {
        $(
            #[test]
            fn $test() {
                cell(stringify!($test), $personality, $satp, $psp);
            }
        )*
    };
}

matrix! {
    aa_default_mru: Personality::ActiveActive, DefaultAa::default, Mru::new;
    aa_default_fixed: Personality::ActiveActive, DefaultAa::default, || Fixed::new(None);
    aa_default_rr: Personality::ActiveActive, DefaultAa::default, rr_small;
    aa_default_rr_latency: Personality::ActiveActive, DefaultAa::default, rr_latency;
    aa_default_queue_length: Personality::ActiveActive, DefaultAa::default, QueueLength::new;
    aa_default_service_time: Personality::ActiveActive, DefaultAa::default, ServiceTime::<32>::new;
    ap_mru: ap(), ActivePassive::default, Mru::new;
    ap_fixed: ap(), ActivePassive::default, || Fixed::new(None);
    ap_rr: ap(), ActivePassive::default, rr_small;
    ap_rr_latency: ap(), ActivePassive::default, rr_latency;
    ap_queue_length: ap(), ActivePassive::default, QueueLength::new;
    ap_service_time: ap(), ActivePassive::default, ServiceTime::<32>::new;
    cx_mru: cx(), cx_satp, Mru::new;
    cx_fixed: cx(), cx_satp, || Fixed::new(None);
    cx_rr: cx(), cx_satp, rr_small;
    cx_rr_latency: cx(), cx_satp, rr_latency;
    cx_queue_length: cx(), cx_satp, QueueLength::new;
    cx_service_time: cx(), cx_satp, ServiceTime::<32>::new;
    cx_short_mru: cx(), cx_short_satp, Mru::new;
    cx_short_rr: cx(), cx_short_satp, rr_small;
    alua_mru: alua_ano(), Alua::<4>::default, Mru::new;
    alua_fixed: alua_ano(), Alua::<4>::default, || Fixed::new(None);
    alua_rr: alua_ano(), Alua::<4>::default, rr_small;
    alua_rr_ano: alua_ano(), Alua::<4>::default, rr_ano;
    alua_rr_latency: alua_ano(), Alua::<4>::default, rr_latency;
    alua_queue_length: alua_ano(), Alua::<4>::default, QueueLength::new;
    alua_service_time: alua_ano(), Alua::<4>::default, ServiceTime::<32>::new;
    alua_implicit_mru: alua_implicit(), alua_implicit_satp, Mru::new;
    alua_implicit_rr: alua_implicit(), alua_implicit_satp, rr_small;
    alua_standby_mru: alua_standby(), Alua::<4>::default, Mru::new;
    alua_standby_fixed: alua_standby(), Alua::<4>::default, || Fixed::new(None);
    alua_standby_rr: alua_standby(), Alua::<4>::default, rr_small;
}

/// An implicit-only ALUA array (SET TARGET PORT GROUPS refused) and an SATP that never sends it.
fn alua_implicit() -> Personality {
    Personality::Alua {
        explicit: false,
        non_owner: AccessState::ActiveNonOptimized,
    }
}
fn alua_implicit_satp() -> Alua<4> {
    Alua::new(satp::AluaConfig {
        explicit: false,
        ..satp::AluaConfig::default()
    })
}
/// An ALUA array whose non-owner group is standby.
fn alua_standby() -> Personality {
    Personality::Alua {
        explicit: true,
        non_owner: AccessState::Standby,
    }
}

#[test]
fn plain_rr_default_is_used() {
    assert_eq!(rr().config().iops, 1000);
}

/// What a behaviour run leaves to check.
struct Run {
    /// Data commands per path in the first phase (with the faults).
    first: Vec<u64>,
    /// Data commands per path in the second phase (after 2.5 s idle, the faults undone).
    second: Vec<u64>,
    /// Simulated time the first phase took.
    elapsed: Duration,
    array: array::ArrayStats,
    states: Vec<psa::PathState>,
}

/// Runs `ios` verified I/Os with `faults`, idles until 2.5 s, then reads block 0 `after` times
/// (1 ms apart); nothing may fail. `inspect` sees the SATP and PSP at the end.
#[allow(clippy::too_many_arguments)]
fn behaviour<S: Satp, P: Psp>(
    kind: impl Into<Kind>,
    satp: S,
    psp: P,
    faults: &[(u64, Fault)],
    ios: u64,
    after: u64,
    seed: u64,
    inspect: impl FnOnce(&S, &P),
) -> Run {
    let mut storage = vec![0u8; DISK_BLOCKS as usize * BLOCK];
    let mut scratch = vec![0u8; 2048];
    let mut buffers = vec![0u8; QD * BUFFER_LEN];
    let mut memory = memory_regions(&mut scratch, &mut buffers);
    let kind = kind.into();
    let mut array = make_array_with(&mut storage, kind.personality, seed, kind.trespass);
    let (mut nmp, start) = claim_pair(&mut array, &mut memory, satp, psp);
    schedule(nmp.transport_mut(), start, faults);
    let mut dev: ExactlyOnce<_, 128> = ExactlyOnce::new(nmp);
    let out = run_workload(&mut dev, &mut memory, start, ios, seed);
    assert_eq!(out.failures(), 0, "{out:?}");
    let counts = |d: &ExactlyOnce<Dev<'_, '_, S, P>, 128>| -> Vec<u64> {
        d.inner().paths().iter().map(|p| p.stats.commands).collect()
    };
    let first = counts(&dev);
    let mut second = first.clone();
    if after > 0 {
        let resume = Instant(out.end.0.max(start.0 + 2_500 * MS));
        idle(&mut dev, &mut memory, out.end, resume);
        let before = counts(&dev);
        // Reads of block 0, one at a time (the first phase's data model is not carried over).
        for i in 0..after {
            let at = Instant(resume.0 + i * MS);
            let result = one_read(&mut dev, &mut memory, at);
            assert!(result.is_ok(), "read {i}: {result:?}");
        }
        second = counts(&dev)
            .iter()
            .zip(before)
            .map(|(a, b)| a - b)
            .collect();
    }
    let nmp = dev.into_inner();
    inspect(nmp.satp(), nmp.psp());
    Run {
        first,
        second,
        elapsed: Duration::from_nanos(out.end.0 - start.0),
        array: nmp.transport().stats(),
        states: nmp.paths().iter().map(|p| p.state).collect(),
    }
}

#[test]
fn rr_spreads_over_optimized_paths_within_one_percent_and_avoids_unoptimized() {
    let run = behaviour(
        alua_ano(),
        Alua::<4>::default(),
        RoundRobin::<32>::default(),
        &[],
        10_000,
        0,
        1,
        |_, _| {},
    );
    // Paths 0 and 2 lead to the optimized group 1; 1 and 3 to the unoptimized group 2.
    assert_eq!((run.first[1], run.first[3]), (0, 0), "{:?}", run.first);
    let (a, b) = (run.first[0] as f64, run.first[2] as f64);
    assert!((a - b).abs() / (a + b) < 0.01, "{:?}", run.first);
    // With useANO every path takes I/O.
    let run = behaviour(
        alua_ano(),
        Alua::<4>::default(),
        RoundRobin::<32>::new(RrConfig {
            use_ano: true,
            ..RrConfig::default()
        }),
        &[],
        10_000,
        0,
        1,
        |_, _| {},
    );
    assert!(run.first.iter().all(|c| *c >= 2000), "{:?}", run.first);
    // On active/active, with iops=1 the four paths are within 1% of each other.
    let run = behaviour(
        Personality::ActiveActive,
        DefaultAa::default(),
        rr_small(),
        &[],
        10_000,
        0,
        1,
        |_, _| {},
    );
    let max = *run.first.iter().max().unwrap() as f64;
    let min = *run.first.iter().min().unwrap() as f64;
    assert!((max - min) / max < 0.01, "{:?}", run.first);
}

fn path0_down_and_back() -> Vec<(u64, Fault)> {
    vec![
        (
            5 * MS,
            Fault::LinkDown {
                port: 1,
                failure: LinkFailure::Error,
            },
        ),
        (100 * MS, Fault::LinkUp { port: 1 }),
    ]
}

#[test]
fn fixed_fails_back_and_mru_does_not() {
    let fixed = behaviour(
        Personality::ActiveActive,
        DefaultAa::default(),
        Fixed::new(None),
        &path0_down_and_back(),
        3_000,
        2_000,
        2,
        |_, p| assert_eq!(p.preferred(), Some(psa::PathId(0))),
    );
    assert!(fixed.first.iter().skip(1).sum::<u64>() > 0, "failed over");
    assert_eq!(fixed.second[0], 2_000, "failed back: {:?}", fixed.second);
    let mru = behaviour(
        Personality::ActiveActive,
        DefaultAa::default(),
        Mru::new(),
        &path0_down_and_back(),
        3_000,
        2_000,
        2,
        |_, _| {},
    );
    assert_eq!(mru.states[0], psa::PathState::Active, "path 0 is back");
    assert_eq!(mru.second[0], 0, "MRU stays: {:?}", mru.second);
    assert_eq!(mru.second.iter().sum::<u64>(), 2_000);
}

#[test]
fn alua_follows_an_array_side_transition_and_mru_moves_to_the_optimized_path() {
    let faults = [(
        20 * MS,
        Fault::Trespass {
            lun: 0,
            controller: 1,
        },
    )];
    let run = behaviour(
        alua_ano(),
        Alua::<4>::default(),
        Mru::new(),
        &faults,
        3_000,
        2_000,
        3,
        |s, _| {
            assert_eq!(s.activations(), 0, "follow-over: nothing reverted");
            assert!(s.followed() >= 2 && s.reads() >= 2);
        },
    );
    assert!(run.first[0] > 0);
    assert_eq!(run.array.trespasses, 1);
    use psa::PathState::*;
    assert_eq!(
        run.states,
        [ActiveUnoptimized, Active, ActiveUnoptimized, Active]
    );
    assert_eq!(run.second[0] + run.second[2], 0, "{:?}", run.second);
}

#[test]
fn alua_standby_groups_are_activated_explicitly_when_no_optimized_path_is_left() {
    let personality = Personality::Alua {
        explicit: true,
        non_owner: AccessState::Standby,
    };
    let faults = owner_links_down(10, None);
    let run = behaviour(
        personality,
        Alua::<4>::default(),
        Mru::new(),
        &faults,
        3_000,
        0,
        4,
        |s, _| {
            assert_eq!(s.activations(), 1);
            assert_eq!(s.followed(), 0, "the change was this host's own");
            assert!(s.groups().contains(&(2, AccessState::ActiveOptimized)));
        },
    );
    // SET TARGET PORT GROUPS made group 2 optimized (the array counts no trespass for it).
    use psa::PathState::*;
    assert_eq!(run.states, [Dead, Active, Dead, Active]);
    assert!(run.first[1] + run.first[3] > 0);
}

/// Runs [`behaviour`] with the owner's links down at 10 ms and back at 300 ms on `kind` and
/// checks that `satp` trespassed exactly once (one command of the array's kind, one
/// ownership move) and not back: after the links return, I/O stays on the new owner's paths
/// (1 and 3).
fn trespass_once_and_not_back<P: Psp>(kind: Kind, satp: ActivePassive, psp: P) {
    let faults = owner_links_down(10, Some(300));
    let label = format!(
        "{} ({:?}) x {} on {}",
        satp.name(),
        satp.config().style,
        psp.name(),
        kind.name()
    );
    let run = behaviour(kind, satp, psp, &faults, 3_000, 2_000, 5, |s, _| {
        assert_eq!(s.trespasses(), 1, "{label}");
    });
    let (sent, other) = match kind.trespass {
        TrespassCommand::StartStopUnit => {
            (run.array.start_stop_trespasses, run.array.page22_trespasses)
        }
        _ => (run.array.page22_trespasses, run.array.start_stop_trespasses),
    };
    assert_eq!((sent, other), (1, 0), "{label}");
    assert_eq!(run.array.trespasses, 1, "{label}");
    assert_eq!(
        (run.second[0], run.second[2]),
        (0, 0),
        "{label}: {:?}",
        run.second
    );
    assert!(
        run.second[1] + run.second[3] >= 2_000,
        "{label}: {:?}",
        run.second
    );
    // The old owner's paths came back and were found passive (their probes answer 02/04/03),
    // with no trespass back.
    use psa::PathState::*;
    assert_eq!(run.states, [Standby, Active, Standby, Active], "{label}");
}

#[test]
fn active_passive_trespasses_once_and_not_back() {
    let styles: [(Kind, fn() -> ActivePassive); 3] = [
        (ap().into(), ActivePassive::default),
        (cx(), cx_satp),
        (cx(), cx_short_satp),
    ];
    for (kind, satp) in styles {
        trespass_once_and_not_back(kind, satp(), Mru::new());
        trespass_once_and_not_back(kind, satp(), Fixed::new(None));
        trespass_once_and_not_back(kind, satp(), rr_small());
        trespass_once_and_not_back(kind, satp(), ServiceTime::<32>::new());
    }
}

/// One path 5x slower than the others: the latency sub-policy and service-time deliver at
/// least 1.5x the throughput of plain round robin (simulated time; numbers in
/// BENCHMARKS.md, printed with `--nocapture`).
#[test]
fn latency_policies_beat_plain_rr_with_one_slow_path() {
    // 250 us per command; port 1 (path 0) adds 1 ms: 5x.
    let slow = [(
        0,
        Fault::Latency {
            port: 1,
            extra: Duration::from_millis(1),
        },
    )];
    let ios = 20_000;
    let time = |name: &str, run: Run| {
        let secs = run.elapsed.as_secs_f64();
        eprintln!(
            "{name:>14}: {:>8.0} IOPS ({:.3} s simulated), commands per path {:?}",
            ios as f64 / secs,
            secs,
            run.first
        );
        secs
    };
    let rr = time(
        "rr",
        behaviour(
            Personality::ActiveActive,
            DefaultAa::default(),
            RoundRobin::<32>::default(),
            &slow,
            ios,
            0,
            6,
            |_, _| {},
        ),
    );
    let latency = time(
        "rr latency",
        behaviour(
            Personality::ActiveActive,
            DefaultAa::default(),
            rr_latency(),
            &slow,
            ios,
            0,
            6,
            |_, _| {},
        ),
    );
    let st = time(
        "service-time",
        behaviour(
            Personality::ActiveActive,
            DefaultAa::default(),
            ServiceTime::<32>::new(),
            &slow,
            ios,
            0,
            6,
            |_, _| {},
        ),
    );
    let ql = time(
        "queue-length",
        behaviour(
            Personality::ActiveActive,
            DefaultAa::default(),
            QueueLength::new(),
            &slow,
            ios,
            0,
            6,
            |_, _| {},
        ),
    );
    assert!(rr / latency >= 1.5, "latency {:.2}x", rr / latency);
    assert!(rr / st >= 1.5, "service-time {:.2}x", rr / st);
    let _ = ql;
}

/// The faults where failing is the right answer: a permanent device loss fails everything
/// with `DeviceLost`; all paths down beyond a (3 s) APD timeout fails held I/O with `NoPath`.
fn unrecoverable<S: Satp, P: Psp>(personality: Personality, satp: fn() -> S, psp: fn() -> P) {
    use block::ErrorKind;
    for (name, faults, expect) in [
        (
            "PDL",
            vec![(30 * MS, Fault::RemoveLun { lun: 0 })],
            ErrorKind::DeviceLost,
        ),
        (
            "APD beyond the timeout",
            vec![
                (
                    20 * MS,
                    Fault::AllPathsDown {
                        failure: LinkFailure::Error,
                    },
                ),
                (20 * SEC, Fault::AllPathsUp),
            ],
            ErrorKind::NoPath,
        ),
    ] {
        let seed = 0xDEAD;
        let mut storage = vec![0u8; DISK_BLOCKS as usize * BLOCK];
        let mut scratch = vec![0u8; 2048];
        let mut buffers = vec![0u8; QD * BUFFER_LEN];
        let mut memory = memory_regions(&mut scratch, &mut buffers);
        let mut array = make_array(&mut storage, personality, seed);
        let apd = NmpConfig {
            apd_timeout: Duration::from_secs(3),
            ..config()
        };
        let (mut nmp, start) = claim_with_config(&mut array, &mut memory, satp(), psp(), apd);
        let label = format!(
            "{} x {} on {} / {name}",
            nmp.satp().name(),
            nmp.psp().name(),
            personality_name(personality)
        );
        schedule(nmp.transport_mut(), start, &faults);
        let mut dev: ExactlyOnce<_, 128> = ExactlyOnce::new(nmp);
        let out = run_workload(&mut dev, &mut memory, start, 3_000, seed);
        assert_eq!(out.completed, 3_000, "{label}");
        let failed = out.failed.get(&expect).copied().unwrap_or(0);
        assert!(failed > 0 && failed == out.failures(), "{label}: {out:?}");
        assert!(out.ok > 0, "{label}: {out:?}");
        if expect == ErrorKind::DeviceLost {
            assert!(dev.inner().is_lost(), "{label}");
        }
    }
}

#[test]
fn device_loss_and_apd_expiry_on_every_satp() {
    unrecoverable(Personality::ActiveActive, DefaultAa::default, Mru::new);
    unrecoverable(Personality::ActiveActive, DefaultAa::default, rr_small);
    unrecoverable(ap(), ActivePassive::default, Mru::new);
    unrecoverable(ap(), ActivePassive::default, ServiceTime::<32>::new);
    unrecoverable(alua_ano(), Alua::<4>::default, rr_latency);
    unrecoverable(alua_ano(), Alua::<4>::default, || Fixed::new(None));
}
