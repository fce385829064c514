//! SCSI status codes, sense keys and the additional sense codes (ASC/ASCQ) this stack uses.

use core::fmt;

/// The status byte of a completed command (SAM-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Status(pub u8);

impl Status {
    /// GOOD.
    pub const GOOD: Status = Status(0x00);
    /// CHECK CONDITION: sense data describes what went wrong.
    pub const CHECK_CONDITION: Status = Status(0x02);
    /// CONDITION MET.
    pub const CONDITION_MET: Status = Status(0x04);
    /// BUSY.
    pub const BUSY: Status = Status(0x08);
    /// RESERVATION CONFLICT.
    pub const RESERVATION_CONFLICT: Status = Status(0x18);
    /// TASK SET FULL.
    pub const TASK_SET_FULL: Status = Status(0x28);
    /// ACA ACTIVE.
    pub const ACA_ACTIVE: Status = Status(0x30);
    /// TASK ABORTED.
    pub const TASK_ABORTED: Status = Status(0x40);

    /// The standard name, or `"reserved"`.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0x00 => "GOOD",
            0x02 => "CHECK CONDITION",
            0x04 => "CONDITION MET",
            0x08 => "BUSY",
            0x18 => "RESERVATION CONFLICT",
            0x28 => "TASK SET FULL",
            0x30 => "ACA ACTIVE",
            0x40 => "TASK ABORTED",
            _ => "reserved",
        }
    }

    /// Whether the status is GOOD or CONDITION MET.
    pub const fn is_good(self) -> bool {
        matches!(self.0, 0x00 | 0x04)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A sense key (SPC-4 table 46): the broad category of a CHECK CONDITION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SenseKey(pub u8);

impl SenseKey {
    /// NO SENSE.
    pub const NO_SENSE: SenseKey = SenseKey(0x0);
    /// RECOVERED ERROR.
    pub const RECOVERED_ERROR: SenseKey = SenseKey(0x1);
    /// NOT READY.
    pub const NOT_READY: SenseKey = SenseKey(0x2);
    /// MEDIUM ERROR.
    pub const MEDIUM_ERROR: SenseKey = SenseKey(0x3);
    /// HARDWARE ERROR.
    pub const HARDWARE_ERROR: SenseKey = SenseKey(0x4);
    /// ILLEGAL REQUEST.
    pub const ILLEGAL_REQUEST: SenseKey = SenseKey(0x5);
    /// UNIT ATTENTION.
    pub const UNIT_ATTENTION: SenseKey = SenseKey(0x6);
    /// DATA PROTECT.
    pub const DATA_PROTECT: SenseKey = SenseKey(0x7);
    /// BLANK CHECK.
    pub const BLANK_CHECK: SenseKey = SenseKey(0x8);
    /// VENDOR SPECIFIC.
    pub const VENDOR_SPECIFIC: SenseKey = SenseKey(0x9);
    /// COPY ABORTED.
    pub const COPY_ABORTED: SenseKey = SenseKey(0xA);
    /// ABORTED COMMAND.
    pub const ABORTED_COMMAND: SenseKey = SenseKey(0xB);
    /// VOLUME OVERFLOW.
    pub const VOLUME_OVERFLOW: SenseKey = SenseKey(0xD);
    /// MISCOMPARE.
    pub const MISCOMPARE: SenseKey = SenseKey(0xE);
    /// COMPLETED.
    pub const COMPLETED: SenseKey = SenseKey(0xF);

    /// The standard name, or `"reserved"`.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0x0 => "NO SENSE",
            0x1 => "RECOVERED ERROR",
            0x2 => "NOT READY",
            0x3 => "MEDIUM ERROR",
            0x4 => "HARDWARE ERROR",
            0x5 => "ILLEGAL REQUEST",
            0x6 => "UNIT ATTENTION",
            0x7 => "DATA PROTECT",
            0x8 => "BLANK CHECK",
            0x9 => "VENDOR SPECIFIC",
            0xA => "COPY ABORTED",
            0xB => "ABORTED COMMAND",
            0xD => "VOLUME OVERFLOW",
            0xE => "MISCOMPARE",
            0xF => "COMPLETED",
            _ => "reserved",
        }
    }
}

