//! Opening datastore volumes from disk images: bare VMFS devices, and ESXi LVM volumes on one or
//! more devices (through the `lvm` crate), as the host's storage stack sees them.

use std::path::{Path, PathBuf};

use block::{
    BlockDevice, BlockRequest, Completion, DEFAULT_SG_CAPACITY, FileDisk, Geometry, Instant,
    MemAddr, Memory, SubmitError,
};
use lvm::{DeviceStatus, MetadataIo, MountMode, MountTable, Scan, ScannedVolume};

/// Outstanding requests per device file.
pub const DEVICE_QUEUE_DEPTH: usize = 64;
/// Most devices one command takes (and members one volume may have).
pub const MAX_DEVICES: usize = 8;
/// Most physical extent runs one volume may have.
pub const MAX_EXTENTS: usize = 256;
/// Requests a volume keeps outstanding (each may split across extents).
const VOLUME_PARENTS: usize = 64;

/// A device file.
pub type DeviceFile = FileDisk<DEVICE_QUEUE_DEPTH>;
/// An LVM volume over device files (boxed: a `FileDisk` with a deep queue is large, and a
/// volume holds up to `MAX_DEVICES` of them).
pub type LvmVolume =
    lvm::Volume<Box<DeviceFile>, MAX_DEVICES, MAX_EXTENTS, VOLUME_PARENTS, DEFAULT_SG_CAPACITY>;
/// The result of scanning the given devices.
pub type DeviceScan = Scan<MAX_DEVICES, MAX_EXTENTS>;

/// The device a file system is mounted from: a bare device, or an LVM volume.
pub enum VolumeDevice {
    /// A device with no LVM header: the file system starts at its first block.
    Bare(Box<DeviceFile>),
    /// An LVM volume, possibly spanning several devices.
    Lvm(Box<LvmVolume>),
}

impl BlockDevice for VolumeDevice {
    fn geometry(&self) -> Geometry {
        match self {
            VolumeDevice::Bare(d) => d.geometry(),
            VolumeDevice::Lvm(v) => v.geometry(),
        }
    }

    fn submit(&mut self, now: Instant, request: BlockRequest) -> Result<(), SubmitError> {
        match self {
            VolumeDevice::Bare(d) => d.submit(now, request),
            VolumeDevice::Lvm(v) => v.submit(now, request),
        }
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        match self {
            VolumeDevice::Bare(d) => d.poll(now, memory, done),
            VolumeDevice::Lvm(v) => v.poll(now, memory, done),
        }
    }
}

impl VolumeDevice {
    /// Where volume byte `offset` lives: the member device (index into the volume's images, in
    /// member order), the byte offset in it, and how many bytes are contiguous there. `None`
    /// past the end of the volume.
    pub fn locate_bytes(&self, offset: u64) -> Option<lvm::DeviceRange> {
        match self {
            VolumeDevice::Bare(d) => {
                let capacity = d.geometry().capacity_bytes()?;
                (offset < capacity).then_some(lvm::DeviceRange {
                    device: 0,
                    offset,
                    len: capacity - offset,
                })
            }
            VolumeDevice::Lvm(v) => v.locate_bytes(offset),
        }
    }
}

/// A volume opened from device images.
pub struct OpenedVolume {
    /// The device the file system is mounted from.
    pub device: VolumeDevice,
    /// What it is, for display.
    pub origin: VolumeOrigin,
    /// The plain image file of each device, in member order (the indices of
    /// [`VolumeDevice::locate_bytes`]); for `.gz` devices the inflated copy.
    pub images: Vec<PathBuf>,
}

/// What was opened, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeOrigin {
    /// A bare device.
    Bare,
    /// An LVM volume.
    Lvm {
        /// The volume name.
        name: String,
        /// The volume UUID.
        uuid: String,
        /// LVM major version.
        version: u32,
        /// The member devices, in member order.
        devices: Vec<PathBuf>,
    },
}

