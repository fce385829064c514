//! Writing volumes in ESXi's format: create, span, grow, resignature.
//!
//! These are slow paths: every change is written with [`MetadataIo`] one request at a time.
//! Devices are written only for the LVM major versions 5 and 6. After a change, scan again to
//! see the result.

use block::BlockDevice;

use crate::error::{LvmError, LvmErrorKind, Structure, err, err_v};
use crate::io::MetadataIo;
use crate::scan::{ScannedVolume, VolumeStatus, for_each_pe, read_header};
use crate::wire::{
    DEFAULT_DATA_OFFSET, DEVICE_HEADER_LEN, DEVICE_NAME_LEN, DeviceHeader, DeviceHeaderRepr,
    DeviceName, DiskId, HEADER_OFFSET, Label, Layout, MAX_DEVICE_NAMES, PE_ENTRY_USED_LEN,
    PE_UNIT_BYTES, PeEntry, PeEntryRepr, Uuid, VOLUME_DESCRIPTOR_LEN, VolumeDescriptor,
    VolumeDescriptorRepr, VolumeState, emit_device_name,
};

/// The minor version written in new headers (the value ESXi 6 and 7 write).
pub const MINOR_VERSION: u32 = 21;
/// The metadata alignment written in new LVM 6 headers.
pub const LVM6_MD_ALIGNMENT: u32 = 4096;

/// A device joining a volume: its actual identity, a new LVM device UUID, and its name for the
/// device-name table (e.g. `naa.60003ff44dc75adc:1`).
#[derive(Debug, Clone, Copy)]
pub struct NewDevice<'a> {
    /// The identity of the disk (VPD page 0x83 designator).
    pub disk_id: DiskId,
    /// A fresh UUID for the device.
    pub device_uuid: Uuid,
    /// The device's name, at most 255 bytes.
    pub name: &'a str,
}

/// What a new volume looks like.
#[derive(Debug, Clone, Copy)]
pub struct CreateVolume<'a> {
    /// LVM major version to write: 5 or 6.
    pub version: u32,
    /// Volume name, at most 64 bytes.
    pub name: &'a str,
    /// A fresh volume UUID.
    pub volume_uuid: Uuid,
    /// Size in 256 MiB units; `None` takes all the device can hold.
    pub units: Option<u32>,
    /// The time to record, microseconds since 1970.
    pub time_us: u64,
}

fn layout_for(version: u32) -> Result<Layout, LvmError> {
    match version {
        5 => Layout::new(5, 0),
        6 => Layout::new(6, LVM6_MD_ALIGNMENT),
        v => Err(err_v(
            Structure::DeviceHeader,
            LvmErrorKind::UnsupportedVersion,
            u64::from(v),
        )),
    }
}

fn write_header<D: BlockDevice<SG> + ?Sized, const SG: usize>(
    device: &mut D,
    io: &mut MetadataIo<'_>,
    header: &DeviceHeaderRepr,
) -> Result<(), LvmError> {
    io.modify(
        device,
        HEADER_OFFSET,
        DEVICE_HEADER_LEN,
        Structure::DeviceHeader,
        |b| header.emit(&mut DeviceHeader::new_checked(b)?),
    )
}

fn write_descriptor<D: BlockDevice<SG> + ?Sized, const SG: usize>(
    device: &mut D,
    io: &mut MetadataIo<'_>,
    layout: &Layout,
    index: u32,
    descriptor: &VolumeDescriptorRepr,
) -> Result<(), LvmError> {
    let offset = layout.volume_descriptor_offset(index).ok_or(err_v(
        Structure::VolumeDescriptor,
        LvmErrorKind::BadField,
        u64::from(index),
    ))?;
    io.modify(
        device,
        offset,
        VOLUME_DESCRIPTOR_LEN,
        Structure::VolumeDescriptor,
        |b| descriptor.emit(&mut VolumeDescriptor::new_checked(b)?),
    )
}

fn write_pe<D: BlockDevice<SG> + ?Sized, const SG: usize>(
    device: &mut D,
    io: &mut MetadataIo<'_>,
    layout: &Layout,
    index: u32,
    entry: &PeEntryRepr,
) -> Result<(), LvmError> {
    let bad = || {
        err_v(
            Structure::PeEntry,
            LvmErrorKind::CapacityExceeded,
            u64::from(index),
        )
    };
    let offset = layout.pe_entry_offset(index).ok_or_else(bad)?;
    io.modify(device, offset, PE_ENTRY_USED_LEN, Structure::PeEntry, |b| {
        entry.emit(&mut PeEntry::new_checked(b)?)
    })?;
    let (byte, mask) = layout.bitmap_byte(index).ok_or_else(bad)?;
    io.modify(device, byte, 1, Structure::PeBitmap, |b| {
        if entry.used {
            b[0] |= mask;
        } else {
            b[0] &= !mask;
        }
        Ok(())
    })
}

