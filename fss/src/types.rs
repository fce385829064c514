//! The `FileSystem` trait and the values it exchanges.

use block::{Completion, DEFAULT_SG_CAPACITY, Instant, Memory, SgList, Tag};

use crate::error::FsError;

/// The longest name of one directory entry, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// The longest path the switch resolves, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;

/// A file system's identifier of one node (for VMFS, the file descriptor address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NodeId(pub u64);

/// An open file, as returned by [`FileSystem::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FileHandle(pub u32);

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FileKind {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A raw device mapping: a file that names a LUN.
    RawDeviceMap,
    /// A file system's own metadata file that reads like a regular file.
    SystemFile,
    /// A file system's own metadata directory.
    SystemDirectory,
    /// Anything else.
    Other,
}

impl FileKind {
    /// Whether the node can be listed.
    pub const fn is_dir(self) -> bool {
        matches!(self, FileKind::Directory | FileKind::SystemDirectory)
    }

    /// Whether the node's bytes can be read with file requests.
    pub const fn is_readable(self) -> bool {
        matches!(
            self,
            FileKind::Regular | FileKind::SystemFile | FileKind::Symlink
        )
    }

    /// The `ls -l` type character.
    pub const fn type_char(self) -> char {
        match self {
            FileKind::Directory | FileKind::SystemDirectory => 'd',
            FileKind::Symlink => 'l',
            FileKind::RawDeviceMap => 'b',
            _ => '-',
        }
    }
}

/// What `stat` reports about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stat {
    /// The node.
    pub node: NodeId,
    /// What it is.
    pub kind: FileKind,
    /// Length in bytes.
    pub size: u64,
    /// Permission bits (and, when the file system records them, type bits).
    pub mode: u32,
    /// Number of hard links.
    pub links: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last modification, seconds since the Unix epoch.
    pub mtime: u32,
    /// Last status change (VMFS: creation), seconds since the Unix epoch.
    pub ctime: u32,
    /// Last access, seconds since the Unix epoch.
    pub atime: u32,
    /// The file's allocation unit in bytes.
    pub block_size: u64,
    /// Number of allocated units.
    pub blocks: u64,
}

/// One entry handed out by [`FileSystem::readdir`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// The name as stored (VMFS names are UTF-8 without a terminating NUL).
    pub name: &'a [u8],
    /// The node it names.
    pub node: NodeId,
    /// What the entry says the node is.
    pub kind: FileKind,
}

impl DirEntry<'_> {
    /// The name as text, if it is UTF-8.
    pub fn name_str(&self) -> Option<&str> {
        core::str::from_utf8(self.name).ok()
    }
}

/// A read of `len` bytes at byte `offset` of an open file into the memory `sg` describes.
///
/// `offset` and `len` must be multiples of the file system's [`FileSystem::io_align`]; bytes past
/// the end of the file read as zeros, and a request starting at or past the end is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest<const SG: usize = DEFAULT_SG_CAPACITY> {
    /// Caller-chosen identifier, handed back in the completion.
    pub tag: Tag,
    /// The open file.
    pub handle: FileHandle,
    /// Byte offset in the file.
    pub offset: u64,
    /// Byte length; equal to `sg.total_len()`.
    pub len: u64,
    /// Where the bytes go.
    pub sg: SgList<SG>,
}

impl<const SG: usize> FileRequest<SG> {
    /// A read of `sg.total_len()` bytes at `offset` of `handle` into `sg`.
    pub fn read(tag: Tag, handle: FileHandle, offset: u64, sg: SgList<SG>) -> Self {
        Self {
            tag,
            handle,
            offset,
            len: sg.total_len(),
            sg,
        }
    }
}

/// A mounted file system.
///
/// Slow paths take `now` and the [`Memory`] the file system reads its metadata through, and may
/// drive the device below until the metadata arrives. The data path is asynchronous:
/// [`FileSystem::submit`] never blocks, and every accepted request completes exactly once through
/// [`FileSystem::poll`], with the first error of any piece it was split into.
///
/// The trait is object safe, so a [`crate::Switch`] can hold file systems of different types.
pub trait FileSystem<const SG: usize = DEFAULT_SG_CAPACITY> {
    /// The volume label.
    fn label(&self) -> &str;

    /// The volume UUID in the file system's canonical text form.
    fn uuid(&self) -> &str;

    /// The root directory.
    fn root(&self) -> NodeId;

    /// The alignment, in bytes, of file request offsets and lengths.
    fn io_align(&self) -> u32;

    /// The node named `name` in directory `dir`.
    fn lookup(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        dir: NodeId,
        name: &[u8],
    ) -> Result<NodeId, FsError>;

    /// What the file system records about `node`.
    fn stat(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        node: NodeId,
    ) -> Result<Stat, FsError>;

    /// Hands every entry of directory `dir` to `each`, in on-disk order, until `each` returns
    /// `false`. Returns the number of entries handed out.
    fn readdir(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        dir: NodeId,
        each: &mut dyn FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<usize, FsError>;

    /// Copies the target of symbolic link `node` into `target` and returns its length.
    fn readlink(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        node: NodeId,
        target: &mut [u8],
    ) -> Result<usize, FsError>;

    /// Opens `node` for reading.
    fn open(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        node: NodeId,
    ) -> Result<FileHandle, FsError>;

    /// Closes `handle`. Requests on it must have completed.
    fn close(&mut self, handle: FileHandle) -> Result<(), FsError>;

    /// Queues a file request. Never blocks; a full queue hands the request back.
    fn submit(
        &mut self,
        now: Instant,
        request: FileRequest<SG>,
    ) -> Result<(), (FsError, FileRequest<SG>)>;

    /// Advances outstanding requests to `now`, moving data through `memory`, and hands each
    /// finished request to `done` exactly once. Returns when it next needs a poll.
    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant>;
}

/// Splits `path` into its non-empty components (`a//b/` gives `a`, `b`).
pub fn split_path(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}
