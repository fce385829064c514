//! An active/passive SATP with trespass (`VMW_SATP_CX`-like and `VMW_SATP_DEFAULT_AP`-like).

use core::time::Duration;

use block::{BlockError, ErrorKind, Instant};
use psa::{
    Activation, ActivationOutcome, DefaultAa, MAX_PATHS, Path, PathId, PathState, Satp, SatpAction,
};
use scsi::cdb::CdbRepr;
use scsi::{Asc, CdbBytes, CommandCompletion, SenseKey, ServiceResponse};

use crate::retry::{ActivationRetry, Gate, RetryState};
use crate::{any_usable, set_state};

/// ASC/ASCQ 04/03: LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED, what a passive
/// controller answers to media commands.
pub const NOT_READY_PASSIVE: Asc = Asc::new(0x04, 0x03);

/// How ownership is moved to another controller (the command is sent on a path of the
/// passive controller, which the array then makes the owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrespassStyle {
    /// CLARiiON-style, short form (FC series): MODE SELECT (6) `15 10 00 00 08 00`, a 4-byte
    /// mode parameter header of zeros, then the trespass page 0x22: `22 02 01 FF` (page
    /// length 2, TRESPASS CODE 0x01, TRESPASS TARGET 0xFF: the LU addressed).
    ModeSelectPage22,
    /// CLARiiON-style, long form (CX / AX series, what Linux `scsi_dh_emc` sends them):
    /// MODE SELECT (10) `55 10 00 00 00 00 00 00 13 00`, an 8-byte header of zeros, then
    /// `22 09 01 FF FF 00 00 00 00 00 00` (page length 9, TRESPASS CODE 0x01, TRESPASS TARGET
    /// 0xFFFF, six reserved bytes).
    ModeSelect10Page22,
    /// START STOP UNIT with START (`1B 00 00 00 01 00`), as `scsi_dh_hp_sw` activates a
    /// path.
    StartStopUnit,
}

/// The tunables of [`ActivePassive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivePassiveConfig {
    /// How ownership is moved.
    pub style: TrespassStyle,
    /// The shortest time between two trespasses by this host; a path that answers passive
    /// sooner after a trespass is retried after the rest of this time instead (no
    /// back-and-forth). Default 2 s.
    pub holdoff: Duration,
    /// Passive answers within this time of each other are one observation: when no usable
    /// path is left, standby paths that answered passive longer ago than this are tried
    /// again (the array may have moved the LUN to their controller) before a trespass.
    /// Default 50 ms.
    pub window: Duration,
    /// How a failed trespass is retried, and for how long the SATP gives up after the last
    /// retry failed (default: 3 retries 2 s apart, then 30 s).
    pub retry: ActivationRetry,
    /// The SATP everything not active/passive-specific is delegated to.
    pub base: DefaultAa,
}

impl Default for ActivePassiveConfig {
    fn default() -> Self {
        Self {
            style: TrespassStyle::StartStopUnit,
            holdoff: Duration::from_secs(2),
            window: Duration::from_millis(50),
            retry: ActivationRetry::default(),
            base: DefaultAa::default(),
        }
    }
}

