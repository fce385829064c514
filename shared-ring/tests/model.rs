//! Property tests: random sequences of single, slice and chunk operations and wake-up requests
//! against a `VecDeque` model, starting from random index values (including just before the
//! `u32` wrap-around).
#![allow(
    unsafe_code,
    reason = "the test moves the indices of a fresh ring before use"
)]

use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, Ordering};

use proptest::prelude::*;
use shared_ring::{Notify, Pacing, PopError, PushError, Ring, Wakeup, layout};

const N: usize = 8;

#[derive(Debug, Clone)]
enum Op {
    Push(u32),
    PushSilent(u32),
    Notify,
    Pop,
    PushSlice(Vec<u32>),
    PopSlice(usize),
    /// Reserve up to `max`, fill `fill`, then 0: drop, 1: commit silently, 2: commit.
    WriteChunk {
        max: usize,
        fill: usize,
        commit: u8,
    },
    /// Borrow up to `max`, release `release`.
    ReadChunk {
        max: usize,
        release: usize,
    },
    Wake(usize),
    /// `k` times: push one item silently, then pop one (a consumer chasing a producer, the
    /// pattern that starts consumer pacing).
    Chase(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u32>().prop_map(Op::Push),
        any::<u32>().prop_map(Op::PushSilent),
        Just(Op::Notify),
        Just(Op::Pop),
        prop::collection::vec(any::<u32>(), 0..12).prop_map(Op::PushSlice),
        (0..12usize).prop_map(Op::PopSlice),
        (0..12usize, 0..12usize, 0..3u8).prop_map(|(max, fill, commit)| Op::WriteChunk {
            max,
            fill,
            commit
        }),
        (0..12usize, 0..12usize).prop_map(|(max, release)| Op::ReadChunk { max, release }),
        (0..12usize).prop_map(Op::Wake),
        (1..40u8).prop_map(Op::Chase),
    ]
}

/// A boxed, initialised ring whose three indices start at `start`.
fn ring_at(start: u32) -> &'static Ring<u32, N> {
    let storage: &'static mut MaybeUninit<Ring<u32, N>> =
        Box::leak(Box::new(MaybeUninit::uninit()));
    let ring: &'static Ring<u32, N> = Ring::init_in(storage);
    let base = std::ptr::from_ref(ring).cast::<u8>();
    for offset in [
        layout::TAIL_OFFSET,
        layout::HEAD_OFFSET,
        layout::EVENT_OFFSET,
    ] {
        // SAFETY: the documented layout puts an aligned `u32` index, an `AtomicU32` in the
        // ring, at each of these offsets; no end is out yet.
        let index = unsafe { &*base.add(offset).cast::<AtomicU32>() };
        index.store(start, Ordering::Relaxed);
    }
    ring
}

/// The model: items, free-running indices, and the wake-up protocol.
struct Model {
    items: VecDeque<u32>,
    head: u32,
    tail: u32,
    notified: u32,
    event: u32,
}

impl Model {
    fn decide(&mut self) -> Notify {
        let (old, new) = (self.notified, self.tail);
        self.notified = new;
        // The doorbell is due if `event` is among the indices `old..new` (wrapping).
        if (0..new.wrapping_sub(old)).any(|k| old.wrapping_add(k) == self.event) {
            Notify::Doorbell
        } else {
            Notify::Suppressed
        }
    }
    fn push(&mut self, v: u32) {
        self.items.push_back(v);
        self.tail = self.tail.wrapping_add(1);
    }
    fn pop(&mut self) -> Option<u32> {
        let v = self.items.pop_front()?;
        self.head = self.head.wrapping_add(1);
        Some(v)
    }
}

/// The longest pause of the paced runs, in consumer calls.
const MAX_DEFERRED: u16 = 4;