fn write_name<D: BlockDevice<SG> + ?Sized, const SG: usize>(
    device: &mut D,
    io: &mut MetadataIo<'_>,
    layout: &Layout,
    index: u32,
    name: &DeviceName,
) -> Result<(), LvmError> {
    let offset = layout.device_name_offset(index).ok_or(err_v(
        Structure::DeviceNameEntry,
        LvmErrorKind::CapacityExceeded,
        u64::from(index),
    ))?;
    io.modify(
        device,
        offset,
        DEVICE_NAME_LEN,
        Structure::DeviceNameEntry,
        |b| emit_device_name(name, b),
    )
}

fn device_name(text: &str) -> Result<DeviceName, LvmError> {
    // Keep a terminating NUL: at most 255 bytes of text.
    if text.len() >= DEVICE_NAME_LEN {
        return Err(err_v(
            Structure::DeviceNameEntry,
            LvmErrorKind::BadField,
            text.len() as u64,
        ));
    }
    Label::new(text).ok_or(err(Structure::DeviceNameEntry, LvmErrorKind::BadField))
}

fn units_bytes(units: u32) -> Result<u64, LvmError> {
    u64::from(units)
        .checked_mul(PE_UNIT_BYTES)
        .ok_or(err(Structure::Volume, LvmErrorKind::Overflow))
}

/// The extents to add for `units` units starting at device offset `physical` and volume offset
/// `logical`: one entry per unit on LVM 5, one entry in all on LVM 6 (as ESXi writes them).
fn new_entries(
    version: u32,
    first_index: u32,
    volume_id: u32,
    physical: u64,
    logical: u64,
    units: u32,
    mut each: impl FnMut(u32, PeEntryRepr) -> Result<(), LvmError>,
) -> Result<u32, LvmError> {
    let (count, unit_len) = if version >= 6 {
        (1u32, units_bytes(units)?)
    } else {
        (units, PE_UNIT_BYTES)
    };
    for k in 0..count {
        let shift = u64::from(k) * unit_len;
        let index = first_index
            .checked_add(k)
            .ok_or(err(Structure::PeEntry, LvmErrorKind::Overflow))?;
        each(
            index,
            PeEntryRepr {
                used: true,
                pe_id: index,
                volume_id,
                physical_offset: physical + shift,
                logical_offset: logical + shift,
                length: unit_len,
                version: 1,
            },
        )?;
    }
    Ok(count)
}

struct Fresh<'a> {
    version: u32,
    device: &'a NewDevice<'a>,
    descriptor: VolumeDescriptorRepr,
    units: Option<u32>,
    time_us: u64,
}

