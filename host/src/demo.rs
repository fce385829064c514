//! The deterministic workload simulator behind `host demo`.
//!
//! The stack under the VMs is the real one: a simulated storage array (`array`: two
//! controllers, four target ports, one LUN emulated by `scsi::Lun` over a `RamDisk`), found by
//! PSA discovery over two adapters (four paths), claimed by `psa::claim` with the demo's claim
//! rules ([`crate::plugins`]: the SATP and PSP that ESXi would pick for the array's vendor and
//! model, or as `--satp` / `--psp` override them), and driven by the native multipathing
//! device (`psa::NmpDevice`: scheduler queue with one world per VM, the claimed `satp` and
//! `psp` plugins, retries). With faults,
//! the array suffers a flapping link, congestion (BUSY), a controller failure with failover and
//! restore, and then the loss of both links of the controller that owns the LUN (one dropping
//! commands silently), which an active/passive SATP survives only by trespassing with the
//! command its array takes; the schedule is spread over the run in simulated time.
//!
//! Each VM keeps `depth` requests outstanding against its own region of the shared LUN, mixing
//! reads and writes of 4 KiB to 64 KiB whose pages are scattered in guest memory. Every block a
//! VM writes is stamped with its LBA and a write sequence number, and every block it reads back
//! is checked against what the VM knows it wrote: the whole run verifies data end to end, not
//! only completions. Time is simulated: the run jumps from one device event to the next, so a
//! seed reproduces it exactly.

use core::time::Duration;
use std::collections::HashMap;

use array::{Array, ArrayConfig, ArrayStats, Fault, LinkFailure, Personality, TrespassCommand};
use block::{
    BlockCount, BlockDevice, BlockRequest, Completion, Instant, Lba, MemAddr, Memory,
    MemoryRegions, RamDisk, Segment, SgList, Tag,
};
use psa::{Adapter, NmpConfig, NmpDevice, Psp, SHARES_NORMAL, Satp, ScanConfig, Target, WorldId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scsi::{AccessState, InitiatorId, LunConfig, NaaId, Status};
use serde_json::{Value, json};

use crate::plugins::{self, CLAIM_RULES, DemoPsp, DemoSatp, PspChoice, SatpName};

/// Most requests the multipathing device keeps outstanding (its request slots).
pub const LUN_QUEUE_DEPTH: usize = 64;
/// Most VMs (scheduler worlds) of one run.
pub const MAX_VMS: usize = 8;
/// Paths to the LUN: two adapters, each seeing one port of each controller.
const PATHS: usize = plugins::PLUGIN_PATHS;

type DemoArray<'a> = Array<RamDisk<'a, LUN_QUEUE_DEPTH>, 1, PATHS, LUN_QUEUE_DEPTH, 16>;
type DemoNmp<'a, 'b> =
    NmpDevice<&'b mut DemoArray<'a>, DemoSatp, DemoPsp, PATHS, LUN_QUEUE_DEPTH, MAX_VMS>;

/// How the simulated array presents its LUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayKind {
    /// Every port serves I/O.
    ActiveActive,
    /// The owning controller serves I/O; the other answers NOT READY until a trespass by
    /// START STOP UNIT.
    ActivePassive,
    /// Active/passive, CLARiiON-style: the trespass is a MODE SELECT with page 0x22 (START
    /// STOP UNIT moves nothing).
    ActivePassiveCx,
    /// ALUA: the owner's ports active/optimized, the other controller's active/non-optimized.
    Alua,
}

impl ArrayKind {
    /// Every kind.
    pub const ALL: [ArrayKind; 4] = [
        ArrayKind::ActiveActive,
        ArrayKind::ActivePassive,
        ArrayKind::ActivePassiveCx,
        ArrayKind::Alua,
    ];

    fn personality(self) -> Personality {
        match self {
            ArrayKind::ActiveActive => Personality::ActiveActive,
            ArrayKind::ActivePassive | ArrayKind::ActivePassiveCx => Personality::ActivePassive {
                implicit_trespass: false,
            },
            ArrayKind::Alua => Personality::Alua {
                explicit: true,
                non_owner: AccessState::ActiveNonOptimized,
            },
        }
    }

    fn trespass(self) -> TrespassCommand {
        match self {
            ArrayKind::ActivePassiveCx => TrespassCommand::ModeSelectPage22,
            _ => TrespassCommand::StartStopUnit,
        }
    }

