//! The same measurements as `ring.rs`, interleaved: every round measures every contestant once,
//! in turn, and the report gives the median and the best of the rounds per contestant. On a
//! shared virtual machine, where the speed of cross-core traffic changes from minute to minute,
//! this compares contestants under the same conditions better than criterion's one-after-another
//! order. Run: `cargo bench -p shared-ring --bench interleaved` (`ROUNDS=n` to change the
//! number of rounds, 7 by default).

mod common;

use std::time::Duration;

use common::{
    BATCH, Crossbeam, Heapless, Item, PingPong, Queue, Ringbuf, Rtrb, SMALL_CAP, Shared,
    SharedNotify, SharedUnpaced, Work, batch_ringbuf, batch_rtrb, batch_shared, make_padded,
    make_padded_rtrb, make_padded_shared, single_with_work,
};

type Run = Box<dyn FnMut(u64) -> Duration>;

/// Single items, each side doing its `work` per item; `name` is the scenario's.
fn single_run<T: Item, Q: Queue<T>>(name: &str, work: Work) -> (String, Run)
where
    Q::Tx: 'static,
    Q::Rx: 'static,
{
    let (mut tx, mut rx) = make_padded::<T, Q>();
    let kind = name.trim_start_matches("throughput_");
    (
        format!("{kind}/{}", Q::NAME),
        Box::new(move |n| single_with_work::<T, Q>(&mut tx.0, &mut rx.0, n, work)),
    )
}

/// Round trips of a burst of `burst` items there and one back.
fn ping_pong_run<T: Item, Q: Queue<T> + 'static>(burst: u64) -> (String, Run)
where
    Q::Tx: 'static,
    Q::Rx: 'static,
{
    let mut queues = PingPong::<T, Q>::new();
    let kind = if burst == 1 {
        "ping_pong".to_owned()
    } else {
        format!("burst{burst}_round_trip")
    };
    (
        format!("{kind}/{}", Q::NAME),
        Box::new(move |n| queues.run(n, burst)),
    )
}

fn measure<T: Item>(rounds: usize, scale: u64) {
    let mut throughput: Vec<(String, Run)> = Vec::new();
    for (name, work) in Work::SCENARIOS {
        throughput.extend([
            single_run::<T, Shared>(name, work),
            single_run::<T, SharedUnpaced>(name, work),
            single_run::<T, Rtrb>(name, work),
            single_run::<T, Heapless>(name, work),
            single_run::<T, Crossbeam>(name, work),
            single_run::<T, Ringbuf>(name, work),
        ]);
    }
    throughput.push(single_run::<T, SharedNotify>("single", Work::NONE));
    // 32 as in the goal, and 512, which shows the machine's floor for moving cache lines
    // from one core to the other (both rings end up there).
    for batch in [BATCH, 512] {
        let (mut tx, mut rx) = make_padded::<T, Shared>();
        throughput.push((
            format!("batch{batch}/shared-ring chunks"),
            Box::new(move |n| batch_shared(&mut tx.0, &mut rx.0, n, batch)),
        ));
        let (mut tx, mut rx) = make_padded::<T, Rtrb>();
        throughput.push((
            format!("batch{batch}/rtrb chunks"),
            Box::new(move |n| batch_rtrb::<T>(&mut tx.0, &mut rx.0, n, batch)),
        ));
    }
    // A small ring, where a pause of the paced consumer can let the ring fill.
    for paced in [true, false] {
        let (mut tx, mut rx) = make_padded_shared::<T, SMALL_CAP>(paced);
        let pacing = if paced { "" } else { " pacing off" };
        throughput.push((
            format!("batch{BATCH}_ring{SMALL_CAP}/shared-ring chunks{pacing}"),
            Box::new(move |n| batch_shared(&mut tx.0, &mut rx.0, n, BATCH)),
        ));
    }
    let (mut tx, mut rx) = make_padded_rtrb::<T>(SMALL_CAP);
    throughput.push((
        format!("batch{BATCH}_ring{SMALL_CAP}/rtrb chunks"),
        Box::new(move |n| batch_rtrb::<T>(&mut tx.0, &mut rx.0, n, BATCH)),
    ));
    let (mut tx, mut rx) = make_padded::<T, Ringbuf>();
    throughput.push((
        "batch32/ringbuf slices".into(),
        Box::new(move |n| batch_ringbuf::<T>(&mut tx.0, &mut rx.0, n)),
    ));
    let mut latency: Vec<(String, Run)> = vec![
        ping_pong_run::<T, Shared>(1),
        ping_pong_run::<T, Rtrb>(1),
        ping_pong_run::<T, Heapless>(1),
        ping_pong_run::<T, Crossbeam>(1),
        ping_pong_run::<T, Ringbuf>(1),
    ];
    // What consumer pacing costs in latency: the round trip of a burst includes the wait of
    // its last items.
    let mut bursts: Vec<(String, Run)> = Vec::new();
    for burst in [16, 256, 4096] {
        bursts.extend([
            ping_pong_run::<T, Shared>(burst),
            ping_pong_run::<T, SharedUnpaced>(burst),
            ping_pong_run::<T, Rtrb>(burst),
            ping_pong_run::<T, Ringbuf>(burst),
        ]);
    }
    for (runs, items) in [
        (&mut throughput, 2_000_000 / scale),
        (&mut latency, 100_000 / scale),
        (&mut bursts, 10_000 / scale),
    ] {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
        for _ in 0..rounds {
            for ((_, run), times) in runs.iter_mut().zip(&mut times) {
                times.push(run(items).as_secs_f64() * 1e9 / items as f64);
            }
        }
        for ((name, _), mut times) in runs.iter().zip(times) {
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            println!("| {} | {name} | {median:.2} | {:.2} |", T::NAME, times[0]);
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) run one short round
    // as a smoke test.
    let benching = std::env::args().any(|a| a == "--bench");
    let (rounds, scale) = if benching {
        (
            std::env::var("ROUNDS")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or(7),
            1,
        )
    } else {
        (1, 1000)
    };
    println!("| size | contestant | median ns per item (per round trip) | best |");
    println!("|---|---|---:|---:|");
    measure::<[u64; 2]>(rounds, scale);
    measure::<[u64; 8]>(rounds, scale);
}
