//! The plugin traits of the native multipathing plugin (NMP): the SATP (storage array type
//! plugin, the control plane: what an error means, path states, activation) and the PSP
//! (path selection plugin, the data plane: which path each I/O takes), and the simplest
//! plugins of each.

use core::time::Duration;

use block::{BlockError, ErrorKind, Instant, Operation};
use scsi::{Asc, CdbBytes, CommandCompletion, SenseKey, ServiceResponse, Status};

use crate::path::{Path, PathId, PathState};

/// What the NMP does with a command that did not complete well, as the SATP decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SatpAction {
    /// Treat the command as successful (a recovered error).
    Complete,
    /// Send it again on the same path after `delay`.
    Retry {
        /// How long to wait first.
        delay: Duration,
    },
    /// Send it again on another path after `delay` (the SATP has already changed the
    /// failed path's state if it should).
    Failover {
        /// How long to wait first.
        delay: Duration,
    },
    /// Send the SATP's [`Satp::activation`] command (activate a path group, trespass), then
    /// retry. The request waits for the device's one activation: the one in flight if there
    /// is one, else the next (no sooner than [`crate::NmpConfig::activation_interval`] after
    /// a failed one); it is retried once that has ended, well or not.
    Activate,
    /// Complete the request with this error.
    Fail(BlockError),
    /// Permanent device loss: fail this request and every other with
    /// [`ErrorKind::DeviceLost`].
    DeviceLost,
}

/// A command that activates paths: SET TARGET PORT GROUPS, START STOP UNIT, MODE SELECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// The path to send it on.
    pub path: PathId,
    /// The CDB.
    pub cdb: CdbBytes,
    /// Data-out parameter bytes (written to the device's scratch buffer first).
    pub data: heapless::Vec<u8, 64>,
}

/// How an activation command ended, as the NMP reports it to [`Satp::activation_done`].
///
/// The SCSI answer in a form an SATP can match on: GOOD, CHECK CONDITION with its sense key
/// and ASC/ASCQ, another status, or a transport failure (the path died under the command, or
/// its link timed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ActivationOutcome {
    /// GOOD: the command was carried out (the group is active, the trespass done).
    Good,
    /// CHECK CONDITION with this sense.
    CheckCondition {
        /// The sense key.
        key: SenseKey,
        /// The additional sense code and qualifier.
        asc: Asc,
    },
    /// Another status (BUSY, TASK SET FULL, RESERVATION CONFLICT, TASK ABORTED, ...), or
    /// CHECK CONDITION without sense data that could be read (then
    /// [`Status::CHECK_CONDITION`]).
    Status(Status),
    /// The service delivery subsystem failed the command (the path is dead or its link
    /// timed out): nothing is known about what the device did.
    Transport,
    /// The command was never sent: the path it named is not in the device's path table.
    NotSent,
}

impl ActivationOutcome {
    /// The outcome `completion` reports.
    pub fn of(completion: &CommandCompletion) -> Self {
        if completion.service != ServiceResponse::TaskComplete {
            return ActivationOutcome::Transport;
        }
        match completion.status {
            Status::GOOD | Status::CONDITION_MET => ActivationOutcome::Good,
            Status::CHECK_CONDITION => match completion.sense_repr() {
                Some(sense) => ActivationOutcome::CheckCondition {
                    key: sense.key,
                    asc: sense.asc,
                },
                None => ActivationOutcome::Status(Status::CHECK_CONDITION),
            },
            status => ActivationOutcome::Status(status),
        }
    }

    /// Whether the activation succeeded.
    pub fn is_good(&self) -> bool {
        *self == ActivationOutcome::Good
    }
}

/// Bytes of data-in an SATP command may ask for (and of the scratch buffer it needs).
pub const SATP_DATA_MAX: usize = 512;

/// A command the SATP wants sent on its own account: REPORT TARGET PORT GROUPS to re-read
/// the groups, an INQUIRY, a vendor command. Data-out bytes are written to the device's
/// scratch buffer first; data-in lands there and is handed to [`Satp::command_done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SatpCommand {
    /// The path to send it on.
    pub path: PathId,
    /// The CDB.
    pub cdb: CdbBytes,
    /// Data-out parameter bytes (empty: none).
    pub data_out: heapless::Vec<u8, 64>,
    /// Data-in bytes wanted (0: none; at most [`SATP_DATA_MAX`]).
    pub data_in_len: u16,
}

