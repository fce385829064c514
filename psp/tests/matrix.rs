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
    let nmp = NmpDevice::new(array, &devices[0], satp, psp, config()).expect("claim");
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
}

#[test]
fn plain_rr_default_is_used() {
    assert_eq!(rr().config().iops, 1000);
}
