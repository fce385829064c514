//! Scanning devices for LVM headers and grouping them into volumes.

use block::BlockDevice;

use crate::error::{LvmError, LvmErrorKind, Structure, err, err_v};
use crate::io::MetadataIo;
use crate::wire::{
    DEVICE_NAME_LEN, DeviceHeader, DeviceHeaderRepr, DeviceName, DiskId, HEADER_OFFSET, Layout,
    MAGIC, PE_ENTRY_LEN, PES_PER_MAP, PeEntry, PeEntryRepr, Uuid, VOLUME_DESCRIPTOR_LEN,
    VolumeDescriptor, VolumeDescriptorRepr, VolumeName, VolumeState, parse_device_name,
};

/// What a scan found on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DeviceStatus {
    /// No LVM magic at 1 MiB: not an LVM device.
    NoHeader,
    /// An LVM device holding this many volumes.
    Lvm {
        /// Used entries of its volume table.
        volumes: u32,
        /// Whether its recorded identity matches the actual one (always true before LVM 5,
        /// which records none, and when the caller does not know the actual identity).
        identity_matches: bool,
    },
    /// An LVM header that could not be used.
    Invalid(LvmError),
}

/// One device of a volume, as found by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Member {
    /// Index of the device in the slice that was scanned.
    pub device: usize,
    /// Its device header.
    pub header: DeviceHeaderRepr,
    /// Its entry for this volume in its volume table.
    pub descriptor: VolumeDescriptorRepr,
    /// Index of that entry in the volume table.
    pub table_index: u32,
    /// Whether the recorded identity matches the actual one.
    pub identity_matches: bool,
    /// The device's capacity in bytes.
    pub capacity_bytes: u64,
    /// The device's block size.
    pub block_size: u32,
}

/// A run of volume bytes on one device (one physical extent entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Extent {
    /// Byte offset in the volume.
    pub logical_offset: u64,
    /// Byte offset on the device.
    pub physical_offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// Index into [`ScannedVolume::members`] (after the scan completes).
    pub member: usize,
    /// Index of the entry in the device's extent table.
    pub pe_index: u32,
    /// The entry's id.
    pub pe_id: u32,
}

/// Whether a volume can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum VolumeStatus {
    /// Every member is present, the extents cover the volume exactly, identities match.
    Complete,
    /// Members are missing: the volume is reported and never read.
    Incomplete {
        /// Members found.
        found: u32,
        /// Members the volume records.
        expected: u32,
    },
    /// Complete, but a member's recorded identity differs from its actual one: a snapshot
    /// LUN. Not mounted unless force-mounted; can be resignatured.
    Snapshot,
    /// Complete but inconsistent (holes, overlaps, conflicting members).
    Invalid(LvmError),
}

/// A volume found by a scan: up to `N` members and `E` extents.
#[derive(Debug, Clone)]
pub struct ScannedVolume<const N: usize, const E: usize> {
    /// The volume UUID.
    pub uuid: Uuid,
    /// The snapshot id.
    pub snap_id: u32,
    /// The volume name.
    pub name: VolumeName,
    /// Size in bytes.
    pub logical_size: u64,
    /// Volume generation.
    pub generation: u64,
    /// Volume state.
    pub state: VolumeState,
    /// LVM major version of the first member.
    pub version: u32,
    /// Members the volume records (the first device's `numDevs`).
    pub expected_members: u32,
    /// Whether this group is made of snapshot devices (identity mismatch).
    pub snapshot: bool,
    /// Members found, ordered by their first extent number.
    pub members: heapless::Vec<Member, N>,
    /// Extents, ordered by volume offset.
    pub extents: heapless::Vec<Extent, E>,
    /// Device names recorded on the first member (LVM 5 and later).
    pub device_names: heapless::Vec<DeviceName, N>,
    /// Whether the volume can be used.
    pub status: VolumeStatus,
    problem: Option<LvmError>,
}

