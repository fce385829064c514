//! `Lun`: an SBC/SPC direct-access logical unit emulated over any [`BlockDevice`].
//!
//! The LU is itself submit/poll: it implements [`Transport`], so an initiator (PSA, a test)
//! talks to it exactly as it talks to a real transport. Media commands become
//! [`BlockRequest`]s to the device below, tagged with the LU's slot index; everything else is
//! answered from the LU's own state.

use block::{
    BlockCount, BlockDevice, BlockError, BlockRequest, Completion, DEFAULT_SG_CAPACITY,
    DeviceFeatures, ErrorKind, Geometry, Instant, Lba, Memory, Operation, RequestFlags, SgList,
    SubmitErrorKind, Tag,
};

use crate::cdb::{
    self, Cdb, CdbError, CdbRepr, CdbSize, CommandSpec, RwKind, has_service_action, lookup, opcode,
};
use crate::provisioning::Deallocated;
use crate::response::{
    self, AccessState, BlockDeviceCharacteristics, BlockLimits, DeviceIdentification, InquiryData,
    LbaStatusDescriptor, LogicalBlockProvisioning, ModeParameters, ModeSenseData, NaaId, Out,
    PageControl, ReadCapacity10Data, ReadCapacity16Data, TargetPortGroupDescriptor, vpd,
};
use crate::sense::{SenseFormat, SenseRepr};
use crate::status::{Asc, SenseKey, Status};
use crate::transport::{
    Command, CommandCompletion, DataDirection, InitiatorId, Residual, TaskAttribute, Transport,
    TransportSubmitError, TransportSubmitErrorKind,
};

/// Initiators whose unit attentions the LU tracks. Initiators beyond this are served but get no
/// unit attentions.
pub const MAX_INITIATORS: usize = 32;
/// Unit attentions queued per initiator; later ones are dropped.
pub const MAX_UNIT_ATTENTIONS: usize = 4;
/// Persistent reservation registrations.
pub const MAX_REGISTRATIONS: usize = 32;
/// Target port groups.
pub const MAX_PORT_GROUPS: usize = 4;
/// Target ports per group.
pub const MAX_PORTS_PER_GROUP: usize = 8;
/// LUNs listed by REPORT LUNS.
pub const MAX_REPORTED_LUNS: usize = 16;
/// UNMAP block descriptors per command.
pub const MAX_UNMAP_DESCRIPTORS: usize = 16;
/// TransportIDs of one PERSISTENT RESERVE OUT with SPEC_I_PT.
pub const MAX_TRANSPORT_IDS: usize = (PARAMETER_MAX - 28) / 24;
/// Bytes of the serial number.
pub const MAX_SERIAL_LEN: usize = 32;
/// The largest data-in payload the LU builds.
const RESPONSE_MAX: usize = 2048;
/// GET LBA STATUS descriptors per response.
const MAX_LBA_STATUS_DESCRIPTORS: usize = (RESPONSE_MAX - 8) / 16;
/// The largest parameter list the LU accepts.
const PARAMETER_MAX: usize = 8 + 16 * MAX_UNMAP_DESCRIPTORS;

/// A target port group of the LU, for ALUA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortGroup {
    /// TARGET PORT GROUP identifier.
    pub id: u16,
    /// Current asymmetric access state.
    pub state: AccessState,
    /// PREF bit.
    pub preferred: bool,
    /// Relative target port identifiers in the group.
    pub ports: heapless::Vec<u16, MAX_PORTS_PER_GROUP>,
    /// STATUS CODE reported by REPORT TARGET PORT GROUPS.
    pub status_code: u8,
}

impl PortGroup {
    /// A group `id` in `state` holding `ports` (extra ports beyond capacity are dropped).
    pub fn new(id: u16, state: AccessState, ports: &[u16]) -> Self {
        let mut list = heapless::Vec::new();
        for p in ports.iter().take(MAX_PORTS_PER_GROUP) {
            let _ = list.push(*p);
        }
        Self {
            id,
            state,
            preferred: false,
            ports: list,
            status_code: 0,
        }
    }
}

/// The identity and policy of an emulated LU: everything a guest can see that is not the
/// device's geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunConfig {
    /// T10 VENDOR IDENTIFICATION.
    pub vendor: [u8; 8],
    /// PRODUCT IDENTIFICATION.
    pub product: [u8; 16],
    /// PRODUCT REVISION LEVEL.
    pub revision: [u8; 4],
    /// Unit serial number (VPD 0x80), printable ASCII.
    pub serial: heapless::Vec<u8, MAX_SERIAL_LEN>,
    /// NAA designator (VPD 0x83).
    pub naa: NaaId,
    /// This LU's number: commands addressed to another LUN get LOGICAL UNIT NOT SUPPORTED
    /// (INQUIRY answers with peripheral qualifier 3; REPORT LUNS is answered).
    pub lun: u64,
    /// LUNs REPORT LUNS lists (by default just [`LunConfig::lun`]).
    pub report_luns: heapless::Vec<u64, MAX_REPORTED_LUNS>,
    /// Refuse writes with DATA PROTECT, WRITE PROTECTED (also if the device is read-only).
    pub write_protect: bool,
    /// Report sense data in descriptor format (the control page's D_SENSE) at power on.
    pub descriptor_sense: bool,
    /// TPGS of INQUIRY: 0 no ALUA, 1 implicit, 2 explicit, 3 both.
    pub tpgs: u8,
    /// Target port groups (empty: REPORT TARGET PORT GROUPS is not supported).
    pub port_groups: heapless::Vec<PortGroup, MAX_PORT_GROUPS>,
    /// Implicit transition time reported in the extended RTPG header, seconds.
    pub implicit_transition_secs: u8,
    /// MAXIMUM COMPARE AND WRITE LENGTH, blocks.
    pub max_compare_and_write_blocks: u8,
    /// MAXIMUM WRITE SAME LENGTH, blocks.
    pub max_write_same_blocks: u32,
    /// MAXIMUM UNMAP LBA COUNT.
    pub max_unmap_blocks: u32,
    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT (at most [`MAX_UNMAP_DESCRIPTORS`]).
    pub max_unmap_descriptors: u8,
    /// OPTIMAL UNMAP GRANULARITY, blocks.
    pub unmap_granularity: u32,
    /// MEDIUM ROTATION RATE of VPD 0xB1 (1 = solid state).
    pub rotation_rate: u16,
}

impl LunConfig {
    /// An identity: vendor (8), product (16), revision (4) are space padded; the serial is cut
    /// at [`MAX_SERIAL_LEN`] bytes. Policy defaults: LUN 0, no ALUA, fixed-format sense,
    /// compare-and-write of 1 block, write same and unmap up to 65536 blocks, 16 descriptors.
    pub fn new(vendor: &str, product: &str, revision: &str, serial: &str, naa: NaaId) -> Self {
        let mut s = heapless::Vec::new();
        for b in serial.bytes().take(MAX_SERIAL_LEN) {
            let _ = s.push(if (0x20..0x7F).contains(&b) { b } else { b'?' });
        }
        let mut report_luns = heapless::Vec::new();
        let _ = report_luns.push(0);
        Self {
            vendor: response::ascii_field(vendor),
            product: response::ascii_field(product),
            revision: response::ascii_field(revision),
            serial: s,
            naa,
            lun: 0,
            report_luns,
            write_protect: false,
            descriptor_sense: false,
            tpgs: 0,
            port_groups: heapless::Vec::new(),
            implicit_transition_secs: 0,
            max_compare_and_write_blocks: 1,
            max_write_same_blocks: 65536,
            max_unmap_blocks: 65536,
            max_unmap_descriptors: MAX_UNMAP_DESCRIPTORS as u8,
            unmap_granularity: 1,
            rotation_rate: 1,
        }
    }

    /// The same configuration as LU number `lun`, which REPORT LUNS then lists alone.
    pub fn with_lun(mut self, lun: u64) -> Self {
        self.lun = lun;
        self.report_luns.clear();
        let _ = self.report_luns.push(lun);
        self
    }

    /// The same configuration with ALUA: `tpgs` and the port groups.
    pub fn with_alua(mut self, tpgs: u8, groups: &[PortGroup]) -> Self {
        self.tpgs = tpgs & 0x03;
        self.port_groups.clear();
        for g in groups.iter().take(MAX_PORT_GROUPS) {
            let _ = self.port_groups.push(g.clone());
        }
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrType {
    WriteExclusive = 1,
    ExclusiveAccess = 3,
    WriteExclusiveRegistrantsOnly = 5,
    ExclusiveAccessRegistrantsOnly = 6,
    WriteExclusiveAllRegistrants = 7,
    ExclusiveAccessAllRegistrants = 8,
}

impl PrType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => PrType::WriteExclusive,
            3 => PrType::ExclusiveAccess,
            5 => PrType::WriteExclusiveRegistrantsOnly,
            6 => PrType::ExclusiveAccessRegistrantsOnly,
            7 => PrType::WriteExclusiveAllRegistrants,
            8 => PrType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    fn all_registrants(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants
        )
    }

    fn registrants_only(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusiveRegistrantsOnly | PrType::ExclusiveAccessRegistrantsOnly
        )
    }

    fn write_exclusive(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusive
                | PrType::WriteExclusiveRegistrantsOnly
                | PrType::WriteExclusiveAllRegistrants
        )
    }
}

/// A registration: of one I_T nexus (initiator and relative target port), or, registered
/// with ALL_TG_PT, of the initiator through every target port (`port` is `None`).
#[derive(Debug, Clone, Copy)]
struct Registration {
    initiator: InitiatorId,
    port: Option<u16>,
    key: u64,
}

impl Registration {
    fn covers(&self, initiator: InitiatorId, port: u16) -> bool {
        self.initiator == initiator && self.port.is_none_or(|p| p == port)
    }

    fn identity(&self) -> (InitiatorId, Option<u16>) {
        (self.initiator, self.port)
    }
}

#[derive(Debug, Clone, Copy)]
struct PrReservation {
    /// The registration that holds the reservation (ignored for all-registrants types).
    holder: (InitiatorId, Option<u16>),
    kind: PrType,
}

#[derive(Debug, Default)]
struct Persistent {
    generation: u32,
    registrations: heapless::Vec<Registration, MAX_REGISTRATIONS>,
    reservation: Option<PrReservation>,
}

impl Persistent {
    fn find(&self, initiator: InitiatorId, port: u16) -> Option<&Registration> {
        self.registrations
            .iter()
            .find(|r| r.covers(initiator, port))
    }

    fn key_of(&self, initiator: InitiatorId, port: u16) -> Option<u64> {
        self.find(initiator, port).map(|r| r.key)
    }

    fn holds(&self, registration: &Registration) -> bool {
        match self.reservation {
            Some(r) if r.kind.all_registrants() => true,
            Some(r) => r.holder == registration.identity(),
            None => false,
        }
    }

    fn is_holder(&self, initiator: InitiatorId, port: u16) -> bool {
        self.find(initiator, port).is_some_and(|r| self.holds(r))
    }

    fn holder_key(&self) -> Option<u64> {
        let r = self.reservation?;
        self.registrations
            .iter()
            .find(|reg| reg.identity() == r.holder)
            .map(|reg| reg.key)
    }
}

#[derive(Debug)]
struct InitiatorState {
    id: InitiatorId,
    attentions: heapless::Vec<Asc, MAX_UNIT_ATTENTIONS>,
    /// A deferred error (a background flush failed) to report on the next command.
    deferred: Option<SenseRepr>,
}

