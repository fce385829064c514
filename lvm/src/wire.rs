//! On-disk structures of ESXi's LVM: checked views over bytes and parsed representations.
//!
//! Every structure has a view type `X<T: AsRef<[u8]>>` whose `new_checked` proves the buffer is
//! long enough, after which no accessor panics, and a `XRepr` with `parse`, `buffer_len` and
//! `emit`. All integers are little-endian. `FORMAT.md` in the crate describes the layout.

use core::fmt;

use crate::error::{LvmError, LvmErrorKind, Structure, err, err_v};

/// Byte offset of the device header on every LVM device (1 MiB).
pub const HEADER_OFFSET: u64 = 0x10_0000;
/// The magic number that starts a device header.
pub const MAGIC: u32 = 0xC001_D00D;
/// The oldest LVM major version this crate reads.
pub const VERSION_MIN: u32 = 3;
/// The newest LVM major version this crate reads.
pub const VERSION_MAX: u32 = 6;
/// The unit of the volume-wide physical extent numbers (`firstPE`, `lastPE`, `numPEs` of a
/// volume descriptor): 256 MiB.
pub const PE_UNIT_BYTES: u64 = 256 * 1024 * 1024;
/// Where the data area starts on devices this crate formats (17 MiB, as ESXi does).
pub const DEFAULT_DATA_OFFSET: u64 = 0x110_0000;
/// Size of one volume table entry.
pub const VOLUME_DESCRIPTOR_LEN: usize = 512;
/// Size of one physical extent table entry.
pub const PE_ENTRY_LEN: usize = 128;
/// Size of one device-name entry.
pub const DEVICE_NAME_LEN: usize = 256;
/// Number of device-name entries (and so the most devices a volume may span).
pub const MAX_DEVICE_NAMES: u32 = 32;
/// Physical extent entries per bitmap/table pair.
pub const PES_PER_MAP: u32 = 8192;
/// The most bitmap/table pairs in one metadata area.
pub const MAX_PE_MAPS: u32 = 8;
/// Length of a volume name field.
pub const VOLUME_NAME_LEN: usize = 64;
/// Length of the disk id structure.
pub const DISK_ID_LEN: usize = 78;
/// Length of the meaningful part of the device header.
pub const DEVICE_HEADER_LEN: usize = 0xD6;
/// Length of the meaningful part of a physical extent entry.
pub const PE_ENTRY_USED_LEN: usize = 0x25;

const SECTOR: u64 = 512;

fn rd_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}
fn wr_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn wr_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn wr_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn rd_arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut x = [0u8; N];
    x.copy_from_slice(&b[at..at + N]);
    x
}

/// A 16-byte ESXi UUID: seconds, a time-derived word, a random word and a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Uuid {
    /// Low time word (seconds since 1970 on ESXi).
    pub time_lo: u32,
    /// High time word.
    pub time_hi: u32,
    /// Random part.
    pub rand: u16,
    /// The MAC address of the host that made it.
    pub mac: [u8; 6],
}

impl Uuid {
    /// Length on disk.
    pub const LEN: usize = 16;

    /// Parses 16 bytes.
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        Self {
            time_lo: rd_u32(b, 0),
            time_hi: rd_u32(b, 4),
            rand: rd_u16(b, 8),
            mac: rd_arr(b, 10),
        }
    }

    /// The 16 bytes on disk.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        wr_u32(&mut b, 0, self.time_lo);
        wr_u32(&mut b, 4, self.time_hi);
        wr_u16(&mut b, 8, self.rand);
        b[10..16].copy_from_slice(&self.mac);
        b
    }

    /// Whether every byte is zero.
    pub fn is_nil(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for Uuid {
    /// ESXi's spelling: `6840386c-7308ed70-12aa-bc2411b17e28`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:08x}-{:08x}-{:04x}-",
            self.time_lo, self.time_hi, self.rand
        )?;
        for b in self.mac {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A fixed-length, NUL-padded text field (volume name, device name), kept byte for byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label<const N: usize> {
    bytes: [u8; N],
}

impl<const N: usize> Default for Label<N> {
    fn default() -> Self {
        Self { bytes: [0; N] }
    }
}

impl<const N: usize> Label<N> {
    /// The raw field.
    pub fn from_raw(bytes: [u8; N]) -> Self {
        Self { bytes }
    }

    /// A label holding `text`, NUL-padded. Longer text is refused (`None`); the field need not
    /// keep a terminating NUL when the text fills it.
    pub fn new(text: &str) -> Option<Self> {
        let t = text.as_bytes();
        if t.len() > N || t.contains(&0) {
            return None;
        }
        let mut bytes = [0u8; N];
        bytes[..t.len()].copy_from_slice(t);
        Some(Self { bytes })
    }

    /// The raw field.
    pub fn raw(&self) -> &[u8; N] {
        &self.bytes
    }

    /// The bytes before the first NUL.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.bytes.iter().position(|&b| b == 0).unwrap_or(N);
        &self.bytes[..end]
    }

    /// The text before the first NUL, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.as_bytes()).ok()
    }
}

impl<const N: usize> fmt::Debug for Label<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => write!(f, "{s:?}"),
            None => write!(f, "{:?}", self.as_bytes()),
        }
    }
}

