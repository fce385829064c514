//! The initiator-side transport: submit a command on an I_T_L nexus, poll for its completion.
//!
//! An HBA driver, the simulated array and [`crate::Lun`] itself implement [`Transport`]; PSA
//! consumes it. The shape is the one of [`block::BlockDevice`]: `submit` never blocks, every
//! accepted command completes exactly once through `poll`, data moves through the
//! [`block::Memory`] lent to `poll`, and time is a value.

use core::fmt;

use block::{DEFAULT_SG_CAPACITY, Instant, Memory, SgList, Tag};

use crate::cdb::{CDB_MAX_LEN, CdbError, CdbRepr, cdb_len_of};
use crate::sense::{SenseBuf, SenseRepr};
use crate::status::Status;

/// An initiator port, as the target sees it (the I of I_T_L).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InitiatorId(pub u64);

/// A nexus: which initiator, through which target port, to which logical unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Nexus {
    /// The initiator port.
    pub initiator: InitiatorId,
    /// The RELATIVE TARGET PORT IDENTIFIER of the target port (1-based in SPC; 0 is allowed
    /// here for a single-port target).
    pub target_port: u16,
    /// The logical unit number.
    pub lun: u64,
}

/// Which way data moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DataDirection {
    /// No data phase.
    None,
    /// Data-out: from the initiator's memory to the device.
    ToDevice,
    /// Data-in: from the device to the initiator's memory.
    FromDevice,
}

/// A CDB of up to 16 bytes, by value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CdbBytes {
    bytes: [u8; CDB_MAX_LEN],
    len: u8,
}

impl CdbBytes {
    /// The CDB of `bytes`, which must be 1..=16 bytes long.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() || bytes.len() > CDB_MAX_LEN {
            return None;
        }
        let mut out = [0u8; CDB_MAX_LEN];
        out[..bytes.len()].copy_from_slice(bytes);
        Some(Self {
            bytes: out,
            len: bytes.len() as u8,
        })
    }

    /// The CDB that `repr` emits.
    pub fn from_repr(repr: &CdbRepr) -> Self {
        Self {
            bytes: repr.to_bytes(),
            len: repr.buffer_len() as u8,
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The length implied by the opcode, if the CDB is at least that long.
    pub fn checked_len(&self) -> Result<usize, CdbError> {
        let len = cdb_len_of(self.bytes[0]).ok_or(CdbError::InvalidOpcode)?;
        if len > usize::from(self.len) {
            return Err(CdbError::Truncated);
        }
        Ok(len)
    }
}

impl fmt::Debug for CdbBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cdb{:02x?}", self.as_bytes())
    }
}

/// The task attribute of a command (SAM-5 8.6): how it may be reordered with others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TaskAttribute {
    /// May run in any order with other SIMPLE commands, after older ORDERED ones.
    #[default]
    Simple,
    /// Runs after every older command has completed, and before any newer one starts.
    Ordered,
    /// Runs at once, ahead of everything queued.
    HeadOfQueue,
    /// Runs only in an ACA condition (not supported by [`crate::Lun`]).
    Aca,
}

/// One command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<const SG: usize = DEFAULT_SG_CAPACITY> {
    /// Caller-chosen identifier, handed back in the completion.
    pub tag: Tag,
    /// The task attribute.
    pub attribute: TaskAttribute,
    /// The I_T_L nexus.
    pub nexus: Nexus,
    /// The CDB.
    pub cdb: CdbBytes,
    /// The direction of the data phase.
    pub direction: DataDirection,
    /// The initiator's buffer; its length is the expected data transfer length.
    pub sg: SgList<SG>,
}

impl<const SG: usize> Command<SG> {
    /// A command of `repr` with no data phase.
    pub fn new(tag: Tag, nexus: Nexus, repr: &CdbRepr) -> Self {
        Self {
            tag,
            attribute: TaskAttribute::Simple,
            nexus,
            cdb: CdbBytes::from_repr(repr),
            direction: DataDirection::None,
            sg: SgList::new(),
        }
    }

    /// The same command with task attribute `attribute`.
    pub fn with_attribute(mut self, attribute: TaskAttribute) -> Self {
        self.attribute = attribute;
        self
    }

    /// The same command with a data-in buffer.
    pub fn data_in(mut self, sg: SgList<SG>) -> Self {
        self.direction = DataDirection::FromDevice;
        self.sg = sg;
        self
    }

    /// The same command with a data-out buffer.
    pub fn data_out(mut self, sg: SgList<SG>) -> Self {
        self.direction = DataDirection::ToDevice;
        self.sg = sg;
        self
    }
}

/// The difference between the expected data transfer length (the SG list) and what moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Residual {
    /// Exactly the expected length moved.
    #[default]
    None,
    /// Fewer bytes moved than the buffer holds, by this many.
    Underflow(u64),
    /// The command wanted more bytes than the buffer holds, by this many.
    Overflow(u64),
}

/// Whether the service delivery subsystem completed the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ServiceResponse {
    /// The command completed; `status` is valid.
    TaskComplete,
    /// The transport failed (link down, lost frame); the command's effect is unknown.
    ServiceDeliveryFailure,
}

