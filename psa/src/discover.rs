//! Discovery and claiming: scan the targets of each adapter for LUNs, recognise one device on
//! several paths by its VPD 0x83 identity, name paths and devices, and pick an SATP and a PSP
//! by claim rules.

use core::fmt::{self, Write as _};

use block::{DeviceFeatures, Geometry, Instant, MemAddr, Memory, SgList, Tag};
use scsi::cdb::CdbRepr;
use scsi::response::{
    self, BlockLimits, InquiryData, ReadCapacity16Data, parse_report_luns,
    parse_target_port_groups, vpd,
};
use scsi::{
    AccessState, Command, CommandCompletion, InitiatorId, NaaId, Nexus, SenseKey, Transport,
    run_to_completion,
};

use crate::path::{Path, PathName, PathState};

/// LUNs scanned per target at most (ESXi's limit).
pub const MAX_LUNS_PER_TARGET: u16 = 256;
/// The scratch buffer discovery needs, bytes.
pub const SCRATCH_LEN: u32 = 2048;

/// One target an adapter reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Target {
    /// The target number in path names (`Tn`).
    pub number: u16,
    /// The relative target port identifier to address.
    pub port: u16,
}

/// An adapter (HBA) and the targets it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adapter<'a> {
    /// The adapter number (`vmhbaA`).
    pub number: u16,
    /// Its initiator port.
    pub initiator: InitiatorId,
    /// The targets it reaches.
    pub targets: &'a [Target],
}

/// What to scan and where discovery may put response data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanConfig<'a> {
    /// The adapters.
    pub adapters: &'a [Adapter<'a>],
    /// `Disk.MaxLUN`: LUNs numbered at or above it are ignored (at most 256).
    pub max_lun: u16,
    /// A buffer of [`SCRATCH_LEN`] bytes in the memory lent to the scan.
    pub scratch: MemAddr,
    /// Polls allowed per command.
    pub max_polls: usize,
}

/// A device name, `naa.<hex>`.
pub type DeviceName = heapless::String<40>;

/// A device found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredDevice<const P: usize> {
    /// The NAA identifier (VPD 0x83).
    pub naa: NaaId,
    /// `naa.<hex>`.
    pub name: DeviceName,
    /// T10 vendor.
    pub vendor: [u8; 8],
    /// Product (model).
    pub product: [u8; 16],
    /// TPGS of INQUIRY: nonzero if the device supports ALUA.
    pub tpgs: u8,
    /// The geometry the device reports.
    pub geometry: Geometry,
    /// Its paths, in discovery order.
    pub paths: heapless::Vec<Path, P>,
}

impl<const P: usize> DiscoveredDevice<P> {
    /// The vendor, trimmed.
    pub fn vendor_str(&self) -> &str {
        trimmed(&self.vendor)
    }

    /// The model, trimmed.
    pub fn model_str(&self) -> &str {
        trimmed(&self.product)
    }
}

fn trimmed(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes).unwrap_or("").trim_end()
}

/// Why a scan failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ScanError {
    /// The scratch buffer is not mapped in the memory lent to the scan.
    Scratch,
    /// More devices than the inventory holds.
    TooManyDevices,
    /// More paths to one device than it holds.
    TooManyPaths,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScanError::Scratch => "scratch buffer not mapped",
            ScanError::TooManyDevices => "too many devices",
            ScanError::TooManyPaths => "too many paths to a device",
        })
    }
}

impl core::error::Error for ScanError {}

struct Scanner<'t, 'm, T: ?Sized> {
    transport: &'t mut T,
    memory: &'m mut dyn Memory,
    now: Instant,
    scratch: MemAddr,
    max_polls: usize,
    tag: u64,
}

