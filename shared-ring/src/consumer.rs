//! The consumer end: pop single items or chunks, and ask to be woken.

use core::fmt;
use core::ptr;
use core::slice;

use crate::error::{Corrupted, IndexKind, PopError};
use crate::pacing::{Pacer, Pacing};
use crate::ring::{CLAIM_CONSUMER, Ring};
use crate::sync::{Ordering, fence};

/// The answer to [`Consumer::request_wakeup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "sleeping after `Ready` loses items until the next doorbell"]
pub enum Wakeup {
    /// Not enough items yet; the producer will report [`Notify::Doorbell`](crate::Notify) when
    /// it publishes the awaited one, so the consumer may sleep until the doorbell.
    Armed,
    /// Enough items are already there (how many): keep consuming, do not sleep.
    Ready(usize),
}

/// The consuming end of a [`Ring`]. `Send`, not `Clone`: at most one exists per ring.
///
/// It keeps its own index privately and a cached copy of the producer's index, which it reloads
/// only when the ring looks empty. Dropping it gives the end back, so that [`Ring::consumer`]
/// can hand it out again.
///
/// ```compile_fail
/// static RING: shared_ring::Ring<u32, 4> = shared_ring::Ring::new();
/// let (_tx, rx) = RING.split().unwrap();
/// let second_consumer = rx.clone(); // not Clone: there is only ever one consumer
/// ```
///
/// The handle is aligned to 128 bytes: its private index changes with every operation, and
/// must not share a cache line with the other end's handle wherever the two are placed.
#[repr(align(128))]
pub struct Consumer<'a, T: Copy, const N: usize> {
    ring: &'a Ring<T, N>,
    /// The authoritative head: the shared copy is only ever written.
    head: u32,
    /// The producer's tail as last loaded (never ahead of the real one).
    tail_cache: u32,
    poison: Option<Corrupted>,
    pacer: Pacer,
}

impl<'a, T: Copy, const N: usize> Consumer<'a, T, N> {
    pub(crate) fn new(ring: &'a Ring<T, N>) -> Self {
        let head = ring.head.0.load(Ordering::Relaxed);
        let tail = ring.tail.0.load(Ordering::Acquire);
        let mut consumer = Self {
            ring,
            head,
            tail_cache: tail,
            poison: None,
            pacer: Pacer::new(Pacing::Off, N),
        };
        if tail.wrapping_sub(head) > N as u32 {
            consumer.poison(Corrupted {
                index: IndexKind::Tail,
                found: tail,
                low: head,
                high: head.wrapping_add(N as u32),
            });
        }
        consumer
    }

