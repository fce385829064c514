//! The shared-memory layout of a [`Ring`](crate::Ring), version 1.
//!
//! Both address spaces map the same bytes; everything below is at a fixed offset from the start
//! of the ring, which must be aligned to [`ALIGN`] (128) bytes. All multi-byte fields are in the
//! byte order of the host (both peers run on the same machine). Indices are free-running `u32`
//! counters that wrap; the slot of index `i` is `i % N`.
//!
//! | offset | size | field           | written by | meaning                                        |
//! |-------:|-----:|-----------------|------------|------------------------------------------------|
//! |      0 |    4 | `magic`         | creator    | [`MAGIC`], `"SRNG"` little-endian, written last |
//! |      4 |    4 | `version`       | creator    | [`VERSION`]                                    |
//! |      8 |    4 | `capacity`      | creator    | `N`, a power of two                            |
//! |     12 |    4 | `element_size`  | creator    | `size_of::<T>()`                               |
//! |     16 |    4 | `element_align` | creator    | `align_of::<T>()`                              |
//! |     20 |    4 | `slots_offset`  | creator    | offset of slot 0 ([`SLOTS_OFFSET`] = 512)      |
//! |     24 |    4 | `total_size`    | creator    | size of the ring in bytes, padding included    |
//! |     28 |    4 | `claims`        | both       | bit 0: a producer is out, bit 1: a consumer    |
//! |  32..128 |  96 | reserved      | nobody     | zero padding to the end of the header line     |
//! |    128 |    4 | `tail`          | producer   | index of the next slot the producer fills      |
//! |    256 |    4 | `head`          | consumer   | index of the next slot the consumer reads      |
//! |    384 |    4 | `event`         | consumer   | doorbell when the item at this index is published |
//! |    512 | N × size | slots        | producer   | the elements, `#[repr(C)]` array of `T`        |
//!
//! The total size is `512 + N × size_of::<T>()` rounded up to a multiple of 128 (for an element
//! alignment above 128 the slots start at the next multiple of that alignment, and the header's
//! `slots_offset` says so). A peer refuses a ring whose header differs from what it expects
//! (see [`Ring::attach_raw`](crate::Ring::attach_raw)).
//!
//! The protocol: the producer writes slots `tail .. head + N`, then publishes `tail` with a
//! `Release` store; the consumer reads slots `head .. tail` after an `Acquire` load of `tail`,
//! then publishes `head` with a `Release` store. Each side keeps its own index privately and only
//! ever writes it to shared memory, so a peer that overwrites it cannot mislead its owner; each
//! side checks the peer's index on every load (`tail - head` never exceeds `N` and no index ever
//! moves backwards) and stops with [`Corrupted`](crate::Corrupted) otherwise.
//!
//! The wake-up protocol follows virtio's event index: the consumer stores the index whose
//! publication should wake it into `event`, issues a `SeqCst` fence and re-reads `tail`; the
//! producer publishes `tail`, issues a `SeqCst` fence and reads `event`, and rings the doorbell
//! if the items it published since its last decision include index `event`. One of the two
//! always sees the other's store, so no wake-up is lost.
//!
//! Version history: 1, the first layout.

/// The magic number at offset 0: the bytes `"SRNG"` read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"SRNG");
/// The layout version at offset 4.
pub const VERSION: u32 = 1;
/// The alignment of a ring, and the size of one of its lines.
pub const ALIGN: usize = 128;
/// Offset of the header (magic, version, capacity, element size and alignment, slot offset,
/// total size, claims).
pub const HEADER_OFFSET: usize = 0;
/// Offset of the `magic` field.
pub const MAGIC_OFFSET: usize = 0;
/// Offset of the `version` field.
pub const VERSION_OFFSET: usize = 4;
/// Offset of the `capacity` field.
pub const CAPACITY_OFFSET: usize = 8;
/// Offset of the `element_size` field.
pub const ELEMENT_SIZE_OFFSET: usize = 12;
/// Offset of the `element_align` field.
pub const ELEMENT_ALIGN_OFFSET: usize = 16;
/// Offset of the `slots_offset` field.
pub const SLOTS_OFFSET_OFFSET: usize = 20;
/// Offset of the `total_size` field.
pub const TOTAL_SIZE_OFFSET: usize = 24;
/// Offset of the `claims` field.
pub const CLAIMS_OFFSET: usize = 28;
/// Offset of the producer's index, `tail` (a `u32` on its own line).
pub const TAIL_OFFSET: usize = 128;
/// Offset of the consumer's index, `head` (a `u32` on its own line).
pub const HEAD_OFFSET: usize = 256;
/// Offset of the consumer's wake-up index, `event` (a `u32` on its own line).
pub const EVENT_OFFSET: usize = 384;
/// Offset of slot 0 for elements aligned to at most 128 bytes.
pub const SLOTS_OFFSET: usize = 512;

/// The size in bytes of a ring of `capacity` elements of `element_size` bytes (element
/// alignment at most 128).
pub const fn ring_size(element_size: usize, capacity: usize) -> usize {
    (SLOTS_OFFSET + element_size * capacity).next_multiple_of(ALIGN)
}

// The documented offsets hold on every target this crate is built for (the checks in
// `Ring::VALID` run for these instances at compile time).
const _: () = crate::Ring::<u8, 1>::VALID;
const _: () = crate::Ring::<[u64; 8], 1024>::VALID;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::Ring;

    #[test]
    fn sizes_match_the_table() {
        assert_eq!(Ring::<u64, 8>::SIZE, ring_size(8, 8));
        assert_eq!(Ring::<[u64; 8], 1024>::SIZE, ring_size(64, 1024));
        assert_eq!(Ring::<u8, 1>::SIZE, ring_size(1, 1));
        assert_eq!(Ring::<[u8; 3], 4>::SLOTS_OFFSET, SLOTS_OFFSET);
        assert_eq!(MAGIC.to_le_bytes(), *b"SRNG");
    }
}