impl<const N: usize, const E: usize> ScannedVolume<N, E> {
    fn note(&mut self, e: LvmError) {
        if self.problem.is_none() {
            self.problem = Some(e);
        }
    }

    /// Whether the volume may be mounted normally.
    pub fn is_complete(&self) -> bool {
        self.status == VolumeStatus::Complete
    }

    /// The scan indices of the member devices, in member order: hand devices to
    /// [`crate::MountTable::mount`] in this order.
    pub fn member_devices(&self) -> impl Iterator<Item = usize> + '_ {
        self.members.iter().map(|m| m.device)
    }

    /// The 256 MiB units of the volume.
    pub fn pe_units(&self) -> u64 {
        self.members
            .iter()
            .map(|m| u64::from(m.descriptor.num_pes))
            .sum()
    }
}

/// The result of a scan: every device's status and the volumes found.
#[derive(Debug, Clone)]
pub struct Scan<const N: usize, const E: usize> {
    /// Status of each scanned device, in input order.
    pub devices: heapless::Vec<DeviceStatus, N>,
    /// Volumes found, in the order first seen.
    pub volumes: heapless::Vec<ScannedVolume<N, E>, N>,
}

impl<const N: usize, const E: usize> Scan<N, E> {
    /// The volume named `name`, if any (the first one when several share it).
    pub fn volume_by_name(&self, name: &str) -> Option<&ScannedVolume<N, E>> {
        self.volumes
            .iter()
            .find(|v| v.name.as_bytes() == name.as_bytes())
    }
}

/// Reads the device header of `device`; `Ok(None)` if the magic is absent.
pub fn read_header<D, const SG: usize>(
    device: &mut D,
    io: &mut MetadataIo<'_>,
) -> Result<Option<DeviceHeaderRepr>, LvmError>
where
    D: BlockDevice<SG> + ?Sized,
{
    let bytes = io.read(device, HEADER_OFFSET, 512, Structure::DeviceHeader)?;
    let view = DeviceHeader::new_checked(bytes)?;
    if view.magic() != MAGIC {
        return Ok(None);
    }
    DeviceHeaderRepr::parse(&view).map(Some)
}

/// Reads volume table entry `index`.
pub fn read_descriptor<D, const SG: usize>(
    device: &mut D,
    io: &mut MetadataIo<'_>,
    layout: &Layout,
    index: u32,
) -> Result<VolumeDescriptorRepr, LvmError>
where
    D: BlockDevice<SG> + ?Sized,
{
    let offset = layout.volume_descriptor_offset(index).ok_or(err_v(
        Structure::VolumeDescriptor,
        LvmErrorKind::BadField,
        u64::from(index),
    ))?;
    let bytes = io.read(
        device,
        offset,
        VOLUME_DESCRIPTOR_LEN,
        Structure::VolumeDescriptor,
    )?;
    VolumeDescriptorRepr::parse(&VolumeDescriptor::new_checked(bytes)?)
}

/// Calls `each` with every physical extent entry of `header`'s table (entries `0..num_pes`),
/// reading the table in buffer-sized chunks.
pub fn for_each_pe<D, const SG: usize>(
    device: &mut D,
    io: &mut MetadataIo<'_>,
    header: &DeviceHeaderRepr,
    mut each: impl FnMut(u32, PeEntryRepr) -> Result<(), LvmError>,
) -> Result<(), LvmError>
where
    D: BlockDevice<SG> + ?Sized,
{
    let layout = header.layout()?;
    let per_chunk: u32 = 64; // 8 KiB of entries per read
    let mut index = 0u32;
    // Bounded: `num_pes` was validated to at most 8 maps of 8192 entries.
    while index < header.num_pes {
        let left_in_map = PES_PER_MAP - index % PES_PER_MAP;
        let count = (header.num_pes - index).min(per_chunk).min(left_in_map);
        let offset = layout.pe_entry_offset(index).ok_or(err_v(
            Structure::PeEntry,
            LvmErrorKind::BadField,
            u64::from(index),
        ))?;
        let len = count as usize * PE_ENTRY_LEN;
        let mut entries: heapless::Vec<PeEntryRepr, 64> = heapless::Vec::new();
        {
            let bytes = io.read(device, offset, len, Structure::PeEntry)?;
            for chunk in bytes.chunks_exact(PE_ENTRY_LEN) {
                let entry = PeEntryRepr::parse(&PeEntry::new_checked(chunk)?)
                    .map_err(|e| err_v(e.structure(), e.kind(), u64::from(index)))?;
                entries
                    .push(entry)
                    .map_err(|_| err(Structure::PeEntry, LvmErrorKind::CapacityExceeded))?;
            }
        }
        for (k, entry) in entries.into_iter().enumerate() {
            each(index + k as u32, entry)?;
        }
        index += count;
    }
    Ok(())
}

