//! `VMW_SATP_ALUA`: asymmetric logical unit access (SPC-4 5.16).

use core::time::Duration;

use block::{BlockError, ErrorKind, Instant};
use psa::{
    Activation, ActivationOutcome, DefaultAa, Path, PathId, PathState, SATP_DATA_MAX, Satp,
    SatpAction, SatpCommand,
};
use scsi::cdb::CdbRepr;
use scsi::{AccessState, Asc, CdbBytes, CommandCompletion, SenseKey, ServiceResponse};

use crate::retry::{ActivationRetry, Gate, RetryState};
use crate::{any_usable, set_state};

/// ASC/ASCQ 2A/07: IMPLICIT ASYMMETRIC ACCESS STATE TRANSITION FAILED.
pub const IMPLICIT_TRANSITION_FAILED: Asc = Asc::new(0x2A, 0x07);
/// ASC/ASCQ 04/03 (an active/passive controller's NOT READY), treated like standby.
const MANUAL_INTERVENTION: Asc = Asc::new(0x04, 0x03);

/// The tunables of [`Alua`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AluaConfig {
    /// Explicit ALUA: send SET TARGET PORT GROUPS to make a group active/optimized when no
    /// usable path is left (implicit-only arrays: `false`, the SATP waits for the array).
    pub explicit: bool,
    /// How often the groups are re-read while a transition lasts. Default 2 s.
    pub reread_interval: Duration,
    /// How long a transition (02/04/0A) is retried before the path is given up as
    /// unavailable. Default 60 s.
    pub transition_timeout: Duration,
    /// Delay before retrying an I/O that met 02/04/0A. Default 100 ms.
    pub transition_retry: Duration,
    /// Delay before re-reading the groups after a failed REPORT TARGET PORT GROUPS. Default
    /// 100 ms.
    pub reread_retry: Duration,
    /// How a failed SET TARGET PORT GROUPS is retried, per target port group, and for how
    /// long the SATP gives up on a group after the last retry failed (default: 3 retries 2 s
    /// apart, then 30 s).
    pub retry: ActivationRetry,
    /// The SATP everything not ALUA-specific is delegated to.
    pub base: DefaultAa,
}

impl Default for AluaConfig {
    fn default() -> Self {
        Self {
            explicit: true,
            reread_interval: Duration::from_secs(2),
            transition_timeout: Duration::from_secs(60),
            transition_retry: Duration::from_millis(100),
            reread_retry: Duration::from_millis(100),
            retry: ActivationRetry::default(),
            base: DefaultAa::default(),
        }
    }
}