/// Formats `device` with an LVM header holding one volume that starts at volume offset
/// `logical` (0 for a new volume, the old size for a span). Returns the units written.
fn format_device<D: BlockDevice<SG> + ?Sized, const SG: usize>(
    device: &mut D,
    io: &mut MetadataIo<'_>,
    fresh: Fresh<'_>,
    logical: u64,
) -> Result<(u32, VolumeDescriptorRepr), LvmError> {
    let layout = layout_for(fresh.version)?;
    let geometry = device.geometry();
    let capacity = geometry
        .capacity_bytes()
        .ok_or(err(Structure::DeviceHeader, LvmErrorKind::Overflow))?;
    let data_offset = DEFAULT_DATA_OFFSET;
    let available = capacity.saturating_sub(data_offset) / PE_UNIT_BYTES;
    let available = u32::try_from(available).unwrap_or(u32::MAX);
    let units = fresh.units.unwrap_or(available);
    if units == 0 || units > available {
        return Err(err_v(
            Structure::Volume,
            LvmErrorKind::NoSpace,
            u64::from(units),
        ));
    }
    let length = units_bytes(units)?;
    let entries = if fresh.version >= 6 { 1 } else { units };
    let max_entries = crate::wire::PES_PER_MAP;
    if entries > max_entries {
        return Err(err_v(
            Structure::PeEntry,
            LvmErrorKind::CapacityExceeded,
            u64::from(entries),
        ));
    }
    let mut descriptor = fresh.descriptor;
    descriptor.logical_size = logical
        .checked_add(length)
        .ok_or(err(Structure::Volume, LvmErrorKind::Overflow))?;
    descriptor.num_pes = units;
    descriptor.last_pe = descriptor
        .first_pe
        .checked_add(u64::from(units) - 1)
        .ok_or(err(Structure::VolumeDescriptor, LvmErrorKind::Overflow))?;
    descriptor.consumed_pes = if fresh.version >= 6 { entries } else { 0 };
    descriptor.mod_time_us = fresh.time_us;
    let header = DeviceHeaderRepr {
        major_version: fresh.version,
        minor_version: MINOR_VERSION,
        disk_id: fresh.device.disk_id,
        block_size: geometry.block_size,
        total_bytes: capacity,
        num_volumes: 1,
        num_pes: entries,
        last_pe_index: entries - 1,
        generation: 1,
        data_offset,
        device_uuid: fresh.device.device_uuid,
        init_time_us: fresh.time_us,
        mod_time_us: fresh.time_us,
        locked_by: Uuid::default(),
        locked_when_us: 0,
        unknown0: 0,
        num_pe_maps: if fresh.version >= 6 { 0 } else { 1 },
        ext_metadata_offset: 0,
        md_alignment: if fresh.version >= 6 {
            LVM6_MD_ALIGNMENT
        } else {
            0
        },
        num_pes6: if fresh.version >= 6 { units } else { 0 },
        flags: 0,
    };
    header.validate()?;
    // Clear the whole metadata area first, so no stale table entry survives.
    io.zero(
        device,
        HEADER_OFFSET,
        layout.metadata_end(1) - HEADER_OFFSET,
        Structure::DeviceHeader,
    )?;
    new_entries(
        fresh.version,
        0,
        descriptor.volume_id,
        data_offset,
        logical,
        units,
        |index, entry| write_pe(device, io, &layout, index, &entry),
    )?;
    write_descriptor(device, io, &layout, 0, &descriptor)?;
    write_header(device, io, &header)?;
    Ok((units, descriptor))
}

/// Creates a new volume on `device`, overwriting whatever LVM header it had.
pub fn create<D: BlockDevice<SG> + ?Sized, const SG: usize>(
    device: &mut D,
    io: &mut MetadataIo<'_>,
    volume: &CreateVolume<'_>,
    identity: &NewDevice<'_>,
) -> Result<(), LvmError> {
    let name = Label::new(volume.name).ok_or(err_v(
        Structure::VolumeDescriptor,
        LvmErrorKind::BadField,
        volume.name.len() as u64,
    ))?;
    let layout = layout_for(volume.version)?;
    let dev_name = device_name(identity.name)?;
    let descriptor = VolumeDescriptorRepr {
        logical_size: 0,
        generation: 1,
        state: VolumeState::Normal.raw(),
        name,
        uuid: volume.volume_uuid,
        snap_id: 1,
        creation_time_us: volume.time_us,
        volume_id: 0,
        num_pes: 0,
        first_pe: 0,
        last_pe: 0,
        mod_time_us: volume.time_us,
        num_devs: 1,
        consumed_pes: 0,
    };
    let fresh = Fresh {
        version: volume.version,
        device: identity,
        descriptor,
        units: volume.units,
        time_us: volume.time_us,
    };
    format_device(device, io, fresh, 0)?;
    write_name(device, io, &layout, 0, &dev_name)
}

/// Checks that `devices` are the members of `volume`, in order, by re-reading their headers.
fn check_members<D: BlockDevice<SG>, const SG: usize, const N: usize, const E: usize>(
    devices: &mut [D],
    volume: &ScannedVolume<N, E>,
    io: &mut MetadataIo<'_>,
) -> Result<(), LvmError> {
    if devices.len() < volume.members.len() {
        return Err(err_v(
            Structure::Volume,
            LvmErrorKind::DeviceMismatch,
            devices.len() as u64,
        ));
    }
    for (device, member) in devices.iter_mut().zip(volume.members.iter()) {
        let header =
            read_header(device, io)?.ok_or(err(Structure::DeviceHeader, LvmErrorKind::BadMagic))?;
        if header.device_uuid != member.header.device_uuid
            || header.generation != member.header.generation
        {
            return Err(err(Structure::Volume, LvmErrorKind::DeviceMismatch));
        }
    }
    Ok(())
}