/// Reads `count` device names from the device-name table of `layout`.
pub fn read_device_names<D, const SG: usize, const N: usize>(
    device: &mut D,
    io: &mut MetadataIo<'_>,
    layout: &Layout,
    count: u32,
) -> Result<heapless::Vec<DeviceName, N>, LvmError>
where
    D: BlockDevice<SG> + ?Sized,
{
    let mut names = heapless::Vec::new();
    for index in 0..count {
        let offset = layout.device_name_offset(index).ok_or(err_v(
            Structure::DeviceNameEntry,
            LvmErrorKind::BadField,
            u64::from(index),
        ))?;
        let bytes = io.read(device, offset, DEVICE_NAME_LEN, Structure::DeviceNameEntry)?;
        names
            .push(parse_device_name(bytes)?)
            .map_err(|_| err(Structure::DeviceNameEntry, LvmErrorKind::CapacityExceeded))?;
    }
    Ok(names)
}

/// Scans `devices` and groups them into volumes.
///
/// `identities[i]` is the actual identity of device `i` (from VPD page 0x83), or `None` if
/// unknown; a device whose recorded identity differs is a snapshot, grouped apart from the
/// originals of the same volume UUID. Problems with one device or volume are reported in the
/// result; the scan itself fails only if more than `N` devices are given, `identities` is
/// shorter than `devices`, or the metadata buffer is unusable.
pub fn scan<D, const SG: usize, const N: usize, const E: usize>(
    devices: &mut [D],
    identities: &[Option<DiskId>],
    io: &mut MetadataIo<'_>,
) -> Result<Scan<N, E>, LvmError>
where
    D: BlockDevice<SG>,
{
    if devices.len() > N {
        return Err(err_v(
            Structure::Volume,
            LvmErrorKind::CapacityExceeded,
            devices.len() as u64,
        ));
    }
    if identities.len() < devices.len() {
        return Err(err(Structure::Volume, LvmErrorKind::DeviceMismatch));
    }
    let mut result = Scan {
        devices: heapless::Vec::new(),
        volumes: heapless::Vec::new(),
    };
    for (index, device) in devices.iter_mut().enumerate() {
        let status = match scan_device(device, index, identities[index], io, &mut result) {
            Ok(status) => status,
            Err(e) if e.structure() == Structure::MetadataBuffer => return Err(e),
            Err(e) => DeviceStatus::Invalid(e),
        };
        // Cannot fail: at most N devices.
        let _ = result.devices.push(status);
    }
    for volume in result.volumes.iter_mut() {
        finish(volume);
    }
    Ok(result)
}

