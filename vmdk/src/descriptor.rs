//! Descriptor files: the text that names a disk's type, its extents, its parent and its disk
//! database.
//!
//! A [`Descriptor`] borrows the text (held in a caller's buffer) and indexes its lines into a
//! fixed-capacity table, so that parsing allocates nothing and emitting reproduces the original
//! bytes exactly, unknown keys and comments included. Values may be changed with
//! [`Descriptor::set`]; only the changed value's bytes differ on emit. New descriptors are
//! written with [`write_descriptor`].

use core::fmt::Write as _;

use crate::error::{ErrorKind, Result, err};

/// The default capacity of the line table.
pub const DEFAULT_LINES: usize = 128;
/// The most key changes one [`Descriptor`] holds before it must be emitted.
pub const MAX_EDITS: usize = 8;
/// The longest value [`Descriptor::set`] accepts.
pub const MAX_VALUE_LEN: usize = 256;
/// The longest descriptor text this crate reads (ESXi caps them far lower).
pub const MAX_DESCRIPTOR_BYTES: usize = 64 * 1024;

/// The value of `createType`: how the disk is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CreateType {
    /// One hosted sparse file with an embedded descriptor.
    MonolithicSparse,
    /// A descriptor and one flat file.
    MonolithicFlat,
    /// A descriptor and sparse files of at most 2 GiB each.
    TwoGbMaxExtentSparse,
    /// A descriptor and flat files of at most 2 GiB each.
    TwoGbMaxExtentFlat,
    /// One stream-optimized (compressed, append-only) sparse file.
    StreamOptimized,
    /// An ESX flat disk on VMFS.
    Vmfs,
    /// An ESX delta disk (`COWD` extent) on VMFS.
    VmfsSparse,
    /// An ESX space-efficient sparse disk.
    SeSparse,
    /// A raw device mapping, virtual compatibility.
    VmfsRawDeviceMap,
    /// A raw device mapping, physical compatibility (pass-through).
    VmfsPassthroughRawDeviceMap,
    /// A whole physical device.
    FullDevice,
    /// Partitions of a physical device.
    PartitionedDevice,
    /// A custom layout.
    Custom,
}

impl CreateType {
    const ALL: [(CreateType, &'static str); 13] = [
        (CreateType::MonolithicSparse, "monolithicSparse"),
        (CreateType::MonolithicFlat, "monolithicFlat"),
        (CreateType::TwoGbMaxExtentSparse, "twoGbMaxExtentSparse"),
        (CreateType::TwoGbMaxExtentFlat, "twoGbMaxExtentFlat"),
        (CreateType::StreamOptimized, "streamOptimized"),
        (CreateType::Vmfs, "vmfs"),
        (CreateType::VmfsSparse, "vmfsSparse"),
        (CreateType::SeSparse, "seSparse"),
        (CreateType::VmfsRawDeviceMap, "vmfsRawDeviceMap"),
        (
            CreateType::VmfsPassthroughRawDeviceMap,
            "vmfsPassthroughRawDeviceMap",
        ),
        (CreateType::FullDevice, "fullDevice"),
        (CreateType::PartitionedDevice, "partitionedDevice"),
        (CreateType::Custom, "custom"),
    ];

    /// Parses a `createType` value (case-insensitive, as VMware and QEMU accept it).
    pub fn parse(value: &[u8]) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, name)| name.as_bytes().eq_ignore_ascii_case(value))
            .map(|(t, _)| *t)
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, n)| *n)
            .unwrap_or("custom")
    }
}

/// Who may access an extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read and write.
    ReadWrite,
    /// Read only.
    ReadOnly,
    /// No access.
    NoAccess,
}

impl Access {
    /// Parses `RW`, `RDONLY` or `NOACCESS`.
    pub fn parse(word: &[u8]) -> Option<Self> {
        match word {
            b"RW" => Some(Access::ReadWrite),
            b"RDONLY" => Some(Access::ReadOnly),
            b"NOACCESS" => Some(Access::NoAccess),
            _ => None,
        }
    }

    /// The descriptor spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadWrite => "RW",
            Access::ReadOnly => "RDONLY",
            Access::NoAccess => "NOACCESS",
        }
    }
}

