#![cfg_attr(not(feature = "std"), no_std)]
#![doc = include_str!("../README.md")]

pub mod alua;
pub mod ap;
pub mod retry;

pub use alua::{Alua, AluaConfig};
pub use ap::{ActivePassive, ActivePassiveConfig, TrespassStyle};
pub use retry::{ActivationRetry, FailureKind, Gate, RetryState};

/// `VMW_SATP_DEFAULT_AA`: every path active; transport failures mark a path dead (probed back
/// to life by the NMP). This is psa's [`psa::DefaultAa`], re-exported (its sense -> action
/// table is documented there and tested case by case in psa); [`Alua`] and
/// [`ActivePassive`] delegate every answer they do not treat specially to it.
pub use psa::DefaultAa;

/// The ESXi name of [`DefaultAa`].
pub const VMW_SATP_DEFAULT_AA: &str = "VMW_SATP_DEFAULT_AA";
/// The ESXi name of [`Alua`].
pub const VMW_SATP_ALUA: &str = "VMW_SATP_ALUA";
/// The name of [`ActivePassive`] with the START STOP UNIT trespass.
pub const VMW_SATP_DEFAULT_AP: &str = "VMW_SATP_DEFAULT_AP";
/// The name of [`ActivePassive`] with a CLARiiON-style (MODE SELECT page 0x22) trespass.
pub const VMW_SATP_CX: &str = "VMW_SATP_CX";

use psa::{Path, PathId, PathState};

/// Sets the state of `path` in `paths`, if it exists.
pub(crate) fn set_state(paths: &mut [Path], path: PathId, state: PathState) {
    if let Some(p) = paths.get_mut(usize::from(path.0)) {
        p.state = state;
    }
}

/// Whether any path may take I/O.
pub(crate) fn any_usable(paths: &[Path]) -> bool {
    paths.iter().any(|p| p.state.is_usable())
}
