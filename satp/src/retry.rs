//! Retrying failed activations: a bounded number of retries with a back-off in simulated
//! time, then giving up on the target for a while (like dm-multipath's `pg_init_retries` and
//! `pg_init_delay_msecs`, after which its path group fails).

use core::time::Duration;

use block::Instant;
use psa::ActivationOutcome;
use scsi::{SenseKey, Status};

/// How an SATP retries an activation (a trespass, SET TARGET PORT GROUPS) that failed.
///
/// A cycle is at most `retries + 1` activation commands: the first, then one retry after
/// each failure, `delay` apart (some failures are retried sooner, some not at all; see
/// [`FailureKind`]). When the last one fails the SATP gives up on the target for `give_up`:
/// requests that need the activation fail at once with NOT READY
/// ([`block::ErrorKind::NotReady`]) instead of waiting. The first request that needs it after
/// that starts a new cycle; a successful activation ends the cycle at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationRetry {
    /// Retries after the first failed activation of a cycle (dm-multipath's
    /// `pg_init_retries`). Default 3: at most 4 activation commands per cycle.
    pub retries: u8,
    /// The back-off: the shortest time from a failed activation to the next
    /// (dm-multipath's `pg_init_delay_msecs`, whose default is 2 s). Default 2 s.
    pub delay: Duration,
    /// How long the SATP gives up on the target after the last attempt of a cycle failed.
    /// Default 30 s.
    pub give_up: Duration,
}

impl Default for ActivationRetry {
    fn default() -> Self {
        Self {
            retries: 3,
            delay: Duration::from_secs(2),
            give_up: Duration::from_secs(30),
        }
    }
}

/// What a failed activation means for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Retry without the back-off (on the next poll the NMP allows: its
    /// `activation_interval` after the failure): a transport failure (the path died under
    /// the command; the retry goes on another path), UNIT ATTENTION, ABORTED COMMAND, TASK
    /// ABORTED (the command was not carried out, for a reason that is already over).
    Soon,
    /// Retry after the back-off: NOT READY (the controller is not ready to take over, or
    /// does not take this command as an activation), BUSY, TASK SET FULL, RESERVATION
    /// CONFLICT, and every other answer.
    Later,
    /// Give up at once: ILLEGAL REQUEST (the device refuses the command itself or its
    /// parameters: invalid operation code 05/20/00, invalid field in the CDB 05/24/00 or in
    /// the parameter list 05/26/00, parameter list length 05/1A/00), which a retry of the same
    /// bytes cannot change.
    Fatal,
}

impl FailureKind {
    /// The kind of the failed `outcome` (`Later` for [`ActivationOutcome::Good`], which is no
    /// failure at all).
    pub fn of(outcome: ActivationOutcome) -> Self {
        match outcome {
            ActivationOutcome::Transport => FailureKind::Soon,
            ActivationOutcome::CheckCondition { key, .. } => match key {
                SenseKey::UNIT_ATTENTION | SenseKey::ABORTED_COMMAND => FailureKind::Soon,
                SenseKey::ILLEGAL_REQUEST => FailureKind::Fatal,
                _ => FailureKind::Later,
            },
            ActivationOutcome::Status(Status::TASK_ABORTED) => FailureKind::Soon,
            ActivationOutcome::Status(_) | ActivationOutcome::NotSent | ActivationOutcome::Good => {
                FailureKind::Later
            }
        }
    }
}

/// Whether an activation may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Yes.
    Open,
    /// Not before this much time (a back-off after a failure).
    Wait(Duration),
    /// No: the SATP gave up on the target (until the give-up period ends).
    GivenUp,
}

/// The retry state of one activation target (the passive controller, a target port group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryState {
    failures: u8,
    not_before: Option<Instant>,
    given_up_until: Option<Instant>,
    last: Option<ActivationOutcome>,
}

impl RetryState {
    /// A target with no failed activation.
    pub const fn new() -> Self {
        Self {
            failures: 0,
            not_before: None,
            given_up_until: None,
            last: None,
        }
    }

    /// Failed activations in the current cycle.
    pub fn failures(&self) -> u8 {
        self.failures
    }

    /// Until when the SATP has given up on the target, if it has.
    pub fn given_up_until(&self) -> Option<Instant> {
        self.given_up_until
    }

    /// The last failed activation's outcome in the current cycle.
    pub fn last_failure(&self) -> Option<ActivationOutcome> {
        self.last
    }

    /// Whether no activation has failed since the last success or the last give-up period.
    pub fn is_clear(&self) -> bool {
        *self == Self::new()
    }

