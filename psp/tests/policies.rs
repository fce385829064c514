//! Each PSP's choices on hand-made path tables.

use std::time::Duration;

use block::{Instant, Operation};
use psa::{IoHint, Path, PathId, PathName, PathState, Psp};
use psp::{Fixed, LatencyConfig, Mru, QueueLength, RoundRobin, RrConfig, ServiceTime};
use scsi::Nexus;

fn paths(states: &[PathState]) -> Vec<Path> {
    states
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Path::new(
                PathName {
                    adapter: 1,
                    channel: 0,
                    target: i as u16,
                    lun: 0,
                },
                Nexus::default(),
                *s,
            )
        })
        .collect()
}

fn io(bytes: u64) -> IoHint {
    IoHint {
        operation: Operation::Write,
        bytes,
        avoid: 0,
    }
}

fn pick<P: Psp>(psp: &mut P, paths: &[Path]) -> u16 {
    psp.select(Instant(0), paths, &io(4096)).unwrap().0
}

use PathState::*;

#[test]
fn mru_stays_fails_over_and_moves_from_unoptimized_to_optimized() {
    let mut p = paths(&[Active, Active, ActiveUnoptimized]);
    let mut mru = Mru::new();
    mru.paths_changed(&p);
    assert_eq!(pick(&mut mru, &p), 0);
    p[0].state = Dead;
    mru.paths_changed(&p);
    assert_eq!(pick(&mut mru, &p), 1);
    // Path 0 returns: no failback.
    p[0].state = Active;
    mru.paths_changed(&p);
    assert_eq!(pick(&mut mru, &p), 1);
    // Path 1 becomes unoptimized: move to an optimized path.
    p[1].state = ActiveUnoptimized;
    mru.paths_changed(&p);
    assert_eq!(pick(&mut mru, &p), 0);
    // Only unoptimized paths: stay on one.
    p[0].state = Dead;
    mru.paths_changed(&p);
    let x = pick(&mut mru, &p);
    assert!(x == 1 || x == 2);
    assert_eq!(pick(&mut mru, &p), x);
    // Last resort: standby; nothing: none.
    p[1].state = Standby;
    p[2].state = Dead;
    mru.paths_changed(&p);
    assert_eq!(pick(&mut mru, &p), 1);
    p[1].state = Dead;
    mru.paths_changed(&p);
    assert_eq!(mru.select(Instant(0), &p, &io(1)), None);
}

#[test]
fn fixed_prefers_configured_or_first_found_and_fails_back() {
    let mut p = paths(&[Dead, Active, Active]);
    let mut fixed = Fixed::new(None);
    fixed.paths_changed(&p);
    assert_eq!(
        fixed.preferred(),
        Some(PathId(1)),
        "first usable path found"
    );
    let mut fixed = Fixed::new(Some(PathId(2)));
    fixed.paths_changed(&p);
    assert_eq!(pick(&mut fixed, &p), 2);
    p[2].state = Dead;
    assert_eq!(pick(&mut fixed, &p), 1);
    p[2].state = Active;
    assert_eq!(pick(&mut fixed, &p), 2);
    // An I/O that failed on the preferred path tries another.
    let avoid = IoHint {
        avoid: 0b100,
        ..io(512)
    };
    assert_eq!(fixed.select(Instant(0), &p, &avoid), Some(PathId(1)));
}

