//! Paths: names, states and statistics.

use core::fmt;

use scsi::{AccessState, Nexus};

use crate::stats::PathStats;

/// Paths a device can have (a `u32` bit mask tracks which paths an I/O has tried).
pub const MAX_PATHS: usize = 32;

/// The index of a path in its device's path table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PathId(pub u16);

/// A runtime path name, `vmhbaA:C0:Tn:Ln`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PathName {
    /// The adapter number (`vmhbaA`).
    pub adapter: u16,
    /// The channel.
    pub channel: u16,
    /// The target number on the adapter.
    pub target: u16,
    /// The LUN.
    pub lun: u64,
}

impl fmt::Display for PathName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vmhba{}:C{}:T{}:L{}",
            self.adapter, self.channel, self.target, self.lun
        )
    }
}

/// The state of a path, as `esxcli storage nmp path list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PathState {
    /// Active (and, for ALUA, optimized).
    Active,
    /// Active but non-optimized (ALUA).
    ActiveUnoptimized,
    /// Standby: reachable, but I/O is refused until the path group is activated.
    Standby,
    /// Unavailable (ALUA).
    Unavailable,
    /// In an ALUA transition.
    Transitioning,
    /// Dead: the transport does not reach the LUN through this path.
    Dead,
}

impl PathState {
    /// Whether I/O may be sent on the path.
    pub const fn is_usable(self) -> bool {
        matches!(self, PathState::Active | PathState::ActiveUnoptimized)
    }

    /// The path state of an ALUA access state.
    pub const fn from_access_state(state: AccessState) -> Self {
        match state {
            AccessState::ActiveOptimized => PathState::Active,
            AccessState::ActiveNonOptimized => PathState::ActiveUnoptimized,
            AccessState::Standby => PathState::Standby,
            AccessState::Unavailable | AccessState::Offline => PathState::Unavailable,
            AccessState::Transitioning => PathState::Transitioning,
        }
    }

    /// The name esxcli uses.
    pub const fn name(self) -> &'static str {
        match self {
            PathState::Active => "active",
            PathState::ActiveUnoptimized => "active unoptimized",
            PathState::Standby => "standby",
            PathState::Unavailable => "unavailable",
            PathState::Transitioning => "transitioning",
            PathState::Dead => "dead",
        }
    }
}

/// One path of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The runtime name.
    pub name: PathName,
    /// The I_T_L nexus commands on this path use.
    pub nexus: Nexus,
    /// The current state.
    pub state: PathState,
    /// The state the path returns to when it comes back from dead (from discovery: the ALUA
    /// state of its group, or active).
    pub alive_state: PathState,
    /// The target port group, for ALUA.
    pub group: Option<u16>,
    /// Statistics.
    pub stats: PathStats,
}

impl Path {
    /// A path named `name` over `nexus`, in `state`.
    pub fn new(name: PathName, nexus: Nexus, state: PathState) -> Self {
        Self {
            name,
            nexus,
            state,
            alive_state: if state == PathState::Dead {
                PathState::Active
            } else {
                state
            },
            group: None,
            stats: PathStats::default(),
        }
    }
}
