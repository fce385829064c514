//! Command descriptor blocks: a checked view over CDB bytes, [`Cdb`], the parsed form
//! [`CdbRepr`], and [`COMMANDS`], the table of every command this crate knows with its CDB usage
//! bitmap.
//!
//! Parsing is strict: a reserved bit set, or a field value this crate does not implement, is an
//! [`CdbError::InvalidField`] that names the byte and bit, ready for the sense-key-specific field
//! pointer of INVALID FIELD IN CDB.

use core::fmt;

/// Operation codes.
pub mod opcode {
    /// TEST UNIT READY.
    pub const TEST_UNIT_READY: u8 = 0x00;
    /// REQUEST SENSE.
    pub const REQUEST_SENSE: u8 = 0x03;
    /// READ (6).
    pub const READ_6: u8 = 0x08;
    /// WRITE (6).
    pub const WRITE_6: u8 = 0x0A;
    /// INQUIRY.
    pub const INQUIRY: u8 = 0x12;
    /// MODE SELECT (6).
    pub const MODE_SELECT_6: u8 = 0x15;
    /// RESERVE (6).
    pub const RESERVE_6: u8 = 0x16;
    /// RELEASE (6).
    pub const RELEASE_6: u8 = 0x17;
    /// MODE SENSE (6).
    pub const MODE_SENSE_6: u8 = 0x1A;
    /// START STOP UNIT.
    pub const START_STOP_UNIT: u8 = 0x1B;
    /// PREVENT ALLOW MEDIUM REMOVAL.
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1E;
    /// READ CAPACITY (10).
    pub const READ_CAPACITY_10: u8 = 0x25;
    /// READ (10).
    pub const READ_10: u8 = 0x28;
    /// WRITE (10).
    pub const WRITE_10: u8 = 0x2A;
    /// WRITE AND VERIFY (10).
    pub const WRITE_AND_VERIFY_10: u8 = 0x2E;
    /// VERIFY (10).
    pub const VERIFY_10: u8 = 0x2F;
    /// SYNCHRONIZE CACHE (10).
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    /// WRITE SAME (10).
    pub const WRITE_SAME_10: u8 = 0x41;
    /// UNMAP.
    pub const UNMAP: u8 = 0x42;
    /// MODE SELECT (10).
    pub const MODE_SELECT_10: u8 = 0x55;
    /// RESERVE (10).
    pub const RESERVE_10: u8 = 0x56;
    /// RELEASE (10).
    pub const RELEASE_10: u8 = 0x57;
    /// MODE SENSE (10).
    pub const MODE_SENSE_10: u8 = 0x5A;
    /// PERSISTENT RESERVE IN.
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5E;
    /// PERSISTENT RESERVE OUT.
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
    /// READ (16).
    pub const READ_16: u8 = 0x88;
    /// COMPARE AND WRITE.
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    /// WRITE (16).
    pub const WRITE_16: u8 = 0x8A;
    /// WRITE AND VERIFY (16).
    pub const WRITE_AND_VERIFY_16: u8 = 0x8E;
    /// VERIFY (16).
    pub const VERIFY_16: u8 = 0x8F;
    /// SYNCHRONIZE CACHE (16).
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    /// WRITE SAME (16).
    pub const WRITE_SAME_16: u8 = 0x93;
    /// SERVICE ACTION IN (16): READ CAPACITY (16), GET LBA STATUS.
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    /// REPORT LUNS.
    pub const REPORT_LUNS: u8 = 0xA0;
    /// MAINTENANCE IN: REPORT TARGET PORT GROUPS, REPORT SUPPORTED OPERATION CODES.
    pub const MAINTENANCE_IN: u8 = 0xA3;
    /// MAINTENANCE OUT: SET TARGET PORT GROUPS.
    pub const MAINTENANCE_OUT: u8 = 0xA4;
    /// READ (12).
    pub const READ_12: u8 = 0xA8;
    /// WRITE (12).
    pub const WRITE_12: u8 = 0xAA;
    /// WRITE AND VERIFY (12).
    pub const WRITE_AND_VERIFY_12: u8 = 0xAE;
    /// VERIFY (12).
    pub const VERIFY_12: u8 = 0xAF;
}

/// Service actions of the service-action opcodes.
pub mod service_action {
    /// READ CAPACITY (16) under SERVICE ACTION IN (16).
    pub const READ_CAPACITY_16: u8 = 0x10;
    /// GET LBA STATUS under SERVICE ACTION IN (16).
    pub const GET_LBA_STATUS: u8 = 0x12;
    /// REPORT TARGET PORT GROUPS under MAINTENANCE IN; SET TARGET PORT GROUPS under MAINTENANCE
    /// OUT.
    pub const TARGET_PORT_GROUPS: u8 = 0x0A;
    /// REPORT SUPPORTED OPERATION CODES under MAINTENANCE IN.
    pub const REPORT_SUPPORTED_OPCODES: u8 = 0x0C;
}

/// The longest CDB this crate handles.
pub const CDB_MAX_LEN: usize = 16;

/// The bits of the CONTROL byte this crate accepts: the vendor-specific bits. NACA, FLAG and
/// LINK are refused (ACA and linked commands are not supported).
const CTL: u8 = 0xC0;

/// One command this crate knows: opcode, service action, name, CDB length and the CDB usage
/// bitmap of REPORT SUPPORTED OPERATION CODES (a set bit may be nonzero; any other set bit is
/// refused with INVALID FIELD IN CDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// The operation code.
    pub opcode: u8,
    /// The service action, for opcodes that have them.
    pub service_action: Option<u8>,
    /// The standard name.
    pub name: &'static str,
    /// The CDB length.
    pub cdb_len: u8,
    /// The usage bitmap, `cdb_len` bytes used; byte 0 is the opcode itself.
    pub usage: [u8; CDB_MAX_LEN],
}

