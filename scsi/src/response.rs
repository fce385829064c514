//! Data-in payloads of the commands a disk answers: standard INQUIRY data, the VPD pages, READ
//! CAPACITY, mode pages, REPORT LUNS, REPORT SUPPORTED OPERATION CODES, GET LBA STATUS and
//! REPORT TARGET PORT GROUPS.
//!
//! Every builder writes into a caller's buffer through a cursor that never writes past its end
//! and returns the *full* length of the data; a caller compares it with the allocation length
//! (data past the buffer is simply not written, as the standard's truncation rules want).

use core::fmt;

use crate::cdb::{COMMANDS, CommandSpec};

/// A write cursor over a buffer: writes past the end are dropped but counted.
#[derive(Debug)]
pub struct Out<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl<'a> Out<'a> {
    /// A cursor at the start of `buf`, which it zeroes.
    pub fn new(buf: &'a mut [u8]) -> Self {
        buf.fill(0);
        Self { buf, at: 0 }
    }

    /// Bytes produced so far (including dropped ones).
    pub fn len(&self) -> usize {
        self.at
    }

    /// Whether nothing was produced yet.
    pub fn is_empty(&self) -> bool {
        self.at == 0
    }

    /// Appends bytes.
    pub fn put(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            if let Some(slot) = self.at.checked_add(i).and_then(|at| self.buf.get_mut(at)) {
                *slot = *b;
            }
        }
        self.at = self.at.saturating_add(bytes.len());
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    /// Appends a big-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.put(&v.to_be_bytes());
    }

    /// Appends `n` zero bytes.
    pub fn zeros(&mut self, n: usize) {
        self.at = self.at.saturating_add(n);
    }

    /// Overwrites bytes at `at` (dropped where out of the buffer).
    pub fn set(&mut self, at: usize, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            if let Some(slot) = at.checked_add(i).and_then(|at| self.buf.get_mut(at)) {
                *slot = *b;
            }
        }
    }
}

/// `text` as a fixed-width, space-padded ASCII field; bytes outside printable ASCII become `?`.
pub fn ascii_field<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [b' '; N];
    for (slot, b) in out.iter_mut().zip(text.bytes()) {
        *slot = if (0x20..0x7F).contains(&b) { b } else { b'?' };
    }
    out
}

/// VPD page codes.
pub mod vpd {
    /// Supported VPD pages.
    pub const SUPPORTED_PAGES: u8 = 0x00;
    /// Unit serial number.
    pub const UNIT_SERIAL_NUMBER: u8 = 0x80;
    /// Device identification.
    pub const DEVICE_IDENTIFICATION: u8 = 0x83;
    /// Block limits.
    pub const BLOCK_LIMITS: u8 = 0xB0;
    /// Block device characteristics.
    pub const BLOCK_DEVICE_CHARACTERISTICS: u8 = 0xB1;
    /// Logical block provisioning.
    pub const LOGICAL_BLOCK_PROVISIONING: u8 = 0xB2;
}

/// Standard INQUIRY data (SPC-4 6.6.2), 74 bytes with eight version descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InquiryData {
    /// PERIPHERAL QUALIFIER (3 bits) — 0 connected, 1 not connected, 3 no LU.
    pub peripheral_qualifier: u8,
    /// PERIPHERAL DEVICE TYPE (5 bits), 0 for a direct-access block device.
    pub peripheral_device_type: u8,
    /// RMB: removable medium.
    pub removable: bool,
    /// VERSION: 6 = SPC-4.
    pub version: u8,
    /// HISUP: hierarchical LUN addressing.
    pub hisup: bool,
    /// TPGS: 0 none, 1 implicit, 2 explicit, 3 both ALUA.
    pub tpgs: u8,
    /// 3PC: third-party copy.
    pub third_party_copy: bool,
    /// PROTECT.
    pub protect: bool,
    /// MULTIP: more than one port.
    pub multip: bool,
    /// CMDQUE: command queuing.
    pub cmdque: bool,
    /// T10 VENDOR IDENTIFICATION.
    pub vendor: [u8; 8],
    /// PRODUCT IDENTIFICATION.
    pub product: [u8; 16],
    /// PRODUCT REVISION LEVEL.
    pub revision: [u8; 4],
    /// VERSION DESCRIPTORS (0 = unused).
    pub version_descriptors: [u16; 8],
}

impl InquiryData {
    /// Length of the emitted data.
    pub const LEN: usize = 74;