#[cfg(feature = "defmt")]
impl<const N: usize> defmt::Format for Label<N> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=[u8]}", self.as_bytes())
    }
}

/// A volume name (64 bytes on disk).
pub type VolumeName = Label<VOLUME_NAME_LEN>;
/// A device name of the device-name table (256 bytes on disk), e.g. `naa.600...:1`.
pub type DeviceName = Label<DEVICE_NAME_LEN>;

/// The identity of a SCSI disk as ESXi records it (`SCSI_DiskId`, 78 bytes): the designator of
/// VPD page 0x83 it identified the LUN by. A device whose recorded identity differs from its
/// actual one is a snapshot (a copy of the LUN on another device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DiskId {
    /// Designator type (1 = T10 vendor id, 2 = EUI-64, 3 = NAA, ...).
    pub kind: u8,
    /// Number of meaningful bytes of `id`.
    pub len: u8,
    /// LUN number.
    pub lun: u16,
    /// SCSI peripheral device type.
    pub device_type: u8,
    /// SCSI level.
    pub scsi_level: u8,
    /// INQUIRY vendor.
    pub vendor: [u8; 8],
    /// INQUIRY product.
    pub model: [u8; 16],
    /// INQUIRY revision.
    pub revision: [u8; 4],
    /// The designator bytes.
    pub id: [u8; 44],
}

impl Default for DiskId {
    fn default() -> Self {
        Self {
            kind: 0,
            len: 0,
            lun: 0,
            device_type: 0,
            scsi_level: 0,
            vendor: [0; 8],
            model: [0; 16],
            revision: [0; 4],
            id: [0; 44],
        }
    }
}

impl DiskId {
    /// A disk id of designator type `kind` holding `designator` (at most 44 bytes), the rest
    /// zero.
    pub fn from_designator(kind: u8, designator: &[u8]) -> Option<Self> {
        if designator.len() > 44 {
            return None;
        }
        let mut id = [0u8; 44];
        id[..designator.len()].copy_from_slice(designator);
        Some(Self {
            kind,
            len: designator.len() as u8,
            id,
            ..Self::default()
        })
    }

    /// The meaningful designator bytes (`len` is clamped to the field).
    pub fn designator(&self) -> &[u8] {
        &self.id[..usize::from(self.len).min(44)]
    }

    /// Whether two ids name the same disk: same designator type and designator bytes.
    pub fn same_disk(&self, other: &DiskId) -> bool {
        self.kind == other.kind && self.designator() == other.designator()
    }

    fn parse(b: &[u8; DISK_ID_LEN]) -> Self {
        Self {
            kind: b[0],
            len: b[1],
            lun: rd_u16(b, 2),
            device_type: b[4],
            scsi_level: b[5],
            vendor: rd_arr(b, 6),
            model: rd_arr(b, 14),
            revision: rd_arr(b, 30),
            id: rd_arr(b, 34),
        }
    }

    fn emit(&self, b: &mut [u8]) {
        b[0] = self.kind;
        b[1] = self.len;
        wr_u16(b, 2, self.lun);
        b[4] = self.device_type;
        b[5] = self.scsi_level;
        b[6..14].copy_from_slice(&self.vendor);
        b[14..30].copy_from_slice(&self.model);
        b[30..34].copy_from_slice(&self.revision);
        b[34..78].copy_from_slice(&self.id);
    }
}

/// Where the tables of a device's LVM metadata lie, for one major version.
///
/// Offsets are relative to [`HEADER_OFFSET`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Layout {
    /// LVM major version.
    pub version: u32,
    /// Bytes reserved for the device header (512, or the metadata alignment on LVM 6).
    pub header_len: u64,
    /// Volume table entries.
    pub max_volumes: u32,
    /// Bytes of one physical extent bitmap.
    pub bitmap_len: u64,
    /// Offset of the volume table.
    pub volume_table: u64,
    /// Offset of the device-name table.
    pub device_names: u64,
    /// Offset of the first physical extent bitmap.
    pub pe_bitmap: u64,
}

impl Layout {
    /// The layout of major `version`; `md_alignment` is the header's alignment field (used by
    /// LVM 6 only).
    pub fn new(version: u32, md_alignment: u32) -> Result<Self, LvmError> {
        let (header_len, max_volumes, bitmap_len) = match version {
            3..=5 => (SECTOR, 512u32, 1024u64),
            6 => {
                let a = u64::from(md_alignment);
                if !(SECTOR..=0x10_0000).contains(&a) || !a.is_power_of_two() {
                    return Err(err_v(
                        Structure::DeviceHeader,
                        LvmErrorKind::BadField,
                        u64::from(md_alignment),
                    ));
                }
                (a, 1u32, a.max(1024))
            }
            _ => {
                return Err(err_v(
                    Structure::DeviceHeader,
                    LvmErrorKind::UnsupportedVersion,
                    u64::from(version),
                ));
            }
        };
        let volume_table = header_len;
        let unused = (1024 - u64::from(max_volumes)) * SECTOR;
        let names_len = u64::from(MAX_DEVICE_NAMES) * DEVICE_NAME_LEN as u64;
        let reserved = unused - names_len;
        let device_names =
            volume_table + u64::from(max_volumes) * VOLUME_DESCRIPTOR_LEN as u64 + reserved;
        let pe_bitmap = device_names + names_len;
        Ok(Self {
            version,
            header_len,
            max_volumes,
            bitmap_len,
            volume_table,
            device_names,
            pe_bitmap,
        })
    }

