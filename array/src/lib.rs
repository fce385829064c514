#![cfg_attr(not(feature = "std"), no_std)]
#![doc = include_str!("../README.md")]

mod fault;
mod trespass;

use core::time::Duration;

use block::{BlockDevice, DEFAULT_SG_CAPACITY, Instant, Memory, Tag};
use scsi::cdb::{Cdb, CdbRepr};
use scsi::lun::MAX_REPORTED_LUNS;
use scsi::{
    AccessState, Asc, Command, CommandCompletion, InitiatorId, Lun, LunConfig, PortGroup, Residual,
    SenseFormat, SenseKey, SenseRepr, ServiceResponse, Status, Transport, TransportSubmitError,
    TransportSubmitErrorKind,
};

use fault::Rng;
pub use fault::{Fault, LinkFailure, ScheduledFault};
pub use trespass::{TRESPASS_CODE, TRESPASS_LONG_LEN, TRESPASS_PAGE, TRESPASS_SHORT_LEN};

/// Controllers (storage processors) an array can have.
pub const MAX_CONTROLLERS: usize = 4;
/// I_T nexuses the array remembers (for I_T NEXUS LOSS unit attentions).
pub const MAX_NEXUSES: usize = 32;

/// ASC/ASCQ 04/03: LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED, what an
/// active/passive array answers on the passive controller.
pub const ASC_NOT_READY_MANUAL_INTERVENTION: Asc = Asc::new(0x04, 0x03);

/// How the array presents a LUN on the ports of its controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Personality {
    /// Every port of every controller serves every LUN equally.
    ActiveActive,
    /// A LUN is owned by one controller; media commands on another controller's ports answer
    /// NOT READY, MANUAL INTERVENTION REQUIRED (02/04/03). The command named by
    /// [`ArrayConfig::trespass`] on a port of another controller moves ownership there (an
    /// explicit trespass): START STOP UNIT (START), or MODE SELECT with the CLARiiON trespass
    /// page 0x22.
    ActivePassive {
        /// A media command on a non-owner port moves ownership there instead of failing
        /// (auto-trespass).
        implicit_trespass: bool,
    },
    /// Asymmetric logical unit access: one target port group per controller, the owner's
    /// active/optimized and the others in `non_owner` state.
    Alua {
        /// TPGS explicit as well as implicit: SET TARGET PORT GROUPS is accepted.
        explicit: bool,
        /// The access state of the non-owner groups (active/non-optimized or standby).
        non_owner: AccessState,
    },
}

/// The command an active/passive array takes as an explicit trespass. Real arrays take one:
/// START STOP UNIT is a trespass on arrays driven by Linux `scsi_dh_hp_sw` (HP MSA and the
/// like), while a CLARiiON (Linux `scsi_dh_emc`, ESXi `VMW_SATP_CX`) moves a LU only on the
/// MODE SELECT trespass page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TrespassCommand {
    /// START STOP UNIT with START on a port of a non-owner controller moves the LU there.
    /// MODE SELECT is not special: on the passive controller it answers 02/04/03 like a media
    /// command, on the owner the LU answers it (05/26/00 for page 0x22, a page it does not
    /// know).
    #[default]
    StartStopUnit,
    /// MODE SELECT (6) or (10) whose parameter list holds the CLARiiON trespass page 0x22
    /// moves the LU to the controller of the port that received it (the same change as a
    /// START STOP UNIT trespass); on the owner it is accepted and changes nothing. START STOP
    /// UNIT is not a trespass: on the passive controller it answers 02/04/03 like a media
    /// command. Every move of the LU (this trespass, an implicit one, a failover) is reported
    /// to each initiator as UNIT ATTENTION 06/29/00 on its next command, as CLARiiONs do.
    ///
    /// The parameter list is the mode parameter header (4 bytes after MODE SELECT (6), 8
    /// after (10); its BLOCK DESCRIPTOR LENGTH is honoured), then the page in one of the two
    /// forms Linux `scsi_dh_emc` sends, either form after either CDB:
    ///
    /// | page byte | short form (FC series) | long form (CX / AX series) |
    /// |---|---|---|
    /// | 0 | PAGE CODE 0x22 ([`TRESPASS_PAGE`]; SPF 0, PS ignored) | the same |
    /// | 1 | PAGE LENGTH 0x02 ([`TRESPASS_SHORT_LEN`]) | PAGE LENGTH 0x09 ([`TRESPASS_LONG_LEN`]) |
    /// | 2 | bit 7: HR, honour reservations (ignored); bits 6..0: TRESPASS CODE 0x01 ([`TRESPASS_CODE`]) | the same |
    /// | 3 | TRESPASS TARGET 0xFF: the LU addressed | 3..=4: TRESPASS TARGET 0xFFFF |
    /// | 5..=10 | | reserved (ignored) |
    ///
    /// So the short form is `15 10 00 00 08 00` with `00 00 00 00 22 02 01 FF`, and the long
    /// form `55 10 00 00 00 00 00 00 13 00` with `00 x8, 22 09 01 FF FF 00 x6`.
    ///
    /// The array reads the header of every MODE SELECT (on either controller) to find the
    /// page. The trespass page must be the only page. Errors (CHECK CONDITION, nothing
    /// moves), checked in this order:
    ///
    /// | condition | sense |
    /// |---|---|
    /// | (a nonzero PARAMETER LIST LENGTH and) SP set; PF clear | 05/24/00, field pointer to CDB byte 1 bit 0 / bit 4 |
    /// | a data-in buffer | 05/0E/03 |
    /// | PARAMETER LIST LENGTH beyond the data-out buffer | 05/24/00, pointer to CDB byte 4 (6) / 7 (10) |
    /// | list shorter than the header | 05/1A/00 PARAMETER LIST LENGTH ERROR |
    /// | the buffer is outside the initiator's memory | 0B/4B/00 DATA PHASE ERROR |
    /// | block descriptors beyond the list | 05/26/00, pointer to the BLOCK DESCRIPTOR LENGTH |
    /// | page 0x22 with SPF set | 05/26/00, pointer to the page code, bit 6 |
    /// | PAGE LENGTH other than 0x02 or 0x09 | 05/26/00, pointer to the page length |
    /// | list ends inside the page | 05/1A/00 |
    /// | TRESPASS CODE other than 0x01 | 05/26/00, pointer to page byte 2 |
    /// | TRESPASS TARGET other than all ones | 05/26/00, pointer to page byte 3 |
    /// | bytes after the page (another page) | 05/26/00, pointer to the first of them |
    ///
    /// A list with no page, or whose first page is another one, is not a trespass: 02/04/03
    /// on the passive controller (or an implicit trespass), the LU on the owner.
    ///
    /// The parameter list is read from the initiator's memory when the array is next
    /// polled, and the trespass happens then.
    ModeSelectPage22,
}

