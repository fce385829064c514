//! VMDK virtual disks for a `no_std` storage path.
//!
//! - [`descriptor`]: descriptor files, parsed and emitted byte-exact.
//! - [`sparse`]: the hosted sparse header (`KDMV`), grain directory and table entries,
//!   stream-optimized markers, and the ESX delta header (`COWD`).
//! - [`SparseExtent`]: one sparse extent as a block device over the device holding its file;
//!   [`FlatExtent`]: the same for a flat extent (a window of the device).
//! - [`VirtualDisk`]: a descriptor's extents and a snapshot chain, as one block device.
//!
//! The crate is `no_std`, never allocates, and checks every value it reads from a file.
#![cfg_attr(not(feature = "std"), no_std)]
#![doc = include_str!("../README.md")]

pub mod descriptor;
pub mod disk;
mod error;
pub mod extent;
pub mod flat;
#[cfg(feature = "std")]
mod source;
pub mod sparse;

pub use descriptor::{
    Access, CreateType, Descriptor, Extent, ExtentSpec, ExtentType, NewDescriptor, write_descriptor,
};
pub use disk::{
    DeltaFormat, ExtentInfo, ExtentKind, ExtentSource, LayerInfo, OpenOptions, VirtualDisk,
};
pub use error::{Error, ErrorKind, Result};
pub use extent::{
    CheckReport, MetaRegion, SparseExtent, format_cowd, format_sparse, meta_bytes_needed,
};
pub use flat::FlatExtent;
#[cfg(feature = "std")]
pub use source::{DirSource, MemDisk, MemFile, MemSource};
pub use sparse::{CowdHeader, Grain, SparseHeader};