    /// Whether the version records device names (LVM 5 and later).
    pub fn has_device_names(&self) -> bool {
        self.version >= 5
    }

    /// Bytes of one bitmap/table pair.
    pub fn map_len(&self) -> u64 {
        self.bitmap_len + u64::from(PES_PER_MAP) * PE_ENTRY_LEN as u64
    }

    /// Absolute device offset of volume table entry `index`.
    pub fn volume_descriptor_offset(&self, index: u32) -> Option<u64> {
        if index >= self.max_volumes {
            return None;
        }
        HEADER_OFFSET
            .checked_add(self.volume_table)?
            .checked_add(u64::from(index) * VOLUME_DESCRIPTOR_LEN as u64)
    }

    /// Absolute device offset of device-name entry `index`.
    pub fn device_name_offset(&self, index: u32) -> Option<u64> {
        if index >= MAX_DEVICE_NAMES {
            return None;
        }
        Some(HEADER_OFFSET + self.device_names + u64::from(index) * DEVICE_NAME_LEN as u64)
    }

    /// Absolute device offset of the bitmap byte that holds the bit of extent entry `index`,
    /// and the bit's mask.
    pub fn bitmap_byte(&self, index: u32) -> Option<(u64, u8)> {
        let map = index / PES_PER_MAP;
        if map >= MAX_PE_MAPS {
            return None;
        }
        let within = index % PES_PER_MAP;
        let offset = HEADER_OFFSET
            + self.pe_bitmap
            + u64::from(map) * self.map_len()
            + u64::from(within / 8);
        Some((offset, 1u8 << (within % 8)))
    }

    /// Absolute device offset of physical extent entry `index`.
    pub fn pe_entry_offset(&self, index: u32) -> Option<u64> {
        let map = index / PES_PER_MAP;
        if map >= MAX_PE_MAPS {
            return None;
        }
        let within = index % PES_PER_MAP;
        Some(
            HEADER_OFFSET
                + self.pe_bitmap
                + u64::from(map) * self.map_len()
                + self.bitmap_len
                + u64::from(within) * PE_ENTRY_LEN as u64,
        )
    }

    /// Absolute device offset one past the metadata of `maps` bitmap/table pairs.
    pub fn metadata_end(&self, maps: u32) -> u64 {
        HEADER_OFFSET + self.pe_bitmap + u64::from(maps.clamp(1, MAX_PE_MAPS)) * self.map_len()
    }
}

