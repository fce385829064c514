//! Two-thread stress tests with a running checksum: 10^6 items by default, 10^8 with `SOAK=1`
//! (as `cargo xtask soak` sets). One test busy-polls with a random mix of single items, slices
//! and chunks; the other sleeps on a real doorbell (thread park/unpark) whenever
//! `request_wakeup` says so, to show that no wake-up is lost. Each runs with the consumer's
//! pacing off (the default) and with `Pacing::STREAMING`.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shared_ring::{Notify, Pacing, PopError, PushError, Ring, Wakeup};

type Item = [u64; 2];

fn soak() -> bool {
    std::env::var_os("SOAK").is_some_and(|v| v == "1")
}

/// The item for sequence number `seq`: the number and a hash of it.
fn item(seq: u64) -> Item {
    [
        seq,
        seq.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0xA5A5_5A5A_DEAD_BEEF,
    ]
}

/// Back off while the other side catches up: spin a little, then yield (the machine may have
/// fewer free cores than threads).
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        spin_loop();
    } else {
        thread::yield_now();
    }
}

#[test]
fn two_threads_mixed_operations_checksum() {
    mixed_operations_checksum(Pacing::Off);
}

#[test]
fn two_threads_mixed_operations_checksum_paced() {
    mixed_operations_checksum(Pacing::STREAMING);
}

fn mixed_operations_checksum(pacing: Pacing) {
    let count: u64 = if soak() { 100_000_000 } else { 1_000_000 };
    let ring: Ring<Item, 64> = Ring::new();
    let (mut tx, mut rx) = ring.split().unwrap();
    rx.set_pacing(pacing);
    let started = Instant::now();
    let (sent_sum, received_sum) = thread::scope(|s| {
        let producer = s.spawn(move || {
            let mut rng = ChaCha8Rng::seed_from_u64(0x1234_5678_9ABC_DEF1);
            let mut seq = 0u64;
            let mut sum = 0u64;
            let mut spins = 0;
            let mut buf = [[0u64; 2]; 48];
            while seq < count {
                let burst = rng.random_range(1..=48u64).min(count - seq) as usize;
                let sent = match rng.random_range(0..3) {
                    0 => match tx.push_silent(item(seq)) {
                        Ok(()) => 1,
                        Err(PushError::Full(_)) => 0,
                        Err(e) => panic!("{e}"),
                    },
                    1 => {
                        for (k, slot) in buf[..burst].iter_mut().enumerate() {
                            *slot = item(seq + k as u64);
                        }
                        tx.push_slice(&buf[..burst]).unwrap()
                    }
                    _ => {
                        let mut chunk = tx.write_chunk(burst).unwrap();
                        let mut k = 0;
                        while chunk.push(item(seq + k)).is_ok() {
                            k += 1;
                        }
                        chunk.commit_silent();
                        k as usize
                    }
                };
                for k in 0..sent as u64 {
                    sum = sum.wrapping_add(item(seq + k)[1]);
                }
                seq += sent as u64;
                if sent == 0 {
                    backoff(&mut spins);
                } else {
                    spins = 0;
                }
            }
            sum
        });
        let consumer = s.spawn(move || {
            let mut rng = ChaCha8Rng::seed_from_u64(0x0FED_CBA9_8765_4321);
            let mut expected = 0u64;
            let mut sum = 0u64;
            let mut spins = 0;
            let mut buf = [[0u64; 2]; 48];
            let check = |got: Item, expected: &mut u64, sum: &mut u64| {
                assert_eq!(got, item(*expected), "item out of order or damaged");
                *sum = sum.wrapping_add(got[1]);
                *expected += 1;
            };
            while expected < count {
                let before = expected;
                match rng.random_range(0..3) {
                    0 => match rx.pop() {
                        Ok(got) => check(got, &mut expected, &mut sum),
                        Err(PopError::Empty) => {}
                        Err(e) => panic!("{e}"),
                    },
                    1 => {
                        let len = rng.random_range(1..=48u64) as usize;
                        let n = rx.pop_slice(&mut buf[..len]).unwrap();
                        for &got in &buf[..n] {
                            check(got, &mut expected, &mut sum);
                        }
                    }
                    _ => {
                        let chunk = rx.read_chunk(rng.random_range(1..=48u64) as usize).unwrap();
                        assert!(chunk.len() <= 64);
                        for got in chunk.iter() {
                            check(got, &mut expected, &mut sum);
                        }
                        chunk.release();
                    }
                }
                if expected == before {
                    backoff(&mut spins);
                } else {
                    spins = 0;
                }
            }
            assert_eq!(rx.pop(), Err(PopError::Empty));
            sum
        });
        (producer.join().unwrap(), consumer.join().unwrap())
    });
    assert_eq!(sent_sum, received_sum);
    eprintln!("{count} items in {:?} ({pacing:?})", started.elapsed());
}

#[test]
fn two_threads_doorbell_no_lost_wakeup() {
    doorbell_no_lost_wakeup(Pacing::Off);
}

#[test]
fn two_threads_doorbell_no_lost_wakeup_paced() {
    doorbell_no_lost_wakeup(Pacing::STREAMING);
}

fn doorbell_no_lost_wakeup(pacing: Pacing) {
    let count: u64 = if soak() { 10_000_000 } else { 200_000 };
    let ring: Ring<Item, 16> = Ring::new();
    let (mut tx, mut rx) = ring.split().unwrap();
    rx.set_pacing(pacing);
    let done = AtomicBool::new(false);
    let (doorbells, sleeps) = thread::scope(|s| {
        let consumer = s.spawn(|| {
            let mut expected = 0u64;
            let mut sleeps = 0u64;
            while expected < count {
                match rx.pop() {
                    Ok(got) => {
                        assert_eq!(got, item(expected));
                        expected += 1;
                    }
                    Err(PopError::Empty) => match rx.request_wakeup().unwrap() {
                        Wakeup::Ready(_) => {}
                        Wakeup::Armed => {
                            sleeps += 1;
                            let slept = Instant::now();
                            // A real consumer would block forever; a long timeout turns a lost
                            // wake-up into a failure instead of a hang.
                            thread::park_timeout(Duration::from_secs(30));
                            assert!(
                                slept.elapsed() < Duration::from_secs(30),
                                "lost wake-up: armed, and no doorbell for 30 s"
                            );
                        }
                    },
                    Err(e) => panic!("{e}"),
                }
            }
            done.store(true, Ordering::Release);
            sleeps
        });
        let consumer_thread = consumer.thread().clone();
        let producer = s.spawn(move || {
            let mut doorbells = 0u64;
            let mut seq = 0u64;
            while seq < count {
                match tx.push(item(seq)) {
                    Ok(notify) => {
                        seq += 1;
                        if notify == Notify::Doorbell {
                            doorbells += 1;
                            consumer_thread.unpark();
                        }
                    }
                    Err(PushError::Full(_)) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
            doorbells
        });
        (producer.join().unwrap(), consumer.join().unwrap())
    });
    assert!(done.load(Ordering::Acquire));
    // No sleep timed out (checked above). Doorbells may outnumber sleeps: a consumer that armed
    // and then found an item (`Ready`) does not sleep, but its request stands.
    assert!(doorbells >= 1);
    eprintln!("{count} items, {sleeps} sleeps, {doorbells} doorbells ({pacing:?})");
}
