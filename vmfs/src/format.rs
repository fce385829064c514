//! On-disk structures and address encodings (see `FORMAT.md` for the layout).
//!
//! Everything here is a pure function of bytes: no I/O. Every read of a field is bounds-checked
//! and every computation on a disk value is checked, so corrupt input becomes an error.

use fss::{FsError, FsErrorKind};

/// Offset of the file system descriptor in the volume.
pub const FS_DESCRIPTOR_OFFSET: u64 = 0x20_0000;
/// Bytes of the descriptor that are parsed.
pub const FS_DESCRIPTOR_BYTES: usize = 0x200;
/// VMFS magic.
pub const VMFS_MAGIC: u32 = 0x2FAB_F15E;
/// VMFS-L (local, ESXi system) magic.
pub const VMFSL_MAGIC: u32 = 0x2FAB_F15F;
/// Major versions from this one on are VMFS6.
pub const VMFS6_MAJOR: u32 = 24;
/// Config bit: dense sub-blocks per cluster (two more sub-block number bits in VMFS5 addresses).
pub const CONFIG_DENSE_SBPC: u32 = 0x4;

/// Signature of VMFS6 resource file metadata, `rfmd`.
pub const RFMD_SIGNATURE: u32 = 0x7266_6D64;
/// Bytes of resource file metadata that are parsed.
pub const RESOURCE_META_BYTES: usize = 0x58;

/// File descriptor addresses of the system files (cluster 0, resource 0..).
pub const ROOT_DIR_ADDR: u32 = 0x0000_0004;
/// `.fbb.sf`.
pub const FBB_ADDR: u32 = 0x0040_0004;
/// `.fdc.sf`.
pub const FDC_ADDR: u32 = 0x0080_0004;
/// `.pbc.sf`.
pub const PBC_ADDR: u32 = 0x00C0_0004;
/// `.sbc.sf`.
pub const SBC_ADDR: u32 = 0x0100_0004;
/// `.pb2.sf`.
pub const PB2_ADDR: u32 = 0x0180_0004;

/// Descriptor types (`FS3_DescriptorType`).
pub mod desc_type {
    /// Directory.
    pub const DIRECTORY: u32 = 2;
    /// Regular file.
    pub const REGFILE: u32 = 3;
    /// Symbolic link.
    pub const SYMLINK: u32 = 4;
    /// System file.
    pub const SYSFILE: u32 = 5;
    /// Raw device mapping.
    pub const RDM: u32 = 6;
}

/// Zero-level address types: how a file descriptor's address array is read.
pub mod zla {
    /// No data (RDM).
    pub const NONE: u32 = 0;
    /// File blocks (VMFS6: small file blocks).
    pub const FILE_BLOCK: u32 = 1;
    /// Sub-blocks.
    pub const SUB_BLOCK: u32 = 2;
    /// Pointer blocks, one level.
    pub const POINTER_BLOCK: u32 = 3;
    /// Pointer blocks of the second kind (`.pb2.sf`), one level.
    pub const POINTER2_BLOCK: u32 = 5;
    /// Pointer blocks, two levels.
    pub const DOUBLE: u32 = 0x10D0;
    /// Data resident in the file descriptor.
    pub const RESIDENT: u32 = 0x10D1;
}

/// Little-endian field readers that never panic.
pub fn u8_at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

/// A little-endian `u16` at `at`.
pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

/// A little-endian `u32` at `at`.
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// A little-endian `u64` at `at`.
pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// The bytes of a NUL-terminated name field.
pub fn c_name(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// log2 of `value` if it is a power of two within `[min, max]`.
pub fn pow2_shift(value: u64, min: u64, max: u64) -> Option<u32> {
    (value.is_power_of_two() && value >= min && value <= max).then(|| value.trailing_zeros())
}

/// The file system descriptor (`FS3_Descriptor`) at [`FS_DESCRIPTOR_OFFSET`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsDescriptor {
    /// [`VMFS_MAGIC`] or [`VMFSL_MAGIC`].
    pub magic: u32,
    /// Major version (14: VMFS5, 24: VMFS6).
    pub major: u32,
    /// Minor version.
    pub minor: u8,
    /// Volume UUID bytes.
    pub uuid: [u8; 16],
    /// Config flags.
    pub config: u32,
    /// Label bytes (NUL padded).
    pub label: [u8; 128],
    /// File block size in bytes.
    pub file_block_size: u64,
    /// Creation time, Unix seconds.
    pub creation_time: u32,
    /// Offset of the first file descriptor cluster group in `.fdc.sf`.
    pub fdc_cluster_group_offset: u32,
    /// File descriptor clusters per group.
    pub fdc_clusters_per_group: u32,
    /// Sub-block size in bytes.
    pub sub_block_size: u32,
    /// Metadata alignment (VMFS6), 0 on VMFS5.
    pub md_alignment: u32,
    /// log2(large file block / small file block) (VMFS6).
    pub sfb_to_lfb_shift: u16,
}

