//! Read VMFS5 and VMFS6 file systems exactly as ESXi lays them out, from any
//! [`block::BlockDevice`]: an LVM volume, or a bare device for volumes with no LVM header.
//!
//! - [`Vmfs::mount`] reads the file system descriptor at 0x200000, the system files
//!   (`.pb2.sf`, `.pbc.sf`, `.fdc.sf`, `.sbc.sf`: pointer block files first, since the others
//!   may be addressed through them) and their resource headers, and the root directory.
//! - Paths resolve through VMFS5 directories and VMFS6 hashed directories; symbolic links and
//!   raw device mappings ([`RdmMapping`]) read as such.
//! - File data is read with asynchronous [`fss::FileRequest`]s, split at block boundaries into
//!   device reads; resident data, file blocks, sub-blocks, single and double pointer blocks and
//!   large file blocks are followed; unallocated and to-be-zeroed ranges read as zeros. Pointer
//!   blocks are kept in a bounded cache in the caller's [`MetaBuffer`], so a random read in a
//!   huge thin file costs at most one metadata read once the upper levels are cached.
//! - [`Vmfs::map_extents`] maps an open file to its runs ([`FileExtent`]: data at a volume
//!   offset, zeros, or resident in the descriptor), resolved by the same code as reads, so a
//!   caller can move the data itself (the host copies it straight from the device image).
//! - Every value read from disk is checked; every walk is bounded. Bad input is an
//!   [`fss::FsError`] naming the structure and address, never a panic or a loop.
//!
//! `no_std`, no allocation. The layout is described in `FORMAT.md`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]

mod extents;
pub mod format;
mod io;
mod volume;

pub use extents::{ExtentKind, FileExtent, MAP_STEPS_PER_CALL};
pub use format::RdmMapping;
pub use io::{MAX_CHILDREN, MAX_REQUESTS};
pub use volume::{
    Counters, FileCheck, MAX_CACHE_SLOTS, MAX_OPEN, MIN_CACHE_SLOTS, MetaBuffer, SCRATCH_BYTES,
    Vmfs, VolumeInfo,
};

use block::{BlockDevice, Completion, Instant, Memory};
use fss::{
    DirEntry, FileHandle, FileKind, FileRequest, FileSystem, FsError, FsErrorKind, NodeId, Stat,
};

use format::desc_type;

fn entry_kind(desc: u32) -> FileKind {
    match desc {
        desc_type::DIRECTORY => FileKind::Directory,
        desc_type::REGFILE => FileKind::Regular,
        desc_type::SYMLINK => FileKind::Symlink,
        desc_type::RDM => FileKind::RawDeviceMap,
        desc_type::SYSFILE => FileKind::SystemFile,
        _ => FileKind::Other,
    }
}

impl<D: BlockDevice<SG>, const SG: usize> Vmfs<D, SG> {
    /// Resolves `path` (relative to the volume root, `/`-separated) without following
    /// symbolic links.
    pub fn lookup_path(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        path: &str,
    ) -> Result<NodeId, FsError> {
        let mut node = FileSystem::<SG>::root(self);
        for component in fss::split_path(path) {
            node = FileSystem::<SG>::lookup(self, now, memory, node, component.as_bytes())?;
        }
        Ok(node)
    }
}

impl<D: BlockDevice<SG>, const SG: usize> FileSystem<SG> for Vmfs<D, SG> {
    fn label(&self) -> &str {
        self.label_str()
    }

    fn uuid(&self) -> &str {
        self.uuid_str()
    }

    fn root(&self) -> NodeId {
        NodeId(format::ROOT_DIR_ADDR as u64)
    }

    fn io_align(&self) -> u32 {
        self.block_bytes as u32
    }

    fn lookup(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        dir: NodeId,
        name: &[u8],
    ) -> Result<NodeId, FsError> {
        if name.len() > fss::MAX_NAME_BYTES {
            return Err(FsError::new(FsErrorKind::NameTooLong, "name", dir.0));
        }
        let file = self.load_fd(now, memory, Self::node_addr(dir)?)?;
        let addr = self.find_entry(now, memory, &file, name)?;
        Ok(NodeId(addr as u64))
    }

    fn stat(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        node: NodeId,
    ) -> Result<Stat, FsError> {
        let file = self.load_fd(now, memory, Self::node_addr(node)?)?;
        Ok(Self::stat_of(&file))
    }

    fn readdir(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        dir: NodeId,
        each: &mut dyn FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<usize, FsError> {
        let file = self.load_fd(now, memory, Self::node_addr(dir)?)?;
        self.dir_entries(now, memory, &file, &mut |raw| {
            each(&DirEntry {
                name: raw.name(),
                node: NodeId(raw.addr as u64),
                kind: entry_kind(raw.desc_type),
            })
        })
    }

    fn readlink(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        node: NodeId,
        target: &mut [u8],
    ) -> Result<usize, FsError> {
        let file = self.load_fd(now, memory, Self::node_addr(node)?)?;
        if file.kind() != FileKind::Symlink {
            return Err(FsError::new(FsErrorKind::NotASymlink, "node", node.0));
        }
        let len = file.meta.size;
        if len > target.len() as u64 || len > 4096 {
            return Err(FsError::new(
                FsErrorKind::NameTooLong,
                "symbolic link",
                node.0,
            ));
        }
        if len == 0 {
            return Ok(0);
        }
        let at = self.read_file_sync(now, memory, &file, 0, len)?;
        memory
            .read(at, &mut target[..len as usize])
            .map_err(|_| FsError::new(FsErrorKind::Buffer, "metadata buffer", at.0))?;
        Ok(len as usize)
    }

    fn open(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        node: NodeId,
    ) -> Result<FileHandle, FsError> {
        let file = self.load_fd(now, memory, Self::node_addr(node)?)?;
        if file.kind() == FileKind::RawDeviceMap {
            return Err(FsError::new(
                FsErrorKind::Unsupported,
                "raw device mapping data",
                node.0,
            ));
        }
        let slot = self
            .open
            .iter()
            .position(Option::is_none)
            .ok_or(FsError::new(
                FsErrorKind::NoSpace,
                "open file table",
                MAX_OPEN as u64,
            ))?;
        self.open[slot] = Some(file);
        Ok(FileHandle(slot as u32))
    }

    fn close(&mut self, handle: FileHandle) -> Result<(), FsError> {
        self.check_close(handle)?;
        match self.open.get_mut(handle.0 as usize) {
            Some(slot @ Some(_)) => {
                *slot = None;
                Ok(())
            }
            _ => Err(FsError::new(
                FsErrorKind::BadHandle,
                "file handle",
                handle.0 as u64,
            )),
        }
    }

    fn submit(
        &mut self,
        _now: Instant,
        request: FileRequest<SG>,
    ) -> Result<(), (FsError, FileRequest<SG>)> {
        self.submit_request(request)
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        self.poll_requests(now, memory, done)
    }
}
