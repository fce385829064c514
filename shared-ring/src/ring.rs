//! The ring itself: its shared-memory layout, its constructors and `split`.

use core::cell::UnsafeCell;
use core::fmt;
use core::mem::{MaybeUninit, align_of, offset_of, size_of};

use crate::consumer::Consumer;
use crate::error::{AlreadyClaimed, LayoutError};
use crate::layout;
use crate::producer::Producer;
use crate::sync::{AtomicU32, Ordering};

/// One cache line (two on CPUs that prefetch adjacent lines), so that the producer's and the
/// consumer's indices never share one.
#[repr(C, align(128))]
pub(crate) struct Line<T>(pub(crate) T);

/// The header at offset 0 of every ring. All fields are atomics, since the peer (possibly
/// untrusted) reads them from shared memory; `magic` is written last, with `Release`, so a peer
/// that synchronises with that store sees the whole header.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) magic: AtomicU32,
    pub(crate) version: AtomicU32,
    pub(crate) capacity: AtomicU32,
    pub(crate) element_size: AtomicU32,
    pub(crate) element_align: AtomicU32,
    pub(crate) slots_offset: AtomicU32,
    pub(crate) total_size: AtomicU32,
    /// Bit 0: a `Producer` is out; bit 1: a `Consumer` is out.
    pub(crate) claims: AtomicU32,
}

pub(crate) const CLAIM_PRODUCER: u32 = 1;
pub(crate) const CLAIM_CONSUMER: u32 = 2;

/// A single-producer single-consumer ring of `N` elements of type `T`, laid out to live in memory
/// shared by two address spaces.
///
/// `N` must be a power of two between 1 and 2^31 (checked at compile time). The layout is
/// `#[repr(C)]`, holds no pointers, and is described in [`layout`]: a 128-byte header, the
/// producer's index, the consumer's index and the consumer's wake-up index each on their own
/// 128-byte line, then the `N` slots.
///
/// Three ways to make one:
/// - [`Ring::new`], a `const fn`, for a `static` (or any value the caller owns);
/// - [`Ring::init_in`], in place in storage the caller owns (no copy of a large ring through
///   the stack);
/// - [`Ring::init_raw`] / [`Ring::attach_raw`] (`unsafe`) in a raw shared-memory region, by
///   the creator and by the peer.
///
/// Then [`Ring::split`] (or [`Ring::producer`] and [`Ring::consumer`] separately, one per
/// address space) hands out the two ends. Each end can be out only once at a time.
///
/// ```
/// use shared_ring::{Notify, Ring};
///
/// static RING: Ring<u64, 8> = Ring::new();
/// let (mut tx, mut rx) = RING.split().unwrap();
/// assert_eq!(tx.push(7), Ok(Notify::Doorbell)); // the consumer asked for nothing yet: the
///                                               // initial wake-up index is the first item
/// assert_eq!(rx.pop(), Ok(7));
/// ```
#[repr(C)]
pub struct Ring<T: Copy, const N: usize> {
    pub(crate) header: Line<Header>,
    /// Written by the producer only: the index of the next slot it will fill.
    pub(crate) tail: Line<AtomicU32>,
    /// Written by the consumer only: the index of the next slot it will read.
    pub(crate) head: Line<AtomicU32>,
    /// Written by the consumer only: the producer rings the doorbell when it publishes the
    /// item at this index (virtio's `used_event`).
    pub(crate) event: Line<AtomicU32>,
    slots: [UnsafeCell<MaybeUninit<T>>; N],
    /// Model-checking only: a per-slot stamp written and read with `Relaxed`, so that loom
    /// reports a slot read that does not happen after the slot's write.
    #[cfg(loom)]
    stamps: [AtomicU32; N],
}

// SAFETY: the slots are the only non-`Sync` part. They are accessed only through a `Producer`
// (slots between `tail` and `head + N`) and a `Consumer` (slots between `head` and `tail`), at
// most one of each exists at a time (the claim bits), and the index protocol (Release stores
// and Acquire loads of `tail` and `head`) orders every slot write before the read of that slot
// and every read before the slot's next write. Items move between threads, hence `T: Send`.
unsafe impl<T: Copy + Send, const N: usize> Sync for Ring<T, N> {}

impl<T: Copy, const N: usize> Ring<T, N> {
    /// The capacity, `N`.
    pub const CAPACITY: usize = N;

    /// The size in bytes of the ring, header included; a shared region must be at least this
    /// long.
    pub const SIZE: usize = size_of::<Self>();

    /// The byte offset of slot 0 from the start of the ring.
    pub const SLOTS_OFFSET: usize = offset_of!(Self, slots);

    const MASK: u32 = (N as u32).wrapping_sub(1);

