//! The atomics the ring uses: `core`'s normally, loom's under `--cfg loom` so that the model
//! tests explore every interleaving and every weak-memory outcome of the index protocol.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, Ordering, fence};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, Ordering, fence};
