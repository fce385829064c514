//! A lock-free single-producer single-consumer ring that lives in shared memory: the channel
//! between a guest driver (the VMM side) and the host's storage stack (the kernel side).
//!
//! - [`Ring<T, N>`]: `N` (a power of two) slots of a `T: Copy`, `#[repr(C)]`, no pointers
//!   inside, a versioned header a peer checks before use, the two indices on separate cache
//!   lines. Made as a `static` ([`Ring::new`] is `const`), in caller-owned storage
//!   ([`Ring::init_in`]), or in a raw shared-memory region ([`Ring::init_raw`] and
//!   [`Ring::attach_raw`], `unsafe`). Its layout is documented in [`layout`].
//! - [`Ring::split`] hands out a [`Producer`] and a [`Consumer`]: `Send`, not `Clone`, one of
//!   each at a time.
//! - Fast paths: each end caches the other's index and reloads it only when the ring looks full
//!   or empty. Chunks ([`Producer::write_chunk`], [`Consumer::read_chunk`], and the slice
//!   helpers) move a burst with one index store.
//! - Consumer poll pacing for a consumer that polls in a tight loop ([`Pacing::STREAMING`],
//!   off by default): once it has caught up with a producer that is still publishing, it
//!   spaces its reloads of the producer's index over a few of its own polls, instead of
//!   pulling the lines the producer is writing away from it item by item, which slows both
//!   sides several times over whenever the consumer is the faster one.
//!   [`Consumer::available`] and [`Consumer::request_wakeup`] always reload.
//! - Notification suppression, virtio event-index style: [`Consumer::request_wakeup`] asks for
//!   a doorbell when the ring becomes non-empty (or [`Consumer::request_wakeup_after`] `n`
//!   items), and [`Producer::push`] / [`WriteChunk::commit`] / [`Producer::notify`] answer
//!   whether to ring it ([`Notify`]). No wake-up is lost (model-checked with loom).
//! - The peer is not trusted: an impossible index read from shared memory is reported as
//!   [`Corrupted`] and poisons the end, never an out-of-bounds access or an endless loop.
//! - [`RingPair`]: the request and completion rings of one adapter.
//!
//! The crate is `no_std` and never allocates. It is the only crate of the workspace with
//! `unsafe` code; every block states why it is sound.
#![cfg_attr(not(test), no_std)]
#![allow(
    unsafe_code,
    reason = "a lock-free ring over shared memory; every block has a SAFETY comment"
)]
#![doc = include_str!("../README.md")]

mod consumer;
mod error;
pub mod layout;
mod pacing;
mod pair;
mod producer;
mod ring;
mod sync;

pub use consumer::{Consumer, ReadChunk, Wakeup};
pub use error::{
    AlreadyClaimed, Corrupted, ErrorKind, IndexKind, LayoutError, PopError, PushError,
};
pub use pacing::Pacing;
pub use pair::{DeviceEnd, DriverEnd, RingPair};
pub use producer::{Notify, Producer, WriteChunk};
pub use ring::Ring;
