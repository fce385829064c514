//! The CLARiiON trespass mode page (0x22) that an active/passive array of the
//! [`crate::TrespassCommand::ModeSelectPage22`] kind takes in MODE SELECT (6) and (10); its
//! bytes are documented there.

use block::{Memory, SgList};
use scsi::{Asc, Command, DataDirection, Residual, SenseKey, SenseRepr};

/// PAGE CODE of the CLARiiON trespass page.
pub const TRESPASS_PAGE: u8 = 0x22;
/// PAGE LENGTH of the short form of the trespass page.
pub const TRESPASS_SHORT_LEN: u8 = 0x02;
/// PAGE LENGTH of the long form of the trespass page.
pub const TRESPASS_LONG_LEN: u8 = 0x09;
/// TRESPASS CODE (bits 6..0 of the page's byte 2): move the LU to the storage processor that
/// received the command.
pub const TRESPASS_CODE: u8 = 0x01;

/// The fields of a MODE SELECT CDB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModeSelect {
    pub ten: bool,
    pub pf: bool,
    pub sp: bool,
    pub length: u16,
}

fn illegal(asc: Asc) -> SenseRepr {
    SenseRepr::new(SenseKey::ILLEGAL_REQUEST, asc)
}

fn length_error() -> SenseRepr {
    illegal(Asc::PARAMETER_LIST_LENGTH_ERROR)
}

fn invalid_param(byte: u64, bit: Option<u8>) -> SenseRepr {
    SenseRepr::invalid_field_in_parameter_list(u16::try_from(byte).unwrap_or(u16::MAX), bit)
}

/// Reads `out.len()` bytes of the parameter list from `offset`.
fn read<const SG: usize>(
    memory: &dyn Memory,
    sg: &SgList<SG>,
    offset: u64,
    out: &mut [u8],
) -> Result<(), SenseRepr> {
    let data_phase = SenseRepr::new(SenseKey::ABORTED_COMMAND, Asc::DATA_PHASE_ERROR);
    let part = sg.slice(offset, out.len() as u64).map_err(|_| data_phase)?;
    block::gather(memory, &part, out).map_err(|_| data_phase)
}

/// Looks at a MODE SELECT's parameter list for the trespass page.
///
/// `Ok(Some(residual))`: a well-formed trespass; `Ok(None)`: the list holds no trespass page
/// (empty, no page, or another page first), for the LU or the passive answer; `Err(sense)`:
/// the CDB or the list is malformed (checked as far as needed to tell whether it is a
/// trespass).
pub(crate) fn examine<const SG: usize>(
    select: ModeSelect,
    command: &Command<SG>,
    memory: &dyn Memory,
) -> Result<Option<Residual>, SenseRepr> {
    let length = u64::from(select.length);
    if length == 0 {
        return Ok(None);
    }
    // The CDB first, as the LU checks it.
    if select.sp {
        return Err(SenseRepr::invalid_field_in_cdb(1, Some(0)));
    }
    if !select.pf {
        return Err(SenseRepr::invalid_field_in_cdb(1, Some(4)));
    }
    let sent = command.sg.total_len();
    if command.direction == DataDirection::FromDevice && sent > 0 {
        return Err(illegal(Asc::INVALID_FIELD_IN_COMMAND_IU));
    }
    if length > sent {
        // PARAMETER LIST LENGTH asks for more than the initiator sends.
        return Err(SenseRepr::invalid_field_in_cdb(
            if select.ten { 7 } else { 4 },
            None,
        ));
    }
    let header_len: u64 = if select.ten { 8 } else { 4 };
    if length < header_len {
        return Err(length_error());
    }
    let mut header = [0u8; 8];
    let header = &mut header[..header_len as usize];
    read(memory, &command.sg, 0, header)?;
    let descriptors = if select.ten {
        u64::from(u16::from_be_bytes([header[6], header[7]]))
    } else {
        u64::from(header[3])
    };
    let page_at = header_len + descriptors;
    if page_at > length {
        return Err(invalid_param(if select.ten { 6 } else { 3 }, None));
    }
    if page_at == length {
        return Ok(None);
    }
    let mut page = [0u8; 2 + TRESPASS_LONG_LEN as usize];
    let available = (length - page_at).min(page.len() as u64);
    let page = &mut page[..available as usize];
    read(memory, &command.sg, page_at, page)?;
    if page[0] & 0x3F != TRESPASS_PAGE {
        return Ok(None);
    }
    if page[0] & 0x40 != 0 {
        // SPF: the trespass page has no subpages.
        return Err(invalid_param(page_at, Some(6)));
    }
    let Some(&page_len) = page.get(1) else {
        return Err(length_error());
    };
    if page_len != TRESPASS_SHORT_LEN && page_len != TRESPASS_LONG_LEN {
        return Err(invalid_param(page_at + 1, None));
    }
    let end = page_at + 2 + u64::from(page_len);
    if length < end {
        return Err(length_error());
    }
    // From here the whole page has been read (`available` is its length).
    if page.get(2).is_none_or(|code| code & 0x7F != TRESPASS_CODE) {
        return Err(invalid_param(page_at + 2, None));
    }
    let target_ok = if page_len == TRESPASS_SHORT_LEN {
        page.get(3) == Some(&0xFF)
    } else {
        page.get(3..5) == Some(&[0xFF, 0xFF][..])
    };
    if !target_ok {
        return Err(invalid_param(page_at + 3, None));
    }
    if length > end {
        // The trespass page must be the only page.
        return Err(invalid_param(end, None));
    }
    Ok(Some(match sent - length {
        0 => Residual::None,
        extra => Residual::Underflow(extra),
    }))
}