/// The plain image for `path`: itself, or for `.gz` an inflated sparse copy in the temporary
/// directory, made once and reused while the source is unchanged.
pub fn plain_image(path: &Path) -> Result<PathBuf, String> {
    fixtures::inflated(path, &std::env::temp_dir().join("host-images"))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Opens every device file read-only (inflating `.gz` images).
pub fn open_devices(paths: &[PathBuf]) -> Result<Vec<DeviceFile>, String> {
    Ok(open_images(paths)?.into_iter().map(|(d, _)| d).collect())
}

/// Opens every device file read-only (inflating `.gz` images), with the plain image of each.
fn open_images(paths: &[PathBuf]) -> Result<Vec<(DeviceFile, PathBuf)>, String> {
    if paths.is_empty() {
        return Err("no --device given".into());
    }
    if paths.len() > MAX_DEVICES {
        return Err(format!("at most {MAX_DEVICES} devices per command"));
    }
    paths
        .iter()
        .map(|path| {
            let image = plain_image(path)?;
            let device = DeviceFile::open_read_only(&image, 512)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((device, image))
        })
        .collect()
}

/// Scans `devices` for LVM headers, using the metadata buffer at `buffer` (`buffer_len` bytes).
pub fn scan_devices(
    devices: &mut [DeviceFile],
    memory: &mut dyn Memory,
    buffer: MemAddr,
    buffer_len: u32,
) -> Result<DeviceScan, String> {
    let mut io = MetadataIo::new(memory, buffer, buffer_len, Instant::ZERO)
        .map_err(|e| format!("LVM metadata buffer: {e}"))?;
    // The images carry no SCSI identity of their own, so snapshot detection by identity does not
    // apply to them.
    let identities = vec![None; devices.len()];
    lvm::scan(devices, &identities, &mut io).map_err(|e| format!("LVM scan: {e}"))
}

/// Describes a volume's status for people.
pub fn status_text(volume: &ScannedVolume<MAX_DEVICES, MAX_EXTENTS>) -> String {
    match volume.status {
        lvm::VolumeStatus::Complete => "complete".into(),
        lvm::VolumeStatus::Incomplete { found, expected } => {
            format!("incomplete: {found} of {expected} devices present")
        }
        lvm::VolumeStatus::Snapshot => {
            "snapshot LUN (not mounted; resignature or force-mount)".into()
        }
        lvm::VolumeStatus::Invalid(e) => format!("invalid: {e}"),
    }
}

/// Opens the one volume the devices at `paths` hold: the bare device when a single device has
/// no LVM header, else the single LVM volume they make up, which must be complete.
pub fn open_volume(
    paths: &[PathBuf],
    memory: &mut dyn Memory,
    buffer: MemAddr,
    buffer_len: u32,
) -> Result<OpenedVolume, String> {
    let (mut devices, images): (Vec<DeviceFile>, Vec<PathBuf>) =
        open_images(paths)?.into_iter().unzip();
    let scan = scan_devices(&mut devices, memory, buffer, buffer_len)?;
    if scan.devices.iter().all(|d| *d == DeviceStatus::NoHeader) {
        return match devices.len() {
            1 => Ok(OpenedVolume {
                device: VolumeDevice::Bare(Box::new(devices.remove(0))),
                origin: VolumeOrigin::Bare,
                images,
            }),
            _ => Err("several devices without LVM headers: give one bare device at a time".into()),
        };
    }
    for (path, status) in paths.iter().zip(&scan.devices) {
        if let DeviceStatus::Invalid(e) = status {
            return Err(format!("{}: {e}", path.display()));
        }
    }
    let volume = match scan.volumes.as_slice() {
        [one] => one,
        [] => return Err("no LVM volume found".into()),
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|v| v.name.as_str().unwrap_or("?").to_string())
                .collect();
            return Err(format!(
                "the devices hold several volumes ({}); give the devices of one",
                names.join(", ")
            ));
        }
    };
    let name = volume.name.as_str().unwrap_or("").to_string();
    if !volume.is_complete() {
        return Err(format!("LVM volume `{name}`: {}", status_text(volume)));
    }
    let order: Vec<usize> = volume.member_devices().collect();
    let member_paths: Vec<PathBuf> = order.iter().map(|&i| paths[i].clone()).collect();
    let member_images: Vec<PathBuf> = order.iter().map(|&i| images[i].clone()).collect();
    let mut slots: Vec<Option<DeviceFile>> = devices.into_iter().map(Some).collect();
    let mut members = heapless::Vec::<Box<DeviceFile>, MAX_DEVICES>::new();
    for index in order {
        let device = slots[index].take().ok_or("a device is a member twice")?;
        members
            .push(Box::new(device))
            .map_err(|_| "too many member devices")?;
    }
    let mut table = MountTable::<1>::new();
    let mounted = table
        .mount(volume, members, MountMode::Normal)
        .map_err(|refused| format!("LVM volume `{name}`: {}", refused.error))?;
    let origin = VolumeOrigin::Lvm {
        name,
        uuid: volume.uuid.to_string(),
        version: volume.version,
        devices: member_paths,
    };
    Ok(OpenedVolume {
        device: VolumeDevice::Lvm(Box::new(mounted)),
        origin,
        images: member_images,
    })
}