/// The type of one extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtentType {
    /// A flat file, or a region of one starting at an offset.
    Flat,
    /// A hosted sparse (`KDMV`) file.
    Sparse,
    /// No file: reads return zeros.
    Zero,
    /// An ESX flat file on VMFS.
    Vmfs,
    /// An ESX delta (`COWD`) file on VMFS.
    VmfsSparse,
    /// A raw device mapping (virtual compatibility).
    VmfsRdm,
    /// A raw device (physical compatibility).
    VmfsRaw,
    /// An ESX space-efficient sparse file.
    SeSparse,
}

impl ExtentType {
    const ALL: [(ExtentType, &'static str); 8] = [
        (ExtentType::Flat, "FLAT"),
        (ExtentType::Sparse, "SPARSE"),
        (ExtentType::Zero, "ZERO"),
        (ExtentType::Vmfs, "VMFS"),
        (ExtentType::VmfsSparse, "VMFSSPARSE"),
        (ExtentType::VmfsRdm, "VMFSRDM"),
        (ExtentType::VmfsRaw, "VMFSRAW"),
        (ExtentType::SeSparse, "SESPARSE"),
    ];

    /// Parses an extent type word.
    pub fn parse(word: &[u8]) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, n)| n.as_bytes() == word)
            .map(|(t, _)| *t)
    }

    /// The descriptor spelling.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, n)| *n)
            .unwrap_or("FLAT")
    }

    /// Whether the extent's bytes are at a fixed offset of its file (flat, VMFS, RDM).
    pub fn is_flat_like(self) -> bool {
        matches!(
            self,
            ExtentType::Flat | ExtentType::Vmfs | ExtentType::VmfsRdm | ExtentType::VmfsRaw
        )
    }
}

/// One parsed extent line: `ACCESS SECTORS TYPE ["FILE" [OFFSET]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent<'a> {
    /// Who may access it.
    pub access: Access,
    /// Its size in 512-byte sectors.
    pub sectors: u64,
    /// Its type.
    pub kind: ExtentType,
    /// The file name, relative to the descriptor's directory (absent for `ZERO`).
    pub file_name: Option<&'a [u8]>,
    /// The offset in sectors inside the file (flat extents), 0 if absent.
    pub offset: u64,
}

impl Extent<'_> {
    /// The file name as UTF-8, if it has one and it is valid UTF-8.
    pub fn file_name_str(&self) -> Option<&str> {
        self.file_name.and_then(|n| core::str::from_utf8(n).ok())
    }
}

/// What one line of a descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blank,
    Comment,
    Pair {
        key: (u32, u32),
        value: (u32, u32),
    },
    Extent {
        access: Access,
        sectors: u64,
        kind: ExtentType,
        name: Option<(u32, u32)>,
        offset: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    start: u32,
    /// End of the line's content, before any `\r\n` or `\n`.
    end: u32,
    kind: Kind,
}

#[derive(Debug, Clone)]
struct Edit {
    /// The line whose value changes, or `None` for a new key.
    line: Option<u16>,
    key: heapless::String<64>,
    value: heapless::String<MAX_VALUE_LEN>,
}

/// A parsed descriptor over borrowed text, with up to `L` lines.
#[derive(Debug, Clone)]
pub struct Descriptor<'a, const L: usize = DEFAULT_LINES> {
    text: &'a [u8],
    lines: heapless::Vec<Line, L>,
    edits: heapless::Vec<Edit, MAX_EDITS>,
}

fn trim(bytes: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && matches!(bytes[start], b' ' | b'\t' | b'\r') {
        start += 1;
    }
    while end > start && matches!(bytes[end - 1], b' ' | b'\t' | b'\r') {
        end -= 1;
    }
    (start, end)
}

