//! What both benchmark binaries share: the element types, the queues under test behind one
//! trait, and the measured loops (each returns the wall time of `iters` items or round trips).

use std::cell::Cell;
use std::hint::{black_box, spin_loop};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ringbuf::traits::{Consumer as _, Producer as _, Split as _};
use shared_ring::{Pacing, PushError, Ring};

pub(crate) const CAP: usize = 1024;
/// The ring of the small-ring rows: a PVSCSI request ring at the Linux driver's default size
/// (8 pages of 128-byte descriptors).
pub(crate) const SMALL_CAP: usize = 256;
pub(crate) const BATCH: usize = 32;

/// One end of a queue on cache lines of its own (128 bytes, two lines for CPUs that fetch
/// adjacent pairs), in its own allocation.
///
/// Every contestant's handles go through this: an end whose fields change with every operation
/// (rtrb's, ringbuf's and this crate's do) must not share a line with the other end, or every
/// item moves that line between the two cores. Left on the stack next to each other, as they
/// come out of `make`, rtrb's two 24-byte handles share a line or not depending on how the
/// compiler lays out the frame; this crate's are aligned by their type. Boxing everything the
/// same way removes that lottery.
#[repr(align(128))]
pub(crate) struct Padded<X>(pub(crate) X);

/// A queue's two ends, each in its own [`Padded`] box.
#[allow(clippy::type_complexity)]
pub(crate) fn make_padded<T: Item, Q: Queue<T>>() -> (Box<Padded<Q::Tx>>, Box<Padded<Q::Rx>>) {
    let (tx, rx) = Q::make();
    (Box::new(Padded(tx)), Box::new(Padded(rx)))
}

/// A benchmark element: `i` in the first word, the rest filler.
pub(crate) trait Item: Copy + Send + 'static {
    const NAME: &'static str;
    fn make(i: u64) -> Self;
    fn key(&self) -> u64;
}

impl Item for [u64; 2] {
    const NAME: &'static str = "16B";
    fn make(i: u64) -> Self {
        [i, !i]
    }
    fn key(&self) -> u64 {
        self[0]
    }
}

impl Item for [u64; 8] {
    const NAME: &'static str = "64B";
    fn make(i: u64) -> Self {
        [i, 1, 2, 3, 4, 5, 6, !i]
    }
    fn key(&self) -> u64 {
        self[0]
    }
}

/// An SPSC queue under test, by its single-item operations.
pub(crate) trait Queue<T: Item> {
    const NAME: &'static str;
    type Tx: Send;
    type Rx: Send;
    fn make() -> (Self::Tx, Self::Rx);
    fn push(tx: &mut Self::Tx, v: T) -> Result<(), T>;
    fn pop(rx: &mut Self::Rx) -> Option<T>;
}

/// This crate's two ends on a new ring of `N` slots (leaked: the benches keep it to the end),
/// the consumer paced with `Pacing::STREAMING` if `paced`, else `Pacing::Off`.
fn split_shared<T: Item, const N: usize>(
    paced: bool,
) -> (
    shared_ring::Producer<'static, T, N>,
    shared_ring::Consumer<'static, T, N>,
) {
    let ring: &'static Ring<T, N> = Box::leak(Box::new(Ring::new()));
    let (tx, mut rx) = ring.split().unwrap();
    rx.set_pacing(if paced {
        Pacing::STREAMING
    } else {
        Pacing::Off
    });
    (tx, rx)
}

/// This crate's two ends on a ring of `N` slots, each in its own [`Padded`] box, the consumer
/// paced as [`SharedRing`]'s `PACED` says.
#[allow(clippy::type_complexity)]
pub(crate) fn make_padded_shared<T: Item, const N: usize>(
    paced: bool,
) -> (
    Box<Padded<shared_ring::Producer<'static, T, N>>>,
    Box<Padded<shared_ring::Consumer<'static, T, N>>>,
) {
    let (tx, rx) = split_shared::<T, N>(paced);
    (Box::new(Padded(tx)), Box::new(Padded(rx)))
}

