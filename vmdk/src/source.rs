//! A host directory as an [`ExtentSource`] (needs `std`).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use block::FileDisk;

use crate::disk::ExtentSource;
use crate::error::{ErrorKind, Result, err};

/// Files of a host directory, opened as [`FileDisk`]s with up to `Q` outstanding requests.
/// Relative names are resolved against the directory; absolute names are used as they are.
#[derive(Debug, Clone)]
pub struct DirSource<const Q: usize = 4> {
    dir: PathBuf,
}

impl<const Q: usize> DirSource<Q> {
    /// Files of `dir`.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
        }
    }

    /// The path a descriptor's file name stands for.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn io_error(_: std::io::Error) -> crate::Error {
    err(ErrorKind::Io, 0)
}

impl<const Q: usize> ExtentSource for DirSource<Q> {
    type Device = FileDisk<Q>;

    fn open(&mut self, name: &str, writable: bool) -> Result<Self::Device> {
        let path = self.path(name);
        if writable {
            FileDisk::open(path, 512).map_err(io_error)
        } else {
            FileDisk::open_read_only(path, 512).map_err(io_error)
        }
    }

    fn read_head(&mut self, name: &str, buf: &mut [u8]) -> Result<usize> {
        let mut file = File::open(self.path(name)).map_err(io_error)?;
        let mut n = 0;
        while n < buf.len() {
            match file.read(&mut buf[n..]).map_err(io_error)? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }

    fn create(&mut self, name: &str, sectors: u64) -> Result<Self::Device> {
        let path = self.path(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error)?;
        let len = sectors
            .checked_mul(512)
            .ok_or(err(ErrorKind::BadSize, sectors))?;
        file.set_len(len).map_err(io_error)?;
        FileDisk::from_file(file, 512, false).map_err(io_error)
    }

    fn write_text(&mut self, name: &str, text: &[u8]) -> Result<()> {
        std::fs::write(self.path(name), text).map_err(io_error)
    }

    fn reserve(&mut self, name: &str, sectors: u64) -> Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .open(self.path(name))
            .map_err(io_error)?;
        let len = sectors
            .checked_mul(512)
            .ok_or(err(ErrorKind::BadSize, sectors))?;
        if file.metadata().map_err(io_error)?.len() < len {
            file.set_len(len).map_err(io_error)?;
        }
        Ok(())
    }

    fn trim(&mut self, name: &str, sectors: u64) -> Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .open(self.path(name))
            .map_err(io_error)?;
        file.set_len(sectors.saturating_mul(512)).map_err(io_error)
    }
}

/// An in-memory file system as an [`ExtentSource`], for tests, benchmarks and simulations:
/// files are shared byte vectors, devices over them complete requests at the next poll.
#[derive(Debug, Default, Clone)]
pub struct MemSource {
    files: std::collections::BTreeMap<String, MemFile>,
}

/// A shared in-memory file.
pub type MemFile = std::rc::Rc<std::cell::RefCell<Vec<u8>>>;

impl MemSource {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) file `name`.
    pub fn insert(&mut self, name: &str, bytes: Vec<u8>) {
        self.files.insert(
            name.to_string(),
            std::rc::Rc::new(std::cell::RefCell::new(bytes)),
        );
    }

    /// A copy whose files are copies (a plain `clone` shares the files).
    pub fn clone_deep(&self) -> Self {
        let mut copy = Self::new();
        for (name, file) in &self.files {
            copy.insert(name, file.borrow().clone());
        }
        copy
    }

    /// File `name`'s bytes.
    pub fn file(&self, name: &str) -> Option<MemFile> {
        self.files.get(name).cloned()
    }

    /// The file names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }
}

/// A block device of 512-byte blocks over a [`MemFile`]; requests execute at the next poll.
#[derive(Debug)]
pub struct MemDisk {
    file: MemFile,
    writable: bool,
    pending: Vec<block::BlockRequest>,
}

impl MemDisk {
    /// A device over `file`.
    pub fn new(file: MemFile, writable: bool) -> Self {
        Self {
            file,
            writable,
            pending: Vec::new(),
        }
    }
}