impl FsDescriptor {
    /// Parses and validates the descriptor from its bytes.
    pub fn parse(b: &[u8]) -> Result<Self, FsError> {
        let bad = |at: u64| FsError::corrupt("file system descriptor", FS_DESCRIPTOR_OFFSET + at);
        let magic = u32_at(b, 0).ok_or(bad(0))?;
        if magic != VMFS_MAGIC && magic != VMFSL_MAGIC {
            return Err(bad(0));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(b.get(0x09..0x19).ok_or(bad(9))?);
        let mut label = [0u8; 128];
        label.copy_from_slice(b.get(0x1d..0x9d).ok_or(bad(0x1d))?);
        let d = FsDescriptor {
            magic,
            major: u32_at(b, 0x04).ok_or(bad(4))?,
            minor: u8_at(b, 0x08).ok_or(bad(8))?,
            uuid,
            config: u32_at(b, 0x19).ok_or(bad(0x19))?,
            label,
            file_block_size: u64_at(b, 0xa1).ok_or(bad(0xa1))?,
            creation_time: u32_at(b, 0xa9).ok_or(bad(0xa9))?,
            fdc_cluster_group_offset: u32_at(b, 0xd1).ok_or(bad(0xd1))?,
            fdc_clusters_per_group: u32_at(b, 0xd5).ok_or(bad(0xd5))?,
            sub_block_size: u32_at(b, 0xd9).ok_or(bad(0xd9))?,
            md_alignment: u32_at(b, 0x134).ok_or(bad(0x134))?,
            sfb_to_lfb_shift: u16_at(b, 0x138).ok_or(bad(0x138))?,
        };
        pow2_shift(d.file_block_size, 64 * 1024, 1 << 30).ok_or(bad(0xa1))?;
        pow2_shift(d.sub_block_size as u64, 512, 1 << 20).ok_or(bad(0xd9))?;
        if d.major < 14 {
            return Err(FsError::new(
                FsErrorKind::Unsupported,
                "file system version",
                d.major as u64,
            ));
        }
        if d.is_vmfs6() {
            // The descriptor layout needs room for the 2560-byte address array.
            pow2_shift(d.md_alignment as u64, 2048, 4096).ok_or(FsError::new(
                FsErrorKind::Unsupported,
                "metadata alignment",
                d.md_alignment as u64,
            ))?;
            if d.sfb_to_lfb_shift > 16 {
                return Err(bad(0x138));
            }
        }
        if d.fdc_clusters_per_group == 0 || d.fdc_clusters_per_group > 4096 {
            return Err(bad(0xd5));
        }
        Ok(d)
    }

    /// Whether this is VMFS6.
    pub fn is_vmfs6(&self) -> bool {
        self.major >= VMFS6_MAJOR
    }

    /// The label as stored, up to the first NUL.
    pub fn label_bytes(&self) -> &[u8] {
        c_name(&self.label)
    }
}

/// Writes the UUID in VMFS form, `xxxxxxxx-xxxxxxxx-xxxx-xxxxxxxxxxxx`, into `out`.
pub fn format_uuid(uuid: &[u8; 16], out: &mut heapless::String<35>) {
    use core::fmt::Write;
    out.clear();
    let lo = u32::from_le_bytes([uuid[0], uuid[1], uuid[2], uuid[3]]);
    let hi = u32::from_le_bytes([uuid[4], uuid[5], uuid[6], uuid[7]]);
    let rand = u16::from_le_bytes([uuid[8], uuid[9]]);
    // 35 characters exactly; cannot fail.
    let _ = write!(out, "{lo:08x}-{hi:08x}-{rand:04x}-");
    for b in &uuid[10..16] {
        let _ = write!(out, "{b:02x}");
    }
}

/// Geometry derived from the descriptor: where things are inside file descriptors and how big
/// pointer blocks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// VMFS6.
    pub v6: bool,
    /// Bytes of one file descriptor (lock block + metadata + data).
    pub fd_bytes: u32,
    /// Offset of `FS3_FileMetadata` in a descriptor.
    pub fd_meta_offset: u32,
    /// Offset of resident data (and RDM mappings).
    pub fd_data_offset: u32,
    /// Bytes of resident data space.
    pub fd_data_bytes: u32,
    /// Offset of the address array.
    pub fd_addrs_offset: u32,
    /// Entries of the address array.
    pub fd_addr_count: u32,
    /// Bytes of one address (4 on VMFS5, 8 on VMFS6).
    pub addr_bytes: u32,
    /// log2 of addresses per pointer block.
    pub pb_shift: u32,
    /// Bytes of one resource cluster header (lock + cluster metadata).
    pub cluster_header_bytes: u32,
    /// log2 of the file block size.
    pub fbs_shift: u32,
    /// log2 of the sub-block size.
    pub sbs_shift: u32,
    /// log2 of the large file block size (VMFS6).
    pub lfb_shift: u32,
    /// Small file blocks per cluster (VMFS6).
    pub sfb_per_cluster: u64,
    /// Dense sub-block numbering (VMFS5).
    pub dense_sb: bool,
}

