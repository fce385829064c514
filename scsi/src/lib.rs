//! SCSI for the storage path.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod cdb;
pub mod lun;
pub mod response;
pub mod sense;
pub mod status;
pub mod transport;

pub use cdb::{COMMANDS, Cdb, CdbError, CdbRepr, CdbSize, CommandSpec, Rw, RwKind};
pub use lun::{Lun, LunConfig, PortGroup};
pub use response::{AccessState, NaaId};
pub use sense::{Sense, SenseBuf, SenseError, SenseFormat, SenseKeySpecific, SenseRepr};
pub use status::{ASC_TABLE, Asc, SenseKey, Status};
pub use transport::{
    CdbBytes, Command, CommandCompletion, DataDirection, InitiatorId, Nexus, Residual,
    ServiceResponse, Transport, TransportSubmitError, TransportSubmitErrorKind,
};