const fn usage(bytes: &[u8]) -> [u8; CDB_MAX_LEN] {
    let mut out = [0u8; CDB_MAX_LEN];
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

macro_rules! spec {
    ($op:expr, $sa:expr, $name:expr, [$($u:expr),* $(,)?]) => {
        CommandSpec {
            opcode: $op,
            service_action: $sa,
            name: $name,
            cdb_len: [$($u),*].len() as u8,
            usage: usage(&[$($u),*]),
        }
    };
}

use opcode as op;
use service_action as sa;

/// Every command [`CdbRepr::parse`] decodes, in opcode order.
pub const COMMANDS: &[CommandSpec] = &[
    spec!(
        op::TEST_UNIT_READY,
        None,
        "TEST UNIT READY",
        [0x00, 0, 0, 0, 0, CTL]
    ),
    spec!(
        op::REQUEST_SENSE,
        None,
        "REQUEST SENSE",
        [0x03, 0x01, 0, 0, 0xFF, CTL]
    ),
    spec!(
        op::READ_6,
        None,
        "READ(6)",
        [0x08, 0x1F, 0xFF, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::WRITE_6,
        None,
        "WRITE(6)",
        [0x0A, 0x1F, 0xFF, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::INQUIRY,
        None,
        "INQUIRY",
        [0x12, 0x01, 0xFF, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::MODE_SELECT_6,
        None,
        "MODE SELECT(6)",
        [0x15, 0x11, 0, 0, 0xFF, CTL]
    ),
    spec!(op::RESERVE_6, None, "RESERVE(6)", [0x16, 0, 0, 0, 0, CTL]),
    spec!(op::RELEASE_6, None, "RELEASE(6)", [0x17, 0, 0, 0, 0, CTL]),
    spec!(
        op::MODE_SENSE_6,
        None,
        "MODE SENSE(6)",
        [0x1A, 0x08, 0xFF, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::START_STOP_UNIT,
        None,
        "START STOP UNIT",
        [0x1B, 0x01, 0, 0x0F, 0xF7, CTL]
    ),
    spec!(
        op::PREVENT_ALLOW_MEDIUM_REMOVAL,
        None,
        "PREVENT ALLOW MEDIUM REMOVAL",
        [0x1E, 0, 0, 0, 0x03, CTL]
    ),
    spec!(
        op::READ_CAPACITY_10,
        None,
        "READ CAPACITY(10)",
        [0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, CTL]
    ),
    spec!(
        op::READ_10,
        None,
        "READ(10)",
        [0x28, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::WRITE_10,
        None,
        "WRITE(10)",
        [0x2A, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::WRITE_AND_VERIFY_10,
        None,
        "WRITE AND VERIFY(10)",
        [0x2E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::VERIFY_10,
        None,
        "VERIFY(10)",
        [0x2F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::SYNCHRONIZE_CACHE_10,
        None,
        "SYNCHRONIZE CACHE(10)",
        [0x35, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::WRITE_SAME_10,
        None,
        "WRITE SAME(10)",
        [0x41, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::UNMAP,
        None,
        "UNMAP",
        [0x42, 0x01, 0, 0, 0, 0, 0x1F, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::MODE_SELECT_10,
        None,
        "MODE SELECT(10)",
        [0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::RESERVE_10,
        None,
        "RESERVE(10)",
        [0x56, 0, 0, 0, 0, 0, 0, 0, 0, CTL]
    ),
    spec!(
        op::RELEASE_10,
        None,
        "RELEASE(10)",
        [0x57, 0, 0, 0, 0, 0, 0, 0, 0, CTL]
    ),
    spec!(
        op::MODE_SENSE_10,
        None,
        "MODE SENSE(10)",
        [0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::PERSISTENT_RESERVE_IN,
        Some(0x00),
        "PERSISTENT RESERVE IN, READ KEYS",
        [0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::PERSISTENT_RESERVE_IN,
        Some(0x01),
        "PERSISTENT RESERVE IN, READ RESERVATION",
        [0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::PERSISTENT_RESERVE_IN,
        Some(0x02),
        "PERSISTENT RESERVE IN, REPORT CAPABILITIES",
        [0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::PERSISTENT_RESERVE_IN,
        Some(0x03),
        "PERSISTENT RESERVE IN, READ FULL STATUS",
        [0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::PERSISTENT_RESERVE_OUT,
        Some(0x00),
        "PERSISTENT RESERVE OUT, REGISTER",
        [0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::PERSISTENT_RESERVE_OUT,
        Some(0x01),
        "PERSISTENT RESERVE OUT, RESERVE",
        [0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::PERSISTENT_RESERVE_OUT,
        Some(0x02),
        "PERSISTENT RESERVE OUT, RELEASE",
        [0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::PERSISTENT_RESERVE_OUT,
        Some(0x03),
        "PERSISTENT RESERVE OUT, CLEAR",
        [0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::PERSISTENT_RESERVE_OUT,
        Some(0x04),
        "PERSISTENT RESERVE OUT, PREEMPT",
        [0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::PERSISTENT_RESERVE_OUT,
        Some(0x05),
        "PERSISTENT RESERVE OUT, PREEMPT AND ABORT",
        [0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::PERSISTENT_RESERVE_OUT,
        Some(0x06),
        "PERSISTENT RESERVE OUT, REGISTER AND IGNORE EXISTING KEY",
        [0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, CTL]
    ),
    spec!(
        op::READ_16,
        None,
        "READ(16)",
        [
            0x88, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, CTL
        ]
    ),
    spec!(
        op::COMPARE_AND_WRITE,
        None,
        "COMPARE AND WRITE",
        [
            0x89, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x1F, CTL
        ]
    ),
    spec!(
        op::WRITE_16,
        None,
        "WRITE(16)",
        [
            0x8A, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, CTL
        ]
    ),
    spec!(
        op::WRITE_AND_VERIFY_16,
        None,
        "WRITE AND VERIFY(16)",
        [
            0x8E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, CTL
        ]
    ),
    spec!(
        op::VERIFY_16,
        None,
        "VERIFY(16)",
        [
            0x8F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, CTL
        ]
    ),
    spec!(
        op::SYNCHRONIZE_CACHE_16,
        None,
        "SYNCHRONIZE CACHE(16)",
        [
            0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, CTL
        ]
    ),
    spec!(
        op::WRITE_SAME_16,
        None,
        "WRITE SAME(16)",
        [
            0x93, 0x19, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, CTL
        ]
    ),
    spec!(
        op::SERVICE_ACTION_IN_16,
        Some(sa::READ_CAPACITY_16),
        "READ CAPACITY(16)",
        [
            0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x01, CTL
        ]
    ),
    spec!(
        op::SERVICE_ACTION_IN_16,
        Some(sa::GET_LBA_STATUS),
        "GET LBA STATUS(16)",
        [
            0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x03, CTL
        ]
    ),
    spec!(
        op::REPORT_LUNS,
        None,
        "REPORT LUNS",
        [0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, CTL]
    ),
    spec!(
        op::MAINTENANCE_IN,
        Some(sa::TARGET_PORT_GROUPS),
        "REPORT TARGET PORT GROUPS",
        [0xA3, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, CTL]
    ),
    spec!(
        op::MAINTENANCE_IN,
        Some(sa::REPORT_SUPPORTED_OPCODES),
        "REPORT SUPPORTED OPERATION CODES",
        [
            0xA3, 0x1F, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, CTL
        ]
    ),
    spec!(
        op::MAINTENANCE_OUT,
        Some(sa::TARGET_PORT_GROUPS),
        "SET TARGET PORT GROUPS",
        [0xA4, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, CTL]
    ),
    spec!(
        op::READ_12,
        None,
        "READ(12)",
        [
            0xA8, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, CTL
        ]
    ),
    spec!(
        op::WRITE_12,
        None,
        "WRITE(12)",
        [
            0xAA, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, CTL
        ]
    ),
    spec!(
        op::WRITE_AND_VERIFY_12,
        None,
        "WRITE AND VERIFY(12)",
        [
            0xAE, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, CTL
        ]
    ),
    spec!(
        op::VERIFY_12,
        None,
        "VERIFY(12)",
        [
            0xAF, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, CTL
        ]
    ),
];

/// Whether `opcode` has service actions (its CDB byte 1 bits 4..0 select the command).
pub fn has_service_action(opcode: u8) -> bool {
    COMMANDS
        .iter()
        .any(|c| c.opcode == opcode && c.service_action.is_some())
}

/// The spec of `opcode` with `service_action` (ignored for opcodes without service actions).
pub fn lookup(opcode: u8, service_action: u8) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| {
        c.opcode == opcode
            && c.service_action
                .is_none_or(|sa| sa == service_action & 0x1F)
    })
}

/// The CDB length implied by the group code of `opcode`, or `None` for groups whose length is
/// not fixed by the standard (3: variable length; 6, 7: vendor specific).
pub const fn cdb_len_of(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

/// Why CDB bytes could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CdbError {
    /// Fewer bytes than the opcode's group requires (or none).
    Truncated,
    /// The opcode is not supported: INVALID COMMAND OPERATION CODE.
    InvalidOpcode,
    /// A field holds a reserved or unsupported value: INVALID FIELD IN CDB, pointing at
    /// `byte` and, where it is one bit or the top of a field, `bit`.
    InvalidField {
        /// The byte of the CDB.
        byte: u16,
        /// The most significant offending bit, if known.
        bit: Option<u8>,
    },
}

impl CdbError {
    const fn field(byte: u16, bit: u8) -> Self {
        CdbError::InvalidField {
            byte,
            bit: Some(bit),
        }
    }

    const fn byte(byte: u16) -> Self {
        CdbError::InvalidField { byte, bit: None }
    }
}

impl fmt::Display for CdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CdbError::Truncated => f.write_str("CDB truncated"),
            CdbError::InvalidOpcode => f.write_str("invalid command operation code"),
            CdbError::InvalidField {
                byte,
                bit: Some(bit),
            } => {
                write!(f, "invalid field in CDB at byte {byte} bit {bit}")
            }
            CdbError::InvalidField { byte, bit: None } => {
                write!(f, "invalid field in CDB at byte {byte}")
            }
        }
    }
}

impl core::error::Error for CdbError {}

mod field {
    use core::ops::Range;

    pub(super) const OPCODE: usize = 0;
    pub(super) const SERVICE_ACTION: usize = 1;
    pub(super) const LBA_6: Range<usize> = 1..4;
    pub(super) const LEN_6: usize = 4;
    pub(super) const LBA_10: Range<usize> = 2..6;
    pub(super) const GROUP_10: usize = 6;
    pub(super) const LEN_10: Range<usize> = 7..9;
    pub(super) const LBA_12: Range<usize> = 2..6;
    pub(super) const LEN_12: Range<usize> = 6..10;
    pub(super) const GROUP_12: usize = 10;
    pub(super) const LBA_16: Range<usize> = 2..10;
    pub(super) const LEN_16: Range<usize> = 10..14;
    pub(super) const GROUP_16: usize = 14;
}

/// A checked view over the bytes of one CDB.
#[derive(Debug, Clone, Copy)]
pub struct Cdb<T: AsRef<[u8]>> {
    buffer: T,
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

fn put_be(out: &mut [u8], value: u64) {
    let n = out.len();
    for (i, b) in out.iter_mut().enumerate() {
        let shift = 8 * (n - 1 - i);
        *b = (value >> shift) as u8;
    }
}

impl<T: AsRef<[u8]>> Cdb<T> {
    /// Wraps `buffer` without checking; accessors may panic until [`Cdb::check_len`] passes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`Cdb::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, CdbError> {
        let cdb = Self::new_unchecked(buffer);
        cdb.check_len()?;
        Ok(cdb)
    }

    /// Checks that the buffer holds at least the CDB length its opcode's group implies.
    /// Opcodes of groups without a fixed length are [`CdbError::InvalidOpcode`].
    pub fn check_len(&self) -> Result<(), CdbError> {
        let b = self.buffer.as_ref();
        let opcode = *b.first().ok_or(CdbError::Truncated)?;
        let len = cdb_len_of(opcode).ok_or(CdbError::InvalidOpcode)?;
        if b.len() < len {
            return Err(CdbError::Truncated);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The CDB bytes (exactly [`Cdb::len`] of them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.len()]
    }

    /// The operation code.
    pub fn opcode(&self) -> u8 {
        self.buffer.as_ref()[field::OPCODE]
    }

    /// The CDB length implied by the opcode's group.
    pub fn len(&self) -> usize {
        cdb_len_of(self.opcode()).unwrap_or(0)
    }

    /// Always `false` for a checked CDB (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The service action field (byte 1, bits 4..0).
    pub fn service_action(&self) -> u8 {
        self.buffer.as_ref()[field::SERVICE_ACTION] & 0x1F
    }

    /// The CONTROL byte (the last byte of the CDB).
    pub fn control(&self) -> u8 {
        self.buffer.as_ref()[self.len() - 1]
    }

    /// The LOGICAL BLOCK ADDRESS at the place the opcode's group puts it for the READ/WRITE
    /// family (21 bits in 6-byte CDBs, 32 in 10- and 12-byte CDBs, 64 in 16-byte CDBs).
    pub fn lba(&self) -> u64 {
        let b = self.buffer.as_ref();
        match self.len() {
            6 => be(&b[field::LBA_6]) & 0x1F_FFFF,
            10 => be(&b[field::LBA_10]),
            12 => be(&b[field::LBA_12]),
            _ => be(&b[field::LBA_16]),
        }
    }

    /// The TRANSFER LENGTH field at the place the opcode's group puts it for the READ/WRITE
    /// family, raw (a 6-byte CDB's 0 is returned as 0).
    pub fn transfer_length(&self) -> u32 {
        let b = self.buffer.as_ref();
        match self.len() {
            6 => u32::from(b[field::LEN_6]),
            10 => be(&b[field::LEN_10]) as u32,
            12 => be(&b[field::LEN_12]) as u32,
            _ => be(&b[field::LEN_16]) as u32,
        }
    }

    /// The GROUP NUMBER field of 10-, 12- and 16-byte CDBs (0 for 6-byte CDBs).
    pub fn group_number(&self) -> u8 {
        let b = self.buffer.as_ref();
        match self.len() {
            10 => b[field::GROUP_10] & 0x1F,
            12 => b[field::GROUP_12] & 0x1F,
            16 => b[field::GROUP_16] & 0x1F,
            _ => 0,
        }
    }

    /// Byte `index` of the CDB, or 0 past its end.
    pub fn byte(&self, index: usize) -> u8 {
        self.as_bytes().get(index).copied().unwrap_or(0)
    }

    /// The big-endian value of CDB bytes `range` (at most 8), 0 for bytes past the end.
    pub fn be_field(&self, range: core::ops::Range<usize>) -> u64 {
        range.fold(0u64, |acc, i| (acc << 8) | u64::from(self.byte(i)))
    }

    /// The known command this CDB invokes, if any.
    pub fn spec(&self) -> Option<&'static CommandSpec> {
        lookup(self.opcode(), self.service_action())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Cdb<T> {
    /// The CDB bytes, mutably.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        &mut self.buffer.as_mut()[..len]
    }
}

/// The CDB sizes of the READ/WRITE family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CdbSize {
    /// 6-byte CDB.
    Six,
    /// 10-byte CDB.
    Ten,
    /// 12-byte CDB.
    Twelve,
    /// 16-byte CDB.
    Sixteen,
}

impl CdbSize {
    /// The CDB length in bytes.
    pub const fn len(self) -> usize {
        match self {
            CdbSize::Six => 6,
            CdbSize::Ten => 10,
            CdbSize::Twelve => 12,
            CdbSize::Sixteen => 16,
        }
    }

    /// Always `false`.
    pub const fn is_empty(self) -> bool {
        false
    }
}

/// The fields of a READ, WRITE, WRITE AND VERIFY or VERIFY CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rw {
    /// Which of the CDB sizes (VERIFY and WRITE AND VERIFY have no 6-byte form).
    pub size: CdbSize,
    /// The first block.
    pub lba: u64,
    /// Blocks to transfer (or verify). For 6-byte CDBs 1..=256 (a raw 0 means 256).
    pub blocks: u32,
    /// DPO: disable page out.
    pub dpo: bool,
    /// FUA: forced unit access (READ and WRITE only).
    pub fua: bool,
    /// BYTCHK (WRITE AND VERIFY and VERIFY only): 0 = medium verification only, 1 = compare
    /// with data-out, 3 = compare each block with one block of data-out.
    pub bytchk: u8,
    /// GROUP NUMBER.
    pub group: u8,
}

/// Which of the four kinds of the READ/WRITE family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RwKind {
    /// READ.
    Read,
    /// WRITE.
    Write,
    /// WRITE AND VERIFY.
    WriteAndVerify,
    /// VERIFY.
    Verify,
}

/// A parsed CDB of one of the commands of [`COMMANDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CdbRepr {
    /// TEST UNIT READY.
    TestUnitReady,
    /// REQUEST SENSE.
    RequestSense {
        /// DESC: descriptor-format sense wanted.
        desc: bool,
        /// ALLOCATION LENGTH.
        allocation_length: u8,
    },
    /// INQUIRY.
    Inquiry {
        /// EVPD: a VPD page is wanted.
        evpd: bool,
        /// PAGE CODE (0 unless `evpd`).
        page_code: u8,
        /// ALLOCATION LENGTH.
        allocation_length: u16,
    },
    /// READ, WRITE, WRITE AND VERIFY, VERIFY.
    ReadWrite(RwKind, Rw),
    /// MODE SENSE (6) / (10).
    ModeSense {
        /// The 10-byte form.
        ten: bool,
        /// LLBAA (10-byte form only).
        llbaa: bool,
        /// DBD: no block descriptors.
        dbd: bool,
        /// PC: 0 current, 1 changeable, 2 default, 3 saved.
        page_control: u8,
        /// PAGE CODE.
        page_code: u8,
        /// SUBPAGE CODE.
        subpage_code: u8,
        /// ALLOCATION LENGTH (u8 range in the 6-byte form).
        allocation_length: u16,
    },
    /// MODE SELECT (6) / (10).
    ModeSelect {
        /// The 10-byte form.
        ten: bool,
        /// PF: page format.
        pf: bool,
        /// SP: save pages.
        sp: bool,
        /// PARAMETER LIST LENGTH (u8 range in the 6-byte form).
        parameter_list_length: u16,
    },
    /// START STOP UNIT.
    StartStopUnit {
        /// IMMED.
        immed: bool,
        /// POWER CONDITION MODIFIER (4 bits).
        power_condition_modifier: u8,
        /// POWER CONDITION (4 bits).
        power_condition: u8,
        /// NO_FLUSH.
        no_flush: bool,
        /// LOEJ.
        loej: bool,
        /// START.
        start: bool,
    },
    /// PREVENT ALLOW MEDIUM REMOVAL.
    PreventAllowMediumRemoval {
        /// PREVENT (2 bits).
        prevent: u8,
    },
    /// RESERVE (6) / (10), logical-unit reservation.
    Reserve {
        /// The 10-byte form.
        ten: bool,
    },
    /// RELEASE (6) / (10).
    Release {
        /// The 10-byte form.
        ten: bool,
    },
    /// READ CAPACITY (10).
    ReadCapacity10 {
        /// LOGICAL BLOCK ADDRESS (obsolete; must be 0 unless `pmi`).
        lba: u32,
        /// PMI (obsolete).
        pmi: bool,
    },
    /// READ CAPACITY (16).
    ReadCapacity16 {
        /// LOGICAL BLOCK ADDRESS (obsolete; must be 0 unless `pmi`).
        lba: u64,
        /// PMI (obsolete).
        pmi: bool,
        /// ALLOCATION LENGTH.
        allocation_length: u32,
    },
    /// GET LBA STATUS.
    GetLbaStatus {
        /// STARTING LOGICAL BLOCK ADDRESS.
        lba: u64,
        /// ALLOCATION LENGTH.
        allocation_length: u32,
        /// REPORT TYPE (SBC-4; 0 = all).
        report_type: u8,
    },
    /// WRITE SAME (10) / (16).
    WriteSame {
        /// The 16-byte form.
        sixteen: bool,
        /// LOGICAL BLOCK ADDRESS.
        lba: u64,
        /// NUMBER OF LOGICAL BLOCKS (0: to the end of the medium, if the device allows).
        blocks: u32,
        /// UNMAP.
        unmap: bool,
        /// ANCHOR.
        anchor: bool,
        /// NDOB: no data-out buffer, write zeros (16-byte form only).
        ndob: bool,
        /// GROUP NUMBER.
        group: u8,
    },
    /// UNMAP.
    Unmap {
        /// ANCHOR.
        anchor: bool,
        /// GROUP NUMBER.
        group: u8,
        /// PARAMETER LIST LENGTH.
        parameter_list_length: u16,
    },
    /// SYNCHRONIZE CACHE (10) / (16).
    SynchronizeCache {
        /// The 16-byte form.
        sixteen: bool,
        /// IMMED.
        immed: bool,
        /// LOGICAL BLOCK ADDRESS.
        lba: u64,
        /// NUMBER OF LOGICAL BLOCKS (0: to the end).
        blocks: u32,
        /// GROUP NUMBER.
        group: u8,
    },
    /// COMPARE AND WRITE.
    CompareAndWrite {
        /// LOGICAL BLOCK ADDRESS.
        lba: u64,
        /// NUMBER OF LOGICAL BLOCKS.
        blocks: u8,
        /// DPO.
        dpo: bool,
        /// FUA.
        fua: bool,
        /// GROUP NUMBER.
        group: u8,
    },
    /// REPORT LUNS.
    ReportLuns {
        /// SELECT REPORT.
        select_report: u8,
        /// ALLOCATION LENGTH.
        allocation_length: u32,
    },
    /// PERSISTENT RESERVE IN.
    PersistentReserveIn {
        /// SERVICE ACTION (0..=3).
        action: u8,
        /// ALLOCATION LENGTH.
        allocation_length: u16,
    },
    /// PERSISTENT RESERVE OUT.
    PersistentReserveOut {
        /// SERVICE ACTION (0..=6).
        action: u8,
        /// SCOPE (4 bits; 0 = logical unit).
        scope: u8,
        /// TYPE (4 bits).
        kind: u8,
        /// PARAMETER LIST LENGTH.
        parameter_list_length: u32,
    },
    /// REPORT TARGET PORT GROUPS.
    ReportTargetPortGroups {
        /// PARAMETER DATA FORMAT 001b: extended header.
        extended: bool,
        /// ALLOCATION LENGTH.
        allocation_length: u32,
    },
    /// SET TARGET PORT GROUPS.
    SetTargetPortGroups {
        /// PARAMETER LIST LENGTH.
        parameter_list_length: u32,
    },
    /// REPORT SUPPORTED OPERATION CODES.
    ReportSupportedOpcodes {
        /// RCTD: return command timeouts descriptors.
        rctd: bool,
        /// REPORTING OPTIONS (0..=3).
        reporting_options: u8,
        /// REQUESTED OPERATION CODE.
        opcode: u8,
        /// REQUESTED SERVICE ACTION.
        service_action: u16,
        /// ALLOCATION LENGTH.
        allocation_length: u32,
    },
}

fn rw_opcode(kind: RwKind, size: CdbSize) -> Option<u8> {
    use RwKind::*;
    Some(match (kind, size) {
        (Read, CdbSize::Six) => op::READ_6,
        (Read, CdbSize::Ten) => op::READ_10,
        (Read, CdbSize::Twelve) => op::READ_12,
        (Read, CdbSize::Sixteen) => op::READ_16,
        (Write, CdbSize::Six) => op::WRITE_6,
        (Write, CdbSize::Ten) => op::WRITE_10,
        (Write, CdbSize::Twelve) => op::WRITE_12,
        (Write, CdbSize::Sixteen) => op::WRITE_16,
        (WriteAndVerify, CdbSize::Ten) => op::WRITE_AND_VERIFY_10,
        (WriteAndVerify, CdbSize::Twelve) => op::WRITE_AND_VERIFY_12,
        (WriteAndVerify, CdbSize::Sixteen) => op::WRITE_AND_VERIFY_16,
        (Verify, CdbSize::Ten) => op::VERIFY_10,
        (Verify, CdbSize::Twelve) => op::VERIFY_12,
        (Verify, CdbSize::Sixteen) => op::VERIFY_16,
        _ => return None,
    })
}

fn rw_of(opcode: u8) -> Option<(RwKind, CdbSize)> {
    use RwKind::*;
    Some(match opcode {
        op::READ_6 => (Read, CdbSize::Six),
        op::READ_10 => (Read, CdbSize::Ten),
        op::READ_12 => (Read, CdbSize::Twelve),
        op::READ_16 => (Read, CdbSize::Sixteen),
        op::WRITE_6 => (Write, CdbSize::Six),
        op::WRITE_10 => (Write, CdbSize::Ten),
        op::WRITE_12 => (Write, CdbSize::Twelve),
        op::WRITE_16 => (Write, CdbSize::Sixteen),
        op::WRITE_AND_VERIFY_10 => (WriteAndVerify, CdbSize::Ten),
        op::WRITE_AND_VERIFY_12 => (WriteAndVerify, CdbSize::Twelve),
        op::WRITE_AND_VERIFY_16 => (WriteAndVerify, CdbSize::Sixteen),
        op::VERIFY_10 => (Verify, CdbSize::Ten),
        op::VERIFY_12 => (Verify, CdbSize::Twelve),
        op::VERIFY_16 => (Verify, CdbSize::Sixteen),
        _ => return None,
    })
}

/// Checks `bytes` against the usage bitmap of `spec`: the first set bit outside it is an
/// invalid field.
fn check_usage(spec: &CommandSpec, bytes: &[u8]) -> Result<(), CdbError> {
    for (i, (&b, &u)) in bytes
        .iter()
        .zip(spec.usage.iter())
        .enumerate()
        .take(usize::from(spec.cdb_len))
        .skip(1)
    {
        let bad = b & !u;
        if bad != 0 {
            return Err(CdbError::field(i as u16, 7 - bad.leading_zeros() as u8));
        }
    }
    Ok(())
}

impl CdbRepr {
    /// Parses a checked CDB.
    ///
    /// Errors: an unknown opcode is [`CdbError::InvalidOpcode`]; an unknown service action, a
    /// reserved bit set or a field value outside what the standard defines is
    /// [`CdbError::InvalidField`] with the byte and bit.
    pub fn parse<T: AsRef<[u8]>>(cdb: &Cdb<T>) -> Result<CdbRepr, CdbError> {
        cdb.check_len()?;
        let opcode = cdb.opcode();
        let spec = match cdb.spec() {
            Some(spec) => spec,
            None if has_service_action(opcode) => return Err(CdbError::field(1, 4)),
            None => return Err(CdbError::InvalidOpcode),
        };
        let b = cdb.as_bytes();
        check_usage(spec, b)?;
        let bit = |byte: usize, bit: u8| b[byte] & (1 << bit) != 0;
        let repr = match opcode {
            op::TEST_UNIT_READY => CdbRepr::TestUnitReady,
            op::REQUEST_SENSE => CdbRepr::RequestSense {
                desc: bit(1, 0),
                allocation_length: b[4],
            },
            op::INQUIRY => {
                let evpd = bit(1, 0);
                if !evpd && b[2] != 0 {
                    return Err(CdbError::byte(2));
                }
                CdbRepr::Inquiry {
                    evpd,
                    page_code: b[2],
                    allocation_length: be(&b[3..5]) as u16,
                }
            }
            op::MODE_SENSE_6 | op::MODE_SENSE_10 => {
                let ten = opcode == op::MODE_SENSE_10;
                CdbRepr::ModeSense {
                    ten,
                    llbaa: bit(1, 4),
                    dbd: bit(1, 3),
                    page_control: b[2] >> 6,
                    page_code: b[2] & 0x3F,
                    subpage_code: b[3],
                    allocation_length: if ten {
                        be(&b[7..9]) as u16
                    } else {
                        u16::from(b[4])
                    },
                }
            }
            op::MODE_SELECT_6 | op::MODE_SELECT_10 => {
                let ten = opcode == op::MODE_SELECT_10;
                CdbRepr::ModeSelect {
                    ten,
                    pf: bit(1, 4),
                    sp: bit(1, 0),
                    parameter_list_length: if ten {
                        be(&b[7..9]) as u16
                    } else {
                        u16::from(b[4])
                    },
                }
            }
            op::START_STOP_UNIT => CdbRepr::StartStopUnit {
                immed: bit(1, 0),
                power_condition_modifier: b[3] & 0x0F,
                power_condition: b[4] >> 4,
                no_flush: bit(4, 2),
                loej: bit(4, 1),
                start: bit(4, 0),
            },
            op::PREVENT_ALLOW_MEDIUM_REMOVAL => CdbRepr::PreventAllowMediumRemoval {
                prevent: b[4] & 0x03,
            },
            op::RESERVE_6 | op::RESERVE_10 => CdbRepr::Reserve {
                ten: opcode == op::RESERVE_10,
            },
            op::RELEASE_6 | op::RELEASE_10 => CdbRepr::Release {
                ten: opcode == op::RELEASE_10,
            },
            op::READ_CAPACITY_10 => {
                let pmi = bit(8, 0);
                let lba = be(&b[2..6]) as u32;
                if !pmi && lba != 0 {
                    return Err(CdbError::byte(2));
                }
                CdbRepr::ReadCapacity10 { lba, pmi }
            }
            op::SERVICE_ACTION_IN_16 => {
                let lba = be(&b[2..10]);
                let allocation_length = be(&b[10..14]) as u32;
                if cdb.service_action() == sa::READ_CAPACITY_16 {
                    let pmi = bit(14, 0);
                    if !pmi && lba != 0 {
                        return Err(CdbError::byte(2));
                    }
                    CdbRepr::ReadCapacity16 {
                        lba,
                        pmi,
                        allocation_length,
                    }
                } else {
                    CdbRepr::GetLbaStatus {
                        lba,
                        allocation_length,
                        report_type: b[14] & 0x03,
                    }
                }
            }
            op::WRITE_SAME_10 | op::WRITE_SAME_16 => {
                let sixteen = opcode == op::WRITE_SAME_16;
                CdbRepr::WriteSame {
                    sixteen,
                    lba: cdb.lba(),
                    blocks: cdb.transfer_length(),
                    unmap: bit(1, 3),
                    anchor: bit(1, 4),
                    ndob: sixteen && bit(1, 0),
                    group: cdb.group_number(),
                }
            }
            op::UNMAP => CdbRepr::Unmap {
                anchor: bit(1, 0),
                group: b[6] & 0x1F,
                parameter_list_length: be(&b[7..9]) as u16,
            },
            op::SYNCHRONIZE_CACHE_10 | op::SYNCHRONIZE_CACHE_16 => CdbRepr::SynchronizeCache {
                sixteen: opcode == op::SYNCHRONIZE_CACHE_16,
                immed: bit(1, 1),
                lba: cdb.lba(),
                blocks: cdb.transfer_length(),
                group: cdb.group_number(),
            },
            op::COMPARE_AND_WRITE => CdbRepr::CompareAndWrite {
                lba: be(&b[2..10]),
                blocks: b[13],
                dpo: bit(1, 4),
                fua: bit(1, 3),
                group: b[14] & 0x1F,
            },
            op::REPORT_LUNS => CdbRepr::ReportLuns {
                select_report: b[2],
                allocation_length: be(&b[6..10]) as u32,
            },
            op::PERSISTENT_RESERVE_IN => CdbRepr::PersistentReserveIn {
                action: cdb.service_action(),
                allocation_length: be(&b[7..9]) as u16,
            },
            op::PERSISTENT_RESERVE_OUT => CdbRepr::PersistentReserveOut {
                action: cdb.service_action(),
                scope: b[2] >> 4,
                kind: b[2] & 0x0F,
                parameter_list_length: be(&b[5..9]) as u32,
            },
            op::MAINTENANCE_IN if cdb.service_action() == sa::TARGET_PORT_GROUPS => {
                let format = b[1] >> 5;
                if format > 1 {
                    return Err(CdbError::field(1, 7));
                }
                CdbRepr::ReportTargetPortGroups {
                    extended: format == 1,
                    allocation_length: be(&b[6..10]) as u32,
                }
            }
            op::MAINTENANCE_IN => {
                let reporting_options = b[2] & 0x07;
                if reporting_options > 3 {
                    return Err(CdbError::field(2, 2));
                }
                CdbRepr::ReportSupportedOpcodes {
                    rctd: bit(2, 7),
                    reporting_options,
                    opcode: b[3],
                    service_action: be(&b[4..6]) as u16,
                    allocation_length: be(&b[6..10]) as u32,
                }
            }
            op::MAINTENANCE_OUT => CdbRepr::SetTargetPortGroups {
                parameter_list_length: be(&b[6..10]) as u32,
            },
            _ => {
                let (kind, size) = rw_of(opcode).ok_or(CdbError::InvalidOpcode)?;
                let raw = cdb.transfer_length();
                let blocks = if size == CdbSize::Six && raw == 0 {
                    256
                } else {
                    raw
                };
                let verifying = matches!(kind, RwKind::WriteAndVerify | RwKind::Verify);
                let bytchk = if verifying { (b[1] >> 1) & 0x03 } else { 0 };
                if bytchk == 2 {
                    return Err(CdbError::field(1, 2));
                }
                let small = size == CdbSize::Six;
                CdbRepr::ReadWrite(
                    kind,
                    Rw {
                        size,
                        lba: cdb.lba(),
                        blocks,
                        dpo: !small && bit(1, 4),
                        fua: !small && !verifying && bit(1, 3),
                        bytchk,
                        group: cdb.group_number(),
                    },
                )
            }
        };
        Ok(repr)
    }

    /// The operation code.
    pub fn opcode(&self) -> u8 {
        match self {
            CdbRepr::TestUnitReady => op::TEST_UNIT_READY,
            CdbRepr::RequestSense { .. } => op::REQUEST_SENSE,
            CdbRepr::Inquiry { .. } => op::INQUIRY,
            CdbRepr::ReadWrite(kind, rw) => rw_opcode(*kind, rw.size).unwrap_or(op::READ_10),
            CdbRepr::ModeSense { ten: true, .. } => op::MODE_SENSE_10,
            CdbRepr::ModeSense { .. } => op::MODE_SENSE_6,
            CdbRepr::ModeSelect { ten: true, .. } => op::MODE_SELECT_10,
            CdbRepr::ModeSelect { .. } => op::MODE_SELECT_6,
            CdbRepr::StartStopUnit { .. } => op::START_STOP_UNIT,
            CdbRepr::PreventAllowMediumRemoval { .. } => op::PREVENT_ALLOW_MEDIUM_REMOVAL,
            CdbRepr::Reserve { ten: true } => op::RESERVE_10,
            CdbRepr::Reserve { .. } => op::RESERVE_6,
            CdbRepr::Release { ten: true } => op::RELEASE_10,
            CdbRepr::Release { .. } => op::RELEASE_6,
            CdbRepr::ReadCapacity10 { .. } => op::READ_CAPACITY_10,
            CdbRepr::ReadCapacity16 { .. } | CdbRepr::GetLbaStatus { .. } => {
                op::SERVICE_ACTION_IN_16
            }
            CdbRepr::WriteSame { sixteen: true, .. } => op::WRITE_SAME_16,
            CdbRepr::WriteSame { .. } => op::WRITE_SAME_10,
            CdbRepr::Unmap { .. } => op::UNMAP,
            CdbRepr::SynchronizeCache { sixteen: true, .. } => op::SYNCHRONIZE_CACHE_16,
            CdbRepr::SynchronizeCache { .. } => op::SYNCHRONIZE_CACHE_10,
            CdbRepr::CompareAndWrite { .. } => op::COMPARE_AND_WRITE,
            CdbRepr::ReportLuns { .. } => op::REPORT_LUNS,
            CdbRepr::PersistentReserveIn { .. } => op::PERSISTENT_RESERVE_IN,
            CdbRepr::PersistentReserveOut { .. } => op::PERSISTENT_RESERVE_OUT,
            CdbRepr::ReportTargetPortGroups { .. } | CdbRepr::ReportSupportedOpcodes { .. } => {
                op::MAINTENANCE_IN
            }
            CdbRepr::SetTargetPortGroups { .. } => op::MAINTENANCE_OUT,
        }
    }

    /// The length of the emitted CDB.
    pub fn buffer_len(&self) -> usize {
        cdb_len_of(self.opcode()).unwrap_or(CDB_MAX_LEN)
    }

    /// Emits the CDB into `cdb`, whose buffer must hold [`CdbRepr::buffer_len`] bytes. Values
    /// wider than their field are truncated to the field (a 6-byte READ's LBA to 21 bits, its
    /// 256 blocks to 0, as the standard encodes them).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, cdb: &mut Cdb<T>) -> Result<(), CdbError> {
        let len = self.buffer_len();
        let b = cdb
            .buffer
            .as_mut()
            .get_mut(..len)
            .ok_or(CdbError::Truncated)?;
        b.fill(0);
        b[0] = self.opcode();
        let flag = |on: bool, bit: u8| if on { 1u8 << bit } else { 0 };
        match *self {
            CdbRepr::TestUnitReady => {}
            CdbRepr::RequestSense {
                desc,
                allocation_length,
            } => {
                b[1] = flag(desc, 0);
                b[4] = allocation_length;
            }
            CdbRepr::Inquiry {
                evpd,
                page_code,
                allocation_length,
            } => {
                b[1] = flag(evpd, 0);
                b[2] = page_code;
                put_be(&mut b[3..5], u64::from(allocation_length));
            }
            CdbRepr::ReadWrite(kind, rw) => {
                let verifying = matches!(kind, RwKind::WriteAndVerify | RwKind::Verify);
                match rw.size {
                    CdbSize::Six => {
                        put_be(&mut b[1..4], rw.lba & 0x1F_FFFF);
                        b[4] = rw.blocks as u8;
                    }
                    CdbSize::Ten => {
                        put_be(&mut b[2..6], rw.lba);
                        b[6] = rw.group & 0x1F;
                        put_be(&mut b[7..9], u64::from(rw.blocks));
                    }
                    CdbSize::Twelve => {
                        put_be(&mut b[2..6], rw.lba);
                        put_be(&mut b[6..10], u64::from(rw.blocks));
                        b[10] = rw.group & 0x1F;
                    }
                    CdbSize::Sixteen => {
                        put_be(&mut b[2..10], rw.lba);
                        put_be(&mut b[10..14], u64::from(rw.blocks));
                        b[14] = rw.group & 0x1F;
                    }
                }
                if rw.size != CdbSize::Six {
                    b[1] = flag(rw.dpo, 4);
                    if verifying {
                        b[1] |= (rw.bytchk & 0x03) << 1;
                    } else {
                        b[1] |= flag(rw.fua, 3);
                    }
                }
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
                b[1] = flag(dbd, 3) | flag(ten && llbaa, 4);
                b[2] = (page_control << 6) | (page_code & 0x3F);
                b[3] = subpage_code;
                if ten {
                    put_be(&mut b[7..9], u64::from(allocation_length));
                } else {
                    b[4] = allocation_length as u8;
                }
            }
            CdbRepr::ModeSelect {
                ten,
                pf,
                sp,
                parameter_list_length,
            } => {
                b[1] = flag(pf, 4) | flag(sp, 0);
                if ten {
                    put_be(&mut b[7..9], u64::from(parameter_list_length));
                } else {
                    b[4] = parameter_list_length as u8;
                }
            }
            CdbRepr::StartStopUnit {
                immed,
                power_condition_modifier,
                power_condition,
                no_flush,
                loej,
                start,
            } => {
                b[1] = flag(immed, 0);
                b[3] = power_condition_modifier & 0x0F;
                b[4] = (power_condition << 4) | flag(no_flush, 2) | flag(loej, 1) | flag(start, 0);
            }
            CdbRepr::PreventAllowMediumRemoval { prevent } => b[4] = prevent & 0x03,
            CdbRepr::Reserve { .. } | CdbRepr::Release { .. } => {}
            CdbRepr::ReadCapacity10 { lba, pmi } => {
                put_be(&mut b[2..6], u64::from(lba));
                b[8] = flag(pmi, 0);
            }
            CdbRepr::ReadCapacity16 {
                lba,
                pmi,
                allocation_length,
            } => {
                b[1] = sa::READ_CAPACITY_16;
                put_be(&mut b[2..10], lba);
                put_be(&mut b[10..14], u64::from(allocation_length));
                b[14] = flag(pmi, 0);
            }
            CdbRepr::GetLbaStatus {
                lba,
                allocation_length,
                report_type,
            } => {
                b[1] = sa::GET_LBA_STATUS;
                put_be(&mut b[2..10], lba);
                put_be(&mut b[10..14], u64::from(allocation_length));
                b[14] = report_type & 0x03;
            }
            CdbRepr::WriteSame {
                sixteen,
                lba,
                blocks,
                unmap,
                anchor,
                ndob,
                group,
            } => {
                b[1] = flag(anchor, 4) | flag(unmap, 3) | flag(sixteen && ndob, 0);
                if sixteen {
                    put_be(&mut b[2..10], lba);
                    put_be(&mut b[10..14], u64::from(blocks));
                    b[14] = group & 0x1F;
                } else {
                    put_be(&mut b[2..6], lba);
                    b[6] = group & 0x1F;
                    put_be(&mut b[7..9], u64::from(blocks));
                }
            }
            CdbRepr::Unmap {
                anchor,
                group,
                parameter_list_length,
            } => {
                b[1] = flag(anchor, 0);
                b[6] = group & 0x1F;
                put_be(&mut b[7..9], u64::from(parameter_list_length));
            }
            CdbRepr::SynchronizeCache {
                sixteen,
                immed,
                lba,
                blocks,
                group,
            } => {
                b[1] = flag(immed, 1);
                if sixteen {
                    put_be(&mut b[2..10], lba);
                    put_be(&mut b[10..14], u64::from(blocks));
                    b[14] = group & 0x1F;
                } else {
                    put_be(&mut b[2..6], lba);
                    b[6] = group & 0x1F;
                    put_be(&mut b[7..9], u64::from(blocks));
                }
            }
            CdbRepr::CompareAndWrite {
                lba,
                blocks,
                dpo,
                fua,
                group,
            } => {
                b[1] = flag(dpo, 4) | flag(fua, 3);
                put_be(&mut b[2..10], lba);
                b[13] = blocks;
                b[14] = group & 0x1F;
            }
            CdbRepr::ReportLuns {
                select_report,
                allocation_length,
            } => {
                b[2] = select_report;
                put_be(&mut b[6..10], u64::from(allocation_length));
            }
            CdbRepr::PersistentReserveIn {
                action,
                allocation_length,
            } => {
                b[1] = action & 0x1F;
                put_be(&mut b[7..9], u64::from(allocation_length));
            }
            CdbRepr::PersistentReserveOut {
                action,
                scope,
                kind,
                parameter_list_length,
            } => {
                b[1] = action & 0x1F;
                b[2] = (scope << 4) | (kind & 0x0F);
                put_be(&mut b[5..9], u64::from(parameter_list_length));
            }
            CdbRepr::ReportTargetPortGroups {
                extended,
                allocation_length,
            } => {
                b[1] = sa::TARGET_PORT_GROUPS | flag(extended, 5);
                put_be(&mut b[6..10], u64::from(allocation_length));
            }
            CdbRepr::SetTargetPortGroups {
                parameter_list_length,
            } => {
                b[1] = sa::TARGET_PORT_GROUPS;
                put_be(&mut b[6..10], u64::from(parameter_list_length));
            }
            CdbRepr::ReportSupportedOpcodes {
                rctd,
                reporting_options,
                opcode,
                service_action,
                allocation_length,
            } => {
                b[1] = sa::REPORT_SUPPORTED_OPCODES;
                b[2] = flag(rctd, 7) | (reporting_options & 0x07);
                b[3] = opcode;
                put_be(&mut b[4..6], u64::from(service_action));
                put_be(&mut b[6..10], u64::from(allocation_length));
            }
        }
        Ok(())
    }

    /// Emits the CDB into a fresh 16-byte array; the CDB is its first
    /// [`CdbRepr::buffer_len`] bytes.
    pub fn to_bytes(&self) -> [u8; CDB_MAX_LEN] {
        let mut bytes = [0u8; CDB_MAX_LEN];
        // A 16-byte buffer holds every CDB.
        let _ = self.emit(&mut Cdb::new_unchecked(&mut bytes[..]));
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, spec) in COMMANDS.iter().enumerate() {
            assert_eq!(
                Some(usize::from(spec.cdb_len)),
                cdb_len_of(spec.opcode),
                "{}",
                spec.name
            );
            assert_eq!(spec.usage[0], spec.opcode, "{}", spec.name);
            for other in &COMMANDS[i + 1..] {
                assert!(
                    other.opcode != spec.opcode || other.service_action != spec.service_action,
                    "{} duplicated",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn read10_layout() {
        let cdb = [0x28, 0x08, 0, 0, 0x12, 0x34, 0, 0, 8, 0];
        let repr = CdbRepr::parse(&Cdb::new_checked(&cdb[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            CdbRepr::ReadWrite(
                RwKind::Read,
                Rw {
                    size: CdbSize::Ten,
                    lba: 0x1234,
                    blocks: 8,
                    dpo: false,
                    fua: true,
                    bytchk: 0,
                    group: 0,
                }
            )
        );
        assert_eq!(&repr.to_bytes()[..10], &cdb);
    }

    #[test]
    fn reserved_bits_point_at_byte_and_bit() {
        // RDPROTECT set on READ(10).
        let cdb = [0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(
            CdbRepr::parse(&Cdb::new_checked(&cdb[..]).unwrap()),
            Err(CdbError::field(1, 5))
        );
        // NACA in the control byte.
        let cdb = [0x00, 0, 0, 0, 0, 0x04];
        assert_eq!(
            CdbRepr::parse(&Cdb::new_checked(&cdb[..]).unwrap()),
            Err(CdbError::field(5, 2))
        );
        // Unknown service action of SERVICE ACTION IN (16).
        let mut cdb = [0u8; 16];
        cdb[0] = 0x9E;
        cdb[1] = 0x11;
        assert_eq!(
            CdbRepr::parse(&Cdb::new_checked(&cdb[..]).unwrap()),
            Err(CdbError::field(1, 4))
        );
        assert_eq!(
            CdbRepr::parse(&Cdb::new_unchecked(&[0x02u8, 0, 0, 0, 0, 0][..])),
            Err(CdbError::InvalidOpcode)
        );
        assert_eq!(
            Cdb::new_checked(&[0x28u8, 0, 0][..]).err(),
            Some(CdbError::Truncated)
        );
        assert_eq!(
            Cdb::new_checked(&[0xC0u8; 16][..]).err(),
            Some(CdbError::InvalidOpcode)
        );
    }

    #[test]
    fn read6_zero_means_256() {
        let cdb = [0x08, 0x1F, 0xFF, 0xFF, 0, 0];
        match CdbRepr::parse(&Cdb::new_checked(&cdb[..]).unwrap()).unwrap() {
            CdbRepr::ReadWrite(RwKind::Read, rw) => {
                assert_eq!(rw.blocks, 256);
                assert_eq!(rw.lba, 0x1F_FFFF);
            }
            other => panic!("{other:?}"),
        }
    }
}