macro_rules! view {
    ($(#[$doc:meta])* $name:ident, $len:expr, $structure:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// The meaningful length of the structure.
            pub const LEN: usize = $len;

            /// Wraps `buffer` without checking its length; accessors may panic on a short
            /// buffer. Use [`Self::new_checked`].
            pub const fn new_unchecked(buffer: T) -> Self {
                Self { buffer }
            }

            /// Wraps `buffer`, refusing one shorter than the structure.
            pub fn new_checked(buffer: T) -> Result<Self, LvmError> {
                let view = Self::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            /// Checks that the buffer holds the whole structure.
            pub fn check_len(&self) -> Result<(), LvmError> {
                let len = self.buffer.as_ref().len();
                if len < Self::LEN {
                    Err(err_v($structure, LvmErrorKind::Truncated, len as u64))
                } else {
                    Ok(())
                }
            }

            /// The underlying buffer.
            pub fn into_inner(self) -> T {
                self.buffer
            }

            #[allow(dead_code)]
            fn u8_at(&self, at: usize) -> u8 {
                self.buffer.as_ref()[at]
            }
            #[allow(dead_code)]
            fn u32_at(&self, at: usize) -> u32 {
                rd_u32(self.buffer.as_ref(), at)
            }
            #[allow(dead_code)]
            fn u64_at(&self, at: usize) -> u64 {
                rd_u64(self.buffer.as_ref(), at)
            }
            #[allow(dead_code)]
            fn bytes_at<const N: usize>(&self, at: usize) -> [u8; N] {
                rd_arr(self.buffer.as_ref(), at)
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            #[allow(dead_code)]
            fn set_u8(&mut self, at: usize, v: u8) {
                self.buffer.as_mut()[at] = v;
            }
            #[allow(dead_code)]
            fn set_u32(&mut self, at: usize, v: u32) {
                wr_u32(self.buffer.as_mut(), at, v)
            }
            #[allow(dead_code)]
            fn set_u64(&mut self, at: usize, v: u64) {
                wr_u64(self.buffer.as_mut(), at, v)
            }
            #[allow(dead_code)]
            fn set_bytes(&mut self, at: usize, v: &[u8]) {
                self.buffer.as_mut()[at..at + v.len()].copy_from_slice(v)
            }
        }
    };
}

mod dev {
    pub(super) const MAGIC: usize = 0x00;
    pub(super) const MAJOR: usize = 0x04;
    pub(super) const MINOR: usize = 0x08;
    pub(super) const DISK_ID: usize = 0x0C;
    pub(super) const BLOCK_SIZE: usize = 0x5A;
    pub(super) const TOTAL_BYTES: usize = 0x5E;
    pub(super) const NUM_VOLUMES: usize = 0x66;
    pub(super) const NUM_PES: usize = 0x6A;
    pub(super) const LAST_PE_INDEX: usize = 0x6E;
    pub(super) const GENERATION: usize = 0x72;
    pub(super) const DATA_OFFSET: usize = 0x7A;
    pub(super) const DEV_ID: usize = 0x82;
    pub(super) const INIT_TIME: usize = 0x92;
    pub(super) const MOD_TIME: usize = 0x9A;
    pub(super) const LOCKED_BY: usize = 0xA2;
    pub(super) const LOCKED_WHEN: usize = 0xB2;
    pub(super) const UNKNOWN0: usize = 0xBA;
    pub(super) const NUM_PE_MAPS: usize = 0xBE;
    pub(super) const EXT_OFFSET: usize = 0xC2;
    pub(super) const MD_ALIGNMENT: usize = 0xCA;
    pub(super) const NUM_PES6: usize = 0xCE;
    pub(super) const FLAGS: usize = 0xD2;
}

view!(
    /// A view of the device header (`LVM_DevMetadata`) at [`HEADER_OFFSET`].
    DeviceHeader,
    DEVICE_HEADER_LEN,
    Structure::DeviceHeader
);

impl<T: AsRef<[u8]>> DeviceHeader<T> {
    /// The magic number.
    pub fn magic(&self) -> u32 {
        self.u32_at(dev::MAGIC)
    }
    /// The LVM major version.
    pub fn major_version(&self) -> u32 {
        self.u32_at(dev::MAJOR)
    }
}

/// The parsed device header (`LVM_DevMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeviceHeaderRepr {
    /// LVM major version (3 to 6).
    pub major_version: u32,
    /// LVM minor version.
    pub minor_version: u32,
    /// The identity of the disk when the header was written.
    pub disk_id: DiskId,
    /// Block size of the disk.
    pub block_size: u32,
    /// Size of the device in bytes, as recorded (informational).
    pub total_bytes: u64,
    /// Used entries of the volume table.
    pub num_volumes: u32,
    /// Entries of the physical extent table in use.
    pub num_pes: u32,
    /// Index of the last used physical extent entry.
    pub last_pe_index: u32,
    /// Device metadata generation, bumped on every change.
    pub generation: u64,
    /// Where the data area starts.
    pub data_offset: u64,
    /// The LVM identifier of this device.
    pub device_uuid: Uuid,
    /// Creation time, microseconds since 1970.
    pub init_time_us: u64,
    /// Last change, microseconds since 1970.
    pub mod_time_us: u64,
    /// The host holding the metadata lock, nil when unlocked.
    pub locked_by: Uuid,
    /// When the lock was taken.
    pub locked_when_us: u64,
    /// A field of unknown meaning, kept as found.
    pub unknown0: u32,
    /// Number of bitmap/table pairs (0 means 1).
    pub num_pe_maps: u32,
    /// Offset of extended metadata (0: none).
    pub ext_metadata_offset: u64,
    /// Metadata alignment (LVM 6).
    pub md_alignment: u32,
    /// Physical extents in 256 MiB units on this device (LVM 6).
    pub num_pes6: u32,
    /// Flags (1: VMFS-L).
    pub flags: u32,
}

impl DeviceHeaderRepr {
    /// Parses and validates a device header.
    pub fn parse<T: AsRef<[u8]>>(view: &DeviceHeader<T>) -> Result<Self, LvmError> {
        view.check_len()?;
        if view.magic() != MAGIC {
            return Err(err_v(
                Structure::DeviceHeader,
                LvmErrorKind::BadMagic,
                u64::from(view.magic()),
            ));
        }
        let repr = Self {
            major_version: view.u32_at(dev::MAJOR),
            minor_version: view.u32_at(dev::MINOR),
            disk_id: DiskId::parse(&view.bytes_at(dev::DISK_ID)),
            block_size: view.u32_at(dev::BLOCK_SIZE),
            total_bytes: view.u64_at(dev::TOTAL_BYTES),
            num_volumes: view.u32_at(dev::NUM_VOLUMES),
            num_pes: view.u32_at(dev::NUM_PES),
            last_pe_index: view.u32_at(dev::LAST_PE_INDEX),
            generation: view.u64_at(dev::GENERATION),
            data_offset: view.u64_at(dev::DATA_OFFSET),
            device_uuid: Uuid::from_bytes(&view.bytes_at(dev::DEV_ID)),
            init_time_us: view.u64_at(dev::INIT_TIME),
            mod_time_us: view.u64_at(dev::MOD_TIME),
            locked_by: Uuid::from_bytes(&view.bytes_at(dev::LOCKED_BY)),
            locked_when_us: view.u64_at(dev::LOCKED_WHEN),
            unknown0: view.u32_at(dev::UNKNOWN0),
            num_pe_maps: view.u32_at(dev::NUM_PE_MAPS),
            ext_metadata_offset: view.u64_at(dev::EXT_OFFSET),
            md_alignment: view.u32_at(dev::MD_ALIGNMENT),
            num_pes6: view.u32_at(dev::NUM_PES6),
            flags: view.u32_at(dev::FLAGS),
        };
        repr.validate()?;
        Ok(repr)
    }

    /// Checks the fields that locate other structures.
    pub fn validate(&self) -> Result<(), LvmError> {
        let layout = self.layout()?;
        let bad = |v: u64| err_v(Structure::DeviceHeader, LvmErrorKind::BadField, v);
        if !(512..=65536).contains(&self.block_size) || !self.block_size.is_power_of_two() {
            return Err(bad(u64::from(self.block_size)));
        }
        if self.num_volumes > layout.max_volumes {
            return Err(bad(u64::from(self.num_volumes)));
        }
        if self.num_pe_maps > MAX_PE_MAPS {
            return Err(bad(u64::from(self.num_pe_maps)));
        }
        let maps = self.num_pe_maps.max(1);
        if u64::from(self.num_pes) > u64::from(maps) * u64::from(PES_PER_MAP) {
            return Err(bad(u64::from(self.num_pes)));
        }
        Ok(())
    }

    /// The table layout this header implies.
    pub fn layout(&self) -> Result<Layout, LvmError> {
        Layout::new(self.major_version, self.md_alignment)
    }

    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        DEVICE_HEADER_LEN
    }

    /// Writes the header into `view` (bytes past [`DEVICE_HEADER_LEN`] are left alone).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        view: &mut DeviceHeader<T>,
    ) -> Result<(), LvmError> {
        view.check_len()?;
        view.set_u32(dev::MAGIC, MAGIC);
        view.set_u32(dev::MAJOR, self.major_version);
        view.set_u32(dev::MINOR, self.minor_version);
        let mut id = [0u8; DISK_ID_LEN];
        self.disk_id.emit(&mut id);
        view.set_bytes(dev::DISK_ID, &id);
        view.set_u32(dev::BLOCK_SIZE, self.block_size);
        view.set_u64(dev::TOTAL_BYTES, self.total_bytes);
        view.set_u32(dev::NUM_VOLUMES, self.num_volumes);
        view.set_u32(dev::NUM_PES, self.num_pes);
        view.set_u32(dev::LAST_PE_INDEX, self.last_pe_index);
        view.set_u64(dev::GENERATION, self.generation);
        view.set_u64(dev::DATA_OFFSET, self.data_offset);
        view.set_bytes(dev::DEV_ID, &self.device_uuid.to_bytes());
        view.set_u64(dev::INIT_TIME, self.init_time_us);
        view.set_u64(dev::MOD_TIME, self.mod_time_us);
        view.set_bytes(dev::LOCKED_BY, &self.locked_by.to_bytes());
        view.set_u64(dev::LOCKED_WHEN, self.locked_when_us);
        view.set_u32(dev::UNKNOWN0, self.unknown0);
        view.set_u32(dev::NUM_PE_MAPS, self.num_pe_maps);
        view.set_u64(dev::EXT_OFFSET, self.ext_metadata_offset);
        view.set_u32(dev::MD_ALIGNMENT, self.md_alignment);
        view.set_u32(dev::NUM_PES6, self.num_pes6);
        view.set_u32(dev::FLAGS, self.flags);
        Ok(())
    }
}

