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

    fn trim(&mut self, name: &str, sectors: u64) -> Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .open(self.path(name))
            .map_err(io_error)?;
        file.set_len(sectors.saturating_mul(512)).map_err(io_error)
    }
}