/// `VMW_SATP_ALUA`: keeps each path in the state of its target port group (AO -> active,
/// ANO -> active unoptimized, standby, unavailable/offline -> unavailable, transitioning), read
/// with REPORT TARGET PORT GROUPS through its own commands (needs
/// [`psa::NmpConfig::scratch`]).
///
/// Sense / transport error -> action (everything else as [`DefaultAa`]):
///
/// | answer | path state | groups | action |
/// |---|---|---|---|
/// | service delivery failure | dead | - | fail over |
/// | NOT READY 04/0A (transitioning), within `transition_timeout` | transitioning if another path is usable | re-read now, then every `reread_interval` | fail over if another path is usable, else retry after `transition_retry` |
/// | NOT READY 04/0A beyond `transition_timeout` | unavailable | re-read | fail over |
/// | NOT READY 04/0B (standby), 04/03 | standby | re-read | fail over; if no usable path is left: activate (explicit; see below for failed activations) or fail over after `transition_retry` (implicit) |
/// | NOT READY 04/0C (unavailable) | unavailable | re-read | fail over; if none is left: as standby |
/// | UNIT ATTENTION 2A/06 (state changed), 2A/07 (implicit transition failed) | - | re-read | retry at once |
/// | anything else | as [`DefaultAa`] | - | as [`DefaultAa`] |
///
/// Follow-over: the SATP changes group states only with SET TARGET PORT GROUPS, and only when
/// no usable path is left; a state change it reads that it did not cause (another host's SET
/// TARGET PORT GROUPS, an array-side trespass, an implicit transition) is adopted and never
/// reverted ([`Alua::followed`] counts them).
///
/// A failed SET TARGET PORT GROUPS ([`Satp::activation_done`]) falls back to implicit
/// behaviour: the groups are re-read at once and whatever is active/optimized or
/// non-optimized is used, while the failed group is retried at most `retry.retries` times
/// per cycle (see [`ActivationRetry`] and [`crate::retry::FailureKind`]), then given up on
/// for `retry.give_up`; another candidate group (standby, transitioning) is tried meanwhile:
///
/// | answer to SET TARGET PORT GROUPS | path state | groups | next activation of that group |
/// |---|---|---|---|
/// | GOOD | the group's paths active | the group AO; re-read | none needed; the group's retry state is cleared |
/// | service delivery failure (the path died under it) | dead (probed back) | re-read | at once, on another path |
/// | UNIT ATTENTION (2A/06 and the like), ABORTED COMMAND, TASK ABORTED | - | re-read | at once |
/// | NOT READY (04/0A transitioning, 04/0B, 04/0C), BUSY, TASK SET FULL, anything else | - | re-read | after `retry.delay` |
/// | ILLEGAL REQUEST (05/20/00 implicit-only array, 05/24/00, 05/26/00, 05/1A/00) | - | re-read | none: give up at once |
/// | any failure after `retry.retries` retries | - | re-read | none: give up for `retry.give_up` |
///
/// A request that finds no usable path while no group may be activated fails over after the
/// rest of the earliest back-off, or, when every candidate group has been given up on, fails
/// with NOT READY. "At once" still waits for the NMP's `activation_interval`.
#[derive(Debug, Clone)]
pub struct Alua<const G: usize = 4> {
    config: AluaConfig,
    groups: heapless::Vec<(u16, AccessState), G>,
    next_read: Option<Instant>,
    transition_since: Option<Instant>,
    caused: Option<u16>,
    activating: Option<u16>,
    reads: u32,
    followed: u32,
    activations: u32,
    activation_failures: u32,
    give_ups: u32,
    /// The retry state of each group an activation failed for (at most `G`).
    retry: heapless::Vec<(u16, RetryState), G>,
    /// A read of the groups is outstanding.
    reading: bool,
}

impl<const G: usize> Alua<G> {
    /// An SATP with `config`; the groups are read at the first poll.
    pub fn new(config: AluaConfig) -> Self {
        Self {
            config,
            groups: heapless::Vec::new(),
            next_read: Some(Instant::ZERO),
            transition_since: None,
            caused: None,
            activating: None,
            reads: 0,
            followed: 0,
            activations: 0,
            activation_failures: 0,
            give_ups: 0,
            retry: heapless::Vec::new(),
            reading: false,
        }
    }

    /// The group states last read.
    pub fn groups(&self) -> &[(u16, AccessState)] {
        &self.groups
    }

    /// Completed reads of the target port groups.
    pub fn reads(&self) -> u32 {
        self.reads
    }

    /// Group state changes read that this host did not cause (followed, not reverted).
    pub fn followed(&self) -> u32 {
        self.followed
    }

    /// SET TARGET PORT GROUPS commands sent.
    pub fn activations(&self) -> u32 {
        self.activations
    }

    /// SET TARGET PORT GROUPS commands that failed (any answer but GOOD, or never sent).
    pub fn activation_failures(&self) -> u32 {
        self.activation_failures
    }

    /// Times the SATP gave up on a group (after the last retry of a cycle failed, or an
    /// answer no retry can change).
    pub fn give_ups(&self) -> u32 {
        self.give_ups
    }

    /// The retry state of group `id` (`None`: no activation of it has failed lately).
    pub fn retry_state(&self, id: u16) -> Option<&RetryState> {
        self.retry.iter().find(|r| r.0 == id).map(|r| &r.1)
    }

    /// Whether group `id` may be activated at `now`.
    fn gate(&mut self, id: u16, now: Instant) -> Gate {
        match self.retry.iter_mut().find(|r| r.0 == id) {
            Some((_, state)) => state.gate(now),
            None => Gate::Open,
        }
    }