/// The most addresses a file descriptor holds in any supported layout.
pub const MAX_FD_ADDRS: usize = 320;

impl Layout {
    /// The layout of a validated descriptor.
    pub fn new(d: &FsDescriptor) -> Self {
        let fbs_shift = d.file_block_size.trailing_zeros();
        let sbs_shift = d.sub_block_size.trailing_zeros();
        if d.is_vmfs6() {
            let md = d.md_alignment;
            let fd_data_bytes = md - 512;
            Layout {
                v6: true,
                fd_bytes: 2 * md,
                fd_meta_offset: md,
                fd_data_offset: 2 * md - fd_data_bytes,
                fd_data_bytes,
                fd_addrs_offset: 2 * md - 2560,
                fd_addr_count: 320,
                addr_bytes: 8,
                pb_shift: 13,
                cluster_header_bytes: 2 * md,
                fbs_shift,
                sbs_shift,
                lfb_shift: fbs_shift + d.sfb_to_lfb_shift as u32,
                sfb_per_cluster: (0x2000u64).min(0x2000_0000u64 >> fbs_shift).max(1),
                dense_sb: false,
            }
        } else {
            Layout {
                v6: false,
                fd_bytes: 2048,
                fd_meta_offset: 512,
                fd_data_offset: 1024,
                fd_data_bytes: 1024,
                fd_addrs_offset: 1024,
                fd_addr_count: 256,
                addr_bytes: 4,
                pb_shift: 10,
                cluster_header_bytes: 1024,
                fbs_shift,
                sbs_shift,
                lfb_shift: fbs_shift,
                sfb_per_cluster: 1,
                dense_sb: d.config & CONFIG_DENSE_SBPC != 0,
            }
        }
    }

    /// Bytes of one pointer block's address array.
    pub fn pb_bytes(&self) -> u64 {
        (1u64 << self.pb_shift) * self.addr_bytes as u64
    }
}

/// A decoded block address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    /// Unallocated: reads as zeros.
    Null,
    /// VMFS5 file block.
    FileBlock {
        /// Block number on the volume.
        block: u64,
        /// To be zeroed: reads as zeros.
        tbz: bool,
    },
    /// VMFS6 small file block.
    SmallFileBlock {
        /// Cluster.
        cluster: u64,
        /// Block in the cluster.
        resource: u64,
        /// Any to-be-zeroed bit.
        tbz: bool,
    },
    /// VMFS6 large file block.
    LargeFileBlock {
        /// Block number in large blocks.
        block: u64,
        /// Any to-be-zeroed bit.
        tbz: bool,
    },
    /// A resource in a resource file (sub-block, pointer block, PB2, file descriptor).
    Resource {
        /// Which resource file.
        kind: ResourceKind,
        /// Cluster.
        cluster: u64,
        /// Resource in the cluster.
        resource: u64,
    },
}

/// The resource files that hold addressed resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ResourceKind {
    /// `.sbc.sf`.
    SubBlock,
    /// `.pbc.sf`.
    PointerBlock,
    /// `.pb2.sf`.
    PointerBlock2,
    /// `.fdc.sf`.
    FileDescriptor,
}

impl ResourceKind {
    /// Index into per-kind tables.
    pub const fn index(self) -> usize {
        match self {
            ResourceKind::SubBlock => 0,
            ResourceKind::PointerBlock => 1,
            ResourceKind::PointerBlock2 => 2,
            ResourceKind::FileDescriptor => 3,
        }
    }

    /// The structure name for errors.
    pub const fn name(self) -> &'static str {
        match self {
            ResourceKind::SubBlock => "sub-block",
            ResourceKind::PointerBlock => "pointer block",
            ResourceKind::PointerBlock2 => "pointer block 2",
            ResourceKind::FileDescriptor => "file descriptor",
        }
    }
}

/// The order in which mounting opens the system files that hold resources, with whether each
/// must exist: (resource kind, descriptor address, required). Files that hold pointer blocks come
/// before the files that may be addressed through them: ESXi addresses `.fdc.sf` and `.sbc.sf`
/// through `.pbc.sf` pointer blocks once they outgrow the 256 direct addresses of a descriptor
/// (the 4 GiB `vmfs5-span` fixture), as `dissect.vmfs` also opens `.pb2.sf` and `.pbc.sf` first.
pub const SYSTEM_FILE_OPEN_ORDER: [(ResourceKind, u32, bool); 4] = [
    (ResourceKind::PointerBlock2, PB2_ADDR, false),
    (ResourceKind::PointerBlock, PBC_ADDR, true),
    (ResourceKind::FileDescriptor, FDC_ADDR, true),
    (ResourceKind::SubBlock, SBC_ADDR, true),
];

