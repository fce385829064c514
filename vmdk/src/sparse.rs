//! On-disk structures of hosted sparse extents: the `KDMV` header, grain directories and grain
//! tables, and the markers of stream-optimized files.
//!
//! All integers are little-endian. A grain directory (GD) is an array of `u32` sector numbers of
//! grain tables (GT); a grain table is an array of `num_gtes_per_gt` `u32` sector numbers of
//! grains. See `FORMAT.md` for the whole layout.

use crate::error::{ErrorKind, Result, err};

/// Bytes per sector; every offset in a sparse file counts these.
pub const SECTOR: u64 = 512;
/// The header's magic number, `"KDMV"` on disk.
pub const MAGIC: u32 = 0x564d_444b;
/// The magic number of an ESX delta (`COWD`) header.
pub const COWD_MAGIC: u32 = 0x4457_4f43;
/// `gd_offset` of a stream-optimized header whose grain directory is found through the footer.
pub const GD_AT_END: u64 = u64::MAX;

/// Header flag: the newline-detection characters are valid.
pub const FLAG_VALID_NEWLINE: u32 = 1 << 0;
/// Header flag: a redundant grain directory exists.
pub const FLAG_REDUNDANT_GD: u32 = 1 << 1;
/// Header flag: grain table entries of 1 mean "zeroed grain".
pub const FLAG_ZEROED_GTE: u32 = 1 << 2;
/// Header flag: grains are compressed.
pub const FLAG_COMPRESSED: u32 = 1 << 16;
/// Header flag: the file holds markers (stream-optimized).
pub const FLAG_MARKERS: u32 = 1 << 17;
/// `compress_algorithm` value for deflate.
pub const COMPRESS_DEFLATE: u16 = 1;

/// The largest grain this crate accepts, in sectors (1 MiB).
pub const MAX_GRAIN_SECTORS: u64 = 2048;
/// The largest capacity this crate accepts, in sectors (2^44 sectors, 8 PiB).
pub const MAX_CAPACITY_SECTORS: u64 = 1 << 44;
/// The most entries a grain table may have.
pub const MAX_GTES_PER_GT: u32 = 4096;

mod field {
    use core::ops::Range;
    pub(super) const MAGIC: Range<usize> = 0..4;
    pub(super) const VERSION: Range<usize> = 4..8;
    pub(super) const FLAGS: Range<usize> = 8..12;
    pub(super) const CAPACITY: Range<usize> = 12..20;
    pub(super) const GRAIN_SIZE: Range<usize> = 20..28;
    pub(super) const DESCRIPTOR_OFFSET: Range<usize> = 28..36;
    pub(super) const DESCRIPTOR_SIZE: Range<usize> = 36..44;
    pub(super) const NUM_GTES_PER_GT: Range<usize> = 44..48;
    pub(super) const RGD_OFFSET: Range<usize> = 48..56;
    pub(super) const GD_OFFSET: Range<usize> = 56..64;
    pub(super) const OVERHEAD: Range<usize> = 64..72;
    pub(super) const UNCLEAN_SHUTDOWN: usize = 72;
    pub(super) const NEWLINE_CHARS: Range<usize> = 73..77;
    pub(super) const COMPRESS_ALGORITHM: Range<usize> = 77..79;
    pub(super) const HEADER_LEN: usize = 512;
}

/// The length of the header on disk.
pub const HEADER_LEN: usize = field::HEADER_LEN;
const NEWLINE_CHARS: [u8; 4] = [b'\n', b' ', b'\r', b'\n'];

pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A checked view of a `KDMV` header over bytes.
#[derive(Debug, Clone, Copy)]
pub struct SparseHeaderView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SparseHeaderView<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer`, checking that it holds a whole header with the right magic.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let v = Self::new_unchecked(buffer);
        v.check_len()?;
        if v.magic() != MAGIC {
            return Err(err(ErrorKind::BadHeader, 0));
        }
        Ok(v)
    }

    /// Checks that the buffer is long enough for every accessor.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(err(ErrorKind::BufferTooSmall, HEADER_LEN as u64));
        }
        Ok(())
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The magic number.
    pub fn magic(&self) -> u32 {
        le32(self.b(), field::MAGIC.start)
    }
    /// The version (1, 2 or 3).
    pub fn version(&self) -> u32 {
        le32(self.b(), field::VERSION.start)
    }
    /// The flags.
    pub fn flags(&self) -> u32 {
        le32(self.b(), field::FLAGS.start)
    }
    /// The capacity in sectors.
    pub fn capacity(&self) -> u64 {
        le64(self.b(), field::CAPACITY.start)
    }
    /// The grain size in sectors.
    pub fn grain_size(&self) -> u64 {
        le64(self.b(), field::GRAIN_SIZE.start)
    }
    /// The sector of the embedded descriptor (0 if none).
    pub fn descriptor_offset(&self) -> u64 {
        le64(self.b(), field::DESCRIPTOR_OFFSET.start)
    }
    /// The embedded descriptor's size in sectors.
    pub fn descriptor_size(&self) -> u64 {
        le64(self.b(), field::DESCRIPTOR_SIZE.start)
    }
    /// Entries per grain table.
    pub fn num_gtes_per_gt(&self) -> u32 {
        le32(self.b(), field::NUM_GTES_PER_GT.start)
    }
    /// The redundant grain directory's sector.
    pub fn rgd_offset(&self) -> u64 {
        le64(self.b(), field::RGD_OFFSET.start)
    }
    /// The grain directory's sector, or [`GD_AT_END`].
    pub fn gd_offset(&self) -> u64 {
        le64(self.b(), field::GD_OFFSET.start)
    }
    /// Sectors of metadata before the first grain.
    pub fn overhead(&self) -> u64 {
        le64(self.b(), field::OVERHEAD.start)
    }
    /// Whether the file was not closed cleanly.
    pub fn unclean_shutdown(&self) -> bool {
        self.b()[field::UNCLEAN_SHUTDOWN] != 0
    }
    /// The four newline-detection characters.
    pub fn newline_chars(&self) -> [u8; 4] {
        let mut a = [0u8; 4];
        a.copy_from_slice(&self.b()[field::NEWLINE_CHARS]);
        a
    }
    /// The compression algorithm (0 none, 1 deflate).
    pub fn compress_algorithm(&self) -> u16 {
        let b = self.b();
        u16::from_le_bytes([
            b[field::COMPRESS_ALGORITHM.start],
            b[field::COMPRESS_ALGORITHM.start + 1],
        ])
    }
}

/// A parsed, validated `KDMV` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseHeader {
    /// Version, 1 to 3.
    pub version: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Capacity in sectors.
    pub capacity: u64,
    /// Grain size in sectors: a power of two, at most [`MAX_GRAIN_SECTORS`].
    pub grain_size: u64,
    /// Embedded descriptor's sector (0 if none).
    pub descriptor_offset: u64,
    /// Embedded descriptor's size in sectors.
    pub descriptor_size: u64,
    /// Entries per grain table.
    pub num_gtes_per_gt: u32,
    /// Redundant grain directory sector (0 if none).
    pub rgd_offset: u64,
    /// Grain directory sector, or [`GD_AT_END`].
    pub gd_offset: u64,
    /// Sectors before the first grain.
    pub overhead: u64,
    /// The unclean-shutdown flag.
    pub unclean_shutdown: bool,
    /// Compression algorithm.
    pub compress_algorithm: u16,
}

impl SparseHeader {
    /// Parses and validates a header: magic, version, a power-of-two grain within limits, a
    /// grain table size that is a whole number of sectors, a capacity within limits, and the
    /// newline characters when flagged valid.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let v = SparseHeaderView::new_checked(bytes)?;
        let h = Self {
            version: v.version(),
            flags: v.flags(),
            capacity: v.capacity(),
            grain_size: v.grain_size(),
            descriptor_offset: v.descriptor_offset(),
            descriptor_size: v.descriptor_size(),
            num_gtes_per_gt: v.num_gtes_per_gt(),
            rgd_offset: v.rgd_offset(),
            gd_offset: v.gd_offset(),
            overhead: v.overhead(),
            unclean_shutdown: v.unclean_shutdown(),
            compress_algorithm: v.compress_algorithm(),
        };
        if !(1..=3).contains(&h.version) {
            return Err(err(ErrorKind::Unsupported, u64::from(h.version)));
        }
        if h.flags & FLAG_VALID_NEWLINE != 0 && v.newline_chars() != NEWLINE_CHARS {
            return Err(err(ErrorKind::BadHeader, field::NEWLINE_CHARS.start as u64));
        }
        if h.grain_size == 0 || !h.grain_size.is_power_of_two() || h.grain_size > MAX_GRAIN_SECTORS
        {
            return Err(err(ErrorKind::BadSize, h.grain_size));
        }
        if h.num_gtes_per_gt == 0
            || h.num_gtes_per_gt > MAX_GTES_PER_GT
            || !h.num_gtes_per_gt.is_multiple_of(128)
        {
            return Err(err(ErrorKind::BadSize, u64::from(h.num_gtes_per_gt)));
        }
        if h.capacity == 0 || h.capacity > MAX_CAPACITY_SECTORS {
            return Err(err(ErrorKind::BadSize, h.capacity));
        }
        if h.is_compressed() && h.compress_algorithm != COMPRESS_DEFLATE {
            return Err(err(ErrorKind::Unsupported, u64::from(h.compress_algorithm)));
        }
        Ok(h)
    }

    /// The bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first 512 bytes of `out` (the rest of the sector is zeroed).
    pub fn emit(&self, out: &mut [u8]) -> Result<()> {
        let out = out
            .get_mut(..HEADER_LEN)
            .ok_or(err(ErrorKind::BufferTooSmall, HEADER_LEN as u64))?;
        out.fill(0);
        out[field::MAGIC].copy_from_slice(&MAGIC.to_le_bytes());
        out[field::VERSION].copy_from_slice(&self.version.to_le_bytes());
        out[field::FLAGS].copy_from_slice(&self.flags.to_le_bytes());
        out[field::CAPACITY].copy_from_slice(&self.capacity.to_le_bytes());
        out[field::GRAIN_SIZE].copy_from_slice(&self.grain_size.to_le_bytes());
        out[field::DESCRIPTOR_OFFSET].copy_from_slice(&self.descriptor_offset.to_le_bytes());
        out[field::DESCRIPTOR_SIZE].copy_from_slice(&self.descriptor_size.to_le_bytes());
        out[field::NUM_GTES_PER_GT].copy_from_slice(&self.num_gtes_per_gt.to_le_bytes());
        out[field::RGD_OFFSET].copy_from_slice(&self.rgd_offset.to_le_bytes());
        out[field::GD_OFFSET].copy_from_slice(&self.gd_offset.to_le_bytes());
        out[field::OVERHEAD].copy_from_slice(&self.overhead.to_le_bytes());
        out[field::UNCLEAN_SHUTDOWN] = u8::from(self.unclean_shutdown);
        out[field::NEWLINE_CHARS].copy_from_slice(&NEWLINE_CHARS);
        out[field::COMPRESS_ALGORITHM].copy_from_slice(&self.compress_algorithm.to_le_bytes());
        Ok(())
    }

    /// Whether grains are compressed.
    pub const fn is_compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }

    /// Whether the file holds stream-optimized markers.
    pub const fn has_markers(&self) -> bool {
        self.flags & FLAG_MARKERS != 0
    }

    /// Whether a redundant grain directory is in use.
    pub const fn has_redundant_gd(&self) -> bool {
        self.flags & FLAG_REDUNDANT_GD != 0 && self.rgd_offset != 0
    }

    /// Whether a grain table entry of 1 means a zeroed grain.
    pub const fn has_zeroed_gte(&self) -> bool {
        self.flags & FLAG_ZEROED_GTE != 0
    }

    /// Bytes per grain.
    pub const fn grain_bytes(&self) -> u64 {
        self.grain_size * SECTOR
    }

    /// Sectors one grain table covers.
    pub const fn gt_coverage(&self) -> u64 {
        self.grain_size * self.num_gtes_per_gt as u64
    }

    /// Bytes of one grain table (a whole number of sectors, by validation).
    pub const fn gt_bytes(&self) -> u64 {
        self.num_gtes_per_gt as u64 * 4
    }

    /// Sectors of one grain table.
    pub const fn gt_sectors(&self) -> u64 {
        self.gt_bytes() / SECTOR
    }

    /// Number of grains covering the capacity.
    pub const fn grains(&self) -> u64 {
        self.capacity.div_ceil(self.grain_size)
    }

    /// Entries in the grain directory.
    pub const fn gd_entries(&self) -> u64 {
        self.capacity.div_ceil(self.gt_coverage())
    }

    /// Sectors of the grain directory.
    pub const fn gd_sectors(&self) -> u64 {
        (self.gd_entries() * 4).div_ceil(SECTOR)
    }

    /// The layout QEMU and VMware use for a new hosted sparse extent of `capacity` sectors
    /// (version 2, redundant directory and zeroed-grain entries enabled)
    /// with an embedded descriptor of `descriptor_sectors` (0 for none): header, descriptor,
    /// redundant GD and its GTs, GD and its GTs, then grains from `overhead`, rounded up to a
    /// grain.
    pub fn new_layout(capacity: u64, grain_size: u64, descriptor_sectors: u64) -> Result<Self> {
        let mut h = Self {
            // Version 2 with zeroed-grain entries, as QEMU writes with `zeroed_grain=on`.
            version: 2,
            flags: FLAG_VALID_NEWLINE | FLAG_REDUNDANT_GD | FLAG_ZEROED_GTE,
            capacity,
            grain_size,
            descriptor_offset: if descriptor_sectors > 0 { 1 } else { 0 },
            descriptor_size: descriptor_sectors,
            num_gtes_per_gt: 512,
            rgd_offset: 0,
            gd_offset: 0,
            overhead: 0,
            unclean_shutdown: false,
            compress_algorithm: 0,
        };
        let mut bytes = [0u8; HEADER_LEN];
        h.emit(&mut bytes)?;
        Self::parse(&bytes)?;
        let tables = h
            .gd_entries()
            .checked_mul(h.gt_sectors())
            .ok_or(err(ErrorKind::BadSize, capacity))?;
        h.rgd_offset = 1 + descriptor_sectors;
        h.gd_offset = h.rgd_offset + h.gd_sectors() + tables;
        let end = h.gd_offset + h.gd_sectors() + tables;
        h.overhead = end.div_ceil(grain_size) * grain_size;
        Ok(h)
    }
}

/// What a grain table entry says about its grain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    /// Not allocated: a delta falls through to its parent, a base reads zeros.
    Unallocated,
    /// Allocated as zeros (a zeroed-grain entry).
    Zero,
    /// Stored at this sector of the file (for stream-optimized files, the grain's marker).
    At(u64),
}

impl Grain {
    /// Decodes a grain table entry.
    pub fn from_gte(gte: u32, zeroed_gte: bool) -> Self {
        match gte {
            0 => Grain::Unallocated,
            1 if zeroed_gte => Grain::Zero,
            s => Grain::At(u64::from(s)),
        }
    }
}

/// Type of a stream-optimized metadata marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerType {
    /// End of stream.
    EndOfStream,
    /// A grain table follows.
    GrainTable,
    /// The grain directory follows.
    GrainDirectory,
    /// The footer (a copy of the header with the real `gd_offset`) follows.
    Footer,
}

/// A stream-optimized marker: the first 12 or 16 bytes of a sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A compressed grain: its first sector `lba` (virtual) and compressed byte count; the
    /// deflate data starts 12 bytes into the marker.
    Grain {
        /// Virtual sector of the grain.
        lba: u64,
        /// Bytes of compressed data.
        size: u32,
    },
    /// A metadata marker followed by `sectors` sectors of metadata.
    Meta {
        /// Sectors of metadata that follow.
        sectors: u64,
        /// What follows.
        kind: MarkerType,
    },
}

impl Marker {
    /// Parses a marker from the first 16 bytes of a sector.
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < 16 {
            return Err(err(ErrorKind::BufferTooSmall, 16));
        }
        let val = le64(b, 0);
        let size = le32(b, 8);
        if size != 0 {
            return Ok(Marker::Grain { lba: val, size });
        }
        let kind = match le32(b, 12) {
            0 => MarkerType::EndOfStream,
            1 => MarkerType::GrainTable,
            2 => MarkerType::GrainDirectory,
            3 => MarkerType::Footer,
            t => return Err(err(ErrorKind::BadHeader, u64::from(t))),
        };
        Ok(Marker::Meta { sectors: val, kind })
    }

    /// Writes the marker into the first 16 bytes of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<()> {
        let out = out
            .get_mut(..16)
            .ok_or(err(ErrorKind::BufferTooSmall, 16))?;
        out.fill(0);
        match *self {
            Marker::Grain { lba, size } => {
                out[0..8].copy_from_slice(&lba.to_le_bytes());
                out[8..12].copy_from_slice(&size.to_le_bytes());
            }
            Marker::Meta { sectors, kind } => {
                out[0..8].copy_from_slice(&sectors.to_le_bytes());
                let t: u32 = match kind {
                    MarkerType::EndOfStream => 0,
                    MarkerType::GrainTable => 1,
                    MarkerType::GrainDirectory => 2,
                    MarkerType::Footer => 3,
                };
                out[12..16].copy_from_slice(&t.to_le_bytes());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_layout_for_64_mib() {
        let h = SparseHeader::new_layout(131072, 128, 20).unwrap();
        assert_eq!(
            (h.rgd_offset, h.gd_offset, h.overhead),
            (21, 30, 128),
            "the layout qemu-img writes for a 64 MiB monolithicSparse"
        );
        assert_eq!(h.gd_entries(), 2);
    }

    #[test]
    fn rejects_bad_headers() {
        let h = SparseHeader::new_layout(1000, 128, 0).unwrap();
        let mut b = [0u8; 512];
        h.emit(&mut b).unwrap();
        assert_eq!(SparseHeader::parse(&b).unwrap(), h);
        let mut bad = b;
        bad[20] = 3; // grain 3 sectors + 128 * 256
        assert!(SparseHeader::parse(&bad).is_err());
        let mut bad = b;
        bad[0] = b'X';
        assert!(SparseHeader::parse(&bad).is_err());
        assert!(SparseHeader::parse(&b[..100]).is_err());
    }
}

/// Entries per grain table of a `COWD` extent.
pub const COWD_GTES_PER_GT: u32 = 4096;
/// Bytes of a `COWD` header (four sectors).
pub const COWD_HEADER_LEN: usize = 2048;
/// Longest parent file name a `COWD` header holds.
pub const COWD_PARENT_NAME_LEN: usize = 1024;
/// Byte offset of `freeSector` in a `COWD` header.
pub const COWD_FREE_SECTOR_AT: usize = 28;
/// Byte offset of `uncleanShutdown` in a `COWD` header.
pub const COWD_UNCLEAN_AT: usize = 32 + 1028 + 4 + 60 + 512 + 4 + 8;

/// The header of an ESX delta (`vmfsSparse`) extent, `COWD`: all fields `u32`, grain tables
/// of 4096 entries, no redundant directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CowdHeader {
    /// Version (1).
    pub version: u32,
    /// Flags (VMware writes 3).
    pub flags: u32,
    /// Capacity in sectors.
    pub capacity: u32,
    /// Grain size in sectors.
    pub grain_size: u32,
    /// Grain directory sector.
    pub gd_offset: u32,
    /// Entries in the grain directory.
    pub gd_entries: u32,
    /// The next free sector of the file.
    pub free_sector: u32,
    /// The unclean-shutdown flag.
    pub unclean_shutdown: bool,
}

impl CowdHeader {
    /// Parses and validates a `COWD` header (at least its first four sectors).
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < COWD_HEADER_LEN {
            return Err(err(ErrorKind::BufferTooSmall, COWD_HEADER_LEN as u64));
        }
        if le32(b, 0) != COWD_MAGIC {
            return Err(err(ErrorKind::BadHeader, 0));
        }
        let h = Self {
            version: le32(b, 4),
            flags: le32(b, 8),
            capacity: le32(b, 12),
            grain_size: le32(b, 16),
            gd_offset: le32(b, 20),
            gd_entries: le32(b, 24),
            free_sector: le32(b, COWD_FREE_SECTOR_AT),
            unclean_shutdown: le32(b, COWD_UNCLEAN_AT) != 0,
        };
        let g = u64::from(h.grain_size);
        if g == 0 || !g.is_power_of_two() || g > MAX_GRAIN_SECTORS {
            return Err(err(ErrorKind::BadSize, g));
        }
        if h.capacity == 0 {
            return Err(err(ErrorKind::BadSize, 0));
        }
        let needed = u64::from(h.capacity).div_ceil(g * u64::from(COWD_GTES_PER_GT));
        if u64::from(h.gd_entries) < needed || h.gd_offset < 4 {
            return Err(err(ErrorKind::BadMetadata, u64::from(h.gd_entries)));
        }
        Ok(h)
    }

    /// Writes a whole header (2048 bytes) for a delta of `parent` (empty for none).
    pub fn emit(&self, parent: &str, out: &mut [u8]) -> Result<()> {
        let out = out
            .get_mut(..COWD_HEADER_LEN)
            .ok_or(err(ErrorKind::BufferTooSmall, COWD_HEADER_LEN as u64))?;
        if parent.len() >= COWD_PARENT_NAME_LEN {
            return Err(err(ErrorKind::BufferTooSmall, parent.len() as u64));
        }
        out.fill(0);
        let words = [
            COWD_MAGIC,
            self.version,
            self.flags,
            self.capacity,
            self.grain_size,
            self.gd_offset,
            self.gd_entries,
            self.free_sector,
        ];
        for (i, w) in words.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        out[32..32 + parent.len()].copy_from_slice(parent.as_bytes());
        out[COWD_UNCLEAN_AT..COWD_UNCLEAN_AT + 4]
            .copy_from_slice(&u32::from(self.unclean_shutdown).to_le_bytes());
        Ok(())
    }

    /// The equivalent hosted-sparse description (no redundant directory, no zeroed entries),
    /// through which the extent code addresses the tables.
    pub fn as_sparse(&self) -> SparseHeader {
        SparseHeader {
            version: 1,
            flags: 0,
            capacity: u64::from(self.capacity),
            grain_size: u64::from(self.grain_size),
            descriptor_offset: 0,
            descriptor_size: 0,
            num_gtes_per_gt: COWD_GTES_PER_GT,
            rgd_offset: 0,
            gd_offset: u64::from(self.gd_offset),
            overhead: u64::from(self.gd_offset) + (u64::from(self.gd_entries) * 4).div_ceil(SECTOR),
            unclean_shutdown: self.unclean_shutdown,
            compress_algorithm: 0,
        }
    }

    /// A new, empty delta of `capacity` sectors with `grain_size`-sector grains: header in
    /// sectors 0-3, directory from sector 4, tables allocated on first write.
    pub fn new_layout(capacity: u64, grain_size: u64) -> Result<Self> {
        let capacity32 = u32::try_from(capacity).map_err(|_| err(ErrorKind::BadSize, capacity))?;
        let grain32 = u32::try_from(grain_size).map_err(|_| err(ErrorKind::BadSize, grain_size))?;
        if grain_size == 0 {
            return Err(err(ErrorKind::BadSize, 0));
        }
        let entries = capacity.div_ceil(grain_size * u64::from(COWD_GTES_PER_GT));
        let gd_sectors = (entries * 4).div_ceil(SECTOR);
        Ok(Self {
            version: 1,
            flags: 3,
            capacity: capacity32,
            grain_size: grain32,
            gd_offset: 4,
            gd_entries: u32::try_from(entries).map_err(|_| err(ErrorKind::BadSize, entries))?,
            free_sector: u32::try_from(4 + gd_sectors).map_err(|_| err(ErrorKind::BadSize, 0))?,
            unclean_shutdown: false,
        })
    }
}