    /// The retry state of group `id`, added if missing (replacing a clear entry, or the
    /// first one, when all `G` are taken).
    fn retry_entry(&mut self, id: u16) -> Option<&mut RetryState> {
        let index = match self.retry.iter().position(|r| r.0 == id) {
            Some(i) => i,
            None => {
                let entry = (id, RetryState::new());
                if self.retry.push(entry).is_ok() {
                    self.retry.len() - 1
                } else {
                    let i = self.retry.iter().position(|r| r.1.is_clear()).unwrap_or(0);
                    *self.retry.get_mut(i)? = entry;
                    i
                }
            }
        };
        self.retry.get_mut(index).map(|r| &mut r.1)
    }

    /// The groups an activation may make AO, best first: the first reachable path of each
    /// group that is not unavailable (unoptimized before standby before transitioning).
    fn candidates(paths: &[Path]) -> impl Iterator<Item = (usize, u16)> + '_ {
        let rank = |p: &Path| match p.state {
            PathState::ActiveUnoptimized => Some(0u8),
            PathState::Standby => Some(1),
            PathState::Transitioning => Some(2),
            _ => None,
        };
        (0u8..3).flat_map(move |r| {
            paths.iter().enumerate().filter_map(move |(i, p)| {
                let group = p.group?;
                (rank(p) == Some(r)).then_some((i, group))
            })
        })
    }

    /// Since when a transition has been seen (02/04/0A or a transitioning group).
    pub fn transition_since(&self) -> Option<Instant> {
        self.transition_since
    }

    fn reread_at(&mut self, at: Instant) {
        self.next_read = Some(self.next_read.map_or(at, |t| t.min(at)));
    }

    fn group_state(&self, id: u16) -> Option<AccessState> {
        self.groups.iter().find(|g| g.0 == id).map(|g| g.1)
    }

    /// Applies group states to the paths (dead paths keep dead, but come back in the
    /// group's state).
    fn apply(&self, paths: &mut [Path]) {
        for p in paths.iter_mut() {
            let Some(state) = p.group.and_then(|g| self.group_state(g)) else {
                continue;
            };
            let state = PathState::from_access_state(state);
            if state.is_usable() {
                p.alive_state = state;
            }
            if p.state != PathState::Dead {
                p.state = state;
            }
        }
    }

    fn parse(&mut self, data: &[u8]) -> bool {
        let Ok((_, groups)) = scsi::response::parse_target_port_groups(data) else {
            return false;
        };
        let mut next: heapless::Vec<(u16, AccessState), G> = heapless::Vec::new();
        for g in groups.flatten() {
            if let Some(state) = AccessState::from_code(g.state_code) {
                let _ = next.push((g.id, state));
            }
        }
        if next.is_empty() {
            return false;
        }
        for (id, state) in next.iter() {
            let before = self.group_state(*id);
            if before.is_some_and(|b| b != *state)
                && !(self.caused == Some(*id) && *state == AccessState::ActiveOptimized)
            {
                self.followed = self.followed.saturating_add(1);
            }
        }
        self.caused = None;
        self.groups = next;
        true
    }

    fn no_usable_left(&mut self, now: Instant, paths: &[Path]) -> SatpAction {
        if any_usable(paths) {
            return SatpAction::Failover {
                delay: Duration::ZERO,
            };
        }
        if !self.config.explicit {
            return SatpAction::Failover {
                delay: self.config.transition_retry,
            };
        }
        // The gate of every candidate group: activate if one is open; otherwise wait for the
        // earliest back-off; fail if every one was given up on.
        let mut wait: Option<Duration> = None;
        let mut given_up = false;
        for (_, group) in Self::candidates(paths) {
            match self.gate(group, now) {
                Gate::Open => return SatpAction::Activate,
                Gate::Wait(d) => wait = Some(wait.map_or(d, |w| w.min(d))),
                Gate::GivenUp => given_up = true,
            }
        }
        match wait {
            Some(delay) => SatpAction::Failover { delay },
            None if given_up => SatpAction::Fail(BlockError::new(ErrorKind::NotReady)),
            // No candidate (every path dead or unavailable): the NMP finds nothing to
            // activate and retries the request.
            None => SatpAction::Activate,
        }
    }
}