mod vol {
    pub(super) const LOGICAL_SIZE: usize = 0x00;
    pub(super) const GENERATION: usize = 0x08;
    pub(super) const STATE: usize = 0x10;
    pub(super) const NAME: usize = 0x14;
    pub(super) const UUID: usize = 0x54;
    pub(super) const SNAP_ID: usize = 0x64;
    pub(super) const CREATION_TIME: usize = 0x68;
    pub(super) const VOLUME_ID: usize = 0x70;
    pub(super) const NUM_PES: usize = 0x74;
    pub(super) const FIRST_PE: usize = 0x78;
    pub(super) const LAST_PE: usize = 0x80;
    pub(super) const MOD_TIME: usize = 0x88;
    pub(super) const NUM_DEVS: usize = 0x90;
    pub(super) const CONSUMED_PES: usize = 0x110;
}

view!(
    /// A view of a volume table entry (`LVM_VolDescriptor`, 512 bytes).
    VolumeDescriptor,
    VOLUME_DESCRIPTOR_LEN,
    Structure::VolumeDescriptor
);

/// The state of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum VolumeState {
    /// 0: invalid.
    Invalid,
    /// 1: in normal use.
    Normal,
    /// 2: a resignature was started.
    ResignaturePending,
    /// 3: a resignature finished.
    ResignatureDone,
    /// Any other value.
    Other(u32),
}

impl VolumeState {
    /// The state of raw value `v`.
    pub const fn from_raw(v: u32) -> Self {
        match v {
            0 => Self::Invalid,
            1 => Self::Normal,
            2 => Self::ResignaturePending,
            3 => Self::ResignatureDone,
            other => Self::Other(other),
        }
    }

    /// The raw value.
    pub const fn raw(self) -> u32 {
        match self {
            Self::Invalid => 0,
            Self::Normal => 1,
            Self::ResignaturePending => 2,
            Self::ResignatureDone => 3,
            Self::Other(v) => v,
        }
    }
}

