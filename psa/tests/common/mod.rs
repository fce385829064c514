//! A simulated host for the scenario tests: an array with two controllers and four ports, a
//! RamDisk LUN, two adapters each seeing one port of each controller (four paths), and a
//! data-verifying workload in simulated time.

#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use array::{Array, ArrayConfig, Fault, LinkFailure, Personality, TrespassCommand};
use block::testing::ExactlyOnce;
use block::{
    BlockCount, BlockDevice, BlockRequest, ErrorKind, Instant, Lba, MemAddr, Memory, MemoryRegions,
    RamDisk, SgList, Tag,
};
use psa::{
    Activation, ActivationOutcome, Adapter, DefaultAa, DiscoveredDevice, MostRecentlyUsed,
    NmpConfig, NmpDevice, Path, PathId, PathState, Satp, SatpAction, ScanConfig, Target, WorldId,
};
use scsi::Transport;
use scsi::cdb::CdbRepr;
use scsi::{AccessState, InitiatorId, LunConfig, NaaId};
use scsi::{CdbBytes, CommandCompletion};

pub use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

pub const BLOCK: usize = 512;
pub const DISK_BLOCKS: u64 = 4096;
pub const QD: usize = 16;
pub const MAX_BLOCKS_PER_IO: u32 = 8;
pub const MS: u64 = 1_000_000;
pub const SEC: u64 = 1_000_000_000;

pub type Sim<'a> = Array<RamDisk<'a, 64>, 1, 4, 64, 16>;
pub type Nmp<'a, 'b> = NmpDevice<&'b mut Sim<'a>, DefaultAa, MostRecentlyUsed, 4, 64, 8>;

const SCRATCH: MemAddr = MemAddr(0x10_0000);
pub const BUFFERS: MemAddr = MemAddr(0x100_0000);
pub const BUFFER_LEN: usize = MAX_BLOCKS_PER_IO as usize * BLOCK;

/// A seeded generator: the random fault schedules and workloads of the tests replay exactly.
pub fn seeded(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn personality_name(p: Personality) -> &'static str {
    match p {
        Personality::ActiveActive => "AA",
        Personality::ActivePassive { .. } => "AP",
        Personality::Alua { .. } => "ALUA",
    }
}

pub fn make_array(storage: &mut [u8], personality: Personality, seed: u64) -> Sim<'_> {
    make_array_with(storage, personality, seed, TrespassCommand::StartStopUnit)
}

/// [`make_array`] taking `trespass` as the explicit trespass command (active/passive).
pub fn make_array_with(
    storage: &mut [u8],
    personality: Personality,
    seed: u64,
    trespass: TrespassCommand,
) -> Sim<'_> {
    let config = ArrayConfig::new(personality)
        .with_latency(Duration::from_micros(250))
        .with_seed(seed)
        .with_trespass(trespass);
    let mut a: Sim<'_> = Array::new(config);
    for (id, controller) in [(1, 0), (2, 0), (3, 1), (4, 1)] {
        a.add_port(id, controller).unwrap();
    }
    let disk = RamDisk::new(storage, BLOCK as u32).unwrap();
    let id = LunConfig::new(
        "SIM",
        "ARRAY",
        "0001",
        "SN0001",
        NaaId::registered(0x1405, 42),
    );
    a.add_lun(disk, id, 0).unwrap();
    a
}

pub fn alua_ano() -> Personality {
    Personality::Alua {
        explicit: true,
        non_owner: AccessState::ActiveNonOptimized,
    }
}

/// Scans the array as two adapters: vmhba1 sees ports 1 and 3, vmhba2 ports 2 and 4.
pub fn claim<'a, 'b>(
    array: &'b mut Sim<'a>,
    memory: &mut MemoryRegions<'_, 2>,
    config: NmpConfig,
) -> (Nmp<'a, 'b>, Instant) {
    claim_with::<64>(array, memory, config)
}