fn parse_u64(word: &[u8]) -> Option<u64> {
    if word.is_empty() || word.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in word {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Parses a CID: 8 hex digits (fewer accepted), as in `CID=fffffffe`.
pub fn parse_cid(word: &[u8]) -> Option<u32> {
    if word.is_empty() || word.len() > 8 {
        return None;
    }
    let mut v: u32 = 0;
    for &b in word {
        let d = (b as char).to_digit(16)?;
        v = (v << 4) | d;
    }
    Some(v)
}

/// Splits `bytes[start..end]` into whitespace-separated words, a quoted word being one word.
/// Returns the word ranges (quotes excluded) and how many there were.
fn words(bytes: &[u8], start: usize, end: usize) -> Option<([(usize, usize); 6], usize)> {
    let mut out = [(0usize, 0usize); 6];
    let mut n = 0;
    let mut i = start;
    while i < end {
        if matches!(bytes[i], b' ' | b'\t' | b'\r') {
            i += 1;
            continue;
        }
        if n == out.len() {
            return None;
        }
        if bytes[i] == b'"' {
            let s = i + 1;
            let close = bytes[s..end].iter().position(|&b| b == b'"')? + s;
            out[n] = (s, close);
            i = close + 1;
        } else {
            let s = i;
            while i < end && !matches!(bytes[i], b' ' | b'\t' | b'\r') {
                i += 1;
            }
            out[n] = (s, i);
        }
        n += 1;
    }
    Some((out, n))
}

fn parse_line(text: &[u8], start: usize, end: usize, number: u64) -> Result<Kind> {
    let (s, e) = trim(text, start, end);
    if s == e {
        return Ok(Kind::Blank);
    }
    if text[s] == b'#' {
        return Ok(Kind::Comment);
    }
    let first_word_end = text[s..e]
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t'))
        .map_or(e, |p| p + s);
    if let Some(access) = Access::parse(&text[s..first_word_end]) {
        let (w, n) = words(text, s, e).ok_or(err(ErrorKind::BadDescriptor, number))?;
        if !(3..=5).contains(&n) {
            return Err(err(ErrorKind::BadDescriptor, number));
        }
        let sectors = parse_u64(&text[w[1].0..w[1].1]).ok_or(err(ErrorKind::BadSize, number))?;
        let kind =
            ExtentType::parse(&text[w[2].0..w[2].1]).ok_or(err(ErrorKind::UnknownType, number))?;
        let name = (n >= 4).then(|| (w[3].0 as u32, w[3].1 as u32));
        if name.is_none() && kind != ExtentType::Zero {
            return Err(err(ErrorKind::BadDescriptor, number));
        }
        let offset = if n == 5 {
            parse_u64(&text[w[4].0..w[4].1]).ok_or(err(ErrorKind::BadSize, number))?
        } else {
            0
        };
        return Ok(Kind::Extent {
            access,
            sectors,
            kind,
            name,
            offset,
        });
    }
    let eq = text[s..e]
        .iter()
        .position(|&b| b == b'=')
        .ok_or(err(ErrorKind::BadDescriptor, number))?
        + s;
    let (ks, ke) = trim(text, s, eq);
    let (mut vs, mut ve) = trim(text, eq + 1, e);
    if ks == ke || text[ks..ke].iter().any(|b| b.is_ascii_whitespace()) {
        return Err(err(ErrorKind::BadDescriptor, number));
    }
    if ve > vs && text[vs] == b'"' {
        if ve - vs < 2 || text[ve - 1] != b'"' {
            return Err(err(ErrorKind::BadDescriptor, number));
        }
        vs += 1;
        ve -= 1;
    }
    Ok(Kind::Pair {
        key: (ks as u32, ke as u32),
        value: (vs as u32, ve as u32),
    })
}

impl<'a, const L: usize> Descriptor<'a, L> {
    /// Parses descriptor text. The text ends at its first NUL byte (embedded descriptors are
    /// padded with NULs). Every line must be blank, a comment, `key = value` or an extent line;
    /// `createType` and extent types must be ones the format defines.
    pub fn parse(text: &'a [u8]) -> Result<Self> {
        let text = match text.iter().position(|&b| b == 0) {
            Some(p) => &text[..p],
            None => text,
        };
        if text.len() > MAX_DESCRIPTOR_BYTES {
            return Err(err(ErrorKind::BadSize, text.len() as u64));
        }
        let mut lines = heapless::Vec::new();
        let mut start = 0usize;
        let mut number = 1u64;
        while start < text.len() {
            let nl = text[start..].iter().position(|&b| b == b'\n');
            let (end, next) = match nl {
                Some(p) => (start + p, start + p + 1),
                None => (text.len(), text.len()),
            };
            let kind = parse_line(text, start, end, number)?;
            lines
                .push(Line {
                    start: start as u32,
                    end: end as u32,
                    kind,
                })
                .map_err(|_| err(ErrorKind::CapacityExceeded, number))?;
            start = next;
            number += 1;
        }
        let d = Self {
            text,
            lines,
            edits: heapless::Vec::new(),
        };
        if let Some(v) = d.raw("createType") {
            CreateType::parse(v).ok_or(err(ErrorKind::UnknownType, 0))?;
        }
        for key in ["CID", "parentCID"] {
            if let Some(v) = d.raw(key) {
                parse_cid(v).ok_or(err(ErrorKind::BadDescriptor, 0))?;
            }
        }
        Ok(d)
    }

    /// The text the descriptor was parsed from (up to the first NUL).
    pub fn text(&self) -> &'a [u8] {
        self.text
    }

    /// The number of lines.
    pub fn line_count(&self) -> usize {
        self.lines.len()
    }

    fn raw_line(&self, key: &str) -> Option<(usize, &'a [u8])> {
        self.lines
            .iter()
            .enumerate()
            .find_map(|(i, l)| match l.kind {
                Kind::Pair { key: k, value: v }
                    if self.text[k.0 as usize..k.1 as usize]
                        .eq_ignore_ascii_case(key.as_bytes()) =>
                {
                    Some((i, &self.text[v.0 as usize..v.1 as usize]))
                }
                _ => None,
            })
    }

    /// The unquoted value of `key` as in the text (ignoring [`Descriptor::set`] edits), matched
    /// case-insensitively.
    pub fn raw(&self, key: &str) -> Option<&'a [u8]> {
        self.raw_line(key).map(|(_, v)| v)
    }

    /// The current value of `key`: an edit if one was made, else the text's.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        if let Some(e) = self
            .edits
            .iter()
            .rev()
            .find(|e| e.key.as_bytes().eq_ignore_ascii_case(key.as_bytes()))
        {
            return Some(e.value.as_bytes());
        }
        self.raw(key)
    }

    /// All `key = value` pairs in order, as in the text.
    pub fn pairs(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        self.lines.iter().filter_map(|l| match l.kind {
            Kind::Pair { key, value } => Some((
                &self.text[key.0 as usize..key.1 as usize],
                &self.text[value.0 as usize..value.1 as usize],
            )),
            _ => None,
        })
    }

    /// `version` (1, 2 or 3).
    pub fn version(&self) -> Option<u64> {
        self.get("version").and_then(parse_u64)
    }

    /// `encoding`, such as `UTF-8` or `windows-1252`.
    pub fn encoding(&self) -> Option<&[u8]> {
        self.get("encoding")
    }

    /// `CID`, the content ID that changes when the disk's content first changes after an open.
    pub fn cid(&self) -> Option<u32> {
        self.get("CID").and_then(parse_cid)
    }

    /// `parentCID`; `0xffffffff` means no parent.
    pub fn parent_cid(&self) -> Option<u32> {
        self.get("parentCID").and_then(parse_cid)
    }

    /// `parentFileNameHint`, the parent's descriptor file.
    pub fn parent_file_name_hint(&self) -> Option<&[u8]> {
        self.get("parentFileNameHint")
    }

    /// `createType`.
    pub fn create_type(&self) -> Option<CreateType> {
        self.get("createType").and_then(CreateType::parse)
    }

    /// A disk database value, `ddb.<name>`.
    pub fn ddb(&self, name: &str) -> Option<&[u8]> {
        self.lines.iter().find_map(|l| match l.kind {
            Kind::Pair { key, value } => {
                let k = &self.text[key.0 as usize..key.1 as usize];
                (k.len() == name.len() + 4
                    && k[..4].eq_ignore_ascii_case(b"ddb.")
                    && k[4..].eq_ignore_ascii_case(name.as_bytes()))
                .then(|| &self.text[value.0 as usize..value.1 as usize])
            }
            _ => None,
        })
    }

    /// `ddb.adapterType` (`ide`, `buslogic`, `lsilogic`, `legacyESX`, `pvscsi`...).
    pub fn adapter_type(&self) -> Option<&[u8]> {
        self.ddb("adapterType")
    }

    /// `ddb.geometry.{cylinders,heads,sectors}`.
    pub fn geometry(&self) -> Option<(u64, u64, u64)> {
        Some((
            parse_u64(self.ddb("geometry.cylinders")?)?,
            parse_u64(self.ddb("geometry.heads")?)?,
            parse_u64(self.ddb("geometry.sectors")?)?,
        ))
    }

    /// `ddb.uuid`.
    pub fn uuid(&self) -> Option<&[u8]> {
        self.ddb("uuid")
    }

    /// `ddb.longContentID`.
    pub fn long_content_id(&self) -> Option<&[u8]> {
        self.ddb("longContentID")
    }

    /// `ddb.thinProvisioned` as a boolean.
    pub fn thin_provisioned(&self) -> Option<bool> {
        self.ddb("thinProvisioned").map(|v| v == b"1")
    }

    /// `ddb.virtualHWVersion`.
    pub fn virtual_hw_version(&self) -> Option<u64> {
        self.ddb("virtualHWVersion").and_then(parse_u64)
    }

    /// The extent lines in order.
    pub fn extents(&self) -> impl Iterator<Item = Extent<'a>> + '_ {
        self.lines.iter().filter_map(|l| match l.kind {
            Kind::Extent {
                access,
                sectors,
                kind,
                name,
                offset,
            } => Some(Extent {
                access,
                sectors,
                kind,
                file_name: name.map(|(s, e)| &self.text[s as usize..e as usize]),
                offset,
            }),
            _ => None,
        })
    }

    /// The capacity in sectors: the sum of the extents' sizes, or `None` on overflow.
    pub fn capacity_sectors(&self) -> Option<u64> {
        self.extents()
            .try_fold(0u64, |acc, e| acc.checked_add(e.sectors))
    }

    /// Changes (or adds) `key`'s value. On [`Descriptor::emit`], the line keeps its layout and
    /// quoting and only the value's bytes change; a new key is written as `key="value"` after
    /// the last header key (or, for `ddb.*` keys, at the end).
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if value.bytes().any(|b| b == b'"' || b == b'\n' || b == 0) {
            return Err(err(ErrorKind::BadDescriptor, 0));
        }
        let line = self.raw_line(key).map(|(i, _)| i as u16);
        let mut k = heapless::String::new();
        k.push_str(key)
            .map_err(|_| err(ErrorKind::BufferTooSmall, 0))?;
        let mut v = heapless::String::new();
        v.push_str(value)
            .map_err(|_| err(ErrorKind::BufferTooSmall, 0))?;
        if let Some(existing) = self
            .edits
            .iter_mut()
            .find(|e| e.key.as_bytes().eq_ignore_ascii_case(key.as_bytes()))
        {
            existing.value = v;
            return Ok(());
        }
        self.edits
            .push(Edit {
                line,
                key: k,
                value: v,
            })
            .map_err(|_| err(ErrorKind::CapacityExceeded, MAX_EDITS as u64))
    }

    /// Writes the descriptor into `out` and returns its length. Without edits the output is the
    /// parsed text, byte for byte.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let mut w = Cursor { out, at: 0 };
        // Where new keys go: after the last non-ddb pair line (header), ddb keys at the end.
        let last_header = self.lines.iter().rposition(|l| match l.kind {
            Kind::Pair { key, .. } => {
                !self.text[key.0 as usize..key.1 as usize].starts_with(b"ddb.")
            }
            _ => false,
        });
        for (i, line) in self.lines.iter().enumerate() {
            let edit = self.edits.iter().find(|e| e.line == Some(i as u16));
            let line_end_with_nl = self
                .lines
                .get(i + 1)
                .map_or(self.text.len(), |n| n.start as usize);
            match (edit, line.kind) {
                (Some(e), Kind::Pair { value, .. }) => {
                    w.put(&self.text[line.start as usize..value.0 as usize])?;
                    w.put(e.value.as_bytes())?;
                    w.put(&self.text[value.1 as usize..line_end_with_nl])?;
                }
                _ => w.put(&self.text[line.start as usize..line_end_with_nl])?,
            }
            if Some(i) == last_header {
                let mut new_keys = self
                    .edits
                    .iter()
                    .filter(|e| e.line.is_none() && !e.key.starts_with("ddb."))
                    .peekable();
                if new_keys.peek().is_some() && line_end_with_nl == line.end as usize {
                    w.put(b"\n")?;
                }
                for e in new_keys {
                    write_pair(&mut w, &e.key, &e.value, false)?;
                }
            }
        }
        let appended = self
            .edits
            .iter()
            .filter(|e| e.line.is_none() && (last_header.is_none() || e.key.starts_with("ddb.")));
        for e in appended {
            if w.at > 0 && w.out[w.at - 1] != b'\n' {
                w.put(b"\n")?;
            }
            write_pair(&mut w, &e.key, &e.value, e.key.starts_with("ddb."))?;
        }
        Ok(w.at)
    }
}