/// How a command relates to reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Never conflicts (INQUIRY, REPORT LUNS, REQUEST SENSE, PR IN/OUT, RTPG, READ CAPACITY,
    /// TEST UNIT READY).
    Always,
    /// MODE SENSE, REPORT SUPPORTED OPERATION CODES: allowed for registrants and under write
    /// exclusive.
    Info,
    /// Reads the medium.
    Read,
    /// Changes the medium or the LU's state.
    Write,
}

// Slots are fixed-size by design (no heap): the size difference is the point.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum JobKind<const SG: usize> {
    Single,
    Repeat {
        next_lba: u64,
        remaining: u64,
        block_sg: SgList<SG>,
    },
    Extents {
        extents: heapless::Vec<(u64, u32), MAX_UNMAP_DESCRIPTORS>,
        next: usize,
    },
    /// VERIFY with BYTCHK: the device atomically compares the medium with the data-out bytes
    /// and, only if equal, writes those same bytes back (a compare-and-write that changes
    /// nothing), chunk by chunk.
    Verify {
        next_lba: u64,
        remaining: u64,
        /// Blocks verified by earlier chunks.
        done: u64,
        data: SgList<SG>,
        /// BYTCHK 11b: `data` is one block, compared with every block of the range.
        per_block: bool,
        block_size: u32,
        /// Byte offset in the range of the chunk at the device (for the miscompare offset).
        base: u64,
    },
}

#[derive(Debug)]
struct Job<const SG: usize> {
    kind: JobKind<SG>,
    queued: Option<BlockRequest<SG>>,
    in_flight: bool,
    residual: Residual,
    writing: bool,
    /// GOOD status was already returned (SYNCHRONIZE CACHE with IMMED): the job finishes
    /// silently and its slot no longer holds the initiator's tag.
    early: bool,
    /// The operation and range of the child at the device, for the provisioning knowledge.
    at_device: Option<(Operation, u64, u32)>,
}

// Slots are fixed-size by design (no heap): the size difference is the point.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum SlotState<const SG: usize> {
    New,
    Aborted,
    Running(Job<SG>),
}

#[derive(Debug)]
struct Slot<const SG: usize> {
    command: Command<SG>,
    state: SlotState<SG>,
    /// Arrival order, for task attributes.
    sequence: u64,
}

impl<const SG: usize> Slot<SG> {
    /// Whether the command still counts as in the task set (not finished, not an IMMED flush
    /// that already reported, not aborted).
    fn active(&self) -> bool {
        match &self.state {
            SlotState::New => true,
            SlotState::Aborted => false,
            SlotState::Running(job) => !job.early,
        }
    }
}

/// Why a command fails before or without reaching the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    Sense(SenseRepr),
    Status(Status),
}

impl From<SenseRepr> for Fail {
    fn from(s: SenseRepr) -> Self {
        Fail::Sense(s)
    }
}

#[allow(clippy::large_enum_variant)]
enum Exec<const SG: usize> {
    Done(Residual),
    Start(Job<SG>),
}

fn illegal(asc: Asc) -> Fail {
    Fail::Sense(SenseRepr::new(SenseKey::ILLEGAL_REQUEST, asc))
}

fn invalid_cdb(byte: u16, bit: Option<u8>) -> Fail {
    Fail::Sense(SenseRepr::invalid_field_in_cdb(byte, bit))
}

fn invalid_param(byte: u16, bit: Option<u8>) -> Fail {
    Fail::Sense(SenseRepr::invalid_field_in_parameter_list(byte, bit))
}

fn data_phase() -> Fail {
    Fail::Sense(SenseRepr::new(
        SenseKey::ABORTED_COMMAND,
        Asc::DATA_PHASE_ERROR,
    ))
}

fn bad_iu() -> Fail {
    illegal(Asc::INVALID_FIELD_IN_COMMAND_IU)
}

fn lba_out_of_range(lba: u64) -> Fail {
    Fail::Sense(
        SenseRepr::new(SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE).with_information(lba),
    )
}

fn write_protected() -> Fail {
    Fail::Sense(SenseRepr::new(SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED))
}

/// The byte of the TRANSFER LENGTH field for a CDB size.
fn length_field(size: CdbSize) -> u16 {
    match size {
        CdbSize::Six => 4,
        CdbSize::Ten => 7,
        CdbSize::Twelve => 6,
        CdbSize::Sixteen => 10,
    }
}

/// The first `len` bytes of `buf`, or all of it: a builder reports its full length even when
/// the buffer cut it short.
fn upto(buf: &[u8], len: usize) -> &[u8] {
    &buf[..len.min(buf.len())]
}

fn be64(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
}

/// Maps a device error to what the initiator sees.
fn device_failure(error: BlockError, writing: bool) -> Fail {
    let sense = |key, asc| Fail::Sense(SenseRepr::new(key, asc));
    let with_info = |f: Fail| match (f, error.info()) {
        (Fail::Sense(s), Some(info)) => Fail::Sense(s.with_information(info)),
        (f, _) => f,
    };
    match error.kind() {
        ErrorKind::MediumError if writing => {
            with_info(sense(SenseKey::MEDIUM_ERROR, Asc::WRITE_ERROR))
        }
        ErrorKind::MediumError => {
            with_info(sense(SenseKey::MEDIUM_ERROR, Asc::UNRECOVERED_READ_ERROR))
        }
        ErrorKind::OutOfRange => with_info(sense(SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE)),
        ErrorKind::NotReady => sense(SenseKey::NOT_READY, Asc::BECOMING_READY),
        ErrorKind::Busy => Fail::Status(Status::BUSY),
        ErrorKind::QueueFull => Fail::Status(Status::TASK_SET_FULL),
        ErrorKind::Miscompare => {
            with_info(sense(SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY))
        }
        ErrorKind::Unsupported => sense(
            SenseKey::ILLEGAL_REQUEST,
            Asc::INVALID_COMMAND_OPERATION_CODE,
        ),
        ErrorKind::DeviceLost => sense(SenseKey::ILLEGAL_REQUEST, Asc::LOGICAL_UNIT_NOT_SUPPORTED),
        ErrorKind::NoPath => sense(SenseKey::NOT_READY, Asc::NOT_READY_CAUSE_NOT_REPORTABLE),
        ErrorKind::InvalidRequest => sense(SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB),
        ErrorKind::MemoryFault => data_phase(),
        ErrorKind::WriteProtected => write_protected(),
        ErrorKind::ReservationConflict => Fail::Status(Status::RESERVATION_CONFLICT),
        ErrorKind::Timeout | ErrorKind::Aborted | ErrorKind::Transport => {
            sense(SenseKey::ABORTED_COMMAND, Asc::NO_ADDITIONAL_SENSE)
        }
        _ => sense(SenseKey::HARDWARE_ERROR, Asc::INTERNAL_TARGET_FAILURE),
    }
}

/// A direct-access logical unit over `D`, with up to `Q` commands outstanding.
///
/// See the crate documentation for the command table and the exact semantics.
pub struct Lun<D, const Q: usize = 16, const SG: usize = DEFAULT_SG_CAPACITY> {
    device: D,
    config: LunConfig,
    slots: [Option<Slot<SG>>; Q],
    initiators: heapless::Vec<InitiatorState, MAX_INITIATORS>,
    spc2_holder: Option<InitiatorId>,
    persistent: Persistent,
    mode: ModeParameters,
    stopped: bool,
    block_count: u64,
    deallocated: Deallocated,
    next_sequence: u64,
}

impl<D: BlockDevice<SG>, const Q: usize, const SG: usize> Lun<D, Q, SG> {
    /// A LU over `device` with identity and policy `config`, just powered on: every initiator's
    /// first command (other than INQUIRY, REPORT LUNS, REQUEST SENSE) gets UNIT ATTENTION,
    /// POWER ON OCCURRED.
    pub fn new(device: D, config: LunConfig) -> Self {
        let geometry = device.geometry();
        let mode = ModeParameters {
            wce: geometry.features.contains(DeviceFeatures::VOLATILE_CACHE),
            rcd: false,
            d_sense: config.descriptor_sense,
            write_protect: false,
            dpofua: true,
            auto_reallocate: false,
            tas: true,
        };
        Self {
            device,
            config,
            slots: core::array::from_fn(|_| None),
            initiators: heapless::Vec::new(),
            spc2_holder: None,
            persistent: Persistent::default(),
            mode,
            stopped: false,
            block_count: geometry.block_count,
            deallocated: Deallocated::default(),
            next_sequence: 0,
        }
    }

    /// The device below.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device below, mutably (for test doubles; do not submit to it directly).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The configuration.
    pub fn config(&self) -> &LunConfig {
        &self.config
    }