/// An active/passive SATP: a path whose media commands answer NOT READY 04/03 leads to the
/// passive controller and is marked standby; the other controller is activated (trespass)
/// only when no active path remains, and not again within `holdoff` of the last trespass.
///
/// Sense / transport error -> action (everything else as [`DefaultAa`]):
///
/// | answer | path state | action |
/// |---|---|---|
/// | service delivery failure | dead | fail over |
/// | NOT READY 04/03 or 04/0B, another path usable | standby | fail over |
/// | NOT READY 04/03 or 04/0B, none usable, standby paths that answered passive over `window` ago | standby; those paths active again (re-tested) | fail over |
/// | NOT READY 04/03 or 04/0B, none usable, every standby path passive within `window`, no trespass within `holdoff` | standby | activate (trespass) |
/// | NOT READY 04/03 or 04/0B, none usable, trespassed within `holdoff` | standby | fail over after the rest of `holdoff` |
/// | NOT READY 04/03 or 04/0B, none usable, a trespass failed less than `retry.delay` ago | standby | fail over after the rest of `retry.delay` |
/// | NOT READY 04/03 or 04/0B, none usable, given up (the last retry failed less than `retry.give_up` ago) | standby | fail with NOT READY |
/// | anything else | as [`DefaultAa`] | as [`DefaultAa`] |
///
/// After a successful trespass the activated path is active and every standby path is
/// tried again (those of the now passive controller answer 04/03 once more and go back to
/// standby, with usable paths left, so no second trespass follows).
///
/// A failed trespass ([`Satp::activation_done`]) is retried at most `retry.retries` times
/// per cycle (see [`ActivationRetry`] and [`crate::retry::FailureKind`]):
///
/// | answer to the trespass | path state | next trespass |
/// |---|---|---|
/// | GOOD | active; every standby path active again (re-tested) | none needed; the retry state is cleared |
/// | service delivery failure (the path died under it) | dead (probed back) | at once, on another standby path |
/// | UNIT ATTENTION, ABORTED COMMAND, TASK ABORTED | - | at once |
/// | NOT READY (02/04/03: the controller stays passive, e.g. a command of the wrong style for the array), BUSY, TASK SET FULL, RESERVATION CONFLICT, anything else | - | after `retry.delay` |
/// | ILLEGAL REQUEST (05/20/00, 05/24/00, 05/26/00, 05/1A/00: the array refuses the command) | - | none: give up at once |
/// | any failure after `retry.retries` retries | - | none: give up for `retry.give_up` |
///
/// "At once" still waits for the NMP's `activation_interval` after a failure. The device has
/// one passive controller to trespass to, so the retry state is the device's.
#[derive(Debug, Clone)]
pub struct ActivePassive {
    config: ActivePassiveConfig,
    /// When each path last answered passive (since the last trespass).
    passive_at: [Option<Instant>; MAX_PATHS],
    last_trespass: Option<Instant>,
    trespasses: u32,
    failed_trespasses: u32,
    give_ups: u32,
    retry: RetryState,
}