/// Decodes an on-disk address (`raw` is zero-extended on VMFS5).
pub fn decode_addr(raw: u64, layout: &Layout) -> Result<Addr, FsError> {
    if raw == 0 {
        return Ok(Addr::Null);
    }
    let bad = || FsError::corrupt("block address", raw);
    let t = raw & 7;
    if layout.v6 {
        Ok(match t {
            1 => Addr::SmallFileBlock {
                cluster: (raw >> 15) & 0x7FFF_FFFF,
                resource: (raw >> 51) & 0x1FFF,
                tbz: (raw >> 7) & 0xFF != 0,
            },
            7 => Addr::LargeFileBlock {
                block: (raw >> 15) & 0x7FFF_FFFF,
                tbz: (raw >> 7) & 0xFF != 0,
            },
            2 | 3 | 5 => Addr::Resource {
                kind: match t {
                    2 => ResourceKind::SubBlock,
                    3 => ResourceKind::PointerBlock,
                    _ => ResourceKind::PointerBlock2,
                },
                cluster: (raw >> 6) & 0xF_FFFF_FFFF,
                resource: (raw >> 56) & 0xFF,
            },
            4 => fd_addr(raw)?,
            _ => return Err(bad()),
        })
    } else {
        if raw > u32::MAX as u64 {
            return Err(bad());
        }
        Ok(match t {
            1 => Addr::FileBlock {
                block: (raw >> 6) & 0x3FF_FFFF,
                tbz: (raw >> 5) & 1 != 0,
            },
            2 => {
                let mut resource = (raw >> 28) & 0xF;
                if layout.dense_sb {
                    resource |= (raw & 0b11000) << 1;
                }
                Addr::Resource {
                    kind: ResourceKind::SubBlock,
                    cluster: (raw >> 6) & 0x3F_FFFF,
                    resource,
                }
            }
            3 | 5 => Addr::Resource {
                kind: if t == 3 {
                    ResourceKind::PointerBlock
                } else {
                    ResourceKind::PointerBlock2
                },
                cluster: (raw >> 6) & 0x3F_FFFF,
                resource: (raw >> 28) & 0xF,
            },
            4 => fd_addr(raw)?,
            _ => return Err(bad()),
        })
    }
}

/// Decodes a file descriptor address.
pub fn fd_addr(raw: u64) -> Result<Addr, FsError> {
    if raw & 7 != 4 || raw > u32::MAX as u64 {
        return Err(FsError::corrupt("file descriptor address", raw));
    }
    Ok(Addr::Resource {
        kind: ResourceKind::FileDescriptor,
        cluster: (raw >> 6) & 0xFFFF,
        resource: (raw >> 22) & 0x3FF,
    })
}

/// The cluster layout of one resource file (`FS3_ResFileMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceMeta {
    /// Resources per cluster.
    pub per_cluster: u32,
    /// Clusters per cluster group.
    pub clusters_per_group: u32,
    /// Offset of the first cluster group in the file.
    pub group_offset: u32,
    /// Bytes per resource.
    pub resource_bytes: u32,
    /// Bytes per cluster group.
    pub group_bytes: u32,
    /// Number of resources.
    pub resources: u64,
    /// Offset of the child metadata in the same file (VMFS6 `.fbb.sf`: small file blocks).
    pub child_offset: u32,
}

impl ResourceMeta {
    /// Parses resource file metadata found at file offset `at` (for errors).
    pub fn parse(b: &[u8], v6: bool, at: u64) -> Result<Self, FsError> {
        let bad = || FsError::corrupt("resource file metadata", at);
        let m = ResourceMeta {
            per_cluster: u32_at(b, 0x00).ok_or_else(bad)?,
            clusters_per_group: u32_at(b, 0x04).ok_or_else(bad)?,
            group_offset: u32_at(b, 0x08).ok_or_else(bad)?,
            resource_bytes: u32_at(b, 0x0c).ok_or_else(bad)?,
            group_bytes: u32_at(b, 0x10).ok_or_else(bad)?,
            resources: (u32_at(b, 0x14).ok_or_else(bad)? as u64)
                | ((u32_at(b, 0x1c).ok_or_else(bad)? as u64) << 32),
            child_offset: u32_at(b, 0x34).ok_or_else(bad)?,
        };
        if v6 && u32_at(b, 0x20) != Some(RFMD_SIGNATURE) {
            return Err(bad());
        }
        Ok(m)
    }

    /// The offset of resource (`cluster`, `resource`) in the resource file.
    pub fn offset(&self, cluster: u64, resource: u64, cluster_header_bytes: u32) -> Option<u64> {
        if self.clusters_per_group == 0 || resource >= self.per_cluster as u64 {
            return None;
        }
        let group = cluster / self.clusters_per_group as u64;
        let in_group = cluster % self.clusters_per_group as u64;
        let cluster_bytes = (self.per_cluster as u64).checked_mul(self.resource_bytes as u64)?;
        (self.group_offset as u64)
            .checked_add(group.checked_mul(self.group_bytes as u64)?)?
            .checked_add(in_group.checked_mul(cluster_bytes)?)?
            .checked_add(
                (self.clusters_per_group as u64).checked_mul(cluster_header_bytes as u64)?,
            )?
            .checked_add(resource.checked_mul(self.resource_bytes as u64)?)
    }
}

