//! Sense data in fixed (0x70/0x71) and descriptor (0x72/0x73) format (SPC-4 4.5).
//!
//! [`Sense`] is a checked view over sense bytes of either format; [`SenseRepr`] is the parsed
//! form, emitted in the format a caller asks for.

use core::fmt;

use crate::status::{Asc, SenseKey};

/// The largest sense data this crate emits or keeps (descriptor format with an information,
/// a command-specific and a sense-key-specific descriptor needs 36 bytes).
pub const SENSE_CAPACITY: usize = 64;

/// A sense buffer of bounded length, as carried by a completion.
pub type SenseBuf = heapless::Vec<u8, SENSE_CAPACITY>;

mod field {
    pub(super) const RESPONSE_CODE: usize = 0;
    // Fixed format.
    pub(super) const F_KEY: usize = 2;
    pub(super) const F_INFORMATION: core::ops::Range<usize> = 3..7;
    pub(super) const F_ADDITIONAL_LEN: usize = 7;
    pub(super) const F_COMMAND_SPECIFIC: core::ops::Range<usize> = 8..12;
    pub(super) const F_ASC: usize = 12;
    pub(super) const F_ASCQ: usize = 13;
    pub(super) const F_SKS: core::ops::Range<usize> = 15..18;
    pub(super) const F_MIN_LEN: usize = 14;
    pub(super) const F_LEN: usize = 18;
    // Descriptor format.
    pub(super) const D_KEY: usize = 1;
    pub(super) const D_ASC: usize = 2;
    pub(super) const D_ASCQ: usize = 3;
    pub(super) const D_ADDITIONAL_LEN: usize = 7;
    pub(super) const D_HEADER_LEN: usize = 8;
}

/// Which of the two sense data formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SenseFormat {
    /// Fixed format, response codes 0x70 (current) and 0x71 (deferred).
    Fixed,
    /// Descriptor format, response codes 0x72 (current) and 0x73 (deferred).
    Descriptor,
}

/// Why sense bytes could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SenseError {
    /// The buffer is shorter than its format or its additional length requires.
    Truncated,
    /// The response code is not one of 0x70..=0x73.
    UnknownResponseCode(u8),
    /// A descriptor runs past the end of the sense data, or is malformed.
    BadDescriptor,
}

impl fmt::Display for SenseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SenseError::Truncated => f.write_str("sense data truncated"),
            SenseError::UnknownResponseCode(c) => write!(f, "unknown sense response code {c:#x}"),
            SenseError::BadDescriptor => f.write_str("malformed sense data descriptor"),
        }
    }
}

impl core::error::Error for SenseError {}

/// A checked view over sense data of either format.
#[derive(Debug, Clone, Copy)]
pub struct Sense<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Sense<T> {
    /// Wraps `buffer` without checking it; accessors may panic until [`Sense::check_len`] passes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after checking its response code and length.
    pub fn new_checked(buffer: T) -> Result<Self, SenseError> {
        let sense = Self::new_unchecked(buffer);
        sense.check_len()?;
        Ok(sense)
    }

    /// Checks that the response code is known and the buffer holds the fields it implies.
    /// Fixed-format sense shorter than 18 bytes is accepted if it reaches the ASCQ.
    pub fn check_len(&self) -> Result<(), SenseError> {
        let b = self.buffer.as_ref();
        let code = *b.get(field::RESPONSE_CODE).ok_or(SenseError::Truncated)?;
        match self.format_of(code)? {
            SenseFormat::Fixed if b.len() < field::F_MIN_LEN => Err(SenseError::Truncated),
            SenseFormat::Descriptor if b.len() < field::D_HEADER_LEN => Err(SenseError::Truncated),
            _ => Ok(()),
        }
    }