/// Discovery over the tests' topology: adapters vmhba1 and vmhba2, each with a target on a port
/// of controller 0 (ports 1 and 2) and one on a port of controller 1 (ports 3 and 4): the one
/// device, on four paths, and the time the scan ended.
pub fn scan_four_paths<T: Transport + ?Sized>(
    transport: &mut T,
    memory: &mut dyn Memory,
) -> (DiscoveredDevice<4>, Instant) {
    let t1 = [Target { number: 0, port: 1 }, Target { number: 1, port: 3 }];
    let t2 = [Target { number: 0, port: 2 }, Target { number: 1, port: 4 }];
    let adapters = [
        Adapter {
            number: 1,
            initiator: InitiatorId(1),
            targets: &t1,
        },
        Adapter {
            number: 2,
            initiator: InitiatorId(2),
            targets: &t2,
        },
    ];
    let scan = ScanConfig {
        adapters: &adapters,
        max_lun: 256,
        scratch: SCRATCH,
        max_polls: 256,
    };
    let (devices, now) =
        psa::scan::<_, 2, 4>(transport, memory, Instant(0), &scan).expect("scan succeeds");
    assert_eq!(devices.len(), 1, "one device on four paths");
    assert_eq!(devices[0].paths.len(), 4);
    (devices[0].clone(), now)
}

/// [`claim`] with `N` request slots.
pub fn claim_with<'a, 'b, const N: usize>(
    array: &'b mut Sim<'a>,
    memory: &mut MemoryRegions<'_, 2>,
    config: NmpConfig,
) -> (
    NmpDevice<&'b mut Sim<'a>, DefaultAa, MostRecentlyUsed, 4, N, 8>,
    Instant,
) {
    let (device, now) = scan_four_paths(array, memory);
    let nmp = NmpDevice::new(
        array,
        &device,
        DefaultAa::default(),
        MostRecentlyUsed::new(),
        config,
    )
    .expect("claim");
    (nmp, now)
}

/// What a block may hold: the versions it may carry (0 = never written, all zeros).
#[derive(Debug, Clone)]
struct BlockModel {
    possible: Vec<u64>,
}

fn stamp(lba: u64, version: u64, out: &mut [u8]) {
    if version == 0 {
        out.fill(0);
        return;
    }
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        chunk[..8].copy_from_slice(&lba.to_le_bytes());
        chunk[8..16].copy_from_slice(&(version ^ i as u64).to_le_bytes());
    }
}

#[derive(Debug, Clone, Copy)]
struct Inflight {
    slot: usize,
    write: bool,
    lba: u64,
    blocks: u32,
    version: u64,
    submitted: Instant,
}

/// The outcome of a workload run.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub completed: u64,
    pub ok: u64,
    pub failed: HashMap<ErrorKind, u64>,
    pub reads_verified: u64,
    pub end: Instant,
    /// When the last failed I/O completed.
    pub last_failure: Option<Instant>,
    /// The longest time a failed I/O took from submission to completion.
    pub max_failed_latency: Duration,
    /// I/Os that completed well after the last failed one.
    pub ok_after_last_failure: u64,
}

impl Outcome {
    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }
}

/// Runs `total` I/Os (half reads, half writes, 1..=8 blocks, over the whole disk, `QD`
/// outstanding with 50 us think time) on `dev` from `start`, verifying every block read
/// against what was written, and every completion exactly once. Panics on any violation.
pub fn run_workload<D: BlockDevice>(
    dev: &mut ExactlyOnce<D, 128>,
    memory: &mut MemoryRegions<'_, 2>,
    start: Instant,
    total: u64,
    seed: u64,
) -> Outcome {
    run_workload_with(dev, memory, start, total, seed, Duration::from_micros(50))
}

