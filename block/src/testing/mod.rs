//! Test doubles that wrap a real [`BlockDevice`](crate::BlockDevice): a seeded fault injector and
//! an exactly-once completion checker. Enabled by the `test-utils` feature.

mod checker;
mod fault;

pub use checker::{ExactlyOnce, Violation};
pub use fault::{FaultConfig, FaultInjector, FaultStats};
