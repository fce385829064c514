//! `host vmfs info|ls|stat|cat|map|fsck`: inspect a VMFS volume in disk images.
//!
//! Each `--device FILE` is a plain or gzip-compressed (`.gz`) image. A `.gz` image is inflated
//! once into a sparse file in the system's temporary directory and reused while the source is
//! unchanged. Devices with ESXi LVM headers are scanned and mounted as their LVM volume (through
//! the `lvm` crate, spanning several devices where the volume does); a single device without
//! one is the volume itself.
//!
//! Paths are either inside the volume (`/dir/file`) or full switch paths
//! (`/vmfs/volumes/<label or uuid>/dir/file`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use block::{Completion, Instant, MemAddr, Memory, MemoryRegions, SgList, Tag};
use clap::{Args, Subcommand};
use fss::{FileKind, FileRequest, FileSystem, NodeId, Stat, Switch, VOLUMES_PREFIX};
use serde_json::{Value, json};
use vmfs::{ExtentKind, FileExtent, MetaBuffer, Vmfs};

use crate::volumes::{OpenedVolume, VolumeDevice, VolumeOrigin, open_volume};

/// Offset of the LVM device header on a device.
pub const LVM_HEADER_OFFSET: u64 = 0x10_0000;
/// LVM device header magic.
pub const LVM_MAGIC: u32 = 0xC001_D00D;

const NOW: Instant = Instant::ZERO;
const META_ADDR: MemAddr = MemAddr(0x1_0000_0000);
const DATA_ADDR: MemAddr = MemAddr(0x2_0000_0000);
const META_LEN: u64 = MetaBuffer::recommended_len(64);
/// Bytes per file request of `cat`.
const CHUNK: u64 = 256 * 1024;
/// File requests `cat` keeps outstanding.
const DEPTH: u64 = 4;
/// Runs asked of the extent map per call.
const MAP_BATCH: usize = 64;
/// Bytes of the zero buffer that zero runs are written from.
const ZERO_CHUNK: usize = 1 << 20;
/// The pipe buffer `cat` asks for when its output is a pipe (Linux's default limit for
/// unprivileged processes).
const PIPE_BYTES: usize = 1 << 20;
/// Set (to anything but empty or `0`) to make `host vmfs cat` take the block-stack path, as
/// `--no-zero-copy` does.
pub const NO_ZERO_COPY_ENV: &str = "HOST_VMFS_NO_ZERO_COPY";

/// `host vmfs`.
#[derive(Args)]
pub struct VmfsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: VmfsCommand,
}

/// The `host vmfs` subcommands.
#[derive(Subcommand)]
pub enum VmfsCommand {
    /// The file system descriptor: label, UUID, version, block sizes.
    Info(DeviceArgs),
    /// List a directory (like `ls -l`), or one file.
    Ls(PathArgs),
    /// Everything the file descriptor records about a path (symbolic links are not followed).
    Stat(PathArgs),
    /// Write a file's exact bytes to stdout (symbolic links are followed).
    Cat(CatArgs),
    /// Where a file's bytes live: its runs (data, zeros, resident in the descriptor) with their
    /// volume offsets and, through LVM, device and device offset (like `vmkfstools -t0`;
    /// symbolic links are followed).
    Map(PathArgs),
    /// Walk the whole tree and check every descriptor, directory and address.
    Fsck(DeviceArgs),
}

/// Options shared by every subcommand.
#[derive(Args, Clone)]
pub struct DeviceArgs {
    /// A device image (plain or `.gz`); repeat for a volume spanning several devices.
    #[arg(long = "device", required = true)]
    pub devices: Vec<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Options of the subcommands that take a path.
#[derive(Args, Clone)]
pub struct PathArgs {
    /// Devices and output form.
    #[command(flatten)]
    pub device: DeviceArgs,
    /// A path inside the volume, or `/vmfs/volumes/<label or uuid>/...`.
    pub path: String,
}

/// Options of `cat`.
#[derive(Args, Clone)]
pub struct CatArgs {
    /// Devices and path.
    #[command(flatten)]
    pub path: PathArgs,
    /// Read the data through the block stack (file requests into a buffer, then written out)
    /// even where every device is a plain file and the zero-copy path would apply. Setting
    /// `HOST_VMFS_NO_ZERO_COPY=1` does the same.
    #[arg(long)]
    pub no_zero_copy: bool,
}

/// The device the CLI mounts.
pub type Device = VolumeDevice;

/// A mounted volume and where its devices' bytes are.
pub struct Mounted {
    /// The file system.
    pub fs: Vmfs<Device>,
    /// What the volume is, for display.
    pub origin: VolumeOrigin,
    /// The plain image file of each device, in member order.
    pub images: Vec<PathBuf>,
}

/// The metadata and data buffers of one run.
pub struct Buffers {
    meta: Vec<u8>,
    data: Vec<u8>,
}

impl Default for Buffers {
    fn default() -> Self {
        Self {
            meta: vec![0u8; META_LEN as usize],
            data: vec![0u8; (CHUNK * DEPTH) as usize],
        }
    }
}

impl Buffers {
    /// The address space: metadata at `META_ADDR`, data at `DATA_ADDR`.
    pub fn memory(&mut self) -> MemoryRegions<'_, 2> {
        let mut memory = MemoryRegions::new();
        // The two regions are disjoint and few: these cannot fail.
        let _ = memory.add(META_ADDR, &mut self.meta);
        let _ = memory.add(DATA_ADDR, &mut self.data);
        memory
    }
}

