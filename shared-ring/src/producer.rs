//! The producer end: push single items or chunks, and decide when the consumer needs a doorbell.

use core::fmt;
use core::ptr;

use crate::error::{Corrupted, IndexKind, PushError};
use crate::ring::{CLAIM_PRODUCER, Ring};
use crate::sync::{Ordering, fence};

/// Whether the consumer must be woken (a doorbell, an interrupt, an eventfd write) for the items
/// just published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "a doorbell that is needed and not rung is a lost wake-up"]
pub enum Notify {
    /// The consumer asked to be woken for one of the items just published: ring the doorbell.
    Doorbell,
    /// The consumer did not ask (it is busy polling, or waits for a later index): no doorbell.
    Suppressed,
}

impl Notify {
    /// `true` for [`Notify::Doorbell`].
    pub const fn is_needed(self) -> bool {
        matches!(self, Self::Doorbell)
    }
}

/// The producing end of a [`Ring`]. `Send`, not `Clone`: at most one exists per ring.
///
/// It keeps its own index privately and a cached copy of the consumer's index, which it reloads
/// only when the ring looks full. Dropping it gives the end back, so that [`Ring::producer`]
/// can hand it out again.
///
/// ```compile_fail
/// static RING: shared_ring::Ring<u32, 4> = shared_ring::Ring::new();
/// let (tx, _rx) = RING.split().unwrap();
/// let second_producer = tx.clone(); // not Clone: there is only ever one producer
/// ```
///
/// The handle is aligned to 128 bytes: its private index changes with every operation, and
/// must not share a cache line with the other end's handle wherever the two are placed.
#[repr(align(128))]
pub struct Producer<'a, T: Copy, const N: usize> {
    ring: &'a Ring<T, N>,
    /// The authoritative tail: the shared copy is only ever written.
    tail: u32,
    /// The consumer's head as last loaded (never ahead of the real one).
    head_cache: u32,
    /// The tail when the producer last decided on a doorbell.
    notified: u32,
    poison: Option<Corrupted>,
}