    /// Emits the data, returning its full length.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let mut o = Out::new(buf);
        o.u8((self.peripheral_qualifier << 5) | (self.peripheral_device_type & 0x1F));
        o.u8(if self.removable { 0x80 } else { 0 });
        o.u8(self.version);
        o.u8(if self.hisup { 0x10 } else { 0 } | 0x02);
        o.u8((Self::LEN - 5) as u8);
        o.u8(((self.tpgs & 0x03) << 4)
            | if self.third_party_copy { 0x08 } else { 0 }
            | if self.protect { 0x01 } else { 0 });
        o.u8(if self.multip { 0x10 } else { 0 });
        o.u8(if self.cmdque { 0x02 } else { 0 });
        o.put(&self.vendor);
        o.put(&self.product);
        o.put(&self.revision);
        o.zeros(58 - 36);
        for d in self.version_descriptors {
            o.u16(d);
        }
        o.len()
    }

    /// Parses standard INQUIRY data of at least 36 bytes.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < 36 {
            return None;
        }
        let mut version_descriptors = [0u16; 8];
        for (i, d) in version_descriptors.iter_mut().enumerate() {
            let at = 58 + 2 * i;
            if let Some(pair) = b.get(at..at + 2) {
                *d = u16::from_be_bytes([pair[0], pair[1]]);
            }
        }
        let mut vendor = [0u8; 8];
        vendor.copy_from_slice(&b[8..16]);
        let mut product = [0u8; 16];
        product.copy_from_slice(&b[16..32]);
        let mut revision = [0u8; 4];
        revision.copy_from_slice(&b[32..36]);
        Some(Self {
            peripheral_qualifier: b[0] >> 5,
            peripheral_device_type: b[0] & 0x1F,
            removable: b[1] & 0x80 != 0,
            version: b[2],
            hisup: b[3] & 0x10 != 0,
            tpgs: (b[5] >> 4) & 0x03,
            third_party_copy: b[5] & 0x08 != 0,
            protect: b[5] & 0x01 != 0,
            multip: b[6] & 0x10 != 0,
            cmdque: b[7] & 0x02 != 0,
            vendor,
            product,
            revision,
            version_descriptors,
        })
    }
}

/// VPD page 0x00: the list of supported pages.
pub fn vpd_supported_pages(pages: &[u8], buf: &mut [u8]) -> usize {
    let mut o = Out::new(buf);
    o.put(&[0, vpd::SUPPORTED_PAGES]);
    o.u16(pages.len() as u16);
    o.put(pages);
    o.len()
}

/// VPD page 0x80: the unit serial number (ASCII).
pub fn vpd_unit_serial(serial: &[u8], buf: &mut [u8]) -> usize {
    let mut o = Out::new(buf);
    o.put(&[0, vpd::UNIT_SERIAL_NUMBER]);
    o.u16(serial.len() as u16);
    o.put(serial);
    o.len()
}

/// An NAA name of a logical unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NaaId {
    /// NAA 5, IEEE Registered: 8 bytes.
    Registered([u8; 8]),
    /// NAA 6, IEEE Registered Extended: 16 bytes.
    RegisteredExtended([u8; 16]),
}

impl NaaId {
    /// An NAA 5 name from a 24-bit IEEE company id (OUI) and a 36-bit vendor-specific id.
    pub const fn registered(oui: u32, vendor_id: u64) -> Self {
        let v = (0x5u64 << 60) | (((oui & 0xFF_FFFF) as u64) << 36) | (vendor_id & 0xF_FFFF_FFFF);
        NaaId::Registered(v.to_be_bytes())
    }

    /// An NAA 6 name from an OUI, a 36-bit vendor-specific id and a 64-bit extension.
    pub const fn registered_extended(oui: u32, vendor_id: u64, extension: u64) -> Self {
        let hi = (0x6u64 << 60) | (((oui & 0xFF_FFFF) as u64) << 36) | (vendor_id & 0xF_FFFF_FFFF);
        let h = hi.to_be_bytes();
        let l = extension.to_be_bytes();
        NaaId::RegisteredExtended([
            h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], l[0], l[1], l[2], l[3], l[4], l[5],
            l[6], l[7],
        ])
    }

    /// The designator bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            NaaId::Registered(b) => b,
            NaaId::RegisteredExtended(b) => b,
        }
    }
}

impl fmt::Display for NaaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// VPD page 0x83 (device identification) designators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceIdentification<'a> {
    /// NAA designator of the logical unit.
    pub naa: NaaId,
    /// T10 vendor identification of the T10 vendor id designator.
    pub vendor: [u8; 8],
    /// Vendor-specific part of the T10 vendor id designator (product and serial).
    pub vendor_specific: &'a [u8],
    /// The relative target port the command arrived on.
    pub relative_target_port: Option<u16>,
    /// The target port group of that port.
    pub target_port_group: Option<u16>,
}

impl DeviceIdentification<'_> {
    /// Emits the page, returning its full length.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let mut o = Out::new(buf);
        o.put(&[0, vpd::DEVICE_IDENTIFICATION, 0, 0]);
        // NAA: binary, association LU, type 3.
        let naa = self.naa.as_bytes();
        o.put(&[0x01, 0x03, 0, naa.len() as u8]);
        o.put(naa);
        // T10 vendor id: ASCII, association LU, type 1.
        let len = 8 + self.vendor_specific.len().min(247);
        o.put(&[0x02, 0x01, 0, len as u8]);
        o.put(&self.vendor);
        o.put(&self.vendor_specific[..len - 8]);
        // Relative target port: binary, association target port, type 4.
        if let Some(port) = self.relative_target_port {
            o.put(&[0x01, 0x14, 0, 4, 0, 0]);
            o.u16(port);
        }
        // Target port group: binary, association target port, type 5.
        if let Some(group) = self.target_port_group {
            o.put(&[0x01, 0x15, 0, 4, 0, 0]);
            o.u16(group);
        }
        let total = o.len();
        o.set(2, &((total - 4) as u16).to_be_bytes());
        total
    }
}