    /// The capacity of the ring, `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The ring this end belongs to.
    pub const fn ring(&self) -> &'a Ring<T, N> {
        self.ring
    }

    /// The corruption this end detected, if any; a poisoned end refuses every operation.
    pub const fn poisoned(&self) -> Option<Corrupted> {
        self.poison
    }

    /// How this end spaces its reloads of the producer's index once it has caught up with a
    /// streaming producer (see [`Pacing`]).
    pub const fn pacing(&self) -> Pacing {
        self.pacer.pacing()
    }

    /// Chooses the pacing of reloads; [`Pacing::Off`] until called. Ends any pause.
    pub fn set_pacing(&mut self, pacing: Pacing) {
        self.pacer = Pacer::new(pacing, N);
    }

    #[cold]
    fn poison(&mut self, corrupted: Corrupted) {
        self.pacer.reset();
        self.poison = Some(corrupted);
        // Look empty forever, so every operation takes the slow path and reports the poison.
        self.tail_cache = self.head;
    }

    /// Reloads the producer's index, checks it, and returns the number of available items.
    fn refresh(&mut self) -> Result<u32, Corrupted> {
        if let Some(corrupted) = self.poison {
            return Err(corrupted);
        }
        let tail = self.ring.tail.0.load(Ordering::Acquire);
        // A correct tail only moves forward, and never more than N past the head.
        let high = self.head.wrapping_add(N as u32);
        if tail.wrapping_sub(self.tail_cache) > high.wrapping_sub(self.tail_cache) {
            let corrupted = Corrupted {
                index: IndexKind::Tail,
                found: tail,
                low: self.tail_cache,
                high,
            };
            self.poison(corrupted);
            return Err(corrupted);
        }
        self.tail_cache = tail;
        Ok(tail.wrapping_sub(self.head))
    }

    /// The reload of `pop` and `read_chunk`, paced (see [`Pacing`]): returns the number of
    /// available items, or 0 without touching shared memory while a pause lasts.
    #[inline(never)]
    fn paced_refresh(&mut self) -> Result<u32, Corrupted> {
        let known = self.tail_cache;
        if self.pacer.skip_poll() {
            return Ok(known.wrapping_sub(self.head));
        }
        let available = self.refresh()?;
        if self.pacer.observe(available) {
            Ok(available)
        } else {
            // Held back for one pause: keep seeing only what was known before the reload.
            self.tail_cache = known;
            Ok(known.wrapping_sub(self.head))
        }
    }

    /// The number of available items, after reloading the producer's index (at once, ending
    /// any pause of [`Pacing`]).
    ///
    /// # Errors
    /// [`Corrupted`] if the producer's index is impossible (or was before).
    pub fn available(&mut self) -> Result<usize, Corrupted> {
        self.pacer.reset();
        self.refresh().map(|n| n as usize)
    }

    /// Takes the oldest item and releases its slot.
    ///
    /// # Errors
    /// [`PopError::Empty`] if no item is visible: the ring is empty, or the consumer caught up
    /// with a streaming producer and is pausing its reloads (at most the bound of its
    /// [`Pacing`] plus one, in calls); [`PopError::Corrupted`] if the producer's index is
    /// impossible.
    #[inline]
    pub fn pop(&mut self) -> Result<T, PopError> {
        if self.head == self.tail_cache && self.paced_refresh()? == 0 {
            return Err(PopError::Empty);
        }
        let (ring, head) = (self.ring, self.head);
        ring.stamp_check(head, 1);
        // SAFETY: `head != tail_cache`, and the tail was checked to be at most N ahead of the
        // head, so slot `head` was published by the producer (its Release store of the tail,
        // our Acquire load) and is not written again until we publish a later head. The index
        // is masked into bounds. `T: Copy`, so reading it out leaves nothing to drop.
        let item = unsafe { ring.slot_ptr(head).read() };
        // Publish first, then update the private copy.
        let head = head.wrapping_add(1);
        ring.head.0.store(head, Ordering::Release);
        self.head = head;
        Ok(item)
    }

    /// Copies up to `out.len()` items into `out`, releases their slots with one index store,
    /// and returns how many.
    ///
    /// # Errors
    /// [`Corrupted`] if the producer's index is impossible.
    pub fn pop_slice(&mut self, out: &mut [T]) -> Result<usize, Corrupted> {
        let chunk = self.read_chunk(out.len())?;
        let (a, b) = chunk.as_slices();
        out[..a.len()].copy_from_slice(a);
        out[a.len()..a.len() + b.len()].copy_from_slice(b);
        let n = chunk.len();
        chunk.release();
        Ok(n)
    }

    /// Borrows up to `max` of the oldest items (fewer if fewer are visible, possibly none, see
    /// [`Consumer::pop`] and [`Pacing`]), to read in place and release with one index store.
    ///
    /// # Errors
    /// [`Corrupted`] if the producer's index is impossible.
    pub fn read_chunk(&mut self, max: usize) -> Result<ReadChunk<'_, 'a, T, N>, Corrupted> {
        let mut available = self.tail_cache.wrapping_sub(self.head);
        if (available as usize) < max {
            available = self.paced_refresh()?;
        }
        let len = (available as usize).min(max) as u32;
        self.ring.stamp_check(self.head, len);
        Ok(ReadChunk {
            start: self.head,
            len,
            consumer: self,
        })
    }

    /// Asks for a doorbell when the ring goes from empty to non-empty, that is, when the
    /// producer publishes the item at the current head. Returns [`Wakeup::Armed`] if the ring
    /// is still empty (sleep until the doorbell), [`Wakeup::Ready`] otherwise.
    ///
    /// # Errors
    /// [`Corrupted`] if the producer's index is impossible.
    pub fn request_wakeup(&mut self) -> Result<Wakeup, Corrupted> {
        self.request_wakeup_after(1)
    }

    /// Asks for a doorbell once at least `count` items are available (clamped to `1..=N`), that
    /// is, when the producer publishes the item at index `head + count - 1`. Returns
    /// [`Wakeup::Armed`] if fewer are available, [`Wakeup::Ready`] otherwise.
    ///
    /// The request stays until the next call: a consumer that does not call again gets at most
    /// one doorbell (the event index is passed once), which is how notifications are suppressed
    /// while it polls.
    ///
    /// # Errors
    /// [`Corrupted`] if the producer's index is impossible.
    pub fn request_wakeup_after(&mut self, count: usize) -> Result<Wakeup, Corrupted> {
        if let Some(corrupted) = self.poison {
            return Err(corrupted);
        }
        // A consumer about to sleep must see every published item: no pause here.
        self.pacer.reset();
        let count = count.clamp(1, N) as u32;
        let event = self.head.wrapping_add(count - 1);
        self.ring.event.0.store(event, Ordering::Relaxed);
        // Pairs with the fence in `Producer::notify`: either the producer sees `event`, or we
        // see its tail below.
        fence(Ordering::SeqCst);
        let available = self.refresh()?;
        if available >= count {
            Ok(Wakeup::Ready(available as usize))
        } else {
            Ok(Wakeup::Armed)
        }
    }
}