struct Cursor<'o> {
    out: &'o mut [u8],
    at: usize,
}

impl Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self
            .at
            .checked_add(bytes.len())
            .filter(|&e| e <= self.out.len())
            .ok_or(err(ErrorKind::BufferTooSmall, self.at as u64))?;
        self.out[self.at..end].copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }
}

impl core::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.put(s.as_bytes()).map_err(|_| core::fmt::Error)
    }
}

fn write_pair(w: &mut Cursor<'_>, key: &str, value: &str, spaced: bool) -> Result<()> {
    let r = if spaced {
        writeln!(w, "{key} = \"{value}\"")
    } else {
        writeln!(w, "{key}=\"{value}\"")
    };
    r.map_err(|_| err(ErrorKind::BufferTooSmall, w.at as u64))
}

/// One extent of a new descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentSpec<'s> {
    /// Who may access it.
    pub access: Access,
    /// Its size in sectors.
    pub sectors: u64,
    /// Its type.
    pub kind: ExtentType,
    /// Its file name (ignored for `ZERO`).
    pub file_name: &'s str,
    /// The offset in sectors inside the file, written for flat-like extents only.
    pub offset: u64,
}

/// The contents of a new descriptor.
#[derive(Debug, Clone, Copy)]
pub struct NewDescriptor<'s> {
    /// `CID`.
    pub cid: u32,
    /// `parentCID` (`0xffffffff` for none).
    pub parent_cid: u32,
    /// `createType`.
    pub create_type: CreateType,
    /// `parentFileNameHint`, for a delta disk.
    pub parent_file_name_hint: Option<&'s str>,
    /// The extents, in order.
    pub extents: &'s [ExtentSpec<'s>],
    /// Disk database entries, `(name without "ddb.", value)`.
    pub ddb: &'s [(&'s str, &'s str)],
}