/// Mounts the volume on `devices`: a bare VMFS device, or the LVM volume they make up.
pub fn mount(devices: &[PathBuf], memory: &mut dyn Memory) -> Result<Mounted, String> {
    // The LVM scan borrows the same metadata region before VMFS takes it over.
    let OpenedVolume {
        device,
        origin,
        images,
    } = open_volume(devices, memory, META_ADDR, META_LEN as u32)?;
    let buffer = MetaBuffer {
        addr: META_ADDR,
        len: META_LEN,
    };
    let fs = Vmfs::mount(device, buffer, NOW, memory).map_err(|e| format!("mount: {e}"))?;
    Ok(Mounted { fs, origin, images })
}

/// Resolves `path` (inside the volume or a switch path) to a node.
pub fn resolve(
    fs: &mut Vmfs<Device>,
    memory: &mut dyn Memory,
    path: &str,
    follow: bool,
) -> Result<NodeId, String> {
    let full = if path.starts_with(VOLUMES_PREFIX) {
        path.to_string()
    } else {
        format!(
            "{VOLUMES_PREFIX}{}/{}",
            fs.uuid(),
            path.trim_start_matches('/')
        )
    };
    let mut switch: Switch<'_, 1> = Switch::new();
    switch.mount(fs).map_err(|e| e.to_string())?;
    let (_, node) = switch
        .lookup(NOW, memory, &full, follow)
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(node)
}

/// Opens `node` for `cat` (not a directory): its handle and size.
fn open_for_cat(
    fs: &mut Vmfs<Device>,
    memory: &mut dyn Memory,
    node: NodeId,
) -> Result<(fss::FileHandle, u64), String> {
    let stat = fs.stat(NOW, memory, node).map_err(|e| e.to_string())?;
    if stat.kind.is_dir() {
        return Err("is a directory".into());
    }
    let handle = fs.open(NOW, memory, node).map_err(|e| e.to_string())?;
    Ok((handle, stat.size))
}