impl<T: Copy, const N: usize> Drop for Consumer<'_, T, N> {
    fn drop(&mut self) {
        self.ring.release_claim(CLAIM_CONSUMER);
    }
}

impl<T: Copy, const N: usize> fmt::Debug for Consumer<'_, T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &N)
            .field("head", &self.head)
            .field("tail_cache", &self.tail_cache)
            .field("poison", &self.poison)
            .field("pacing", &self.pacer)
            .finish()
    }
}

/// Items borrowed by [`Consumer::read_chunk`], oldest first, read in place; release them with
/// [`ReadChunk::release`] (one index store). Dropping the chunk releases nothing: the items are
/// read again next time.
pub struct ReadChunk<'c, 'a, T: Copy, const N: usize> {
    consumer: &'c mut Consumer<'a, T, N>,
    start: u32,
    len: u32,
}

impl<T: Copy, const N: usize> ReadChunk<'_, '_, T, N> {
    /// The number of items.
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// `true` if there are none.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The items as two slices, oldest first (the second is non-empty when the items wrap
    /// around the end of the slot array).
    pub fn as_slices(&self) -> (&[T], &[T]) {
        let (first, before_end, after) = Ring::<T, N>::contiguous(self.start, self.len);
        let base = self.consumer.ring.slots_base();
        // SAFETY: the slots `first..first + before_end` and `0..after` are in bounds and hold
        // published items (see `Consumer::pop`); the producer does not write them until they
        // are released, which needs the consumer this chunk borrows mutably, so they stay
        // unchanged for the lifetime of the returned borrow. Slots are `UnsafeCell<MaybeUninit
        // <T>>`, laid out as `T`.
        unsafe {
            (
                slice::from_raw_parts(base.add(first).cast_const(), before_end),
                slice::from_raw_parts(base.cast_const(), after),
            )
        }
    }

    /// The `i`-th oldest item, if `i < len()`.
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= self.len() {
            return None;
        }
        let index = self.start.wrapping_add(i as u32);
        // SAFETY: `index` is among the published, unreleased items (see `as_slices`).
        Some(unsafe { ptr::read(self.consumer.ring.slot_ptr(index)) })
    }

    /// The items, oldest first, by value.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        let (a, b) = self.as_slices();
        a.iter().chain(b).copied()
    }

    /// Releases every item with one index store.
    pub fn release(self) {
        let n = self.len as usize;
        self.release_first(n);
    }

    /// Releases the `n` oldest items (all of them if `n > len()`) with one index store; the
    /// rest are read again next time.
    pub fn release_first(self, n: usize) {
        let n = n.min(self.len as usize) as u32;
        let head = self.start.wrapping_add(n);
        self.consumer.head = head;
        self.consumer.ring.head.0.store(head, Ordering::Release);
    }
}

impl<T: Copy, const N: usize> fmt::Debug for ReadChunk<'_, '_, T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadChunk")
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}
