#![no_std]
#![doc = include_str!("../README.md")]

pub mod edit;
pub mod error;
pub mod io;
pub mod mount;
pub mod scan;
pub mod volume;
pub mod wire;

pub use edit::{CreateVolume, NewDevice, create, grow, resignature, span};
pub use error::{LvmError, LvmErrorKind, Structure};
pub use io::MetadataIo;
pub use mount::{MountMode, MountRefused, MountTable};
pub use scan::{DeviceStatus, Extent, Member, Scan, ScannedVolume, VolumeStatus, scan};
pub use volume::{DeviceRange, ExtentMap, MapExtent, Piece, Volume};
pub use wire::{DeviceName, DiskId, Label, Uuid, VolumeName};