/// Rewrites every member's descriptor and header after a change of the volume: new size and
/// member count, generations bumped.
fn update_members<D: BlockDevice<SG>, const SG: usize, const N: usize, const E: usize>(
    devices: &mut [D],
    volume: &ScannedVolume<N, E>,
    io: &mut MetadataIo<'_>,
    time_us: u64,
    change: &mut dyn FnMut(usize, &mut DeviceHeaderRepr, &mut VolumeDescriptorRepr),
) -> Result<(), LvmError> {
    for (k, (device, member)) in devices.iter_mut().zip(volume.members.iter()).enumerate() {
        let mut header = member.header;
        let mut descriptor = member.descriptor;
        header.generation = header.generation.wrapping_add(1);
        header.mod_time_us = time_us;
        descriptor.generation = volume.generation.wrapping_add(1);
        descriptor.mod_time_us = time_us;
        change(k, &mut header, &mut descriptor);
        let layout = header.layout()?;
        write_descriptor(device, io, &layout, member.table_index, &descriptor)?;
        write_header(device, io, &header)?;
    }
    Ok(())
}

fn require_writable<const N: usize, const E: usize>(
    volume: &ScannedVolume<N, E>,
) -> Result<(), LvmError> {
    if volume.status != VolumeStatus::Complete {
        return Err(err(Structure::Volume, LvmErrorKind::NotAllowed));
    }
    if volume.version < 5 {
        return Err(err_v(
            Structure::DeviceHeader,
            LvmErrorKind::UnsupportedVersion,
            u64::from(volume.version),
        ));
    }
    Ok(())
}

/// Extends a complete `volume` onto a new device: `devices` holds the members in member order
/// followed by the new device. The new device gets `units` 256 MiB units (`None`: all it can
/// hold), appended at the end of the volume.
pub fn span<D: BlockDevice<SG>, const SG: usize, const N: usize, const E: usize>(
    devices: &mut [D],
    volume: &ScannedVolume<N, E>,
    io: &mut MetadataIo<'_>,
    identity: &NewDevice<'_>,
    units: Option<u32>,
    time_us: u64,
) -> Result<(), LvmError> {
    require_writable(volume)?;
    let members = volume.members.len();
    if devices.len() != members + 1 {
        return Err(err_v(
            Structure::Volume,
            LvmErrorKind::DeviceMismatch,
            devices.len() as u64,
        ));
    }
    let num_devs = u32::try_from(members + 1)
        .ok()
        .filter(|n| *n <= MAX_DEVICE_NAMES && members < N)
        .ok_or(err_v(
            Structure::Volume,
            LvmErrorKind::CapacityExceeded,
            members as u64,
        ))?;
    check_members(devices, volume, io)?;
    let last = volume.members[members - 1].descriptor;
    let first_member = volume.members[0];
    let dev_name = device_name(identity.name)?;
    let mut descriptor = first_member.descriptor;
    descriptor.first_pe = last
        .last_pe
        .checked_add(1)
        .ok_or(err(Structure::VolumeDescriptor, LvmErrorKind::Overflow))?;
    descriptor.num_devs = num_devs;
    descriptor.generation = volume.generation.wrapping_add(1);
    descriptor.volume_id = 0;
    let fresh = Fresh {
        version: volume.version,
        device: identity,
        descriptor,
        units,
        time_us,
    };
    let (_, written) = format_device(&mut devices[members], io, fresh, volume.logical_size)?;
    let new_size = written.logical_size;
    update_members(
        &mut devices[..members],
        volume,
        io,
        time_us,
        &mut |_, _, d| {
            d.num_devs = num_devs;
            d.logical_size = new_size;
        },
    )?;
    let layout = first_member.header.layout()?;
    write_name(&mut devices[0], io, &layout, num_devs - 1, &dev_name)
}