/// VPD page 0xB0: block limits (SBC-4 6.6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BlockLimits {
    /// WSNZ: WRITE SAME with 0 blocks is refused.
    pub wsnz: bool,
    /// MAXIMUM COMPARE AND WRITE LENGTH, blocks.
    pub max_compare_and_write: u8,
    /// OPTIMAL TRANSFER LENGTH GRANULARITY, blocks.
    pub optimal_transfer_granularity: u16,
    /// MAXIMUM TRANSFER LENGTH, blocks (0 = no limit reported).
    pub max_transfer: u32,
    /// OPTIMAL TRANSFER LENGTH, blocks.
    pub optimal_transfer: u32,
    /// MAXIMUM PREFETCH LENGTH, blocks.
    pub max_prefetch: u32,
    /// MAXIMUM UNMAP LBA COUNT.
    pub max_unmap_lba_count: u32,
    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
    pub max_unmap_descriptors: u32,
    /// OPTIMAL UNMAP GRANULARITY.
    pub optimal_unmap_granularity: u32,
    /// UNMAP GRANULARITY ALIGNMENT, with UGAVALID.
    pub unmap_granularity_alignment: Option<u32>,
    /// MAXIMUM WRITE SAME LENGTH.
    pub max_write_same: u64,
}

impl BlockLimits {
    /// Length of the page.
    pub const LEN: usize = 64;

    /// Emits the page, returning its full length.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let mut o = Out::new(buf);
        o.put(&[0, vpd::BLOCK_LIMITS]);
        o.u16((Self::LEN - 4) as u16);
        o.u8(if self.wsnz { 1 } else { 0 });
        o.u8(self.max_compare_and_write);
        o.u16(self.optimal_transfer_granularity);
        o.u32(self.max_transfer);
        o.u32(self.optimal_transfer);
        o.u32(self.max_prefetch);
        o.u32(self.max_unmap_lba_count);
        o.u32(self.max_unmap_descriptors);
        o.u32(self.optimal_unmap_granularity);
        match self.unmap_granularity_alignment {
            Some(a) => o.u32(0x8000_0000 | (a & 0x7FFF_FFFF)),
            None => o.u32(0),
        }
        o.u64(self.max_write_same);
        o.zeros(Self::LEN - 44);
        o.len()
    }
}

/// VPD page 0xB1: block device characteristics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BlockDeviceCharacteristics {
    /// MEDIUM ROTATION RATE: 1 = non-rotating (solid state), else RPM, 0 = not reported.
    pub rotation_rate: u16,
    /// NOMINAL FORM FACTOR (4 bits), 0 = not reported.
    pub form_factor: u8,
}

impl BlockDeviceCharacteristics {
    /// Length of the page.
    pub const LEN: usize = 64;

    /// Emits the page, returning its full length.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let mut o = Out::new(buf);
        o.put(&[0, vpd::BLOCK_DEVICE_CHARACTERISTICS]);
        o.u16((Self::LEN - 4) as u16);
        o.u16(self.rotation_rate);
        o.u8(0);
        o.u8(self.form_factor & 0x0F);
        o.zeros(Self::LEN - 8);
        o.len()
    }
}

/// VPD page 0xB2: logical block provisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LogicalBlockProvisioning {
    /// THRESHOLD EXPONENT.
    pub threshold_exponent: u8,
    /// LBPU: UNMAP is supported.
    pub lbpu: bool,
    /// LBPWS: WRITE SAME (16) with UNMAP is supported.
    pub lbpws: bool,
    /// LBPWS10: WRITE SAME (10) with UNMAP is supported.
    pub lbpws10: bool,
    /// LBPRZ (3 bits in SBC-4; 1 = unmapped blocks read as zeros).
    pub lbprz: u8,
    /// ANC_SUP: anchored state supported.
    pub anc_sup: bool,
    /// PROVISIONING TYPE: 0 not reported/full, 1 resource, 2 thin.
    pub provisioning_type: u8,
}

impl LogicalBlockProvisioning {
    /// Length of the page.
    pub const LEN: usize = 8;

    /// Emits the page, returning its full length.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let mut o = Out::new(buf);
        o.put(&[0, vpd::LOGICAL_BLOCK_PROVISIONING]);
        o.u16((Self::LEN - 4) as u16);
        o.u8(self.threshold_exponent);
        o.u8(if self.lbpu { 0x80 } else { 0 }
            | if self.lbpws { 0x40 } else { 0 }
            | if self.lbpws10 { 0x20 } else { 0 }
            | ((self.lbprz & 0x07) << 2)
            | if self.anc_sup { 0x02 } else { 0 });
        o.u8(self.provisioning_type & 0x07);
        o.u8(0);
        o.len()
    }
}