/// [`run_workload`] with `think` between an I/O's completion and the next on its slot.
pub fn run_workload_with<D: BlockDevice>(
    dev: &mut ExactlyOnce<D, 128>,
    memory: &mut MemoryRegions<'_, 2>,
    start: Instant,
    total: u64,
    seed: u64,
    think: Duration,
) -> Outcome {
    let mut rng = seeded(seed ^ 0xA5A5);
    let mut model: Vec<BlockModel> = (0..DISK_BLOCKS)
        .map(|_| BlockModel { possible: vec![0] })
        .collect();
    let mut locked: HashSet<u64> = HashSet::new();
    let mut inflight: HashMap<u64, Inflight> = HashMap::new();
    let mut slot_ready_at = [start; QD];
    let mut slot_busy = [false; QD];
    let mut next_version = 1u64;
    let mut next_tag = 1u64;
    let mut issued = 0u64;
    let mut out = Outcome::default();
    let mut now = start;
    let mut buf = vec![0u8; BUFFER_LEN];
    for _round in 0..50_000_000u64 {
        // Issue.
        for slot in 0..QD {
            if issued >= total || slot_busy[slot] || slot_ready_at[slot] > now {
                continue;
            }
            let blocks = 1 + rng.random_range(0..u64::from(MAX_BLOCKS_PER_IO)) as u32;
            let lba = rng.random_range(0..DISK_BLOCKS - u64::from(blocks));
            if (lba..lba + u64::from(blocks)).any(|b| locked.contains(&b)) {
                continue;
            }
            let write = rng.random_range(0..2) == 0;
            let addr = MemAddr(BUFFERS.0 + (slot * BUFFER_LEN) as u64);
            let len = blocks as usize * BLOCK;
            let version = next_version;
            next_version += 1;
            if write {
                for b in 0..blocks as usize {
                    stamp(
                        lba + b as u64,
                        version,
                        &mut buf[b * BLOCK..(b + 1) * BLOCK],
                    );
                }
                memory.write(addr, &buf[..len]).unwrap();
            } else {
                memory.write(addr, &vec![0xEE; len]).unwrap();
            }
            let sg = SgList::single(addr, len as u32).unwrap();
            let tag = Tag(next_tag);
            next_tag += 1;
            let request = if write {
                BlockRequest::write(tag, Lba(lba), BlockCount(blocks), sg)
            } else {
                BlockRequest::read(tag, Lba(lba), BlockCount(blocks), sg)
            };
            match dev.submit(now, request) {
                Ok(()) => {}
                Err(e) => panic!("submit refused: {:?}", e.kind),
            }
            issued += 1;
            slot_busy[slot] = true;
            for b in lba..lba + u64::from(blocks) {
                locked.insert(b);
            }
            inflight.insert(
                tag.0,
                Inflight {
                    slot,
                    write,
                    lba,
                    blocks,
                    version,
                    submitted: now,
                },
            );
        }
        // Poll.
        let mut completions = Vec::new();
        let next = dev.poll(now, memory, &mut |c| completions.push(c));
        assert!(
            dev.violations().is_empty(),
            "exactly-once violated: {:?}",
            dev.violations()
        );
        let progressed = !completions.is_empty();
        for c in completions {
            let io = inflight
                .remove(&c.tag.0)
                .unwrap_or_else(|| panic!("completion of unknown tag {:?}", c.tag));
            out.completed += 1;
            slot_busy[io.slot] = false;
            slot_ready_at[io.slot] = now.saturating_add(think);
            for b in io.lba..io.lba + u64::from(io.blocks) {
                locked.remove(&b);
            }
            let addr = MemAddr(BUFFERS.0 + (io.slot * BUFFER_LEN) as u64);
            let len = io.blocks as usize * BLOCK;
            match c.result {
                Ok(()) => {
                    out.ok += 1;
                    out.ok_after_last_failure += 1;
                    if io.write {
                        for b in 0..u64::from(io.blocks) {
                            model[(io.lba + b) as usize].possible = vec![io.version];
                        }
                    } else {
                        memory.read(addr, &mut buf[..len]).unwrap();
                        let mut expect = vec![0u8; BLOCK];
                        for b in 0..io.blocks as usize {
                            let lba = io.lba + b as u64;
                            let got = &buf[b * BLOCK..(b + 1) * BLOCK];
                            let m = &mut model[lba as usize];
                            let found = m.possible.iter().copied().find(|v| {
                                stamp(lba, *v, &mut expect);
                                expect == got
                            });
                            match found {
                                Some(v) => m.possible = vec![v],
                                None => panic!(
                                    "block {lba} corrupted at {now:?}: expected one of {:?}, got {:02x?}",
                                    m.possible,
                                    &got[..16]
                                ),
                            }
                        }
                        out.reads_verified += 1;
                    }
                }
                Err(e) => {
                    *out.failed.entry(e.kind()).or_default() += 1;
                    out.last_failure = Some(now);
                    out.ok_after_last_failure = 0;
                    out.max_failed_latency = out
                        .max_failed_latency
                        .max(Duration::from_nanos(now.0 - io.submitted.0));
                    if io.write {
                        // A failed write leaves each block old or new.
                        for b in 0..u64::from(io.blocks) {
                            let m = &mut model[(io.lba + b) as usize];
                            if !m.possible.contains(&io.version) {
                                m.possible.push(io.version);
                            }
                        }
                    }
                }
            }
        }
        if issued >= total && inflight.is_empty() {
            out.end = now;
            assert_eq!(dev.outstanding(), 0);
            return out;
        }
        if progressed || next == Some(now) {
            continue;
        }
        // Advance simulated time to the next event: the device's timer or a think time.
        let think = (0..QD)
            .filter(|&s| !slot_busy[s] && issued < total)
            .map(|s| slot_ready_at[s])
            .filter(|t| *t > now)
            .min();
        let wake = match (next, think) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => {
                if inflight.is_empty() {
                    // Slots blocked by locked ranges only: step a little.
                    now.saturating_add(Duration::from_micros(10))
                } else {
                    panic!(
                        "stalled at {now:?} with {} I/Os outstanding: an I/O was lost",
                        inflight.len()
                    );
                }
            }
        };
        now = wake.max(now);
        if wake <= now && !progressed {
            now = now.saturating_add(Duration::from_micros(1));
        }
    }
    panic!("workload did not finish");
}

