//! Faults the array can be told to suffer, now or on a schedule in simulated time.

use core::time::Duration;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use block::Instant;
use scsi::{AccessState, Status};

/// How a broken link shows itself to the initiator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LinkFailure {
    /// Commands vanish: each completes with a service delivery failure only after the array's
    /// command timeout (the HBA's abort), as when a fabric drops frames silently.
    Timeout,
    /// Commands fail at once with a service delivery failure (the HBA sees the link down).
    Error,
}

/// One fault. Ports are named by relative target port identifier, LUNs by number, controllers
/// by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Fault {
    /// The link of `port` goes down.
    LinkDown {
        /// The port.
        port: u16,
        /// How its commands fail.
        failure: LinkFailure,
    },
    /// The link of `port` comes back; initiators that used it get I_T NEXUS LOSS OCCURRED.
    LinkUp {
        /// The port.
        port: u16,
    },
    /// The link of `port` flaps: down for `period`, up for `period`, ... for `duration`.
    Flap {
        /// The port.
        port: u16,
        /// Length of each down and each up phase.
        period: Duration,
        /// How long the flapping lasts.
        duration: Duration,
        /// How commands fail in the down phases.
        failure: LinkFailure,
    },
    /// A controller fails: its ports stop answering (commands time out). With
    /// [`crate::ArrayConfig::failover`], its LUNs move to a surviving controller (an implicit
    /// trespass, or an implicit ALUA transition with ASYMMETRIC ACCESS STATE CHANGED).
    ControllerFail {
        /// The controller index.
        controller: u8,
    },
    /// A failed controller comes back (ownership does not move back by itself).
    ControllerRestore {
        /// The controller index.
        controller: u8,
    },
    /// For `duration`, `permille` of the commands (on `port`, or on every port) are refused
    /// with `status` (BUSY or TASK SET FULL).
    Congestion {
        /// One port, or all.
        port: Option<u16>,
        /// The status answered.
        status: Status,
        /// How many commands in a thousand are refused.
        permille: u16,
        /// How long it lasts.
        duration: Duration,
    },
    /// A LUN accepts at most `limit` commands at once and answers TASK SET FULL beyond it
    /// (`None` lifts the limit).
    QueueLimit {
        /// The LUN.
        lun: u64,
        /// The limit.
        limit: Option<u16>,
    },
    /// An implicit ALUA transition: target port group `group` of `lun` is TRANSITIONING for
    /// `duration`, then `to`. Each change raises ASYMMETRIC ACCESS STATE CHANGED.
    Transition {
        /// The LUN.
        lun: u64,
        /// The target port group.
        group: u16,
        /// The state at the end.
        to: AccessState,
        /// How long the group stays TRANSITIONING.
        duration: Duration,
    },
    /// A logical unit reset: every initiator gets a unit attention.
    UnitAttention {
        /// The LUN.
        lun: u64,
    },
    /// Commands through `port` take `extra` longer (zero removes the delay).
    Latency {
        /// The port.
        port: u16,
        /// The added latency.
        extra: Duration,
    },
    /// The LUN is removed: every command to it answers ILLEGAL REQUEST, LOGICAL UNIT NOT
    /// SUPPORTED (05/25/00), the permanent device loss ESXi recognises.
    RemoveLun {
        /// The LUN.
        lun: u64,
    },
    /// Every port goes down (all paths down).
    AllPathsDown {
        /// How commands fail.
        failure: LinkFailure,
    },
    /// Every port comes back.
    AllPathsUp,
    /// Ownership of an active/passive LUN moves to `controller` (an array-side trespass).
    Trespass {
        /// The LUN.
        lun: u64,
        /// The new owner.
        controller: u8,
    },
}

/// A fault and when it strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ScheduledFault {
    /// When.
    pub at: Instant,
    /// What.
    pub fault: Fault,
}

/// The array's seeded generator: fault decisions (which command a congestion fault refuses)
/// replay exactly for a given `ArrayConfig::seed`.
#[derive(Debug, Clone)]
pub(crate) struct Rng(ChaCha8Rng);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// True with probability `permille / 1000`.
    pub(crate) fn chance(&mut self, permille: u16) -> bool {
        // Modulo bias is below 10^-16 for a 64-bit draw.
        self.0.next_u64() % 1000 < u64::from(permille)
    }
}