/// The parsed volume descriptor: volume-wide metadata (same on every member) and this device's
/// share of the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VolumeDescriptorRepr {
    /// Size of the volume in bytes.
    pub logical_size: u64,
    /// Volume generation, bumped on every change.
    pub generation: u64,
    /// Raw volume state ([`VolumeState`]).
    pub state: u32,
    /// Volume name.
    pub name: VolumeName,
    /// Volume UUID: devices with the same UUID belong to one volume.
    pub uuid: Uuid,
    /// Snapshot id of the volume.
    pub snap_id: u32,
    /// Creation time, microseconds since 1970.
    pub creation_time_us: u64,
    /// The volume's index, matched by the physical extent entries' `volume_id`.
    pub volume_id: u32,
    /// 256 MiB units of the volume on this device.
    pub num_pes: u32,
    /// Volume-wide number of the first 256 MiB unit on this device (0 on the first device).
    pub first_pe: u64,
    /// Volume-wide number of the last 256 MiB unit on this device.
    pub last_pe: u64,
    /// Last change, microseconds since 1970.
    pub mod_time_us: u64,
    /// Number of devices of the volume.
    pub num_devs: u32,
    /// Consumed physical extents (LVM 6).
    pub consumed_pes: u32,
}

impl VolumeDescriptorRepr {
    /// Parses a volume descriptor.
    pub fn parse<T: AsRef<[u8]>>(view: &VolumeDescriptor<T>) -> Result<Self, LvmError> {
        view.check_len()?;
        let repr = Self {
            logical_size: view.u64_at(vol::LOGICAL_SIZE),
            generation: view.u64_at(vol::GENERATION),
            state: view.u32_at(vol::STATE),
            name: Label::from_raw(view.bytes_at(vol::NAME)),
            uuid: Uuid::from_bytes(&view.bytes_at(vol::UUID)),
            snap_id: view.u32_at(vol::SNAP_ID),
            creation_time_us: view.u64_at(vol::CREATION_TIME),
            volume_id: view.u32_at(vol::VOLUME_ID),
            num_pes: view.u32_at(vol::NUM_PES),
            first_pe: view.u64_at(vol::FIRST_PE),
            last_pe: view.u64_at(vol::LAST_PE),
            mod_time_us: view.u64_at(vol::MOD_TIME),
            num_devs: view.u32_at(vol::NUM_DEVS),
            consumed_pes: view.u32_at(vol::CONSUMED_PES),
        };
        let bad = |v: u64| err_v(Structure::VolumeDescriptor, LvmErrorKind::BadField, v);
        if repr.num_devs == 0 || repr.num_devs > MAX_DEVICE_NAMES {
            return Err(bad(u64::from(repr.num_devs)));
        }
        if repr.first_pe > repr.last_pe {
            return Err(bad(repr.first_pe));
        }
        Ok(repr)
    }

    /// The volume state.
    pub fn volume_state(&self) -> VolumeState {
        VolumeState::from_raw(self.state)
    }

    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        VOLUME_DESCRIPTOR_LEN
    }

    /// Writes the descriptor (the whole 512-byte entry; padding is zeroed).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        view: &mut VolumeDescriptor<T>,
    ) -> Result<(), LvmError> {
        view.check_len()?;
        view.buffer.as_mut()[..VOLUME_DESCRIPTOR_LEN].fill(0);
        view.set_u64(vol::LOGICAL_SIZE, self.logical_size);
        view.set_u64(vol::GENERATION, self.generation);
        view.set_u32(vol::STATE, self.state);
        view.set_bytes(vol::NAME, self.name.raw());
        view.set_bytes(vol::UUID, &self.uuid.to_bytes());
        view.set_u32(vol::SNAP_ID, self.snap_id);
        view.set_u64(vol::CREATION_TIME, self.creation_time_us);
        view.set_u32(vol::VOLUME_ID, self.volume_id);
        view.set_u32(vol::NUM_PES, self.num_pes);
        view.set_u64(vol::FIRST_PE, self.first_pe);
        view.set_u64(vol::LAST_PE, self.last_pe);
        view.set_u64(vol::MOD_TIME, self.mod_time_us);
        view.set_u32(vol::NUM_DEVS, self.num_devs);
        view.set_u32(vol::CONSUMED_PES, self.consumed_pes);
        Ok(())
    }
}

mod pe {
    pub(super) const USED: usize = 0x00;
    pub(super) const PE_ID: usize = 0x01;
    pub(super) const VOLUME_ID: usize = 0x05;
    pub(super) const P_OFFSET: usize = 0x09;
    pub(super) const L_OFFSET: usize = 0x11;
    pub(super) const LENGTH: usize = 0x19;
    pub(super) const VERSION: usize = 0x21;
}

view!(
    /// A view of a physical extent table entry (`LVM_PETableEntry`, 128 bytes on disk).
    PeEntry,
    PE_ENTRY_USED_LEN,
    Structure::PeEntry
);

/// The parsed physical extent entry: a run of `length` bytes at `physical_offset` on this
/// device holding volume bytes from `logical_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PeEntryRepr {
    /// Whether the entry is in use.
    pub used: bool,
    /// The extent's id on this device.
    pub pe_id: u32,
    /// The volume it belongs to (`volume_id` of a volume descriptor).
    pub volume_id: u32,
    /// Byte offset on the device.
    pub physical_offset: u64,
    /// Byte offset in the volume.
    pub logical_offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// Entry version.
    pub version: u32,
}