impl fmt::Display for SenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An additional sense code and qualifier (ASC, ASCQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Asc {
    /// ADDITIONAL SENSE CODE.
    pub asc: u8,
    /// ADDITIONAL SENSE CODE QUALIFIER.
    pub ascq: u8,
}

macro_rules! asc_table {
    ($( $(#[$doc:meta])* $name:ident = ($asc:expr, $ascq:expr, $text:expr); )*) => {
        impl Asc {
            $( $(#[$doc])* pub const $name: Asc = Asc { asc: $asc, ascq: $ascq }; )*
        }

        /// Every ASC/ASCQ this stack emits or acts on, with its standard name (SPC-4 annex D).
        pub const ASC_TABLE: &[(Asc, &str)] = &[
            $( (Asc { asc: $asc, ascq: $ascq }, $text), )*
        ];
    };
}

asc_table! {
    /// 00/00
    NO_ADDITIONAL_SENSE = (0x00, 0x00, "NO ADDITIONAL SENSE INFORMATION");
    /// 04/00
    NOT_READY_CAUSE_NOT_REPORTABLE = (0x04, 0x00, "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE");
    /// 04/01
    BECOMING_READY = (0x04, 0x01, "LOGICAL UNIT IS IN PROCESS OF BECOMING READY");
    /// 04/02
    INITIALIZING_COMMAND_REQUIRED = (0x04, 0x02, "LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED");
    /// 04/0A
    ASYMMETRIC_ACCESS_TRANSITION = (0x04, 0x0A, "LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION");
    /// 04/0B
    TARGET_PORT_STANDBY = (0x04, 0x0B, "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE");
    /// 04/0C
    TARGET_PORT_UNAVAILABLE = (0x04, 0x0C, "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE");
    /// 0C/00
    WRITE_ERROR = (0x0C, 0x00, "WRITE ERROR");
    /// 0E/03
    INVALID_FIELD_IN_COMMAND_IU = (0x0E, 0x03, "INVALID FIELD IN COMMAND INFORMATION UNIT");
    /// 11/00
    UNRECOVERED_READ_ERROR = (0x11, 0x00, "UNRECOVERED READ ERROR");
    /// 1A/00
    PARAMETER_LIST_LENGTH_ERROR = (0x1A, 0x00, "PARAMETER LIST LENGTH ERROR");
    /// 1D/00
    MISCOMPARE_DURING_VERIFY = (0x1D, 0x00, "MISCOMPARE DURING VERIFY OPERATION");
    /// 20/00
    INVALID_COMMAND_OPERATION_CODE = (0x20, 0x00, "INVALID COMMAND OPERATION CODE");
    /// 21/00
    LBA_OUT_OF_RANGE = (0x21, 0x00, "LOGICAL BLOCK ADDRESS OUT OF RANGE");
    /// 24/00
    INVALID_FIELD_IN_CDB = (0x24, 0x00, "INVALID FIELD IN CDB");
    /// 25/00
    LOGICAL_UNIT_NOT_SUPPORTED = (0x25, 0x00, "LOGICAL UNIT NOT SUPPORTED");
    /// 26/00
    INVALID_FIELD_IN_PARAMETER_LIST = (0x26, 0x00, "INVALID FIELD IN PARAMETER LIST");
    /// 26/04
    INVALID_RELEASE_OF_PERSISTENT_RESERVATION = (0x26, 0x04, "INVALID RELEASE OF PERSISTENT RESERVATION");
    /// 27/00
    WRITE_PROTECTED = (0x27, 0x00, "WRITE PROTECTED");
    /// 29/00
    POWER_ON_RESET_OR_BUS_DEVICE_RESET = (0x29, 0x00, "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED");
    /// 29/01
    POWER_ON_OCCURRED = (0x29, 0x01, "POWER ON OCCURRED");
    /// 29/03
    BUS_DEVICE_RESET_FUNCTION_OCCURRED = (0x29, 0x03, "BUS DEVICE RESET FUNCTION OCCURRED");
    /// 29/07
    I_T_NEXUS_LOSS_OCCURRED = (0x29, 0x07, "I_T NEXUS LOSS OCCURRED");
    /// 2A/01
    MODE_PARAMETERS_CHANGED = (0x2A, 0x01, "MODE PARAMETERS CHANGED");
    /// 2A/03
    RESERVATIONS_PREEMPTED = (0x2A, 0x03, "RESERVATIONS PREEMPTED");
    /// 2A/04
    RESERVATIONS_RELEASED = (0x2A, 0x04, "RESERVATIONS RELEASED");
    /// 2A/05
    REGISTRATIONS_PREEMPTED = (0x2A, 0x05, "REGISTRATIONS PREEMPTED");
    /// 2A/06
    ASYMMETRIC_ACCESS_STATE_CHANGED = (0x2A, 0x06, "ASYMMETRIC ACCESS STATE CHANGED");
    /// 2A/09
    CAPACITY_DATA_HAS_CHANGED = (0x2A, 0x09, "CAPACITY DATA HAS CHANGED");
    /// 39/00
    SAVING_PARAMETERS_NOT_SUPPORTED = (0x39, 0x00, "SAVING PARAMETERS NOT SUPPORTED");
    /// 3A/00
    MEDIUM_NOT_PRESENT = (0x3A, 0x00, "MEDIUM NOT PRESENT");
    /// 3F/0E
    REPORTED_LUNS_DATA_HAS_CHANGED = (0x3F, 0x0E, "REPORTED LUNS DATA HAS CHANGED");
    /// 44/00
    INTERNAL_TARGET_FAILURE = (0x44, 0x00, "INTERNAL TARGET FAILURE");
    /// 47/00
    SCSI_PARITY_ERROR = (0x47, 0x00, "SCSI PARITY ERROR");
    /// 4B/00
    DATA_PHASE_ERROR = (0x4B, 0x00, "DATA PHASE ERROR");
    /// 55/03
    INSUFFICIENT_RESOURCES = (0x55, 0x03, "INSUFFICIENT RESOURCES");
    /// 55/04
    INSUFFICIENT_REGISTRATION_RESOURCES = (0x55, 0x04, "INSUFFICIENT REGISTRATION RESOURCES");
}

impl Asc {
    /// An ASC/ASCQ pair.
    pub const fn new(asc: u8, ascq: u8) -> Self {
        Self { asc, ascq }
    }

    /// The standard name from [`ASC_TABLE`], if this pair is in it.
    pub fn name(self) -> Option<&'static str> {
        ASC_TABLE
            .iter()
            .find(|(code, _)| *code == self)
            .map(|(_, name)| *name)
    }
}

impl fmt::Display for Asc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ASC {:#04x} ASCQ {:#04x}", self.asc, self.ascq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicates_and_names_resolve() {
        for (i, (a, _)) in ASC_TABLE.iter().enumerate() {
            for (b, _) in &ASC_TABLE[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            Asc::LBA_OUT_OF_RANGE.name(),
            Some("LOGICAL BLOCK ADDRESS OUT OF RANGE")
        );
        assert_eq!(Asc::new(0x7F, 0x7F).name(), None);
        assert_eq!(SenseKey::MISCOMPARE.name(), "MISCOMPARE");
        assert_eq!(Status::RESERVATION_CONFLICT.name(), "RESERVATION CONFLICT");
        assert!(Status::CONDITION_MET.is_good());
    }
}