/// The `parentCID` of a disk without a parent.
pub const NO_PARENT_CID: u32 = 0xffff_ffff;

/// Writes a new descriptor in the layout VMware and QEMU use, returning its length.
pub fn write_descriptor(d: &NewDescriptor<'_>, out: &mut [u8]) -> Result<usize> {
    let mut w = Cursor { out, at: 0 };
    let e = |w: &Cursor<'_>| err(ErrorKind::BufferTooSmall, w.at as u64);
    writeln!(
        w,
        "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID={:08x}\nparentCID={:08x}\ncreateType=\"{}\"",
        d.cid,
        d.parent_cid,
        d.create_type.as_str()
    )
    .map_err(|_| e(&w))?;
    if let Some(hint) = d.parent_file_name_hint {
        writeln!(w, "parentFileNameHint=\"{hint}\"").map_err(|_| e(&w))?;
    }
    writeln!(w, "\n# Extent description").map_err(|_| e(&w))?;
    for x in d.extents {
        if x.kind == ExtentType::Zero {
            writeln!(w, "{} {} ZERO", x.access.as_str(), x.sectors).map_err(|_| e(&w))?;
        } else if x.kind.is_flat_like() {
            writeln!(
                w,
                "{} {} {} \"{}\" {}",
                x.access.as_str(),
                x.sectors,
                x.kind.as_str(),
                x.file_name,
                x.offset
            )
            .map_err(|_| e(&w))?;
        } else {
            writeln!(
                w,
                "{} {} {} \"{}\"",
                x.access.as_str(),
                x.sectors,
                x.kind.as_str(),
                x.file_name
            )
            .map_err(|_| e(&w))?;
        }
    }
    writeln!(w, "\n# The Disk Data Base\n#DDB\n").map_err(|_| e(&w))?;
    for (k, v) in d.ddb {
        writeln!(w, "ddb.{k} = \"{v}\"").map_err(|_| e(&w))?;
    }
    Ok(w.at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU: &[u8] = b"# Disk DescriptorFile\nversion=1\nCID=9e7b76ef\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\n# Extent description\nRW 131072 SPARSE \"a.vmdk\"\n# The Disk Data Base\n#DDB\nddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"130\"\nddb.geometry.heads = \"16\"\nddb.geometry.sectors = \"63\"\nddb.adapterType = \"ide\"\nddb.toolsVersion = \"2147483647\"\n\0\0\0";

    #[test]
    fn parses_qemu_embedded_descriptor() {
        let d = Descriptor::<64>::parse(QEMU).unwrap();
        assert_eq!(d.cid(), Some(0x9e7b76ef));
        assert_eq!(d.parent_cid(), Some(NO_PARENT_CID));
        assert_eq!(d.create_type(), Some(CreateType::MonolithicSparse));
        assert_eq!(d.geometry(), Some((130, 16, 63)));
        assert_eq!(d.adapter_type(), Some(&b"ide"[..]));
        assert_eq!(d.ddb("toolsVersion"), Some(&b"2147483647"[..]));
        let e: heapless::Vec<_, 4> = d.extents().collect();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].sectors, 131072);
        assert_eq!(e[0].kind, ExtentType::Sparse);
        assert_eq!(e[0].file_name, Some(&b"a.vmdk"[..]));
        let mut out = [0u8; 1024];
        let n = d.emit(&mut out).unwrap();
        assert_eq!(&out[..n], &QEMU[..QEMU.len() - 3]);
    }

    #[test]
    fn edits_change_only_the_value() {
        let mut d = Descriptor::<64>::parse(QEMU).unwrap();
        d.set("CID", "0000abcd").unwrap();
        d.set("parentFileNameHint", "base.vmdk").unwrap();
        d.set("ddb.uuid", "01 02").unwrap();
        let mut out = [0u8; 1024];
        let n = d.emit(&mut out).unwrap();
        let back = Descriptor::<64>::parse(&out[..n]).unwrap();
        assert_eq!(back.cid(), Some(0xabcd));
        assert_eq!(back.parent_file_name_hint(), Some(&b"base.vmdk"[..]));
        assert_eq!(back.uuid(), Some(&b"01 02"[..]));
        assert_eq!(back.extents().count(), 1);
    }

    #[test]
    fn rejects_unknown_types_and_garbage() {
        assert_eq!(
            Descriptor::<8>::parse(b"createType=\"bogus\"\n")
                .unwrap_err()
                .kind(),
            ErrorKind::UnknownType
        );
        assert_eq!(
            Descriptor::<8>::parse(b"RW 10 WEIRD \"x\"\n")
                .unwrap_err()
                .kind(),
            ErrorKind::UnknownType
        );
        assert!(Descriptor::<8>::parse(b"RW 99999999999999999999999 FLAT \"x\"\n").is_err());
        assert!(Descriptor::<8>::parse(b"just words\n").is_err());
        assert!(Descriptor::<2>::parse(b"#\n#\n#\n").is_err());
    }

    #[test]
    fn writes_new_descriptors_that_parse() {
        let extents = [
            ExtentSpec {
                access: Access::ReadWrite,
                sectors: 100,
                kind: ExtentType::Flat,
                file_name: "a-f001.vmdk",
                offset: 0,
            },
            ExtentSpec {
                access: Access::ReadOnly,
                sectors: 28,
                kind: ExtentType::Zero,
                file_name: "",
                offset: 0,
            },
        ];
        let nd = NewDescriptor {
            cid: 0x1234,
            parent_cid: NO_PARENT_CID,
            create_type: CreateType::TwoGbMaxExtentFlat,
            parent_file_name_hint: None,
            extents: &extents,
            ddb: &[("adapterType", "lsilogic")],
        };
        let mut out = [0u8; 1024];
        let n = write_descriptor(&nd, &mut out).unwrap();
        let d = Descriptor::<64>::parse(&out[..n]).unwrap();
        assert_eq!(d.capacity_sectors(), Some(128));
        assert_eq!(d.create_type(), Some(CreateType::TwoGbMaxExtentFlat));
        assert_eq!(d.extents().nth(1).unwrap().kind, ExtentType::Zero);
        assert!(write_descriptor(&nd, &mut out[..20]).is_err());
    }
}