/// READ CAPACITY (10) data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReadCapacity10Data {
    /// RETURNED LOGICAL BLOCK ADDRESS: the last LBA, or `u32::MAX` if it does not fit.
    pub last_lba: u32,
    /// LOGICAL BLOCK LENGTH IN BYTES.
    pub block_len: u32,
}

impl ReadCapacity10Data {
    /// The data for a device of `block_count` blocks of `block_len` bytes (saturating to
    /// `u32::MAX`, which tells the initiator to use READ CAPACITY (16)).
    pub fn for_device(block_count: u64, block_len: u32) -> Self {
        let last = block_count.saturating_sub(1);
        Self {
            last_lba: u32::try_from(last).unwrap_or(u32::MAX),
            block_len,
        }
    }

    /// Emits the 8 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let mut o = Out::new(buf);
        o.u32(self.last_lba);
        o.u32(self.block_len);
        o.len()
    }

    /// Parses 8 bytes.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b = b.get(..8)?;
        Some(Self {
            last_lba: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            block_len: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

/// READ CAPACITY (16) data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReadCapacity16Data {
    /// RETURNED LOGICAL BLOCK ADDRESS: the last LBA.
    pub last_lba: u64,
    /// LOGICAL BLOCK LENGTH IN BYTES.
    pub block_len: u32,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT.
    pub lbppbe: u8,
    /// LBPME: logical block provisioning management enabled.
    pub lbpme: bool,
    /// LBPRZ: unmapped blocks read as zeros.
    pub lbprz: bool,
    /// LOWEST ALIGNED LOGICAL BLOCK ADDRESS (14 bits).
    pub lowest_aligned_lba: u16,
}

impl ReadCapacity16Data {
    /// Length of the data.
    pub const LEN: usize = 32;

    /// Emits the 32 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let mut o = Out::new(buf);
        o.u64(self.last_lba);
        o.u32(self.block_len);
        o.u8(0);
        o.u8(self.lbppbe & 0x0F);
        let aligned = self.lowest_aligned_lba & 0x3FFF;
        o.u8(if self.lbpme { 0x80 } else { 0 }
            | if self.lbprz { 0x40 } else { 0 }
            | (aligned >> 8) as u8);
        o.u8(aligned as u8);
        o.zeros(16);
        o.len()
    }

    /// Parses at least 16 bytes.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b = b.get(..16)?;
        let mut lba = [0u8; 8];
        lba.copy_from_slice(&b[..8]);
        Some(Self {
            last_lba: u64::from_be_bytes(lba),
            block_len: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            lbppbe: b[13] & 0x0F,
            lbpme: b[14] & 0x80 != 0,
            lbprz: b[14] & 0x40 != 0,
            lowest_aligned_lba: u16::from_be_bytes([b[14] & 0x3F, b[15]]),
        })
    }
}

/// Mode page codes.
pub mod mode_page {
    /// Read-write error recovery.
    pub const RW_ERROR_RECOVERY: u8 = 0x01;
    /// Caching.
    pub const CACHING: u8 = 0x08;
    /// Control.
    pub const CONTROL: u8 = 0x0A;
    /// Return all pages.
    pub const ALL: u8 = 0x3F;
}

/// The mode parameters a disk reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ModeParameters {
    /// WCE (caching page): a volatile write cache is enabled.
    pub wce: bool,
    /// RCD (caching page): the read cache is disabled.
    pub rcd: bool,
    /// D_SENSE (control page): descriptor-format sense data.
    pub d_sense: bool,
    /// Device-specific parameter WP: the medium is write protected.
    pub write_protect: bool,
    /// Device-specific parameter DPOFUA: DPO and FUA are supported.
    pub dpofua: bool,
    /// AWRE/ARRE (read-write error recovery page).
    pub auto_reallocate: bool,
    /// TAS (control page).
    pub tas: bool,
}

/// Which values MODE SENSE reports (the PC field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PageControl {
    /// Current values.
    Current,
    /// Changeable values: a mask of the bits MODE SELECT may change.
    Changeable,
    /// Default values.
    Default,
}

/// The mask of changeable bits: only D_SENSE.
pub const CHANGEABLE: ModeParameters = ModeParameters {
    wce: false,
    rcd: false,
    d_sense: true,
    write_protect: false,
    dpofua: false,
    auto_reallocate: false,
    tas: false,
};

/// Emits mode page `page` (one of [`mode_page`]'s, not `ALL`) for `params`, returning its
/// length, or `None` for a page this crate does not have.
pub fn emit_mode_page(page: u8, params: &ModeParameters, o: &mut Out<'_>) -> Option<usize> {
    let start = o.len();
    match page {
        mode_page::RW_ERROR_RECOVERY => {
            o.put(&[page, 0x0A]);
            o.u8(if params.auto_reallocate { 0xC0 } else { 0 });
            o.zeros(9);
        }
        mode_page::CACHING => {
            o.put(&[page, 0x12]);
            o.u8(if params.wce { 0x04 } else { 0 } | if params.rcd { 0x01 } else { 0 });
            o.zeros(17);
        }
        mode_page::CONTROL => {
            o.put(&[page, 0x0A]);
            o.u8(if params.d_sense { 0x04 } else { 0 });
            // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering allowed.
            o.u8(0x10);
            o.u8(0);
            o.u8(if params.tas { 0x40 } else { 0 });
            o.zeros(2);
            // BUSY TIMEOUT PERIOD: unlimited.
            o.u16(0xFFFF);
            o.zeros(2);
        }
        _ => return None,
    }
    Some(o.len() - start)
}

