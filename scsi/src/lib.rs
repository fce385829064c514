//! SCSI for the storage path.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod cdb;
pub mod sense;
pub mod status;

pub use cdb::{COMMANDS, Cdb, CdbError, CdbRepr, CdbSize, CommandSpec, Rw, RwKind};
pub use sense::{Sense, SenseBuf, SenseError, SenseFormat, SenseKeySpecific, SenseRepr};
pub use status::{ASC_TABLE, Asc, SenseKey, Status};