/// rtrb's two ends on a ring of `capacity` slots, each in its own [`Padded`] box.
#[allow(clippy::type_complexity)]
pub(crate) fn make_padded_rtrb<T: Item>(
    capacity: usize,
) -> (
    Box<Padded<rtrb::Producer<T>>>,
    Box<Padded<rtrb::Consumer<T>>>,
) {
    let (tx, rx) = rtrb::RingBuffer::new(capacity);
    (Box::new(Padded(tx)), Box::new(Padded(rx)))
}

/// This crate, `push_silent` (no doorbell decision, like the peers); the consumer paced with
/// `Pacing::STREAMING` (the setting for a consumer that polls in a tight loop, as these loops
/// do) when `PACED`, `Pacing::Off` (the default: every poll of an empty ring reloads the
/// producer's index) otherwise, to show what pacing does.
pub(crate) struct SharedRing<const PACED: bool>;
/// This crate, its consumer set up for polling in a tight loop.
pub(crate) type Shared = SharedRing<true>;
/// This crate with `Pacing::Off`, its default.
pub(crate) type SharedUnpaced = SharedRing<false>;
impl<T: Item, const PACED: bool> Queue<T> for SharedRing<PACED> {
    const NAME: &'static str = if PACED {
        "shared-ring"
    } else {
        "shared-ring pacing off"
    };
    type Tx = shared_ring::Producer<'static, T, CAP>;
    type Rx = shared_ring::Consumer<'static, T, CAP>;
    fn make() -> (Self::Tx, Self::Rx) {
        split_shared(PACED)
    }
    #[inline]
    fn push(tx: &mut Self::Tx, v: T) -> Result<(), T> {
        tx.push_silent(v).map_err(PushError::into_inner)
    }
    #[inline]
    fn pop(rx: &mut Self::Rx) -> Option<T> {
        rx.pop().ok()
    }
}

/// This crate, `push` with a doorbell decision per item (a `SeqCst` fence each).
pub(crate) struct SharedNotify;
impl<T: Item> Queue<T> for SharedNotify {
    const NAME: &'static str = "shared-ring push+notify";
    type Tx = shared_ring::Producer<'static, T, CAP>;
    type Rx = shared_ring::Consumer<'static, T, CAP>;
    fn make() -> (Self::Tx, Self::Rx) {
        split_shared(true)
    }
    #[inline]
    fn push(tx: &mut Self::Tx, v: T) -> Result<(), T> {
        match tx.push(v) {
            Ok(notify) => {
                let _ = black_box(notify);
                Ok(())
            }
            Err(e) => Err(e.into_inner()),
        }
    }
    #[inline]
    fn pop(rx: &mut Self::Rx) -> Option<T> {
        rx.pop().ok()
    }
}

pub(crate) struct Rtrb;
impl<T: Item> Queue<T> for Rtrb {
    const NAME: &'static str = "rtrb";
    type Tx = rtrb::Producer<T>;
    type Rx = rtrb::Consumer<T>;
    fn make() -> (Self::Tx, Self::Rx) {
        rtrb::RingBuffer::new(CAP)
    }
    #[inline]
    fn push(tx: &mut Self::Tx, v: T) -> Result<(), T> {
        tx.push(v).map_err(|rtrb::PushError::Full(v)| v)
    }
    #[inline]
    fn pop(rx: &mut Self::Rx) -> Option<T> {
        rx.pop().ok()
    }
}

/// `heapless::spsc::Queue<T, N>` holds `N - 1` items: `CAP + 1` gives the same capacity as the
/// others.
pub(crate) struct Heapless;
impl<T: Item> Queue<T> for Heapless {
    const NAME: &'static str = "heapless::spsc";
    type Tx = heapless::spsc::Producer<'static, T>;
    type Rx = heapless::spsc::Consumer<'static, T>;
    fn make() -> (Self::Tx, Self::Rx) {
        let queue: &'static mut heapless::spsc::Queue<T, { CAP + 1 }> =
            Box::leak(Box::new(heapless::spsc::Queue::new()));
        queue.split()
    }
    #[inline]
    fn push(tx: &mut Self::Tx, v: T) -> Result<(), T> {
        tx.enqueue(v)
    }
    #[inline]
    fn pop(rx: &mut Self::Rx) -> Option<T> {
        rx.dequeue()
    }
}