impl<T: Transport + ?Sized> Scanner<'_, '_, T> {
    /// Runs `repr` on `nexus` with a data-in buffer of `len`, retrying past unit attentions;
    /// returns the completion (data in the scratch buffer) or `None` if the path failed.
    fn run(&mut self, nexus: Nexus, repr: &CdbRepr, len: u32) -> Option<CommandCompletion> {
        for _ in 0..6 {
            self.tag = self.tag.wrapping_add(1);
            let mut command = Command::new(Tag(self.tag), nexus, repr);
            if len > 0 {
                command = command.data_in(SgList::single(self.scratch, len).ok()?);
            }
            let (done, at) = run_to_completion(
                self.transport,
                self.memory,
                self.now,
                command,
                self.max_polls,
                &mut |_| {},
            )
            .ok()?;
            self.now = self.now.max(at);
            if done
                .sense_repr()
                .is_some_and(|s| s.key == SenseKey::UNIT_ATTENTION)
            {
                continue;
            }
            return Some(done);
        }
        None
    }

    fn data(&self, len: usize) -> Option<&[u8]> {
        self.memory.slice(self.scratch, len).ok()
    }
}

/// Scans every target of every adapter: REPORT LUNS, then for each LUN below `max_lun`
/// INQUIRY (standard and VPD 0x83), and for a device seen the first time READ CAPACITY(16),
/// VPD 0xB0 and, if it supports ALUA, REPORT TARGET PORT GROUPS to set its paths' states.
/// Paths are grouped into devices by NAA identifier. Returns the devices and the time the
/// scan ended.
pub fn scan<T, const D: usize, const P: usize>(
    transport: &mut T,
    memory: &mut dyn Memory,
    now: Instant,
    config: &ScanConfig<'_>,
) -> Result<(heapless::Vec<DiscoveredDevice<P>, D>, Instant), ScanError>
where
    T: Transport + ?Sized,
{
    if memory.slice(config.scratch, SCRATCH_LEN as usize).is_err() {
        return Err(ScanError::Scratch);
    }
    let mut s = Scanner {
        transport,
        memory,
        now,
        scratch: config.scratch,
        max_polls: config.max_polls,
        tag: 0x5CA0_0000,
    };
    let mut devices: heapless::Vec<DiscoveredDevice<P>, D> = heapless::Vec::new();
    let max_lun = u64::from(config.max_lun.min(MAX_LUNS_PER_TARGET));
    for adapter in config.adapters {
        for target in adapter.targets {
            let lun0 = Nexus {
                initiator: adapter.initiator,
                target_port: target.port,
                lun: 0,
            };
            let report = CdbRepr::ReportLuns {
                select_report: 0,
                allocation_length: SCRATCH_LEN,
            };
            let Some(done) = s.run(lun0, &report, SCRATCH_LEN) else {
                continue;
            };
            if !done.is_good() {
                continue;
            }
            let mut luns: heapless::Vec<u64, 256> = heapless::Vec::new();
            if let Some(data) = s.data(SCRATCH_LEN as usize)
                && let Ok(list) = parse_report_luns(data)
            {
                for lun in list.filter(|l| *l < max_lun) {
                    let _ = luns.push(lun);
                }
            }
            for lun in luns {
                let nexus = Nexus { lun, ..lun0 };
                probe_lun(&mut s, &mut devices, adapter, target, nexus)?;
            }
        }
    }
    for device in devices.iter_mut() {
        // The path that found the device may be passive (an active/passive array answers
        // NOT READY there): read the capacity on the first path that answers.
        for index in 0..device.paths.len() {
            if device.geometry.block_count != 0 {
                break;
            }
            if let Some(geometry) = read_geometry(&mut s, device.paths[index].nexus) {
                device.geometry = geometry;
            }
        }
        if device.tpgs != 0 {
            read_port_groups(&mut s, device);
        }
    }
    Ok((devices, s.now))
}