    fn format_of(&self, code: u8) -> Result<SenseFormat, SenseError> {
        match code & 0x7F {
            0x70 | 0x71 => Ok(SenseFormat::Fixed),
            0x72 | 0x73 => Ok(SenseFormat::Descriptor),
            other => Err(SenseError::UnknownResponseCode(other)),
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The response code (0x70..=0x73).
    pub fn response_code(&self) -> u8 {
        self.buffer.as_ref()[field::RESPONSE_CODE] & 0x7F
    }

    /// The format.
    pub fn format(&self) -> SenseFormat {
        if self.response_code() >= 0x72 {
            SenseFormat::Descriptor
        } else {
            SenseFormat::Fixed
        }
    }

    /// Whether the sense data reports a deferred error.
    pub fn is_deferred(&self) -> bool {
        matches!(self.response_code(), 0x71 | 0x73)
    }

    /// The sense key.
    pub fn key(&self) -> SenseKey {
        let b = self.buffer.as_ref();
        match self.format() {
            SenseFormat::Fixed => SenseKey(b[field::F_KEY] & 0x0F),
            SenseFormat::Descriptor => SenseKey(b[field::D_KEY] & 0x0F),
        }
    }

    /// The additional sense code and qualifier.
    pub fn asc(&self) -> Asc {
        let b = self.buffer.as_ref();
        match self.format() {
            SenseFormat::Fixed => Asc::new(b[field::F_ASC], b[field::F_ASCQ]),
            SenseFormat::Descriptor => Asc::new(b[field::D_ASC], b[field::D_ASCQ]),
        }
    }

    /// The ADDITIONAL SENSE LENGTH field.
    pub fn additional_len(&self) -> u8 {
        let b = self.buffer.as_ref();
        match self.format() {
            SenseFormat::Fixed => b[field::F_ADDITIONAL_LEN],
            SenseFormat::Descriptor => b[field::D_ADDITIONAL_LEN],
        }
    }

    /// The bytes the additional length covers that are present in the buffer.
    fn body(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = (8 + usize::from(self.additional_len())).min(b.len());
        &b[..end]
    }

    /// The descriptors of descriptor-format sense (empty for fixed format), as
    /// `(type, payload)` pairs. Stops at the first descriptor that runs past the end.
    pub fn descriptors(&self) -> Descriptors<'_> {
        let rest = match self.format() {
            SenseFormat::Fixed => &[][..],
            SenseFormat::Descriptor => self.body().get(field::D_HEADER_LEN..).unwrap_or(&[]),
        };
        Descriptors { rest }
    }
}

/// An iterator over the descriptors of descriptor-format sense data.
#[derive(Debug, Clone)]
pub struct Descriptors<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Descriptors<'a> {
    type Item = Result<(u8, &'a [u8]), SenseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (kind, len) = match self.rest {
            [kind, len, ..] => (*kind, usize::from(*len)),
            _ => {
                self.rest = &[];
                return Some(Err(SenseError::BadDescriptor));
            }
        };
        match self.rest.get(2..2 + len) {
            Some(payload) => {
                self.rest = &self.rest[2 + len..];
                Some(Ok((kind, payload)))
            }
            None => {
                self.rest = &[];
                Some(Err(SenseError::BadDescriptor))
            }
        }
    }
}

/// The SENSE KEY SPECIFIC field (SPC-4 4.5.2.4), when its SKSV bit is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SenseKeySpecific {
    /// ILLEGAL REQUEST: which byte (and bit) of the CDB or the parameter list is wrong.
    FieldPointer {
        /// `true` if the error is in the CDB, `false` if in the parameter data (C/D bit).
        in_cdb: bool,
        /// The bit within the byte (BPV set), or `None`.
        bit: Option<u8>,
        /// The byte.
        byte: u16,
    },
    /// NOT READY and NO SENSE: progress of an operation, in 65536ths.
    Progress(u16),
    /// Any other sense key: the 15 bits that follow SKSV, unparsed.
    Raw(u16, u8),
}

impl SenseKeySpecific {
    fn encode(self) -> [u8; 3] {
        match self {
            SenseKeySpecific::FieldPointer { in_cdb, bit, byte } => {
                let mut b0 = 0x80;
                if in_cdb {
                    b0 |= 0x40;
                }
                if let Some(bit) = bit {
                    b0 |= 0x08 | (bit & 0x07);
                }
                let [hi, lo] = byte.to_be_bytes();
                [b0, hi, lo]
            }
            SenseKeySpecific::Progress(p) => {
                let [hi, lo] = p.to_be_bytes();
                [0x80, hi, lo]
            }
            SenseKeySpecific::Raw(hi, lo) => {
                let [a, b] = hi.to_be_bytes();
                [0x80 | (a & 0x7F), b, lo]
            }
        }
    }

    fn decode(key: SenseKey, b: [u8; 3]) -> Option<Self> {
        if b[0] & 0x80 == 0 {
            return None;
        }
        Some(match key {
            SenseKey::ILLEGAL_REQUEST => SenseKeySpecific::FieldPointer {
                in_cdb: b[0] & 0x40 != 0,
                bit: (b[0] & 0x08 != 0).then_some(b[0] & 0x07),
                byte: u16::from_be_bytes([b[1], b[2]]),
            },
            SenseKey::NOT_READY | SenseKey::NO_SENSE => {
                SenseKeySpecific::Progress(u16::from_be_bytes([b[1], b[2]]))
            }
            _ => SenseKeySpecific::Raw(u16::from_be_bytes([b[0] & 0x7F, b[1]]), b[2]),
        })
    }
}