pub(crate) struct Crossbeam;
impl<T: Item> Queue<T> for Crossbeam {
    const NAME: &'static str = "crossbeam ArrayQueue";
    type Tx = Arc<crossbeam_queue::ArrayQueue<T>>;
    type Rx = Arc<crossbeam_queue::ArrayQueue<T>>;
    fn make() -> (Self::Tx, Self::Rx) {
        let queue = Arc::new(crossbeam_queue::ArrayQueue::new(CAP));
        (queue.clone(), queue)
    }
    #[inline]
    fn push(tx: &mut Self::Tx, v: T) -> Result<(), T> {
        tx.push(v)
    }
    #[inline]
    fn pop(rx: &mut Self::Rx) -> Option<T> {
        rx.pop()
    }
}

pub(crate) struct Ringbuf;
impl<T: Item> Queue<T> for Ringbuf {
    const NAME: &'static str = "ringbuf";
    type Tx = ringbuf::HeapProd<T>;
    type Rx = ringbuf::HeapCons<T>;
    fn make() -> (Self::Tx, Self::Rx) {
        ringbuf::HeapRb::new(CAP).split()
    }
    #[inline]
    fn push(tx: &mut Self::Tx, v: T) -> Result<(), T> {
        tx.try_push(v)
    }
    #[inline]
    fn pop(rx: &mut Self::Rx) -> Option<T> {
        rx.try_pop()
    }
}

thread_local! {
    static SPINS: Cell<u32> = const { Cell::new(0) };
}

/// Waiting for the other thread, the same for every queue: spin, and yield the core at every
/// 128th failed poll, so that a thread descheduled on a shared 2-core machine does not leave its
/// partner spinning through a whole time slice.
#[inline]
pub(crate) fn wait() {
    SPINS.with(|spins| {
        let n = spins.get() + 1;
        if n >= 128 {
            spins.set(0);
            thread::yield_now();
        } else {
            spins.set(n);
            spin_loop();
        }
    });
}

/// Pins the calling thread to the `index`-th CPU (of those this process may use), if there is
/// one; `PIN=0` in the environment turns pinning off.
///
/// Every contestant's two threads run pinned to two different CPUs: unpinned, the scheduler
/// sometimes leaves both on one CPU for a whole measurement (then the two sides take turns,
/// one time slice or one `yield_now` at a time, and the figure measures the scheduler), more
/// often when other processes load the machine.
pub(crate) fn pin_to(index: usize) {
    if std::env::var_os("PIN").is_some_and(|v| v == "0") {
        return;
    }
    // The CPUs are listed once, before any pinning: a thread inherits its creator's mask, so a
    // list taken later by a pinned thread's child would hold only its parent's CPU.
    static CORES: std::sync::OnceLock<Vec<core_affinity::CoreId>> = std::sync::OnceLock::new();
    let cores = CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    if let Some(&core) = cores.get(index) {
        core_affinity::set_for_current(core);
    }
}

/// Runs `produce` on this thread (pinned to the first CPU) and `consume` on another (pinned to
/// the second), and times both to the end.
pub(crate) fn two_threads(
    produce: impl FnOnce() + Send,
    consume: impl FnOnce() -> u64 + Send,
) -> Duration {
    pin_to(0);
    thread::scope(|s| {
        let consumer = s.spawn(|| {
            pin_to(1);
            consume()
        });
        let start = Instant::now();
        produce();
        black_box(consumer.join().unwrap());
        start.elapsed()
    })
}

/// Opaque steps (`black_box`, about a nanosecond each on the benchmark machine) each side does
/// per item in the single-item loops: a stand-in for filling in a descriptor before a push, or
/// for looking at a request after a pop. Two steps on one side make that side the slower one
/// for every contestant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Work {
    pub(crate) producer: u32,
    pub(crate) consumer: u32,
}