fn probe_lun<T: Transport + ?Sized, const D: usize, const P: usize>(
    s: &mut Scanner<'_, '_, T>,
    devices: &mut heapless::Vec<DiscoveredDevice<P>, D>,
    adapter: &Adapter<'_>,
    target: &Target,
    nexus: Nexus,
) -> Result<(), ScanError> {
    let inquiry = CdbRepr::Inquiry {
        evpd: false,
        page_code: 0,
        allocation_length: 96,
    };
    let Some(done) = s.run(nexus, &inquiry, 96) else {
        return Ok(());
    };
    let Some(std) = done
        .is_good()
        .then(|| s.data(96).and_then(InquiryData::parse))
        .flatten()
    else {
        return Ok(());
    };
    if std.peripheral_qualifier != 0 || std.peripheral_device_type != 0 {
        return Ok(());
    }
    let vpd83 = CdbRepr::Inquiry {
        evpd: true,
        page_code: vpd::DEVICE_IDENTIFICATION,
        allocation_length: 255,
    };
    let Some(done) = s.run(nexus, &vpd83, 255) else {
        return Ok(());
    };
    if !done.is_good() {
        return Ok(());
    }
    let mut naa = None;
    let mut group = None;
    if let Some(data) = s.data(255)
        && let Ok(list) = response::designators(data)
    {
        for d in list.flatten() {
            match (d.association, d.designator_type, d.value.len()) {
                (0, 3, 8) => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(d.value);
                    naa = Some(NaaId::Registered(b));
                }
                (0, 3, 16) => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(d.value);
                    naa = Some(NaaId::RegisteredExtended(b));
                }
                (1, 5, 4) => group = Some(u16::from_be_bytes([d.value[2], d.value[3]])),
                _ => {}
            }
        }
    }
    let Some(naa) = naa else {
        return Ok(());
    };
    let name = PathName {
        adapter: adapter.number,
        channel: 0,
        target: target.number,
        lun: nexus.lun,
    };
    let mut path = Path::new(name, nexus, PathState::Active);
    path.group = group;
    if let Some(device) = devices.iter_mut().find(|d| d.naa == naa) {
        return device.paths.push(path).map_err(|_| ScanError::TooManyPaths);
    }
    let geometry = read_geometry(s, nexus).unwrap_or(Geometry {
        block_size: 512,
        block_count: 0,
        max_transfer_blocks: 0xFFFF,
        queue_depth: 64,
        features: DeviceFeatures::empty(),
    });
    let mut device_name = DeviceName::new();
    let _ = device_name.push_str("naa.");
    for b in naa.as_bytes() {
        let _ = write!(device_name, "{b:02x}");
    }
    let mut paths = heapless::Vec::new();
    paths.push(path).map_err(|_| ScanError::TooManyPaths)?;
    devices
        .push(DiscoveredDevice {
            naa,
            name: device_name,
            vendor: std.vendor,
            product: std.product,
            tpgs: std.tpgs,
            geometry,
            paths,
        })
        .map_err(|_| ScanError::TooManyDevices)
}

/// READ CAPACITY(16) and the block limits page on `nexus`; `None` if the capacity is not
/// readable there.
fn read_geometry<T: Transport + ?Sized>(
    s: &mut Scanner<'_, '_, T>,
    nexus: Nexus,
) -> Option<Geometry> {
    let mut geometry = Geometry {
        block_size: 512,
        block_count: 0,
        max_transfer_blocks: 0xFFFF,
        queue_depth: 64,
        features: DeviceFeatures::empty(),
    };
    let rc16 = CdbRepr::ReadCapacity16 {
        lba: 0,
        pmi: false,
        allocation_length: 32,
    };
    if !s.run(nexus, &rc16, 32).is_some_and(|c| c.is_good()) {
        return None;
    }
    {
        let data = s.data(32).and_then(ReadCapacity16Data::parse)?;
        geometry.block_size = data.block_len;
        geometry.block_count = data.last_lba.saturating_add(1);
        if data.lbpme {
            geometry.features |= DeviceFeatures::UNMAP | DeviceFeatures::WRITE_ZEROES;
        }
        if data.lbprz {
            geometry.features |= DeviceFeatures::UNMAP_READS_ZERO;
        }
    }
    let b0 = CdbRepr::Inquiry {
        evpd: true,
        page_code: vpd::BLOCK_LIMITS,
        allocation_length: 64,
    };
    if s.run(nexus, &b0, 64).is_some_and(|c| c.is_good())
        && let Some(limits) = s.data(64).and_then(|d| BlockLimits::parse(d).ok())
    {
        if limits.max_transfer != 0 {
            geometry.max_transfer_blocks = limits.max_transfer;
        }
        if limits.max_compare_and_write != 0 {
            geometry.features |= DeviceFeatures::COMPARE_AND_WRITE;
        }
    }
    Some(geometry)
}