/// Memory for the tests: scratch and the workload's buffers.
pub fn memory_regions<'m>(scratch: &'m mut [u8], buffers: &'m mut [u8]) -> MemoryRegions<'m, 2> {
    let mut m = MemoryRegions::<2>::new();
    m.add(SCRATCH, scratch).unwrap();
    m.add(BUFFERS, buffers).unwrap();
    m
}

/// Schedules `faults` (times relative to `start`).
/// The owner's two links (ports 1 and 2, both to controller 0) fail at `down_ms` with an error
/// and, with `up_ms`, come back then.
pub fn owner_links_down(down_ms: u64, up_ms: Option<u64>) -> Vec<(u64, Fault)> {
    let mut faults: Vec<(u64, Fault)> = [1, 2]
        .map(|port| {
            (
                down_ms * MS,
                Fault::LinkDown {
                    port,
                    failure: LinkFailure::Error,
                },
            )
        })
        .into();
    if let Some(up) = up_ms {
        faults.extend([1, 2].map(|port| (up * MS, Fault::LinkUp { port })));
    }
    faults
}

pub fn schedule(array: &mut Sim<'_>, start: Instant, faults: &[(u64, Fault)]) {
    for (at, fault) in faults {
        array.schedule(Instant(start.0 + at), *fault).unwrap();
    }
}

pub fn world(n: u32) -> WorldId {
    WorldId(n)
}

/// Polls `dev` with nothing submitted from `from` until `until`, following its timers.
pub fn idle<D: BlockDevice>(
    dev: &mut ExactlyOnce<D, 128>,
    memory: &mut MemoryRegions<'_, 2>,
    from: Instant,
    until: Instant,
) {
    let mut now = from;
    for _ in 0..1_000_000 {
        let next = dev.poll(now, memory, &mut |c| panic!("unexpected completion {c:?}"));
        match next {
            Some(t) if t < until => now = t.max(Instant(now.0 + 1)),
            _ => return,
        }
    }
}

/// One 512-byte read of block 0 at `now`, driven to completion.
pub fn one_read<D: BlockDevice>(
    dev: &mut ExactlyOnce<D, 128>,
    memory: &mut MemoryRegions<'_, 2>,
    now: Instant,
) -> Result<(), block::BlockError> {
    let sg = SgList::single(BUFFERS, BLOCK as u32).unwrap();
    let request = BlockRequest::read(Tag(u64::MAX - 1), Lba(0), BlockCount(1), sg);
    block::run_to_completion(dev, memory, now, request, 100_000, &mut |_| {})
        .expect("completes")
        .completion
        .result
}

/// Whether `tag` is the NMP's activation command's (bits 63 and 62, not 61).
pub fn is_activation_tag(tag: Tag) -> bool {
    tag.0 >> 61 == 0b110
}

/// A transport between the NMP and the array that answers the next activation commands from
/// a script (`None`: pass to the array), and records when each activation command was sent
/// and how many were ever outstanding at once.
pub struct Scripted<T> {
    pub inner: T,
    /// Answers for the next activation commands, in order; once empty, all pass.
    pub script: std::collections::VecDeque<Option<scsi::CommandCompletion>>,
    /// How long a scripted answer takes.
    pub latency: Duration,
    /// When each activation command was sent, and its first CDB byte.
    pub sent: Vec<(Instant, u8)>,
    /// Activation commands outstanding now, and the most ever.
    pub outstanding: usize,
    pub max_outstanding: usize,
    held: Vec<(Instant, scsi::CommandCompletion)>,
}

impl<T> Scripted<T> {
    pub fn new(inner: T, script: Vec<Option<scsi::CommandCompletion>>) -> Self {
        Self {
            inner,
            script: script.into(),
            latency: Duration::from_micros(250),
            sent: Vec::new(),
            outstanding: 0,
            max_outstanding: 0,
            held: Vec::new(),
        }
    }
}

