//! A peer that writes garbage into shared memory: impossible indices are reported as
//! `Corrupted` (and poison the end that saw them), headers that do not match are refused, and
//! random corruption never causes a panic, an out-of-bounds access or an endless loop.
#![allow(
    unsafe_code,
    reason = "the tests play the malicious peer, writing raw shared memory"
)]

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, Ordering};

use proptest::prelude::*;
use shared_ring::{
    Corrupted, ErrorKind, IndexKind, LayoutError, PopError, PushError, Ring, RingPair, layout,
};

const N: usize = 8;
type TestRing = Ring<u32, N>;

/// 128-byte aligned backing memory for raw rings.
#[repr(C, align(128))]
struct Region([u8; 4096]);

fn region() -> &'static mut Region {
    Box::leak(Box::new(Region([0; 4096])))
}

/// The `u32` at `offset` in the ring, as the peer sees it.
fn word<T: Copy, const M: usize>(ring: &Ring<T, M>, offset: usize) -> &AtomicU32 {
    // SAFETY: offsets from `layout` name aligned `u32` fields inside the ring, all atomics.
    unsafe {
        &*std::ptr::from_ref(ring)
            .cast::<u8>()
            .add(offset)
            .cast::<AtomicU32>()
    }
}

fn new_ring() -> &'static TestRing {
    let storage = Box::leak(Box::new(MaybeUninit::uninit()));
    TestRing::init_in(storage)
}

#[test]
fn tail_far_ahead_is_reported_and_poisons_the_consumer() {
    let ring = new_ring();
    let (mut tx, mut rx) = ring.split().unwrap();
    tx.push_slice(&[1, 2]).unwrap();
    assert_eq!(rx.pop(), Ok(1));
    assert_eq!(rx.pop(), Ok(2));
    word(ring, layout::TAIL_OFFSET).store(100, Ordering::Relaxed);
    let expected = Corrupted {
        index: IndexKind::Tail,
        found: 100,
        low: 2,
        high: 2 + N as u32,
    };
    assert_eq!(rx.pop(), Err(PopError::Corrupted(expected)));
    assert_eq!(rx.pop().unwrap_err().kind(), ErrorKind::Corrupted);
    // Even once the index looks sane again, the consumer stays poisoned.
    word(ring, layout::TAIL_OFFSET).store(2, Ordering::Relaxed);
    assert_eq!(rx.pop(), Err(PopError::Corrupted(expected)));
    assert_eq!(rx.read_chunk(4).unwrap_err(), expected);
    assert_eq!(rx.pop_slice(&mut [0; 4]).unwrap_err(), expected);
    assert_eq!(rx.available().unwrap_err(), expected);
    assert_eq!(rx.request_wakeup().unwrap_err(), expected);
    assert_eq!(rx.poisoned(), Some(expected));
}

#[test]
fn tail_moving_backwards_is_reported() {
    let ring = new_ring();
    let (mut tx, mut rx) = ring.split().unwrap();
    tx.push_slice(&[1, 2, 3]).unwrap();
    assert_eq!(rx.pop(), Ok(1));
    word(ring, layout::TAIL_OFFSET).store(1, Ordering::Relaxed);
    // The items already seen are fine; the next reload finds the tail moved back.
    assert_eq!(rx.pop(), Ok(2));
    assert_eq!(rx.pop(), Ok(3));
    let err = rx.pop().unwrap_err();
    assert_eq!(
        err,
        PopError::Corrupted(Corrupted {
            index: IndexKind::Tail,
            found: 1,
            low: 3,
            high: 3 + 8
        })
    );
}

#[test]
fn head_beyond_tail_is_reported_and_poisons_the_producer() {
    let ring = new_ring();
    let (mut tx, _rx) = ring.split().unwrap();
    for i in 0..N as u32 {
        tx.push_silent(i).unwrap();
    }
    word(ring, layout::HEAD_OFFSET).store(N as u32 + 1, Ordering::Relaxed);
    let expected = Corrupted {
        index: IndexKind::Head,
        found: 9,
        low: 0,
        high: 8,
    };
    assert_eq!(tx.push(42), Err(PushError::Corrupted(42, expected)));
    assert_eq!(tx.push_silent(43).unwrap_err().kind(), ErrorKind::Corrupted);
    assert_eq!(tx.write_chunk(1).unwrap_err(), expected);
    assert_eq!(tx.push_slice(&[1]).unwrap_err(), expected);
    assert_eq!(tx.free_slots().unwrap_err(), expected);
    assert_eq!(tx.poisoned(), Some(expected));
}