/// The array's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ArrayConfig {
    /// The personality.
    pub personality: Personality,
    /// Service time of every command, in simulated time.
    pub latency: Duration,
    /// How long a command lost on a dead link takes to fail (the initiator's command timeout).
    pub command_timeout: Duration,
    /// When a controller fails, its LUNs move to a surviving controller.
    pub failover: bool,
    /// Seed of the fault decisions (congestion).
    pub seed: u64,
    /// The explicit trespass command of an active/passive array.
    pub trespass: TrespassCommand,
}

impl ArrayConfig {
    /// A configuration of `personality` with zero latency, a 5 s command timeout, failover on
    /// controller failure and seed 0.
    pub const fn new(personality: Personality) -> Self {
        Self {
            personality,
            latency: Duration::ZERO,
            command_timeout: Duration::from_secs(5),
            failover: true,
            seed: 0,
            trespass: TrespassCommand::StartStopUnit,
        }
    }

    /// The same configuration with `latency` per command.
    pub const fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The same configuration with `seed`.
    pub const fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The same configuration with `trespass` as the explicit trespass command (of an
    /// active/passive personality; other personalities ignore it).
    pub const fn with_trespass(mut self, trespass: TrespassCommand) -> Self {
        self.trespass = trespass;
        self
    }
}

/// Why the array refused a configuration step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// A fixed capacity is exhausted.
    Full,
    /// A port or LUN with that identifier exists.
    Duplicate,
    /// The controller index is out of range.
    UnknownController,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::Full => "array capacity exhausted",
            ConfigError::Duplicate => "identifier already in use",
            ConfigError::UnknownController => "no such controller",
        })
    }
}

impl core::error::Error for ConfigError {}

/// Counters of what the array did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ArrayStats {
    /// Commands accepted.
    pub commands: u64,
    /// Commands that reached a logical unit.
    pub executed: u64,
    /// Service delivery failures (timeouts and transport errors).
    pub delivery_failures: u64,
    /// BUSY and TASK SET FULL answers.
    pub congested: u64,
    /// NOT READY answers on a passive controller.
    pub passive: u64,
    /// Trespasses (explicit, implicit or by failover): moves of a LU's ownership.
    pub trespasses: u64,
    /// START STOP UNIT trespass commands accepted (on a non-owner controller).
    pub start_stop_trespasses: u64,
    /// MODE SELECT trespass page 0x22 commands accepted (on any controller; on the owner
    /// they move nothing).
    pub page22_trespasses: u64,
}

#[derive(Debug, Clone, Copy)]
struct Port {
    id: u16,
    controller: u8,
    down: Option<LinkFailure>,
    extra_latency: Duration,
    flap: Option<Flap>,
}

#[derive(Debug, Clone, Copy)]
struct Flap {
    start: Instant,
    period_ns: u64,
    until: Instant,
    failure: LinkFailure,
}

impl Flap {
    fn down_at(&self, now: Instant) -> bool {
        if now < self.start || now >= self.until || self.period_ns == 0 {
            return false;
        }
        ((now.0 - self.start.0) / self.period_ns).is_multiple_of(2)
    }