/// A storage array type plugin: the control plane of a device.
///
/// The NMP calls it with every command that did not complete GOOD (and with probe results),
/// lets it change path states, and follows its [`SatpAction`].
pub trait Satp {
    /// The plugin's name, as `esxcli storage nmp satp list` shows it.
    fn name(&self) -> &'static str;

    /// What a failed command on `path` means. The SATP may change `paths[path].state` (or
    /// any other path's state).
    fn evaluate(
        &mut self,
        now: Instant,
        path: PathId,
        paths: &mut [Path],
        completion: &CommandCompletion,
    ) -> SatpAction;

    /// A command completed GOOD on `path` (a data command or a probe). The default makes a
    /// standby, unavailable, transitioning or dead path usable again.
    fn path_ok(&mut self, now: Instant, path: PathId, paths: &mut [Path]) {
        let _ = now;
        if let Some(p) = paths.get_mut(usize::from(path.0))
            && !p.state.is_usable()
        {
            p.state = p.alive_state;
            if !p.state.is_usable() {
                p.state = PathState::Active;
            }
        }
    }

    /// The command that activates a path group when no usable path is left (`None`: the
    /// SATP cannot activate anything; the NMP then tries standby paths as a last resort).
    ///
    /// Asked only after an [`SatpAction::Activate`], and never while an activation or an
    /// SATP command ([`Satp::poll_command`]) is outstanding: a device has at most one
    /// activation in flight. Every activation returned here is reported back exactly once,
    /// through [`Satp::activation_done`].
    fn activation(&mut self, now: Instant, paths: &[Path]) -> Option<Activation> {
        let _ = (now, paths);
        None
    }

    /// The activation command returned by [`Satp::activation`] ended with `outcome`: GOOD,
    /// an error (CHECK CONDITION with its sense, another status, a transport failure), or
    /// [`ActivationOutcome::NotSent`] when its path is not in the table. Called exactly once
    /// per activation, before the requests that waited for it are retried.
    ///
    /// The NMP itself only paces activations: requests whose evaluation said
    /// [`SatpAction::Activate`] wait for the activation in flight (or the next one) instead of
    /// asking for one each, and after a failed activation no other is sent for
    /// [`crate::NmpConfig::activation_interval`]. Everything else is the SATP's: whether to
    /// retry, after what back-off, how many times, and when to give up; it says so in its
    /// next [`Satp::evaluate`] of a request that still finds no usable path (another
    /// `Activate`, a `Failover` with a delay, or `Fail`).
    ///
    /// The default makes the activated path usable on GOOD (as [`Satp::path_ok`]) and
    /// ignores failures.
    fn activation_done(
        &mut self,
        now: Instant,
        activation: &Activation,
        paths: &mut [Path],
        outcome: ActivationOutcome,
    ) {
        if outcome.is_good() {
            self.path_ok(now, activation.path, paths);
        }
    }

    /// A command the SATP wants sent now (asked at every poll while none of its commands is
    /// outstanding; needs [`crate::NmpConfig::scratch`] if it moves data).
    fn poll_command(&mut self, now: Instant, paths: &[Path]) -> Option<SatpCommand> {
        let _ = (now, paths);
        None
    }

    /// The SATP's command completed; `data_in` holds what it read (empty on failure).
    fn command_done(
        &mut self,
        now: Instant,
        command: &SatpCommand,
        paths: &mut [Path],
        completion: &CommandCompletion,
        data_in: &[u8],
    ) {
        let _ = (now, command, paths, completion, data_in);
    }

    /// When the SATP next wants to be asked for a command (a timer, such as re-reading the
    /// target port groups every 2 s during a transition).
    fn next_event(&self) -> Option<Instant> {
        None
    }
}

/// What a PSP knows about the I/O it routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IoHint {
    /// The operation.
    pub operation: Operation,
    /// Bytes moved.
    pub bytes: u64,
    /// Paths this I/O already failed on (bit `i` for path `i`): avoid them if possible.
    pub avoid: u32,
}

/// A path selection plugin: the data plane of a device.
pub trait Psp {
    /// The plugin's name, as `esxcli storage nmp psp list` shows it.
    fn name(&self) -> &'static str;

