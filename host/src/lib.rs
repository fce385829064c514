//! An ESXi-like host assembled from the storage-path crates.
//!
//! It holds the deterministic workload simulator behind `host demo` (virtual machines issue
//! verified I/O through the stack in simulated time, with seeded fault injection, and the run
//! reports esxtop-style statistics), and the inspection commands `host vmfs`, `host lvm`
//! and `host vmdk` over disk images.

#![doc = include_str!("../README.md")]

pub mod demo;
pub mod lvm_cli;
pub mod plugins;
pub mod vmdk_cli;
pub mod vmfs_cli;
pub mod volumes;
