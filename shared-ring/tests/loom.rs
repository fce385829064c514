//! Model tests: loom runs every interleaving (and every weak-memory outcome loom models) of
//! small scenarios and checks FIFO order, no loss, no duplication, no overrun, and no lost
//! wake-up. Under `--cfg loom` the ring's slots also carry stamps, written and read with
//! `Relaxed`, so loom reports a slot read that does not happen after the slot's write.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shared-ring --test loom --release`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::Notify as Doorbell;
use loom::thread;
use shared_ring::{Consumer, Notify, Pacing, PopError, PushError, Ring, Wakeup};

/// A ring for one model execution; leaked, since handles borrow it and loom threads are
/// `'static` (a few hundred bytes per execution).
fn ring<const N: usize>() -> &'static Ring<u32, N> {
    Box::leak(Box::new(Ring::new()))
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    model_with_preemptions(5, f);
}

/// Runs `f` under loom with at most `preemptions` preemptions per execution (to keep the run
/// short); `LOOM_MAX_PREEMPTIONS` overrides.
fn model_with_preemptions(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.check(f);
}

/// Polls (yielding when empty) until items `0..count` have arrived, each in order and once;
/// `check` runs after every poll.
fn poll_in_order<const N: usize>(
    rx: &mut Consumer<'_, u32, N>,
    count: u32,
    mut check: impl FnMut(&mut Consumer<'_, u32, N>),
) {
    let mut expected = 0u32;
    while expected < count {
        match rx.pop() {
            Ok(item) => {
                assert_eq!(item, expected);
                expected += 1;
            }
            Err(PopError::Empty) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
        check(rx);
    }
}

/// Capacity 2, three items, single pushes and pops: the producer must wait for a slot, items
/// arrive in order, each exactly once, and never more than 2 are in flight.
#[test]
fn fifo_single_items_wrap_around() {
    model(|| {
        let (mut tx, mut rx) = ring::<2>().split().unwrap();
        let producer = thread::spawn(move || {
            for i in 0..3u32 {
                let mut item = i;
                loop {
                    match tx.push_silent(item) {
                        Ok(()) => break,
                        Err(PushError::Full(back)) => {
                            item = back;
                            thread::yield_now();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        poll_in_order(&mut rx, 3, |rx| assert!(rx.available().unwrap() <= 2));
        producer.join().unwrap();
        assert_eq!(rx.pop(), Err(PopError::Empty));
    });
}

/// A polling consumer with pacing on (pauses of up to two polls) against a producer that
/// publishes one item at a time, more than a ring's worth so that pacing can start: pausing
/// reloads loses, duplicates and reorders nothing, and the consumer still gets every item.
#[test]
fn fifo_paced_polling_consumer() {
    // Five items through four slots take many more steps than the other models: three
    // preemptions keep the run within a minute.
    model_with_preemptions(3, || {
        let (mut tx, mut rx) = ring::<4>().split().unwrap();
        rx.set_pacing(Pacing::Adaptive {
            max_deferred_polls: 2,
        });
        let producer = thread::spawn(move || {
            for i in 0..5u32 {
                while tx.push_silent(i).is_err() {
                    thread::yield_now();
                }
            }
        });
        // No `available` between polls here: it would end every pause.
        poll_in_order(&mut rx, 5, |_| {});
        producer.join().unwrap();
        assert_eq!(rx.available(), Ok(0));
    });
}

/// Chunks: the producer writes bursts with one index store, the consumer reads chunks in place
/// and releases part of them.
#[test]
fn fifo_chunks() {
    model(|| {
        let (mut tx, mut rx) = ring::<4>().split().unwrap();
        let producer = thread::spawn(move || {
            let items = [0u32, 1, 2, 3, 4, 5];
            let mut sent = 0;
            while sent < items.len() {
                let mut chunk = tx.write_chunk(3).unwrap();
                let n = chunk.extend_from_slice(&items[sent..]);
                chunk.commit_silent();
                sent += n;
                if n == 0 {
                    thread::yield_now();
                }
            }
        });
        let mut expected = 0u32;
        while expected < 6 {
            let chunk = rx.read_chunk(4).unwrap();
            assert!(chunk.len() <= 4);
            if chunk.is_empty() {
                drop(chunk);
                thread::yield_now();
                continue;
            }
            // Release at most two at a time, so that the rest is read again.
            let take = chunk.len().min(2);
            for (k, item) in chunk.iter().take(take).enumerate() {
                assert_eq!(item, expected + k as u32);
            }
            chunk.release_first(take);
            expected += take as u32;
        }
        producer.join().unwrap();
    });
}

/// The consumer sleeps whenever `request_wakeup` says `Armed`; the producer rings the doorbell
/// whenever `push` says so. If a wake-up were lost, the consumer would wait forever and loom
/// would report a deadlock.
#[test]
fn no_lost_wakeup_single_pushes() {
    model(|| {
        let (mut tx, mut rx) = ring::<4>().split().unwrap();
        let bell = Arc::new(Doorbell::new());
        let producer_bell = bell.clone();
        let producer = thread::spawn(move || {
            for i in 0..2u32 {
                if tx.push(i).unwrap() == Notify::Doorbell {
                    producer_bell.notify();
                }
            }
        });
        let mut expected = 0u32;
        while expected < 2 {
            match rx.pop() {
                Ok(item) => {
                    assert_eq!(item, expected);
                    expected += 1;
                }
                Err(PopError::Empty) => match rx.request_wakeup().unwrap() {
                    Wakeup::Armed => bell.wait(),
                    Wakeup::Ready(_) => {}
                },
                Err(e) => panic!("{e}"),
            }
        }
        producer.join().unwrap();
    });
}

/// The same with bursts: silent pushes and a chunk, one `notify` decision per burst, and a
/// consumer that waits for two items at once (`request_wakeup_after(2)`).
#[test]
fn no_lost_wakeup_bursts_and_thresholds() {
    model(|| {
        let (mut tx, mut rx) = ring::<4>().split().unwrap();
        let bell = Arc::new(Doorbell::new());
        let producer_bell = bell.clone();
        let producer = thread::spawn(move || {
            tx.push_silent(0).unwrap();
            if tx.notify().is_needed() {
                producer_bell.notify();
            }
            let mut chunk = tx.write_chunk(2).unwrap();
            chunk.push(1).unwrap();
            chunk.push(2).unwrap();
            if chunk.commit().is_needed() {
                producer_bell.notify();
            }
            tx.push_silent(3).unwrap();
            if tx.notify().is_needed() {
                producer_bell.notify();
            }
        });
        let mut expected = 0u32;
        while expected < 4 {
            let chunk = rx.read_chunk(4).unwrap();
            if chunk.is_empty() {
                drop(chunk);
                // Wait for two items while at least two more will come, then for one.
                let want = if expected <= 2 { 2 } else { 1 };
                match rx.request_wakeup_after(want).unwrap() {
                    Wakeup::Armed => bell.wait(),
                    Wakeup::Ready(n) => assert!(n >= want),
                }
                continue;
            }
            for item in chunk.iter() {
                assert_eq!(item, expected);
                expected += 1;
            }
            chunk.release();
        }
        producer.join().unwrap();
    });
}

/// A `RingPair` as an adapter uses it: the driver submits two requests and sleeps for their
/// completions, the device sleeps for requests and completes each; both directions use the
/// wake-up protocol, and neither side may sleep forever.
#[test]
fn ring_pair_requests_and_completions() {
    model(|| {
        let pair: &'static shared_ring::RingPair<u32, u32, 2, 2> =
            Box::leak(Box::new(shared_ring::RingPair {
                requests: Ring::new(),
                completions: Ring::new(),
            }));
        let (mut driver, mut device) = pair.split().unwrap();
        let request_bell = Arc::new(Doorbell::new());
        let completion_bell = Arc::new(Doorbell::new());
        let (device_requests, device_completions) = (request_bell.clone(), completion_bell.clone());
        let device_thread = thread::spawn(move || {
            let mut served = 0u32;
            while served < 2 {
                match device.requests.pop() {
                    Ok(tag) => {
                        assert_eq!(tag, served);
                        served += 1;
                        if device.completions.push(tag + 100).unwrap().is_needed() {
                            device_completions.notify();
                        }
                    }
                    Err(PopError::Empty) => match device.requests.request_wakeup().unwrap() {
                        Wakeup::Armed => device_requests.wait(),
                        Wakeup::Ready(_) => {}
                    },
                    Err(e) => panic!("{e}"),
                }
            }
        });
        for tag in 0..2u32 {
            if driver.requests.push(tag).unwrap().is_needed() {
                request_bell.notify();
            }
        }
        let mut completed = 0u32;
        while completed < 2 {
            match driver.completions.pop() {
                Ok(status) => {
                    assert_eq!(status, completed + 100);
                    completed += 1;
                }
                Err(PopError::Empty) => match driver.completions.request_wakeup().unwrap() {
                    Wakeup::Armed => completion_bell.wait(),
                    Wakeup::Ready(_) => {}
                },
                Err(e) => panic!("{e}"),
            }
        }
        device_thread.join().unwrap();
    });
}
