//! The mount table: `/vmfs/volumes/<label>/...` and `/vmfs/volumes/<uuid>/...`.

use block::{DEFAULT_SG_CAPACITY, Instant, Memory};

use crate::error::{FsError, FsErrorKind};
use crate::types::{FileKind, FileSystem, MAX_PATH_BYTES, NodeId, split_path};

/// The prefix under which every mounted volume appears.
pub const VOLUMES_PREFIX: &str = "/vmfs/volumes/";

/// The mount capacity used when a caller does not choose one.
pub const MAX_MOUNTS_DEFAULT: usize = 8;

/// The most symbolic links followed while resolving one path.
const MAX_LINKS: usize = 8;

/// A slot of the mount table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MountId(pub usize);

/// A path split into the volume that holds it and the rest of the path inside that volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved<'p> {
    /// The mount.
    pub mount: MountId,
    /// The path inside the volume, without a leading slash (empty for the volume root).
    pub rest: &'p str,
}

/// A fixed-capacity mount table of up to `N` file systems.
///
/// ```
/// # use fss::{Switch, MountId};
/// let switch: Switch<'_, 4> = Switch::new();
/// assert!(switch.resolve("/vmfs/volumes/datastore1/vm/vm.vmx").is_err()); // nothing mounted
/// ```
pub struct Switch<'a, const N: usize = MAX_MOUNTS_DEFAULT, const SG: usize = DEFAULT_SG_CAPACITY> {
    mounts: [Option<&'a mut dyn FileSystem<SG>>; N],
}

