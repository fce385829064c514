//! An ESXi-like host assembled from the storage-path crates.
//!
//! Today it holds the deterministic workload simulator behind `host demo`: virtual machines
//! issue verified I/O through the stack in simulated time, with seeded fault injection, and the
//! run reports esxtop-style statistics. Layers join the stack as their crates land.

#![doc = include_str!("../README.md")]

pub mod demo;
pub mod vmfs_cli;