    /// The path for the next command, or `None` if no path may take I/O.
    ///
    /// `paths` is the device's path table. The NMP changes a path's outstanding count
    /// (`stats.active`) only when it sends a command on the path `select` returned and when
    /// a command completes, which it reports through [`Psp::completed`] (after updating the
    /// statistics); a PSP may keep per-path costs and recompute only those paths'.
    fn select(&mut self, now: Instant, paths: &[Path], io: &IoHint) -> Option<PathId>;

    /// A command on `path` completed after `latency` (good or not). Called for every
    /// completion of a command `select` routed.
    fn completed(&mut self, now: Instant, path: PathId, latency: Duration, ok: bool) {
        let _ = (now, path, latency, ok);
    }

    /// Path states changed (the SATP, a probe, discovery).
    fn paths_changed(&mut self, paths: &[Path]) {
        let _ = paths;
    }
}

impl<T: Satp + ?Sized> Satp for &mut T {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn evaluate(
        &mut self,
        now: Instant,
        path: PathId,
        paths: &mut [Path],
        completion: &CommandCompletion,
    ) -> SatpAction {
        (**self).evaluate(now, path, paths, completion)
    }
    fn path_ok(&mut self, now: Instant, path: PathId, paths: &mut [Path]) {
        (**self).path_ok(now, path, paths)
    }
    fn activation(&mut self, now: Instant, paths: &[Path]) -> Option<Activation> {
        (**self).activation(now, paths)
    }
    fn activation_done(
        &mut self,
        now: Instant,
        activation: &Activation,
        paths: &mut [Path],
        outcome: ActivationOutcome,
    ) {
        (**self).activation_done(now, activation, paths, outcome)
    }
    fn poll_command(&mut self, now: Instant, paths: &[Path]) -> Option<SatpCommand> {
        (**self).poll_command(now, paths)
    }
    fn command_done(
        &mut self,
        now: Instant,
        command: &SatpCommand,
        paths: &mut [Path],
        completion: &CommandCompletion,
        data_in: &[u8],
    ) {
        (**self).command_done(now, command, paths, completion, data_in)
    }
    fn next_event(&self) -> Option<Instant> {
        (**self).next_event()
    }
}

impl<T: Psp + ?Sized> Psp for &mut T {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn select(&mut self, now: Instant, paths: &[Path], io: &IoHint) -> Option<PathId> {
        (**self).select(now, paths, io)
    }
    fn completed(&mut self, now: Instant, path: PathId, latency: Duration, ok: bool) {
        (**self).completed(now, path, latency, ok)
    }
    fn paths_changed(&mut self, paths: &[Path]) {
        (**self).paths_changed(paths)
    }
}

/// The error kind a failed completion maps to when it is finally reported upward.
pub fn error_of(completion: &CommandCompletion) -> BlockError {
    if completion.service != ServiceResponse::TaskComplete {
        return BlockError::new(ErrorKind::Transport);
    }
    match completion.status {
        Status::BUSY => return BlockError::new(ErrorKind::Busy),
        Status::TASK_SET_FULL => return BlockError::new(ErrorKind::QueueFull),
        Status::RESERVATION_CONFLICT => return BlockError::new(ErrorKind::ReservationConflict),
        Status::TASK_ABORTED => return BlockError::new(ErrorKind::Aborted),
        _ => {}
    }
    let Some(sense) = completion.sense_repr() else {
        return BlockError::new(ErrorKind::Transport);
    };
    let kind = match sense.key {
        SenseKey::NOT_READY => ErrorKind::NotReady,
        SenseKey::MEDIUM_ERROR => ErrorKind::MediumError,
        SenseKey::MISCOMPARE => ErrorKind::Miscompare,
        SenseKey::DATA_PROTECT => ErrorKind::WriteProtected,
        SenseKey::ABORTED_COMMAND => ErrorKind::Aborted,
        SenseKey::UNIT_ATTENTION => ErrorKind::NotReady,
        SenseKey::ILLEGAL_REQUEST => match sense.asc {
            Asc::LBA_OUT_OF_RANGE => ErrorKind::OutOfRange,
            Asc::LOGICAL_UNIT_NOT_SUPPORTED => ErrorKind::DeviceLost,
            Asc::INVALID_COMMAND_OPERATION_CODE => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidRequest,
        },
        _ => ErrorKind::Transport,
    };
    match sense.information {
        Some(info) => BlockError::with_info(kind, info),
        None => BlockError::new(kind),
    }
}