impl<const N: usize, const SG: usize> Default for Switch<'_, N, SG> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, const N: usize, const SG: usize> Switch<'a, N, SG> {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            mounts: core::array::from_fn(|_| None),
        }
    }

    /// Adds `fs`. Refused when the table is full or a mounted volume has the same label or UUID.
    pub fn mount(&mut self, fs: &'a mut dyn FileSystem<SG>) -> Result<MountId, FsError> {
        for other in self.mounts.iter().flatten() {
            let same_label = !fs.label().is_empty() && other.label() == fs.label();
            if same_label || other.uuid() == fs.uuid() {
                return Err(FsError::new(FsErrorKind::AlreadyMounted, "mount table", 0));
            }
        }
        let slot = self
            .mounts
            .iter()
            .position(Option::is_none)
            .ok_or(FsError::new(FsErrorKind::NoSpace, "mount table", N as u64))?;
        self.mounts[slot] = Some(fs);
        Ok(MountId(slot))
    }

    /// Removes a mount and hands its file system back.
    pub fn unmount(&mut self, id: MountId) -> Option<&'a mut dyn FileSystem<SG>> {
        self.mounts.get_mut(id.0)?.take()
    }

    /// The mount whose label or UUID is `name`.
    pub fn find(&self, name: &str) -> Option<MountId> {
        self.mounts.iter().enumerate().find_map(|(i, m)| {
            let fs = m.as_ref()?;
            (fs.label() == name || fs.uuid() == name).then_some(MountId(i))
        })
    }

    /// The file system of a mount.
    pub fn fs(&mut self, id: MountId) -> Option<&mut (dyn FileSystem<SG> + 'a)> {
        match self.mounts.get_mut(id.0) {
            Some(Some(fs)) => Some(&mut **fs),
            _ => None,
        }
    }

    /// Every mount as `(id, label, uuid)`.
    pub fn mounts(&self) -> impl Iterator<Item = (MountId, &str, &str)> {
        self.mounts
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|fs| (MountId(i), fs.label(), fs.uuid())))
    }

    /// Splits `/vmfs/volumes/<label or uuid>/rest` into the mount and `rest`.
    pub fn resolve<'p>(&self, path: &'p str) -> Result<Resolved<'p>, FsError> {
        let tail = path.strip_prefix(VOLUMES_PREFIX).ok_or(FsError::new(
            FsErrorKind::NotFound,
            "volume path",
            0,
        ))?;
        let tail = tail.trim_start_matches('/');
        let (volume, rest) = match tail.find('/') {
            Some(i) => (&tail[..i], tail[i + 1..].trim_start_matches('/')),
            None => (tail, ""),
        };
        let mount = self
            .find(volume)
            .ok_or(FsError::new(FsErrorKind::NotFound, "volume", 0))?;
        Ok(Resolved { mount, rest })
    }

    /// Resolves a full path to a node, following symbolic links (at most eight), including one
    /// in the last component when `follow_last` is set. Links may be absolute
    /// (`/vmfs/volumes/...`, possibly on another volume) or relative to their directory.
    pub fn lookup(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        path: &str,
        follow_last: bool,
    ) -> Result<(MountId, NodeId), FsError> {
        let mut current: heapless::String<MAX_PATH_BYTES> = heapless::String::new();
        current
            .push_str(path)
            .map_err(|_| FsError::new(FsErrorKind::NameTooLong, "path", path.len() as u64))?;
        let mut links = 0usize;
        'restart: loop {
            let resolved = self.resolve(&current)?;
            let mount = resolved.mount;
            let rest: heapless::String<MAX_PATH_BYTES> = heapless::String::try_from(resolved.rest)
                .map_err(|_| FsError::new(FsErrorKind::NameTooLong, "path", 0))?;
            let fs = self.fs(mount).ok_or(FsError::new(
                FsErrorKind::NotFound,
                "mount",
                mount.0 as u64,
            ))?;
            let mut node = fs.root();
            let components = split_path(&rest).count();
            // The directory part walked so far, for relative links.
            let mut walked: heapless::String<MAX_PATH_BYTES> = heapless::String::new();
            for (index, component) in split_path(&rest).enumerate() {
                let next = fs.lookup(now, memory, node, component.as_bytes())?;
                let last = index + 1 == components;
                if last && !follow_last {
                    return Ok((mount, next));
                }
                let stat = fs.stat(now, memory, next)?;
                if stat.kind == FileKind::Symlink {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(FsError::new(
                            FsErrorKind::TooManyLinks,
                            "path",
                            links as u64,
                        ));
                    }
                    let mut target = [0u8; MAX_PATH_BYTES];
                    let len = fs.readlink(now, memory, next, &mut target)?;
                    let target = core::str::from_utf8(&target[..len])
                        .map_err(|_| FsError::corrupt("symbolic link target", next.0))?;
                    let mut joined: heapless::String<MAX_PATH_BYTES> = heapless::String::new();
                    let too_long = |_| FsError::new(FsErrorKind::NameTooLong, "path", 0);
                    if !target.starts_with('/') {
                        joined.push_str(VOLUMES_PREFIX).map_err(too_long)?;
                        joined.push_str(fs.uuid()).map_err(too_long)?;
                        joined.push('/').map_err(too_long)?;
                        joined.push_str(&walked).map_err(too_long)?;
                    }
                    joined.push_str(target).map_err(too_long)?;
                    for remaining in split_path(&rest).skip(index + 1) {
                        joined.push('/').map_err(too_long)?;
                        joined.push_str(remaining).map_err(too_long)?;
                    }
                    current = joined;
                    continue 'restart;
                }
                if !last && !stat.kind.is_dir() {
                    return Err(FsError::new(FsErrorKind::NotADirectory, "path", next.0));
                }
                let too_long = |_| FsError::new(FsErrorKind::NameTooLong, "path", 0);
                walked.push_str(component).map_err(too_long)?;
                walked.push('/').map_err(too_long)?;
                node = next;
            }
            return Ok((mount, node));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DirEntry, FileHandle, FileRequest, Stat};
    use block::{Completion, MemoryRegions};

    /// A toy file system: a root holding `a` (a directory holding `f`), and links.
    struct Toy {
        label: &'static str,
        uuid: &'static str,
    }

    const ROOT: NodeId = NodeId(1);
    const A: NodeId = NodeId(2);
    const F: NodeId = NodeId(3);
    const ABS: NodeId = NodeId(4);
    const REL: NodeId = NodeId(5);
    const LOOP: NodeId = NodeId(6);

    impl FileSystem for Toy {
        fn label(&self) -> &str {
            self.label
        }
        fn uuid(&self) -> &str {
            self.uuid
        }
        fn root(&self) -> NodeId {
            ROOT
        }
        fn io_align(&self) -> u32 {
            512
        }
        fn lookup(
            &mut self,
            _: Instant,
            _: &mut dyn Memory,
            dir: NodeId,
            name: &[u8],
        ) -> Result<NodeId, FsError> {
            match (dir, name) {
                (ROOT, b"a") => Ok(A),
                (ROOT, b"abs") => Ok(ABS),
                (ROOT, b"loop") => Ok(LOOP),
                (A, b"f") => Ok(F),
                (A, b"rel") => Ok(REL),
                (A, b"..") => Ok(ROOT),
                _ => Err(FsError::new(FsErrorKind::NotFound, "entry", dir.0)),
            }
        }
        fn stat(&mut self, _: Instant, _: &mut dyn Memory, node: NodeId) -> Result<Stat, FsError> {
            let kind = match node {
                ROOT | A => FileKind::Directory,
                F => FileKind::Regular,
                _ => FileKind::Symlink,
            };
            Ok(Stat {
                node,
                kind,
                size: 0,
                mode: 0,
                links: 1,
                uid: 0,
                gid: 0,
                mtime: 0,
                ctime: 0,
                atime: 0,
                block_size: 512,
                blocks: 0,
            })
        }
        fn readdir(
            &mut self,
            _: Instant,
            _: &mut dyn Memory,
            _: NodeId,
            _: &mut dyn FnMut(&DirEntry<'_>) -> bool,
        ) -> Result<usize, FsError> {
            Ok(0)
        }
        fn readlink(
            &mut self,
            _: Instant,
            _: &mut dyn Memory,
            node: NodeId,
            target: &mut [u8],
        ) -> Result<usize, FsError> {
            let t: &[u8] = match node {
                ABS => b"/vmfs/volumes/other/a/f",
                REL => b"../a/f",
                LOOP => b"/vmfs/volumes/toy/loop",
                _ => return Err(FsError::new(FsErrorKind::NotASymlink, "node", node.0)),
            };
            target[..t.len()].copy_from_slice(t);
            Ok(t.len())
        }
        fn open(
            &mut self,
            _: Instant,
            _: &mut dyn Memory,
            _: NodeId,
        ) -> Result<FileHandle, FsError> {
            Ok(FileHandle(0))
        }
        fn close(&mut self, _: FileHandle) -> Result<(), FsError> {
            Ok(())
        }
        fn submit(&mut self, _: Instant, r: FileRequest) -> Result<(), (FsError, FileRequest)> {
            Err((FsError::new(FsErrorKind::Unsupported, "toy", 0), r))
        }
        fn poll(
            &mut self,
            _: Instant,
            _: &mut dyn Memory,
            _: &mut dyn FnMut(Completion),
        ) -> Option<Instant> {
            None
        }
    }

    #[test]
    fn resolves_by_label_and_uuid_and_follows_links() {
        let mut toy = Toy {
            label: "toy",
            uuid: "1111-2222",
        };
        let mut other = Toy {
            label: "other",
            uuid: "3333-4444",
        };
        let mut memory = MemoryRegions::<1>::new();
        let mut switch: Switch<'_, 2> = Switch::new();
        let t = switch.mount(&mut toy).unwrap();
        let o = switch.mount(&mut other).unwrap();
        let r = switch.resolve("/vmfs/volumes/1111-2222/a/f").unwrap();
        assert_eq!(
            r,
            Resolved {
                mount: t,
                rest: "a/f"
            }
        );
        assert_eq!(switch.resolve("/vmfs/volumes/toy").unwrap().rest, "");
        let now = Instant::ZERO;
        assert_eq!(
            switch
                .lookup(now, &mut memory, "/vmfs/volumes/toy/a/f", true)
                .unwrap(),
            (t, F)
        );
        assert_eq!(
            switch
                .lookup(now, &mut memory, "/vmfs/volumes/toy/abs", true)
                .unwrap(),
            (o, F)
        );
        assert_eq!(
            switch
                .lookup(now, &mut memory, "/vmfs/volumes/toy/abs", false)
                .unwrap(),
            (t, ABS)
        );
        assert_eq!(
            switch
                .lookup(now, &mut memory, "/vmfs/volumes/toy/a/rel", true)
                .unwrap(),
            (t, F)
        );
        assert_eq!(
            switch
                .lookup(now, &mut memory, "/vmfs/volumes/toy/loop", true)
                .unwrap_err()
                .kind(),
            FsErrorKind::TooManyLinks
        );
        assert_eq!(
            switch
                .lookup(now, &mut memory, "/vmfs/volumes/toy/a/f/x", true)
                .unwrap_err()
                .kind(),
            FsErrorKind::NotADirectory
        );
        assert_eq!(
            switch.resolve("/vmfs/volumes/nope/x").unwrap_err().kind(),
            FsErrorKind::NotFound
        );
        assert!(switch.resolve("/tmp/x").is_err());
    }

    #[test]
    fn table_is_bounded_and_refuses_duplicates() {
        let mut a = Toy {
            label: "a",
            uuid: "1",
        };
        let mut a2 = Toy {
            label: "a",
            uuid: "2",
        };
        let mut b = Toy {
            label: "b",
            uuid: "3",
        };
        let mut c = Toy {
            label: "c",
            uuid: "4",
        };
        let mut switch: Switch<'_, 2> = Switch::new();
        let id = switch.mount(&mut a).unwrap();
        assert_eq!(
            switch.mount(&mut a2).unwrap_err().kind(),
            FsErrorKind::AlreadyMounted
        );
        switch.mount(&mut b).unwrap();
        assert_eq!(
            switch.mount(&mut c).unwrap_err().kind(),
            FsErrorKind::NoSpace
        );
        assert!(switch.unmount(id).is_some());
        assert_eq!(switch.find("a"), None);
        assert_eq!(switch.mounts().count(), 1);
    }
}
