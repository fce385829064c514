//! The cost of one path pick of each PSP, as the NMP calls `select` for every command: over
//! four paths (two active/optimized, two unoptimized), and over 32 active/optimized paths
//! (`MAX_PATHS`, ESXi's limit of paths per LUN), where every path is a candidate of the
//! policies that compare paths (latency round robin, queue-length, service-time).
//!
//! `pick*` picks with nothing outstanding and nothing completing, as before; `busy32` also
//! does what the NMP does around each pick (the picked path's outstanding count goes up,
//! the oldest of 128 outstanding commands completes: its path's count goes down and the PSP
//! hears of it), back to back.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;

use block::{Instant, Operation};
use criterion::{Criterion, criterion_group, criterion_main};
use psa::{IoHint, MAX_PATHS, Path, PathId, PathName, PathState, Psp};
use psp::{Fixed, LatencyConfig, Mru, QueueLength, RoundRobin, RrConfig, ServiceTime};
use scsi::Nexus;

/// `n` paths; with `mixed`, every other one active unoptimized, otherwise all active.
fn paths(n: u16, mixed: bool) -> Vec<Path> {
    (0..n)
        .map(|t| {
            let state = if mixed && t % 2 == 1 {
                PathState::ActiveUnoptimized
            } else {
                PathState::Active
            };
            Path::new(
                PathName {
                    adapter: 1,
                    channel: 0,
                    target: t,
                    lun: 0,
                },
                Nexus::default(),
                state,
            )
        })
        .collect()
}

fn bench_psp<P: Psp>(c: &mut Criterion, name: &str, paths: &[Path], mut psp: P) {
    psp.paths_changed(paths);
    let io = IoHint {
        operation: Operation::Read,
        bytes: 4096,
        avoid: 0,
    };
    let mut now = Instant(0);
    // Warm up: the latency sampling (16 I/Os on each path) completes.
    for _ in 0..32 * paths.len() {
        if let Some(p) = psp.select(now, paths, &io) {
            psp.completed(now, p, Duration::from_micros(100), true);
        }
    }
    c.bench_function(name, |b| {
        b.iter(|| {
            now.0 += 1;
            black_box(psp.select(black_box(now), black_box(paths), black_box(&io)))
        })
    });
}

fn bench_busy<P: Psp>(c: &mut Criterion, name: &str, paths: &[Path], mut psp: P) {
    let mut paths = paths.to_vec();
    psp.paths_changed(&paths);
    let io = IoHint {
        operation: Operation::Read,
        bytes: 4096,
        avoid: 0,
    };
    let mut now = Instant(0);
    let mut outstanding: VecDeque<u16> = VecDeque::with_capacity(256);
    let one = |now: Instant, psp: &mut P, paths: &mut [Path], q: &mut VecDeque<u16>| {
        let p = psp.select(now, paths, &io).expect("a path");
        paths[usize::from(p.0)].stats.active += 1;
        q.push_back(p.0);
        if q.len() > 128
            && let Some(done) = q.pop_front()
        {
            paths[usize::from(done)].stats.active -= 1;
            psp.completed(now, PathId(done), Duration::from_micros(100), true);
        }
        p
    };
    for _ in 0..32 * paths.len() {
        one(now, &mut psp, &mut paths, &mut outstanding);
    }
    c.bench_function(name, |b| {
        b.iter(|| {
            now.0 += 1;
            black_box(one(black_box(now), &mut psp, &mut paths, &mut outstanding))
        })
    });
}

fn rr_iops1() -> RoundRobin<MAX_PATHS> {
    RoundRobin::new(RrConfig {
        iops: 1,
        ..RrConfig::default()
    })
}

fn rr_latency() -> RoundRobin<MAX_PATHS> {
    RoundRobin::new(RrConfig {
        latency: Some(LatencyConfig::default()),
        use_ano: true,
        ..RrConfig::default()
    })
}

fn picks(c: &mut Criterion) {
    let four = paths(4, true);
    bench_psp(c, "pick/mru", &four, Mru::new());
    bench_psp(c, "pick/fixed", &four, Fixed::new(None));
    bench_psp(c, "pick/rr", &four, RoundRobin::<MAX_PATHS>::default());
    bench_psp(c, "pick/rr_iops1", &four, rr_iops1());
    bench_psp(c, "pick/rr_latency", &four, rr_latency());
    bench_psp(c, "pick/queue_length", &four, QueueLength::new());
    bench_psp(
        c,
        "pick/service_time",
        &four,
        ServiceTime::<MAX_PATHS>::new(),
    );
    let all = paths(MAX_PATHS as u16, false);
    bench_psp(c, "pick32/mru", &all, Mru::new());
    bench_psp(c, "pick32/rr_iops1", &all, rr_iops1());
    bench_psp(c, "pick32/rr_latency", &all, rr_latency());
    bench_psp(c, "pick32/queue_length", &all, QueueLength::new());
    bench_psp(
        c,
        "pick32/service_time",
        &all,
        ServiceTime::<MAX_PATHS>::new(),
    );
    bench_busy(c, "busy32/mru", &all, Mru::new());
    bench_busy(c, "busy32/rr_latency", &all, rr_latency());
    bench_busy(c, "busy32/queue_length", &all, QueueLength::new());
    bench_busy(
        c,
        "busy32/service_time",
        &all,
        ServiceTime::<MAX_PATHS>::new(),
    );
}

criterion_group!(benches, picks);
criterion_main!(benches);