impl<'a, T: Copy, const N: usize> Producer<'a, T, N> {
    pub(crate) fn new(ring: &'a Ring<T, N>) -> Self {
        let tail = ring.tail.0.load(Ordering::Relaxed);
        let head = ring.head.0.load(Ordering::Acquire);
        let mut producer = Self {
            ring,
            tail,
            head_cache: head,
            notified: tail,
            poison: None,
        };
        if tail.wrapping_sub(head) > N as u32 {
            producer.poison(Corrupted {
                index: IndexKind::Head,
                found: head,
                low: tail.wrapping_sub(N as u32),
                high: tail,
            });
        }
        producer
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

    #[cold]
    fn poison(&mut self, corrupted: Corrupted) {
        self.poison = Some(corrupted);
        // Look full forever, so every operation takes the slow path and reports the poison.
        self.head_cache = self.tail.wrapping_sub(N as u32);
    }

    /// Reloads the consumer's index, checks it, and returns the number of free slots.
    fn refresh(&mut self) -> Result<u32, Corrupted> {
        if let Some(corrupted) = self.poison {
            return Err(corrupted);
        }
        let head = self.ring.head.0.load(Ordering::Acquire);
        // A correct head only moves forward, and never past the tail.
        if head.wrapping_sub(self.head_cache) > self.tail.wrapping_sub(self.head_cache) {
            let corrupted = Corrupted {
                index: IndexKind::Head,
                found: head,
                low: self.head_cache,
                high: self.tail,
            };
            self.poison(corrupted);
            return Err(corrupted);
        }
        self.head_cache = head;
        Ok(N as u32 - self.tail.wrapping_sub(head))
    }

    /// The number of free slots, after reloading the consumer's index.
    ///
    /// # Errors
    /// [`Corrupted`] if the consumer's index is impossible (or was before).
    pub fn free_slots(&mut self) -> Result<usize, Corrupted> {
        self.refresh().map(|free| free as usize)
    }

    /// Publishes one item and decides whether the consumer needs a doorbell (one `SeqCst`
    /// fence, see [`Producer::notify`]).
    ///
    /// # Errors
    /// [`PushError::Full`] if the ring is full, [`PushError::Corrupted`] if the consumer's index
    /// is impossible; the item is handed back either way.
    #[inline]
    pub fn push(&mut self, item: T) -> Result<Notify, PushError<T>> {
        self.push_silent(item)?;
        Ok(self.notify())
    }

    /// Publishes one item without deciding on a doorbell: the fast path for a burst, or for a
    /// consumer that polls. Call [`Producer::notify`] after the burst, before the producer
    /// goes idle, or wake-ups can be lost.
    ///
    /// # Errors
    /// As [`Producer::push`].
    #[inline]
    pub fn push_silent(&mut self, item: T) -> Result<(), PushError<T>> {
        if self.tail.wrapping_sub(self.head_cache) >= N as u32 {
            match self.refresh() {
                Err(corrupted) => return Err(PushError::Corrupted(item, corrupted)),
                Ok(0) => return Err(PushError::Full(item)),
                Ok(_) => {}
            }
        }
        // Work on locals: the slot write goes through a raw pointer, which the compiler cannot
        // prove distinct from `self`, so fields read after it would be reloaded.
        let (ring, tail) = (self.ring, self.tail);
        // SAFETY: `tail - head_cache < N` and the real head is at or after `head_cache`, so
        // slot `tail` is free: the consumer released it (its Release store of head, our Acquire
        // load) or never had it. `slot_ptr` masks the index into bounds, and no other producer
        // exists (claim bit), so nothing else writes or reads this slot now.
        unsafe { ring.slot_ptr(tail).write(item) };
        ring.stamp_written(tail, 1);
        let tail = tail.wrapping_add(1);
        ring.tail.0.store(tail, Ordering::Release);
        self.tail = tail;
        Ok(())
    }

    /// Copies as many items from `items` as there are free slots, publishes them with one
    /// index store, and returns how many were copied. No doorbell decision: call
    /// [`Producer::notify`].
    ///
    /// # Errors
    /// [`Corrupted`] if the consumer's index is impossible.
    pub fn push_slice(&mut self, items: &[T]) -> Result<usize, Corrupted> {
        let mut chunk = self.write_chunk(items.len())?;
        let n = chunk.extend_from_slice(items);
        chunk.commit_silent();
        Ok(n)
    }

    /// Reserves up to `max` free slots (fewer if fewer are free, possibly none) to fill and
    /// publish with one index store.
    ///
    /// # Errors
    /// [`Corrupted`] if the consumer's index is impossible.
    pub fn write_chunk(&mut self, max: usize) -> Result<WriteChunk<'_, 'a, T, N>, Corrupted> {
        let mut free = N as u32 - self.tail.wrapping_sub(self.head_cache);
        if (free as usize) < max {
            free = self.refresh()?;
        }
        let len = (free as usize).min(max) as u32;
        Ok(WriteChunk {
            start: self.tail,
            len,
            written: 0,
            producer: self,
        })
    }

    /// Decides whether the consumer needs a doorbell for the items published since the last
    /// decision, virtio style: yes if their indices include the consumer's wake-up index.
    ///
    /// Costs one `SeqCst` fence when anything was published since the last decision (pairing
    /// with the fence in [`Consumer::request_wakeup`](crate::Consumer::request_wakeup): one of
    /// the two sides always sees the other's store, so no wake-up is lost), nothing otherwise.
    pub fn notify(&mut self) -> Notify {
        let old = self.notified;
        let new = self.tail;
        if old == new {
            return Notify::Suppressed;
        }
        self.notified = new;
        fence(Ordering::SeqCst);
        let event = self.ring.event.0.load(Ordering::Relaxed);
        // `event` is in `old..new` (wrapping): virtio's vring_need_event.
        if new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old) {
            Notify::Doorbell
        } else {
            Notify::Suppressed
        }
    }
}

impl<T: Copy, const N: usize> Drop for Producer<'_, T, N> {
    fn drop(&mut self) {
        self.ring.release_claim(CLAIM_PRODUCER);
    }
}

impl<T: Copy, const N: usize> fmt::Debug for Producer<'_, T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &N)
            .field("tail", &self.tail)
            .field("head_cache", &self.head_cache)
            .field("poison", &self.poison)
            .finish()
    }
}

