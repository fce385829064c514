//! Criterion benchmarks of the shared ring against its peers, in the same run: two-thread
//! throughput with single items and with batches of 32, and ping-pong round-trip latency, for
//! 16-byte and 64-byte elements. Rings have 1024 slots.
//!
//! Every measurement reports time per item (throughput) or per round trip (ping-pong). Run:
//! `cargo bench -p shared-ring --bench ring -- --warm-up-time 1 --measurement-time 3`

mod common;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

use common::{
    Crossbeam, Heapless, Item, PingPong, Queue, Ringbuf, Rtrb, Shared, SharedNotify, batch_ringbuf,
    batch_rtrb, batch_shared, make_padded, single,
};

fn bench_single<T: Item, Q: Queue<T>>(group: &mut BenchmarkGroup<'_, WallTime>) {
    let (mut tx, mut rx) = make_padded::<T, Q>();
    group.bench_function(Q::NAME, |b| {
        b.iter_custom(|iters| single::<T, Q>(&mut tx.0, &mut rx.0, iters))
    });
}

fn bench_ping_pong<T: Item, Q: Queue<T>>(group: &mut BenchmarkGroup<'_, WallTime>) {
    let mut queues = PingPong::<T, Q>::new();
    group.bench_function(Q::NAME, |b| b.iter_custom(|iters| queues.run(iters)));
}

fn for_item<T: Item>(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("throughput_single/{}", T::NAME));
    group.throughput(Throughput::Elements(1));
    bench_single::<T, Shared>(&mut group);
    bench_single::<T, SharedNotify>(&mut group);
    bench_single::<T, Rtrb>(&mut group);
    bench_single::<T, Heapless>(&mut group);
    bench_single::<T, Crossbeam>(&mut group);
    bench_single::<T, Ringbuf>(&mut group);
    group.finish();

    let mut group = c.benchmark_group(format!("throughput_batch32/{}", T::NAME));
    group.throughput(Throughput::Elements(1));
    let (mut tx, mut rx) = make_padded::<T, Shared>();
    group.bench_function("shared-ring chunks", |b| {
        b.iter_custom(|iters| batch_shared::<T>(&mut tx.0, &mut rx.0, iters))
    });
    let (mut tx, mut rx) = make_padded::<T, Rtrb>();
    group.bench_function("rtrb chunks", |b| {
        b.iter_custom(|iters| batch_rtrb::<T>(&mut tx.0, &mut rx.0, iters))
    });
    let (mut tx, mut rx) = make_padded::<T, Ringbuf>();
    group.bench_function("ringbuf slices", |b| {
        b.iter_custom(|iters| batch_ringbuf::<T>(&mut tx.0, &mut rx.0, iters))
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