/// The pages [`emit_mode_page`] knows, in the order MODE SENSE returns them.
pub const MODE_PAGES: [u8; 3] = [
    mode_page::RW_ERROR_RECOVERY,
    mode_page::CACHING,
    mode_page::CONTROL,
];

/// A MODE SENSE (6) or (10) response: header, optional block descriptor, pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSenseData {
    /// The 10-byte form.
    pub ten: bool,
    /// A long (16-byte) block descriptor (10-byte form with LLBAA).
    pub long_lba: bool,
    /// Include the block descriptor (DBD clear).
    pub block_descriptor: bool,
    /// Blocks of the device.
    pub block_count: u64,
    /// Block length.
    pub block_len: u32,
    /// The page wanted, or [`mode_page::ALL`].
    pub page: u8,
    /// Which values.
    pub control: PageControl,
}

impl ModeSenseData {
    /// Emits the response for current/default values `params`, returning its full length, or
    /// `None` if the page is unknown.
    pub fn emit(&self, params: &ModeParameters, buf: &mut [u8]) -> Option<usize> {
        let values = match self.control {
            PageControl::Changeable => CHANGEABLE,
            PageControl::Default => ModeParameters {
                d_sense: false,
                ..*params
            },
            PageControl::Current => *params,
        };
        let mut o = Out::new(buf);
        let header_len = if self.ten { 8 } else { 4 };
        let long = self.ten && self.long_lba;
        let bd_len: usize = match (self.block_descriptor, long) {
            (false, _) => 0,
            (true, false) => 8,
            (true, true) => 16,
        };
        let device_specific =
            if params.write_protect { 0x80 } else { 0 } | if params.dpofua { 0x10 } else { 0 };
        if self.ten {
            o.put(&[0, 0, 0, device_specific, u8::from(long), 0]);
            o.u16(bd_len as u16);
        } else {
            o.put(&[0, 0, device_specific, bd_len as u8]);
        }
        match bd_len {
            8 => {
                o.u32(u32::try_from(self.block_count).unwrap_or(u32::MAX));
                o.u8(0);
                o.put(&self.block_len.to_be_bytes()[1..]);
            }
            16 => {
                o.u64(self.block_count);
                o.u32(0);
                o.u32(self.block_len);
            }
            _ => {}
        }
        if self.page == mode_page::ALL {
            for page in MODE_PAGES {
                emit_mode_page(page, &values, &mut o)?;
            }
        } else {
            emit_mode_page(self.page, &values, &mut o)?;
        }
        let total = o.len();
        if self.ten {
            o.set(
                0,
                &(total.saturating_sub(2).min(0xFFFF) as u16).to_be_bytes(),
            );
        } else {
            o.set(0, &[total.saturating_sub(1).min(0xFF) as u8]);
        }
        debug_assert!(total >= header_len);
        Some(total)
    }
}

/// The 8-byte LUN field for LU number `lun`: peripheral addressing below 256, flat space
/// addressing below 16384, else the number itself as the 8 bytes.
pub fn encode_lun(lun: u64) -> [u8; 8] {
    if lun < 256 {
        [0, lun as u8, 0, 0, 0, 0, 0, 0]
    } else if lun < 0x4000 {
        [0x40 | (lun >> 8) as u8, lun as u8, 0, 0, 0, 0, 0, 0]
    } else {
        lun.to_be_bytes()
    }
}

/// The LU number of an 8-byte LUN field encoded by [`encode_lun`].
pub fn decode_lun(field: [u8; 8]) -> u64 {
    match field[0] >> 6 {
        0 if field[2..] == [0; 6] => u64::from(field[1]),
        1 if field[2..] == [0; 6] => (u64::from(field[0] & 0x3F) << 8) | u64::from(field[1]),
        _ => u64::from_be_bytes(field),
    }
}

/// REPORT LUNS parameter data for `luns`.
pub fn report_luns(luns: &[u64], buf: &mut [u8]) -> usize {
    let mut o = Out::new(buf);
    o.u32((luns.len() as u32).saturating_mul(8));
    o.u32(0);
    for lun in luns {
        o.put(&encode_lun(*lun));
    }
    o.len()
}

/// The one-command form of REPORT SUPPORTED OPERATION CODES for `spec` (or "not supported"
/// when `None`), with a command timeouts descriptor if `rctd`.
pub fn supported_opcode_one(spec: Option<&CommandSpec>, rctd: bool, buf: &mut [u8]) -> usize {
    let mut o = Out::new(buf);
    match spec {
        None => {
            o.put(&[0, 0x01, 0, 0]);
        }
        Some(spec) => {
            o.u8(0);
            o.u8(if rctd { 0x80 } else { 0 } | 0x03);
            o.u16(u16::from(spec.cdb_len));
            o.put(&spec.usage[..usize::from(spec.cdb_len)]);
            if rctd {
                o.put(&[0, 0x0A, 0, 0]);
                o.u32(0);
                o.u32(0);
            }
        }
    }
    o.len()
}

