//! Criterion benchmarks of the shared ring against its peers, in the same run: two-thread
//! throughput with single items (also with a producer, or a consumer, that does a little work
//! per item, which makes it the slower side) and with batches of 32, and ping-pong round-trip latency, for
//! 16-byte and 64-byte elements. Rings have 1024 slots; the batches also run on rings of 256.
//!
//! Every measurement reports time per item (throughput) or per round trip (ping-pong). Run:
//! `cargo bench -p shared-ring --bench ring -- --warm-up-time 1 --measurement-time 3`

mod common;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

use common::{
    BATCH, Crossbeam, Heapless, Item, PingPong, Queue, Ringbuf, Rtrb, SMALL_CAP, Shared,
    SharedNotify, SharedUnpaced, Work, batch_ringbuf, batch_rtrb, batch_shared, make_padded,
    make_padded_rtrb, make_padded_shared, single_with_work,
};

/// Single items, each side doing its `work` per item.
fn bench_single<T: Item, Q: Queue<T>>(group: &mut BenchmarkGroup<'_, WallTime>, work: Work) {
    let (mut tx, mut rx) = make_padded::<T, Q>();
    group.bench_function(Q::NAME, |b| {
        b.iter_custom(|iters| single_with_work::<T, Q>(&mut tx.0, &mut rx.0, iters, work))
    });
}

fn bench_ping_pong<T: Item, Q: Queue<T>>(group: &mut BenchmarkGroup<'_, WallTime>) {
    let mut queues = PingPong::<T, Q>::new();
    group.bench_function(Q::NAME, |b| b.iter_custom(|iters| queues.run(iters, 1)));
}

fn for_item<T: Item>(c: &mut Criterion) {
    for (name, work) in Work::SCENARIOS {
        let mut group = c.benchmark_group(format!("{name}/{}", T::NAME));
        group.throughput(Throughput::Elements(1));
        bench_single::<T, Shared>(&mut group, work);
        bench_single::<T, SharedUnpaced>(&mut group, work);
        if work == Work::NONE {
            bench_single::<T, SharedNotify>(&mut group, work);
        }
        bench_single::<T, Rtrb>(&mut group, work);
        bench_single::<T, Heapless>(&mut group, work);
        bench_single::<T, Crossbeam>(&mut group, work);
        bench_single::<T, Ringbuf>(&mut group, work);
        group.finish();
    }

    let mut group = c.benchmark_group(format!("throughput_batch32/{}", T::NAME));
    group.throughput(Throughput::Elements(1));
    let (mut tx, mut rx) = make_padded::<T, Shared>();
    group.bench_function("shared-ring chunks", |b| {
        b.iter_custom(|iters| batch_shared(&mut tx.0, &mut rx.0, iters, BATCH))
    });
    let (mut tx, mut rx) = make_padded::<T, Rtrb>();
    group.bench_function("rtrb chunks", |b| {
        b.iter_custom(|iters| batch_rtrb::<T>(&mut tx.0, &mut rx.0, iters, BATCH))
    });
    let (mut tx, mut rx) = make_padded::<T, Ringbuf>();
    group.bench_function("ringbuf slices", |b| {
        b.iter_custom(|iters| batch_ringbuf::<T>(&mut tx.0, &mut rx.0, iters))
    });
    group.finish();

    // A small ring: chunks of 32 fill an eighth of it.
    let mut group = c.benchmark_group(format!("throughput_batch32_ring{SMALL_CAP}/{}", T::NAME));
    group.throughput(Throughput::Elements(1));
    for paced in [true, false] {
        let (mut tx, mut rx) = make_padded_shared::<T, SMALL_CAP>(paced);
        let name = if paced {
            "shared-ring chunks"
        } else {
            "shared-ring chunks pacing off"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| batch_shared(&mut tx.0, &mut rx.0, iters, BATCH))
        });
    }
    let (mut tx, mut rx) = make_padded_rtrb::<T>(SMALL_CAP);
    group.bench_function("rtrb chunks", |b| {
        b.iter_custom(|iters| batch_rtrb::<T>(&mut tx.0, &mut rx.0, iters, BATCH))
    });
    group.finish();

    let mut group = c.benchmark_group(format!("ping_pong/{}", T::NAME));
    bench_ping_pong::<T, Shared>(&mut group);
    bench_ping_pong::<T, Rtrb>(&mut group);
    bench_ping_pong::<T, Heapless>(&mut group);
    bench_ping_pong::<T, Crossbeam>(&mut group);
    bench_ping_pong::<T, Ringbuf>(&mut group);
    group.finish();
}

fn benches(c: &mut Criterion) {
    for_item::<[u64; 2]>(c);
    for_item::<[u64; 8]>(c);
}

criterion_group!(ring, benches);
criterion_main!(ring);