impl block::BlockDevice for MemDisk {
    fn geometry(&self) -> block::Geometry {
        let mut features = block::DeviceFeatures::WRITE_ZEROES;
        if !self.writable {
            features |= block::DeviceFeatures::READ_ONLY;
        }
        block::Geometry {
            block_size: 512,
            block_count: self.file.borrow().len() as u64 / 512,
            max_transfer_blocks: 1 << 16,
            queue_depth: 64,
            features,
        }
    }

    fn submit(
        &mut self,
        _now: block::Instant,
        request: block::BlockRequest,
    ) -> core::result::Result<(), block::SubmitError> {
        if self.pending.len() >= 64 {
            return Err(block::SubmitError::new(
                block::SubmitErrorKind::QueueFull,
                request,
            ));
        }
        self.pending.push(request);
        Ok(())
    }

    fn poll(
        &mut self,
        _now: block::Instant,
        memory: &mut dyn block::Memory,
        done: &mut dyn FnMut(block::Completion),
    ) -> Option<block::Instant> {
        for request in std::mem::take(&mut self.pending) {
            let result = (|| {
                request.validate(&self.geometry())?;
                let start = (request.lba.0 * 512) as usize;
                let len = request.sg.total_len() as usize;
                let mut file = self.file.borrow_mut();
                let fault = |_| block::BlockError::new(block::ErrorKind::MemoryFault);
                match request.operation {
                    block::Operation::Read => {
                        block::scatter(memory, &request.sg, &file[start..start + len])
                            .map_err(fault)
                    }
                    block::Operation::Write => {
                        block::gather(memory, &request.sg, &mut file[start..start + len])
                            .map_err(fault)
                    }
                    block::Operation::Flush => Ok(()),
                    block::Operation::WriteZeroes => {
                        let len = (u64::from(request.blocks.0) * 512) as usize;
                        file[start..start + len].fill(0);
                        Ok(())
                    }
                    _ => Err(block::BlockError::new(block::ErrorKind::Unsupported)),
                }
            })();
            done(block::Completion {
                tag: request.tag,
                result,
            });
        }
        None
    }
}

impl ExtentSource for MemSource {
    type Device = MemDisk;

    fn open(&mut self, name: &str, writable: bool) -> Result<Self::Device> {
        let file = self.file(name).ok_or(err(ErrorKind::Io, 0))?;
        Ok(MemDisk::new(file, writable))
    }

    fn read_head(&mut self, name: &str, buf: &mut [u8]) -> Result<usize> {
        let file = self.file(name).ok_or(err(ErrorKind::Io, 0))?;
        let file = file.borrow();
        let n = file.len().min(buf.len());
        buf[..n].copy_from_slice(&file[..n]);
        Ok(n)
    }

    fn create(&mut self, name: &str, sectors: u64) -> Result<Self::Device> {
        if self.files.contains_key(name) {
            return Err(err(ErrorKind::Io, 0));
        }
        let len = usize::try_from(sectors.saturating_mul(512))
            .map_err(|_| err(ErrorKind::BadSize, sectors))?;
        self.insert(name, vec![0u8; len]);
        self.open(name, true)
    }

    fn write_text(&mut self, name: &str, text: &[u8]) -> Result<()> {
        self.insert(name, text.to_vec());
        Ok(())
    }

    fn reserve(&mut self, name: &str, sectors: u64) -> Result<()> {
        let f = self.file(name).ok_or(err(ErrorKind::Io, 0))?;
        let len = usize::try_from(sectors.saturating_mul(512))
            .map_err(|_| err(ErrorKind::BadSize, sectors))?;
        let mut f = f.borrow_mut();
        if f.len() < len {
            f.resize(len, 0);
        }
        Ok(())
    }

    fn trim(&mut self, name: &str, sectors: u64) -> Result<()> {
        if let Some(f) = self.file(name) {
            f.borrow_mut()
                .truncate(usize::try_from(sectors.saturating_mul(512)).unwrap_or(usize::MAX));
        }
        Ok(())
    }
}