    fn next_toggle(&self, now: Instant) -> Option<Instant> {
        if now >= self.until || self.period_ns == 0 {
            return None;
        }
        if now < self.start {
            return Some(self.start);
        }
        let phase = (now.0 - self.start.0) / self.period_ns;
        let next = phase
            .checked_add(1)?
            .checked_mul(self.period_ns)?
            .checked_add(self.start.0)?;
        Some(Instant(next.min(self.until.0)))
    }
}

#[derive(Debug, Clone, Copy)]
struct Congestion {
    port: Option<u16>,
    status: Status,
    permille: u16,
    until: Instant,
}

#[derive(Debug, Clone, Copy)]
struct PendingTransition {
    at: Instant,
    group: u16,
    to: AccessState,
}

struct LunSlot<D, const Q: usize, const SG: usize> {
    lun: Lun<D, Q, SG>,
    number: u64,
    owner: u8,
    removed: bool,
    limit: Option<u16>,
    transitions: heapless::Vec<PendingTransition, 4>,
}

enum SlotState<const SG: usize> {
    Queued(Command<SG>),
    /// A MODE SELECT on an array that takes the trespass page, its parameter list not yet
    /// read.
    Select(Command<SG>, trespass::ModeSelect),
    AtLun,
    Done {
        completion: CommandCompletion,
        due: Instant,
        lost: bool,
    },
}

struct Slot<const SG: usize> {
    tag: Tag,
    port: usize,
    lun: Option<usize>,
    submitted: Instant,
    state: SlotState<SG>,
}

/// A simulated storage array over `LUNS` logical units on `PORTS` target ports, with up to
/// `Q` commands in flight and `F` scheduled faults. It implements [`scsi::Transport`]: a
/// command's [`scsi::Nexus`] names the initiator port, the target port (by relative target
/// port identifier) and the LUN.
///
/// Every accepted command completes exactly once, in simulated time: after the configured
/// latency (plus any extra latency of its port), or after the command timeout if its link is
/// down in [`LinkFailure::Timeout`] mode.
pub struct Array<
    D,
    const LUNS: usize,
    const PORTS: usize,
    const Q: usize,
    const F: usize,
    const SG: usize = DEFAULT_SG_CAPACITY,
> {
    config: ArrayConfig,
    ports: heapless::Vec<Port, PORTS>,
    failed: [bool; MAX_CONTROLLERS],
    all_down: Option<LinkFailure>,
    luns: heapless::Vec<LunSlot<D, Q, SG>, LUNS>,
    slots: [Option<Slot<SG>>; Q],
    in_use: usize,
    schedule: heapless::Vec<ScheduledFault, F>,
    next_fault: usize,
    congestion: Option<Congestion>,
    nexuses: heapless::Vec<(InitiatorId, u16), MAX_NEXUSES>,
    rng: Rng,
    stats: ArrayStats,
}

fn check(key: SenseKey, asc: Asc) -> SenseRepr {
    SenseRepr::new(key, asc)
}

fn is_exempt_from_ownership(opcode: u8) -> bool {
    // INQUIRY, REQUEST SENSE, REPORT LUNS, MAINTENANCE IN (REPORT TARGET PORT GROUPS).
    matches!(opcode, 0x12 | 0x03 | 0xA0 | 0xA3)
}

const START_STOP_UNIT: u8 = 0x1B;
const MODE_SELECT_6: u8 = 0x15;
const MODE_SELECT_10: u8 = 0x55;

impl<D, const LUNS: usize, const PORTS: usize, const Q: usize, const F: usize, const SG: usize>
    Array<D, LUNS, PORTS, Q, F, SG>