/// The fixed-location file descriptor of system file `addr`, used before `.fdc.sf` is open.
pub fn system_fd_offset(d: &FsDescriptor, layout: &Layout, addr: u32) -> Result<u64, FsError> {
    let Addr::Resource { resource, .. } = fd_addr(addr as u64)? else {
        return Err(FsError::corrupt("file descriptor address", addr as u64));
    };
    let bad = || FsError::corrupt("file system descriptor", FS_DESCRIPTOR_OFFSET);
    if layout.v6 {
        let md = d.md_alignment as u64;
        let group = ((md << 10) + 0x3F_FFFF) & !0xF_FFFF;
        let size = 2 * md;
        group
            .checked_add(d.fdc_cluster_group_offset as u64)
            .and_then(|v| v.checked_add((d.fdc_clusters_per_group as u64).checked_mul(size)?))
            .and_then(|v| v.checked_add(resource.checked_mul(size)?))
            .ok_or_else(bad)
    } else {
        let fbs = d.file_block_size;
        let group = fbs * ((fbs + 0x3F_FFFF) / fbs);
        group
            .checked_add(d.fdc_cluster_group_offset as u64)
            .and_then(|v| v.checked_add((d.fdc_clusters_per_group as u64).checked_mul(1024)?))
            .and_then(|v| v.checked_add(resource << 11))
            .ok_or_else(bad)
    }
}

/// The fields of `FS3_FileMetadata` that a reader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    /// The descriptor's own address.
    pub addr: u32,
    /// Link count.
    pub links: u32,
    /// Descriptor type ([`desc_type`]).
    pub desc_type: u32,
    /// Length in bytes.
    pub size: u64,
    /// The file's block size.
    pub block_size: u64,
    /// Allocated blocks.
    pub blocks: u64,
    /// Modification time.
    pub mtime: u32,
    /// Creation time.
    pub ctime: u32,
    /// Access time.
    pub atime: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Mode bits.
    pub mode: u32,
    /// Zero-level address type ([`zla`]).
    pub zla: u32,
}

impl FileMeta {
    /// Parses the metadata block (starting at `FS3_FileMetadata`), found at volume offset `at`.
    pub fn parse(b: &[u8], at: u64) -> Result<Self, FsError> {
        let bad = || FsError::corrupt("file descriptor", at);
        Ok(FileMeta {
            addr: u32_at(b, 0x00).ok_or_else(bad)?,
            links: u32_at(b, 0x08).ok_or_else(bad)?,
            desc_type: u32_at(b, 0x0c).ok_or_else(bad)?,
            size: u64_at(b, 0x14).ok_or_else(bad)?,
            block_size: u64_at(b, 0x1c).ok_or_else(bad)?,
            blocks: u64_at(b, 0x24).ok_or_else(bad)?,
            mtime: u32_at(b, 0x2c).ok_or_else(bad)?,
            ctime: u32_at(b, 0x30).ok_or_else(bad)?,
            atime: u32_at(b, 0x34).ok_or_else(bad)?,
            uid: u32_at(b, 0x38).ok_or_else(bad)?,
            gid: u32_at(b, 0x3c).ok_or_else(bad)?,
            mode: u32_at(b, 0x40).ok_or_else(bad)?,
            zla: u32_at(b, 0x44).ok_or_else(bad)?,
        })
    }
}

/// Bytes of a VMFS5 directory entry (`FS3_DirEntry`).
pub const DIRENT5_BYTES: usize = 0x8c;
/// Bytes of a VMFS6 directory entry (`FS6_DirEntry`).
pub const DIRENT6_BYTES: usize = 0x120;
/// Bytes of the VMFS6 directory header block.
pub const DIR6_HEADER_BLOCK: u64 = 0x1_0000;
/// Bytes of `FS6_DirHeader` (the hash table follows).
pub const DIR6_HEADER_BYTES: usize = 0x5F8;
/// Bytes of a VMFS6 directory block header.
pub const DIR6_BLOCK_HEADER: usize = 0x40;
/// Directory header versions.
pub const DIR6_VERSIONS: [u32; 2] = [0xF5_0001, 0xFD_C001];
/// Directory block types in the allocation map.
pub const DIR6_BLOCK_DIRENT: u8 = 1;
/// Link block.
pub const DIR6_BLOCK_LINK: u8 = 2;
/// Hash table slots of a directory.
pub const DIR6_HASH_ENTRIES: u64 = 16001;
/// Hash table slots reserved in the root directory.
pub const DIR6_ROOT_RESERVED: u64 = 28;
/// Bytes of a link group.
pub const DIR6_LINK_GROUP_BYTES: usize = 0x54;

/// Salt filling the unused part of a hashed name.
const NAME_HASH_SALT: u64 = 0x739A_75C2_8E61_B017;