fn scan_device<D, const SG: usize, const N: usize, const E: usize>(
    device: &mut D,
    index: usize,
    identity: Option<DiskId>,
    io: &mut MetadataIo<'_>,
    result: &mut Scan<N, E>,
) -> Result<DeviceStatus, LvmError>
where
    D: BlockDevice<SG>,
{
    let Some(header) = read_header(device, io)? else {
        return Ok(DeviceStatus::NoHeader);
    };
    if header.ext_metadata_offset != 0 {
        return Err(err_v(
            Structure::DeviceHeader,
            LvmErrorKind::Unsupported,
            header.ext_metadata_offset,
        ));
    }
    let layout = header.layout()?;
    let geometry = device.geometry();
    let capacity = geometry
        .capacity_bytes()
        .ok_or(err(Structure::DeviceHeader, LvmErrorKind::Overflow))?;
    let identity_matches =
        header.major_version < 5 || identity.is_none_or(|a| a.same_disk(&header.disk_id));

    // First read every descriptor, so a bad one leaves no partial member behind.
    let mut descriptors: heapless::Vec<(u32, VolumeDescriptorRepr), N> = heapless::Vec::new();
    for table_index in 0..header.num_volumes {
        let d = read_descriptor(device, io, &layout, table_index)?;
        descriptors.push((table_index, d)).map_err(|_| {
            err_v(
                Structure::VolumeDescriptor,
                LvmErrorKind::CapacityExceeded,
                u64::from(header.num_volumes),
            )
        })?;
    }
    // The extents of this device, checked against the device and each other.
    let metadata_end = layout.metadata_end(header.num_pe_maps);
    let bs = u64::from(geometry.block_size);
    let mut mine: heapless::Vec<(u32, PeEntryRepr), E> = heapless::Vec::new();
    for_each_pe(device, io, &header, |pe_index, entry| {
        if !entry.used {
            return Ok(());
        }
        let bad = |kind| err_v(Structure::PeEntry, kind, u64::from(pe_index));
        let end = entry
            .physical_offset
            .checked_add(entry.length)
            .ok_or(bad(LvmErrorKind::Overflow))?;
        entry
            .logical_offset
            .checked_add(entry.length)
            .ok_or(bad(LvmErrorKind::Overflow))?;
        if entry.length == 0
            || entry.physical_offset < metadata_end
            || end > capacity
            || !entry.physical_offset.is_multiple_of(bs)
            || !entry.logical_offset.is_multiple_of(bs)
            || !entry.length.is_multiple_of(bs)
        {
            return Err(bad(LvmErrorKind::ExtentOutOfRange));
        }
        for (_, other) in mine.iter() {
            if entry.physical_offset < other.physical_offset + other.length
                && other.physical_offset < end
            {
                return Err(bad(LvmErrorKind::OverlappingExtents));
            }
        }
        mine.push((pe_index, entry))
            .map_err(|_| bad(LvmErrorKind::CapacityExceeded))
    })?;

    for (table_index, descriptor) in descriptors.iter().copied() {
        let snapshot = !identity_matches;
        let position = result.volumes.iter().position(|v| {
            v.uuid == descriptor.uuid && v.snap_id == descriptor.snap_id && v.snapshot == snapshot
        });
        let position = match position {
            Some(p) => p,
            None => {
                let fresh = ScannedVolume {
                    uuid: descriptor.uuid,
                    snap_id: descriptor.snap_id,
                    name: descriptor.name,
                    logical_size: descriptor.logical_size,
                    generation: descriptor.generation,
                    state: descriptor.volume_state(),
                    version: header.major_version,
                    expected_members: descriptor.num_devs,
                    snapshot,
                    members: heapless::Vec::new(),
                    extents: heapless::Vec::new(),
                    device_names: heapless::Vec::new(),
                    status: VolumeStatus::Complete,
                    problem: None,
                };
                result.volumes.push(fresh).map_err(|_| {
                    err_v(Structure::Volume, LvmErrorKind::CapacityExceeded, N as u64)
                })?;
                result.volumes.len() - 1
            }
        };
        let volume = &mut result.volumes[position];
        let member = Member {
            device: index,
            header,
            descriptor,
            table_index,
            identity_matches,
            capacity_bytes: capacity,
            block_size: geometry.block_size,
        };
        if volume.members.push(member).is_err() {
            volume.note(err_v(
                Structure::Volume,
                LvmErrorKind::CapacityExceeded,
                N as u64,
            ));
            continue;
        }
        if descriptor.first_pe == 0 {
            volume.name = descriptor.name;
            volume.logical_size = descriptor.logical_size;
            volume.generation = descriptor.generation;
            volume.state = descriptor.volume_state();
            volume.version = header.major_version;
            volume.expected_members = descriptor.num_devs;
            if layout.has_device_names() {
                match read_device_names(device, io, &layout, descriptor.num_devs) {
                    Ok(names) => volume.device_names = names,
                    Err(e) => volume.note(e),
                }
            }
        }
        for (pe_index, entry) in mine.iter() {
            if entry.volume_id != descriptor.volume_id {
                continue;
            }
            let extent = Extent {
                logical_offset: entry.logical_offset,
                physical_offset: entry.physical_offset,
                length: entry.length,
                member: index,
                pe_index: *pe_index,
                pe_id: entry.pe_id,
            };
            if volume.extents.push(extent).is_err() {
                volume.note(err_v(
                    Structure::Volume,
                    LvmErrorKind::CapacityExceeded,
                    E as u64,
                ));
            }
        }
    }
    Ok(DeviceStatus::Lvm {
        volumes: header.num_volumes,
        identity_matches,
    })
}