impl<const G: usize> Default for Alua<G> {
    fn default() -> Self {
        Self::new(AluaConfig::default())
    }
}

impl<const G: usize> Satp for Alua<G> {
    fn name(&self) -> &'static str {
        crate::VMW_SATP_ALUA
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
        {
            match (sense.key, sense.asc) {
                (SenseKey::NOT_READY, Asc::ASYMMETRIC_ACCESS_TRANSITION) => {
                    let since = *self.transition_since.get_or_insert(now);
                    if self.next_read.is_none() {
                        self.reread_at(now);
                    }
                    if now.0.saturating_sub(since.0)
                        > self.config.transition_timeout.as_nanos() as u64
                    {
                        set_state(paths, path, PathState::Unavailable);
                        return self.no_usable_left(now, paths);
                    }
                    let others = paths
                        .iter()
                        .enumerate()
                        .any(|(i, p)| i != usize::from(path.0) && p.state.is_usable());
                    if others {
                        set_state(paths, path, PathState::Transitioning);
                        return SatpAction::Failover {
                            delay: Duration::ZERO,
                        };
                    }
                    return SatpAction::Retry {
                        delay: self.config.transition_retry,
                    };
                }
                (SenseKey::NOT_READY, Asc::TARGET_PORT_STANDBY)
                | (SenseKey::NOT_READY, MANUAL_INTERVENTION) => {
                    set_state(paths, path, PathState::Standby);
                    self.reread_at(now);
                    return self.no_usable_left(now, paths);
                }
                (SenseKey::NOT_READY, Asc::TARGET_PORT_UNAVAILABLE) => {
                    set_state(paths, path, PathState::Unavailable);
                    self.reread_at(now);
                    return self.no_usable_left(now, paths);
                }
                (SenseKey::UNIT_ATTENTION, Asc::ASYMMETRIC_ACCESS_STATE_CHANGED)
                | (SenseKey::UNIT_ATTENTION, IMPLICIT_TRANSITION_FAILED) => {
                    self.reread_at(now);
                    return SatpAction::Retry {
                        delay: Duration::ZERO,
                    };
                }
                _ => {}
            }
        }
        self.config.base.evaluate(now, path, paths, completion)
    }

    fn path_ok(&mut self, now: Instant, path: PathId, paths: &mut [Path]) {
        let i = usize::from(path.0);
        let Some(p) = paths.get_mut(i) else { return };
        // A probe or I/O answered GOOD: the path is reachable; its state is its group's.
        let known = p.group.and_then(|g| self.group_state(g));
        match known {
            Some(state) => {
                let state = PathState::from_access_state(state);
                p.state = state;
                if !state.is_usable() {
                    self.reread_at(now);
                }
            }
            None => {
                p.state = p.alive_state;
                if !p.state.is_usable() {
                    p.state = PathState::ActiveUnoptimized;
                }
            }
        }
    }

    fn activation(&mut self, now: Instant, paths: &[Path]) -> Option<Activation> {
        // Only when no usable path is left (a probe may have brought one back since).
        if !self.config.explicit || any_usable(paths) {
            return None;
        }
        // The best candidate group that may be activated now: it becomes AO.
        let mut chosen = None;
        for (i, group) in Self::candidates(paths) {
            if self.gate(group, now) == Gate::Open {
                chosen = Some((i, group));
                break;
            }
        }
        let (i, group) = chosen?;
        let mut data = heapless::Vec::new();
        data.extend_from_slice(&[0, 0, 0, 0]).ok()?;
        data.extend_from_slice(&[AccessState::ActiveOptimized.code(), 0])
            .ok()?;
        data.extend_from_slice(&group.to_be_bytes()).ok()?;
        let cdb = CdbBytes::from_repr(&CdbRepr::SetTargetPortGroups {
            parameter_list_length: data.len() as u32,
        });
        let path = PathId(u16::try_from(i).ok()?);
        self.activating = Some(group);
        self.activations = self.activations.saturating_add(1);
        Some(Activation { path, cdb, data })
    }

    fn activation_done(
        &mut self,
        now: Instant,
        activation: &Activation,
        paths: &mut [Path],
        outcome: ActivationOutcome,
    ) {
        let group = self.activating.take().or_else(|| {
            paths
                .get(usize::from(activation.path.0))
                .and_then(|p| p.group)
        });
        // Whatever the answer, read what the groups are now.
        self.reread_at(now);
        let Some(group) = group else { return };
        if outcome.is_good() {
            // SET TARGET PORT GROUPS succeeded: the group is active/optimized.
            if let Some(state) = self.retry_entry(group) {
                state.succeeded();
            }
            self.caused = Some(group);
            if let Some(g) = self.groups.iter_mut().find(|g| g.0 == group) {
                g.1 = AccessState::ActiveOptimized;
            }
            self.apply(paths);
            if let Some(p) = paths.get_mut(usize::from(activation.path.0))
                && !p.state.is_usable()
            {
                p.state = PathState::Active;
            }
            return;
        }
        // Implicit behaviour meanwhile: the re-read shows what is AO/ANO.
        self.activation_failures = self.activation_failures.saturating_add(1);
        if outcome == ActivationOutcome::Transport {
            set_state(paths, activation.path, PathState::Dead);
        }
        let config = self.config.retry;
        if let Some(state) = self.retry_entry(group)
            && state.failed(now, outcome, &config)
        {
            self.give_ups = self.give_ups.saturating_add(1);
        }
    }

    fn poll_command(&mut self, now: Instant, paths: &[Path]) -> Option<SatpCommand> {
        // Asked only while no command or activation of this SATP is outstanding (its
        // `activation_done` has come).
        self.reading = false;
        self.activating = None;
        if self.next_read.is_none_or(|t| t > now) {
            return None;
        }
        // Any path that is not dead answers REPORT TARGET PORT GROUPS (usable ones first).
        let Some(i) = paths
            .iter()
            .position(|p| p.state.is_usable())
            .or_else(|| paths.iter().position(|p| p.state != PathState::Dead))
        else {
            self.next_read = Some(now.saturating_add(self.config.reread_retry));
            return None;
        };
        self.next_read = None;
        self.reading = true;
        Some(SatpCommand {
            path: PathId(u16::try_from(i).ok()?),
            cdb: CdbBytes::from_repr(&CdbRepr::ReportTargetPortGroups {
                extended: true,
                allocation_length: SATP_DATA_MAX as u32,
            }),
            data_out: heapless::Vec::new(),
            data_in_len: SATP_DATA_MAX as u16,
        })
    }

    fn command_done(
        &mut self,
        now: Instant,
        command: &SatpCommand,
        paths: &mut [Path],
        completion: &CommandCompletion,
        data_in: &[u8],
    ) {
        self.reading = false;
        let _ = command;
        if !completion.is_good() || !self.parse(data_in) {
            self.reread_at(now.saturating_add(self.config.reread_retry));
            return;
        }
        self.reads = self.reads.saturating_add(1);
        self.apply(paths);
        if self
            .groups
            .iter()
            .any(|g| g.1 == AccessState::Transitioning)
        {
            self.transition_since.get_or_insert(now);
            self.reread_at(now.saturating_add(self.config.reread_interval));
        } else if let Some(since) = self.transition_since {
            // A path still answering 02/04/0A re-arms the timer; keep re-reading every
            // interval until the groups show no transition and paths were seen good.
            let _ = since;
            self.transition_since = None;
        }
    }

    /// The next read of the groups; none while a read or an activation is outstanding (the
    /// NMP does not ask for commands then, so a due time would only spin simulated time; the
    /// completion is a wake-up of its own).
    fn next_event(&self) -> Option<Instant> {
        if self.reading || self.activating.is_some() {
            return None;
        }
        self.next_read
    }
}
