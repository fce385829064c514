//! `host vmdk info|cat|map|check`: inspect a VMDK virtual disk (a descriptor, its extents and
//! its snapshot chain) through the `vmdk` crate.
//!
//! `DESCRIPTOR` is the top disk's descriptor file (a text descriptor or a sparse file with an
//! embedded one); extents and parents are looked up relative to its directory, as QEMU does
//! for a chain in one directory. Every layer is opened read-only.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use block::{
    BlockCount, BlockDevice, BlockRequest, Completion, FileDisk, Instant, Lba, MemAddr, Memory,
    MemoryRegions, SgList, Tag,
};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use vmdk::{
    CheckReport, DirSource, ErrorKind, ExtentKind, Grain, MetaRegion, OpenOptions, VirtualDisk,
};

const NOW: Instant = Instant::ZERO;
const META_ADDR: MemAddr = MemAddr(0x1_0000_0000);
const DATA_ADDR: MemAddr = MemAddr(0x2_0000_0000);
/// Bytes of metadata region lent to the disk: each sparse extent takes a few grain tables and
/// a grain (about 80 KiB for QEMU's defaults). Zero-filled lazily by the allocator, so only
/// what the extents use is ever touched.
const META_LEN: usize = 64 << 20;
/// Bytes of descriptor text read per layer (QEMU embeds 10 KiB).
const TEXT_LEN: usize = 64 << 10;
/// Allocation map entries to start with (one per grain: 64 GiB at 64 KiB grains); grown to
/// what the disk asks for.
const MAP_LEN: usize = 1 << 20;
/// The largest allocation map the tool allocates (one byte per grain).
const MAX_MAP_LEN: u64 = 1 << 34;
/// Bytes per read request of `cat`.
const CHUNK: u64 = 1 << 20;
/// Read requests `cat` keeps outstanding.
const DEPTH: u64 = 8;
/// Stack of the thread that holds the disk (a `VirtualDisk` holds every layer inline).
const STACK: usize = 256 << 20;
/// Most extents per layer of the disk shape tried first (`twoGbMaxExtent*` disks have one
/// file per 2 GiB: up to 128 GiB), and its longest chain.
pub const DEEP: (usize, usize) = (64, 32);
/// The shape tried when a layer has more extents: up to 2 TiB in 2 GiB files, short chains.
pub const WIDE: (usize, usize) = (1024, 4);

/// The disk type the tool opens: `E` extents per layer, chains of `DP` layers. Each shape
/// holds `E * DP` extents inline (a few KiB each), hence the two shapes.
pub type Disk<'m, const E: usize = { DEEP.0 }, const DP: usize = { DEEP.1 }> =
    VirtualDisk<'m, FileDisk<4>, E, DP, 32>;

/// What a command does with an open disk, whatever its shape.
pub trait Job {
    /// What it returns.
    type Output;
    /// Runs on `disk`, whose buffers are in `memory`.
    fn run<const E: usize, const DP: usize>(
        &self,
        disk: &mut Disk<'_, E, DP>,
        memory: &mut MemoryRegions<'_, 2>,
    ) -> Result<Self::Output, String>;
}

/// `host vmdk`.
#[derive(Args)]
pub struct VmdkArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: VmdkCommand,
}

/// The `host vmdk` subcommands.
#[derive(Subcommand)]
pub enum VmdkCommand {
    /// createType, capacity, every layer's extents and the chain with CIDs and parentCIDs.
    Info(DiskArgs),
    /// Write the virtual disk's raw bytes to stdout (as `qemu-img convert -O raw` gives them).
    Cat(CatArgs),
    /// The allocated ranges and the chain depth serving each (like `qemu-img map`).
    Map(DiskArgs),
    /// Check every layer's grain directories and tables; exits 1 if anything is wrong.
    Check(DiskArgs),
}

