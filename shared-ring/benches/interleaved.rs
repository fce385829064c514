//! The same measurements as `ring.rs`, interleaved: every round measures every contestant once,
//! in turn, and the report gives the median and the best of the rounds per contestant. On a
//! shared virtual machine, where the speed of cross-core traffic changes from minute to minute,
//! this compares contestants under the same conditions better than criterion's one-after-another
//! order. Run: `cargo bench -p shared-ring --bench interleaved` (`ROUNDS=n` to change the
//! number of rounds, 7 by default). The last rows of each size are the goals as ratios
//! taken round by round: median, lowest and highest.

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
    // Each contestant's time per item (per round trip) in every round, in round order.
    let mut rounds_by_name: Vec<(String, Vec<f64>)> = Vec::new();
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
        for ((name, _), times) in runs.iter().zip(times) {
            let mut sorted = times.clone();
            sorted.sort_by(f64::total_cmp);
            println!(
                "| {} | {name} | {:.2} | {:.2} |",
                T::NAME,
                median(&sorted),
                sorted[0]
            );
            rounds_by_name.push((name.clone(), times));
        }
    }
    goals(T::NAME, &rounds_by_name);
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

/// The goals as ratios taken round by round (both sides measured within minutes of
/// each other, under the same machine conditions): the median of the rounds' ratios, and the
/// lowest and highest. A ratio of at least `goal` meets the goal.
fn goals(size: &str, rounds_by_name: &[(String, Vec<f64>)]) {
    let times = |name: &str| -> &[f64] {
        &rounds_by_name
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no contestant {name}"))
            .1
    };
    let peers = [
        "single/rtrb",
        "single/heapless::spsc",
        "single/crossbeam ArrayQueue",
        "single/ringbuf",
    ];
    let best_peer: Vec<f64> = (0..times("single/rtrb").len())
        .map(|round| {
            peers
                .iter()
                .map(|peer| times(peer)[round])
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    let cases: [(&str, &[f64], &str, f64); 3] = [
        (
            "single item, best peer / shared-ring",
            &best_peer,
            "single/shared-ring",
            1.0,
        ),
        (
            "rtrb single item / shared-ring batch32",
            times("single/rtrb"),
            "batch32/shared-ring chunks",
            2.0,
        ),
        (
            "rtrb round trip / shared-ring round trip",
            times("ping_pong/rtrb"),
            "ping_pong/shared-ring",
            1.0,
        ),
    ];
    for (what, peer, ours, goal) in cases {
        let mut ratios: Vec<f64> = peer.iter().zip(times(ours)).map(|(p, o)| p / o).collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "| {size} | goal {what} >= {goal} | {:.2} | {:.2} (highest {:.2}) |",
            median(&ratios),
            ratios[0],
            ratios[ratios.len() - 1]
        );
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
