//! The I/O vocabulary every layer of the storage path shares.
//!
//! - Addresses and identifiers with checked arithmetic: [`Lba`], [`BlockCount`], [`Tag`],
//!   [`MemAddr`], and time as a value, [`Instant`].
//! - Scatter-gather lists of fixed capacity, [`SgList`], split and sliced without copying data.
//! - The address space requests point into, [`Memory`], with a bounds-checked implementation
//!   over borrowed regions, [`MemoryRegions`].
//! - Requests and completions: [`BlockRequest`], [`Operation`], [`Completion`], [`BlockError`]
//!   with its [`ErrorKind`].
//! - The submit/poll [`BlockDevice`] trait and [`RamDisk`], a device over a borrowed buffer.
//! - [`run_to_completion`] for slow paths that wait for one request.
//! - With `test-utils`: [`testing::FaultInjector`] and [`testing::ExactlyOnce`].
//! - With `std`: [`FileDisk`], a device over a host file.
//!
//! The crate is `no_std` and never allocates.
#![cfg_attr(not(feature = "std"), no_std)]
#![doc = include_str!("../README.md")]

mod addr;
mod device;
mod drive;
mod memory;
mod ramdisk;
mod request;
mod sg;

#[cfg(feature = "std")]
mod file;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use addr::{BlockCount, Instant, Lba, MemAddr, Tag};
pub use device::{BlockDevice, DeviceFeatures, Geometry, SubmitError, SubmitErrorKind};
pub use drive::{DriveError, Driven, run_to_completion};
#[cfg(feature = "std")]
pub use file::FileDisk;
pub use memory::{Memory, MemoryError, MemoryRegions, gather, scatter};
pub use ramdisk::{RamDisk, RamDiskError};
pub use request::{
    BlockError, BlockRequest, Completion, DEFAULT_SG_CAPACITY, ErrorKind, Operation, RequestFlags,
};
pub use sg::{Segment, SgError, SgList};