/// Options of `info`, `map` and `check`.
#[derive(Args, Clone)]
pub struct DiskArgs {
    /// The (top) descriptor file.
    pub descriptor: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Options of `cat`.
#[derive(Args, Clone)]
pub struct CatArgs {
    /// The (top) descriptor file.
    pub descriptor: PathBuf,
}

/// Runs `host vmdk`. `Ok(false)`: `check` found problems (already reported).
pub fn run(args: VmdkArgs) -> Result<bool, String> {
    // The disk lives on a thread with a large stack: it holds every layer inline.
    std::thread::Builder::new()
        .name("vmdk".into())
        .stack_size(STACK)
        .spawn(move || match args.command {
            VmdkCommand::Info(a) => with_disk(&a.descriptor, &InfoJob(&a)).map(|()| true),
            VmdkCommand::Cat(a) => cat_cmd(&a).map(|()| true),
            VmdkCommand::Map(a) => with_disk(&a.descriptor, &MapJob(&a)).map(|()| true),
            VmdkCommand::Check(a) => check(&a),
        })
        .map_err(|e| e.to_string())?
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// The buffers of one run: the address space (metadata, data) and the allocation map.
pub struct Buffers {
    meta: Vec<u8>,
    data: Vec<u8>,
    text: Vec<u8>,
    map: Vec<u8>,
}

impl Default for Buffers {
    fn default() -> Self {
        Self {
            meta: vec![0u8; META_LEN],
            data: vec![0u8; (CHUNK * DEPTH) as usize],
            text: vec![0u8; TEXT_LEN],
            map: vec![0u8; MAP_LEN],
        }
    }
}

/// Splits `descriptor` into the directory the disk's files are found in and its file name.
fn split(descriptor: &Path) -> Result<(PathBuf, String), String> {
    if !descriptor.is_file() {
        return Err(format!("{}: no such file", descriptor.display()));
    }
    let name = descriptor
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a file name", descriptor.display()))?
        .to_string();
    let dir = match descriptor.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// Opens the disk of `descriptor` read-only and runs `job` on it. The allocation map grows to
/// what the disk needs; a disk with more extents per layer than [`DEEP`] allows is opened in
/// the [`WIDE`] shape.
pub fn with_disk<J: Job>(descriptor: &Path, job: &J) -> Result<J::Output, String> {
    let (dir, name) = split(descriptor)?;
    let opened = match open_with::<{ DEEP.0 }, { DEEP.1 }, J>(&dir, &name, job) {
        Err(e) if e.kind() == ErrorKind::CapacityExceeded && e.info() == DEEP.0 as u64 => {
            open_with::<{ WIDE.0 }, { WIDE.1 }, J>(&dir, &name, job)
        }
        other => other,
    };
    opened.map_err(|e| format!("{}: {e}", descriptor.display()))?
}

/// Opens the disk `name` in `dir` in one shape; `Err` if it cannot be opened, else what the
/// job returned.
fn open_with<const E: usize, const DP: usize, J: Job>(
    dir: &Path,
    name: &str,
    job: &J,
) -> vmdk::Result<Result<J::Output, String>> {
    let mut buffers = Buffers::default();
    let mut source = DirSource::<4>::new(dir);
    let options = OpenOptions {
        read_only: true,
        ..Default::default()
    };
    let meta = MetaRegion {
        addr: META_ADDR,
        len: META_LEN as u64,
    };
    // At most one retry: the map then has the entries the disk asked for.
    let mut attempt = 0;
    loop {
        let Buffers {
            meta: meta_buf,
            data,
            text,
            map,
        } = &mut buffers;
        let mut memory = MemoryRegions::<2>::new();
        // Two disjoint regions: these cannot fail.
        let _ = memory.add(META_ADDR, meta_buf);
        let _ = memory.add(DATA_ADDR, data);
        let opened = Disk::<E, DP>::open(
            &mut source,
            name,
            text,
            meta,
            map,
            &mut memory,
            NOW,
            options,
        );
        match opened {
            Ok(disk) => {
                let mut disk = Box::new(disk);
                return Ok(job.run(&mut disk, &mut memory));
            }
            Err(e)
                if attempt == 0
                    && e.kind() == ErrorKind::BufferTooSmall
                    && e.info() > MAP_LEN as u64
                    && e.info() <= MAX_MAP_LEN =>
            {
                let want = e.info() as usize;
                drop(memory);
                buffers.map = vec![0u8; want];
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn kind_text(kind: ExtentKind) -> &'static str {
    match kind {
        ExtentKind::Flat { .. } => "flat",
        ExtentKind::Zero => "zero",
        ExtentKind::HostedSparse => "sparse",
        ExtentKind::StreamOptimized => "streamOptimized",
        ExtentKind::VmfsSparse => "vmfsSparse",
    }
}

fn cid_text(cid: u32) -> String {
    format!("{cid:08x}")
}

/// The `info` of an open disk as JSON: layers top first (QEMU's depth order).
pub fn info_json<const E: usize, const DP: usize>(disk: &Disk<'_, E, DP>) -> Value {
    let depth = disk.depth();
    let layers: Vec<Value> = (0..depth)
        .rev()
        .filter_map(|i| {
            let l = disk.layer(i)?;
            let extents: Vec<Value> = disk
                .extents(i)
                .map(|x| {
                    let mut v = json!({
                        "start_sector": x.start,
                        "sectors": x.sectors,
                        "file": x.file,
                        "kind": kind_text(x.kind),
                    });
                    if let ExtentKind::Flat { offset } = x.kind {
                        v["file_offset_sectors"] = json!(offset);
                    }
                    v
                })
                .collect();
            Some(json!({
                "depth": depth - 1 - i,
                "layer": i,
                "file": l.name.as_str(),
                "create_type": l.create_type.as_str(),
                "cid": cid_text(l.cid),
                "parent_cid": cid_text(l.parent_cid),
                "extents": extents,
            }))
        })
        .collect();
    let top = disk.layer(depth.saturating_sub(1));
    json!({
        "create_type": top.map(|l| l.create_type.as_str()),
        "capacity_bytes": disk.capacity() * 512,
        "capacity_sectors": disk.capacity(),
        "grain_sectors": disk.unit_sectors(),
        "depth": depth,
        "chain": layers,
    })
}

struct InfoJob<'a>(&'a DiskArgs);

impl Job for InfoJob<'_> {
    type Output = ();
    fn run<const E: usize, const DP: usize>(
        &self,
        disk: &mut Disk<'_, E, DP>,
        _: &mut MemoryRegions<'_, 2>,
    ) -> Result<(), String> {
        let args = self.0;
        if args.json {
            let text = serde_json::to_string_pretty(&info_json(disk)).map_err(|e| e.to_string())?;
            println!("{text}");
            return Ok(());
        }
        let depth = disk.depth();
        let top = disk.layer(depth - 1).ok_or("empty chain")?;
        let capacity = disk.capacity() * 512;
        println!("descriptor  {}", args.descriptor.display());
        println!("createType  {}", top.create_type.as_str());
        println!("capacity    {capacity} bytes ({} MiB)", capacity >> 20);
        println!("grain       {} sectors", disk.unit_sectors());
        println!("chain       {depth} layer(s), top first");
        for i in (0..depth).rev() {
            let Some(l) = disk.layer(i) else { continue };
            println!(
                "  [depth {}] {}  {}  CID {}  parentCID {}",
                depth - 1 - i,
                l.name,
                l.create_type.as_str(),
                cid_text(l.cid),
                cid_text(l.parent_cid)
            );
            for x in disk.extents(i) {
                let file = if x.file.is_empty() { "-" } else { x.file };
                let at = match x.kind {
                    ExtentKind::Flat { offset } if offset != 0 => format!(" at sector {offset}"),
                    _ => String::new(),
                };
                println!(
                    "      sectors {}..{}  {}  {file}{at}",
                    x.start,
                    x.start + x.sectors,
                    kind_text(x.kind)
                );
            }
        }
        Ok(())
    }
}

/// Writes the disk's bytes to `out`, front to back, with `DEPTH` reads of `CHUNK` bytes
/// outstanding; each chunk is written straight from the buffer the disk read into, in order.
/// Returns the bytes written.
pub fn cat<const E: usize, const DP: usize>(
    disk: &mut Disk<'_, E, DP>,
    memory: &mut dyn Memory,
    out: &mut dyn Write,
) -> Result<u64, String> {
    let total = disk.capacity() * 512;
    let chunks = total.div_ceil(CHUNK);
    let slot_addr = |chunk: u64| MemAddr(DATA_ADDR.0 + (chunk % DEPTH) * CHUNK);
    let chunk_len = |chunk: u64| CHUNK.min(total - chunk * CHUNK);
    let mut done = vec![false; DEPTH as usize];
    let mut failure: Option<String> = None;
    let (mut submitted, mut written) = (0u64, 0u64);
    let mut idle_polls = 0u32;
    while written < chunks {
        while submitted < chunks && submitted < written + DEPTH {
            let len = chunk_len(submitted);
            let sg = SgList::single(slot_addr(submitted), len as u32).map_err(|e| e.to_string())?;
            let request = BlockRequest::read(
                Tag(submitted),
                Lba(submitted * CHUNK / 512),
                BlockCount((len / 512) as u32),
                sg,
            );
            match disk.submit(NOW, request) {
                Ok(()) => submitted += 1,
                // Back-pressure: poll, then submit again.
                Err(_) => break,
            }
        }
        let mut progressed = false;
        disk.poll(NOW, memory, &mut |c: Completion| {
            progressed = true;
            if let Err(e) = c.result {
                failure.get_or_insert(format!("read at byte {:#x}: {e}", c.tag.0 * CHUNK));
            }
            done[(c.tag.0 % DEPTH) as usize] = true;
        });
        if let Some(f) = failure {
            return Err(f);
        }
        while written < submitted && done[(written % DEPTH) as usize] {
            done[(written % DEPTH) as usize] = false;
            let bytes = memory
                .slice(slot_addr(written), chunk_len(written) as usize)
                .map_err(|e| e.to_string())?;
            out.write_all(bytes).map_err(|e| format!("write: {e}"))?;
            written += 1;
        }
        idle_polls = if progressed { 0 } else { idle_polls + 1 };
        if idle_polls > 1_000_000 {
            return Err("read requests never completed".into());
        }
    }
    Ok(total)
}

struct CatJob;

impl Job for CatJob {
    type Output = ();
    fn run<const E: usize, const DP: usize>(
        &self,
        disk: &mut Disk<'_, E, DP>,
        memory: &mut MemoryRegions<'_, 2>,
    ) -> Result<(), String> {
        // Unbuffered: the standard stdout handle is line buffered and would scan every
        // megabyte for newlines.
        let fd = std::os::fd::AsFd::as_fd(&std::io::stdout())
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?;
        let mut out = File::from(fd);
        cat(disk, memory, &mut out)?;
        out.flush().map_err(|e| e.to_string())
    }
}

fn cat_cmd(args: &CatArgs) -> Result<(), String> {
    with_disk(&args.descriptor, &CatJob)
}

/// One range of `map`: bytes `[start, start + length)` of the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapRange {
    /// First byte.
    pub start: u64,
    /// Bytes.
    pub length: u64,
    /// The serving layer (0 is the base), or `None`: no layer has it (reads as zeros).
    pub layer: Option<usize>,
    /// The serving layer has the grains as zeroed-grain entries (they read as zeros).
    pub zeroed: bool,
    /// The file of the serving layer's extent that holds the range (empty if none does).
    pub file: String,
}

/// The allocation map of an open disk as ranges, in order; a range served by a layer is
/// split where that layer's grains turn from data to zeroed-grain entries and where its
/// extents (files) end.
pub fn map_ranges<const E: usize, const DP: usize>(
    disk: &mut Disk<'_, E, DP>,
    memory: &mut dyn Memory,
) -> Result<Vec<MapRange>, String> {
    let unit = disk.unit_sectors().max(1);
    // Zeroed grains are rare: a set of the units whose serving layer has them zeroed.
    let mut zeroed = std::collections::BTreeSet::new();
    for i in 0..disk.depth() {
        let mut found = Vec::new();
        disk.scan_layer(i, memory, NOW, &mut |u, grain| {
            if grain == Grain::Zero {
                found.push(u);
            }
        })
        .map_err(|e| e.to_string())?;
        zeroed.extend(
            found
                .into_iter()
                .filter(|&u| disk.serving_layer(u) == Some(i)),
        );
    }
    let capacity = disk.capacity();
    let mut out = Vec::new();
    for (sector, sectors, layer) in disk.runs(0) {
        let end = sector + sectors;
        let mut at = sector;
        if layer.is_some() {
            for &u in zeroed.range(sector / unit..end.div_ceil(unit)) {
                let (a, b) = ((u * unit).max(sector), ((u + 1) * unit).min(end));
                if a > at {
                    out.push((at, a, layer, false));
                }
                out.push((a, b, layer, true));
                at = b;
            }
        }
        if at < end {
            out.push((at, end, layer, false));
        }
    }
    // Split at the serving layer's extent boundaries, then merge neighbouring zeroed grains
    // (the runs already merge everything else).
    let mut ranges: Vec<MapRange> = Vec::new();
    for (a, b, layer, zero) in out {
        let mut pieces = Vec::new();
        match layer {
            Some(l) => {
                for x in disk.extents(l) {
                    let (xa, xb) = (x.start.max(a), (x.start + x.sectors).min(b));
                    if xa < xb {
                        let file = if x.file.is_empty() {
                            disk.layer(l).map(|i| i.name.as_str()).unwrap_or("")
                        } else {
                            x.file
                        };
                        pieces.push((xa, xb, file.to_string()));
                    }
                }
            }
            None => pieces.push((a, b, String::new())),
        }
        for (a, b, file) in pieces {
            let b = b.min(capacity);
            match ranges.last_mut() {
                Some(r)
                    if r.layer == layer
                        && r.zeroed == zero
                        && r.file == file
                        && r.start + r.length == a * 512 =>
                {
                    r.length += (b - a) * 512
                }
                _ => ranges.push(MapRange {
                    start: a * 512,
                    length: (b - a) * 512,
                    layer,
                    zeroed: zero,
                    file,
                }),
            }
        }
    }
    Ok(ranges)
}

struct MapJob<'a>(&'a DiskArgs);

impl Job for MapJob<'_> {
    type Output = ();
    fn run<const E: usize, const DP: usize>(
        &self,
        disk: &mut Disk<'_, E, DP>,
        memory: &mut MemoryRegions<'_, 2>,
    ) -> Result<(), String> {
        let args = self.0;
        let depth = disk.depth();
        let ranges = map_ranges(disk, memory)?;
        if args.json {
            // QEMU's fields: depth 0 is the top; unallocated ranges report the base's depth.
            let list: Vec<Value> = ranges
                .iter()
                .map(|r| {
                    let present = r.layer.is_some();
                    let layer = r.layer.unwrap_or(0);
                    let mut v = json!({
                        "start": r.start,
                        "length": r.length,
                        "depth": depth - 1 - layer,
                        "present": present,
                        "zero": !present || r.zeroed,
                        "data": present && !r.zeroed,
                    });
                    if present {
                        v["file"] = json!(r.file);
                    }
                    v
                })
                .collect();
            let text = serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?;
            println!("{text}");
            return Ok(());
        }
        println!("{:<16}{:<16}{:<8}File", "Offset", "Length", "Depth");
        for r in &ranges {
            // Like qemu-img map: the ranges with data.
            if let (Some(layer), false) = (r.layer, r.zeroed) {
                println!(
                    "{:<16}{:<16}{:<8}{}",
                    format!("{:#x}", r.start),
                    format!("{:#x}", r.length),
                    depth - 1 - layer,
                    r.file
                );
            }
        }
        Ok(())
    }
}

struct CheckJob;

impl Job for CheckJob {
    type Output = (usize, CheckReport);
    fn run<const E: usize, const DP: usize>(
        &self,
        disk: &mut Disk<'_, E, DP>,
        memory: &mut MemoryRegions<'_, 2>,
    ) -> Result<(usize, CheckReport), String> {
        let report = disk.check(memory, NOW).map_err(|e| e.to_string())?;
        Ok((disk.depth(), report))
    }
}

fn report_json(report: &CheckReport) -> Value {
    json!({
        "allocated_grains": report.allocated,
        "zeroed_grains": report.zeroed,
        "grains_in_metadata": report.grains_in_metadata,
        "redundant_mismatches": report.redundant_mismatches,
    })
}

fn check(args: &DiskArgs) -> Result<bool, String> {
    // A descriptor that is not there is a usage error; anything wrong past that is a finding.
    split(&args.descriptor)?;
    let outcome = with_disk(&args.descriptor, &CheckJob);
    let clean = matches!(&outcome, Ok((_, r)) if r.is_clean());
    if args.json {
        let v = match &outcome {
            Ok((depth, r)) => json!({"clean": clean, "depth": depth, "report": report_json(r)}),
            Err(e) => json!({"clean": false, "error": e}),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
        );
        return Ok(clean);
    }
    match &outcome {
        Ok((depth, r)) => {
            println!(
                "{}: {depth} layer(s), {} allocated and {} zeroed grain(s)",
                args.descriptor.display(),
                r.allocated,
                r.zeroed
            );
            if r.grains_in_metadata > 0 {
                println!("  {} grain(s) point into metadata", r.grains_in_metadata);
            }
            if r.redundant_mismatches > 0 {
                println!(
                    "  {} redundant grain table or directory entries differ from the primary",
                    r.redundant_mismatches
                );
            }
            println!(
                "{}",
                if clean {
                    "no errors found"
                } else {
                    "ERRORS FOUND"
                }
            );
        }
        Err(e) => println!("ERRORS FOUND: {e}"),
    }
    Ok(clean)
}