fn read_port_groups<T: Transport + ?Sized, const P: usize>(
    s: &mut Scanner<'_, '_, T>,
    device: &mut DiscoveredDevice<P>,
) {
    let rtpg = CdbRepr::ReportTargetPortGroups {
        extended: true,
        allocation_length: SCRATCH_LEN,
    };
    let Some(first) = device.paths.first().map(|p| p.nexus) else {
        return;
    };
    if !s
        .run(first, &rtpg, SCRATCH_LEN)
        .is_some_and(|c| c.is_good())
    {
        return;
    }
    let Some(data) = s.data(SCRATCH_LEN as usize) else {
        return;
    };
    let Ok((_, groups)) = parse_target_port_groups(data) else {
        return;
    };
    for g in groups.flatten() {
        let Some(state) = AccessState::from_code(g.state_code) else {
            continue;
        };
        for port in g.ports() {
            for path in device
                .paths
                .iter_mut()
                .filter(|p| p.nexus.target_port == port)
            {
                path.group = Some(g.id);
                path.state = PathState::from_access_state(state);
                path.alive_state = if path.state.is_usable() {
                    path.state
                } else {
                    PathState::ActiveUnoptimized
                };
            }
        }
    }
}

/// A claim rule, as `esxcli storage nmp satp rule add` takes it: devices matching every
/// given field are claimed by `satp` with `psp`, configured by `psp_options` (`--psp-option`,
/// for example `iops=1` for `VMW_PSP_RR`, as storage vendors recommend for their arrays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClaimRule {
    /// The vendor (exact, trailing spaces ignored), or any.
    pub vendor: Option<&'static str>,
    /// The model (exact, trailing spaces ignored), or any.
    pub model: Option<&'static str>,
    /// Whether the device must (not) support ALUA (TPGS nonzero), or either.
    pub alua: Option<bool>,
    /// The SATP to use.
    pub satp: &'static str,
    /// The PSP to use.
    pub psp: &'static str,
    /// The PSP's options (`--psp-option`), passed on in the [`Claim`] for whoever builds the
    /// PSP to parse; psa does not interpret them.
    pub psp_options: Option<&'static str>,
}

/// The plugins a device is claimed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Claim {
    /// The SATP's name.
    pub satp: &'static str,
    /// The PSP's name.
    pub psp: &'static str,
    /// The PSP options of the rule that matched (`None` for the default, and for a rule
    /// without).
    pub psp_options: Option<&'static str>,
    /// The index of the rule that matched, or `None` for the default.
    pub rule: Option<usize>,
}

/// The SATP of devices that no rule claims and that support ALUA.
pub const DEFAULT_ALUA_CLAIM: (&str, &str) = ("VMW_SATP_ALUA", "VMW_PSP_MRU");
/// The SATP of devices that no rule claims and that do not support ALUA.
pub const DEFAULT_CLAIM: (&str, &str) = ("VMW_SATP_DEFAULT_AA", "VMW_PSP_FIXED");

/// The first rule of `rules` that matches `device`, or the default: `VMW_SATP_ALUA` with
/// `VMW_PSP_MRU` for ALUA devices, `VMW_SATP_DEFAULT_AA` with `VMW_PSP_FIXED` otherwise.
pub fn claim<const P: usize>(rules: &[ClaimRule], device: &DiscoveredDevice<P>) -> Claim {
    let alua = device.tpgs != 0;
    for (index, rule) in rules.iter().enumerate() {
        let vendor_ok = rule
            .vendor
            .is_none_or(|v| v.trim_end() == device.vendor_str());
        let model_ok = rule
            .model
            .is_none_or(|m| m.trim_end() == device.model_str());
        let alua_ok = rule.alua.is_none_or(|a| a == alua);
        if vendor_ok && model_ok && alua_ok {
            return Claim {
                satp: rule.satp,
                psp: rule.psp,
                psp_options: rule.psp_options,
                rule: Some(index),
            };
        }
    }
    let (satp, psp) = if alua {
        DEFAULT_ALUA_CLAIM
    } else {
        DEFAULT_CLAIM
    };
    Claim {
        satp,
        psp,
        psp_options: None,
        rule: None,
    }
}