    /// Compile-time checks of the parameters; evaluated by every constructor.
    pub(crate) const VALID: () = {
        assert!(
            N.is_power_of_two(),
            "shared-ring capacity must be a power of two"
        );
        assert!(N <= 1 << 31, "shared-ring capacity must be at most 2^31");
        assert!(
            size_of::<T>() <= u32::MAX as usize,
            "shared-ring element too large"
        );
        assert!(
            size_of::<Self>() <= u32::MAX as usize,
            "shared ring larger than 4 GiB"
        );
        assert!(align_of::<Self>() == layout::ALIGN);
        assert!(offset_of!(Self, header) == layout::HEADER_OFFSET);
        assert!(offset_of!(Self, tail) == layout::TAIL_OFFSET);
        assert!(offset_of!(Self, head) == layout::HEAD_OFFSET);
        assert!(offset_of!(Self, event) == layout::EVENT_OFFSET);
        assert!(align_of::<T>() > layout::ALIGN || offset_of!(Self, slots) == layout::SLOTS_OFFSET);
    };

    /// A new, empty ring, usable as the initialiser of a `static`.
    ///
    /// A large ring is better made in place with [`Ring::init_in`].
    #[cfg(not(loom))]
    #[must_use]
    pub const fn new() -> Self {
        let () = Self::VALID;
        Self {
            header: Line(Header {
                magic: AtomicU32::new(layout::MAGIC),
                version: AtomicU32::new(layout::VERSION),
                capacity: AtomicU32::new(N as u32),
                element_size: AtomicU32::new(size_of::<T>() as u32),
                element_align: AtomicU32::new(align_of::<T>() as u32),
                slots_offset: AtomicU32::new(Self::SLOTS_OFFSET as u32),
                total_size: AtomicU32::new(Self::SIZE as u32),
                claims: AtomicU32::new(0),
            }),
            tail: Line(AtomicU32::new(0)),
            head: Line(AtomicU32::new(0)),
            event: Line(AtomicU32::new(0)),
            slots: [const { UnsafeCell::new(MaybeUninit::uninit()) }; N],
        }
    }

    /// A new, empty ring (loom build: loom's atomics cannot be made in a `const fn`).
    #[cfg(loom)]
    #[must_use]
    pub fn new() -> Self {
        let () = Self::VALID;
        let mut storage = MaybeUninit::uninit();
        Self::init_in(&mut storage);
        // SAFETY: `init_in` initialised every field (the slots are `MaybeUninit`).
        unsafe { storage.assume_init() }
    }

    /// Initialises an empty ring in storage the caller owns and returns it.
    pub fn init_in(storage: &mut MaybeUninit<Self>) -> &mut Self {
        let () = Self::VALID;
        let ptr = storage.as_mut_ptr();
        // SAFETY: `ptr` comes from a `&mut MaybeUninit<Self>`, so it is valid for writes of a
        // `Self`, aligned, and not aliased for the duration of the borrow.
        unsafe { Self::write_fields(ptr) };
        // SAFETY: `write_fields` initialised every field but the slots, which are
        // `MaybeUninit`, so the value is a valid `Self`; the borrow is inherited from `storage`.
        unsafe { &mut *ptr }
    }

    /// Writes every field of an empty ring at `ptr`, the magic number last.
    ///
    /// # Safety
    /// `ptr` must be aligned and valid for writes of a `Self`, and nothing else may access the
    /// memory during the call.
    unsafe fn write_fields(ptr: *mut Self) {
        // SAFETY: the caller guarantees `ptr` is valid and aligned for a `Self`; `&raw mut`
        // takes field addresses without creating references to uninitialised memory, and each
        // write initialises one field.
        unsafe {
            let header = &raw mut (*ptr).header.0;
            (&raw mut (*header).magic).write(AtomicU32::new(0));
            (&raw mut (*header).version).write(AtomicU32::new(layout::VERSION));
            (&raw mut (*header).capacity).write(AtomicU32::new(N as u32));
            (&raw mut (*header).element_size).write(AtomicU32::new(size_of::<T>() as u32));
            (&raw mut (*header).element_align).write(AtomicU32::new(align_of::<T>() as u32));
            (&raw mut (*header).slots_offset).write(AtomicU32::new(Self::SLOTS_OFFSET as u32));
            (&raw mut (*header).total_size).write(AtomicU32::new(Self::SIZE as u32));
            (&raw mut (*header).claims).write(AtomicU32::new(0));
            (&raw mut (*ptr).tail).write(Line(AtomicU32::new(0)));
            (&raw mut (*ptr).head).write(Line(AtomicU32::new(0)));
            (&raw mut (*ptr).event).write(Line(AtomicU32::new(0)));
            #[cfg(loom)]
            (&raw mut (*ptr).stamps).write(core::array::from_fn(|_| AtomicU32::new(u32::MAX)));
            (*header).magic.store(layout::MAGIC, Ordering::Release);
        }
    }