    /// The short name `--array` takes.
    pub fn id(self) -> &'static str {
        match self {
            ArrayKind::ActiveActive => "aa",
            ArrayKind::ActivePassive => "ap",
            ArrayKind::ActivePassiveCx => "ap-cx",
            ArrayKind::Alua => "alua",
        }
    }

    /// The name of the array type.
    pub fn name(self) -> &'static str {
        match self {
            ArrayKind::ActiveActive => "active/active",
            ArrayKind::ActivePassive => "active/passive",
            ArrayKind::ActivePassiveCx => "active/passive (CLARiiON-style)",
            ArrayKind::Alua => "ALUA",
        }
    }

    /// The INQUIRY model the array reports (its vendor is [`plugins::VENDOR`]), which the
    /// claim rules match.
    pub fn model(self) -> &'static str {
        match self {
            ArrayKind::ActiveActive => plugins::MODEL_AA,
            ArrayKind::ActivePassive => plugins::MODEL_AP,
            ArrayKind::ActivePassiveCx => plugins::MODEL_CX,
            ArrayKind::Alua => plugins::MODEL_ALUA,
        }
    }

    /// Whether `satp` can drive this array; `Err` says why not.
    pub fn check_satp(self, satp: SatpName) -> Result<(), String> {
        let why = match (self, satp) {
            (ArrayKind::ActiveActive, SatpName::DefaultAa)
            | (ArrayKind::ActivePassive, SatpName::DefaultAp)
            | (ArrayKind::ActivePassiveCx, SatpName::Cx)
            | (ArrayKind::Alua, SatpName::Alua) => return Ok(()),
            (_, SatpName::Alua) => {
                "the device reports no ALUA support (TPGS 0), so there are no target port groups to read or set"
            }
            (ArrayKind::Alua, _) => {
                "it does not read the target port groups, so the path states go stale at the first ALUA transition (use VMW_SATP_ALUA)"
            }
            (ArrayKind::ActiveActive, _) => {
                "every port of an active/active array serves I/O: there is nothing to trespass (use VMW_SATP_DEFAULT_AA)"
            }
            (ArrayKind::ActivePassive | ArrayKind::ActivePassiveCx, SatpName::DefaultAa) => {
                "it never trespasses, so I/O would fail once the owning controller is unreachable"
            }
            (ArrayKind::ActivePassive, _) => {
                "the array trespasses on START STOP UNIT only and ignores the MODE SELECT page 0x22 (use VMW_SATP_DEFAULT_AP)"
            }
            (ArrayKind::ActivePassiveCx, _) => {
                "the array trespasses on MODE SELECT page 0x22 only; START STOP UNIT moves nothing (use VMW_SATP_CX)"
            }
        };
        Err(format!(
            "{} does not fit an {} array: {why}",
            satp.name(),
            self.name()
        ))
    }
}
/// The largest request a VM issues.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
const PAGE: usize = 4096;
const BLOCK: usize = 512;
/// Guest memory starts here, as guest-physical memory above the first MiB would.
const GUEST_BASE: u64 = 0x10_0000;

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// Number of virtual machines.
    pub vms: usize,
    /// Outstanding requests per VM.
    pub depth: usize,
    /// Simulated run time.
    pub duration: Duration,
    /// Seed of every random choice (workload and faults).
    pub seed: u64,
    /// Size of the LUN in MiB.
    pub lun_mib: u64,
    /// Device service latency.
    pub latency: Duration,
    /// Percentage of reads in the mix.
    pub read_percent: u8,
    /// How the array presents the LUN.
    pub array: ArrayKind,
    /// Schedule array faults: a flapping link, congestion, a controller failure and restore,
    /// then both links of the owning controller down (one dropping commands) and back.
    pub faults: bool,
    /// The SATP to claim the device with instead of the one the claim rules pick (it must fit
    /// the array: [`ArrayKind::check_satp`]).
    pub satp: Option<SatpName>,
    /// The PSP to claim the device with instead of the one the claim rules pick.
    pub psp: Option<PspChoice>,
}

impl Default for DemoConfig {
    /// The embedded defaults of `host demo`: four VMs, queue depth 8 each, one simulated second
    /// on a 64 MiB LUN of an active/active array with 100 µs service time, 70 % reads, no
    /// faults, the plugins the claim rules pick.
    fn default() -> Self {
        Self {
            vms: 4,
            depth: 8,
            duration: Duration::from_secs(1),
            seed: 42,
            lun_mib: 64,
            latency: Duration::from_micros(100),
            read_percent: 70,
            array: ArrayKind::ActiveActive,
            faults: false,
            satp: None,
            psp: None,
        }
    }
}

/// Statistics of one VM, as esxtop's per-VM disk view shows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmStats {
    /// Completed reads.
    pub reads: u64,
    /// Completed writes.
    pub writes: u64,
    /// Bytes read successfully.
    pub read_bytes: u64,
    /// Bytes written successfully.
    pub write_bytes: u64,
    /// Requests that completed with an error.
    pub errors: u64,
    /// Blocks read back and checked against what this VM wrote.
    pub verified_blocks: u64,
    /// Latency of every successful read, in nanoseconds of simulated time.
    pub read_latency_ns: Vec<u64>,
    /// Latency of every successful write, in nanoseconds of simulated time.
    pub write_latency_ns: Vec<u64>,
}

impl VmStats {
    /// The VMs' statistics added up (latency lists concatenated).
    pub fn sum(vms: &[VmStats]) -> VmStats {
        let mut total = VmStats::default();
        for s in vms {
            total.reads += s.reads;
            total.writes += s.writes;
            total.read_bytes += s.read_bytes;
            total.write_bytes += s.write_bytes;
            total.errors += s.errors;
            total.verified_blocks += s.verified_blocks;
            total.read_latency_ns.extend(&s.read_latency_ns);
            total.write_latency_ns.extend(&s.write_latency_ns);
        }
        total
    }

    /// Median and 99th percentile of a latency list, in microseconds.
    pub fn percentiles_us(latencies: &[u64]) -> (f64, f64) {
        if latencies.is_empty() {
            return (0.0, 0.0);
        }
        let mut sorted = latencies.to_vec();
        sorted.sort_unstable();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        (at(0.5), at(0.99))
    }
}

/// One path's line in the report.
#[derive(Debug, Clone, PartialEq)]
pub struct PathReport {
    /// `vmhbaA:C0:Tn:Ln`.
    pub name: String,
    /// Its state at the end of the run, as esxcli names it (`active`, `active unoptimized`,
    /// `standby`, `unavailable`, `transitioning`, `dead`).
    pub state: String,
    /// Its target port group (ALUA devices).
    pub group: Option<u16>,
    /// Commands sent on it.
    pub commands: u64,
    /// Reads sent on it.
    pub reads: u64,
    /// Writes sent on it.
    pub writes: u64,
    /// Commands that failed on it, unit attentions apart.
    pub errors: u64,
    /// Commands that met a unit attention on it (retried).
    pub unit_attentions: u64,
    /// Average device latency on it, in nanoseconds.
    pub davg_ns: u64,
}