impl PeEntryRepr {
    /// Parses an entry. The used flag must be 0 or 1.
    pub fn parse<T: AsRef<[u8]>>(view: &PeEntry<T>) -> Result<Self, LvmError> {
        view.check_len()?;
        let used = match view.u8_at(pe::USED) {
            0 => false,
            1 => true,
            other => {
                return Err(err_v(
                    Structure::PeEntry,
                    LvmErrorKind::BadField,
                    u64::from(other),
                ));
            }
        };
        Ok(Self {
            used,
            pe_id: view.u32_at(pe::PE_ID),
            volume_id: view.u32_at(pe::VOLUME_ID),
            physical_offset: view.u64_at(pe::P_OFFSET),
            logical_offset: view.u64_at(pe::L_OFFSET),
            length: view.u64_at(pe::LENGTH),
            version: view.u32_at(pe::VERSION),
        })
    }

    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        PE_ENTRY_USED_LEN
    }

    /// Writes the entry.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        view: &mut PeEntry<T>,
    ) -> Result<(), LvmError> {
        view.check_len()?;
        view.set_u8(pe::USED, u8::from(self.used));
        view.set_u32(pe::PE_ID, self.pe_id);
        view.set_u32(pe::VOLUME_ID, self.volume_id);
        view.set_u64(pe::P_OFFSET, self.physical_offset);
        view.set_u64(pe::L_OFFSET, self.logical_offset);
        view.set_u64(pe::LENGTH, self.length);
        view.set_u32(pe::VERSION, self.version);
        Ok(())
    }
}

/// Parses a device-name entry (256 bytes).
pub fn parse_device_name(bytes: &[u8]) -> Result<DeviceName, LvmError> {
    if bytes.len() < DEVICE_NAME_LEN {
        return Err(err_v(
            Structure::DeviceNameEntry,
            LvmErrorKind::Truncated,
            bytes.len() as u64,
        ));
    }
    Ok(Label::from_raw(rd_arr(bytes, 0)))
}