impl Work {
    pub(crate) const NONE: Self = Self {
        producer: 0,
        consumer: 0,
    };
    pub(crate) const BUSY_PRODUCER: Self = Self {
        producer: 2,
        consumer: 0,
    };
    pub(crate) const BUSY_CONSUMER: Self = Self {
        producer: 0,
        consumer: 2,
    };
    /// The three scenarios, with the name of their benchmark group.
    pub(crate) const SCENARIOS: [(&'static str, Self); 3] = [
        ("throughput_single", Self::NONE),
        ("throughput_single_busy_producer", Self::BUSY_PRODUCER),
        ("throughput_single_busy_consumer", Self::BUSY_CONSUMER),
    ];
}

fn steps(n: u32) {
    for step in 0..n {
        black_box(step);
    }
}

/// Single items: the producer pushes `iters` items, the consumer pops them, each side doing
/// its `work` per item.
pub(crate) fn single_with_work<T: Item, Q: Queue<T>>(
    tx: &mut Q::Tx,
    rx: &mut Q::Rx,
    iters: u64,
    work: Work,
) -> Duration {
    two_threads(
        || {
            for i in 0..iters {
                steps(work.producer);
                let mut v = T::make(i);
                while let Err(back) = Q::push(tx, v) {
                    v = back;
                    wait();
                }
            }
        },
        || {
            let mut sum = 0u64;
            let mut n = 0;
            while n < iters {
                match Q::pop(rx) {
                    Some(v) => {
                        steps(work.consumer);
                        sum = sum.wrapping_add(v.key());
                        n += 1;
                    }
                    None => wait(),
                }
            }
            sum
        },
    )
}

/// Batches of up to `batch` items through this crate's chunks.
pub(crate) fn batch_shared<T: Item, const N: usize>(
    tx: &mut shared_ring::Producer<'static, T, N>,
    rx: &mut shared_ring::Consumer<'static, T, N>,
    iters: u64,
    batch: usize,
) -> Duration {
    two_threads(
        || {
            let mut i = 0;
            while i < iters {
                let mut chunk = tx.write_chunk(batch.min((iters - i) as usize)).unwrap();
                let n = chunk.capacity() as u64;
                chunk.fill_from_iter((i..i + n).map(T::make));
                chunk.commit_silent();
                i += n;
                if n == 0 {
                    wait();
                }
            }
        },
        || {
            let mut sum = 0u64;
            let mut n = 0;
            while n < iters {
                let chunk = rx.read_chunk(batch).unwrap();
                if chunk.is_empty() {
                    wait();
                    continue;
                }
                for v in chunk.iter() {
                    sum = sum.wrapping_add(v.key());
                }
                n += chunk.len() as u64;
                chunk.release();
            }
            sum
        },
    )
}

/// Batches of up to `batch` items through rtrb's chunks. A chunk of `n` is asked for directly; rtrb
/// reloads the other index only when its cached copy says too few slots, and then says how many
/// there are (`TooFewSlots(k)`), as this crate's `write_chunk(n)` / `read_chunk(n)` do. (Asking
/// `slots()` first, as this bench did before, reloads the other index on every chunk.)
pub(crate) fn batch_rtrb<T: Item>(
    tx: &mut rtrb::Producer<T>,
    rx: &mut rtrb::Consumer<T>,
    iters: u64,
    batch: usize,
) -> Duration {
    use rtrb::chunks::ChunkError::TooFewSlots;
    two_threads(
        || {
            let mut i = 0;
            while i < iters {
                let want = batch.min((iters - i) as usize);
                let chunk = match tx.write_chunk_uninit(want) {
                    Ok(chunk) => chunk,
                    Err(TooFewSlots(0)) => {
                        wait();
                        continue;
                    }
                    Err(TooFewSlots(k)) => tx.write_chunk_uninit(k).unwrap(),
                };
                let n = chunk.len();
                chunk.fill_from_iter((i..i + n as u64).map(T::make));
                i += n as u64;
            }
        },
        || {
            let mut sum = 0u64;
            let mut n = 0;
            while n < iters {
                let chunk = match rx.read_chunk(batch) {
                    Ok(chunk) => chunk,
                    Err(TooFewSlots(0)) => {
                        wait();
                        continue;
                    }
                    Err(TooFewSlots(k)) => rx.read_chunk(k).unwrap(),
                };
                let (a, b) = chunk.as_slices();
                for v in a.iter().chain(b) {
                    sum = sum.wrapping_add(v.key());
                }
                n += chunk.len() as u64;
                chunk.commit_all();
            }
            sum
        },
    )
}

/// Batches of up to 32 through ringbuf's slice copies.
pub(crate) fn batch_ringbuf<T: Item>(
    tx: &mut ringbuf::HeapProd<T>,
    rx: &mut ringbuf::HeapCons<T>,
    iters: u64,
) -> Duration {
    two_threads(
        || {
            let mut i = 0;
            let mut buf = [T::make(0); BATCH];
            while i < iters {
                let n = BATCH.min((iters - i) as usize);
                for (k, slot) in buf[..n].iter_mut().enumerate() {
                    *slot = T::make(i + k as u64);
                }
                let mut done = 0;
                while done < n {
                    let m = tx.push_slice(&buf[done..n]);
                    if m == 0 {
                        wait();
                    }
                    done += m;
                }
                i += n as u64;
            }
        },
        || {
            let mut sum = 0u64;
            let mut n = 0;
            let mut buf = [T::make(0); BATCH];
            while n < iters {
                let k = rx.pop_slice(&mut buf);
                if k == 0 {
                    wait();
                    continue;
                }
                for v in &buf[..k] {
                    sum = sum.wrapping_add(v.key());
                }
                n += k as u64;
            }
            sum
        },
    )
}

/// The two queues of a ping-pong: there and back.
pub(crate) struct PingPong<T: Item, Q: Queue<T>> {
    ping_tx: Box<Padded<Q::Tx>>,
    ping_rx: Box<Padded<Q::Rx>>,
    pong_tx: Box<Padded<Q::Tx>>,
    pong_rx: Box<Padded<Q::Rx>>,
}

impl<T: Item, Q: Queue<T>> PingPong<T, Q> {
    pub(crate) fn new() -> Self {
        let (ping_tx, ping_rx) = make_padded::<T, Q>();
        let (pong_tx, pong_rx) = make_padded::<T, Q>();
        Self {
            ping_tx,
            ping_rx,
            pong_tx,
            pong_rx,
        }
    }