fn mix64(mut a: u64, mut b: u64, mut c: u64) -> (u64, u64, u64) {
    a = a.wrapping_sub(b).wrapping_sub(c) ^ (c >> 43);
    b = b.wrapping_sub(c).wrapping_sub(a) ^ (a << 9);
    c = c.wrapping_sub(a).wrapping_sub(b) ^ (b >> 8);
    a = a.wrapping_sub(b).wrapping_sub(c) ^ (c >> 38);
    b = b.wrapping_sub(c).wrapping_sub(a) ^ (a << 23);
    c = c.wrapping_sub(a).wrapping_sub(b) ^ (b >> 5);
    a = a.wrapping_sub(b).wrapping_sub(c) ^ (c >> 35);
    b = b.wrapping_sub(c).wrapping_sub(a) ^ (a << 49);
    c = c.wrapping_sub(a).wrapping_sub(b) ^ (b >> 11);
    a = a.wrapping_sub(b).wrapping_sub(c) ^ (c >> 12);
    b = b.wrapping_sub(c).wrapping_sub(a) ^ (a << 18);
    c = c.wrapping_sub(a).wrapping_sub(b) ^ (b >> 22);
    (a, b, c)
}

/// Bob Jenkins' 64-bit `lookup8` over whole little-endian quads, in the variant ESXi uses: the
/// final step adds the number of quads (not bytes) to `c`.
pub fn hash_quads(quads: &[u64], level: u64) -> u64 {
    let (mut a, mut b, mut c) = (level, level, 0x9E37_79B9_7F4A_7C13u64);
    let mut chunks = quads.chunks_exact(3);
    for chunk in &mut chunks {
        a = a.wrapping_add(chunk[0]);
        b = b.wrapping_add(chunk[1]);
        c = c.wrapping_add(chunk[2]);
        (a, b, c) = mix64(a, b, c);
    }
    c = c.wrapping_add(quads.len() as u64);
    let rest = chunks.remainder();
    if let Some(&q) = rest.first() {
        a = a.wrapping_add(q);
    }
    if let Some(&q) = rest.get(1) {
        b = b.wrapping_add(q);
    }
    mix64(a, b, c).2
}

/// The fixed hashes of system files in the root directory.
const SYSTEM_NAME_HASHES: [(&[u8], u16); 10] = [
    (b".fbb.sf", 0x3E66),
    (b".fdc.sf", 0x3E67),
    (b".pbc.sf", 0x3E68),
    (b".sbc.sf", 0x3E69),
    (b".vh.sf", 0x3E6A),
    (b".pb2.sf", 0x3E6B),
    (b".sdd.sf", 0x3E6C),
    (b".jbc.sf", 0x3E6D),
    (b".unmap.sf", 0x3E6E),
    (b".dfd.sf", 0x3E6F),
];

/// The VMFS6 directory hashes of `name`: the 16-bit link hash that tells entries sharing a
/// hash table slot apart, and the hash table slot. `None` for names longer than 127 bytes.
pub fn name_hash(name: &[u8], in_root: bool) -> Option<(u16, u64)> {
    if in_root && let Some((_, h)) = SYSTEM_NAME_HASHES.iter().find(|(n, _)| *n == name) {
        return Some((*h, *h as u64));
    }
    if name.len() > 127 {
        return None;
    }
    let mut key = [0u8; 256];
    key[..name.len()].copy_from_slice(name);
    let mut at = (name.len() + 8) & !7;
    while at < 127 {
        key[at..at + 8].copy_from_slice(&NAME_HASH_SALT.to_le_bytes());
        at += 8;
    }
    let mut quads = [0u64; 32];
    for (q, bytes) in quads.iter_mut().zip(key.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        *q = u64::from_le_bytes(b);
    }
    let h = hash_quads(&quads, 42);
    let slots = if in_root {
        DIR6_HASH_ENTRIES - DIR6_ROOT_RESERVED
    } else {
        DIR6_HASH_ENTRIES
    };
    Some((((h >> 16) & 0xFFFF) as u16, h % slots))
}

/// A VMFS6 directory location: (block type, block number, slot).
pub fn dir6_location(raw: u32) -> (u8, u64, u64) {
    (
        (raw & 3) as u8,
        ((raw >> 2) & 0x3F_FFFF) as u64,
        (raw >> 24) as u64,
    )
}

/// A parsed directory entry (both versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawDirEntry {
    /// Descriptor type.
    pub desc_type: u32,
    /// File descriptor address.
    pub addr: u32,
    /// Name bytes.
    pub name: [u8; 256],
    /// Name length.
    pub name_len: usize,
}

impl RawDirEntry {
    /// Parses a VMFS5 (`v6 == false`) or VMFS6 entry.
    pub fn parse(b: &[u8], v6: bool) -> Option<Self> {
        let (name_at, name_max) = if v6 { (0x18, 256) } else { (0x0c, 128) };
        let field = b.get(name_at..name_at + name_max)?;
        let name_bytes = c_name(field);
        let mut name = [0u8; 256];
        name[..name_bytes.len()].copy_from_slice(name_bytes);
        Some(RawDirEntry {
            desc_type: u32_at(b, 0)?,
            addr: u32_at(b, 4)?,
            name,
            name_len: name_bytes.len(),
        })
    }

    /// The name.
    pub fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }
}