/// Writes a device-name entry (256 bytes).
pub fn emit_device_name(name: &DeviceName, bytes: &mut [u8]) -> Result<(), LvmError> {
    if bytes.len() < DEVICE_NAME_LEN {
        return Err(err(Structure::DeviceNameEntry, LvmErrorKind::Truncated));
    }
    bytes[..DEVICE_NAME_LEN].copy_from_slice(name.raw());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uuid() -> impl Strategy<Value = Uuid> {
        (any::<u32>(), any::<u32>(), any::<u16>(), any::<[u8; 6]>()).prop_map(
            |(time_lo, time_hi, rand, mac)| Uuid {
                time_lo,
                time_hi,
                rand,
                mac,
            },
        )
    }

    fn disk_id() -> impl Strategy<Value = DiskId> {
        (
            any::<(u8, u8, u16, u8, u8)>(),
            any::<[u8; 8]>(),
            any::<[u8; 16]>(),
            any::<[u8; 4]>(),
            proptest::collection::vec(any::<u8>(), 44),
        )
            .prop_map(
                |((kind, len, lun, device_type, scsi_level), vendor, model, revision, id)| DiskId {
                    kind,
                    len,
                    lun,
                    device_type,
                    scsi_level,
                    vendor,
                    model,
                    revision,
                    id: id.try_into().unwrap(),
                },
            )
    }

    fn header() -> impl Strategy<Value = DeviceHeaderRepr> {
        (
            (3u32..=6, any::<u32>(), disk_id(), 9u32..=16, any::<u64>()),
            (
                0u32..=1,
                0u32..=MAX_PE_MAPS,
                any::<u64>(),
                any::<u64>(),
                uuid(),
            ),
            (
                any::<u64>(),
                any::<u64>(),
                uuid(),
                any::<u64>(),
                any::<u32>(),
            ),
            (
                any::<u64>(),
                9u32..=20,
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
            ),
            any::<u32>(),
        )
            .prop_map(
                |(
                    (major_version, minor_version, disk_id, bs_shift, total_bytes),
                    (num_volumes, num_pe_maps, generation, data_offset, device_uuid),
                    (init_time_us, mod_time_us, locked_by, locked_when_us, unknown0),
                    (ext_metadata_offset, align_shift, num_pes6, flags, last_pe_index),
                    pes,
                )| {
                    let maps = num_pe_maps.max(1);
                    DeviceHeaderRepr {
                        major_version,
                        minor_version,
                        disk_id,
                        block_size: 1 << bs_shift,
                        total_bytes,
                        num_volumes,
                        num_pes: pes % (maps * PES_PER_MAP + 1),
                        last_pe_index,
                        generation,
                        data_offset,
                        device_uuid,
                        init_time_us,
                        mod_time_us,
                        locked_by,
                        locked_when_us,
                        unknown0,
                        num_pe_maps,
                        ext_metadata_offset,
                        md_alignment: 1 << align_shift,
                        num_pes6,
                        flags,
                    }
                },
            )
    }

    fn descriptor() -> impl Strategy<Value = VolumeDescriptorRepr> {
        (
            (
                any::<u64>(),
                any::<u64>(),
                any::<u32>(),
                "[a-z0-9-]{0,64}",
                uuid(),
            ),
            (any::<u32>(), any::<u64>(), any::<u32>(), any::<u32>()),
            (
                0u64..1 << 40,
                0u64..1 << 20,
                any::<u64>(),
                1u32..=32,
                any::<u32>(),
            ),
        )
            .prop_map(
                |(
                    (logical_size, generation, state, name, uuid),
                    (snap_id, creation_time_us, volume_id, num_pes),
                    (first_pe, span, mod_time_us, num_devs, consumed_pes),
                )| VolumeDescriptorRepr {
                    logical_size,
                    generation,
                    state,
                    name: Label::new(&name).unwrap(),
                    uuid,
                    snap_id,
                    creation_time_us,
                    volume_id,
                    num_pes,
                    first_pe,
                    last_pe: first_pe + span,
                    mod_time_us,
                    num_devs,
                    consumed_pes,
                },
            )
    }

    fn pe_entry() -> impl Strategy<Value = PeEntryRepr> {
        (
            any::<bool>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
        )
            .prop_map(
                |(used, pe_id, volume_id, physical_offset, logical_offset, length, version)| {
                    PeEntryRepr {
                        used,
                        pe_id,
                        volume_id,
                        physical_offset,
                        logical_offset,
                        length,
                        version,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn header_round_trips(repr in header()) {
            let mut buf = [0u8; 512];
            repr.emit(&mut DeviceHeader::new_checked(&mut buf[..]).unwrap()).unwrap();
            let back = DeviceHeaderRepr::parse(&DeviceHeader::new_checked(&buf[..]).unwrap()).unwrap();
            prop_assert_eq!(back, repr);
        }

        #[test]
        fn descriptor_round_trips(repr in descriptor()) {
            let mut buf = [0xAAu8; 512];
            repr.emit(&mut VolumeDescriptor::new_checked(&mut buf[..]).unwrap()).unwrap();
            let back = VolumeDescriptorRepr::parse(&VolumeDescriptor::new_checked(&buf[..]).unwrap()).unwrap();
            prop_assert_eq!(back, repr);
        }

        #[test]
        fn pe_entry_round_trips(repr in pe_entry()) {
            let mut buf = [0u8; 128];
            repr.emit(&mut PeEntry::new_checked(&mut buf[..]).unwrap()).unwrap();
            let back = PeEntryRepr::parse(&PeEntry::new_checked(&buf[..]).unwrap()).unwrap();
            prop_assert_eq!(back, repr);
        }

        #[test]
        fn uuid_round_trips(u in uuid()) {
            prop_assert_eq!(Uuid::from_bytes(&u.to_bytes()), u);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(v) = DeviceHeader::new_checked(&bytes[..]) {
                let _ = DeviceHeaderRepr::parse(&v);
            }
            if let Ok(v) = VolumeDescriptor::new_checked(&bytes[..]) {
                let _ = VolumeDescriptorRepr::parse(&v);
            }
            if let Ok(v) = PeEntry::new_checked(&bytes[..]) {
                let _ = PeEntryRepr::parse(&v);
            }
            let _ = parse_device_name(&bytes);
        }
    }

    #[test]
    fn short_buffers_name_the_structure() {
        let e = DeviceHeader::new_checked(&[0u8; 10][..]).unwrap_err();
        assert_eq!(e.structure(), Structure::DeviceHeader);
        assert_eq!(e.kind(), LvmErrorKind::Truncated);
        let e = VolumeDescriptor::new_checked(&[0u8; 511][..]).unwrap_err();
        assert_eq!(e.structure(), Structure::VolumeDescriptor);
        let e = PeEntry::new_checked(&[0u8; 3][..]).unwrap_err();
        assert_eq!(e.structure(), Structure::PeEntry);
    }

    #[test]
    fn layouts_match_the_known_offsets() {
        let v5 = Layout::new(5, 0).unwrap();
        assert_eq!(v5.device_names, 0x7E200);
        assert_eq!(v5.pe_bitmap, 0x80200);
        assert_eq!(v5.pe_entry_offset(0), Some(0x180600));
        let v6 = Layout::new(6, 0x1000).unwrap();
        assert_eq!(v6.volume_table, 0x1000);
        assert_eq!(v6.device_names, 0x7F000);
        assert_eq!(v6.pe_bitmap, 0x81000);
        assert_eq!(v6.pe_entry_offset(0), Some(0x182000));
        assert_eq!(v6.bitmap_byte(9), Some((0x181001, 2)));
        assert!(Layout::new(7, 0).is_err());
        assert!(Layout::new(6, 3).is_err());
    }

    #[test]
    fn uuid_prints_like_esxi() {
        let u = Uuid {
            time_lo: 0x6840386c,
            time_hi: 0x7308ed70,
            rand: 0x12aa,
            mac: [0xbc, 0x24, 0x11, 0xb1, 0x7e, 0x28],
        };
        let mut s = heapless::String::<64>::new();
        core::fmt::write(&mut s, format_args!("{u}")).unwrap();
        assert_eq!(s.as_str(), "6840386c-7308ed70-12aa-bc2411b17e28");
    }
}