impl<T: scsi::Transport> scsi::Transport for Scripted<T> {
    fn submit(
        &mut self,
        now: Instant,
        command: scsi::Command,
    ) -> Result<(), scsi::TransportSubmitError> {
        if !is_activation_tag(command.tag) {
            return self.inner.submit(now, command);
        }
        let opcode = command.cdb.as_bytes().first().copied().unwrap_or(0);
        match self.script.front().cloned() {
            Some(Some(mut answer)) => {
                answer.tag = command.tag;
                self.script.pop_front();
                self.held.push((now.saturating_add(self.latency), answer));
            }
            _ => {
                self.inner.submit(now, command)?;
                self.script.pop_front();
            }
        }
        self.sent.push((now, opcode));
        self.outstanding += 1;
        self.max_outstanding = self.max_outstanding.max(self.outstanding);
        Ok(())
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(scsi::CommandCompletion),
    ) -> Option<Instant> {
        let outstanding = &mut self.outstanding;
        let mut next = self.inner.poll(now, memory, &mut |c| {
            if is_activation_tag(c.tag) {
                *outstanding -= 1;
            }
            done(c)
        });
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].0 <= now {
                let (_, c) = self.held.remove(i);
                self.outstanding -= 1;
                done(c);
            } else {
                i += 1;
            }
        }
        for (at, _) in &self.held {
            next = Some(next.map_or(*at, |n| n.min(*at)));
        }
        next
    }
}

/// A service delivery failure (the path died under the command).
pub fn delivery_failure() -> scsi::CommandCompletion {
    scsi::CommandCompletion {
        service: scsi::ServiceResponse::ServiceDeliveryFailure,
        ..scsi::CommandCompletion::good(Tag(0), scsi::Residual::None)
    }
}

/// CHECK CONDITION with `key` and `asc`.
pub fn check_condition(key: scsi::SenseKey, asc: scsi::Asc) -> scsi::CommandCompletion {
    scsi::CommandCompletion::check_condition(
        Tag(0),
        scsi::SenseRepr::new(key, asc).to_buf(scsi::SenseFormat::Fixed),
    )
}

/// What a test SATP for an active/passive array decides about a completion: `DefaultAa`'s
/// evaluation, except that a failover with no usable path left asks for an activation (the
/// trespass or STPG the SATP sends in `activation`).
pub fn evaluate_or_activate(
    inner: &mut DefaultAa,
    now: Instant,
    path: PathId,
    paths: &mut [Path],
    completion: &CommandCompletion,
) -> SatpAction {
    match inner.evaluate(now, path, paths, completion) {
        SatpAction::Failover { .. } if !paths.iter().any(|p| p.state.is_usable()) => {
            SatpAction::Activate
        }
        other => other,
    }
}

/// An SATP that trespasses an active/passive LUN the simplest way: START STOP UNIT on the first
/// standby path when no usable path is left, as often as it is asked. It counts its
/// activations and records every outcome the NMP reports; with `default_done` it keeps what
/// the trait's default `activation_done` does instead (ignores failures, records nothing).
pub struct StartStopTrespass {
    inner: DefaultAa,
    default_done: bool,
    pub activations: u32,
    pub outcomes: Vec<(Instant, PathId, ActivationOutcome)>,
}

impl StartStopTrespass {
    pub fn new(default_done: bool) -> Self {
        Self {
            inner: DefaultAa::default(),
            default_done,
            activations: 0,
            outcomes: Vec::new(),
        }
    }
}

impl Satp for StartStopTrespass {
    fn name(&self) -> &'static str {
        "TEST_SATP_AP_START_STOP"
    }

    fn evaluate(
        &mut self,
        now: Instant,
        path: PathId,
        paths: &mut [Path],
        completion: &CommandCompletion,
    ) -> SatpAction {
        evaluate_or_activate(&mut self.inner, now, path, paths, completion)
    }

    fn activation(&mut self, _now: Instant, paths: &[Path]) -> Option<Activation> {
        let i = paths.iter().position(|p| p.state == PathState::Standby)?;
        self.activations += 1;
        let cdb = CdbBytes::from_repr(&CdbRepr::StartStopUnit {
            immed: false,
            power_condition_modifier: 0,
            power_condition: 0,
            no_flush: false,
            loej: false,
            start: true,
        });
        Some(Activation {
            path: PathId(i as u16),
            cdb,
            data: Default::default(),
        })
    }

    fn activation_done(
        &mut self,
        now: Instant,
        activation: &Activation,
        paths: &mut [Path],
        outcome: ActivationOutcome,
    ) {
        if !self.default_done {
            self.outcomes.push((now, activation.path, outcome));
        }
        // What the trait's default does.
        if outcome.is_good() {
            self.path_ok(now, activation.path, paths);
        }
    }
}