/// Slots reserved by [`Producer::write_chunk`]: fill them in order, then publish the filled
/// ones with [`WriteChunk::commit`] (one index store). Dropping the chunk publishes nothing.
pub struct WriteChunk<'p, 'a, T: Copy, const N: usize> {
    producer: &'p mut Producer<'a, T, N>,
    start: u32,
    len: u32,
    written: u32,
}

impl<T: Copy, const N: usize> WriteChunk<'_, '_, T, N> {
    /// The number of reserved slots.
    pub const fn capacity(&self) -> usize {
        self.len as usize
    }

    /// The number of slots filled so far.
    pub const fn len(&self) -> usize {
        self.written as usize
    }

    /// `true` if no slot has been filled yet.
    pub const fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// The number of reserved slots not filled yet.
    pub const fn remaining(&self) -> usize {
        (self.len - self.written) as usize
    }

    /// Fills the next reserved slot.
    ///
    /// # Errors
    /// The item is handed back if every reserved slot is filled.
    #[inline]
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.written == self.len {
            return Err(item);
        }
        let index = self.start.wrapping_add(self.written);
        // SAFETY: `index` is among the reserved slots, which were free when reserved and stay
        // free (the consumer never reads past the published tail, which is `start`); the
        // producer is mutably borrowed, so nothing else writes them. `slot_ptr` masks the index.
        unsafe { self.producer.ring.slot_ptr(index).write(item) };
        self.written += 1;
        Ok(())
    }

    /// Fills reserved slots from `items`, as many as fit, and returns how many.
    pub fn extend_from_slice(&mut self, items: &[T]) -> usize {
        let n = items.len().min(self.remaining());
        let start = self.start.wrapping_add(self.written);
        let (first, before_end, after) = Ring::<T, N>::contiguous(start, n as u32);
        let base = self.producer.ring.slots_base();
        // SAFETY: the destination slots `first..first + before_end` and `0..after` are in
        // bounds (`contiguous` splits at the end of the array) and are reserved, free slots (see
        // `push`); the source is a distinct, initialised slice of at least `n` items.
        unsafe {
            ptr::copy_nonoverlapping(items.as_ptr(), base.add(first), before_end);
            ptr::copy_nonoverlapping(items.as_ptr().add(before_end), base, after);
        }
        self.written += n as u32;
        n
    }

    /// Fills reserved slots from `items`, in order, until either runs out, and returns how
    /// many were filled. Writes each contiguous run of slots in a tight loop.
    pub fn fill_from_iter<I: IntoIterator<Item = T>>(&mut self, items: I) -> usize {
        let start = self.start.wrapping_add(self.written);
        let (first, before_end, after) = Ring::<T, N>::contiguous(start, self.len - self.written);
        let base = self.producer.ring.slots_base();
        let mut items = items.into_iter();
        let mut filled = 0;
        'runs: for (position, count) in [(first, before_end), (0, after)] {
            for k in 0..count {
                let Some(item) = items.next() else {
                    break 'runs;
                };
                // SAFETY: slot `position + k` is in bounds (`contiguous` splits the reserved
                // range at the end of the array) and is a reserved, free slot (see `push`).
                unsafe { base.add(position + k).write(item) };
                filled += 1;
            }
        }
        self.written += filled as u32;
        filled
    }

    fn publish(&mut self) {
        self.producer.ring.stamp_written(self.start, self.written);
        let tail = self.start.wrapping_add(self.written);
        self.producer.tail = tail;
        self.producer.ring.tail.0.store(tail, Ordering::Release);
    }

    /// Publishes the filled slots with one index store and decides on a doorbell (see
    /// [`Producer::notify`]).
    pub fn commit(mut self) -> Notify {
        self.publish();
        self.producer.notify()
    }

    /// Publishes the filled slots with one index store, without a doorbell decision.
    pub fn commit_silent(mut self) {
        self.publish();
    }
}

impl<T: Copy, const N: usize> fmt::Debug for WriteChunk<'_, '_, T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteChunk")
            .field("start", &self.start)
            .field("len", &self.len)
            .field("written", &self.written)
            .finish()
    }
}