    /// Checks that `len` bytes at `region` can hold this ring.
    fn check_region(region: *const u8, len: usize) -> Result<(), LayoutError> {
        if len < Self::SIZE {
            return Err(LayoutError::TooSmall {
                needed: Self::SIZE,
                len,
            });
        }
        if !(region as usize).is_multiple_of(align_of::<Self>()) || region.is_null() {
            return Err(LayoutError::Misaligned);
        }
        Ok(())
    }

    /// Creates an empty ring in a raw region, typically shared memory, and returns it. The
    /// peer then calls [`Ring::attach_raw`] on its own mapping of the region.
    ///
    /// # Errors
    /// [`LayoutError::TooSmall`] or [`LayoutError::Misaligned`] if the region cannot hold the
    /// ring ([`Ring::SIZE`] bytes aligned to [`layout::ALIGN`]); nothing is written then.
    ///
    /// # Safety
    /// - `region` must be valid for reads and writes of `len` bytes for the whole lifetime
    ///   `'a`, and must not be unmapped or reused while the ring or any end taken from it lives.
    /// - During this call, nothing else may access the region: the peer attaches only after
    ///   the creator tells it (by any means that orders the two, such as starting the peer
    ///   process or a message) that the ring is ready.
    /// - Afterwards the region may be accessed only through this crate: the ends handed out
    ///   by this ring and at most one other ring attached to the same region (in this or
    ///   another address space), each of which claims the end it uses, so that at most one
    ///   producer and one consumer exist in total.
    /// - If the peer is not trusted, it may still write anything anywhere in the region: the
    ///   ring then detects impossible indices (see [`Corrupted`](crate::Corrupted)) and never
    ///   reads or writes outside the region, but items are copied out as they are found, so
    ///   `T` must be a type for which every bit pattern is a valid value (integers, arrays and
    ///   `repr(C)` structs of integers), and a torn or wrong item is possible.
    pub unsafe fn init_raw<'a>(region: *mut u8, len: usize) -> Result<&'a Self, LayoutError> {
        let () = Self::VALID;
        Self::check_region(region, len)?;
        let ptr = region.cast::<Self>();
        // SAFETY: the region is large enough and aligned (checked above) and valid for writes
        // with no other access (the caller's contract).
        unsafe { Self::write_fields(ptr) };
        // SAFETY: every field is initialised, the slots are `MaybeUninit`; from now on the
        // region is accessed only through atomics and the claimed ends (caller's contract).
        Ok(unsafe { &*ptr })
    }

    /// Attaches to a ring that [`Ring::init_raw`] created in a raw region (usually by another
    /// process, in its own mapping), after checking that its header describes exactly this
    /// ring type: magic number, [`layout::VERSION`], capacity, element size and alignment, slot
    /// offset and total size.
    ///
    /// # Errors
    /// A [`LayoutError`] naming the first mismatch; the ring is not used then.
    ///
    /// # Safety
    /// The same contract as [`Ring::init_raw`], except that the region is already initialised
    /// by the peer, and that initialisation happened before this call (see [`Ring::init_raw`]).
    /// A region whose header does not match is refused, so a foreign region is safe to try as
    /// long as it is readable and nobody writes it concurrently with non-atomic writes.
    pub unsafe fn attach_raw<'a>(region: *const u8, len: usize) -> Result<&'a Self, LayoutError> {
        let () = Self::VALID;
        Self::check_region(region, len)?;
        // SAFETY: the region is large enough, aligned and readable for `'a` (caller's
        // contract); all of `Self` but the slots is atomics, and the slots are `MaybeUninit`
        // behind `UnsafeCell`, so any bytes form a valid `Self` and shared access is fine.
        let ring = unsafe { &*region.cast::<Self>() };
        ring.validate()?;
        Ok(ring)
    }

    /// Checks the header against this ring type (done by [`Ring::attach_raw`]).
    ///
    /// # Errors
    /// A [`LayoutError`] naming the first mismatch.
    pub fn validate(&self) -> Result<(), LayoutError> {
        let h = &self.header.0;
        let magic = h.magic.load(Ordering::Acquire);
        if magic != layout::MAGIC {
            return Err(LayoutError::BadMagic(magic));
        }
        let version = h.version.load(Ordering::Relaxed);
        if version != layout::VERSION {
            return Err(LayoutError::Version(version));
        }
        let capacity = h.capacity.load(Ordering::Relaxed);
        if capacity as usize != N {
            return Err(LayoutError::Capacity(capacity));
        }
        let size = h.element_size.load(Ordering::Relaxed);
        if size as usize != size_of::<T>() {
            return Err(LayoutError::ElementSize(size));
        }
        let align = h.element_align.load(Ordering::Relaxed);
        if align as usize != align_of::<T>() {
            return Err(LayoutError::ElementAlign(align));
        }
        if h.slots_offset.load(Ordering::Relaxed) as usize != Self::SLOTS_OFFSET
            || h.total_size.load(Ordering::Relaxed) as usize != Self::SIZE
        {
            return Err(LayoutError::Geometry);
        }
        Ok(())
    }

