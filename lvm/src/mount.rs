//! Mount policy: snapshots are not mounted by default, and two volumes with the same UUID are
//! never mounted together.

use block::BlockDevice;

use crate::error::{LvmError, LvmErrorKind, Structure, err, err_v};
use crate::scan::{ScannedVolume, VolumeStatus};
use crate::volume::Volume;
use crate::wire::Uuid;

/// How to treat a snapshot volume (one whose devices' recorded identities differ from their
/// actual ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MountMode {
    /// Mount only complete, non-snapshot volumes.
    Normal,
    /// Also mount a snapshot, keeping its UUID (as `esxcli storage vmfs snapshot mount`). The
    /// headers are not changed.
    Force,
}

/// A refused mount: why, and the devices handed back.
#[derive(Debug)]
pub struct MountRefused<D, const N: usize> {
    /// Why.
    pub error: LvmError,
    /// The devices, unchanged.
    pub devices: heapless::Vec<D, N>,
}

/// The set of mounted volume UUIDs (at most `M`).
#[derive(Debug, Clone, Default)]
pub struct MountTable<const M: usize> {
    mounted: heapless::Vec<Uuid, M>,
}

impl<const M: usize> MountTable<M> {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            mounted: heapless::Vec::new(),
        }
    }

    /// Whether a volume with `uuid` is mounted.
    pub fn is_mounted(&self, uuid: &Uuid) -> bool {
        self.mounted.contains(uuid)
    }

    /// Mounts `volume` over `devices` (in member order, see
    /// [`ScannedVolume::member_devices`]) with up to `P` outstanding requests.
    ///
    /// Refused: incomplete or invalid volumes; snapshots unless `mode` is [`MountMode::Force`];
    /// a UUID that is already mounted; a full table; devices that do not fit the volume.
    pub fn mount<D, const N: usize, const E: usize, const P: usize, const SG: usize>(
        &mut self,
        volume: &ScannedVolume<N, E>,
        devices: heapless::Vec<D, N>,
        mode: MountMode,
    ) -> Result<Volume<D, N, E, P, SG>, MountRefused<D, N>>
    where
        D: BlockDevice<SG>,
    {
        let refuse = |error, devices| Err(MountRefused { error, devices });
        match volume.status {
            VolumeStatus::Complete => {}
            VolumeStatus::Snapshot if mode == MountMode::Force => {}
            VolumeStatus::Snapshot => {
                return refuse(err(Structure::Volume, LvmErrorKind::NotAllowed), devices);
            }
            VolumeStatus::Incomplete { found, .. } => {
                return refuse(
                    err_v(
                        Structure::Volume,
                        LvmErrorKind::Incomplete,
                        u64::from(found),
                    ),
                    devices,
                );
            }
            VolumeStatus::Invalid(e) => return refuse(e, devices),
        }
        if self.is_mounted(&volume.uuid) {
            return refuse(
                err(Structure::MountTable, LvmErrorKind::AlreadyMounted),
                devices,
            );
        }
        if self.mounted.is_full() {
            return refuse(
                err_v(
                    Structure::MountTable,
                    LvmErrorKind::CapacityExceeded,
                    M as u64,
                ),
                devices,
            );
        }
        let mounted = Volume::new(volume, devices)
            .map_err(|(error, devices)| MountRefused { error, devices })?;
        // Cannot fail: checked not full above.
        let _ = self.mounted.push(volume.uuid);
        Ok(mounted)
    }

    /// Unmounts `volume` and hands its devices back. Requests still outstanding are abandoned
    /// with it: poll until [`Volume::outstanding`] is zero first.
    pub fn unmount<D, const N: usize, const E: usize, const P: usize, const SG: usize>(
        &mut self,
        volume: Volume<D, N, E, P, SG>,
    ) -> heapless::Vec<D, N>
    where
        D: BlockDevice<SG>,
    {
        let uuid = volume.uuid();
        self.mounted.retain(|u| *u != uuid);
        volume.into_devices()
    }
}