/// Runs `ops` against the model. With `Pacing::Off` every consumer call sees exactly what the
/// model holds. Paced, a call may see fewer items (a prefix), but never more than
/// `MAX_DEFERRED + 1` calls in a row (the reload that holds a short run back, then the
/// pause), and `available` (which ends a pause) is exact.
fn run(start: u32, ops: Vec<Op>, pacing: Pacing) -> Result<(), TestCaseError> {
    let (mut tx, mut rx) = ring_at(start).split().unwrap();
    rx.set_pacing(pacing);
    let paced = pacing != Pacing::Off;
    // Consecutive consumer calls that saw fewer items than the model holds.
    let mut stalls = 0u16;
    let mut stalled = |short: bool| -> Result<(), TestCaseError> {
        if short {
            prop_assert!(paced, "an unpaced consumer missed published items");
            stalls += 1;
            prop_assert!(
                stalls <= MAX_DEFERRED + 1,
                "{} calls in a row missed items",
                stalls
            );
        } else {
            stalls = 0;
        }
        Ok(())
    };
    let mut m = Model {
        items: VecDeque::new(),
        head: start,
        tail: start,
        notified: start,
        event: start,
    };
    let ops = ops.into_iter().flat_map(|op| match op {
        Op::Chase(k) => (0..u32::from(k))
            .flat_map(|v| [Op::PushSilent(v), Op::Pop])
            .collect(),
        op => vec![op],
    });
    for op in ops {
        let free = N - m.items.len();
        match op {
            Op::Push(v) => {
                let got = tx.push(v);
                if free == 0 {
                    prop_assert_eq!(got, Err(PushError::Full(v)));
                } else {
                    m.push(v);
                    prop_assert_eq!(got, Ok(m.decide()));
                }
            }
            Op::PushSilent(v) => {
                let got = tx.push_silent(v);
                if free == 0 {
                    prop_assert_eq!(got, Err(PushError::Full(v)));
                } else {
                    m.push(v);
                    prop_assert_eq!(got, Ok(()));
                }
            }
            Op::Notify => prop_assert_eq!(tx.notify(), m.decide()),
            Op::Pop => match (rx.pop(), m.items.front().copied()) {
                (Err(PopError::Empty), None) => stalled(false)?,
                (Err(PopError::Empty), Some(_)) => stalled(true)?,
                (got, expected) => {
                    prop_assert_eq!(got.ok(), expected);
                    m.pop();
                    stalled(false)?;
                }
            },
            Op::PushSlice(items) => {
                let n = tx.push_slice(&items).unwrap();
                prop_assert_eq!(n, items.len().min(free));
                items[..n].iter().for_each(|&v| m.push(v));
            }
            Op::PopSlice(len) => {
                let mut out = vec![0; len];
                let n = rx.pop_slice(&mut out).unwrap();
                prop_assert!(n <= len.min(m.items.len()));
                stalled(n < len.min(m.items.len()))?;
                for got in &out[..n] {
                    prop_assert_eq!(Some(*got), m.pop());
                }
            }
            Op::WriteChunk { max, fill, commit } => {
                let mut chunk = tx.write_chunk(max).unwrap();
                prop_assert_eq!(chunk.capacity(), max.min(free));
                let mut pushed = Vec::new();
                if fill % 2 == 0 {
                    let n = chunk.fill_from_iter((0..fill as u32).map(|k| 1000 + k));
                    prop_assert_eq!(n, fill.min(chunk.capacity()));
                    pushed.extend((0..n as u32).map(|k| 1000 + k));
                } else {
                    for k in 0..fill {
                        let v = 1000 + k as u32;
                        if chunk.push(v).is_ok() {
                            pushed.push(v);
                        } else {
                            prop_assert_eq!(chunk.remaining(), 0);
                        }
                    }
                }
                prop_assert_eq!(chunk.len(), pushed.len());
                match commit {
                    0 => {}
                    1 => {
                        chunk.commit_silent();
                        pushed.iter().for_each(|&v| m.push(v));
                    }
                    _ => {
                        let got = chunk.commit();
                        pushed.iter().for_each(|&v| m.push(v));
                        prop_assert_eq!(got, m.decide());
                    }
                }
            }
            Op::ReadChunk { max, release } => {
                let chunk = rx.read_chunk(max).unwrap();
                prop_assert!(chunk.len() <= max.min(m.items.len()));
                stalled(chunk.len() < max.min(m.items.len()))?;
                let seen: Vec<u32> = chunk.iter().collect();
                let expected: Vec<u32> = m.items.iter().take(chunk.len()).copied().collect();
                prop_assert_eq!(&seen, &expected);
                for (i, v) in expected.iter().enumerate() {
                    prop_assert_eq!(chunk.get(i), Some(*v));
                }
                prop_assert_eq!(chunk.get(chunk.len()), None);
                let n = release.min(chunk.len());
                chunk.release_first(release);
                for _ in 0..n {
                    m.pop();
                }
            }
            Op::Chase(_) => unreachable!("expanded into pushes and pops above"),
            Op::Wake(count) => {
                let want = count.clamp(1, N);
                m.event = m.head.wrapping_add(want as u32 - 1);
                let got = rx.request_wakeup_after(count).unwrap();
                stalled(false)?;
                if m.items.len() >= want {
                    prop_assert_eq!(got, Wakeup::Ready(m.items.len()));
                } else {
                    prop_assert_eq!(got, Wakeup::Armed);
                }
            }
        }
        prop_assert_eq!(tx.free_slots().unwrap(), N - m.items.len());
        if !paced {
            prop_assert_eq!(rx.available().unwrap(), m.items.len());
        }
    }
    prop_assert_eq!(rx.available().unwrap(), m.items.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn matches_vecdeque_model(
        start in prop_oneof![Just(0u32), Just(u32::MAX - 4), any::<u32>()],
        ops in prop::collection::vec(op(), 0..200),
    ) {
        run(start, ops, Pacing::Off)?;
    }

    #[test]
    fn paced_consumer_matches_model_with_bounded_stalls(
        start in prop_oneof![Just(0u32), Just(u32::MAX - 4), any::<u32>()],
        ops in prop::collection::vec(op(), 0..200),
    ) {
        run(start, ops, Pacing::Adaptive { max_deferred_polls: MAX_DEFERRED })?;
    }
}

/// The pacing sequence step by step: a consumer that caught up with a producer that has
/// streamed half a ring's worth of items skips one reload, then doubles its pause while
/// reloads find little, holds a short run back for one pause, and `available` ends a pause at
/// once.
#[test]
fn paced_consumer_defers_reloads_after_catching_up_and_available_ends_the_pause() {
    let (mut tx, mut rx) = ring_at(0).split().unwrap();
    assert_eq!(rx.pacing(), Pacing::Off);
    rx.set_pacing(Pacing::STREAMING);
    // A burst of half the ring is not paced: every item at the first poll.
    for v in 100..100 + N as u32 / 2 {
        assert_eq!(rx.pop(), Err(PopError::Empty));
        tx.push_silent(v).unwrap();
        assert_eq!(rx.pop(), Ok(v));
    }
    // Now the producer has streamed half a ring's worth without an idle spell.
    assert_eq!(rx.pop(), Err(PopError::Empty));
    tx.push_silent(1).unwrap();
    // Found right after one empty poll, and little: the producer is streaming.
    assert_eq!(rx.pop(), Ok(1));
    // Caught up: this reload finds nothing and starts a pause of one poll.
    assert_eq!(rx.pop(), Err(PopError::Empty));
    tx.push_silent(2).unwrap();
    assert_eq!(
        rx.pop(),
        Err(PopError::Empty),
        "the paused poll does not reload"
    );
    assert_eq!(rx.pop(), Ok(2));
    // The pause doubled to two polls. A short run found right after taking items is held
    // back for the pause, then taken.
    tx.push_silent(3).unwrap();
    for _ in 0..3 {
        assert_eq!(rx.pop(), Err(PopError::Empty));
    }
    assert_eq!(rx.pop(), Ok(3));
    // Now four polls; `available` ends the pause at once.
    assert_eq!(rx.pop(), Err(PopError::Empty));
    tx.push_silent(4).unwrap();
    assert_eq!(rx.pop(), Err(PopError::Empty));
    assert_eq!(rx.available(), Ok(1), "available reloads at once");
    assert_eq!(rx.pop(), Ok(4));

    // The same sequence unpaced sees every item at the first poll.
    rx.set_pacing(Pacing::Off);
    for v in 5..20 {
        assert_eq!(rx.pop(), Err(PopError::Empty));
        tx.push_silent(v).unwrap();
        assert_eq!(rx.pop(), Ok(v));
    }
}