    /// The capacity, `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Hands out both ends.
    ///
    /// # Errors
    /// [`AlreadyClaimed`] if either end is already out; then neither is handed out.
    pub fn split(&self) -> Result<(Producer<'_, T, N>, Consumer<'_, T, N>), AlreadyClaimed> {
        let both = CLAIM_PRODUCER | CLAIM_CONSUMER;
        let prev = self.header.0.claims.fetch_or(both, Ordering::AcqRel);
        if prev & both != 0 {
            // Give back only the bits this call set.
            self.header
                .0
                .claims
                .fetch_and(!(both & !prev), Ordering::AcqRel);
            return Err(AlreadyClaimed);
        }
        Ok((Producer::new(self), Consumer::new(self)))
    }

    /// Hands out the producer end alone (for example in the address space that submits).
    ///
    /// # Errors
    /// [`AlreadyClaimed`] if a producer is already out.
    pub fn producer(&self) -> Result<Producer<'_, T, N>, AlreadyClaimed> {
        let prev = self
            .header
            .0
            .claims
            .fetch_or(CLAIM_PRODUCER, Ordering::AcqRel);
        if prev & CLAIM_PRODUCER != 0 {
            return Err(AlreadyClaimed);
        }
        Ok(Producer::new(self))
    }

    /// Hands out the consumer end alone.
    ///
    /// # Errors
    /// [`AlreadyClaimed`] if a consumer is already out.
    pub fn consumer(&self) -> Result<Consumer<'_, T, N>, AlreadyClaimed> {
        let prev = self
            .header
            .0
            .claims
            .fetch_or(CLAIM_CONSUMER, Ordering::AcqRel);
        if prev & CLAIM_CONSUMER != 0 {
            return Err(AlreadyClaimed);
        }
        Ok(Consumer::new(self))
    }

    pub(crate) fn release_claim(&self, bit: u32) {
        self.header.0.claims.fetch_and(!bit, Ordering::AcqRel);
    }

    /// A pointer to the slot of free-running index `index`. Always in bounds: the index is
    /// masked with `N - 1`.
    #[inline(always)]
    pub(crate) fn slot_ptr(&self, index: u32) -> *mut T {
        self.slots[(index & Self::MASK) as usize].get().cast::<T>()
    }

    /// For `len` slots from free-running index `start` (`len <= N`): the position of the first
    /// slot and how many slots run before the end of the array (the rest wraps to slot 0).
    #[inline(always)]
    pub(crate) fn contiguous(start: u32, len: u32) -> (usize, usize, usize) {
        let first = (start & Self::MASK) as usize;
        let len = len as usize;
        let before_end = (N - first).min(len);
        (first, before_end, len - before_end)
    }

    /// A pointer to slot 0, with provenance over the whole slot array.
    #[inline(always)]
    pub(crate) fn slots_base(&self) -> *mut T {
        UnsafeCell::raw_get(self.slots.as_ptr()).cast::<T>()
    }

    /// Model checking: marks slots `start..start + len` as written.
    #[inline(always)]
    pub(crate) fn stamp_written(&self, start: u32, len: u32) {
        #[cfg(loom)]
        for k in 0..len {
            let i = start.wrapping_add(k);
            self.stamps[(i & Self::MASK) as usize].store(i, Ordering::Relaxed);
        }
        #[cfg(not(loom))]
        let _ = (start, len);
    }

    /// Model checking: asserts that the writes of slots `start..start + len` are visible.
    #[inline(always)]
    pub(crate) fn stamp_check(&self, start: u32, len: u32) {
        #[cfg(loom)]
        for k in 0..len {
            let i = start.wrapping_add(k);
            let seen = self.stamps[(i & Self::MASK) as usize].load(Ordering::Relaxed);
            assert_eq!(seen, i, "slot read before its write was visible");
        }
        #[cfg(not(loom))]
        let _ = (start, len);
    }
}

#[cfg(not(loom))]
impl<T: Copy, const N: usize> Default for Ring<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy, const N: usize> fmt::Debug for Ring<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &N)
            .field("tail", &self.tail.0.load(Ordering::Relaxed))
            .field("head", &self.head.0.load(Ordering::Relaxed))
            .field("event", &self.event.0.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