/// Grows a complete `volume` by `units` 256 MiB units on its last member (the device that holds
/// the end of the volume), which needs that much free space after its extents, e.g. because
/// the LUN grew. `devices` holds the members in member order.
pub fn grow<D: BlockDevice<SG>, const SG: usize, const N: usize, const E: usize>(
    devices: &mut [D],
    volume: &ScannedVolume<N, E>,
    io: &mut MetadataIo<'_>,
    units: u32,
    time_us: u64,
) -> Result<(), LvmError> {
    require_writable(volume)?;
    let members = volume.members.len();
    if devices.len() != members || units == 0 {
        return Err(err_v(
            Structure::Volume,
            LvmErrorKind::DeviceMismatch,
            devices.len() as u64,
        ));
    }
    check_members(devices, volume, io)?;
    let tail = members - 1;
    let member = volume.members[tail];
    let header = member.header;
    let layout = header.layout()?;
    let device = &mut devices[tail];
    // Free space starts after the last extent of any volume on the device.
    let mut start = header.data_offset;
    for_each_pe(device, io, &header, |_, entry| {
        if entry.used {
            start = start.max(entry.physical_offset.saturating_add(entry.length));
        }
        Ok(())
    })?;
    let length = units_bytes(units)?;
    let end = start
        .checked_add(length)
        .ok_or(err(Structure::Volume, LvmErrorKind::Overflow))?;
    if end > member.capacity_bytes {
        return Err(err_v(Structure::Volume, LvmErrorKind::NoSpace, end));
    }
    let new_size = volume
        .logical_size
        .checked_add(length)
        .ok_or(err(Structure::Volume, LvmErrorKind::Overflow))?;
    let entries = if header.major_version >= 6 { 1 } else { units };
    let table_room = header.num_pe_maps.max(1) * crate::wire::PES_PER_MAP;
    let new_count = header
        .num_pes
        .checked_add(entries)
        .filter(|n| *n <= table_room)
        .ok_or(err_v(
            Structure::PeEntry,
            LvmErrorKind::CapacityExceeded,
            u64::from(entries),
        ))?;
    let new_last_pe = member
        .descriptor
        .last_pe
        .checked_add(u64::from(units))
        .ok_or(err(Structure::VolumeDescriptor, LvmErrorKind::Overflow))?;
    let added = new_entries(
        header.major_version,
        header.num_pes,
        member.descriptor.volume_id,
        start,
        volume.logical_size,
        units,
        |index, entry| write_pe(device, io, &layout, index, &entry),
    )?;
    update_members(devices, volume, io, time_us, &mut |k, h, d| {
        d.logical_size = new_size;
        if k == tail {
            h.num_pes = new_count;
            h.last_pe_index = new_count - 1;
            if h.major_version >= 6 {
                h.num_pes6 = h.num_pes6.saturating_add(units);
                d.consumed_pes = d.consumed_pes.saturating_add(added);
            }
            d.num_pes = d.num_pes.saturating_add(units);
            d.last_pe = new_last_pe;
        }
    })
}

/// Resignatures a snapshot (or any complete) `volume`: gives it the new UUID `volume_uuid` and
/// records each member's actual identity and a new device UUID, so it can be mounted beside
/// the original. `devices` holds the members in member order and `identities` their new
/// identities in the same order; names are rewritten in the device-name table.
pub fn resignature<D: BlockDevice<SG>, const SG: usize, const N: usize, const E: usize>(
    devices: &mut [D],
    volume: &ScannedVolume<N, E>,
    io: &mut MetadataIo<'_>,
    volume_uuid: Uuid,
    identities: &[NewDevice<'_>],
    time_us: u64,
) -> Result<(), LvmError> {
    if !matches!(
        volume.status,
        VolumeStatus::Snapshot | VolumeStatus::Complete
    ) {
        return Err(err(Structure::Volume, LvmErrorKind::NotAllowed));
    }
    if volume.version < 5 {
        return Err(err_v(
            Structure::DeviceHeader,
            LvmErrorKind::UnsupportedVersion,
            u64::from(volume.version),
        ));
    }
    let members = volume.members.len();
    if devices.len() != members || identities.len() != members {
        return Err(err_v(
            Structure::Volume,
            LvmErrorKind::DeviceMismatch,
            devices.len() as u64,
        ));
    }
    let mut names: heapless::Vec<DeviceName, N> = heapless::Vec::new();
    for identity in identities {
        names
            .push(device_name(identity.name)?)
            .map_err(|_| err(Structure::DeviceNameEntry, LvmErrorKind::CapacityExceeded))?;
    }
    check_members(devices, volume, io)?;
    update_members(devices, volume, io, time_us, &mut |k, h, d| {
        d.uuid = volume_uuid;
        d.state = VolumeState::Normal.raw();
        h.disk_id = identities[k].disk_id;
        h.device_uuid = identities[k].device_uuid;
    })?;
    let layout = volume.members[0].header.layout()?;
    for (index, name) in names.iter().enumerate() {
        write_name(&mut devices[0], io, &layout, index as u32, name)?;
    }
    Ok(())
}