/// Writes the bytes of `node` to `out`, reading through submit/poll with `DEPTH` requests of
/// `CHUNK` bytes outstanding. Returns the bytes written.
pub fn cat(
    fs: &mut Vmfs<Device>,
    memory: &mut dyn Memory,
    node: NodeId,
    out: &mut dyn Write,
) -> Result<u64, String> {
    let (handle, size) = open_for_cat(fs, memory, node)?;
    let align = fs.io_align() as u64;
    let mut at = 0u64;
    let result = (|| {
        while at < size {
            let mut batch = Vec::new();
            for slot in 0..DEPTH {
                if at >= size {
                    break;
                }
                let want = CHUNK.min(size - at);
                let len = want.div_ceil(align) * align;
                let addr = MemAddr(DATA_ADDR.0 + slot * CHUNK);
                let sg = SgList::single(addr, len as u32).map_err(|e| e.to_string())?;
                fs.submit(NOW, FileRequest::read(Tag(slot), handle, at, sg))
                    .map_err(|(e, _)| e.to_string())?;
                batch.push((addr, want));
                at += want;
            }
            let mut pending = batch.len();
            let mut failure = None;
            let mut polls = 0u32;
            while pending > 0 {
                polls += 1;
                if polls > 1_000_000 {
                    return Err("file requests never completed".to_string());
                }
                fs.poll(NOW, memory, &mut |c: Completion| {
                    pending -= 1;
                    if let Err(e) = c.result {
                        failure.get_or_insert(format!("read at {:#x}: {e}", c.tag.0 * CHUNK));
                    }
                });
            }
            if let Some(f) = failure {
                return Err(f);
            }
            for (addr, want) in batch {
                // Straight from the buffer the device read into: no copy in between.
                let bytes = memory
                    .slice(addr, want as usize)
                    .map_err(|e| e.to_string())?;
                out.write_all(bytes).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })();
    fs.close(handle).map_err(|e| e.to_string())?;
    result.map(|()| size)
}

/// One piece of a file's map: `length` bytes from `file_offset`, of one kind, and for data and
/// resident bytes where they are on the volume and on which device (a run of the file that
/// crosses a device boundary of an LVM volume is split there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapRow {
    /// Offset in the file.
    pub file_offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// Data (with its volume offset), zeros, or resident in the file descriptor.
    pub kind: ExtentKind,
    /// For data and resident bytes: the device (index into the volume's images, in member
    /// order) and the byte offset on it.
    pub device: Option<(u16, u64)>,
}

impl MapRow {
    /// The kind's name: `data`, `zero` or `resident`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ExtentKind::Data { .. } => "data",
            ExtentKind::Zero => "zero",
            ExtentKind::Resident { .. } => "resident",
        }
    }

    /// The volume offset of data and resident bytes.
    pub fn volume_offset(&self) -> Option<u64> {
        let run = FileExtent {
            file_offset: self.file_offset,
            len: self.length,
            kind: self.kind,
        };
        run.volume_offset()
    }
}

/// What [`for_each_run`] calls with each run (and the file system, to locate it).
type RunVisitor<'a> = dyn FnMut(&Vmfs<Device>, &FileExtent) -> Result<(), String> + 'a;

/// Calls `each` with every run of the open file `handle` (of `size` bytes) from the start, in
/// order, as `Vmfs::map_extents` gives them.
fn for_each_run(
    fs: &mut Vmfs<Device>,
    memory: &mut dyn Memory,
    handle: fss::FileHandle,
    size: u64,
    each: &mut RunVisitor<'_>,
) -> Result<(), String> {
    let mut runs = [FileExtent::EMPTY; MAP_BATCH];
    let mut at = 0u64;
    // Every call that does not fail maps at least one byte.
    while at < size {
        let n = fs
            .map_extents(NOW, memory, handle, at, &mut runs)
            .map_err(|e| format!("map at {at:#x}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "the map ends at {at:#x}, before the end of the file"
            ));
        }
        for run in &runs[..n] {
            each(fs, run)?;
            at = run.end();
        }
    }
    Ok(())
}

/// Calls `each` with the pieces of the `len` volume bytes from `volume_offset`, in order: the
/// device (member index), the byte offset on it, and the piece's length.
fn for_each_device_piece(
    device: &VolumeDevice,
    volume_offset: u64,
    len: u64,
    each: &mut dyn FnMut(u16, u64, u64) -> Result<(), String>,
) -> Result<(), String> {
    let mut done = 0u64;
    // Each piece is at least one byte long.
    while done < len {
        let at = volume_offset + done;
        let range = device
            .locate_bytes(at)
            .filter(|r| r.len > 0)
            .ok_or_else(|| format!("volume offset {at:#x} is past the end of the volume"))?;
        let piece = (len - done).min(range.len);
        each(range.device, range.offset, piece)?;
        done += piece;
    }
    Ok(())
}

/// The map of `node`: its runs, split where they cross from one device to the next.
pub fn map_rows(
    fs: &mut Vmfs<Device>,
    memory: &mut dyn Memory,
    node: NodeId,
) -> Result<Vec<MapRow>, String> {
    let size = fs.stat(NOW, memory, node).map_err(|e| e.to_string())?.size;
    let handle = fs.open(NOW, memory, node).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let result = for_each_run(fs, memory, handle, size, &mut |fs, run| {
        let Some(start) = run.volume_offset() else {
            rows.push(MapRow {
                file_offset: run.file_offset,
                length: run.len,
                kind: run.kind,
                device: None,
            });
            return Ok(());
        };
        let mut shift = 0u64;
        for_each_device_piece(fs.device(), start, run.len, &mut |dev, offset, len| {
            let kind = match run.kind {
                ExtentKind::Resident { .. } => ExtentKind::Resident {
                    volume_offset: start + shift,
                },
                _ => ExtentKind::Data {
                    volume_offset: start + shift,
                },
            };
            rows.push(MapRow {
                file_offset: run.file_offset + shift,
                length: len,
                kind,
                device: Some((dev, offset)),
            });
            shift += len;
            Ok(())
        })
    });
    fs.close(handle).map_err(|e| e.to_string())?;
    result.map(|()| rows)
}