    /// `iters` round trips: a burst of `burst` items there, and the last one back once all of
    /// them have arrived (`burst == 1` is the classic ping-pong). The time of a burst's round
    /// trip includes how long its last items wait to be seen, which is what consumer pacing
    /// can lengthen.
    pub(crate) fn run(&mut self, iters: u64, burst: u64) -> Duration {
        let (ping_tx, ping_rx) = (&mut self.ping_tx.0, &mut self.ping_rx.0);
        let (pong_tx, pong_rx) = (&mut self.pong_tx.0, &mut self.pong_rx.0);
        pin_to(0);
        thread::scope(|s| {
            s.spawn(|| {
                pin_to(1);
                for _ in 0..iters {
                    let mut last = None;
                    for _ in 0..burst {
                        last = Some(loop {
                            match Q::pop(ping_rx) {
                                Some(v) => break v,
                                None => wait(),
                            }
                        });
                    }
                    let Some(mut v) = last else { continue };
                    while let Err(back) = Q::push(pong_tx, v) {
                        v = back;
                        wait();
                    }
                }
            });
            let start = Instant::now();
            for i in 0..iters {
                for k in 0..burst {
                    let mut v = T::make(i * burst + k);
                    while let Err(back) = Q::push(ping_tx, v) {
                        v = back;
                        wait();
                    }
                }
                loop {
                    match Q::pop(pong_rx) {
                        Some(v) => {
                            black_box(v);
                            break;
                        }
                        None => wait(),
                    }
                }
            }
            start.elapsed()
        })
    }
}