#[test]
fn head_moving_backwards_is_reported() {
    let ring = new_ring();
    let (mut tx, mut rx) = ring.split().unwrap();
    tx.push_slice(&[0; N]).unwrap();
    assert_eq!(rx.pop_slice(&mut [0; 4]).unwrap(), 4);
    assert_eq!(tx.push_slice(&[0; 4]).unwrap(), 4);
    word(ring, layout::HEAD_OFFSET).store(2, Ordering::Relaxed);
    assert_eq!(
        tx.push(1),
        Err(PushError::Corrupted(
            1,
            Corrupted {
                index: IndexKind::Head,
                found: 2,
                low: 4,
                high: 12
            }
        ))
    );
}

#[test]
fn impossible_indices_at_claim_time_poison_both_ends() {
    let ring = new_ring();
    word(ring, layout::TAIL_OFFSET).store(1000, Ordering::Relaxed);
    let (mut tx, mut rx) = ring.split().unwrap();
    assert!(tx.poisoned().is_some());
    assert!(rx.poisoned().is_some());
    assert_eq!(tx.push(1).unwrap_err().kind(), ErrorKind::Corrupted);
    assert_eq!(rx.pop().unwrap_err().kind(), ErrorKind::Corrupted);
}

#[test]
fn mismatched_headers_are_refused() {
    let mem = region();
    let ptr = mem.0.as_mut_ptr();
    let len = mem.0.len();
    // SAFETY: `mem` is a leaked, aligned 4 KiB buffer used only here, for every call below.
    unsafe {
        assert_eq!(
            TestRing::attach_raw(ptr, len).unwrap_err(),
            LayoutError::BadMagic(0)
        );
        let ring = TestRing::init_raw(ptr, len).unwrap();
        assert!(TestRing::attach_raw(ptr, len).is_ok());
        assert_eq!(
            Ring::<u32, 16>::attach_raw(ptr, len).unwrap_err(),
            LayoutError::Capacity(N as u32)
        );
        assert_eq!(
            Ring::<u64, 8>::attach_raw(ptr, len).unwrap_err(),
            LayoutError::ElementSize(4)
        );
        assert_eq!(
            Ring::<[u16; 2], 8>::attach_raw(ptr, len).unwrap_err(),
            LayoutError::ElementAlign(4)
        );
        assert_eq!(
            TestRing::attach_raw(ptr, 64).unwrap_err(),
            LayoutError::TooSmall {
                needed: TestRing::SIZE,
                len: 64
            }
        );
        assert_eq!(
            TestRing::attach_raw(ptr.add(8), len - 8).unwrap_err(),
            LayoutError::Misaligned
        );
        assert_eq!(
            TestRing::init_raw(ptr.add(64), len - 64).unwrap_err(),
            LayoutError::Misaligned
        );
        word(ring, layout::VERSION_OFFSET).store(2, Ordering::Relaxed);
        assert_eq!(
            TestRing::attach_raw(ptr, len).unwrap_err(),
            LayoutError::Version(2)
        );
        word(ring, layout::VERSION_OFFSET).store(layout::VERSION, Ordering::Relaxed);
        word(ring, layout::TOTAL_SIZE_OFFSET).store(1, Ordering::Relaxed);
        assert_eq!(
            TestRing::attach_raw(ptr, len).unwrap_err(),
            LayoutError::Geometry
        );
        assert_eq!(
            word(ring, layout::MAGIC_OFFSET).load(Ordering::Relaxed),
            layout::MAGIC
        );
        assert_eq!(
            word(ring, layout::CAPACITY_OFFSET).load(Ordering::Relaxed),
            N as u32
        );
        assert_eq!(
            word(ring, layout::ELEMENT_SIZE_OFFSET).load(Ordering::Relaxed),
            4
        );
        assert_eq!(
            word(ring, layout::ELEMENT_ALIGN_OFFSET).load(Ordering::Relaxed),
            4
        );
        assert_eq!(
            word(ring, layout::SLOTS_OFFSET_OFFSET).load(Ordering::Relaxed),
            layout::SLOTS_OFFSET as u32
        );
    }
}