/// A raw device mapping record (`SCSI_DiskId`) in the data area of an RDM descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RdmMapping {
    /// Identifier type.
    pub id_type: u8,
    /// Identifier length.
    pub id_len: u8,
    /// LUN number.
    pub lun: u16,
    /// SCSI device type.
    pub device_type: u8,
    /// SCSI level.
    pub scsi_level: u8,
    /// Vendor.
    pub vendor: [u8; 8],
    /// Model.
    pub model: [u8; 16],
    /// Revision.
    pub revision: [u8; 4],
    /// Identifier bytes.
    pub id: [u8; 44],
}

impl RdmMapping {
    /// Bytes of the record.
    pub const BYTES: usize = 78;

    /// Parses the record.
    pub fn parse(b: &[u8], at: u64) -> Result<Self, FsError> {
        let bad = || FsError::corrupt("raw device mapping", at);
        let b = b.get(..Self::BYTES).ok_or_else(bad)?;
        let mut m = RdmMapping {
            id_type: b[0],
            id_len: b[1],
            lun: u16_at(b, 2).ok_or_else(bad)?,
            device_type: b[4],
            scsi_level: b[5],
            vendor: [0; 8],
            model: [0; 16],
            revision: [0; 4],
            id: [0; 44],
        };
        m.vendor.copy_from_slice(&b[6..14]);
        m.model.copy_from_slice(&b[14..30]);
        m.revision.copy_from_slice(&b[30..34]);
        m.id.copy_from_slice(&b[34..78]);
        Ok(m)
    }