where
    D: BlockDevice<SG>,
{
    /// An empty array.
    pub fn new(config: ArrayConfig) -> Self {
        Self {
            config,
            ports: heapless::Vec::new(),
            failed: [false; MAX_CONTROLLERS],
            all_down: None,
            luns: heapless::Vec::new(),
            slots: core::array::from_fn(|_| None),
            in_use: 0,
            schedule: heapless::Vec::new(),
            next_fault: 0,
            congestion: None,
            nexuses: heapless::Vec::new(),
            rng: Rng::new(config.seed),
            stats: ArrayStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ArrayConfig {
        &self.config
    }

    /// Adds target port `id` (its relative target port identifier) on `controller`. Add the
    /// ports before the LUNs: ALUA port groups are made from them.
    pub fn add_port(&mut self, id: u16, controller: u8) -> Result<(), ConfigError> {
        if usize::from(controller) >= MAX_CONTROLLERS {
            return Err(ConfigError::UnknownController);
        }
        if self.ports.iter().any(|p| p.id == id) {
            return Err(ConfigError::Duplicate);
        }
        self.ports
            .push(Port {
                id,
                controller,
                down: None,
                extra_latency: Duration::ZERO,
                flap: None,
            })
            .map_err(|_| ConfigError::Full)
    }

    /// Adds a LUN over `device` with identity `config` (its LUN number is `config.lun`),
    /// owned by `owner` (the active controller for active/passive, the active/optimized
    /// group for ALUA). For ALUA the array replaces the configuration's port groups with one
    /// group per controller (group id = controller index + 1).
    pub fn add_lun(
        &mut self,
        device: D,
        mut config: LunConfig,
        owner: u8,
    ) -> Result<(), ConfigError> {
        if usize::from(owner) >= MAX_CONTROLLERS {
            return Err(ConfigError::UnknownController);
        }
        if self.luns.iter().any(|l| l.number == config.lun) {
            return Err(ConfigError::Duplicate);
        }
        if self.luns.is_full() || self.luns.len() >= MAX_REPORTED_LUNS {
            return Err(ConfigError::Full);
        }
        if let Personality::Alua {
            explicit,
            non_owner,
        } = self.config.personality
        {
            let mut groups: heapless::Vec<PortGroup, { scsi::lun::MAX_PORT_GROUPS }> =
                heapless::Vec::new();
            for controller in 0..MAX_CONTROLLERS as u8 {
                let mut ids: heapless::Vec<u16, { scsi::lun::MAX_PORTS_PER_GROUP }> =
                    heapless::Vec::new();
                for port in self.ports.iter().filter(|p| p.controller == controller) {
                    let _ = ids.push(port.id);
                }
                if ids.is_empty() {
                    continue;
                }
                let state = if controller == owner {
                    AccessState::ActiveOptimized
                } else {
                    non_owner
                };
                let mut group = PortGroup::new(u16::from(controller) + 1, state, &ids);
                group.preferred = controller == owner;
                let _ = groups.push(group);
            }
            config = config.with_alua(if explicit { 3 } else { 1 }, &groups);
        }
        let number = config.lun;
        let slot = LunSlot {
            lun: Lun::new(device, config),
            number,
            owner,
            removed: false,
            limit: None,
            transitions: heapless::Vec::new(),
        };
        self.luns.push(slot).map_err(|_| ConfigError::Full)?;
        self.refresh_report_luns();
        Ok(())
    }

    fn refresh_report_luns(&mut self) {
        let mut list: heapless::Vec<u64, MAX_REPORTED_LUNS> = heapless::Vec::new();
        for l in self.luns.iter().filter(|l| !l.removed) {
            let _ = list.push(l.number);
        }
        for l in self.luns.iter_mut() {
            l.lun.set_report_luns(&list);
        }
    }

    /// Schedules `fault` at `at`. Faults strike in time order (equal times in the order they
    /// were scheduled) when `poll` reaches them.
    pub fn schedule(&mut self, at: Instant, fault: Fault) -> Result<(), ConfigError> {
        let entry = ScheduledFault { at, fault };
        let position = self.schedule[self.next_fault..]
            .iter()
            .position(|s| s.at > at)
            .map(|p| p + self.next_fault)
            .unwrap_or(self.schedule.len());
        self.schedule
            .insert(position, entry)
            .map_err(|_| ConfigError::Full)
    }

    /// The LU of LUN `number`.
    pub fn lun(&self, number: u64) -> Option<&Lun<D, Q, SG>> {
        self.luns
            .iter()
            .find(|l| l.number == number)
            .map(|l| &l.lun)
    }

    /// The LU of LUN `number`, mutably (for test doubles and inspection).
    pub fn lun_mut(&mut self, number: u64) -> Option<&mut Lun<D, Q, SG>> {
        self.luns
            .iter_mut()
            .find(|l| l.number == number)
            .map(|l| &mut l.lun)
    }

    /// The controller owning LUN `number` (for ALUA, the controller of an active/optimized
    /// group, which SET TARGET PORT GROUPS may have changed).
    pub fn owner(&self, number: u64) -> Option<u8> {
        self.luns
            .iter()
            .find(|l| l.number == number)
            .map(|l| alua_owner(l).unwrap_or(l.owner))
    }

    /// Follows explicit ALUA transitions (SET TARGET PORT GROUPS) into the owner field.
    fn sync_owners(&mut self) {
        for l in self.luns.iter_mut() {
            if let Some(owner) = alua_owner(l) {
                l.owner = owner;
            }
        }
    }

    /// Commands accepted and not yet completed.
    pub fn outstanding(&self) -> usize {
        self.in_use
    }

    /// What the array has done so far.
    pub fn stats(&self) -> ArrayStats {
        self.stats
    }

    fn port_index(&self, id: u16) -> Option<usize> {
        self.ports.iter().position(|p| p.id == id)
    }

    /// Whether port `index` is unreachable at `now`, and how.
    fn port_failure(&self, index: usize, now: Instant) -> Option<LinkFailure> {
        let port = self.ports.get(index)?;
        if let Some(f) = self.all_down {
            return Some(f);
        }
        if self.failed[usize::from(port.controller)] {
            return Some(LinkFailure::Timeout);
        }
        if let Some(f) = port.down {
            return Some(f);
        }
        match port.flap {
            Some(flap) if flap.down_at(now) => Some(flap.failure),
            _ => None,
        }
    }

    fn nexus_loss_on_port(&mut self, port: u16) {
        for (initiator, p) in self.nexuses.iter() {
            if *p == port {
                for l in self.luns.iter_mut() {
                    l.lun.nexus_loss(*initiator);
                }
            }
        }
    }

    fn first_alive_controller(&self, except: u8) -> Option<u8> {
        (0..MAX_CONTROLLERS as u8).find(|c| {
            *c != except
                && !self.failed[usize::from(*c)]
                && self.ports.iter().any(|p| p.controller == *c)
        })
    }

    fn move_ownership(&mut self, index: usize, to: u8) {
        let alua = matches!(self.config.personality, Personality::Alua { .. });
        let non_owner = match self.config.personality {
            Personality::Alua { non_owner, .. } => non_owner,
            _ => AccessState::Standby,
        };
        let Some(l) = self.luns.get_mut(index) else {
            return;
        };
        let from = l.owner;
        if from == to {
            return;
        }
        l.owner = to;
        self.stats.trespasses += 1;
        if !alua && self.config.trespass == TrespassCommand::ModeSelectPage22 {
            // A CLARiiON tells every initiator with a reset unit attention on its next
            // command; Linux scsi_dh_emc retries it as the first I/O to the new path.
            l.lun
                .raise_unit_attention(None, Asc::POWER_ON_RESET_OR_BUS_DEVICE_RESET);
        }
        if alua {
            let from_state = if self.failed[usize::from(from)] {
                AccessState::Unavailable
            } else {
                non_owner
            };
            l.lun.set_port_group_state(u16::from(from) + 1, from_state);
            l.lun
                .set_port_group_state(u16::from(to) + 1, AccessState::ActiveOptimized);
        }
    }

    /// Applies `fault` now.
    pub fn apply(&mut self, now: Instant, fault: Fault) {
        match fault {
            Fault::LinkDown { port, failure } => {
                if let Some(i) = self.port_index(port) {
                    self.ports[i].down = Some(failure);
                }
            }
            Fault::LinkUp { port } => {
                if let Some(i) = self.port_index(port) {
                    self.ports[i].down = None;
                    self.ports[i].flap = None;
                    self.nexus_loss_on_port(port);
                }
            }
            Fault::Flap {
                port,
                period,
                duration,
                failure,
            } => {
                if let Some(i) = self.port_index(port) {
                    self.ports[i].flap = Some(Flap {
                        start: now,
                        period_ns: u64::try_from(period.as_nanos()).unwrap_or(u64::MAX),
                        until: now.saturating_add(duration),
                        failure,
                    });
                }
            }
            Fault::ControllerFail { controller } => {
                let c = usize::from(controller);
                if c >= MAX_CONTROLLERS {
                    return;
                }
                self.sync_owners();
                self.failed[c] = true;
                if self.config.failover
                    && let Some(to) = self.first_alive_controller(controller)
                {
                    for index in 0..self.luns.len() {
                        if self.luns[index].owner == controller {
                            self.move_ownership(index, to);
                        }
                    }
                }
                if let Personality::Alua { .. } = self.config.personality {
                    for l in self.luns.iter_mut() {
                        if l.owner != controller {
                            l.lun.set_port_group_state(
                                u16::from(controller) + 1,
                                AccessState::Unavailable,
                            );
                        }
                    }
                }
            }
            Fault::ControllerRestore { controller } => {
                let c = usize::from(controller);
                if c >= MAX_CONTROLLERS {
                    return;
                }
                self.failed[c] = false;
                if let Personality::Alua { non_owner, .. } = self.config.personality {
                    for l in self.luns.iter_mut() {
                        if l.owner != controller {
                            l.lun
                                .set_port_group_state(u16::from(controller) + 1, non_owner);
                        }
                    }
                }
                let ids: heapless::Vec<u16, PORTS> = self
                    .ports
                    .iter()
                    .filter(|p| p.controller == controller)
                    .map(|p| p.id)
                    .collect();
                for id in ids {
                    self.nexus_loss_on_port(id);
                }
            }
            Fault::Congestion {
                port,
                status,
                permille,
                duration,
            } => {
                self.congestion = Some(Congestion {
                    port,
                    status,
                    permille,
                    until: now.saturating_add(duration),
                });
            }
            Fault::QueueLimit { lun, limit } => {
                if let Some(l) = self.luns.iter_mut().find(|l| l.number == lun) {
                    l.limit = limit;
                }
            }
            Fault::Transition {
                lun,
                group,
                to,
                duration,
            } => {
                if let Some(l) = self.luns.iter_mut().find(|l| l.number == lun)
                    && l.lun
                        .set_port_group_state(group, AccessState::Transitioning)
                {
                    let _ = l.transitions.push(PendingTransition {
                        at: now.saturating_add(duration),
                        group,
                        to,
                    });
                }
            }
            Fault::UnitAttention { lun } => {
                if let Some(l) = self.luns.iter_mut().find(|l| l.number == lun) {
                    l.lun.reset();
                }
            }
            Fault::Latency { port, extra } => {
                if let Some(i) = self.port_index(port) {
                    self.ports[i].extra_latency = extra;
                }
            }
            Fault::RemoveLun { lun } => {
                if let Some(l) = self.luns.iter_mut().find(|l| l.number == lun) {
                    l.removed = true;
                }
                self.refresh_report_luns();
            }
            Fault::AllPathsDown { failure } => self.all_down = Some(failure),
            Fault::AllPathsUp => {
                self.all_down = None;
                let ids: heapless::Vec<u16, PORTS> = self.ports.iter().map(|p| p.id).collect();
                for id in ids {
                    self.nexus_loss_on_port(id);
                }
            }
            Fault::Trespass { lun, controller } => {
                self.sync_owners();
                if let Some(index) = self.luns.iter().position(|l| l.number == lun) {
                    self.move_ownership(index, controller);
                }
            }
        }
    }

    fn apply_due(&mut self, now: Instant) {
        // Bounded by the schedule's length.
        while let Some(entry) = self.schedule.get(self.next_fault).copied() {
            if entry.at > now {
                break;
            }
            self.next_fault += 1;
            self.apply(entry.at, entry.fault);
        }
        for l in self.luns.iter_mut() {
            let mut i = 0;
            while i < l.transitions.len() {
                if l.transitions[i].at <= now {
                    let t = l.transitions.swap_remove(i);
                    l.lun.set_port_group_state(t.group, t.to);
                } else {
                    i += 1;
                }
            }
        }
        if self.congestion.is_some_and(|c| c.until <= now) {
            self.congestion = None;
        }
    }

    fn latency_of(&self, port: usize) -> Duration {
        let extra = self
            .ports
            .get(port)
            .map_or(Duration::ZERO, |p| p.extra_latency);
        self.config.latency.saturating_add(extra)
    }

    fn finish(&mut self, index: usize, completion: CommandCompletion, due: Instant) {
        if let Some(slot) = self.slots[index].as_mut() {
            slot.state = SlotState::Done {
                completion,
                due,
                lost: false,
            };
        }
    }

    /// Decides what happens to a command arriving at `now`: an immediate answer, the LU, or
    /// (a MODE SELECT on an array that takes the trespass page) a look at its parameter list
    /// at the next poll.
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        now: Instant,
        port: Option<usize>,
        lun: Option<usize>,
        tag: Tag,
        opcode: u8,
        start: bool,
        select: Option<trespass::ModeSelect>,
    ) -> Admission {
        let Some(port) = port else {
            self.stats.delivery_failures += 1;
            return Admission::Answer(delivery_failure(tag), now);
        };
        let answer_at = now.saturating_add(self.latency_of(port));
        if let Some(failure) = self.port_failure(port, now) {
            self.stats.delivery_failures += 1;
            let at = match failure {
                LinkFailure::Timeout => now.saturating_add(self.config.command_timeout),
                LinkFailure::Error => now,
            };
            return Admission::Answer(delivery_failure(tag), at);
        }
        let format = SenseFormat::Fixed;
        let Some(lun) = lun else {
            let sense = check(SenseKey::ILLEGAL_REQUEST, Asc::LOGICAL_UNIT_NOT_SUPPORTED);
            return Admission::Answer(
                CommandCompletion::check_condition(tag, sense.to_buf(format)),
                answer_at,
            );
        };
        if self.luns[lun].removed {
            let sense = check(SenseKey::ILLEGAL_REQUEST, Asc::LOGICAL_UNIT_NOT_SUPPORTED);
            return Admission::Answer(
                CommandCompletion::check_condition(tag, sense.to_buf(format)),
                answer_at,
            );
        }
        if let Some(c) = self.congestion
            && c.port.is_none_or(|p| p == self.ports[port].id)
            && self.rng.chance(c.permille)
        {
            self.stats.congested += 1;
            return Admission::Answer(CommandCompletion::status(tag, c.status), answer_at);
        }
        if let Some(limit) = self.luns[lun].limit {
            let busy = self
                .slots
                .iter()
                .flatten()
                .filter(|s| s.lun == Some(lun) && !matches!(s.state, SlotState::Done { .. }))
                .count();
            if busy >= usize::from(limit) {
                self.stats.congested += 1;
                return Admission::Answer(
                    CommandCompletion::status(tag, Status::TASK_SET_FULL),
                    answer_at,
                );
            }
        }
        if let Personality::ActivePassive { implicit_trespass } = self.config.personality {
            if let Some(select) = select {
                return Admission::Select(select);
            }
            let controller = self.ports[port].controller;
            if controller != self.luns[lun].owner && !is_exempt_from_ownership(opcode) {
                let start_stop = opcode == START_STOP_UNIT
                    && self.config.trespass == TrespassCommand::StartStopUnit;
                if start_stop && start || implicit_trespass {
                    self.move_ownership(lun, controller);
                    if start_stop {
                        if start {
                            self.stats.start_stop_trespasses += 1;
                        }
                        return Admission::Answer(
                            CommandCompletion::good(tag, Residual::None),
                            answer_at,
                        );
                    }
                } else {
                    self.stats.passive += 1;
                    return Admission::Answer(passive(tag), answer_at);
                }
            }
        }
        Admission::Lu
    }

    /// Reads the parameter list of the MODE SELECT in slot `index` (on an array that takes
    /// the trespass page): a trespass moves the LU to the receiving port's controller and
    /// is answered here; a malformed list is ILLEGAL REQUEST; any other list is treated as
    /// a media command would have been at submission (passive answer, implicit trespass,
    /// or the LU).
    fn examine_select(&mut self, now: Instant, index: usize, memory: &dyn Memory) {
        let Some(slot) = self.slots[index].as_mut() else {
            return;
        };
        let SlotState::Select(mut command, select) =
            core::mem::replace(&mut slot.state, SlotState::AtLun)
        else {
            return;
        };
        let (port, lun, submitted) = (slot.port, slot.lun, slot.submitted);
        let due = submitted.saturating_add(self.latency_of(port)).max(now);
        let tag = command.tag;
        let format = SenseFormat::Fixed;
        let (Some(controller), Some(lun)) = (self.ports.get(port).map(|p| p.controller), lun)
        else {
            // `admit` answers these at submission; kept total all the same.
            let sense = check(SenseKey::ILLEGAL_REQUEST, Asc::LOGICAL_UNIT_NOT_SUPPORTED);
            let completion = CommandCompletion::check_condition(tag, sense.to_buf(format));
            self.finish(index, completion, due);
            return;
        };
        match trespass::examine(select, &command, memory) {
            Ok(Some(residual)) => {
                self.move_ownership(lun, controller);
                self.stats.page22_trespasses += 1;
                self.finish(index, CommandCompletion::good(tag, residual), due);
            }
            Err(sense) => {
                let completion = CommandCompletion::check_condition(tag, sense.to_buf(format));
                self.finish(index, completion, due);
            }
            Ok(None) => {
                let implicit_trespass = matches!(
                    self.config.personality,
                    Personality::ActivePassive {
                        implicit_trespass: true
                    }
                );
                if controller != self.luns[lun].owner {
                    if !implicit_trespass {
                        self.stats.passive += 1;
                        self.finish(index, passive(tag), due);
                        return;
                    }
                    self.move_ownership(lun, controller);
                }
                command.tag = Tag(index as u64);
                if let Some(slot) = self.slots[index].as_mut() {
                    slot.state = SlotState::Queued(command);
                }
            }
        }
    }
}

/// What [`Array::admit`] decided.
enum Admission {
    /// Answered by the array, due then.
    Answer(CommandCompletion, Instant),
    /// For the LU.
    Lu,
    /// A MODE SELECT whose parameter list decides, read at the next poll.
    Select(trespass::ModeSelect),
}

/// The passive controller's answer: NOT READY, MANUAL INTERVENTION REQUIRED.
fn passive(tag: Tag) -> CommandCompletion {
    let sense = check(SenseKey::NOT_READY, ASC_NOT_READY_MANUAL_INTERVENTION);
    CommandCompletion::check_condition(tag, sense.to_buf(SenseFormat::Fixed))
}

/// The fields of `bytes` if they are a valid MODE SELECT (6) or (10) CDB.
fn mode_select_fields(bytes: &[u8]) -> Option<trespass::ModeSelect> {
    let cdb = Cdb::new_checked(bytes).ok()?;
    match CdbRepr::parse(&cdb).ok()? {
        CdbRepr::ModeSelect {
            ten,
            pf,
            sp,
            parameter_list_length,
        } => Some(trespass::ModeSelect {
            ten,
            pf,
            sp,
            length: parameter_list_length,
        }),
        _ => None,
    }
}

/// The controller of the first active/optimized group of an ALUA LUN.
fn alua_owner<D, const Q: usize, const SG: usize>(l: &LunSlot<D, Q, SG>) -> Option<u8>
where
    D: BlockDevice<SG>,
{
    l.lun
        .config()
        .port_groups
        .iter()
        .find(|g| g.state == AccessState::ActiveOptimized)
        .and_then(|g| u8::try_from(g.id.checked_sub(1)?).ok())
}

fn delivery_failure(tag: Tag) -> CommandCompletion {
    CommandCompletion {
        tag,
        service: ServiceResponse::ServiceDeliveryFailure,
        status: Status::GOOD,
        sense: scsi::SenseBuf::new(),
        residual: Residual::None,
    }
}

impl<D, const LUNS: usize, const PORTS: usize, const Q: usize, const F: usize, const SG: usize>
    Transport<SG> for Array<D, LUNS, PORTS, Q, F, SG>
where
    D: BlockDevice<SG>,
{
    fn submit(
        &mut self,
        now: Instant,
        mut command: Command<SG>,
    ) -> Result<(), TransportSubmitError<SG>> {
        if self.slots.iter().flatten().any(|s| s.tag == command.tag) {
            return Err(TransportSubmitError {
                kind: TransportSubmitErrorKind::DuplicateTag,
                command,
            });
        }
        let Some(index) = self.slots.iter().position(|s| s.is_none()) else {
            return Err(TransportSubmitError {
                kind: TransportSubmitErrorKind::QueueFull,
                command,
            });
        };
        self.apply_due(now);
        self.stats.commands += 1;
        let nexus = command.nexus;
        if !self.nexuses.contains(&(nexus.initiator, nexus.target_port)) {
            let _ = self.nexuses.push((nexus.initiator, nexus.target_port));
        }
        let port = self.port_index(nexus.target_port);
        let lun = self
            .luns
            .iter()
            .position(|l| l.number == nexus.lun)
            .or(if self.luns.is_empty() { None } else { Some(0) });
        let bytes = command.cdb.as_bytes();
        let opcode = bytes.first().copied().unwrap_or(0);
        let start = bytes.get(4).is_some_and(|b| b & 0x01 != 0);
        let select = match self.config.personality {
            Personality::ActivePassive { .. }
                if self.config.trespass == TrespassCommand::ModeSelectPage22
                    && matches!(opcode, MODE_SELECT_6 | MODE_SELECT_10) =>
            {
                mode_select_fields(bytes)
            }
            _ => None,
        };
        let tag = command.tag;
        self.slots[index] = Some(Slot {
            tag,
            port: port.unwrap_or(usize::MAX),
            lun,
            submitted: now,
            state: SlotState::AtLun,
        });
        self.in_use += 1;
        match self.admit(now, port, lun, tag, opcode, start, select) {
            Admission::Answer(completion, due) => self.finish(index, completion, due),
            Admission::Lu => {
                command.tag = Tag(index as u64);
                if let Some(slot) = self.slots[index].as_mut() {
                    slot.state = SlotState::Queued(command);
                }
            }
            Admission::Select(select) => {
                if let Some(slot) = self.slots[index].as_mut() {
                    slot.state = SlotState::Select(command, select);
                }
            }
        }
        Ok(())
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(CommandCompletion),
    ) -> Option<Instant> {
        self.apply_due(now);
        let mut next: Option<Instant> = None;
        let wake = |at: Instant, next: &mut Option<Instant>| {
            *next = Some(next.map_or(at, |n| n.min(at)));
        };
        // Read the parameter lists of MODE SELECTs that may be trespasses.
        for index in 0..Q {
            if self.slots[index]
                .as_ref()
                .is_some_and(|s| matches!(s.state, SlotState::Select(..)))
            {
                self.examine_select(now, index, memory);
            }
        }
        // Hand queued commands to their LUs.
        for index in 0..Q {
            let Some(slot) = self.slots[index].as_mut() else {
                continue;
            };
            if !matches!(slot.state, SlotState::Queued(_)) {
                continue;
            }
            let Some(lun) = slot.lun else { continue };
            let SlotState::Queued(command) = core::mem::replace(&mut slot.state, SlotState::AtLun)
            else {
                continue;
            };
            match self.luns[lun].lun.submit(now, command) {
                Ok(()) => self.stats.executed += 1,
                Err(refused) => {
                    slot.state = SlotState::Queued(refused.command);
                    wake(now, &mut next);
                }
            }
        }
        // Run the LUs.
        for lun in 0..self.luns.len() {
            let mut arrived: heapless::Vec<CommandCompletion, Q> = heapless::Vec::new();
            let lu_next = self.luns[lun].lun.poll(now, memory, &mut |c| {
                let _ = arrived.push(c);
            });
            if let Some(at) = lu_next {
                wake(at, &mut next);
            }
            for completion in arrived {
                let index = completion.tag.0 as usize;
                let Some(slot) = self.slots.get(index).and_then(|s| s.as_ref()) else {
                    continue;
                };
                let due = slot
                    .submitted
                    .saturating_add(self.latency_of(slot.port))
                    .max(now);
                self.finish(index, completion, due);
            }
        }
        // Deliver what is due.
        for index in 0..Q {
            let port_failure = match self.slots[index].as_ref() {
                Some(slot) => self.port_failure(slot.port, now),
                None => continue,
            };
            let timeout = self.config.command_timeout;
            let Some(slot) = self.slots[index].as_mut() else {
                continue;
            };
            let SlotState::Done {
                completion,
                due,
                lost,
            } = &mut slot.state
            else {
                continue;
            };
            if *due > now {
                wake(*due, &mut next);
                continue;
            }
            // The answer travels back over the link: if it is down now, the answer is lost.
            if !*lost
                && completion.service == ServiceResponse::TaskComplete
                && let Some(failure) = port_failure
            {
                *lost = true;
                *completion = delivery_failure(completion.tag);
                self.stats.delivery_failures += 1;
                if failure == LinkFailure::Timeout {
                    *due = slot.submitted.saturating_add(timeout);
                    if *due > now {
                        wake(*due, &mut next);
                        continue;
                    }
                }
            }
            let tag = slot.tag;
            if let Some(Slot {
                state: SlotState::Done { mut completion, .. },
                ..
            }) = self.slots[index].take()
            {
                self.in_use -= 1;
                completion.tag = tag;
                done(completion);
            }
        }
        if let Some(entry) = self.schedule.get(self.next_fault) {
            wake(entry.at, &mut next);
        }
        for port in self.ports.iter() {
            if let Some(at) = port.flap.and_then(|f| f.next_toggle(now)) {
                wake(at, &mut next);
            }
        }
        for l in self.luns.iter() {
            for t in l.transitions.iter() {
                wake(t.at, &mut next);
            }
        }
        if let Some(c) = self.congestion {
            wake(c.until, &mut next);
        }
        next
    }
}
