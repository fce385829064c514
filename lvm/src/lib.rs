//! ESXi's logical volume manager (LVM) on-disk format, as a `no_std` submit/poll layer.
#![no_std]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod error;
pub mod wire;

pub use error::{LvmError, LvmErrorKind, Structure};