/// Opens the plain image files for the zero-copy path: `None` unless every one is a regular
/// file.
pub fn open_plain_images(images: &[PathBuf]) -> Option<Vec<File>> {
    images
        .iter()
        .map(|path| {
            let file = File::open(path).ok()?;
            file.metadata().ok()?.is_file().then_some(file)
        })
        .collect()
}

/// Writes `len` zeros to `out` from `zeros`.
fn write_zeros(out: &mut dyn Write, zeros: &[u8], len: u64) -> Result<(), String> {
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        out.write_all(&zeros[..n]).map_err(|e| e.to_string())?;
        left -= n as u64;
    }
    Ok(())
}

/// How `cat_zero_copy` hands image bytes to its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KernelCopy {
    /// `std::io::copy` of a `Take` of the image file: `copy_file_range` into regular files,
    /// `sendfile` into other files (`/dev/null`, character devices), a read/write loop where
    /// neither works.
    Std,
    /// `sendfile` from the image straight into a pipe or socket. std's `io::copy` never does
    /// this (it falls back to a read/write loop of 8 KiB), because the reader of a pipe fed from
    /// the page cache may see changes made to the file after the copy; nothing here writes the
    /// images, which are opened read-only.
    Sendfile,
}

impl KernelCopy {
    fn for_output(out: &File) -> Self {
        use std::os::unix::fs::FileTypeExt;
        match out.metadata() {
            Ok(m) if m.file_type().is_fifo() || m.file_type().is_socket() => Self::Sendfile,
            _ => Self::Std,
        }
    }
}

/// Copies `len` bytes at `offset` of `image` (the image of device `dev`) to `out`, in the kernel
/// where it can.
fn copy_from_image(
    (dev, image): (u16, &File),
    offset: u64,
    len: u64,
    out: &mut File,
    how: KernelCopy,
) -> Result<(), String> {
    let short = |at: u64| format!("the image of device {dev} ends at {at:#x}, inside the volume");
    let end = offset + len;
    let mut at = offset;
    if how == KernelCopy::Sendfile {
        // Each call moves at least one byte or ends the loop.
        while at < end {
            let n = (end - at).min(1 << 30) as usize;
            match rustix::fs::sendfile(&*out, image, Some(&mut at), n) {
                Ok(0) => return Err(short(at)),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                // Not supported for this pair: copy the rest the ordinary way.
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => break,
                Err(e) => return Err(std::io::Error::from(e).to_string()),
            }
        }
        if at == end {
            return Ok(());
        }
    }
    let mut image = image;
    image.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
    let copied = std::io::copy(&mut image.take(end - at), out).map_err(|e| e.to_string())?;
    if copied != end - at {
        return Err(short(at + copied));
    }
    Ok(())
}

/// Writes the bytes of `node` to `out` without moving them through this process where the
/// kernel can do it: the file's runs come from `Vmfs::map_extents`, each data or resident run is
/// located on its device (`VolumeDevice::locate_bytes`) and copied from that device's image
/// file in `images` (member order) by the kernel (`copy_file_range` into a regular file,
/// `sendfile` into a pipe, socket or `/dev/null`; a read/write loop where neither works); zero
/// runs are written from a zero buffer. Returns the bytes written: the same bytes [`cat`]
/// writes.
pub fn cat_zero_copy(
    fs: &mut Vmfs<Device>,
    memory: &mut dyn Memory,
    node: NodeId,
    images: &[File],
    out: &mut File,
) -> Result<u64, String> {
    let (handle, size) = open_for_cat(fs, memory, node)?;
    let mut zeros = Vec::new();
    let how = KernelCopy::for_output(out);

    let result = for_each_run(fs, memory, handle, size, &mut |fs, run| {
        let Some(volume_offset) = run.volume_offset() else {
            if zeros.is_empty() {
                zeros = vec![0u8; ZERO_CHUNK];
            }
            return write_zeros(out, &zeros, run.len);
        };
        for_each_device_piece(
            fs.device(),
            volume_offset,
            run.len,
            &mut |dev, offset, len| {
                let image = images
                    .get(usize::from(dev))
                    .ok_or_else(|| format!("no image for device {dev}"))?;
                copy_from_image((dev, image), offset, len, out, how)
            },
        )
    });
    fs.close(handle).map_err(|e| e.to_string())?;
    result.map(|()| size)
}

