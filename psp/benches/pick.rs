//! The cost of one path pick of each PSP over four paths (two active/optimized, two
//! unoptimized), as the NMP calls `select` for every command.

use std::hint::black_box;

use block::{Instant, Operation};
use criterion::{Criterion, criterion_group, criterion_main};
use psa::{IoHint, Path, PathName, PathState, Psp};
use psp::{Fixed, LatencyConfig, Mru, QueueLength, RoundRobin, RrConfig, ServiceTime};
use scsi::Nexus;

fn paths() -> Vec<Path> {
    (0..4u16)
        .map(|t| {
            let state = if t % 2 == 0 {
                PathState::Active
            } else {
                PathState::ActiveUnoptimized
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

fn bench_psp<P: Psp>(c: &mut Criterion, name: &str, mut psp: P) {
    let paths = paths();
    psp.paths_changed(&paths);
    let io = IoHint {
        operation: Operation::Read,
        bytes: 4096,
        avoid: 0,
    };
    let mut now = Instant(0);
    // Warm up (latency sampling completes).
    for _ in 0..64 {
        if let Some(p) = psp.select(now, &paths, &io) {
            psp.completed(now, p, std::time::Duration::from_micros(100), true);
        }
    }
    c.bench_function(name, |b| {
        b.iter(|| {
            now.0 += 1;
            black_box(psp.select(black_box(now), black_box(&paths), black_box(&io)))
        })
    });
}

fn picks(c: &mut Criterion) {
    bench_psp(c, "pick/mru", Mru::new());
    bench_psp(c, "pick/fixed", Fixed::new(None));
    bench_psp(c, "pick/rr", RoundRobin::<32>::default());
    bench_psp(
        c,
        "pick/rr_iops1",
        RoundRobin::<32>::new(RrConfig {
            iops: 1,
            ..RrConfig::default()
        }),
    );
    bench_psp(
        c,
        "pick/rr_latency",
        RoundRobin::<32>::new(RrConfig {
            latency: Some(LatencyConfig::default()),
            use_ano: true,
            ..RrConfig::default()
        }),
    );
    bench_psp(c, "pick/queue_length", QueueLength::new());
    bench_psp(c, "pick/service_time", ServiceTime::<32>::new());
}

criterion_group!(benches, picks);
criterion_main!(benches);