/// The all-commands form of REPORT SUPPORTED OPERATION CODES, for every command of
/// [`COMMANDS`] that `supported` accepts.
pub fn supported_opcodes_all(
    supported: &dyn Fn(&CommandSpec) -> bool,
    rctd: bool,
    buf: &mut [u8],
) -> usize {
    let mut o = Out::new(buf);
    o.u32(0);
    for spec in COMMANDS.iter().filter(|s| supported(s)) {
        o.u8(spec.opcode);
        o.u8(0);
        o.u16(u16::from(spec.service_action.unwrap_or(0)));
        o.u8(0);
        o.u8(if rctd { 0x02 } else { 0 } | u8::from(spec.service_action.is_some()));
        o.u16(u16::from(spec.cdb_len));
        if rctd {
            o.put(&[0, 0x0A, 0, 0]);
            o.u32(0);
            o.u32(0);
        }
    }
    let total = o.len();
    o.set(0, &((total - 4) as u32).to_be_bytes());
    total
}

/// One LBA status descriptor of GET LBA STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LbaStatusDescriptor {
    /// First LBA of the extent.
    pub lba: u64,
    /// Blocks in the extent.
    pub blocks: u32,
    /// PROVISIONING STATUS: 0 mapped (or unknown), 1 deallocated, 2 anchored.
    pub status: u8,
}

/// GET LBA STATUS parameter data.
pub fn lba_status(descriptors: &[LbaStatusDescriptor], buf: &mut [u8]) -> usize {
    let mut o = Out::new(buf);
    o.u32(4u32.saturating_add((descriptors.len() as u32).saturating_mul(16)));
    o.u32(0);
    for d in descriptors {
        o.u64(d.lba);
        o.u32(d.blocks);
        o.u8(d.status & 0x0F);
        o.zeros(3);
    }
    o.len()
}

/// An asymmetric access state of a target port group (SPC-4 5.16.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AccessState {
    /// Active/optimized.
    ActiveOptimized,
    /// Active/non-optimized.
    ActiveNonOptimized,
    /// Standby.
    Standby,
    /// Unavailable.
    Unavailable,
    /// Offline.
    Offline,
    /// Transitioning.
    Transitioning,
}

impl AccessState {
    /// The 4-bit code.
    pub const fn code(self) -> u8 {
        match self {
            AccessState::ActiveOptimized => 0x0,
            AccessState::ActiveNonOptimized => 0x1,
            AccessState::Standby => 0x2,
            AccessState::Unavailable => 0x3,
            AccessState::Offline => 0xE,
            AccessState::Transitioning => 0xF,
        }
    }

    /// The state of a 4-bit code, if defined (LBA dependent is not supported).
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code & 0x0F {
            0x0 => AccessState::ActiveOptimized,
            0x1 => AccessState::ActiveNonOptimized,
            0x2 => AccessState::Standby,
            0x3 => AccessState::Unavailable,
            0xE => AccessState::Offline,
            0xF => AccessState::Transitioning,
            _ => return None,
        })
    }

    /// The SUPPORTED bits of a descriptor for a group that may enter these states
    /// (T_SUP, O_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP).
    pub const ALL_SUPPORTED: u8 = 0x80 | 0x40 | 0x08 | 0x04 | 0x02 | 0x01;
}

/// One target port group descriptor of REPORT TARGET PORT GROUPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetPortGroupDescriptor<'a> {
    /// PREF.
    pub preferred: bool,
    /// ASYMMETRIC ACCESS STATE.
    pub state: AccessState,
    /// The supported-states bits.
    pub supported: u8,
    /// TARGET PORT GROUP.
    pub id: u16,
    /// STATUS CODE: 0 none, 1 altered by SET TARGET PORT GROUPS, 2 altered implicitly.
    pub status_code: u8,
    /// RELATIVE TARGET PORT IDENTIFIERs of the group.
    pub ports: &'a [u16],
}

/// REPORT TARGET PORT GROUPS parameter data; `extended` adds the extended header with
/// `implicit_transition_secs`.
pub fn report_target_port_groups(
    groups: &[TargetPortGroupDescriptor<'_>],
    extended: bool,
    implicit_transition_secs: u8,
    buf: &mut [u8],
) -> usize {
    let mut o = Out::new(buf);
    o.u32(0);
    if extended {
        o.put(&[0x10, implicit_transition_secs, 0, 0]);
    }
    for g in groups {
        o.u8(if g.preferred { 0x80 } else { 0 } | g.state.code());
        o.u8(g.supported);
        o.u16(g.id);
        o.u8(0);
        o.u8(g.status_code);
        o.u8(0);
        o.u8(g.ports.len().min(255) as u8);
        for port in g.ports.iter().take(255) {
            o.u16(0);
            o.u16(*port);
        }
    }
    let total = o.len();
    o.set(0, &((total - 4) as u32).to_be_bytes());
    total
}

/// Why response data could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ParseError {
    /// The data is shorter than its header or a length field says.
    Truncated,
    /// The data is not the page or format asked for.
    WrongPage,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Truncated => "response data truncated",
            ParseError::WrongPage => "response data is not the expected page",
        })
    }
}

