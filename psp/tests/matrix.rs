//! The scenario matrix: every SATP x PSP pair against its array personality (DefaultAa on
//! active/active, ActivePassive on active/passive, Alua on ALUA), under every recoverable
//! fault kind of the array, with psa's data-verifying workload in simulated time through the
//! NMP device (nothing lost, duplicated or corrupted; nothing fails); then the expected path
//! behaviour of each policy. Every run is seeded; a failing label names the seed to replay.
//!
//! `SOAK=1` runs 4 seeds of 20,000 I/Os per cell instead of 1 of 3,000.

#[path = "../../psa/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use array::{Fault, LinkFailure, Personality};
use block::Instant;
use block::testing::ExactlyOnce;
use common::*;
use psa::{Adapter, NmpConfig, NmpDevice, Psp, Satp, ScanConfig, Target};
use psp::{Fixed, LatencyConfig, Mru, QueueLength, RoundRobin, RrConfig, ServiceTime};
use satp::{ActivePassive, Alua, DefaultAa};
use scsi::{AccessState, InitiatorId, Status};

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
    let t1 = [Target { number: 0, port: 1 }, Target { number: 1, port: 3 }];
    let t2 = [Target { number: 0, port: 2 }, Target { number: 1, port: 4 }];
    let adapters = [
        Adapter {
            number: 1,
            initiator: InitiatorId(1),
            targets: &t1,
        },
        Adapter {
            number: 2,
            initiator: InitiatorId(2),
            targets: &t2,
        },
    ];
    let scan = ScanConfig {
        adapters: &adapters,
        max_lun: 256,
        scratch: SCRATCH,
        max_polls: 256,
    };
    let (devices, now) = psa::scan::<_, 2, 4>(array, memory, Instant(0), &scan).expect("scan");
    assert_eq!(devices[0].paths.len(), 4);
    let nmp = NmpDevice::new(array, &devices[0], satp, psp, config).expect("claim");
    (nmp, now)
}

fn soak() -> bool {
    std::env::var("SOAK").is_ok_and(|v| v == "1")
}

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
            "controller failure",
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
            "array-side trespass and back",
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

/// Runs every fault of `personality` with fresh `satp()` and `psp()`.
fn cell<S: Satp, P: Psp>(personality: Personality, satp: fn() -> S, psp: fn() -> P) {
    let (seeds, ios) = if soak() { (4, 20_000) } else { (1, 3_000) };
    for (name, faults) in faults(personality) {
        for seed in 0..seeds {
            let seed = 0x5A7 + seed;
            let mut storage = vec![0u8; DISK_BLOCKS as usize * BLOCK];
            let mut scratch = vec![0u8; 2048];
            let mut buffers = vec![0u8; QD * BUFFER_LEN];
            let mut memory = memory_regions(&mut scratch, &mut buffers);
            let mut array = make_array(&mut storage, personality, seed);
            let (mut nmp, start) = claim_pair(&mut array, &mut memory, satp(), psp());
            let label = format!(
                "{} x {} on {} / {name} / seed {seed}",
                nmp.satp().name(),
                nmp.psp().name(),
                personality_name(personality)
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
        }
    }
}

fn ap() -> Personality {
    Personality::ActivePassive {
        implicit_trespass: false,
    }
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
                cell($personality, $satp, $psp);
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
    personality: Personality,
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
    let mut array = make_array(&mut storage, personality, seed);
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
    let faults = [
        (
            10 * MS,
            Fault::LinkDown {
                port: 1,
                failure: LinkFailure::Error,
            },
        ),
        (
            10 * MS,
            Fault::LinkDown {
                port: 2,
                failure: LinkFailure::Error,
            },
        ),
    ];
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

#[test]
fn active_passive_trespasses_once_and_not_back() {
    let faults = [
        (
            10 * MS,
            Fault::LinkDown {
                port: 1,
                failure: LinkFailure::Error,
            },
        ),
        (
            10 * MS,
            Fault::LinkDown {
                port: 2,
                failure: LinkFailure::Error,
            },
        ),
        (300 * MS, Fault::LinkUp { port: 1 }),
        (300 * MS, Fault::LinkUp { port: 2 }),
    ];
    for rr in [false, true] {
        let check = |s: &ActivePassive| assert_eq!(s.trespasses(), 1);
        let run = if rr {
            behaviour(
                ap(),
                ActivePassive::default(),
                rr_small(),
                &faults,
                3_000,
                2_000,
                5,
                |s, _| check(s),
            )
        } else {
            behaviour(
                ap(),
                ActivePassive::default(),
                Mru::new(),
                &faults,
                3_000,
                2_000,
                5,
                |s, _| check(s),
            )
        };
        assert_eq!(run.array.trespasses, 1, "rr {rr}");
        // After the links return, I/O stays on the new owner's paths (1 and 3).
        // (A read may be retried once after a unit attention, hence at least.)
        assert_eq!(
            run.second[0] + run.second[2],
            0,
            "rr {rr}: {:?}",
            run.second
        );
        assert!(
            run.second[1] + run.second[3] >= 2_000,
            "rr {rr}: {:?}",
            run.second
        );
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