/// `ls -l` style mode text, as debugvmfs prints it.
pub fn mode_text(kind: FileKind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        FileKind::Directory | FileKind::SystemDirectory => 'd',
        FileKind::Symlink => 'l',
        _ => '-',
    });
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let set = mode & bit != 0;
        let special = match i {
            2 => mode & 0o4000 != 0,
            5 => mode & 0o2000 != 0,
            8 => mode & 0o1000 != 0,
            _ => false,
        };
        s.push(match (special, set, i) {
            (true, true, 8) => 't',
            (true, false, 8) => 'T',
            (true, true, _) => 's',
            (true, false, _) => 'S',
            (false, true, _) => *c,
            (false, false, _) => '-',
        });
    }
    s
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn time_text(unix: u32) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn user(id: u32) -> String {
    if id == 0 {
        "root".into()
    } else {
        id.to_string()
    }
}

fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Regular => "file",
        FileKind::Directory => "directory",
        FileKind::Symlink => "symlink",
        FileKind::RawDeviceMap => "rdm",
        FileKind::SystemFile => "system file",
        FileKind::SystemDirectory => "system directory",
        FileKind::Other => "other",
    }
}

/// One `ls -l` line.
pub fn long_line(stat: &Stat, name: &str) -> String {
    format!(
        "{} {} {:>8} {:>8} {:>10} {} {}",
        mode_text(stat.kind, stat.mode),
        stat.links,
        user(stat.uid),
        user(stat.gid),
        stat.size,
        time_text(stat.mtime),
        name
    )
}

fn stat_json(stat: &Stat, name: Option<&str>) -> Value {
    let mut v = json!({
        "node": format!("{:#x}", stat.node.0),
        "kind": kind_name(stat.kind),
        "size": stat.size,
        "mode": format!("{:o}", stat.mode),
        "links": stat.links,
        "uid": stat.uid,
        "gid": stat.gid,
        "mtime": stat.mtime,
        "ctime": stat.ctime,
        "atime": stat.atime,
        "block_size": stat.block_size,
        "blocks": stat.blocks,
    });
    if let Some(name) = name {
        v["name"] = json!(name);
    }
    v
}