#[test]
fn rr_switches_after_iops_or_bytes_and_skips_unoptimized_unless_asked() {
    let p = paths(&[Active, ActiveUnoptimized, Active, ActiveUnoptimized]);
    let mut rr: RoundRobin = RoundRobin::new(RrConfig {
        iops: 3,
        ..RrConfig::default()
    });
    rr.paths_changed(&p);
    let picks: Vec<u16> = (0..9).map(|_| pick(&mut rr, &p)).collect();
    assert_eq!(picks, [0, 0, 0, 2, 2, 2, 0, 0, 0]);
    // Bytes: 10 MiB by default; 4 MiB I/Os switch every third.
    let mut rr: RoundRobin = RoundRobin::default();
    rr.paths_changed(&p);
    let picks: Vec<u16> = (0..6)
        .map(|_| rr.select(Instant(0), &p, &io(4 << 20)).unwrap().0)
        .collect();
    assert_eq!(picks, [0, 0, 0, 2, 2, 2]);
    // useANO: every active path.
    let mut rr: RoundRobin = RoundRobin::new(RrConfig {
        iops: 1,
        use_ano: true,
        ..RrConfig::default()
    });
    rr.paths_changed(&p);
    let picks: Vec<u16> = (0..5).map(|_| pick(&mut rr, &p)).collect();
    assert_eq!(picks, [0, 1, 2, 3, 0]);
    // No optimized path left: the unoptimized ones.
    let p = paths(&[Dead, ActiveUnoptimized, Dead, ActiveUnoptimized]);
    let mut rr: RoundRobin = RoundRobin::new(RrConfig {
        iops: 1,
        ..RrConfig::default()
    });
    rr.paths_changed(&p);
    let picks: Vec<u16> = (0..3).map(|_| pick(&mut rr, &p)).collect();
    assert_eq!(picks, [1, 3, 1]);
}

#[test]
fn rr_latency_samples_then_prefers_the_fastest_weighted_by_outstanding() {
    let mut p = paths(&[Active, Active]);
    let cfg = LatencyConfig {
        sampling_cycles: 4,
        eval_time: Duration::from_secs(180),
    };
    let mut rr: RoundRobin = RoundRobin::new(RrConfig {
        latency: Some(cfg),
        ..RrConfig::default()
    });
    rr.paths_changed(&p);
    let lat = |i: u16| Duration::from_micros(if i == 0 { 500 } else { 100 });
    // Sampling: alternate until each path has 4 samples.
    let mut seen = [0u32; 2];
    for _ in 0..8 {
        let i = pick(&mut rr, &p);
        seen[usize::from(i)] += 1;
        rr.completed(Instant(0), PathId(i), lat(i), true);
    }
    assert_eq!(seen, [4, 4]);
    // Evaluated: path 1 (100 us) until its outstanding I/O makes it costlier than path 0.
    assert_eq!(pick(&mut rr, &p), 1);
    assert_eq!(rr.latencies()[..2], [500_000, 100_000]);
    p[1].stats.active = 5;
    assert_eq!(pick(&mut rr, &p), 0);
    // Two of path 1's commands complete (the NMP reports every completion).
    p[1].stats.active = 3;
    for _ in 0..2 {
        rr.completed(Instant(0), PathId(1), lat(1), true);
    }
    assert_eq!(pick(&mut rr, &p), 1);
    // After latencyEvalTime the paths are sampled again.
    p[1].stats.active = 0;
    let later = Instant(181_000_000_000);
    let a = rr.select(later, &p, &io(1)).unwrap().0;
    let b = rr.select(later, &p, &io(1)).unwrap().0;
    assert_ne!(a, b, "sampling alternates");
}

#[test]
fn queue_length_and_service_time() {
    let mut p = paths(&[Active, Active, Active]);
    let mut ql = QueueLength::new();
    ql.paths_changed(&p);
    p[0].stats.active = 3;
    p[1].stats.active = 1;
    p[2].stats.active = 2;
    assert_eq!(pick(&mut ql, &p), 1);
    p[1].stats.active = 2;
    // Ties go round robin.
    let a = pick(&mut ql, &p);
    let b = pick(&mut ql, &p);
    assert_ne!(a, b);
    assert!(a != 0 && b != 0);

    let mut st: ServiceTime = ServiceTime::new();
    st.paths_changed(&p);
    for s in p.iter_mut() {
        s.stats.active = 0;
    }
    st.completed(Instant(0), PathId(0), Duration::from_micros(1000), true);
    st.completed(Instant(0), PathId(1), Duration::from_micros(100), true);
    st.completed(Instant(0), PathId(2), Duration::from_micros(300), true);
    assert_eq!(pick(&mut st, &p), 1);
    p[1].stats.active = 3; // 4 x 100 > 1 x 300
    assert_eq!(pick(&mut st, &p), 2);
    // Unoptimized paths only when no optimized one is usable.
    p[1].state = ActiveUnoptimized;
    p[2].state = Dead;
    st.paths_changed(&p);
    assert_eq!(pick(&mut st, &p), 0);
}