/// `VMW_SATP_DEFAULT_AA`-like: every path active; a transport failure marks the path dead;
/// NOT READY for standby, unavailable or a passive controller (04/0B, 04/0C, 04/03) marks the
/// path standby and fails over; transitions, BUSY, TASK SET FULL, unit attentions and aborted
/// commands are retried; LOGICAL UNIT NOT SUPPORTED is a permanent device loss.
///
/// | answer | path state | action |
/// |---|---|---|
/// | service delivery failure | dead | fail over |
/// | BUSY, TASK SET FULL | - | retry after `busy_delay` |
/// | TASK ABORTED, ABORTED COMMAND, UNIT ATTENTION | - | retry at once |
/// | RESERVATION CONFLICT | - | fail |
/// | NOT READY 04/0A (transitioning) | - | retry after `not_ready_delay` |
/// | NOT READY 04/03, 04/0B | standby | fail over |
/// | NOT READY 04/0C | unavailable | fail over |
/// | NOT READY, other | - | retry after `not_ready_delay` |
/// | ILLEGAL REQUEST 25/00 | - | device lost |
/// | HARDWARE ERROR | - | fail over |
/// | anything else | - | fail with the mapped error |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultAa {
    /// Delay before retrying BUSY and TASK SET FULL.
    pub busy_delay: Duration,
    /// Delay before retrying NOT READY (transitioning, becoming ready).
    pub not_ready_delay: Duration,
}

impl Default for DefaultAa {
    fn default() -> Self {
        Self {
            busy_delay: Duration::from_millis(2),
            not_ready_delay: Duration::from_millis(100),
        }
    }
}

/// ASC/ASCQ 04/03 of an active/passive array's passive controller.
const NOT_READY_MANUAL_INTERVENTION: Asc = Asc::new(0x04, 0x03);

impl Satp for DefaultAa {
    fn name(&self) -> &'static str {
        "VMW_SATP_DEFAULT_AA"
    }

    fn evaluate(
        &mut self,
        _now: Instant,
        path: PathId,
        paths: &mut [Path],
        completion: &CommandCompletion,
    ) -> SatpAction {
        let mut set = |state: PathState| {
            if let Some(p) = paths.get_mut(usize::from(path.0)) {
                p.state = state;
            }
        };
        if completion.service != ServiceResponse::TaskComplete {
            set(PathState::Dead);
            return SatpAction::Failover {
                delay: Duration::ZERO,
            };
        }
        match completion.status {
            Status::GOOD | Status::CONDITION_MET => return SatpAction::Complete,
            Status::BUSY | Status::TASK_SET_FULL => {
                return SatpAction::Retry {
                    delay: self.busy_delay,
                };
            }
            Status::TASK_ABORTED => {
                return SatpAction::Retry {
                    delay: Duration::ZERO,
                };
            }
            Status::CHECK_CONDITION => {}
            _ => return SatpAction::Fail(error_of(completion)),
        }
        let Some(sense) = completion.sense_repr() else {
            return SatpAction::Retry {
                delay: Duration::ZERO,
            };
        };
        match (sense.key, sense.asc) {
            (SenseKey::UNIT_ATTENTION, _) | (SenseKey::ABORTED_COMMAND, _) => SatpAction::Retry {
                delay: Duration::ZERO,
            },
            (SenseKey::NOT_READY, Asc::ASYMMETRIC_ACCESS_TRANSITION) => SatpAction::Retry {
                delay: self.not_ready_delay,
            },
            (SenseKey::NOT_READY, Asc::TARGET_PORT_STANDBY)
            | (SenseKey::NOT_READY, NOT_READY_MANUAL_INTERVENTION) => {
                set(PathState::Standby);
                SatpAction::Failover {
                    delay: Duration::ZERO,
                }
            }
            (SenseKey::NOT_READY, Asc::TARGET_PORT_UNAVAILABLE) => {
                set(PathState::Unavailable);
                SatpAction::Failover {
                    delay: Duration::ZERO,
                }
            }
            (SenseKey::NOT_READY, _) => SatpAction::Retry {
                delay: self.not_ready_delay,
            },
            (SenseKey::ILLEGAL_REQUEST, Asc::LOGICAL_UNIT_NOT_SUPPORTED) => SatpAction::DeviceLost,
            (SenseKey::HARDWARE_ERROR, _) => SatpAction::Failover {
                delay: Duration::ZERO,
            },
            (SenseKey::RECOVERED_ERROR, _) | (SenseKey::NO_SENSE, _) => SatpAction::Complete,
            _ => SatpAction::Fail(error_of(completion)),
        }
    }
}