impl ActivePassive {
    /// An SATP with `config`.
    pub const fn new(config: ActivePassiveConfig) -> Self {
        Self {
            config,
            passive_at: [None; MAX_PATHS],
            last_trespass: None,
            trespasses: 0,
            failed_trespasses: 0,
            give_ups: 0,
            retry: RetryState::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ActivePassiveConfig {
        &self.config
    }

    /// Trespasses this SATP has completed (answered GOOD).
    pub fn trespasses(&self) -> u32 {
        self.trespasses
    }

    /// Trespasses that failed (any answer but GOOD, or never sent).
    pub fn failed_trespasses(&self) -> u32 {
        self.failed_trespasses
    }

    /// Times the SATP gave up on trespassing (after the last retry of a cycle failed, or an
    /// answer no retry can change).
    pub fn give_ups(&self) -> u32 {
        self.give_ups
    }

    /// The state of retrying a failed trespass.
    pub fn retry_state(&self) -> &RetryState {
        &self.retry
    }

    /// The trespass command of `style`: CDB and parameter data.
    pub fn trespass_command(style: TrespassStyle) -> (CdbBytes, heapless::Vec<u8, 64>) {
        let mut data = heapless::Vec::new();
        let repr = match style {
            TrespassStyle::ModeSelectPage22 => {
                // Mode parameter header (6), then the short trespass page.
                let list = [0u8, 0, 0, 0, 0x22, 0x02, 0x01, 0xFF];
                let _ = data.extend_from_slice(&list);
                CdbRepr::ModeSelect {
                    ten: false,
                    pf: true,
                    sp: false,
                    parameter_list_length: list.len() as u16,
                }
            }
            TrespassStyle::ModeSelect10Page22 => {
                // Mode parameter header (10), then the long trespass page.
                let mut list = [0u8; 19];
                list[8..13].copy_from_slice(&[0x22, 0x09, 0x01, 0xFF, 0xFF]);
                let _ = data.extend_from_slice(&list);
                CdbRepr::ModeSelect {
                    ten: true,
                    pf: true,
                    sp: false,
                    parameter_list_length: list.len() as u16,
                }
            }
            TrespassStyle::StartStopUnit => CdbRepr::StartStopUnit {
                immed: false,
                power_condition_modifier: 0,
                power_condition: 0,
                no_flush: false,
                loej: false,
                start: true,
            },
        };
        (CdbBytes::from_repr(&repr), data)
    }
}

impl Default for ActivePassive {
    fn default() -> Self {
        Self::new(ActivePassiveConfig::default())
    }
}

impl Satp for ActivePassive {
    fn name(&self) -> &'static str {
        match self.config.style {
            TrespassStyle::StartStopUnit => crate::VMW_SATP_DEFAULT_AP,
            TrespassStyle::ModeSelectPage22 | TrespassStyle::ModeSelect10Page22 => {
                crate::VMW_SATP_CX
            }
        }
    }

    fn evaluate(
        &mut self,
        now: Instant,
        path: PathId,
        paths: &mut [Path],
        completion: &CommandCompletion,
    ) -> SatpAction {
        if completion.service == ServiceResponse::TaskComplete
            && let Some(sense) = completion.sense_repr()
            && sense.key == SenseKey::NOT_READY
            && matches!(sense.asc, NOT_READY_PASSIVE | Asc::TARGET_PORT_STANDBY)
        {
            set_state(paths, path, PathState::Standby);
            if let Some(at) = self.passive_at.get_mut(usize::from(path.0)) {
                *at = Some(now);
            }
            if any_usable(paths) {
                return SatpAction::Failover {
                    delay: Duration::ZERO,
                };
            }
            // Standby paths that last answered passive before the window may lead to the
            // owner now (an array-side trespass): try them again before trespassing.
            let window = self.config.window.as_nanos() as u64;
            let mut retest = false;
            for (p, at) in paths.iter_mut().zip(self.passive_at.iter()) {
                if p.state == PathState::Standby
                    && at.is_none_or(|t| now.0.saturating_sub(t.0) > window)
                {
                    p.state = PathState::Active;
                    retest = true;
                }
            }
            if retest {
                return SatpAction::Failover {
                    delay: Duration::ZERO,
                };
            }
            let since = self
                .last_trespass
                .map(|t| Duration::from_nanos(now.0.saturating_sub(t.0)));
            if let Some(since) = since
                && since < self.config.holdoff
            {
                return SatpAction::Failover {
                    delay: self.config.holdoff.saturating_sub(since),
                };
            }
            return match self.retry.gate(now) {
                Gate::Open => SatpAction::Activate,
                Gate::Wait(delay) => SatpAction::Failover { delay },
                Gate::GivenUp => SatpAction::Fail(BlockError::new(ErrorKind::NotReady)),
            };
        }
        self.config.base.evaluate(now, path, paths, completion)
    }

    fn path_ok(&mut self, now: Instant, path: PathId, paths: &mut [Path]) {
        let _ = now;
        // A probe answers GOOD on a passive path too (TEST UNIT READY is not a media
        // command): while other paths are usable, a standby path stays standby; when none
        // is, it is tried.
        let usable = any_usable(paths);
        let Some(p) = paths.get_mut(usize::from(path.0)) else {
            return;
        };
        if p.state == PathState::Standby && usable {
            return;
        }
        if !p.state.is_usable() {
            p.state = PathState::Active;
        }
    }

    fn activation(&mut self, now: Instant, paths: &[Path]) -> Option<Activation> {
        if any_usable(paths) || self.retry.gate(now) != Gate::Open {
            return None;
        }
        // A standby path that has answered passive least recently... the first standby one
        // (every standby path leads to the passive controller when no active path is left).
        let i = paths.iter().position(|p| p.state == PathState::Standby)?;
        let path = PathId(u16::try_from(i).ok()?);
        let (cdb, data) = Self::trespass_command(self.config.style);
        Some(Activation { path, cdb, data })
    }

    fn activation_done(
        &mut self,
        now: Instant,
        activation: &Activation,
        paths: &mut [Path],
        outcome: ActivationOutcome,
    ) {
        if outcome.is_good() {
            self.retry.succeeded();
            self.last_trespass = Some(now);
            self.trespasses = self.trespasses.saturating_add(1);
            self.passive_at = [None; MAX_PATHS];
            for p in paths.iter_mut() {
                if p.state == PathState::Standby {
                    p.state = PathState::Active;
                }
            }
            set_state(paths, activation.path, PathState::Active);
            return;
        }
        self.failed_trespasses = self.failed_trespasses.saturating_add(1);
        if outcome == ActivationOutcome::Transport {
            set_state(paths, activation.path, PathState::Dead);
        }
        if self.retry.failed(now, outcome, &self.config.retry) {
            self.give_ups = self.give_ups.saturating_add(1);
        }
    }
}