/// How the device was claimed, as `esxcli storage nmp device list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimReport {
    /// The INQUIRY vendor the device reported.
    pub vendor: String,
    /// The INQUIRY model the device reported.
    pub model: String,
    /// Whether the device reported ALUA support (TPGS nonzero).
    pub alua: bool,
    /// The index in [`CLAIM_RULES`] of the rule that matched, or `None`: psa's default.
    pub rule: Option<usize>,
    /// The SATP the rule (or the default) chose.
    pub rule_satp: &'static str,
    /// The PSP the rule (or the default) chose.
    pub rule_psp: &'static str,
    /// The PSP options of the rule (`--psp-option`), if it has any.
    pub rule_psp_options: Option<&'static str>,
    /// `Storage Array Type`: the SATP the device ran with.
    pub satp: &'static str,
    /// Whether `--satp` chose it rather than the claim.
    pub satp_overridden: bool,
    /// `Storage Array Type Device Config` at the end of the run.
    pub satp_config: String,
    /// `Path Selection Policy`: the PSP the device ran with.
    pub psp: &'static str,
    /// Whether `--psp` chose it rather than the claim.
    pub psp_overridden: bool,
    /// `Path Selection Policy Device Config` at the end of the run.
    pub psp_config: String,
}

impl ClaimReport {
    /// What claimed the device: the rule (as esxcli would list it) or the default.
    pub fn rule_description(&self) -> String {
        match self.rule.and_then(|i| CLAIM_RULES.get(i).map(|r| (i, r))) {
            Some((i, rule)) => format!(
                "rule {} of {} (vendor {}, model {}, {}): {}",
                i + 1,
                CLAIM_RULES.len(),
                rule.vendor.unwrap_or("any"),
                rule.model.unwrap_or("any"),
                match rule.alua {
                    Some(true) => "tpgs_on",
                    Some(false) => "tpgs_off",
                    None => "any tpgs",
                },
                plugins::CLAIM_RULE_DESCRIPTIONS
                    .get(i)
                    .copied()
                    .unwrap_or("")
            ),
            None => format!(
                "default: no rule matched (devices {} ALUA support)",
                if self.alua { "with" } else { "without" }
            ),
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoReport {
    /// Per-VM statistics.
    pub vms: Vec<VmStats>,
    /// The device (`naa.` name) and its esxtop line.
    pub device: String,
    /// How the device was claimed.
    pub claim: ClaimReport,
    /// Trespasses the SATP completed (active/passive SATPs; 0 for the others).
    pub satp_trespasses: u32,
    /// The esxtop line of the device at the end of the run.
    pub esxtop: String,
    /// Commands the NMP retried (on the same or another path).
    pub retries: u64,
    /// Per-path statistics.
    pub paths: Vec<PathReport>,
    /// What the array saw and did.
    pub array: ArrayStats,
    /// Simulated time the run covered, including the final drain.
    pub simulated: Duration,
    /// Data mismatches found by read verification (each a description); must be empty.
    pub mismatches: Vec<String>,
    /// Exactly-once violations the checker saw; must be zero.
    pub exactly_once_violations: usize,
}

impl DemoReport {
    /// Whether the run kept every promise: data verified, every request completed exactly once.
    pub fn is_clean(&self) -> bool {
        self.mismatches.is_empty() && self.exactly_once_violations == 0
    }
}

/// What a VM knows about one block it wrote.
#[derive(Debug, Clone, Copy, Default)]
struct Expected {
    /// The sequence number of the last acknowledged write (0: never written, reads as zeros).
    committed: u64,
    /// A failed write that may or may not have reached this block.
    maybe: Option<u64>,
}

struct InFlight {
    vm: usize,
    slot: usize,
    lba: u64,
    blocks: u32,
    write_sequence: Option<u64>,
    submitted: Instant,
    sg: SgList,
}

struct Vm {
    first_lba: u64,
    blocks: u64,
    expected: HashMap<u64, Expected>,
    free_slots: Vec<usize>,
    stats: VmStats,
}

fn stamp(lba: u64, sequence: u64, block: &mut [u8]) {
    for chunk in block.chunks_exact_mut(16) {
        chunk[..8].copy_from_slice(&lba.to_le_bytes());
        chunk[8..].copy_from_slice(&sequence.to_le_bytes());
    }
}

/// The write sequence a block holds, or a description of why it is not a valid stamp for `lba`.
fn read_stamp(lba: u64, block: &[u8]) -> Result<u64, String> {
    if block.iter().all(|&b| b == 0) {
        return Ok(0);
    }
    let word = |c: &[u8], r: core::ops::Range<usize>| {
        u64::from_le_bytes(c[r].try_into().unwrap_or([0; 8]))
    };
    let first = &block[..16];
    if block.chunks_exact(16).any(|c| c != first) {
        return Err(format!(
            "LBA {lba}: block mixes two writes (torn inside a block)"
        ));
    }
    let (stamped_lba, sequence) = (word(first, 0..8), word(first, 8..16));
    if stamped_lba != lba {
        return Err(format!(
            "LBA {lba}: holds the data written to LBA {stamped_lba}"
        ));
    }
    Ok(sequence)
}

/// Runs the simulation described by `config`.
pub fn run(config: &DemoConfig) -> Result<DemoReport, String> {
    let slots_total = config.vms.checked_mul(config.depth).ok_or("too many VMs")?;
    if config.vms == 0 || config.depth == 0 {
        return Err("need at least one VM and a depth of at least one".into());
    }
    if slots_total > LUN_QUEUE_DEPTH {
        return Err(format!(
            "{} VMs x depth {} = {slots_total} outstanding requests, more than the LUN queue depth {LUN_QUEUE_DEPTH}",
            config.vms, config.depth
        ));
    }
    let lun_bytes = config.lun_mib.checked_mul(1 << 20).ok_or("LUN too large")?;
    let region_blocks = lun_bytes / BLOCK as u64 / config.vms as u64;
    if region_blocks < (MAX_REQUEST_BYTES / BLOCK) as u64 * 2 {
        return Err("LUN too small for that many VMs".into());
    }
    if config.vms > MAX_VMS {
        return Err(format!("at most {MAX_VMS} VMs"));
    }
    if let Some(satp) = config.satp {
        config.array.check_satp(satp)?;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);

    let mut lun_storage = vec![0u8; usize::try_from(lun_bytes).map_err(|_| "LUN too large")?];
    let mut array = build_array(&mut lun_storage, config, rng.random())?;

    let mut guest_memory = vec![0u8; slots_total * MAX_REQUEST_BYTES];
    let mut scratch = vec![0u8; 4096];
    let mut memory = MemoryRegions::<2>::new();
    memory
        .add(MemAddr(GUEST_BASE), &mut guest_memory)
        .map_err(|e| e.to_string())?;
    memory
        .add(SCRATCH, &mut scratch)
        .map_err(|e| e.to_string())?;

    let (mut lun, start, mut claim, psp_choice) =
        discover_and_claim(&mut array, &mut memory, config)?;
    for vm in 0..config.vms {
        lun.set_shares(WorldId(vm as u32), SHARES_NORMAL)
            .map_err(|e| format!("{e:?}"))?;
    }
    let device = lun.name().to_string();
    if config.faults {
        schedule_faults(lun.transport_mut(), start, config.duration)?;
    }
    let mut violations = 0usize;

    let mut vms: Vec<Vm> = (0..config.vms)
        .map(|i| Vm {
            first_lba: i as u64 * region_blocks,
            blocks: region_blocks,
            expected: HashMap::new(),
            free_slots: (0..config.depth).rev().collect(),
            stats: VmStats::default(),
        })
        .collect();
    let mut in_flight: HashMap<u64, InFlight> = HashMap::new();
    let mut next_tag = 0u64;
    let mut next_sequence = 1u64;
    let mut mismatches = Vec::new();
    let end = start.saturating_add(config.duration);
    let mut now = start;
    let mut completions: Vec<Completion> = Vec::with_capacity(LUN_QUEUE_DEPTH);

    // Each iteration either completes something or jumps time forward to the next device event;
    // the bound only guards against a device that never makes progress.
    let max_iterations = 100_000_000u64;
    let mut draining = false;
    for _ in 0..max_iterations {
        if !draining {
            for (vm_index, vm) in vms.iter_mut().enumerate() {
                while let Some(slot) = vm.free_slots.pop() {
                    let issued = issue(
                        &mut rng,
                        config,
                        vm_index,
                        slot,
                        vm,
                        &in_flight,
                        &mut next_sequence,
                        now,
                    );
                    let Some((request_flight, request, data)) = issued else {
                        vm.free_slots.push(slot);
                        break;
                    };
                    if let Some(data) = data {
                        memory
                            .scatter(&request_flight.sg, &data)
                            .map_err(|e| e.to_string())?;
                    }
                    let tag = Tag(next_tag);
                    next_tag += 1;
                    lun.submit(now, BlockRequest { tag, ..request })
                        .map_err(|e| e.to_string())?;
                    in_flight.insert(tag.0, request_flight);
                }
            }
        }
        completions.clear();
        let next = lun.poll(now, &mut memory, &mut |c| completions.push(c));
        let progressed = !completions.is_empty();
        for completion in completions.drain(..) {
            // A tag completed twice, or never submitted, breaks the exactly-once contract.
            let Some(flight) = in_flight.remove(&completion.tag.0) else {
                violations += 1;
                continue;
            };
            complete(
                &mut vms[flight.vm],
                &flight,
                completion,
                now,
                &memory,
                &mut mismatches,
            );
            vms[flight.vm].free_slots.push(flight.slot);
        }
        if now >= end {
            draining = true;
        }
        if draining && in_flight.is_empty() {
            break;
        }
        if progressed {
            // Freed slots are refilled at this same instant before time moves on.
            continue;
        }
        match next {
            Some(at) if at > now => now = at,
            Some(_) => {}
            None if in_flight.is_empty() => now = if draining { now } else { end },
            None => return Err("the LUN stalled with requests outstanding".into()),
        }
    }
    if !in_flight.is_empty() {
        return Err("the run did not finish within its iteration bound".into());
    }
    let top = lun.esxtop();
    let paths: Vec<PathReport> = lun
        .paths()
        .iter()
        .map(|p| PathReport {
            name: p.name.to_string(),
            state: p.state.name().to_string(),
            group: p.group,
            commands: p.stats.commands,
            reads: p.stats.reads,
            writes: p.stats.writes,
            errors: p.stats.errors,
            unit_attentions: p.stats.unit_attentions,
            davg_ns: p.stats.davg_ns(),
        })
        .collect();
    claim.satp_config = lun.satp().device_config();
    claim.psp_config = psp_device_config(&psp_choice, lun.psp(), &paths);
    let array_stats = lun.transport().stats();
    Ok(DemoReport {
        exactly_once_violations: violations + in_flight.len(),
        vms: vms.into_iter().map(|v| v.stats).collect(),
        device,
        claim,
        satp_trespasses: lun.satp().trespasses(),
        esxtop: top.to_string(),
        retries: top.stats.retries,
        paths,
        array: array_stats,
        simulated: now.saturating_duration_since(start),
        mismatches,
    })
}

/// Scratch memory for discovery commands.
const SCRATCH: MemAddr = MemAddr(0x8000_0000);

/// The array: controllers 0 and 1, ports 1 and 2 on controller 0, ports 3 and 4 on controller
/// 1, one LUN over the RAM disk, owned by controller 0.
fn build_array<'a>(
    storage: &'a mut [u8],
    config: &DemoConfig,
    seed: u64,
) -> Result<DemoArray<'a>, String> {
    let mut array_config = ArrayConfig::new(config.array.personality())
        .with_latency(config.latency)
        .with_seed(seed)
        .with_trespass(config.array.trespass());
    // A dropped command is noticed after 50 ms (the HBA's abort), or a twentieth of a run
    // shorter than a second, so that a short run sees its faults one after the other too.
    array_config.command_timeout =
        (config.duration / 20).clamp(Duration::from_millis(1), Duration::from_millis(50));
    let mut array: DemoArray<'a> = Array::new(array_config);
    for (port, controller) in [(1, 0), (2, 0), (3, 1), (4, 1)] {
        array
            .add_port(port, controller)
            .map_err(|e| e.to_string())?;
    }
    let disk = RamDisk::new(storage, BLOCK as u32).map_err(|e| e.to_string())?;
    let identity = LunConfig::new(
        plugins::VENDOR,
        config.array.model(),
        "0001",
        "DEMO0001",
        NaaId::registered(0x00_0c29, 1),
    );
    array
        .add_lun(disk, identity, 0)
        .map_err(|e| e.to_string())?;
    Ok(array)
}

/// Discovers the LUN through two adapters (vmhba1 sees ports 1 and 3, vmhba2 ports 2 and 4),
/// claims it with the demo's claim rules ([`CLAIM_RULES`], or psa's default), lets `--satp`
/// and `--psp` override the claim, and builds the multipathing device on the chosen `satp` and
/// `psp` plugins.
fn discover_and_claim<'a, 'b>(
    array: &'b mut DemoArray<'a>,
    memory: &mut MemoryRegions<'_, 2>,
    config: &DemoConfig,
) -> Result<(DemoNmp<'a, 'b>, Instant, ClaimReport, PspChoice), String> {
    let vmhba1 = [Target { number: 0, port: 1 }, Target { number: 1, port: 3 }];
    let vmhba2 = [Target { number: 0, port: 2 }, Target { number: 1, port: 4 }];
    let adapters = [
        Adapter {
            number: 1,
            initiator: InitiatorId(1),
            targets: &vmhba1,
        },
        Adapter {
            number: 2,
            initiator: InitiatorId(2),
            targets: &vmhba2,
        },
    ];
    let scan = ScanConfig {
        adapters: &adapters,
        max_lun: 256,
        scratch: SCRATCH,
        max_polls: 256,
    };
    let (devices, now) = psa::scan::<_, 2, PATHS>(&mut *array, memory, Instant::ZERO, &scan)
        .map_err(|e| format!("discovery: {e:?}"))?;
    let device = devices.first().ok_or("discovery found no device")?;
    let claimed = psa::claim(&CLAIM_RULES, device);
    let satp_name = match config.satp {
        Some(name) => name,
        None => SatpName::parse(claimed.satp)
            .map_err(|e| format!("the claim picked an SATP the demo does not have: {e}"))?,
    };
    // The rules are the demo's own, so this only fails if they and the array disagree.
    config.array.check_satp(satp_name)?;
    let psp_choice = match config.psp {
        Some(choice) => choice,
        None => {
            let spec = match claimed.psp_options {
                Some(options) => format!("{}:{options}", claimed.psp),
                None => claimed.psp.to_string(),
            };
            PspChoice::parse(&spec).map_err(|e| {
                format!("the claim picked a PSP (or PSP options) the demo does not have: {e}")
            })?
        }
    };
    let satp = DemoSatp::new(satp_name);
    let psp = DemoPsp::new(&psp_choice, &device.paths)?;
    let claim = ClaimReport {
        vendor: device.vendor_str().to_string(),
        model: device.model_str().to_string(),
        alua: device.tpgs != 0,
        rule: claimed.rule,
        rule_satp: claimed.satp,
        rule_psp: claimed.psp,
        rule_psp_options: claimed.psp_options,
        satp: satp.name(),
        satp_overridden: config.satp.is_some(),
        satp_config: String::new(),
        psp: psp.name(),
        psp_overridden: config.psp.is_some(),
        psp_config: String::new(),
    };
    // The SATPs' own commands (REPORT TARGET PORT GROUPS) and the trespass's MODE SELECT
    // parameter list use the discovery scratch buffer, free once the scan is done.
    let nmp_config = NmpConfig {
        scratch: Some(SCRATCH),
        probe_interval: probe_interval(config.duration),
        ..NmpConfig::default()
    };
    let nmp = NmpDevice::new(array, device, satp, psp, nmp_config)
        .map_err(|e| format!("claim: {e:?}"))?;
    Ok((nmp, now, claim, psp_choice))
}

/// How often the NMP probes paths that are not usable: a fiftieth of the run (20 ms in a
/// one-second run), between 1 ms and psa's default of 1 s. The fault schedule is compressed
/// into the run, so the probes are too: a path whose link or controller came back is found
/// again before the next fault, as a real host's probes would find it between faults minutes
/// apart.
fn probe_interval(duration: Duration) -> Duration {
    (duration / 50).clamp(
        Duration::from_millis(1),
        NmpConfig::default().probe_interval,
    )
}

/// `Path Selection Policy Device Config`: the PSP's tunables and the path it uses, where it
/// keeps one.
fn psp_device_config(choice: &PspChoice, psp: &DemoPsp, paths: &[PathReport]) -> String {
    let mut parts = Vec::new();
    let tunables = choice.config();
    if !tunables.is_empty() {
        parts.push(tunables);
    }
    if let Some((what, id)) = psp.path_in_use()
        && let Some(path) = paths.get(usize::from(id.0))
    {
        parts.push(format!("{what}={}", path.name));
    }
    format!("{{{}}}", parts.join(";"))
}

/// The fault schedule of `--faults`, spread over the run.
fn schedule_faults(
    array: &mut DemoArray<'_>,
    start: Instant,
    duration: Duration,
) -> Result<(), String> {
    let at = |fraction: f64| start.saturating_add(duration.mul_f64(fraction));
    let faults = [
        (
            at(0.10),
            Fault::Flap {
                port: 1,
                period: duration / 40,
                duration: duration / 5,
                failure: LinkFailure::Error,
            },
        ),
        (
            at(0.35),
            Fault::Congestion {
                port: None,
                status: Status::BUSY,
                permille: 20,
                duration: duration / 10,
            },
        ),
        (at(0.50), Fault::ControllerFail { controller: 0 }),
        (at(0.65), Fault::ControllerRestore { controller: 0 }),
        // The controller failure left controller 1 owning the LUN: now both its links go
        // down (one dropping commands silently, one failing them) while it stays alive, so an
        // active/passive SATP must trespass to controller 0 with the command its array takes.
        (
            at(0.75),
            Fault::LinkDown {
                port: 3,
                failure: LinkFailure::Timeout,
            },
        ),
        (
            at(0.75),
            Fault::LinkDown {
                port: 4,
                failure: LinkFailure::Error,
            },
        ),
        (at(0.85), Fault::LinkUp { port: 3 }),
        (at(0.85), Fault::LinkUp { port: 4 }),
    ];
    for (when, fault) in faults {
        array
            .schedule(when, fault)
            .map_err(|e| format!("fault schedule: {e}"))?;
    }
    Ok(())
}

/// Chooses the next request of a VM: a range that overlaps none of its own outstanding writes
/// (and, for a write, none of its outstanding reads), as a file system above would ensure.
#[allow(clippy::too_many_arguments)]
fn issue(
    rng: &mut ChaCha8Rng,
    config: &DemoConfig,
    vm_index: usize,
    slot: usize,
    vm: &Vm,
    in_flight: &HashMap<u64, InFlight>,
    next_sequence: &mut u64,
    now: Instant,
) -> Option<(InFlight, BlockRequest, Option<Vec<u8>>)> {
    let is_read = rng.random_range(0..100u8) < config.read_percent;
    let pages = rng.random_range(1..=MAX_REQUEST_BYTES / PAGE);
    let blocks = (pages * PAGE / BLOCK) as u32;
    let mut chosen = None;
    for _ in 0..8 {
        let page_count = vm.blocks / (PAGE / BLOCK) as u64;
        let lba =
            vm.first_lba + rng.random_range(0..page_count - pages as u64) * (PAGE / BLOCK) as u64;
        let end = lba + blocks as u64;
        let clashes = in_flight.values().any(|f| {
            f.vm == vm_index
                && (f.write_sequence.is_some() || !is_read)
                && lba < f.lba + f.blocks as u64
                && f.lba < end
        });
        if !clashes {
            chosen = Some(lba);
            break;
        }
    }
    let lba = chosen?;

    // The request's pages, scattered: the slot's pages in a shuffled order.
    let slot_base = GUEST_BASE + ((vm_index * config.depth + slot) * MAX_REQUEST_BYTES) as u64;
    let mut order: Vec<usize> = (0..MAX_REQUEST_BYTES / PAGE).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let mut sg = SgList::new();
    for &page in order.iter().take(pages) {
        // At most 16 pages of 4 KiB, the default SG capacity.
        sg.push(Segment::new(
            MemAddr(slot_base + (page * PAGE) as u64),
            PAGE as u32,
        ))
        .ok()?;
    }
    let (lba_, count) = (Lba(lba), BlockCount(blocks));
    if is_read {
        let request = BlockRequest::read(Tag(0), lba_, count, sg.clone());
        let flight = InFlight {
            vm: vm_index,
            slot,
            lba,
            blocks,
            write_sequence: None,
            submitted: now,
            sg,
        };
        return Some((flight, request, None));
    }
    let sequence = *next_sequence;
    *next_sequence += 1;
    let mut data = vec![0u8; blocks as usize * BLOCK];
    for (i, block) in data.chunks_exact_mut(BLOCK).enumerate() {
        stamp(lba + i as u64, sequence, block);
    }
    let request = BlockRequest::write(Tag(0), lba_, count, sg.clone());
    let flight = InFlight {
        vm: vm_index,
        slot,
        lba,
        blocks,
        write_sequence: Some(sequence),
        submitted: now,
        sg,
    };
    Some((flight, request, Some(data)))
}

fn complete(
    vm: &mut Vm,
    flight: &InFlight,
    completion: Completion,
    now: Instant,
    memory: &MemoryRegions<'_, 2>,
    mismatches: &mut Vec<String>,
) {
    let latency = now.saturating_duration_since(flight.submitted).as_nanos() as u64;
    let bytes = flight.blocks as u64 * BLOCK as u64;
    let lbas = flight.lba..flight.lba + flight.blocks as u64;
    match (flight.write_sequence, completion.result) {
        (Some(sequence), Ok(())) => {
            vm.stats.writes += 1;
            vm.stats.write_bytes += bytes;
            vm.stats.write_latency_ns.push(latency);
            for lba in lbas {
                vm.expected.insert(
                    lba,
                    Expected {
                        committed: sequence,
                        maybe: None,
                    },
                );
            }
        }
        (Some(sequence), Err(_)) => {
            vm.stats.writes += 1;
            vm.stats.errors += 1;
            for lba in lbas {
                vm.expected.entry(lba).or_default().maybe = Some(sequence);
            }
        }
        (None, Err(_)) => {
            vm.stats.reads += 1;
            vm.stats.errors += 1;
        }
        (None, Ok(())) => {
            vm.stats.reads += 1;
            vm.stats.read_bytes += bytes;
            vm.stats.read_latency_ns.push(latency);
            let mut data = vec![0u8; bytes as usize];
            if let Err(e) = memory.gather(&flight.sg, &mut data) {
                mismatches.push(format!("read buffer unreachable: {e}"));
                return;
            }
            for (lba, block) in lbas.zip(data.chunks_exact(BLOCK)) {
                let expected = vm.expected.entry(lba).or_default();
                match read_stamp(lba, block) {
                    Ok(seen) if seen == expected.committed => expected.maybe = None,
                    Ok(seen) if Some(seen) == expected.maybe => {
                        *expected = Expected {
                            committed: seen,
                            maybe: None,
                        };
                    }
                    Ok(seen) => mismatches.push(format!(
                        "LBA {lba}: read write #{seen}, expected #{}{}",
                        expected.committed,
                        expected
                            .maybe
                            .map(|m| format!(" or #{m}"))
                            .unwrap_or_default()
                    )),
                    Err(why) => mismatches.push(why),
                }
                vm.stats.verified_blocks += 1;
            }
        }
    }
}

/// The device's claim as `esxcli storage nmp device list` shows it, with the claim rule
/// that chose the plugins (or the default) and what `--satp` / `--psp` overrode.
pub fn render_claim(device: &str, claim: &ClaimReport) -> String {
    let mut out = format!("{device}\n");
    out.push_str(&format!(
        "   Device Display Name: {} {} ({device})\n",
        claim.vendor, claim.model
    ));
    out.push_str(&format!("   Storage Array Type: {}\n", claim.satp));
    if !claim.satp_config.is_empty() {
        out.push_str(&format!(
            "   Storage Array Type Device Config: {}\n",
            claim.satp_config
        ));
    }
    out.push_str(&format!("   Path Selection Policy: {}\n", claim.psp));
    if !claim.psp_config.is_empty() {
        out.push_str(&format!(
            "   Path Selection Policy Device Config: {}\n",
            claim.psp_config
        ));
    }
    let psp_options = claim
        .rule_psp_options
        .map(|o| format!(" ({o})"))
        .unwrap_or_default();
    out.push_str(&format!(
        "   Claim Rule: {} -> {} with {}{psp_options}\n",
        claim.rule_description(),
        claim.rule_satp,
        claim.rule_psp
    ));
    let mut overrides = Vec::new();
    if claim.satp_overridden {
        overrides.push(format!("--satp {}", claim.satp));
    }
    if claim.psp_overridden {
        overrides.push(format!("--psp {}", claim.psp));
    }
    if !overrides.is_empty() {
        out.push_str(&format!("   Overridden: {}\n", overrides.join(", ")));
    }
    out
}

/// Renders a report as esxtop's disk VM view would: per VM and in total.
pub fn render(config: &DemoConfig, report: &DemoReport) -> String {
    let seconds = report.simulated.as_secs_f64().max(f64::MIN_POSITIVE);
    let mut out = String::new();
    out.push_str(&format!(
        "host demo: {} VMs x depth {}, {} MiB LUN on an {} array, {:?} service time, {}% reads, seed {}{}\n",
        config.vms,
        config.depth,
        config.lun_mib,
        config.array.name(),
        config.latency,
        config.read_percent,
        config.seed,
        if config.faults {
            ", faults injected"
        } else {
            ""
        }
    ));
    out.push_str(&format!("simulated time {:.3} s\n\n", seconds));
    out.push_str(&format!(
        "{:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>6} {:>10}\n",
        "VM",
        "CMDS/s",
        "READS/s",
        "WRITES/s",
        "MBREAD/s",
        "MBWRTN/s",
        "RD p50 us",
        "WR p50 us",
        "p99 us",
        "ERRS",
        "VERIFIED"
    ));
    let mut all_latencies = Vec::new();
    let row = |name: &str, s: &VmStats, latencies: &[u64]| {
        let (read_p50, _) = VmStats::percentiles_us(&s.read_latency_ns);
        let (write_p50, _) = VmStats::percentiles_us(&s.write_latency_ns);
        let (_, p99) = VmStats::percentiles_us(latencies);
        format!(
            "{:<6} {:>9.0} {:>9.0} {:>9.0} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>10.1} {:>6} {:>10}\n",
            name,
            (s.reads + s.writes) as f64 / seconds,
            s.reads as f64 / seconds,
            s.writes as f64 / seconds,
            s.read_bytes as f64 / seconds / 1e6,
            s.write_bytes as f64 / seconds / 1e6,
            read_p50,
            write_p50,
            p99,
            s.errors,
            s.verified_blocks
        )
    };
    for (i, s) in report.vms.iter().enumerate() {
        let latencies: Vec<u64> = s
            .read_latency_ns
            .iter()
            .chain(&s.write_latency_ns)
            .copied()
            .collect();
        out.push_str(&row(&format!("vm{i}"), s, &latencies));
        all_latencies.extend(latencies);
    }
    let total = VmStats::sum(&report.vms);
    out.push_str(&row("total", &total, &all_latencies));
    out.push('\n');
    out.push_str(&render_claim(&report.device, &report.claim));
    out.push_str(&format!(
        "   Paths: {}, retries {}\n",
        report.paths.len(),
        report.retries
    ));
    out.push_str(&format!("  {}\n", report.esxtop));
    out.push_str(&format!(
        "{:<18} {:>4} {:>18} {:>10} {:>10} {:>10} {:>6} {:>4} {:>8}\n",
        "path", "TPG", "state", "CMDS", "READS", "WRITES", "ERRS", "UA", "DAVG us"
    ));
    for p in &report.paths {
        out.push_str(&format!(
            "{:<18} {:>4} {:>18} {:>10} {:>10} {:>10} {:>6} {:>4} {:>8.1}\n",
            p.name,
            p.group.map_or_else(|| "-".to_string(), |g| g.to_string()),
            p.state,
            p.commands,
            p.reads,
            p.writes,
            p.errors,
            p.unit_attentions,
            p.davg_ns as f64 / 1000.0
        ));
    }
    let a = &report.array;
    out.push_str(&format!(
        "array: {} commands, {} delivery failures, {} BUSY/TASK SET FULL, {} NOT READY (passive), {} trespasses ({} START STOP UNIT, {} MODE SELECT page 0x22 accepted; {} by the SATP)\n",
        a.commands,
        a.delivery_failures,
        a.congested,
        a.passive,
        a.trespasses,
        a.start_stop_trespasses,
        a.page22_trespasses,
        report.satp_trespasses
    ));
    out.push_str(&format!(
        "data verification: {} blocks read back, {} mismatches; exactly-once violations: {}\n",
        total.verified_blocks,
        report.mismatches.len(),
        report.exactly_once_violations
    ));
    for m in report.mismatches.iter().take(10) {
        out.push_str(&format!("  mismatch: {m}\n"));
    }
    out
}

/// The report as JSON (what `host demo --json` prints, without the wall time): the
/// configuration, the claim, per-VM and total figures, the device, its paths, the array's
/// counters and the verification.
pub fn to_json(config: &DemoConfig, report: &DemoReport) -> Value {
    let seconds = report.simulated.as_secs_f64().max(f64::MIN_POSITIVE);
    let vm_json = |s: &VmStats| {
        let latencies: Vec<u64> = s
            .read_latency_ns
            .iter()
            .chain(&s.write_latency_ns)
            .copied()
            .collect();
        json!({
            "reads": s.reads,
            "writes": s.writes,
            "read_bytes": s.read_bytes,
            "write_bytes": s.write_bytes,
            "errors": s.errors,
            "verified_blocks": s.verified_blocks,
            "commands_per_second": (s.reads + s.writes) as f64 / seconds,
            "read_p50_us": VmStats::percentiles_us(&s.read_latency_ns).0,
            "write_p50_us": VmStats::percentiles_us(&s.write_latency_ns).0,
            "p99_us": VmStats::percentiles_us(&latencies).1,
        })
    };
    let total = VmStats::sum(&report.vms);
    let c = &report.claim;
    let rule = c.rule.and_then(|i| CLAIM_RULES.get(i).map(|r| (i, r)));
    let a = &report.array;
    json!({
        "config": {
            "vms": config.vms,
            "depth": config.depth,
            "seconds": config.duration.as_secs_f64(),
            "seed": config.seed,
            "lun_mib": config.lun_mib,
            "latency_us": config.latency.as_secs_f64() * 1e6,
            "read_percent": config.read_percent,
            "array": config.array.id(),
            "faults": config.faults,
            "satp": config.satp.map(SatpName::name),
            "psp": config.psp.map(|p| p.name()),
        },
        "simulated_seconds": report.simulated.as_secs_f64(),
        "device": report.device,
        "claim": {
            "vendor": c.vendor,
            "model": c.model,
            "alua": c.alua,
            "rule": rule.map(|(i, r)| json!({
                "number": i + 1,
                "vendor": r.vendor,
                "model": r.model,
                "tpgs": r.alua.map(|a| if a { "tpgs_on" } else { "tpgs_off" }),
                "satp": r.satp,
                "psp": r.psp,
                "psp_options": r.psp_options,
            })),
            "claimed_by": c.rule_description(),
            "rule_satp": c.rule_satp,
            "rule_psp": c.rule_psp,
            "rule_psp_options": c.rule_psp_options,
            "storage_array_type": c.satp,
            "storage_array_type_device_config": c.satp_config,
            "satp_overridden": c.satp_overridden,
            "path_selection_policy": c.psp,
            "path_selection_policy_device_config": c.psp_config,
            "psp_overridden": c.psp_overridden,
        },
        "vms": report.vms.iter().map(vm_json).collect::<Vec<_>>(),
        "total": vm_json(&total),
        "esxtop": report.esxtop,
        "retries": report.retries,
        "paths": report.paths.iter().map(|p| json!({
            "name": p.name,
            "group": p.group,
            "state": p.state,
            "commands": p.commands,
            "reads": p.reads,
            "writes": p.writes,
            "errors": p.errors,
            "unit_attentions": p.unit_attentions,
            "davg_us": p.davg_ns as f64 / 1000.0,
        })).collect::<Vec<_>>(),
        "array": {
            "commands": a.commands,
            "executed": a.executed,
            "delivery_failures": a.delivery_failures,
            "congested": a.congested,
            "passive": a.passive,
            "trespasses": a.trespasses,
            "start_stop_trespasses": a.start_stop_trespasses,
            "page22_trespasses": a.page22_trespasses,
        },
        "satp_trespasses": report.satp_trespasses,
        "verification": {
            "verified_blocks": total.verified_blocks,
            "mismatches": report.mismatches,
            "exactly_once_violations": report.exactly_once_violations,
            "clean": report.is_clean(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_detect_misplacement() {
        let mut block = [0u8; BLOCK];
        stamp(77, 5, &mut block);
        assert_eq!(read_stamp(77, &block), Ok(5));
        assert!(read_stamp(78, &block).is_err());
        block[300] ^= 1;
        assert!(read_stamp(77, &block).is_err());
        assert_eq!(read_stamp(1, &[0u8; BLOCK]), Ok(0));
    }
}