/// A most-recently-used PSP (`VMW_PSP_MRU`-like): keeps using the path it used last while it
/// is usable; otherwise the first usable path, active/optimized before non-optimized, paths
/// the I/O already failed on last; as a last resort a standby path. Never fails back on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MostRecentlyUsed {
    current: Option<PathId>,
}

impl MostRecentlyUsed {
    /// A PSP with no path chosen yet.
    pub const fn new() -> Self {
        Self { current: None }
    }

    /// The path in use.
    pub fn current(&self) -> Option<PathId> {
        self.current
    }
}

impl Psp for MostRecentlyUsed {
    fn name(&self) -> &'static str {
        "VMW_PSP_MRU"
    }

    #[inline]
    fn select(&mut self, _now: Instant, paths: &[Path], io: &IoHint) -> Option<PathId> {
        if let Some(current) = self.current {
            let i = usize::from(current.0);
            if let Some(p) = paths.get(i)
                && p.state.is_usable()
                && io.avoid & (1u32 << (i % 32)) == 0
            {
                return Some(current);
            }
        }
        let avoided = |i: usize| io.avoid & (1u32 << (i % 32)) != 0;
        let rank = |i: usize, p: &Path| -> Option<u8> {
            let base = match p.state {
                PathState::Active => 0,
                PathState::ActiveUnoptimized => 1,
                PathState::Standby | PathState::Transitioning => 2,
                PathState::Unavailable | PathState::Dead => return None,
            };
            Some(if avoided(i) { base + 3 } else { base })
        };
        let mut best: Option<(u8, usize)> = None;
        for (i, p) in paths.iter().enumerate().take(crate::path::MAX_PATHS) {
            if let Some(r) = rank(i, p)
                && best.is_none_or(|(b, _)| r < b)
            {
                best = Some((r, i));
            }
        }
        let (_, i) = best?;
        let chosen = PathId(u16::try_from(i).ok()?);
        if paths[i].state.is_usable() {
            self.current = Some(chosen);
        }
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::PathName;
    use scsi::{Nexus, SenseFormat, SenseRepr};

    fn paths() -> [Path; 2] {
        let p = |t| {
            Path::new(
                PathName {
                    adapter: 1,
                    channel: 0,
                    target: t,
                    lun: 0,
                },
                Nexus::default(),
                PathState::Active,
            )
        };
        [p(0), p(1)]
    }

    fn check(key: SenseKey, asc: Asc) -> CommandCompletion {
        CommandCompletion::check_condition(
            Tag(1),
            SenseRepr::new(key, asc).to_buf(SenseFormat::Fixed),
        )
    }

    use block::Tag;

    #[test]
    fn default_aa_table_case_by_case() {
        let zero = Duration::ZERO;
        let satp_default = DefaultAa::default();
        let busy = satp_default.busy_delay;
        let nr = satp_default.not_ready_delay;
        let sdf = CommandCompletion {
            service: ServiceResponse::ServiceDeliveryFailure,
            ..CommandCompletion::good(Tag(1), scsi::Residual::None)
        };
        let cases: [(CommandCompletion, SatpAction, PathState); 15] = [
            (sdf, SatpAction::Failover { delay: zero }, PathState::Dead),
            (
                CommandCompletion::status(Tag(1), Status::BUSY),
                SatpAction::Retry { delay: busy },
                PathState::Active,
            ),
            (
                CommandCompletion::status(Tag(1), Status::TASK_SET_FULL),
                SatpAction::Retry { delay: busy },
                PathState::Active,
            ),
            (
                CommandCompletion::status(Tag(1), Status::TASK_ABORTED),
                SatpAction::Retry { delay: zero },
                PathState::Active,
            ),
            (
                CommandCompletion::status(Tag(1), Status::RESERVATION_CONFLICT),
                SatpAction::Fail(BlockError::new(ErrorKind::ReservationConflict)),
                PathState::Active,
            ),
            (
                check(SenseKey::UNIT_ATTENTION, Asc::POWER_ON_OCCURRED),
                SatpAction::Retry { delay: zero },
                PathState::Active,
            ),
            (
                check(SenseKey::ABORTED_COMMAND, Asc::NO_ADDITIONAL_SENSE),
                SatpAction::Retry { delay: zero },
                PathState::Active,
            ),
            (
                check(SenseKey::NOT_READY, Asc::ASYMMETRIC_ACCESS_TRANSITION),
                SatpAction::Retry { delay: nr },
                PathState::Active,
            ),
            (
                check(SenseKey::NOT_READY, NOT_READY_MANUAL_INTERVENTION),
                SatpAction::Failover { delay: zero },
                PathState::Standby,
            ),
            (
                check(SenseKey::NOT_READY, Asc::TARGET_PORT_STANDBY),
                SatpAction::Failover { delay: zero },
                PathState::Standby,
            ),
            (
                check(SenseKey::NOT_READY, Asc::TARGET_PORT_UNAVAILABLE),
                SatpAction::Failover { delay: zero },
                PathState::Unavailable,
            ),
            (
                check(SenseKey::NOT_READY, Asc::BECOMING_READY),
                SatpAction::Retry { delay: nr },
                PathState::Active,
            ),
            (
                check(SenseKey::ILLEGAL_REQUEST, Asc::LOGICAL_UNIT_NOT_SUPPORTED),
                SatpAction::DeviceLost,
                PathState::Active,
            ),
            (
                check(SenseKey::HARDWARE_ERROR, Asc::INTERNAL_TARGET_FAILURE),
                SatpAction::Failover { delay: zero },
                PathState::Active,
            ),
            (
                check(SenseKey::MEDIUM_ERROR, Asc::UNRECOVERED_READ_ERROR),
                SatpAction::Fail(BlockError::new(ErrorKind::MediumError)),
                PathState::Active,
            ),
        ];
        for (completion, action, state) in cases {
            let mut satp = DefaultAa::default();
            let mut p = paths();
            let got = satp.evaluate(Instant(0), PathId(1), &mut p, &completion);
            assert_eq!(got, action, "{completion:?}");
            assert_eq!(p[1].state, state, "{completion:?}");
            assert_eq!(p[0].state, PathState::Active);
        }
        // A good command on a standby path makes it active again.
        let mut satp = DefaultAa::default();
        let mut p = paths();
        p[1].state = PathState::Standby;
        satp.path_ok(Instant(0), PathId(1), &mut p);
        assert_eq!(p[1].state, PathState::Active);
    }

    #[test]
    fn errors_map_to_block_errors() {
        let lba = CommandCompletion::check_condition(
            Tag(1),
            SenseRepr::new(SenseKey::MEDIUM_ERROR, Asc::UNRECOVERED_READ_ERROR)
                .with_information(77)
                .to_buf(SenseFormat::Descriptor),
        );
        assert_eq!(
            error_of(&lba),
            BlockError::with_info(ErrorKind::MediumError, 77)
        );
        assert_eq!(
            error_of(&check(SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE)).kind(),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            error_of(&check(SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED)).kind(),
            ErrorKind::WriteProtected
        );
        assert_eq!(
            error_of(&CommandCompletion::status(Tag(1), Status::BUSY)).kind(),
            ErrorKind::Busy
        );
    }

    #[test]
    fn mru_stays_prefers_optimized_and_falls_back_to_standby() {
        let mut p = [paths()[0].clone(), paths()[1].clone(), paths()[0].clone()];
        p[0].state = PathState::ActiveUnoptimized;
        let hint = IoHint {
            operation: Operation::Read,
            bytes: 512,
            avoid: 0,
        };
        let mut mru = MostRecentlyUsed::new();
        assert_eq!(mru.select(Instant(0), &p, &hint), Some(PathId(1)));
        // Stays even when a better path appears.
        p[0].state = PathState::Active;
        assert_eq!(mru.select(Instant(0), &p, &hint), Some(PathId(1)));
        // Avoids a path the I/O failed on.
        let avoid = IoHint {
            avoid: 0b010,
            ..hint
        };
        assert_eq!(mru.select(Instant(0), &p, &avoid), Some(PathId(0)));
        p[0].state = PathState::Dead;
        p[1].state = PathState::Dead;
        p[2].state = PathState::Standby;
        assert_eq!(mru.select(Instant(0), &p, &hint), Some(PathId(2)));
        p[2].state = PathState::Dead;
        assert_eq!(mru.select(Instant(0), &p, &hint), None);
    }
}
