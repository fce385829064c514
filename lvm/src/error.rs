//! Errors that name the on-disk structure they were found in.

use core::fmt;

use block::{DriveError, ErrorKind as IoErrorKind, MemoryError};

/// The on-disk structure (or the part of the volume manager) an error was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Structure {
    /// The device header (`LVM_DevMetadata`) at 1 MiB.
    DeviceHeader,
    /// A volume descriptor (`LVM_VolDescriptor`) of the volume table.
    VolumeDescriptor,
    /// A physical-extent table entry (`LVM_PETableEntry`).
    PeEntry,
    /// The physical-extent bitmap.
    PeBitmap,
    /// A device-name entry (`LVM_SDTableEntry`) of the first device of a volume.
    DeviceNameEntry,
    /// A device identity (`SCSI_DiskId`).
    DiskId,
    /// The volume assembled from its members: member list and extent map.
    Volume,
    /// The metadata buffer the caller lent for slow-path I/O.
    MetadataBuffer,
    /// The mount table.
    MountTable,
}

impl Structure {
    /// A short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Structure::DeviceHeader => "LVM device header",
            Structure::VolumeDescriptor => "LVM volume descriptor",
            Structure::PeEntry => "LVM physical extent entry",
            Structure::PeBitmap => "LVM physical extent bitmap",
            Structure::DeviceNameEntry => "LVM device name entry",
            Structure::DiskId => "LVM disk id",
            Structure::Volume => "LVM volume",
            Structure::MetadataBuffer => "LVM metadata buffer",
            Structure::MountTable => "LVM mount table",
        }
    }
}

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LvmErrorKind {
    /// The bytes end before the structure does (or the structure lies past the device's end).
    Truncated,
    /// The magic number is not 0xC001D00D.
    BadMagic,
    /// The LVM major version is not one of 3 to 6 (or, for writing, not 5 or 6).
    UnsupportedVersion,
    /// A field holds a value outside its valid range.
    BadField,
    /// An extent lies outside its device, over the LVM metadata, or is not block aligned.
    ExtentOutOfRange,
    /// Two extents overlap, on the device or in the volume.
    OverlappingExtents,
    /// The extents leave a hole in the volume or do not add up to its size.
    Hole,
    /// A fixed capacity (devices, volumes, extents) is exceeded.
    CapacityExceeded,
    /// An arithmetic result does not fit.
    Overflow,
    /// A feature of the format this implementation does not handle (e.g. extended metadata).
    Unsupported,
    /// A member device of the volume is missing.
    Incomplete,
    /// The devices do not match the volume (wrong count, order or block size).
    DeviceMismatch,
    /// Not enough free space on the device.
    NoSpace,
    /// The volume's state forbids the operation (a snapshot not force-mounted, a conflict).
    NotAllowed,
    /// A volume with the same UUID is already mounted.
    AlreadyMounted,
    /// I/O on a device failed with this kind.
    Io(IoErrorKind),
    /// Driving a slow-path request failed.
    Drive(DriveError),
    /// The metadata buffer could not be reached through the memory map.
    Memory(MemoryError),
}

impl fmt::Display for LvmErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LvmErrorKind::Truncated => f.write_str("truncated"),
            LvmErrorKind::BadMagic => f.write_str("bad magic number"),
            LvmErrorKind::UnsupportedVersion => f.write_str("unsupported version"),
            LvmErrorKind::BadField => f.write_str("field out of range"),
            LvmErrorKind::ExtentOutOfRange => f.write_str("extent out of range"),
            LvmErrorKind::OverlappingExtents => f.write_str("overlapping extents"),
            LvmErrorKind::Hole => f.write_str("extents leave a hole"),
            LvmErrorKind::CapacityExceeded => f.write_str("capacity exceeded"),
            LvmErrorKind::Overflow => f.write_str("arithmetic overflow"),
            LvmErrorKind::Unsupported => f.write_str("unsupported feature"),
            LvmErrorKind::Incomplete => f.write_str("member device missing"),
            LvmErrorKind::DeviceMismatch => f.write_str("devices do not match the volume"),
            LvmErrorKind::NoSpace => f.write_str("no free space"),
            LvmErrorKind::NotAllowed => f.write_str("not allowed in this state"),
            LvmErrorKind::AlreadyMounted => f.write_str("a volume with this UUID is mounted"),
            LvmErrorKind::Io(kind) => write!(f, "I/O error: {}", kind.name()),
            LvmErrorKind::Drive(e) => write!(f, "{e}"),
            LvmErrorKind::Memory(e) => write!(f, "{e}"),
        }
    }
}

/// An error of the volume manager: what is wrong, where, and the offending value if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LvmError {
    structure: Structure,
    kind: LvmErrorKind,
    value: Option<u64>,
}

impl LvmError {
    /// An error of `kind` in `structure`.
    pub const fn new(structure: Structure, kind: LvmErrorKind) -> Self {
        Self {
            structure,
            kind,
            value: None,
        }
    }

    /// An error of `kind` in `structure` about `value` (an offset, a count, a field value).
    pub const fn with_value(structure: Structure, kind: LvmErrorKind, value: u64) -> Self {
        Self {
            structure,
            kind,
            value: Some(value),
        }
    }

    /// The structure the error was found in.
    pub const fn structure(&self) -> Structure {
        self.structure
    }

    /// What is wrong.
    pub const fn kind(&self) -> LvmErrorKind {
        self.kind
    }

    /// The offending value, if any.
    pub const fn value(&self) -> Option<u64> {
        self.value
    }
}

impl fmt::Display for LvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.structure.name(), self.kind)?;
        if let Some(value) = self.value {
            write!(f, " ({value:#x})")?;
        }
        Ok(())
    }
}

impl core::error::Error for LvmError {}

/// Shorthand for building errors.
pub(crate) const fn err(structure: Structure, kind: LvmErrorKind) -> LvmError {
    LvmError::new(structure, kind)
}

/// Shorthand for building errors with a value.
pub(crate) const fn err_v(structure: Structure, kind: LvmErrorKind, value: u64) -> LvmError {
    LvmError::with_value(structure, kind, value)
}