    /// The identifier bytes, `id_len` long (at most 44).
    pub fn id_bytes(&self) -> &[u8] {
        &self.id[..(self.id_len as usize).min(44)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v5() -> Layout {
        Layout {
            v6: false,
            fd_bytes: 2048,
            fd_meta_offset: 512,
            fd_data_offset: 1024,
            fd_data_bytes: 1024,
            fd_addrs_offset: 1024,
            fd_addr_count: 256,
            addr_bytes: 4,
            pb_shift: 10,
            cluster_header_bytes: 1024,
            fbs_shift: 20,
            sbs_shift: 13,
            lfb_shift: 20,
            sfb_per_cluster: 1,
            dense_sb: true,
        }
    }

    #[test]
    fn vmfs5_addresses() {
        let l = v5();
        assert_eq!(
            decode_addr(0x141, &l).unwrap(),
            Addr::FileBlock {
                block: 5,
                tbz: false
            }
        );
        assert_eq!(
            decode_addr(0x161, &l).unwrap(),
            Addr::FileBlock {
                block: 5,
                tbz: true
            }
        );
        assert_eq!(
            decode_addr(0x1000_0482, &l).unwrap(),
            Addr::Resource {
                kind: ResourceKind::SubBlock,
                cluster: 18,
                resource: 1
            }
        );
        assert!(decode_addr(0x1_0000_0001, &l).is_err());
        assert!(decode_addr(6, &l).is_err());
    }

    #[test]
    fn vmfs6_addresses() {
        let mut l = v5();
        l.v6 = true;
        assert_eq!(
            decode_addr(0x40_0000_0000_0001, &l).unwrap(),
            Addr::SmallFileBlock {
                cluster: 0,
                resource: 8,
                tbz: false
            }
        );
        assert_eq!(
            decode_addr(0x100_0000_0000_0b82, &l).unwrap(),
            Addr::Resource {
                kind: ResourceKind::SubBlock,
                cluster: 0x2e,
                resource: 1
            }
        );
    }

    #[test]
    fn directory_name_hashes() {
        // Values computed independently with dissect.vmfs 3.13 (`_dir_name_hash`).
        assert_eq!(name_hash(b"small", false), Some((0xa46b, 0x3be0)));
        assert_eq!(name_hash(b"small", true), Some((0xa46b, 0x11b7)));
        assert_eq!(name_hash(b"file1", false), Some((0xd2b9, 0x10fc)));
        assert_eq!(
            name_hash("Kusjes van SRT \u{1F618}".as_bytes(), false),
            Some((0x81a5, 0x26f7))
        );
        assert_eq!(name_hash(b".fbb.sf", true), Some((0x3e66, 0x3e66)));
        assert_eq!(name_hash(b".fbb.sf", false), Some((0xab98, 0xa21)));
        assert_eq!(name_hash(&[b'x'; 128], false), None);
    }

    #[test]
    fn descriptor_is_validated() {
        let mut b = [0u8; FS_DESCRIPTOR_BYTES];
        b[0..4].copy_from_slice(&VMFS_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&24u32.to_le_bytes());
        b[0xa1..0xa9].copy_from_slice(&(1u64 << 20).to_le_bytes());
        b[0xd5..0xd9].copy_from_slice(&8u32.to_le_bytes());
        b[0xd9..0xdd].copy_from_slice(&65536u32.to_le_bytes());
        b[0x134..0x138].copy_from_slice(&4096u32.to_le_bytes());
        let d = FsDescriptor::parse(&b).unwrap();
        assert!(d.is_vmfs6());
        let l = Layout::new(&d);
        assert_eq!(
            (l.fd_bytes, l.fd_data_offset, l.fd_addrs_offset),
            (8192, 4608, 5632)
        );
        for md in [0u32, 512, 1024, 3000, 8192] {
            b[0x134..0x138].copy_from_slice(&md.to_le_bytes());
            assert!(FsDescriptor::parse(&b).is_err(), "md {md}");
        }
        b[0x134..0x138].copy_from_slice(&4096u32.to_le_bytes());
        b[0xa1..0xa9].copy_from_slice(&3u64.to_le_bytes());
        assert_eq!(
            FsDescriptor::parse(&b).unwrap_err().at(),
            FS_DESCRIPTOR_OFFSET + 0xa1
        );
        b[0..4].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            FsDescriptor::parse(&b).unwrap_err().structure(),
            "file system descriptor"
        );
        assert!(FsDescriptor::parse(&b[..10]).is_err());
    }

    #[test]
    fn large_file_blocks_and_tbz() {
        let mut l = v5();
        l.v6 = true;
        let raw = 7 | (3u64 << 15);
        assert_eq!(
            decode_addr(raw, &l).unwrap(),
            Addr::LargeFileBlock {
                block: 3,
                tbz: false
            }
        );
        assert_eq!(
            decode_addr(raw | (0x80 << 7), &l).unwrap(),
            Addr::LargeFileBlock {
                block: 3,
                tbz: true
            }
        );
        assert_eq!(
            decode_addr(0x40_0000_0000_0001 | (1 << 7), &l).unwrap(),
            Addr::SmallFileBlock {
                cluster: 0,
                resource: 8,
                tbz: true
            }
        );
        assert!(decode_addr(6, &l).is_err());
    }

    #[test]
    fn uuid_text() {
        let mut s = heapless::String::new();
        let mut u = [0u8; 16];
        u[..4].copy_from_slice(&0x6862_6efcu32.to_le_bytes());
        u[4..8].copy_from_slice(&0x2ea1_2e18u32.to_le_bytes());
        u[8..10].copy_from_slice(&0xb4efu16.to_le_bytes());
        u[10..].copy_from_slice(&[0xbc, 0x24, 0x11, 0xb1, 0x7e, 0x28]);
        format_uuid(&u, &mut s);
        assert_eq!(s.as_str(), "68626efc-2ea12e18-b4ef-bc2411b17e28");
    }

    #[test]
    fn resource_offsets_are_checked() {
        let m = ResourceMeta {
            per_cluster: 200,
            clusters_per_group: 64,
            group_offset: 0x10000,
            resource_bytes: 2048,
            group_bytes: 26_279_936,
            resources: 20352,
            child_offset: 0,
        };
        assert_eq!(m.offset(4, 0, 1024), Some(0x1B_0000));
        assert_eq!(m.offset(0, 200, 1024), None);
        let zero = ResourceMeta::default();
        assert_eq!(zero.offset(1, 0, 1024), None);
        let huge = ResourceMeta {
            group_bytes: u32::MAX,
            ..m
        };
        assert!(huge.offset(u64::MAX / 2, 0, 1024).is_none());
    }

    /// `vmfs5-span` (4 GiB, 512 KiB file blocks): `.fdc.sf` is 155 MiB, more than the 256
    /// direct addresses of a descriptor reach, so ESXi gives it ZLA 3 and its first address is
    /// the `.pbc.sf` pointer block 0x10014203 (`.sbc.sf`'s is 0x00014203). Locating it needs
    /// `.pbc.sf`'s cluster layout (values as ESXi wrote them; offsets as `dissect.vmfs`
    /// computes them), so `.pbc.sf` must be open before `.fdc.sf` and `.sbc.sf` are read.
    #[test]
    fn system_files_addressed_through_pointer_blocks() {
        let l = v5();
        let pbc = ResourceMeta {
            per_cluster: 16,
            clusters_per_group: 64,
            group_offset: 0x1_0000,
            resource_bytes: 4096,
            group_bytes: 0x41_0000,
            resources: 32240,
            child_offset: 0,
        };
        for (raw, resource, in_file) in [
            (0x1001_4203u64, 1, 0x51E_1000),
            (0x0001_4203, 0, 0x51E_0000),
        ] {
            assert_eq!(
                decode_addr(raw, &l).unwrap(),
                Addr::Resource {
                    kind: ResourceKind::PointerBlock,
                    cluster: 0x508,
                    resource,
                }
            );
            assert_eq!(pbc.offset(0x508, resource, 1024), Some(in_file));
        }
        let position = |kind| {
            SYSTEM_FILE_OPEN_ORDER
                .iter()
                .position(|(k, _, _)| *k == kind)
                .unwrap()
        };
        for holder in [ResourceKind::PointerBlock, ResourceKind::PointerBlock2] {
            for user in [ResourceKind::FileDescriptor, ResourceKind::SubBlock] {
                assert!(position(holder) < position(user));
            }
        }
    }
}