impl core::error::Error for ParseError {}

fn be_at(b: &[u8], at: usize, n: usize) -> Result<u64, ParseError> {
    let bytes = b.get(at..at + n).ok_or(ParseError::Truncated)?;
    Ok(bytes.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}

/// The body of VPD page `page` in `data` (after the 4-byte header, cut to the page length).
pub fn vpd_body(data: &[u8], page: u8) -> Result<&[u8], ParseError> {
    if data.len() < 4 {
        return Err(ParseError::Truncated);
    }
    if data[1] != page {
        return Err(ParseError::WrongPage);
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    data.get(4..4 + len).ok_or(ParseError::Truncated)
}

/// One designation descriptor of VPD page 0x83.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Designator<'a> {
    /// PROTOCOL IDENTIFIER (valid if `piv`).
    pub protocol: u8,
    /// CODE SET: 1 binary, 2 ASCII, 3 UTF-8.
    pub code_set: u8,
    /// PIV.
    pub piv: bool,
    /// ASSOCIATION: 0 logical unit, 1 target port, 2 target device.
    pub association: u8,
    /// DESIGNATOR TYPE: 1 T10 vendor id, 2 EUI-64, 3 NAA, 4 relative target port, 5 target
    /// port group, 8 SCSI name string.
    pub designator_type: u8,
    /// The designator bytes.
    pub value: &'a [u8],
}

/// The designators of VPD page 0x83 data. Stops with an error at a truncated descriptor.
pub fn designators(
    data: &[u8],
) -> Result<impl Iterator<Item = Result<Designator<'_>, ParseError>>, ParseError> {
    let mut rest = vpd_body(data, vpd::DEVICE_IDENTIFICATION)?;
    Ok(core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let item = match rest {
            [b0, b1, _, len, tail @ ..] if tail.len() >= usize::from(*len) => {
                let len = usize::from(*len);
                let d = Designator {
                    protocol: b0 >> 4,
                    code_set: b0 & 0x0F,
                    piv: b1 & 0x80 != 0,
                    association: (b1 >> 4) & 0x03,
                    designator_type: b1 & 0x0F,
                    value: &tail[..len],
                };
                rest = &tail[len..];
                Ok(d)
            }
            _ => {
                rest = &[];
                Err(ParseError::Truncated)
            }
        };
        Some(item)
    }))
}

impl BlockLimits {
    /// Parses VPD page 0xB0.
    pub fn parse(data: &[u8]) -> Result<Self, ParseError> {
        let b = vpd_body(data, vpd::BLOCK_LIMITS)?;
        // Offsets below are relative to the page start; the body starts at 4.
        let at = |o: usize, n: usize| be_at(b, o - 4, n);
        let alignment = at(32, 4)? as u32;
        Ok(Self {
            wsnz: at(4, 1)? & 1 != 0,
            max_compare_and_write: at(5, 1)? as u8,
            optimal_transfer_granularity: at(6, 2)? as u16,
            max_transfer: at(8, 4)? as u32,
            optimal_transfer: at(12, 4)? as u32,
            max_prefetch: at(16, 4)? as u32,
            max_unmap_lba_count: at(20, 4)? as u32,
            max_unmap_descriptors: at(24, 4)? as u32,
            optimal_unmap_granularity: at(28, 4)? as u32,
            unmap_granularity_alignment: (alignment & 0x8000_0000 != 0)
                .then_some(alignment & 0x7FFF_FFFF),
            max_write_same: at(36, 8)?,
        })
    }
}

impl LogicalBlockProvisioning {
    /// Parses VPD page 0xB2.
    pub fn parse(data: &[u8]) -> Result<Self, ParseError> {
        let b = vpd_body(data, vpd::LOGICAL_BLOCK_PROVISIONING)?;
        let flags = *b.get(1).ok_or(ParseError::Truncated)?;
        Ok(Self {
            threshold_exponent: b[0],
            lbpu: flags & 0x80 != 0,
            lbpws: flags & 0x40 != 0,
            lbpws10: flags & 0x20 != 0,
            lbprz: (flags >> 2) & 0x07,
            anc_sup: flags & 0x02 != 0,
            provisioning_type: b.get(2).ok_or(ParseError::Truncated)? & 0x07,
        })
    }
}

/// The LU numbers of REPORT LUNS parameter data (as far as the data reaches).
pub fn parse_report_luns(data: &[u8]) -> Result<impl Iterator<Item = u64> + '_, ParseError> {
    let len = be_at(data, 0, 4)? as usize;
    let list = data.get(8..).ok_or(ParseError::Truncated)?;
    let list = &list[..len.min(list.len())];
    Ok(list.chunks_exact(8).map(|c| {
        let mut f = [0u8; 8];
        f.copy_from_slice(c);
        decode_lun(f)
    }))
}