    /// Slots in use: commands accepted and not yet completed, plus background flushes of
    /// SYNCHRONIZE CACHE with IMMED that already reported GOOD. Poll until it is zero to drain.
    pub fn outstanding(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// A logical unit reset: SPC-2 reservations are released, commands not yet started are
    /// aborted (they complete with TASK ABORTED), and every known initiator gets UNIT
    /// ATTENTION, BUS DEVICE RESET FUNCTION OCCURRED. Persistent reservations survive. Commands
    /// already at the device complete normally.
    pub fn reset(&mut self) {
        self.spc2_holder = None;
        for slot in self.slots.iter_mut().flatten() {
            if matches!(slot.state, SlotState::New) {
                slot.state = SlotState::Aborted;
            }
        }
        self.broadcast(None, Asc::BUS_DEVICE_RESET_FUNCTION_OCCURRED);
    }

    /// Sets the access state of target port group `id` (an implicit ALUA transition): every
    /// known initiator gets UNIT ATTENTION, ASYMMETRIC ACCESS STATE CHANGED. Returns `false` if
    /// there is no such group.
    pub fn set_port_group_state(&mut self, id: u16, state: AccessState) -> bool {
        let Some(group) = self.config.port_groups.iter_mut().find(|g| g.id == id) else {
            return false;
        };
        group.state = state;
        group.status_code = 2;
        self.broadcast(None, Asc::ASYMMETRIC_ACCESS_STATE_CHANGED);
        true
    }

    /// Replaces the LUN inventory REPORT LUNS returns (extra entries beyond
    /// [`MAX_REPORTED_LUNS`] are dropped): every known initiator gets UNIT ATTENTION, REPORTED
    /// LUNS DATA HAS CHANGED.
    pub fn set_report_luns(&mut self, luns: &[u64]) {
        self.config.report_luns.clear();
        for lun in luns.iter().take(MAX_REPORTED_LUNS) {
            let _ = self.config.report_luns.push(*lun);
        }
        self.broadcast(None, Asc::REPORTED_LUNS_DATA_HAS_CHANGED);
    }

    /// Queues UNIT ATTENTION `attention` for `initiator`, or for every known initiator when
    /// `None` (for a simulated array's fault injection, or a change the LU cannot see).
    pub fn raise_unit_attention(&mut self, initiator: Option<InitiatorId>, attention: Asc) {
        match initiator {
            Some(id) => {
                // Make sure the initiator is known, with its power-on attention first.
                let _ = self.unit_attention(id, false);
                self.attention_for(id, attention);
            }
            None => self.broadcast(None, attention),
        }
    }

    /// The I_T nexus of `initiator` was lost (logout, link down): its SPC-2 reservation is
    /// released and it gets UNIT ATTENTION, I_T NEXUS LOSS OCCURRED. Persistent reservations
    /// and registrations survive, as SPC requires.
    pub fn nexus_loss(&mut self, initiator: InitiatorId) {
        if self.spc2_holder == Some(initiator) {
            self.spc2_holder = None;
        }
        self.attention_for(initiator, Asc::I_T_NEXUS_LOSS_OCCURRED);
    }

    fn take_deferred(&mut self, initiator: InitiatorId) -> Option<SenseRepr> {
        self.initiators
            .iter_mut()
            .find(|i| i.id == initiator)
            .and_then(|i| i.deferred.take())
    }

    /// Unit attentions pending for `initiator`, oldest first.
    pub fn pending_unit_attentions(&self, initiator: InitiatorId) -> &[Asc] {
        self.initiators
            .iter()
            .find(|i| i.id == initiator)
            .map(|i| &i.attentions[..])
            .unwrap_or(&[])
    }

    fn sense_format(&self) -> SenseFormat {
        if self.mode.d_sense {
            SenseFormat::Descriptor
        } else {
            SenseFormat::Fixed
        }
    }

    fn write_protected(&self, geometry: &Geometry) -> bool {
        self.config.write_protect || geometry.features.contains(DeviceFeatures::READ_ONLY)
    }

    /// Queues `attention` for every known initiator except `except`.
    fn broadcast(&mut self, except: Option<InitiatorId>, attention: Asc) {
        for state in self.initiators.iter_mut() {
            if Some(state.id) != except && !state.attentions.contains(&attention) {
                let _ = state.attentions.push(attention);
            }
        }
    }

    fn attention_for(&mut self, initiator: InitiatorId, attention: Asc) {
        if let Some(state) = self.initiators.iter_mut().find(|i| i.id == initiator)
            && !state.attentions.contains(&attention)
        {
            let _ = state.attentions.push(attention);
        }
    }

    /// Registers a first contact (with POWER ON OCCURRED pending) and pops the oldest
    /// pending unit attention of `initiator` if `take`.
    fn unit_attention(&mut self, initiator: InitiatorId, take: bool) -> Option<Asc> {
        if !self.initiators.iter().any(|i| i.id == initiator) {
            let mut attentions = heapless::Vec::new();
            let _ = attentions.push(Asc::POWER_ON_OCCURRED);
            let _ = self.initiators.push(InitiatorState {
                id: initiator,
                attentions,
                deferred: None,
            });
        }
        let state = self.initiators.iter_mut().find(|i| i.id == initiator)?;
        if state.attentions.is_empty() {
            return None;
        }
        if take {
            Some(state.attentions.remove(0))
        } else {
            state.attentions.first().copied()
        }
    }

    fn port_state(&self, port: u16) -> AccessState {
        self.config
            .port_groups
            .iter()
            .find(|g| g.ports.contains(&port))
            .map(|g| g.state)
            .unwrap_or(AccessState::ActiveOptimized)
    }

    fn port_group_of(&self, port: u16) -> Option<u16> {
        self.config
            .port_groups
            .iter()
            .find(|g| g.ports.contains(&port))
            .map(|g| g.id)
    }

    /// Whether the LU implements `spec` on this device (drives REPORT SUPPORTED OPERATION
    /// CODES and INVALID COMMAND OPERATION CODE).
    pub fn supports(&self, spec: &CommandSpec) -> bool {
        let features = self.device.geometry().features;
        match (spec.opcode, spec.service_action) {
            (opcode::UNMAP, _) => features.contains(DeviceFeatures::UNMAP),
            (opcode::COMPARE_AND_WRITE, _) => features.contains(DeviceFeatures::COMPARE_AND_WRITE),
            (opcode::MAINTENANCE_IN, Some(cdb::service_action::TARGET_PORT_GROUPS)) => {
                !self.config.port_groups.is_empty()
            }
            (opcode::MAINTENANCE_OUT, _) => {
                !self.config.port_groups.is_empty() && self.config.tpgs & 0x02 != 0
            }
            _ => true,
        }
    }

    fn access_of(repr: &CdbRepr) -> Access {
        match repr {
            CdbRepr::Inquiry { .. }
            | CdbRepr::ReportLuns { .. }
            | CdbRepr::RequestSense { .. }
            | CdbRepr::PersistentReserveIn { .. }
            | CdbRepr::PersistentReserveOut { .. }
            | CdbRepr::ReportTargetPortGroups { .. }
            | CdbRepr::ReadCapacity10 { .. }
            | CdbRepr::ReadCapacity16 { .. }
            | CdbRepr::TestUnitReady => Access::Always,
            CdbRepr::ModeSense { .. } | CdbRepr::ReportSupportedOpcodes { .. } => Access::Info,
            CdbRepr::ReadWrite(RwKind::Read | RwKind::Verify, _) | CdbRepr::GetLbaStatus { .. } => {
                Access::Read
            }
            _ => Access::Write,
        }
    }

    /// The reservation check (SPC-2 and persistent), for a command from `initiator`.
    fn reservation_conflict(&self, initiator: InitiatorId, port: u16, repr: &CdbRepr) -> bool {
        if let Some(holder) = self.spc2_holder
            && holder != initiator
        {
            return !matches!(
                repr,
                CdbRepr::Inquiry { .. }
                    | CdbRepr::RequestSense { .. }
                    | CdbRepr::ReportLuns { .. }
                    | CdbRepr::Release { .. }
            );
        }
        let Some(reservation) = self.persistent.reservation else {
            return false;
        };
        if self.persistent.is_holder(initiator, port) {
            return false;
        }
        let registered = self.persistent.key_of(initiator, port).is_some();
        let registrant_is_holder = reservation.kind.registrants_only() && registered;
        match Self::access_of(repr) {
            Access::Always => false,
            Access::Info => !(registered || reservation.kind.write_exclusive()),
            Access::Read => !(registrant_is_holder || reservation.kind.write_exclusive()),
            Access::Write => !registrant_is_holder,
        }
    }

    /// The ALUA check: which commands a port in a non-active state accepts.
    fn alua_refusal(&self, port: u16, repr: &CdbRepr) -> Option<Fail> {
        let minimal = matches!(
            repr,
            CdbRepr::Inquiry { .. }
                | CdbRepr::ReportLuns { .. }
                | CdbRepr::ReportTargetPortGroups { .. }
                | CdbRepr::SetTargetPortGroups { .. }
                | CdbRepr::RequestSense { .. }
        );
        let standby_ok = minimal
            || matches!(
                repr,
                CdbRepr::ModeSense { .. }
                    | CdbRepr::ModeSelect { .. }
                    | CdbRepr::ReadCapacity16 { .. }
                    | CdbRepr::PersistentReserveIn { .. }
                    | CdbRepr::PersistentReserveOut { .. }
                    | CdbRepr::ReportSupportedOpcodes { .. }
            );
        let (ok, asc) = match self.port_state(port) {
            AccessState::ActiveOptimized | AccessState::ActiveNonOptimized => return None,
            AccessState::Standby => (standby_ok, Asc::TARGET_PORT_STANDBY),
            AccessState::Unavailable | AccessState::Offline => {
                (minimal, Asc::TARGET_PORT_UNAVAILABLE)
            }
            AccessState::Transitioning => (
                minimal && !matches!(repr, CdbRepr::SetTargetPortGroups { .. }),
                Asc::ASYMMETRIC_ACCESS_TRANSITION,
            ),
        };
        (!ok).then_some(Fail::Sense(SenseRepr::new(SenseKey::NOT_READY, asc)))
    }

    fn complete(&self, tag: Tag, result: Result<Residual, Fail>) -> CommandCompletion {
        match result {
            Ok(residual) => CommandCompletion::good(tag, residual),
            Err(Fail::Status(status)) => CommandCompletion::status(tag, status),
            Err(Fail::Sense(sense)) => {
                CommandCompletion::check_condition(tag, sense.to_buf(self.sense_format()))
            }
        }
    }

    /// Decodes and starts the command in slot `index`.
    fn start(&mut self, index: usize, memory: &mut dyn Memory) -> Option<CommandCompletion> {
        // The slot is out of the table while its command executes, so the command need not be
        // copied; it goes back only if the command continues at the device.
        let mut slot = self.slots.get_mut(index)?.take()?;
        let outcome = self.decode_and_execute(index, &slot.command, memory);
        match outcome {
            Ok(Exec::Done(residual)) => Some(self.complete(slot.command.tag, Ok(residual))),
            Err(fail) => Some(self.complete(slot.command.tag, Err(fail))),
            Ok(Exec::Start(job)) => {
                let early = job
                    .early
                    .then(|| CommandCompletion::good(slot.command.tag, job.residual));
                slot.state = SlotState::Running(job);
                self.slots[index] = Some(slot);
                early
            }
        }
    }

    fn decode_and_execute(
        &mut self,
        index: usize,
        command: &Command<SG>,
        memory: &mut dyn Memory,
    ) -> Result<Exec<SG>, Fail> {
        let initiator = command.nexus.initiator;
        let bytes = command.cdb.as_bytes();
        let op = bytes.first().copied().unwrap_or(0);
        if command.nexus.lun != self.config.lun {
            return self.wrong_lun(command, memory);
        }
        if command.attribute == TaskAttribute::Aca {
            // No ACA condition is ever established (NACA is refused), so no ACA task is valid.
            return Err(bad_iu());
        }
        // Unit attentions come first, except for the three commands SPC exempts.
        let exempt = matches!(
            op,
            opcode::INQUIRY | opcode::REPORT_LUNS | opcode::REQUEST_SENSE
        );
        if !exempt && let Some(asc) = self.unit_attention(initiator, true) {
            return Err(Fail::Sense(SenseRepr::new(SenseKey::UNIT_ATTENTION, asc)));
        }
        if !exempt && let Some(deferred) = self.take_deferred(initiator) {
            return Err(Fail::Sense(deferred));
        }
        let parsed = Cdb::new_checked(bytes).and_then(|cdb| {
            let repr = CdbRepr::parse(&cdb)?;
            match cdb.spec() {
                Some(spec) if self.supports(spec) => Ok(repr),
                Some(_) if has_service_action(op) => Err(CdbError::InvalidField {
                    byte: 1,
                    bit: Some(4),
                }),
                _ => Err(CdbError::InvalidOpcode),
            }
        });
        // As in Linux's target core, the ALUA state and reservations are checked before the
        // CDB's fields: a CDB that does not parse is classed by its opcode (as the all-zero
        // CDB of that command), an unknown opcode as a command that changes the medium.
        let class = match &parsed {
            Ok(repr) => *repr,
            Err(_) => Self::probe(bytes).unwrap_or(CdbRepr::Unmap {
                anchor: false,
                group: 0,
                parameter_list_length: 0,
            }),
        };
        if let Some(fail) = self.alua_refusal(command.nexus.target_port, &class) {
            return Err(fail);
        }
        if self.reservation_conflict(initiator, command.nexus.target_port, &class) {
            return Err(Fail::Status(Status::RESERVATION_CONFLICT));
        }
        let repr = match parsed {
            Ok(repr) => repr,
            Err(CdbError::InvalidOpcode) => {
                return Err(illegal(Asc::INVALID_COMMAND_OPERATION_CODE));
            }
            Err(CdbError::Truncated) => return Err(bad_iu()),
            Err(CdbError::InvalidField { byte, bit }) => return Err(invalid_cdb(byte, bit)),
        };
        self.execute(index, command, &repr, memory)
    }

    /// The oldest queued command that its task attribute lets start now (SAM-5 8.6): a HEAD
    /// OF QUEUE command at once, an ORDERED one when every older command is done, a SIMPLE one
    /// when no older ORDERED command is pending.
    fn next_startable(&self) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for (index, slot) in self.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            if !matches!(slot.state, SlotState::New) {
                continue;
            }
            let older = |ordered_only: bool| {
                self.slots.iter().flatten().any(|other| {
                    other.sequence < slot.sequence
                        && other.active()
                        && (!ordered_only || other.command.attribute == TaskAttribute::Ordered)
                })
            };
            let allowed = match slot.command.attribute {
                TaskAttribute::HeadOfQueue | TaskAttribute::Aca => true,
                TaskAttribute::Ordered => !older(false),
                TaskAttribute::Simple => !older(true),
            };
            if allowed && best.is_none_or(|(sequence, _)| slot.sequence < sequence) {
                best = Some((slot.sequence, index));
            }
        }
        best.map(|(_, index)| index)
    }

    /// The command a CDB's opcode (and service action) names, as its all-zero CDB.
    fn probe(bytes: &[u8]) -> Option<CdbRepr> {
        let op = *bytes.first()?;
        let spec = lookup(op, bytes.get(1).copied().unwrap_or(0))?;
        let mut zero = [0u8; cdb::CDB_MAX_LEN];
        zero[0] = op;
        if let Some(sa) = spec.service_action {
            zero[1] = sa;
        }
        CdbRepr::parse(&Cdb::new_unchecked(&zero[..usize::from(spec.cdb_len)])).ok()
    }

    /// A command addressed to a LUN other than this one (SPC-4 4.6.6.4 and 6.6.2): INQUIRY
    /// reports peripheral qualifier 3 (no LU), REPORT LUNS is answered, REQUEST SENSE returns
    /// LOGICAL UNIT NOT SUPPORTED as data, anything else fails with it.
    fn wrong_lun(&self, command: &Command<SG>, memory: &mut dyn Memory) -> Result<Exec<SG>, Fail> {
        let not_supported =
            SenseRepr::new(SenseKey::ILLEGAL_REQUEST, Asc::LOGICAL_UNIT_NOT_SUPPORTED);
        let Ok(repr) = Cdb::new_checked(command.cdb.as_bytes()).and_then(|c| CdbRepr::parse(&c))
        else {
            return Err(Fail::Sense(not_supported));
        };
        let mut buf = [0u8; RESPONSE_MAX];
        let (len, allocation_length) = match repr {
            CdbRepr::Inquiry {
                evpd: false,
                allocation_length,
                ..
            } => {
                let mut data = self.inquiry_data();
                data.peripheral_qualifier = 3;
                data.peripheral_device_type = 0x1F;
                (data.emit(&mut buf), usize::from(allocation_length))
            }
            CdbRepr::ReportLuns {
                select_report,
                allocation_length,
            } if select_report <= 2 && allocation_length >= 16 => (
                response::report_luns(&self.config.report_luns, &mut buf),
                allocation_length as usize,
            ),
            CdbRepr::RequestSense {
                desc,
                allocation_length,
            } => {
                let format = if desc {
                    SenseFormat::Descriptor
                } else {
                    SenseFormat::Fixed
                };
                (
                    not_supported.emit(format, &mut buf).unwrap_or(0),
                    usize::from(allocation_length),
                )
            }
            _ => return Err(Fail::Sense(not_supported)),
        };
        Self::data_in(command, upto(&buf, len), allocation_length, memory).map(Exec::Done)
    }

    /// Sends `data` (cut to `allocation_length`) to the command's data-in buffer.
    fn data_in(
        command: &Command<SG>,
        data: &[u8],
        allocation_length: usize,
        memory: &mut dyn Memory,
    ) -> Result<Residual, Fail> {
        let wanted = data.len().min(allocation_length) as u64;
        let sg_len = command.sg.total_len();
        if command.direction == DataDirection::ToDevice && sg_len > 0 {
            return Err(bad_iu());
        }
        let n = wanted.min(sg_len);
        let part = command.sg.slice(0, n).map_err(|_| data_phase())?;
        block::scatter(memory, &part, &data[..n as usize]).map_err(|_| data_phase())?;
        Ok(if wanted > sg_len {
            Residual::Overflow(wanted - sg_len)
        } else if sg_len > n {
            Residual::Underflow(sg_len - n)
        } else {
            Residual::None
        })
    }

    /// Fetches up to `parameter_length` bytes of the data-out buffer into `buf`.
    ///
    /// A parameter list longer than the buffer is refused with INVALID FIELD IN CDB pointing
    /// at the PARAMETER LIST LENGTH field (`length_field`), as Linux refuses overflowing
    /// control CDBs.
    fn data_out<'b>(
        command: &Command<SG>,
        parameter_length: usize,
        length_field: u16,
        memory: &mut dyn Memory,
        buf: &'b mut [u8],
    ) -> Result<(&'b [u8], Residual), Fail> {
        let sg_len = command.sg.total_len();
        if command.direction == DataDirection::FromDevice && sg_len > 0 {
            return Err(bad_iu());
        }
        let wanted = parameter_length as u64;
        if wanted > sg_len {
            return Err(invalid_cdb(length_field, None));
        }
        let n = wanted.min(sg_len);
        if n > buf.len() as u64 {
            return Err(illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        let part = command.sg.slice(0, n).map_err(|_| data_phase())?;
        let out = &mut buf[..n as usize];
        block::gather(memory, &part, out).map_err(|_| data_phase())?;
        let residual = match sg_len - n {
            0 => Residual::None,
            extra => Residual::Underflow(extra),
        };
        Ok((out, residual))
    }

    fn check_range(&self, lba: u64, blocks: u64) -> Result<(), Fail> {
        match lba.checked_add(blocks) {
            Some(end) if end <= self.block_count => Ok(()),
            _ => Err(lba_out_of_range(lba)),
        }
    }

    fn ready(&self) -> Result<(), Fail> {
        if self.stopped {
            return Err(Fail::Sense(SenseRepr::new(
                SenseKey::NOT_READY,
                Asc::INITIALIZING_COMMAND_REQUIRED,
            )));
        }
        Ok(())
    }

    fn single(request: BlockRequest<SG>, residual: Residual, writing: bool) -> Exec<SG> {
        Exec::Start(Job {
            kind: JobKind::Single,
            queued: Some(request),
            in_flight: false,
            residual,
            writing,
            early: false,
            at_device: None,
        })
    }

    fn execute(
        &mut self,
        index: usize,
        command: &Command<SG>,
        repr: &CdbRepr,
        memory: &mut dyn Memory,
    ) -> Result<Exec<SG>, Fail> {
        let geometry = self.device.geometry();
        let tag = Tag(index as u64);
        if let CdbRepr::ReadWrite(kind, rw) = *repr {
            return self.execute_rw(tag, command, kind, rw, &geometry);
        }
        let mut buf = [0u8; RESPONSE_MAX];
        let initiator = command.nexus.initiator;
        match *repr {
            CdbRepr::TestUnitReady => {
                self.ready()?;
                Ok(Exec::Done(Residual::None))
            }
            CdbRepr::RequestSense {
                desc,
                allocation_length,
            } => {
                let deferred = self.take_deferred(initiator);
                let sense = match self.unit_attention(initiator, true) {
                    Some(asc) => SenseRepr::new(SenseKey::UNIT_ATTENTION, asc),
                    None if deferred.is_some() => deferred
                        .unwrap_or(SenseRepr::new(SenseKey::NO_SENSE, Asc::NO_ADDITIONAL_SENSE)),
                    None if self.stopped => {
                        SenseRepr::new(SenseKey::NOT_READY, Asc::INITIALIZING_COMMAND_REQUIRED)
                    }
                    None => SenseRepr::new(SenseKey::NO_SENSE, Asc::NO_ADDITIONAL_SENSE),
                };
                let format = if desc {
                    SenseFormat::Descriptor
                } else {
                    SenseFormat::Fixed
                };
                let len = sense.emit(format, &mut buf).unwrap_or(0);
                Self::data_in(
                    command,
                    upto(&buf, len),
                    usize::from(allocation_length),
                    memory,
                )
                .map(Exec::Done)
            }
            CdbRepr::Inquiry {
                evpd,
                page_code,
                allocation_length,
            } => {
                // Register the initiator so that its later commands see power-on.
                let _ = self.unit_attention(initiator, false);
                let len = if evpd {
                    self.vpd_page(page_code, command.nexus.target_port, &geometry, &mut buf)
                        .ok_or(invalid_cdb(2, None))?
                } else {
                    self.inquiry_data().emit(&mut buf)
                };
                Self::data_in(
                    command,
                    upto(&buf, len),
                    usize::from(allocation_length),
                    memory,
                )
                .map(Exec::Done)
            }
            CdbRepr::ReadCapacity10 { .. } => {
                let len = ReadCapacity10Data::for_device(self.block_count, geometry.block_size)
                    .emit(&mut buf);
                Self::data_in(command, upto(&buf, len), 8, memory).map(Exec::Done)
            }
            CdbRepr::ReadCapacity16 {
                allocation_length, ..
            } => {
                let features = geometry.features;
                let lbpme = features.contains(DeviceFeatures::UNMAP);
                let len = ReadCapacity16Data {
                    last_lba: self.block_count.saturating_sub(1),
                    block_len: geometry.block_size,
                    lbppbe: 0,
                    lbpme,
                    lbprz: lbpme && features.contains(DeviceFeatures::UNMAP_READS_ZERO),
                    lowest_aligned_lba: 0,
                }
                .emit(&mut buf);
                Self::data_in(command, upto(&buf, len), allocation_length as usize, memory)
                    .map(Exec::Done)
            }
            CdbRepr::ModeSense {
                ten,
                llbaa,
                dbd,
                page_control,
                page_code,
                subpage_code,
                allocation_length,
            } => {
                let control = match page_control {
                    0 => PageControl::Current,
                    1 => PageControl::Changeable,
                    2 => PageControl::Default,
                    _ => return Err(illegal(Asc::SAVING_PARAMETERS_NOT_SUPPORTED)),
                };
                let subpage_ok = subpage_code == 0 || (subpage_code == 0xFF && page_code == 0x3F);
                if !subpage_ok {
                    return Err(invalid_cdb(3, None));
                }
                let mut params = self.mode;
                params.write_protect = self.write_protected(&geometry);
                let len = ModeSenseData {
                    ten,
                    long_lba: llbaa,
                    block_descriptor: !dbd,
                    block_count: self.block_count,
                    block_len: geometry.block_size,
                    page: page_code,
                    control,
                }
                .emit(&params, &mut buf)
                .ok_or(invalid_cdb(2, Some(5)))?;
                Self::data_in(
                    command,
                    upto(&buf, len),
                    usize::from(allocation_length),
                    memory,
                )
                .map(Exec::Done)
            }
            CdbRepr::ModeSelect {
                ten,
                pf,
                sp,
                parameter_list_length,
            } => {
                if sp {
                    return Err(invalid_cdb(1, Some(0)));
                }
                if !pf && parameter_list_length > 0 {
                    return Err(invalid_cdb(1, Some(4)));
                }
                let mut pbuf = [0u8; PARAMETER_MAX];
                let (data, residual) = Self::data_out(
                    command,
                    usize::from(parameter_list_length),
                    if ten { 7 } else { 4 },
                    memory,
                    &mut pbuf,
                )?;
                if !data.is_empty() {
                    self.mode_select(ten, data, initiator)?;
                }
                Ok(Exec::Done(residual))
            }
            CdbRepr::StartStopUnit {
                power_condition,
                loej,
                start,
                ..
            } => {
                if power_condition != 0 {
                    return Err(invalid_cdb(4, Some(7)));
                }
                if loej {
                    return Err(invalid_cdb(4, Some(1)));
                }
                self.stopped = !start;
                Ok(Exec::Done(Residual::None))
            }
            CdbRepr::PreventAllowMediumRemoval { .. } => Ok(Exec::Done(Residual::None)),
            CdbRepr::Reserve { .. } => {
                if !self.persistent.registrations.is_empty()
                    || self.persistent.reservation.is_some()
                {
                    return Err(Fail::Status(Status::RESERVATION_CONFLICT));
                }
                match self.spc2_holder {
                    Some(holder) if holder != initiator => {
                        Err(Fail::Status(Status::RESERVATION_CONFLICT))
                    }
                    _ => {
                        self.spc2_holder = Some(initiator);
                        Ok(Exec::Done(Residual::None))
                    }
                }
            }
            CdbRepr::Release { .. } => {
                if self.spc2_holder == Some(initiator) {
                    self.spc2_holder = None;
                }
                Ok(Exec::Done(Residual::None))
            }
            // Handled by execute_rw before the response buffer exists.
            CdbRepr::ReadWrite(..) => Err(illegal(Asc::INTERNAL_TARGET_FAILURE)),
            CdbRepr::SynchronizeCache {
                lba, blocks, immed, ..
            } => {
                self.ready()?;
                let end_blocks = if blocks == 0 {
                    self.block_count.saturating_sub(lba)
                } else {
                    u64::from(blocks)
                };
                self.check_range(lba, end_blocks)?;
                let mut exec = Self::single(BlockRequest::flush(tag), Residual::None, true);
                if let (true, Exec::Start(job)) = (immed, &mut exec) {
                    job.early = true;
                }
                Ok(exec)
            }
            CdbRepr::CompareAndWrite {
                lba, blocks, fua, ..
            } => {
                self.ready()?;
                if self.write_protected(&geometry) {
                    return Err(write_protected());
                }
                if blocks > self.config.max_compare_and_write_blocks {
                    return Err(invalid_cdb(13, None));
                }
                self.check_range(lba, u64::from(blocks))?;
                if blocks == 0 {
                    return Ok(Exec::Done(Residual::None));
                }
                let expected = u64::from(blocks) * u64::from(geometry.block_size) * 2;
                if command.direction != DataDirection::ToDevice
                    || command.sg.total_len() != expected
                {
                    return Err(bad_iu());
                }
                let flags = if fua {
                    RequestFlags::FUA
                } else {
                    RequestFlags::empty()
                };
                let request = BlockRequest::compare_and_write(
                    tag,
                    Lba(lba),
                    BlockCount(u32::from(blocks)),
                    command.sg.clone(),
                )
                .with_flags(flags);
                Ok(Self::single(request, Residual::None, true))
            }
            CdbRepr::WriteSame {
                sixteen,
                lba,
                blocks,
                unmap,
                anchor,
                ndob,
                ..
            } => {
                self.ready()?;
                if anchor {
                    return Err(invalid_cdb(1, Some(4)));
                }
                if self.write_protected(&geometry) {
                    return Err(write_protected());
                }
                let count_field = if sixteen { 10 } else { 7 };
                if blocks == 0 || blocks > self.config.max_write_same_blocks {
                    return Err(invalid_cdb(count_field, None));
                }
                self.check_range(lba, u64::from(blocks))?;
                let features = geometry.features;
                if unmap && !features.contains(DeviceFeatures::UNMAP) {
                    return Err(invalid_cdb(1, Some(3)));
                }
                let bs = u64::from(geometry.block_size);
                let sg_len = command.sg.total_len();
                let zero = if ndob {
                    true
                } else {
                    if command.direction != DataDirection::ToDevice || sg_len != bs {
                        return Err(bad_iu());
                    }
                    let mut all_zero = true;
                    for seg in command.sg.segments() {
                        let bytes = memory
                            .slice(seg.addr, seg.len as usize)
                            .map_err(|_| data_phase())?;
                        all_zero &= bytes.iter().all(|b| *b == 0);
                    }
                    all_zero
                };
                let residual = match (ndob, sg_len) {
                    (true, n) if n > 0 => Residual::Underflow(n),
                    _ => Residual::None,
                };
                if zero && features.contains(DeviceFeatures::WRITE_ZEROES) {
                    let flags = if unmap {
                        RequestFlags::MAY_UNMAP
                    } else {
                        RequestFlags::empty()
                    };
                    let request = BlockRequest::write_zeroes(tag, Lba(lba), BlockCount(blocks))
                        .with_flags(flags);
                    return Ok(Self::single(request, residual, true));
                }
                if zero
                    && unmap
                    && features.contains(DeviceFeatures::UNMAP | DeviceFeatures::UNMAP_READS_ZERO)
                {
                    let request = BlockRequest::unmap(tag, Lba(lba), BlockCount(blocks));
                    return Ok(Self::single(request, residual, true));
                }
                if ndob {
                    // Zeros without a zeroing device and without a buffer: not supported.
                    return Err(invalid_cdb(1, Some(0)));
                }
                let mut job = Job {
                    kind: JobKind::Repeat {
                        next_lba: lba,
                        remaining: u64::from(blocks),
                        block_sg: command.sg.clone(),
                    },
                    queued: None,
                    in_flight: false,
                    residual,
                    writing: true,
                    early: false,
                    at_device: None,
                };
                job.queued = self.next_child(tag, &mut job.kind);
                Ok(Exec::Start(job))
            }
            CdbRepr::Unmap {
                anchor,
                parameter_list_length,
                ..
            } => {
                self.ready()?;
                if anchor {
                    return Err(invalid_cdb(1, Some(0)));
                }
                if self.write_protected(&geometry) {
                    return Err(write_protected());
                }
                if parameter_list_length == 0 {
                    return Ok(Exec::Done(Residual::None));
                }
                if parameter_list_length < 8 {
                    return Err(illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
                }
                let mut pbuf = [0u8; PARAMETER_MAX];
                let max_len = 8 + 16 * usize::from(self.config.max_unmap_descriptors);
                let plen = usize::from(parameter_list_length);
                let (data, residual) =
                    Self::data_out(command, plen.min(PARAMETER_MAX), 7, memory, &mut pbuf)?;
                if data.len() < 8 {
                    return Err(illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
                }
                let bd_len = usize::from(u16::from_be_bytes([data[2], data[3]]));
                let declared = 8usize.saturating_add(bd_len);
                if bd_len / 16 > usize::from(self.config.max_unmap_descriptors)
                    || (declared > max_len && plen > max_len)
                {
                    return Err(invalid_param(2, None));
                }
                let available = data.len().min(declared);
                let mut extents = heapless::Vec::new();
                for (i, d) in data[8..available].chunks_exact(16).enumerate() {
                    let lba = be64(&d[..8]);
                    let count = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
                    if count > self.config.max_unmap_blocks {
                        return Err(invalid_param((8 + 16 * i + 8) as u16, None));
                    }
                    self.check_range(lba, u64::from(count))?;
                    if count > 0 {
                        let _ = extents.push((lba, count));
                    }
                }
                let mut kind = JobKind::Extents { extents, next: 0 };
                let queued = self.next_child(tag, &mut kind);
                if queued.is_none() {
                    return Ok(Exec::Done(residual));
                }
                Ok(Exec::Start(Job {
                    kind,
                    queued,
                    in_flight: false,
                    residual,
                    writing: true,
                    early: false,
                    at_device: None,
                }))
            }
            CdbRepr::GetLbaStatus {
                lba,
                allocation_length,
                report_type,
            } => {
                self.ready()?;
                if lba >= self.block_count {
                    return Err(lba_out_of_range(lba));
                }
                // As many descriptors as the allocation length (at least one) and the
                // response buffer hold.
                let wanted = (allocation_length as usize).saturating_sub(8) / 16;
                let max = wanted.clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
                let mut descriptors: heapless::Vec<
                    LbaStatusDescriptor,
                    MAX_LBA_STATUS_DESCRIPTORS,
                > = heapless::Vec::new();
                // REPORT TYPE: 0 all, 1 nonzero status, 2 mapped, 3 deallocated. The runs
                // alternate and are bounded by the tracker's table, so scanning all is cheap.
                let runs = self
                    .deallocated
                    .runs(lba, self.block_count, usize::MAX)
                    .filter(|(_, _, deallocated)| match report_type {
                        1 | 3 => *deallocated,
                        2 => !*deallocated,
                        _ => true,
                    })
                    .take(max);
                for (start, blocks, deallocated) in runs {
                    let _ = descriptors.push(LbaStatusDescriptor {
                        lba: start,
                        blocks,
                        status: u8::from(deallocated),
                    });
                }
                let len = response::lba_status(&descriptors, &mut buf);
                Self::data_in(command, upto(&buf, len), allocation_length as usize, memory)
                    .map(Exec::Done)
            }
            CdbRepr::ReportLuns {
                select_report,
                allocation_length,
            } => {
                if select_report > 2 {
                    return Err(invalid_cdb(2, None));
                }
                if allocation_length < 16 {
                    return Err(invalid_cdb(6, None));
                }
                let _ = self.unit_attention(initiator, false);
                let len = response::report_luns(&self.config.report_luns, &mut buf);
                Self::data_in(command, upto(&buf, len), allocation_length as usize, memory)
                    .map(Exec::Done)
            }
            CdbRepr::ReportSupportedOpcodes {
                rctd,
                reporting_options,
                opcode: requested,
                service_action,
                allocation_length,
            } => {
                let len = match reporting_options {
                    0 => response::supported_opcodes_all(&|s| self.supports(s), rctd, &mut buf),
                    _ => {
                        let has_sa = has_service_action(requested);
                        if (reporting_options == 1 && has_sa) || (reporting_options == 2 && !has_sa)
                        {
                            return Err(invalid_cdb(3, None));
                        }
                        if has_sa && service_action > 0x1F {
                            return Err(invalid_cdb(4, None));
                        }
                        let spec = lookup(requested, service_action as u8)
                            .filter(|s| s.service_action.is_some() == has_sa)
                            .filter(|s| self.supports(s));
                        response::supported_opcode_one(spec, rctd, &mut buf)
                    }
                };
                Self::data_in(command, upto(&buf, len), allocation_length as usize, memory)
                    .map(Exec::Done)
            }
            CdbRepr::ReportTargetPortGroups {
                extended,
                allocation_length,
            } => {
                let mut descriptors: heapless::Vec<TargetPortGroupDescriptor<'_>, MAX_PORT_GROUPS> =
                    heapless::Vec::new();
                for g in self.config.port_groups.iter() {
                    let _ = descriptors.push(TargetPortGroupDescriptor {
                        preferred: g.preferred,
                        state: g.state,
                        supported: AccessState::ALL_SUPPORTED,
                        id: g.id,
                        status_code: g.status_code,
                        ports: &g.ports,
                    });
                }
                let len = response::report_target_port_groups(
                    &descriptors,
                    extended,
                    self.config.implicit_transition_secs,
                    &mut buf,
                );
                Self::data_in(command, upto(&buf, len), allocation_length as usize, memory)
                    .map(Exec::Done)
            }
            CdbRepr::SetTargetPortGroups {
                parameter_list_length,
            } => {
                let mut pbuf = [0u8; PARAMETER_MAX];
                let plen = parameter_list_length as usize;
                if plen > 4 + 4 * MAX_PORT_GROUPS {
                    return Err(illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
                }
                let (data, residual) = Self::data_out(command, plen, 6, memory, &mut pbuf)?;
                if data.len() < plen || !plen.is_multiple_of(4) {
                    return Err(illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
                }
                // Validate every descriptor before changing anything.
                for (i, d) in data.get(4..).unwrap_or(&[]).chunks_exact(4).enumerate() {
                    let at = (4 + 4 * i) as u16;
                    let id = u16::from_be_bytes([d[2], d[3]]);
                    let state = AccessState::from_code(d[0] & 0x0F);
                    if !matches!(
                        state,
                        Some(
                            AccessState::ActiveOptimized
                                | AccessState::ActiveNonOptimized
                                | AccessState::Standby
                                | AccessState::Unavailable
                        )
                    ) || d[0] & 0xF0 != 0
                    {
                        return Err(invalid_param(at, None));
                    }
                    if !self.config.port_groups.iter().any(|g| g.id == id) {
                        return Err(invalid_param(at + 2, None));
                    }
                }
                let mut changed = false;
                for d in data.get(4..).unwrap_or(&[]).chunks_exact(4) {
                    let id = u16::from_be_bytes([d[2], d[3]]);
                    if let (Some(state), Some(g)) = (
                        AccessState::from_code(d[0]),
                        self.config.port_groups.iter_mut().find(|g| g.id == id),
                    ) {
                        changed |= g.state != state;
                        g.state = state;
                        g.status_code = 1;
                    }
                }
                if changed {
                    self.broadcast(Some(initiator), Asc::ASYMMETRIC_ACCESS_STATE_CHANGED);
                }
                Ok(Exec::Done(residual))
            }
            CdbRepr::PersistentReserveIn {
                action,
                allocation_length,
            } => {
                let len = self.pr_in(action, &mut buf)?;
                Self::data_in(
                    command,
                    upto(&buf, len),
                    usize::from(allocation_length),
                    memory,
                )
                .map(Exec::Done)
            }
            CdbRepr::PersistentReserveOut {
                action,
                scope,
                kind,
                parameter_list_length,
            } => {
                // 24 bytes, or with SPEC_I_PT 28 and the TransportIDs (checked in pr_out).
                let plen = parameter_list_length as usize;
                if !(24..=PARAMETER_MAX).contains(&plen) {
                    return Err(illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
                }
                let mut pbuf = [0u8; PARAMETER_MAX];
                let (data, residual) = Self::data_out(command, plen, 5, memory, &mut pbuf)?;
                let port = command.nexus.target_port;
                self.pr_out(initiator, port, action, scope, kind, data)?;
                Ok(Exec::Done(residual))
            }
        }
    }

    /// READ, WRITE, WRITE AND VERIFY, VERIFY: kept apart so that the data path does not
    /// zero the response buffer of the other commands.
    fn execute_rw(
        &self,
        tag: Tag,
        command: &Command<SG>,
        kind: RwKind,
        rw: cdb::Rw,
        geometry: &Geometry,
    ) -> Result<Exec<SG>, Fail> {
        self.ready()?;
        let writing = matches!(kind, RwKind::Write | RwKind::WriteAndVerify);
        if writing && self.write_protected(geometry) {
            return Err(write_protected());
        }
        let blocks = u64::from(rw.blocks);
        if blocks > u64::from(geometry.max_transfer_blocks) {
            return Err(invalid_cdb(length_field(rw.size), None));
        }
        self.check_range(rw.lba, blocks)?;
        if kind == RwKind::Verify {
            if rw.bytchk != 0 {
                return self.verify_bytes(tag, command, rw, geometry);
            }
            return Ok(Exec::Done(match command.sg.total_len() {
                0 => Residual::None,
                n => Residual::Underflow(n),
            }));
        }
        let bs = u64::from(geometry.block_size);
        let expected = blocks
            .checked_mul(bs)
            .ok_or(invalid_cdb(length_field(rw.size), None))?;
        let sg_len = command.sg.total_len();
        if blocks == 0 {
            return Ok(Exec::Done(match sg_len {
                0 => Residual::None,
                n => Residual::Underflow(n),
            }));
        }
        let direction = if writing {
            DataDirection::ToDevice
        } else {
            DataDirection::FromDevice
        };
        if command.direction != direction {
            return Err(bad_iu());
        }
        let fua = rw.fua || kind == RwKind::WriteAndVerify;
        let flags = if fua {
            RequestFlags::FUA
        } else {
            RequestFlags::empty()
        };
        if writing {
            if sg_len != expected {
                return Err(bad_iu());
            }
            let request =
                BlockRequest::write(tag, Lba(rw.lba), BlockCount(rw.blocks), command.sg.clone())
                    .with_flags(flags);
            return Ok(Self::single(request, Residual::None, true));
        }
        let (moved_blocks, residual) = if sg_len >= expected {
            let residual = match sg_len - expected {
                0 => Residual::None,
                n => Residual::Underflow(n),
            };
            (blocks, residual)
        } else {
            (sg_len / bs, Residual::Overflow(expected - sg_len))
        };
        if moved_blocks == 0 {
            return Ok(Exec::Done(residual));
        }
        let sg = command
            .sg
            .slice(0, moved_blocks * bs)
            .map_err(|_| data_phase())?;
        let request = BlockRequest::read(tag, Lba(rw.lba), BlockCount(moved_blocks as u32), sg)
            .with_flags(flags);
        Ok(Self::single(request, residual, false))
    }

    /// The next child request of a multi-request job, or `None` when the job is done.
    fn next_child(&self, tag: Tag, kind: &mut JobKind<SG>) -> Option<BlockRequest<SG>> {
        match kind {
            JobKind::Single => None,
            JobKind::Repeat {
                next_lba,
                remaining,
                block_sg,
            } => {
                if *remaining == 0 {
                    return None;
                }
                let per_block = block_sg.segments().len().max(1);
                let geometry = self.device.geometry();
                let chunk = ((SG / per_block).max(1) as u64)
                    .min(*remaining)
                    .min(u64::from(geometry.max_transfer_blocks.max(1)));
                let mut sg = SgList::new();
                for _ in 0..chunk {
                    for seg in block_sg.segments() {
                        sg.push(*seg).ok()?;
                    }
                }
                let request =
                    BlockRequest::write(tag, Lba(*next_lba), BlockCount(chunk as u32), sg);
                *next_lba += chunk;
                *remaining -= chunk;
                Some(request)
            }
            JobKind::Extents { extents, next } => {
                let (lba, count) = *extents.get(*next)?;
                *next += 1;
                Some(BlockRequest::unmap(tag, Lba(lba), BlockCount(count)))
            }
            JobKind::Verify {
                next_lba,
                remaining,
                done,
                data,
                per_block,
                block_size,
                base,
            } => {
                if *remaining == 0 {
                    return None;
                }
                let bs = u64::from(*block_size);
                let segments = data.segments().len().max(1);
                let max = u64::from(self.device.geometry().max_transfer_blocks.max(1));
                // Both halves of the request name the same bytes, so the list holds them twice.
                let (chunk, compare) = if *per_block {
                    let chunk = ((SG / (2 * segments)).max(1) as u64)
                        .min(*remaining)
                        .min(max);
                    let mut sg = SgList::<SG>::new();
                    for _ in 0..chunk {
                        sg.extend_from(data).ok()?;
                    }
                    (chunk, sg)
                } else {
                    let chunk = (*remaining).min(max);
                    (chunk, data.slice(*done * bs, chunk * bs).ok()?)
                };
                let mut sg = compare.clone();
                sg.extend_from(&compare).ok()?;
                let request = BlockRequest::compare_and_write(
                    tag,
                    Lba(*next_lba),
                    BlockCount(chunk as u32),
                    sg,
                );
                *base = *done * bs;
                *next_lba += chunk;
                *remaining -= chunk;
                *done += chunk;
                Some(request)
            }
        }
    }

    /// VERIFY with BYTCHK 01b (compare the range with the data-out buffer) or 11b (compare
    /// every block with the one block of data-out), through the device's compare-and-write.
    fn verify_bytes(
        &self,
        tag: Tag,
        command: &Command<SG>,
        rw: cdb::Rw,
        geometry: &Geometry,
    ) -> Result<Exec<SG>, Fail> {
        let unsupported = invalid_cdb(1, Some(2));
        if !geometry
            .features
            .contains(DeviceFeatures::COMPARE_AND_WRITE)
            || self.write_protected(geometry)
        {
            return Err(unsupported);
        }
        let bs = u64::from(geometry.block_size);
        let blocks = u64::from(rw.blocks);
        let per_block = rw.bytchk == 3;
        let expected = if per_block { bs } else { blocks * bs };
        let sg_len = command.sg.total_len();
        if blocks == 0 {
            return Ok(Exec::Done(match sg_len {
                0 => Residual::None,
                n => Residual::Underflow(n),
            }));
        }
        if command.direction != DataDirection::ToDevice || sg_len != expected {
            return Err(bad_iu());
        }
        // A chunk's request holds its bytes twice: the data-out list must fit twice.
        if 2 * command.sg.segments().len() > SG {
            return Err(bad_iu());
        }
        let mut kind = JobKind::Verify {
            next_lba: rw.lba,
            remaining: blocks,
            done: 0,
            data: command.sg.clone(),
            per_block,
            block_size: geometry.block_size,
            base: 0,
        };
        let queued = self.next_child(tag, &mut kind);
        if queued.is_none() {
            return Err(bad_iu());
        }
        Ok(Exec::Start(Job {
            kind,
            queued,
            in_flight: false,
            residual: Residual::None,
            writing: false,
            early: false,
            at_device: None,
        }))
    }

    fn inquiry_data(&self) -> InquiryData {
        let ports: usize = self.config.port_groups.iter().map(|g| g.ports.len()).sum();
        InquiryData {
            peripheral_qualifier: 0,
            peripheral_device_type: 0,
            removable: false,
            version: 0x06,
            hisup: true,
            tpgs: if self.config.port_groups.is_empty() {
                0
            } else {
                self.config.tpgs
            },
            third_party_copy: false,
            protect: false,
            multip: ports > 1,
            cmdque: true,
            vendor: self.config.vendor,
            product: self.config.product,
            revision: self.config.revision,
            // SAM-5, SPC-4, SBC-3.
            version_descriptors: [0x00A0, 0x0460, 0x04C0, 0, 0, 0, 0, 0],
        }
    }

    fn vpd_page(&self, page: u8, port: u16, geometry: &Geometry, buf: &mut [u8]) -> Option<usize> {
        let features = geometry.features;
        let thin = features.contains(DeviceFeatures::UNMAP);
        Some(match page {
            vpd::SUPPORTED_PAGES => response::vpd_supported_pages(
                &[
                    vpd::SUPPORTED_PAGES,
                    vpd::UNIT_SERIAL_NUMBER,
                    vpd::DEVICE_IDENTIFICATION,
                    vpd::BLOCK_LIMITS,
                    vpd::BLOCK_DEVICE_CHARACTERISTICS,
                    vpd::LOGICAL_BLOCK_PROVISIONING,
                ],
                buf,
            ),
            vpd::UNIT_SERIAL_NUMBER => response::vpd_unit_serial(&self.config.serial, buf),
            vpd::DEVICE_IDENTIFICATION => {
                let mut vendor_specific = [0u8; 16 + MAX_SERIAL_LEN];
                vendor_specific[..16].copy_from_slice(&self.config.product);
                let serial = &self.config.serial;
                vendor_specific[16..16 + serial.len()].copy_from_slice(serial);
                let grouped = self.port_group_of(port);
                DeviceIdentification {
                    naa: self.config.naa,
                    vendor: self.config.vendor,
                    vendor_specific: &vendor_specific[..16 + serial.len()],
                    relative_target_port: grouped.map(|_| port),
                    target_port_group: grouped,
                }
                .emit(buf)
            }
            vpd::BLOCK_LIMITS => {
                let max_transfer = match geometry.max_transfer_blocks {
                    u32::MAX => 0,
                    n => n,
                };
                BlockLimits {
                    wsnz: true,
                    max_compare_and_write: if features.contains(DeviceFeatures::COMPARE_AND_WRITE) {
                        self.config.max_compare_and_write_blocks
                    } else {
                        0
                    },
                    optimal_transfer_granularity: 1,
                    max_transfer,
                    optimal_transfer: 0,
                    max_prefetch: 0,
                    max_unmap_lba_count: if thin {
                        self.config.max_unmap_blocks
                    } else {
                        0
                    },
                    max_unmap_descriptors: if thin {
                        u32::from(self.config.max_unmap_descriptors)
                    } else {
                        0
                    },
                    optimal_unmap_granularity: if thin {
                        self.config.unmap_granularity
                    } else {
                        0
                    },
                    unmap_granularity_alignment: None,
                    max_write_same: u64::from(self.config.max_write_same_blocks),
                }
                .emit(buf)
            }
            vpd::BLOCK_DEVICE_CHARACTERISTICS => BlockDeviceCharacteristics {
                rotation_rate: self.config.rotation_rate,
                form_factor: 0,
            }
            .emit(buf),
            vpd::LOGICAL_BLOCK_PROVISIONING => LogicalBlockProvisioning {
                threshold_exponent: 0,
                lbpu: thin,
                lbpws: thin,
                lbpws10: thin,
                lbprz: u8::from(thin && features.contains(DeviceFeatures::UNMAP_READS_ZERO)),
                anc_sup: false,
                provisioning_type: if thin { 2 } else { 0 },
            }
            .emit(buf),
            _ => return None,
        })
    }

    /// MODE SELECT: every page must equal the current one except in changeable bits.
    fn mode_select(&mut self, ten: bool, data: &[u8], initiator: InitiatorId) -> Result<(), Fail> {
        let header = if ten { 8 } else { 4 };
        if data.len() < header {
            return Err(illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        let bd_len = if ten {
            usize::from(u16::from_be_bytes([data[6], data[7]]))
        } else {
            usize::from(data[3])
        };
        let mut at = header
            .checked_add(bd_len)
            .filter(|end| *end <= data.len())
            .ok_or(invalid_param(if ten { 6 } else { 3 }, None))?;
        let mut updated = self.mode;
        // Bounded: every pass consumes at least two bytes.
        while at < data.len() {
            let page = data[at] & 0x3F;
            if data[at] & 0x40 != 0 {
                return Err(invalid_param(at as u16, Some(6)));
            }
            let len = usize::from(*data.get(at + 1).ok_or(invalid_param(at as u16, None))?);
            let body = data
                .get(at..at + 2 + len)
                .ok_or(invalid_param(at as u16 + 1, None))?;
            let mut current = [0u8; 32];
            let mut changeable = [0u8; 32];
            let clen = response::emit_mode_page(page, &self.mode, &mut Out::new(&mut current))
                .ok_or(invalid_param(at as u16, Some(5)))?;
            response::emit_mode_page(page, &response::CHANGEABLE, &mut Out::new(&mut changeable));
            if clen != body.len() {
                return Err(invalid_param(at as u16 + 1, None));
            }
            for i in 2..clen {
                let diff = (body[i] ^ current[i]) & !changeable[i];
                if diff != 0 {
                    let bit = 7 - diff.leading_zeros() as u8;
                    return Err(invalid_param((at + i) as u16, Some(bit)));
                }
            }
            if page == response::mode_page::CONTROL {
                updated.d_sense = body[2] & 0x04 != 0;
            }
            at += 2 + len;
        }
        if updated != self.mode {
            self.mode = updated;
            self.broadcast(Some(initiator), Asc::MODE_PARAMETERS_CHANGED);
        }
        Ok(())
    }

    fn pr_in(&self, action: u8, buf: &mut [u8]) -> Result<usize, Fail> {
        let pr = &self.persistent;
        let mut o = Out::new(buf);
        match action {
            0 => {
                o.u32(pr.generation);
                o.u32((pr.registrations.len() * 8) as u32);
                for r in pr.registrations.iter() {
                    o.u64(r.key);
                }
            }
            1 => {
                o.u32(pr.generation);
                match pr.reservation {
                    Some(r) => {
                        o.u32(16);
                        let key = if r.kind.all_registrants() {
                            0
                        } else {
                            pr.holder_key().unwrap_or(0)
                        };
                        o.u64(key);
                        o.u32(0);
                        o.u8(0);
                        o.u8(r.kind as u8);
                        o.u16(0);
                    }
                    None => o.u32(0),
                }
            }
            2 => {
                // CRH=1, SIP_C=1, ATP_C=1; no PTPL_C; TMV with every type.
                o.u16(8);
                o.u8(0x1C);
                o.u8(0x80);
                o.u8(0x80 | 0x40 | 0x20 | 0x08 | 0x02);
                o.u8(0x01);
                o.u16(0);
            }
            3 => {
                // READ FULL STATUS: one descriptor per registration, with a SAS TransportID
                // carrying the initiator id as its SAS address.
                o.u32(pr.generation);
                o.u32((pr.registrations.len() * 48) as u32);
                for r in pr.registrations.iter() {
                    let holder = pr.holds(r);
                    o.u64(r.key);
                    o.u32(0);
                    o.u8(if r.port.is_none() { 0x02 } else { 0 } | u8::from(holder));
                    o.u8(match (holder, pr.reservation) {
                        (true, Some(res)) => res.kind as u8,
                        _ => 0,
                    });
                    o.u32(0);
                    o.u16(r.port.unwrap_or(0));
                    o.u32(24);
                    o.put(&[0x06, 0, 0, 0]);
                    o.u64(r.initiator.0);
                    o.zeros(12);
                }
            }
            _ => return Err(invalid_cdb(1, Some(4))),
        }
        Ok(o.len())
    }

    fn pr_out(
        &mut self,
        initiator: InitiatorId,
        port: u16,
        action: u8,
        scope: u8,
        kind: u8,
        params: &[u8],
    ) -> Result<(), Fail> {
        let length_error = illegal(Asc::PARAMETER_LIST_LENGTH_ERROR);
        let base = params.get(..24).ok_or(length_error)?;
        let key = be64(&base[0..8]);
        let sa_key = be64(&base[8..16]);
        let flags = base[20];
        let specify_initiator_ports = flags & 0x08 != 0;
        let all_target_ports = flags & 0x04 != 0;
        if flags & 0x01 != 0 {
            return Err(invalid_param(20, Some(0)));
        }
        // SPEC_I_PT: only for REGISTER, which then also registers the initiators of the
        // TransportIDs that follow (SAS TransportIDs: the SAS address is the initiator id).
        let mut specified: heapless::Vec<InitiatorId, MAX_TRANSPORT_IDS> = heapless::Vec::new();
        if specify_initiator_ports {
            if action != 0 {
                return Err(invalid_param(20, Some(3)));
            }
            let extra = params.get(24..28).ok_or(length_error)?;
            let extra = u32::from_be_bytes([extra[0], extra[1], extra[2], extra[3]]) as usize;
            if params.len() != 28usize.saturating_add(extra) || !extra.is_multiple_of(24) {
                return Err(length_error);
            }
            for (i, id) in params[28..].chunks_exact(24).enumerate() {
                let at = (28 + 24 * i) as u16;
                if id[0] != 0x06 {
                    // Not a SAS TransportID in format 00b: not an initiator this LU knows.
                    return Err(invalid_param(at, None));
                }
                let mut address = [0u8; 8];
                address.copy_from_slice(&id[4..12]);
                if specified
                    .push(InitiatorId(u64::from_be_bytes(address)))
                    .is_err()
                {
                    return Err(invalid_param(at, None));
                }
            }
        } else if params.len() != 24 {
            return Err(length_error);
        }
        let conflict = Err(Fail::Status(Status::RESERVATION_CONFLICT));
        let registered = self.persistent.key_of(initiator, port);
        let me = self
            .persistent
            .find(initiator, port)
            .map(Registration::identity);
        // SCOPE and TYPE matter to RESERVE, RELEASE and PREEMPT only.
        let typed = || -> Result<PrType, Fail> {
            if scope != 0 {
                return Err(invalid_cdb(2, Some(7)));
            }
            PrType::from_code(kind).ok_or(invalid_cdb(2, Some(3)))
        };
        match action {
            // REGISTER, REGISTER AND IGNORE EXISTING KEY.
            0 | 6 => {
                if action == 0 && registered.unwrap_or(0) != key {
                    return conflict;
                }
                if specify_initiator_ports {
                    return self.register_specified(
                        initiator,
                        port,
                        sa_key,
                        all_target_ports,
                        &specified,
                        registered.is_some(),
                    );
                }
                match (registered, sa_key) {
                    (None, 0) => return Ok(()),
                    (None, new) => {
                        if self
                            .persistent
                            .registrations
                            .push(Registration {
                                initiator,
                                port: (!all_target_ports).then_some(port),
                                key: new,
                            })
                            .is_err()
                        {
                            return Err(illegal(Asc::INSUFFICIENT_REGISTRATION_RESOURCES));
                        }
                    }
                    (Some(_), 0) => self.unregister(initiator, port),
                    (Some(_), new) => {
                        if let Some(r) = self
                            .persistent
                            .registrations
                            .iter_mut()
                            .find(|r| r.covers(initiator, port))
                        {
                            r.key = new;
                        }
                    }
                }
                self.persistent.generation = self.persistent.generation.wrapping_add(1);
                Ok(())
            }
            // RESERVE.
            1 => {
                let kind = typed()?;
                if registered != Some(key) {
                    return conflict;
                }
                match self.persistent.reservation {
                    Some(r) if r.kind == kind && self.persistent.is_holder(initiator, port) => {
                        Ok(())
                    }
                    Some(_) => conflict,
                    None => {
                        self.persistent.reservation = Some(PrReservation {
                            holder: me.unwrap_or((initiator, Some(port))),
                            kind,
                        });
                        Ok(())
                    }
                }
            }
            // RELEASE.
            2 => {
                let kind = typed()?;
                if registered != Some(key) {
                    return conflict;
                }
                let Some(r) = self.persistent.reservation else {
                    return Ok(());
                };
                if !self.persistent.is_holder(initiator, port) {
                    return Ok(());
                }
                if r.kind != kind {
                    return Err(illegal(Asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION));
                }
                self.persistent.reservation = None;
                if r.kind.registrants_only() || r.kind.all_registrants() {
                    self.notify_registrants(initiator, Asc::RESERVATIONS_RELEASED);
                }
                Ok(())
            }
            // CLEAR.
            3 => {
                if registered != Some(key) {
                    return conflict;
                }
                self.notify_registrants(initiator, Asc::RESERVATIONS_PREEMPTED);
                self.persistent.registrations.clear();
                self.persistent.reservation = None;
                self.persistent.generation = self.persistent.generation.wrapping_add(1);
                Ok(())
            }
            // PREEMPT, PREEMPT AND ABORT.
            4 | 5 => {
                let kind = typed()?;
                if registered != Some(key) {
                    return conflict;
                }
                match self.persistent.reservation {
                    Some(r) if r.kind.all_registrants() && sa_key == 0 => {
                        self.remove_registrations(action == 5, |reg| !reg.covers(initiator, port));
                        self.persistent.reservation = Some(PrReservation {
                            holder: me.unwrap_or((initiator, Some(port))),
                            kind,
                        });
                    }
                    Some(r)
                        if !r.kind.all_registrants()
                            && self.persistent.holder_key() == Some(sa_key) =>
                    {
                        self.remove_registrations(action == 5, |reg| {
                            reg.key == sa_key && !reg.covers(initiator, port)
                        });
                        self.persistent.reservation = Some(PrReservation {
                            holder: me.unwrap_or((initiator, Some(port))),
                            kind,
                        });
                        if r.kind != kind {
                            // SPC-4 5.12.11.2.4: the type changed under the other registrants.
                            self.notify_registrants(initiator, Asc::RESERVATIONS_RELEASED);
                        }
                    }
                    _ => {
                        if sa_key == 0 {
                            return Err(invalid_param(8, None));
                        }
                        if self.remove_registrations(action == 5, |reg| reg.key == sa_key) == 0 {
                            return conflict;
                        }
                    }
                }
                self.persistent.generation = self.persistent.generation.wrapping_add(1);
                Ok(())
            }
            _ => Err(invalid_cdb(1, Some(4))),
        }
    }

    /// REGISTER with SPEC_I_PT: the issuing I_T nexus and every specified initiator (through
    /// the same target port, or all with ALL_TG_PT) are registered with `key`, all or none.
    fn register_specified(
        &mut self,
        initiator: InitiatorId,
        port: u16,
        key: u64,
        all_target_ports: bool,
        specified: &[InitiatorId],
        already_registered: bool,
    ) -> Result<(), Fail> {
        if already_registered || key == 0 {
            // SPC-4 6.16.4: SPEC_I_PT registers new I_T nexuses with a nonzero key only.
            return Err(invalid_param(20, Some(3)));
        }
        let registered_port = (!all_target_ports).then_some(port);
        let mut new: heapless::Vec<Registration, { MAX_TRANSPORT_IDS + 1 }> = heapless::Vec::new();
        for id in core::iter::once(&initiator).chain(specified) {
            if new.iter().any(|r| r.initiator == *id) {
                continue;
            }
            if self.persistent.find(*id, port).is_some() {
                return Err(Fail::Status(Status::RESERVATION_CONFLICT));
            }
            let _ = new.push(Registration {
                initiator: *id,
                port: registered_port,
                key,
            });
        }
        if self.persistent.registrations.len() + new.len() > MAX_REGISTRATIONS {
            return Err(illegal(Asc::INSUFFICIENT_REGISTRATION_RESOURCES));
        }
        for r in new {
            let _ = self.persistent.registrations.push(r);
        }
        self.persistent.generation = self.persistent.generation.wrapping_add(1);
        Ok(())
    }

    /// Removes the registration of the I_T nexus, releasing a reservation it holds.
    fn unregister(&mut self, initiator: InitiatorId, port: u16) {
        let holder = self.persistent.is_holder(initiator, port);
        let Some(identity) = self
            .persistent
            .find(initiator, port)
            .map(Registration::identity)
        else {
            return;
        };
        self.persistent
            .registrations
            .retain(|r| r.identity() != identity);
        if let Some(r) = self.persistent.reservation {
            let release = if r.kind.all_registrants() {
                self.persistent.registrations.is_empty()
            } else {
                holder
            };
            if release {
                self.persistent.reservation = None;
                if r.kind.registrants_only() {
                    self.notify_registrants(initiator, Asc::RESERVATIONS_RELEASED);
                }
            }
        }
    }

    /// Removes matching registrations, each removed initiator getting REGISTRATIONS
    /// PREEMPTED. Returns how many were removed.
    fn remove_registrations(
        &mut self,
        abort: bool,
        matches: impl Fn(&Registration) -> bool,
    ) -> usize {
        let mut removed: heapless::Vec<InitiatorId, MAX_REGISTRATIONS> = heapless::Vec::new();
        for r in self.persistent.registrations.iter().filter(|r| matches(r)) {
            let _ = removed.push(r.initiator);
        }
        self.persistent.registrations.retain(|r| !matches(r));
        for id in removed.iter() {
            self.attention_for(*id, Asc::REGISTRATIONS_PREEMPTED);
        }
        if abort {
            // PREEMPT AND ABORT: queued commands of the preempted initiators are aborted (they
            // complete with TASK ABORTED, as TAS=1 in the control page says).
            for slot in self.slots.iter_mut().flatten() {
                if matches!(slot.state, SlotState::New)
                    && removed.contains(&slot.command.nexus.initiator)
                {
                    slot.state = SlotState::Aborted;
                }
            }
        }
        if let Some(r) = self.persistent.reservation
            && r.kind.all_registrants()
            && self.persistent.registrations.is_empty()
        {
            self.persistent.reservation = None;
        }
        removed.len()
    }

    fn notify_registrants(&mut self, except: InitiatorId, attention: Asc) {
        let mut ids: heapless::Vec<InitiatorId, MAX_REGISTRATIONS> = heapless::Vec::new();
        for r in self.persistent.registrations.iter() {
            if r.initiator != except {
                let _ = ids.push(r.initiator);
            }
        }
        for id in ids {
            self.attention_for(id, attention);
        }
    }

    fn child_done(&mut self, completion: Completion) -> Option<CommandCompletion> {
        let index = usize::try_from(completion.tag.0).ok()?;
        let slot = self.slots.get_mut(index)?.as_mut()?;
        let tag = slot.command.tag;
        let SlotState::Running(job) = &mut slot.state else {
            return None;
        };
        job.in_flight = false;
        let early = job.early;
        if let Some((operation, lba, blocks)) = job.at_device.take() {
            let end = lba.saturating_add(u64::from(blocks));
            match (operation, completion.result.is_ok()) {
                (Operation::Unmap, true) => self.deallocated.mark(lba, end),
                (Operation::Unmap | Operation::Read | Operation::Flush, _) => {}
                // Written (or maybe written, after an error): no longer known deallocated.
                _ => self.deallocated.clear(lba, end),
            }
        }
        let finished = match completion.result {
            Err(error) => {
                let writing = job.writing;
                // A miscompare's offset is relative to the chunk; make it relative to the range.
                let error = match (&job.kind, error.info()) {
                    (JobKind::Verify { base, .. }, Some(info))
                        if error.kind() == ErrorKind::Miscompare =>
                    {
                        BlockError::with_info(ErrorKind::Miscompare, info.saturating_add(*base))
                    }
                    _ => error,
                };
                Some(self.complete(tag, Err(device_failure(error, writing))))
            }
            Ok(()) => {
                let residual = job.residual;
                let mut kind = core::mem::replace(&mut job.kind, JobKind::Single);
                let next = self.next_child(Tag(index as u64), &mut kind);
                match next {
                    None => Some(self.complete(tag, Ok(residual))),
                    Some(request) => {
                        if let Some(Slot {
                            state: SlotState::Running(job),
                            ..
                        }) = self.slots[index].as_mut()
                        {
                            job.kind = kind;
                            job.queued = Some(request);
                        }
                        None
                    }
                }
            }
        };
        let freed = if finished.is_some() {
            self.slots[index].take()
        } else {
            None
        };
        let failure = finished
            .as_ref()
            .filter(|c| !c.is_good())
            .and_then(|c| c.sense_repr());
        if early && let (Some(slot), Some(sense)) = (freed, failure) {
            // An IMMED job already reported GOOD: its failure becomes a deferred error for the
            // initiator's next command.
            let initiator = slot.command.nexus.initiator;
            if let Some(state) = self.initiators.iter_mut().find(|i| i.id == initiator) {
                state.deferred = Some(SenseRepr {
                    deferred: true,
                    ..sense
                });
            }
        }
        finished.filter(|_| !early)
    }
}

impl<D: BlockDevice<SG>, const Q: usize, const SG: usize> Transport<SG> for Lun<D, Q, SG> {
    fn submit(
        &mut self,
        _now: Instant,
        command: Command<SG>,
    ) -> Result<(), TransportSubmitError<SG>> {
        if self
            .slots
            .iter()
            .flatten()
            .filter(|s| !matches!(&s.state, SlotState::Running(job) if job.early))
            .any(|s| s.command.tag == command.tag)
        {
            return Err(TransportSubmitError {
                kind: TransportSubmitErrorKind::DuplicateTag,
                command,
            });
        }
        match self.slots.iter_mut().find(|s| s.is_none()) {
            Some(free) => {
                *free = Some(Slot {
                    command,
                    state: SlotState::New,
                    sequence: self.next_sequence,
                });
                self.next_sequence = self.next_sequence.wrapping_add(1);
                Ok(())
            }
            None => Err(TransportSubmitError {
                kind: TransportSubmitErrorKind::QueueFull,
                command,
            }),
        }
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(CommandCompletion),
    ) -> Option<Instant> {
        let block_count = self.device.geometry().block_count;
        if block_count != self.block_count {
            self.block_count = block_count;
            self.deallocated.forget();
            self.broadcast(None, Asc::CAPACITY_DATA_HAS_CHANGED);
        }
        let mut next = None;
        // Each round either makes progress or stops; a command needs at most a bounded number
        // of rounds per child, so cap the rounds.
        for _ in 0..(4 * Q + 4) {
            let mut progressed = false;
            for slot in self.slots.iter_mut() {
                if matches!(
                    slot,
                    Some(Slot {
                        state: SlotState::Aborted,
                        ..
                    })
                ) && let Some(aborted) = slot.take()
                {
                    progressed = true;
                    done(CommandCompletion::status(
                        aborted.command.tag,
                        Status::TASK_ABORTED,
                    ));
                }
            }
            // Start what the task attributes allow, oldest first. Each pass starts one command
            // (it leaves the New state), so this ends within Q passes.
            while let Some(index) = self.next_startable() {
                progressed = true;
                if let Some(completion) = self.start(index, memory) {
                    done(completion);
                }
            }
            for index in 0..Q {
                let Some(Slot {
                    state: SlotState::Running(job),
                    ..
                }) = self.slots[index].as_mut()
                else {
                    continue;
                };
                if job.in_flight {
                    continue;
                }
                let Some(request) = job.queued.take() else {
                    continue;
                };
                let at_device = (request.operation, request.lba.0, request.blocks.0);
                match self.device.submit(now, request) {
                    Ok(()) => {
                        job.in_flight = true;
                        job.at_device = Some(at_device);
                        progressed = true;
                    }
                    Err(refused) if refused.kind == SubmitErrorKind::QueueFull => {
                        // Back-pressure: retry at a later round or poll.
                        job.queued = Some(refused.request);
                        break;
                    }
                    Err(_) => {
                        // The device refused the slot's tag: a bug below, not the initiator's.
                        if let Some(slot) = self.slots[index].take() {
                            progressed = true;
                            done(self.complete(
                                slot.command.tag,
                                Err(Fail::Sense(SenseRepr::new(
                                    SenseKey::HARDWARE_ERROR,
                                    Asc::INTERNAL_TARGET_FAILURE,
                                ))),
                            ));
                        }
                    }
                }
            }
            // Safety net: a running command with nothing queued or at the device would never
            // complete; end it as an internal failure rather than lose it.
            for index in 0..Q {
                let stuck = matches!(
                    &self.slots[index],
                    Some(Slot { state: SlotState::Running(job), .. })
                        if !job.in_flight && job.queued.is_none()
                );
                if stuck && let Some(slot) = self.slots[index].take() {
                    progressed = true;
                    let early = matches!(&slot.state, SlotState::Running(job) if job.early);
                    if !early {
                        done(self.complete(
                            slot.command.tag,
                            Err(Fail::Sense(SenseRepr::new(
                                SenseKey::HARDWARE_ERROR,
                                Asc::INTERNAL_TARGET_FAILURE,
                            ))),
                        ));
                    }
                }
            }
            let mut arrived: heapless::Vec<Completion, Q> = heapless::Vec::new();
            next = self.device.poll(now, memory, &mut |c| {
                // At most one child per slot is at the device, so Q is enough.
                let _ = arrived.push(c);
            });
            for completion in arrived {
                progressed = true;
                if let Some(finished) = self.child_done(completion) {
                    done(finished);
                }
            }
            if !progressed {
                break;
            }
        }
        // Work refused by a full device and nothing below to wait for: ask to be polled again.
        let waiting = self.slots.iter().flatten().any(|s| {
            matches!(&s.state, SlotState::Running(job) if !job.in_flight && job.queued.is_some())
        });
        if waiting { next.or(Some(now)) } else { next }
    }
}