/// Parsed sense data, emitted in either format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SenseRepr {
    /// Deferred (0x71/0x73) rather than current (0x70/0x72).
    pub deferred: bool,
    /// The sense key.
    pub key: SenseKey,
    /// ASC and ASCQ.
    pub asc: Asc,
    /// The INFORMATION field (an LBA, a miscompare offset), with VALID set.
    pub information: Option<u64>,
    /// The COMMAND-SPECIFIC INFORMATION field, if nonzero.
    pub command_specific: Option<u64>,
    /// The sense-key-specific field, with SKSV set.
    pub key_specific: Option<SenseKeySpecific>,
}

impl SenseRepr {
    /// Sense data of `key` and `asc` with no further fields.
    pub const fn new(key: SenseKey, asc: Asc) -> Self {
        Self {
            deferred: false,
            key,
            asc,
            information: None,
            command_specific: None,
            key_specific: None,
        }
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN CDB, pointing at `byte` (and `bit`) of the CDB.
    pub const fn invalid_field_in_cdb(byte: u16, bit: Option<u8>) -> Self {
        Self::new(SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB).with_key_specific(
            SenseKeySpecific::FieldPointer {
                in_cdb: true,
                bit,
                byte,
            },
        )
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST, pointing at `byte` of the data.
    pub const fn invalid_field_in_parameter_list(byte: u16, bit: Option<u8>) -> Self {
        Self::new(
            SenseKey::ILLEGAL_REQUEST,
            Asc::INVALID_FIELD_IN_PARAMETER_LIST,
        )
        .with_key_specific(SenseKeySpecific::FieldPointer {
            in_cdb: false,
            bit,
            byte,
        })
    }

    /// The same sense data with the INFORMATION field set.
    pub const fn with_information(mut self, information: u64) -> Self {
        self.information = Some(information);
        self
    }

    /// The same sense data with the sense-key-specific field set.
    pub const fn with_key_specific(mut self, key_specific: SenseKeySpecific) -> Self {
        self.key_specific = Some(key_specific);
        self
    }

    /// Parses sense data of either format.
    pub fn parse<T: AsRef<[u8]>>(sense: &Sense<T>) -> Result<Self, SenseError> {
        sense.check_len()?;
        let key = sense.key();
        let mut repr = SenseRepr::new(key, sense.asc());
        repr.deferred = sense.is_deferred();
        let b = sense.buffer.as_ref();
        match sense.format() {
            SenseFormat::Fixed => {
                let info = u32::from_be_bytes([b[3], b[4], b[5], b[6]]);
                if b[0] & 0x80 != 0 {
                    repr.information = Some(u64::from(info));
                }
                let cs = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
                if cs != 0 {
                    repr.command_specific = Some(u64::from(cs));
                }
                let body = sense.body();
                if let Some(sks) = body.get(field::F_SKS) {
                    repr.key_specific = SenseKeySpecific::decode(key, [sks[0], sks[1], sks[2]]);
                }
            }
            SenseFormat::Descriptor => {
                for descriptor in sense.descriptors() {
                    let (kind, payload) = descriptor?;
                    match (kind, payload) {
                        (0x00, [flags, _, rest @ ..]) if rest.len() == 8 && flags & 0x80 != 0 => {
                            repr.information = Some(be_u64(rest));
                        }
                        (0x00, [_, _, rest @ ..]) if rest.len() == 8 => {}
                        (0x01, [_, _, rest @ ..]) if rest.len() == 8 => {
                            repr.command_specific = Some(be_u64(rest));
                        }
                        (0x02, [_, _, a, b, c, _]) => {
                            repr.key_specific = SenseKeySpecific::decode(key, [*a, *b, *c]);
                        }
                        (0x00..=0x02, _) => return Err(SenseError::BadDescriptor),
                        _ => {}
                    }
                }
            }
        }
        Ok(repr)
    }

    /// The length of the emitted sense data in `format`.
    pub const fn buffer_len(&self, format: SenseFormat) -> usize {
        match format {
            SenseFormat::Fixed => field::F_LEN,
            SenseFormat::Descriptor => {
                let mut len = field::D_HEADER_LEN;
                if self.information.is_some() {
                    len += 12;
                }
                if self.command_specific.is_some() {
                    len += 12;
                }
                if self.key_specific.is_some() {
                    len += 8;
                }
                len
            }
        }
    }

    /// Emits the sense data in `format` into the first [`SenseRepr::buffer_len`] bytes of
    /// `buffer`. In fixed format, an INFORMATION or COMMAND-SPECIFIC value above `u32::MAX`
    /// does not fit: VALID is cleared and the field is all ones, as SPC-4 allows.
    ///
    /// Returns the number of bytes written, or `None` if `buffer` is too short.
    pub fn emit(&self, format: SenseFormat, buffer: &mut [u8]) -> Option<usize> {
        let len = self.buffer_len(format);
        let out = buffer.get_mut(..len)?;
        out.fill(0);
        match format {
            SenseFormat::Fixed => {
                out[0] = if self.deferred { 0x71 } else { 0x70 };
                out[field::F_KEY] = self.key.0 & 0x0F;
                if let Some(info) = self.information {
                    match u32::try_from(info) {
                        Ok(v) => {
                            out[0] |= 0x80;
                            out[field::F_INFORMATION].copy_from_slice(&v.to_be_bytes());
                        }
                        Err(_) => out[field::F_INFORMATION].fill(0xFF),
                    }
                }
                out[field::F_ADDITIONAL_LEN] = (field::F_LEN - 8) as u8;
                if let Some(cs) = self.command_specific {
                    let v = u32::try_from(cs).unwrap_or(u32::MAX);
                    out[field::F_COMMAND_SPECIFIC].copy_from_slice(&v.to_be_bytes());
                }
                out[field::F_ASC] = self.asc.asc;
                out[field::F_ASCQ] = self.asc.ascq;
                if let Some(sks) = self.key_specific {
                    out[field::F_SKS].copy_from_slice(&sks.encode());
                }
            }
            SenseFormat::Descriptor => {
                out[0] = if self.deferred { 0x73 } else { 0x72 };
                out[field::D_KEY] = self.key.0 & 0x0F;
                out[field::D_ASC] = self.asc.asc;
                out[field::D_ASCQ] = self.asc.ascq;
                out[field::D_ADDITIONAL_LEN] = (len - field::D_HEADER_LEN) as u8;
                let mut at = field::D_HEADER_LEN;
                if let Some(info) = self.information {
                    out[at..at + 4].copy_from_slice(&[0x00, 0x0A, 0x80, 0x00]);
                    out[at + 4..at + 12].copy_from_slice(&info.to_be_bytes());
                    at += 12;
                }
                if let Some(cs) = self.command_specific {
                    out[at..at + 2].copy_from_slice(&[0x01, 0x0A]);
                    out[at + 4..at + 12].copy_from_slice(&cs.to_be_bytes());
                    at += 12;
                }
                if let Some(sks) = self.key_specific {
                    out[at..at + 2].copy_from_slice(&[0x02, 0x06]);
                    out[at + 4..at + 7].copy_from_slice(&sks.encode());
                }
            }
        }
        Some(len)
    }

    /// The sense data emitted in `format` as a [`SenseBuf`].
    pub fn to_buf(&self, format: SenseFormat) -> SenseBuf {
        let mut bytes = [0u8; SENSE_CAPACITY];
        let len = self.emit(format, &mut bytes).unwrap_or(0);
        // `len` never exceeds 36 < SENSE_CAPACITY.
        SenseBuf::from_slice(&bytes[..len]).unwrap_or_default()
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[..8]);
    u64::from_be_bytes(bytes)
}

impl fmt::Display for SenseRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.asc)?;
        if let Some(info) = self.information {
            write!(f, " (information {info:#x})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_field_pointer_layout() {
        let repr = SenseRepr::invalid_field_in_cdb(2, Some(5));
        let mut b = [0u8; 18];
        assert_eq!(repr.emit(SenseFormat::Fixed, &mut b), Some(18));
        assert_eq!(b[0], 0x70);
        assert_eq!(b[2], 0x05);
        assert_eq!(b[7], 10);
        assert_eq!((b[12], b[13]), (0x24, 0x00));
        assert_eq!(&b[15..18], &[0xCD, 0x00, 0x02]);
        let parsed = SenseRepr::parse(&Sense::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(parsed, repr);
    }

    #[test]
    fn descriptor_information_layout() {
        let repr = SenseRepr::new(SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY)
            .with_information(0x1_0000_0001);
        let mut b = [0u8; 20];
        assert_eq!(repr.emit(SenseFormat::Descriptor, &mut b), Some(20));
        assert_eq!(&b[..8], &[0x72, 0x0E, 0x1D, 0x00, 0, 0, 0, 12]);
        assert_eq!(&b[8..12], &[0x00, 0x0A, 0x80, 0x00]);
        let parsed = SenseRepr::parse(&Sense::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(parsed, repr);
        // Fixed format cannot carry it: VALID is cleared.
        let mut f = [0u8; 18];
        repr.emit(SenseFormat::Fixed, &mut f).unwrap();
        assert_eq!(f[0], 0x70);
    }

    #[test]
    fn malformed_sense_is_an_error() {
        assert_eq!(
            Sense::new_checked(&[0x70u8; 5][..]).err(),
            Some(SenseError::Truncated)
        );
        assert!(matches!(
            Sense::new_checked(&[0x12u8; 18][..]).err(),
            Some(SenseError::UnknownResponseCode(0x12))
        ));
        let bad = [0x72, 5, 0x24, 0, 0, 0, 0, 4, 0x02, 0x06, 0, 0];
        let s = Sense::new_checked(&bad[..]).unwrap();
        assert_eq!(SenseRepr::parse(&s), Err(SenseError::BadDescriptor));
    }
}
