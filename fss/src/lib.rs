//! The file system switch (FSS): the [`FileSystem`] trait every file system implements, and
//! [`Switch`], a fixed-capacity mount table that resolves `/vmfs/volumes/<label>/...` and
//! `/vmfs/volumes/<uuid>/...` to the file system that holds them.
//!
//! Slow paths (lookup, stat, readdir, readlink, open) are synchronous: a file system may drive
//! its device until its metadata arrives. File data moves the way it does in every layer of the
//! stack: a [`FileRequest`] carrying a scatter-gather list is submitted, never blocks, and
//! completes exactly once through `poll`.
//!
//! The crate is `no_std` and never allocates.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]

mod error;
mod switch;
mod types;

pub use error::{FsError, FsErrorKind};
pub use switch::{MAX_MOUNTS_DEFAULT, MountId, Resolved, Switch, VOLUMES_PREFIX};
pub use types::{
    DirEntry, FileHandle, FileKind, FileRequest, FileSystem, MAX_NAME_BYTES, MAX_PATH_BYTES,
    NodeId, Stat, split_path,
};