/// The outcome of one command, handed out exactly once per accepted tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandCompletion {
    /// The tag of the command.
    pub tag: Tag,
    /// Whether status is valid.
    pub service: ServiceResponse,
    /// The status byte.
    pub status: Status,
    /// Sense data, for CHECK CONDITION.
    pub sense: SenseBuf,
    /// Residual.
    pub residual: Residual,
}

impl CommandCompletion {
    /// GOOD status with `residual`.
    pub fn good(tag: Tag, residual: Residual) -> Self {
        Self {
            tag,
            service: ServiceResponse::TaskComplete,
            status: Status::GOOD,
            sense: SenseBuf::new(),
            residual,
        }
    }

    /// A status without sense data (BUSY, RESERVATION CONFLICT, TASK SET FULL).
    pub fn status(tag: Tag, status: Status) -> Self {
        Self {
            tag,
            service: ServiceResponse::TaskComplete,
            status,
            sense: SenseBuf::new(),
            residual: Residual::None,
        }
    }

    /// CHECK CONDITION with `sense`.
    pub fn check_condition(tag: Tag, sense: SenseBuf) -> Self {
        Self {
            tag,
            service: ServiceResponse::TaskComplete,
            status: Status::CHECK_CONDITION,
            sense,
            residual: Residual::None,
        }
    }

    /// Whether the command completed with GOOD (or CONDITION MET).
    pub fn is_good(&self) -> bool {
        self.service == ServiceResponse::TaskComplete && self.status.is_good()
    }

    /// The parsed sense data, if there is any.
    pub fn sense_repr(&self) -> Option<SenseRepr> {
        let view = crate::sense::Sense::new_checked(&self.sense[..]).ok()?;
        SenseRepr::parse(&view).ok()
    }
}

/// Why `submit` refused a command. The command is handed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportSubmitError<const SG: usize = DEFAULT_SG_CAPACITY> {
    /// Why.
    pub kind: TransportSubmitErrorKind,
    /// The refused command, unchanged.
    pub command: Command<SG>,
}

/// Why a command was refused at submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TransportSubmitErrorKind {
    /// No free slot (back-pressure): poll, then submit again.
    QueueFull,
    /// A command with the same tag is outstanding.
    DuplicateTag,
}

/// Sends commands to logical units and hands back their completions.
///
/// Contract, as for [`block::BlockDevice`]: `submit` never blocks or panics; every accepted
/// command completes exactly once through `poll`; data moves only inside `poll`, through the
/// memory lent to it; `poll` returns when it next needs to be called.
pub trait Transport<const SG: usize = DEFAULT_SG_CAPACITY> {
    /// Queues `command`, issued at `now`.
    fn submit(
        &mut self,
        now: Instant,
        command: Command<SG>,
    ) -> Result<(), TransportSubmitError<SG>>;

    /// Advances to `now`, moving data through `memory` and handing each finished command to
    /// `done`.
    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(CommandCompletion),
    ) -> Option<Instant>;
}

impl<T: Transport<SG> + ?Sized, const SG: usize> Transport<SG> for &mut T {
    fn submit(
        &mut self,
        now: Instant,
        command: Command<SG>,
    ) -> Result<(), TransportSubmitError<SG>> {
        (**self).submit(now, command)
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(CommandCompletion),
    ) -> Option<Instant> {
        (**self).poll(now, memory, done)
    }
}

/// Why [`run_to_completion`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RunError {
    /// The transport refused the submission.
    Refused(TransportSubmitErrorKind),
    /// The transport had nothing left to wait for, yet never completed the command.
    Stalled,
    /// The command had not completed after the allowed number of polls.
    PollLimit,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Refused(kind) => write!(f, "transport refused the command: {kind:?}"),
            RunError::Stalled => f.write_str("transport stalled: the command never completed"),
            RunError::PollLimit => f.write_str("command did not complete within the poll limit"),
        }
    }
}

impl core::error::Error for RunError {}

/// Submits `command` at `now` and polls until it completes, following the transport's timers,
/// for at most `max_polls` polls: for slow paths (device discovery, INQUIRY, READ CAPACITY),
/// never the data path. Completions of other commands are handed to `others`. Returns the
/// completion and the time it arrived.
pub fn run_to_completion<T, const SG: usize>(
    transport: &mut T,
    memory: &mut dyn Memory,
    now: Instant,
    command: Command<SG>,
    max_polls: usize,
    others: &mut dyn FnMut(CommandCompletion),
) -> Result<(CommandCompletion, Instant), RunError>
where
    T: Transport<SG> + ?Sized,
{
    let tag = command.tag;
    transport
        .submit(now, command)
        .map_err(|e| RunError::Refused(e.kind))?;
    let mut now = now;
    for _ in 0..max_polls {
        let mut found = None;
        let next = transport.poll(now, memory, &mut |c| {
            if c.tag == tag && found.is_none() {
                found = Some(c);
            } else {
                others(c);
            }
        });
        if let Some(c) = found {
            return Ok((c, now));
        }
        match next {
            Some(at) => now = now.max(at),
            None => return Err(RunError::Stalled),
        }
    }
    Err(RunError::PollLimit)
}