fn print_json(v: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

fn info(args: &DeviceArgs) -> Result<(), String> {
    let mut buffers = Buffers::default();
    let mut memory = buffers.memory();
    let Mounted { fs, origin, .. } = mount(&args.devices, &mut memory)?;
    let i = fs.info();
    let lvm = match &origin {
        VolumeOrigin::Bare => Value::Null,
        VolumeOrigin::Lvm {
            name,
            uuid,
            version,
            devices,
        } => json!({
            "name": name,
            "uuid": uuid,
            "version": version,
            "devices": devices.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        }),
    };
    if args.json {
        return print_json(&json!({
            "label": i.label.as_str(),
            "uuid": i.uuid.as_str(),
            "vmfs": if i.vmfs6 { 6 } else { 5 },
            "major_version": i.major_version,
            "minor_version": i.minor_version,
            "local": i.local,
            "file_block_size": i.file_block_size,
            "sub_block_size": i.sub_block_size,
            "md_alignment": i.md_alignment,
            "large_file_block_size": i.large_file_block_size,
            "file_blocks": i.file_blocks,
            "large_file_blocks": i.large_file_blocks,
            "config": i.config,
            "creation_time": i.creation_time,
            "lvm": lvm,
            "volume_bytes": i.device_bytes,
        }));
    }
    println!("label            {}", i.label);
    println!("uuid             {}", i.uuid);
    println!(
        "version          VMFS{} ({}.{}){}",
        if i.vmfs6 { 6 } else { 5 },
        i.major_version,
        i.minor_version,
        if i.local { ", local" } else { "" }
    );
    println!(
        "file block       {} bytes, {} of them",
        i.file_block_size, i.file_blocks
    );
    println!("sub-block        {} bytes", i.sub_block_size);
    if i.vmfs6 {
        println!(
            "large file block {} bytes, {} of them",
            i.large_file_block_size, i.large_file_blocks
        );
        println!("md alignment     {} bytes", i.md_alignment);
    }
    println!("created          {} UTC", time_text(i.creation_time));
    match &origin {
        VolumeOrigin::Bare => {
            println!(
                "volume           {} bytes, a bare device (no LVM header)",
                i.device_bytes
            )
        }
        VolumeOrigin::Lvm {
            name,
            uuid,
            version,
            devices,
        } => {
            println!(
                "volume           {} bytes, LVM{version} volume `{name}` ({uuid}) on {} device(s)",
                i.device_bytes,
                devices.len()
            );
            for d in devices {
                println!("                 {}", d.display());
            }
        }
    }
    Ok(())
}

fn ls(args: &PathArgs) -> Result<(), String> {
    let mut buffers = Buffers::default();
    let mut memory = buffers.memory();
    let Mounted { mut fs, .. } = mount(&args.device.devices, &mut memory)?;
    let node = resolve(&mut fs, &mut memory, &args.path, false)?;
    let stat = fs.stat(NOW, &mut memory, node).map_err(|e| e.to_string())?;
    let mut rows: Vec<(String, NodeId)> = Vec::new();
    if stat.kind.is_dir() {
        fs.readdir(NOW, &mut memory, node, &mut |e| {
            rows.push((String::from_utf8_lossy(e.name).into_owned(), e.node));
            true
        })
        .map_err(|e| format!("{}: {e}", args.path))?;
    } else {
        let name = args.path.rsplit('/').next().unwrap_or(&args.path);
        rows.push((name.to_string(), node));
    }
    let mut json_rows = Vec::new();
    for (name, node) in rows {
        let stat = fs
            .stat(NOW, &mut memory, node)
            .map_err(|e| format!("{name}: {e}"))?;
        if args.device.json {
            json_rows.push(stat_json(&stat, Some(&name)));
        } else {
            println!("{}", long_line(&stat, &name));
        }
    }
    if args.device.json {
        print_json(&Value::Array(json_rows))?;
    }
    Ok(())
}

fn stat(args: &PathArgs) -> Result<(), String> {
    let mut buffers = Buffers::default();
    let mut memory = buffers.memory();
    let Mounted { mut fs, .. } = mount(&args.device.devices, &mut memory)?;
    let node = resolve(&mut fs, &mut memory, &args.path, false)?;
    let stat = fs
        .stat(NOW, &mut memory, node)
        .map_err(|e| format!("{}: {e}", args.path))?;
    let mut v = stat_json(&stat, Some(&args.path));
    if stat.kind == FileKind::Symlink {
        let mut target = [0u8; fss::MAX_PATH_BYTES];
        let n = fs
            .readlink(NOW, &mut memory, node, &mut target)
            .map_err(|e| e.to_string())?;
        v["target"] = json!(String::from_utf8_lossy(&target[..n]));
    }
    if stat.kind == FileKind::RawDeviceMap {
        let m = fs
            .rdm_mapping(NOW, &mut memory, node)
            .map_err(|e| e.to_string())?;
        v["rdm"] = json!({
            "id_type": m.id_type,
            "id_len": m.id_len,
            "lun": m.lun,
            "device_type": m.device_type,
            "scsi_level": m.scsi_level,
            "id": String::from_utf8_lossy(m.id_bytes()),
        });
    }
    if args.device.json {
        return print_json(&v);
    }
    println!("path       {}", args.path);
    println!("node       {:#x}", stat.node.0);
    println!("kind       {}", kind_name(stat.kind));
    println!("size       {}", stat.size);
    println!(
        "mode       {} ({:o})",
        mode_text(stat.kind, stat.mode),
        stat.mode
    );
    println!("links      {}", stat.links);
    println!("owner      {}:{}", stat.uid, stat.gid);
    println!("block size {}", stat.block_size);
    println!("blocks     {}", stat.blocks);
    println!("mtime      {} UTC", time_text(stat.mtime));
    println!("ctime      {} UTC", time_text(stat.ctime));
    println!("atime      {} UTC", time_text(stat.atime));
    if let Some(t) = v.get("target") {
        println!("target     {}", t.as_str().unwrap_or(""));
    }
    if let Some(r) = v.get("rdm") {
        println!(
            "rdm        id type {}, length {}, lun {}, id {:?}",
            r["id_type"],
            r["id_len"],
            r["lun"],
            r["id"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// When `out` is a pipe, grows its buffer to [`PIPE_BYTES`] (if the system allows, and it is
/// smaller): with the default 64 KiB, writer and reader wake each other every 64 KiB, which on
/// this two-core machine cost more than the copy itself (`vmfs/BENCHMARKS.md`).
fn grow_pipe(out: &File) {
    use std::os::unix::fs::FileTypeExt;
    let is_pipe = out.metadata().is_ok_and(|m| m.file_type().is_fifo());
    if is_pipe && rustix::pipe::fcntl_getpipe_size(out).is_ok_and(|n| n < PIPE_BYTES) {
        // Refused beyond the system's limits: the pipe stays as it is.
        let _ = rustix::pipe::fcntl_setpipe_size(out, PIPE_BYTES);
    }
}

/// Whether `cat` may take the zero-copy path: not turned off by flag or environment.
fn zero_copy_allowed(args: &CatArgs) -> bool {
    let env_off = std::env::var_os(NO_ZERO_COPY_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    !args.no_zero_copy && !env_off
}

fn cat_cmd(args: &CatArgs) -> Result<(), String> {
    if args.path.device.json {
        return Err(
            "`vmfs cat` writes the file's bytes, --json does not apply (`vmfs stat --json` \
             describes the file, `vmfs map --json` where its bytes are)"
                .into(),
        );
    }
    let mut buffers = Buffers::default();
    let mut memory = buffers.memory();
    let path = &args.path;
    let Mounted { mut fs, images, .. } = mount(&path.device.devices, &mut memory)?;
    let node = resolve(&mut fs, &mut memory, &path.path, true)?;
    // Standard output's own descriptor, unbuffered and held locked: the standard handle is
    // line buffered (it would scan every megabyte for newlines), and the zero-copy path hands
    // the descriptor to the kernel.
    let stdout = std::io::stdout();
    let _lock = stdout.lock();
    let fd = std::os::fd::AsFd::as_fd(&stdout)
        .try_clone_to_owned()
        .map_err(|e| e.to_string())?;
    let mut out = File::from(fd);
    grow_pipe(&out);
    let plain = if zero_copy_allowed(args) {
        open_plain_images(&images)
    } else {
        None
    };
    match plain {
        Some(files) => cat_zero_copy(&mut fs, &mut memory, node, &files, &mut out),
        None => cat(&mut fs, &mut memory, node, &mut out),
    }
    .map_err(|e| format!("{}: {e}", path.path))?;
    out.flush().map_err(|e| e.to_string())
}

fn map_cmd(args: &PathArgs) -> Result<(), String> {
    let mut buffers = Buffers::default();
    let mut memory = buffers.memory();
    let Mounted {
        mut fs,
        origin,
        images,
    } = mount(&args.device.devices, &mut memory)?;
    let node = resolve(&mut fs, &mut memory, &args.path, true)?;
    let size = fs
        .stat(NOW, &mut memory, node)
        .map_err(|e| format!("{}: {e}", args.path))?
        .size;
    let rows = map_rows(&mut fs, &mut memory, node).map_err(|e| format!("{}: {e}", args.path))?;
    let given: Vec<PathBuf> = match origin {
        VolumeOrigin::Bare => args.device.devices.clone(),
        VolumeOrigin::Lvm { devices, .. } => devices,
    };
    if args.device.json {
        let devices: Vec<Value> = given
            .iter()
            .zip(&images)
            .enumerate()
            .map(|(i, (path, image))| {
                json!({
                    "device": i,
                    "path": path.display().to_string(),
                    "image": image.display().to_string(),
                })
            })
            .collect();
        let extents: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "file_offset": r.file_offset,
                    "length": r.length,
                    "kind": r.kind_name(),
                    "volume_offset": r.volume_offset(),
                    "device": r.device.map(|(d, _)| d),
                    "device_offset": r.device.map(|(_, o)| o),
                })
            })
            .collect();
        return print_json(&json!({
            "path": args.path,
            "size": size,
            "devices": devices,
            "extents": extents,
        }));
    }
    let hex = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v:#x}"));
    println!(
        "{:<20}{:<20}{:<10}{:<20}{:<8}Device offset",
        "Offset", "Length", "Kind", "Volume offset", "Device"
    );
    for r in &rows {
        println!(
            "{:<20}{:<20}{:<10}{:<20}{:<8}{}",
            format!("{:#x}", r.file_offset),
            format!("{:#x}", r.length),
            r.kind_name(),
            hex(r.volume_offset()),
            r.device.map_or("-".to_string(), |(d, _)| d.to_string()),
            hex(r.device.map(|(_, o)| o)),
        );
    }
    for (i, path) in given.iter().enumerate() {
        println!("device {i}: {}", path.display());
    }
    Ok(())
}

/// What `fsck` found.
#[derive(Default, Debug)]
pub struct FsckReport {
    /// Directories walked.
    pub directories: u64,
    /// Regular and system files checked.
    pub files: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Raw device mappings.
    pub rdms: u64,
    /// Allocated data blocks resolved.
    pub data_blocks: u64,
    /// Pointer blocks walked.
    pub pointer_blocks: u64,
    /// Problems, one line each.
    pub problems: Vec<String>,
}

/// Walks the tree of a mounted volume.
pub fn fsck(fs: &mut Vmfs<Device>, memory: &mut dyn Memory) -> FsckReport {
    let mut report = FsckReport::default();
    let mut seen = std::collections::HashSet::new();
    let mut queue = vec![("".to_string(), fs.root())];
    seen.insert(fs.root());
    while let Some((path, dir)) = queue.pop() {
        report.directories += 1;
        let mut entries = Vec::new();
        let listed = fs.readdir(NOW, memory, dir, &mut |e| {
            entries.push((String::from_utf8_lossy(e.name).into_owned(), e.node, e.kind));
            entries.len() < 1_000_000
        });
        if let Err(e) = listed {
            report.problems.push(format!("{path}/: {e}"));
            continue;
        }
        for (name, node, listed_kind) in entries {
            if name == "." || name == ".." {
                continue;
            }
            let full = format!("{path}/{name}");
            let stat = match fs.stat(NOW, memory, node) {
                Ok(s) => s,
                Err(e) => {
                    report.problems.push(format!("{full}: {e}"));
                    continue;
                }
            };
            let agrees = listed_kind == stat.kind
                || (listed_kind == FileKind::SystemFile && stat.kind == FileKind::SystemDirectory);
            if !agrees {
                report.problems.push(format!(
                    "{full}: directory entry says {}, descriptor says {}",
                    kind_name(listed_kind),
                    kind_name(stat.kind)
                ));
            }
            match stat.kind {
                FileKind::Directory | FileKind::SystemDirectory => {
                    if seen.insert(node) {
                        queue.push((full.clone(), node));
                    } else {
                        report
                            .problems
                            .push(format!("{full}: directory reached twice"));
                    }
                    continue;
                }
                FileKind::Symlink => report.symlinks += 1,
                FileKind::RawDeviceMap => {
                    report.rdms += 1;
                    if let Err(e) = fs.rdm_mapping(NOW, memory, node) {
                        report.problems.push(format!("{full}: {e}"));
                    }
                    continue;
                }
                _ => report.files += 1,
            }
            match fs.check_file(NOW, memory, node) {
                Ok(c) => {
                    report.data_blocks += c.data_blocks;
                    report.pointer_blocks += c.pointer_blocks;
                }
                Err(e) => report.problems.push(format!("{full}: {e}")),
            }
        }
    }
    report
}

fn fsck_cmd(args: &DeviceArgs) -> Result<(), String> {
    let mut buffers = Buffers::default();
    let mut memory = buffers.memory();
    let Mounted { mut fs, .. } = mount(&args.devices, &mut memory)?;
    let r = fsck(&mut fs, &mut memory);
    if args.json {
        print_json(&json!({
            "directories": r.directories,
            "files": r.files,
            "symlinks": r.symlinks,
            "rdms": r.rdms,
            "data_blocks": r.data_blocks,
            "pointer_blocks": r.pointer_blocks,
            "problems": r.problems,
        }))?;
    } else {
        println!(
            "{} directories, {} files, {} symbolic links, {} raw device mappings",
            r.directories, r.files, r.symlinks, r.rdms
        );
        println!(
            "{} data blocks and {} pointer blocks resolved",
            r.data_blocks, r.pointer_blocks
        );
        for p in &r.problems {
            println!("problem: {p}");
        }
    }
    if r.problems.is_empty() {
        Ok(())
    } else {
        Err(format!("fsck found {} problems", r.problems.len()))
    }
}

/// Runs a `host vmfs` subcommand.
pub fn run(args: VmfsArgs) -> Result<(), String> {
    match &args.command {
        VmfsCommand::Info(a) => info(a),
        VmfsCommand::Ls(a) => ls(a),
        VmfsCommand::Stat(a) => stat(a),
        VmfsCommand::Cat(a) => cat_cmd(a),
        VmfsCommand::Map(a) => map_cmd(a),
        VmfsCommand::Fsck(a) => fsck_cmd(a),
    }
}
