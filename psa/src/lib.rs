#![cfg_attr(not(feature = "std"), no_std)]
#![doc = include_str!("../README.md")]

pub mod discover;
pub mod hub;
pub mod nmp;
pub mod path;
pub mod plugin;
pub mod sched;
pub mod stats;

pub use discover::{
    Adapter, Claim, ClaimRule, DiscoveredDevice, ScanConfig, ScanError, Target, claim, scan,
};
pub use hub::{HubPort, TransportHub};
pub use nmp::{NmpConfig, NmpDevice, NmpError};
pub use path::{MAX_PATHS, Path, PathId, PathName, PathState};
pub use plugin::{
    Activation, ActivationOutcome, DefaultAa, IoHint, MostRecentlyUsed, Psp, SATP_DATA_MAX, Satp,
    SatpAction, SatpCommand,
};
pub use sched::{SHARES_NORMAL, SchedConfig, Scheduler, WorldId};
pub use stats::{DeviceStats, Esxtop, PathStats};