#[test]
fn claims_hand_out_each_end_once() {
    let ring = new_ring();
    let (tx, rx) = ring.split().unwrap();
    assert!(ring.split().is_err());
    assert!(ring.producer().is_err());
    assert!(ring.consumer().is_err());
    assert_eq!(word(ring, layout::CLAIMS_OFFSET).load(Ordering::Relaxed), 3);
    drop(tx);
    assert!(ring.split().is_err(), "the consumer is still out");
    assert_eq!(word(ring, layout::CLAIMS_OFFSET).load(Ordering::Relaxed), 2);
    let mut tx = ring.producer().unwrap();
    drop(rx);
    let mut rx = ring.consumer().unwrap();
    assert!(tx.push(5).unwrap().is_needed());
    assert_eq!(rx.pop(), Ok(5));
    fn send<T: Send>(_: &T) {}
    send(&tx);
    send(&rx);
}

#[test]
fn ring_pair_in_a_raw_region() {
    type Pair = RingPair<[u64; 4], u32, 8, 4>;
    let mem = region();
    assert!(Pair::SIZE <= mem.0.len());
    // SAFETY: a leaked, aligned buffer used only here, by both "sides".
    let (created, attached) = unsafe {
        let created = Pair::init_raw(mem.0.as_mut_ptr(), mem.0.len()).unwrap();
        (
            created,
            Pair::attach_raw(mem.0.as_ptr(), mem.0.len()).unwrap(),
        )
    };
    assert_eq!(Pair::MAX_OUTSTANDING, 4);
    let mut driver = created.driver_end().unwrap();
    let mut device = attached.device_end().unwrap();
    assert!(created.device_end().is_err());
    assert!(driver.requests.push([1, 2, 3, 4]).unwrap().is_needed());
    assert_eq!(device.requests.pop(), Ok([1, 2, 3, 4]));
    let _ = device.completions.push(7).unwrap();
    assert_eq!(driver.completions.pop(), Ok(7));
    // SAFETY: as above.
    let wrong = unsafe { RingPair::<[u64; 4], u64, 8, 4>::attach_raw(mem.0.as_ptr(), mem.0.len()) };
    assert_eq!(wrong.unwrap_err(), LayoutError::ElementSize(4));
}

#[derive(Debug, Clone)]
enum Step {
    Push(usize),
    Pop(usize),
    Scribble { offset: usize, value: u32 },
}

fn step() -> impl Strategy<Value = Step> {
    let offsets = prop::sample::select(vec![
        layout::TAIL_OFFSET,
        layout::HEAD_OFFSET,
        layout::EVENT_OFFSET,
    ]);
    let values = prop_oneof![any::<u32>(), 0..20u32, (u32::MAX - 20)..=u32::MAX];
    prop_oneof![
        (0..12usize).prop_map(Step::Push),
        (0..12usize).prop_map(Step::Pop),
        (offsets, values).prop_map(|(offset, value)| Step::Scribble { offset, value }),
    ]
}

proptest! {
    /// Whatever the peer scribbles over the indices, every call returns, nothing panics, and no
    /// end ever claims more than `N` items or free slots.
    #[test]
    fn random_scribbles_never_panic_or_overrun(steps in prop::collection::vec(step(), 0..100)) {
        let ring = new_ring();
        let (mut tx, mut rx) = ring.split().unwrap();
        for step in steps {
            match step {
                Step::Push(n) => {
                    if let Ok(chunk) = tx.write_chunk(n) {
                        prop_assert!(chunk.capacity() <= N);
                        chunk.commit_silent();
                    }
                    let _ = tx.push(9);
                    if let Ok(free) = tx.free_slots() {
                        prop_assert!(free <= N);
                    }
                }
                Step::Pop(n) => {
                    if let Ok(chunk) = rx.read_chunk(n) {
                        prop_assert!(chunk.len() <= N);
                        prop_assert_eq!(chunk.iter().count(), chunk.len());
                        chunk.release();
                    }
                    let _ = rx.pop();
                    let _ = rx.request_wakeup_after(n);
                    if let Ok(available) = rx.available() {
                        prop_assert!(available <= N);
                    }
                }
                Step::Scribble { offset, value } => word(ring, offset).store(value, Ordering::Relaxed),
            }
        }
    }
}