/// Orders members and extents and decides the volume's status.
fn finish<const N: usize, const E: usize>(volume: &mut ScannedVolume<N, E>) {
    volume
        .members
        .sort_unstable_by_key(|m| m.descriptor.first_pe);
    volume.extents.sort_unstable_by_key(|e| e.logical_offset);
    // Extents carried scan device indices until now; turn them into member indices.
    for extent in volume.extents.iter_mut() {
        extent.member = volume
            .members
            .iter()
            .position(|m| m.device == extent.member)
            .unwrap_or(usize::MAX);
    }
    volume.status = match status_of(volume) {
        Ok(status) => status,
        Err(e) => VolumeStatus::Invalid(e),
    };
}

fn status_of<const N: usize, const E: usize>(
    volume: &ScannedVolume<N, E>,
) -> Result<VolumeStatus, LvmError> {
    let has_first = volume
        .members
        .first()
        .is_some_and(|m| m.descriptor.first_pe == 0);
    let found = volume.members.len() as u32;
    if !has_first || found < volume.expected_members {
        return Ok(VolumeStatus::Incomplete {
            found,
            expected: volume.expected_members.max(found.saturating_add(1)),
        });
    }
    if let Some(problem) = volume.problem {
        return Err(problem);
    }
    let mismatch = |v: u64| err_v(Structure::Volume, LvmErrorKind::DeviceMismatch, v);
    if found > volume.expected_members {
        return Err(mismatch(u64::from(found)));
    }
    let block_size = volume.members[0].block_size;
    let mut next_pe = 0u64;
    for member in volume.members.iter() {
        let d = &member.descriptor;
        if d.first_pe != next_pe {
            return Err(err_v(
                Structure::VolumeDescriptor,
                LvmErrorKind::Hole,
                d.first_pe,
            ));
        }
        next_pe = d
            .last_pe
            .checked_add(1)
            .ok_or(err(Structure::VolumeDescriptor, LvmErrorKind::Overflow))?;
        if member.block_size != block_size {
            return Err(mismatch(u64::from(member.block_size)));
        }
        if d.logical_size != volume.logical_size {
            return Err(mismatch(d.logical_size));
        }
    }
    let mut expected = 0u64;
    for extent in volume.extents.iter() {
        if extent.logical_offset < expected {
            return Err(err_v(
                Structure::Volume,
                LvmErrorKind::OverlappingExtents,
                extent.logical_offset,
            ));
        }
        if extent.logical_offset > expected {
            return Err(err_v(Structure::Volume, LvmErrorKind::Hole, expected));
        }
        // Cannot overflow: checked when the entry was read.
        expected = extent.logical_offset + extent.length;
    }
    if expected != volume.logical_size || expected == 0 {
        return Err(err_v(Structure::Volume, LvmErrorKind::Hole, expected));
    }
    if volume.members.iter().any(|m| !m.identity_matches) {
        return Ok(VolumeStatus::Snapshot);
    }
    Ok(VolumeStatus::Complete)
}