    /// Whether an activation may be sent at `now`. A give-up period that is over starts a
    /// new cycle.
    pub fn gate(&mut self, now: Instant) -> Gate {
        if let Some(until) = self.given_up_until {
            if now < until {
                return Gate::GivenUp;
            }
            *self = Self::new();
        }
        match self.not_before {
            Some(at) if at > now => Gate::Wait(Duration::from_nanos(at.0 - now.0)),
            _ => Gate::Open,
        }
    }

    /// An activation succeeded: the cycle is over.
    pub fn succeeded(&mut self) {
        *self = Self::new();
    }

    /// An activation failed at `now` with `outcome`. Returns whether the SATP gives up on
    /// the target now.
    pub fn failed(
        &mut self,
        now: Instant,
        outcome: ActivationOutcome,
        config: &ActivationRetry,
    ) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.last = Some(outcome);
        let kind = FailureKind::of(outcome);
        if kind == FailureKind::Fatal || self.failures > config.retries {
            self.given_up_until = Some(now.saturating_add(config.give_up));
            self.not_before = None;
            return true;
        }
        self.not_before = match kind {
            FailureKind::Later => Some(now.saturating_add(config.delay)),
            _ => None,
        };
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scsi::Asc;

    const fn ms(n: u64) -> Instant {
        Instant(n * 1_000_000)
    }

    #[test]
    fn a_cycle_is_bounded_then_given_up_then_new() {
        let config = ActivationRetry::default();
        let not_ready = ActivationOutcome::CheckCondition {
            key: SenseKey::NOT_READY,
            asc: Asc::new(0x04, 0x03),
        };
        let mut s = RetryState::new();
        let mut t = ms(0);
        let mut sent = 0;
        // Ask every 100 ms for 40 s: 4 commands, then nothing until the give-up ends.
        for _ in 0..400 {
            if s.gate(t) == Gate::Open {
                sent += 1;
                s.failed(t, not_ready, &config);
            }
            t = Instant(t.0 + 100_000_000);
        }
        // 4 in the first cycle (0, 2, 4, 6 s), given up until 36 s, then a new cycle (36,
        // 38 s).
        assert_eq!(sent, 4 + 2, "{s:?}");
        assert_eq!(s.failures(), 2);
        assert_eq!(s.last_failure(), Some(not_ready));
        s.succeeded();
        assert!(s.is_clear());
        assert_eq!(s.gate(t), Gate::Open);
    }

    #[test]
    fn failure_kinds() {
        let check = |key, asc| ActivationOutcome::CheckCondition { key, asc };
        let cases = [
            (ActivationOutcome::Transport, FailureKind::Soon),
            (
                check(SenseKey::UNIT_ATTENTION, Asc::POWER_ON_OCCURRED),
                FailureKind::Soon,
            ),
            (
                ActivationOutcome::Status(Status::TASK_ABORTED),
                FailureKind::Soon,
            ),
            (
                check(SenseKey::NOT_READY, Asc::new(0x04, 0x03)),
                FailureKind::Later,
            ),
            (
                check(SenseKey::NOT_READY, Asc::ASYMMETRIC_ACCESS_TRANSITION),
                FailureKind::Later,
            ),
            (ActivationOutcome::Status(Status::BUSY), FailureKind::Later),
            (
                ActivationOutcome::Status(Status::RESERVATION_CONFLICT),
                FailureKind::Later,
            ),
            (
                check(SenseKey::ILLEGAL_REQUEST, Asc::new(0x24, 0x00)),
                FailureKind::Fatal,
            ),
            (
                check(SenseKey::ILLEGAL_REQUEST, Asc::new(0x26, 0x00)),
                FailureKind::Fatal,
            ),
        ];
        for (outcome, kind) in cases {
            assert_eq!(FailureKind::of(outcome), kind, "{outcome:?}");
        }
        // A fatal answer gives up at once; a soon one opens the gate at once.
        let config = ActivationRetry::default();
        let mut s = RetryState::new();
        assert!(s.failed(
            ms(5),
            check(SenseKey::ILLEGAL_REQUEST, Asc::new(0x24, 0x00)),
            &config
        ));
        assert_eq!(s.gate(ms(6)), Gate::GivenUp);
        assert_eq!(s.given_up_until(), Some(Instant(ms(5).0 + 30_000_000_000)));
        let mut s = RetryState::new();
        assert!(!s.failed(ms(5), ActivationOutcome::Transport, &config));
        assert_eq!(s.gate(ms(5)), Gate::Open);
        assert!(!s.failed(ms(5), ActivationOutcome::Status(Status::BUSY), &config));
        assert_eq!(s.gate(ms(1005)), Gate::Wait(Duration::from_secs(1)));
    }
}