/// The descriptors of GET LBA STATUS parameter data (as far as the data reaches).
pub fn parse_lba_status(
    data: &[u8],
) -> Result<impl Iterator<Item = LbaStatusDescriptor> + '_, ParseError> {
    let len = be_at(data, 0, 4)? as usize;
    let list = data.get(8..).ok_or(ParseError::Truncated)?;
    let list = &list[..len.saturating_sub(4).min(list.len())];
    Ok(list.chunks_exact(16).map(|d| LbaStatusDescriptor {
        lba: d[..8].iter().fold(0u64, |a, x| (a << 8) | u64::from(*x)),
        blocks: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
        status: d[12] & 0x0F,
    }))
}

/// One target port group of REPORT TARGET PORT GROUPS data, as parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedPortGroup<'a> {
    /// PREF.
    pub preferred: bool,
    /// ASYMMETRIC ACCESS STATE code (see [`AccessState::from_code`]).
    pub state_code: u8,
    /// The supported-states bits.
    pub supported: u8,
    /// TARGET PORT GROUP.
    pub id: u16,
    /// STATUS CODE.
    pub status_code: u8,
    ports: &'a [u8],
}

impl ParsedPortGroup<'_> {
    /// The relative target port identifiers of the group.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports
            .chunks_exact(4)
            .map(|p| u16::from_be_bytes([p[2], p[3]]))
    }
}

/// The port groups of REPORT TARGET PORT GROUPS data in either format, with the implicit
/// transition time of the extended header (if present).
pub fn parse_target_port_groups(
    data: &[u8],
) -> Result<
    (
        Option<u8>,
        impl Iterator<Item = Result<ParsedPortGroup<'_>, ParseError>>,
    ),
    ParseError,
> {
    let len = be_at(data, 0, 4)? as usize;
    let body = data.get(4..).ok_or(ParseError::Truncated)?;
    let body = &body[..len.min(body.len())];
    let (transition, mut rest) = match body {
        [format, secs, _, _, tail @ ..] if format & 0x70 == 0x10 => (Some(*secs), tail),
        _ => (None, body),
    };
    Ok((
        transition,
        core::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let item = match rest {
                [b0, b1, id0, id1, _, status, _, count, tail @ ..]
                    if tail.len() >= 4 * usize::from(*count) =>
                {
                    let n = 4 * usize::from(*count);
                    let g = ParsedPortGroup {
                        preferred: b0 & 0x80 != 0,
                        state_code: b0 & 0x0F,
                        supported: *b1,
                        id: u16::from_be_bytes([*id0, *id1]),
                        status_code: *status,
                        ports: &tail[..n],
                    };
                    rest = &tail[n..];
                    Ok(g)
                }
                _ => {
                    rest = &[];
                    Err(ParseError::Truncated)
                }
            };
            Some(item)
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_never_writes_past_the_end() {
        let mut buf = [0u8; 3];
        let mut o = Out::new(&mut buf);
        o.u64(0x0102_0304_0506_0708);
        assert_eq!(o.len(), 8);
        o.set(2, &[9, 9, 9]);
        assert_eq!(buf, [1, 2, 9]);
    }

    #[test]
    fn luns_encode_and_decode() {
        for lun in [0u64, 1, 255, 256, 0x3FFF, 0x4000, u64::MAX] {
            assert_eq!(decode_lun(encode_lun(lun)), lun);
        }
        assert_eq!(encode_lun(300), [0x41, 0x2C, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn inquiry_round_trips() {
        let data = InquiryData {
            peripheral_qualifier: 0,
            peripheral_device_type: 0,
            removable: false,
            version: 6,
            hisup: true,
            tpgs: 1,
            third_party_copy: false,
            protect: false,
            multip: true,
            cmdque: true,
            vendor: ascii_field("VENDOR"),
            product: ascii_field("PRODUCT"),
            revision: ascii_field("1.0"),
            version_descriptors: [0x00A0, 0x0460, 0x04C0, 0, 0, 0, 0, 0],
        };
        let mut buf = [0u8; 96];
        assert_eq!(data.emit(&mut buf), InquiryData::LEN);
        assert_eq!(buf[4] as usize, InquiryData::LEN - 5);
        assert_eq!(InquiryData::parse(&buf[..InquiryData::LEN]), Some(data));
    }

    #[test]
    fn read_capacity_round_trips() {
        let d = ReadCapacity16Data {
            last_lba: 1 << 40,
            block_len: 4096,
            lbppbe: 3,
            lbpme: true,
            lbprz: true,
            lowest_aligned_lba: 0x1234,
        };
        let mut buf = [0u8; 32];
        assert_eq!(d.emit(&mut buf), 32);
        assert_eq!(ReadCapacity16Data::parse(&buf), Some(d));
        let r = ReadCapacity10Data::for_device(1 << 33, 512);
        assert_eq!(r.last_lba, u32::MAX);
    }
}
