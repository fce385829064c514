//! Discovery, naming, Disk.MaxLUN, claim rules, and path activation by an SATP.

mod common;

use std::time::Duration;

use array::{Array, ArrayConfig, Fault, Personality};
use block::{
    BlockCount, BlockDevice, BlockRequest, Instant, Lba, MemAddr, MemoryRegions, RamDisk, SgList,
    Tag,
};
use psa::{
    Activation, Adapter, ClaimRule, DefaultAa, MostRecentlyUsed, NmpConfig, NmpDevice, Path,
    PathId, PathState, Satp, SatpAction, ScanConfig, Target,
};
use scsi::cdb::CdbRepr;
use scsi::{CdbBytes, CommandCompletion, InitiatorId, LunConfig, NaaId};

type Sim<'a> = Array<RamDisk<'a, 16>, 4, 4, 32, 8>;

const SCRATCH: MemAddr = MemAddr(0x10_0000);
const PAGE: MemAddr = MemAddr(0x20_0000);

fn scan_config<'a>(adapters: &'a [Adapter<'a>], max_lun: u16) -> ScanConfig<'a> {
    ScanConfig {
        adapters,
        max_lun,
        scratch: SCRATCH,
        max_polls: 256,
    }
}

#[test]
fn luns_are_grouped_by_identity_named_and_limited_by_max_lun() {
    let mut s0 = vec![0u8; 64 * 512];
    let mut s1 = vec![0u8; 128 * 512];
    let mut s5 = vec![0u8; 64 * 512];
    let personality = Personality::Alua {
        explicit: false,
        non_owner: scsi::AccessState::ActiveNonOptimized,
    };
    let mut a: Sim<'_> = Array::new(ArrayConfig::new(personality));
    for (id, c) in [(1, 0), (2, 1)] {
        a.add_port(id, c).unwrap();
    }
    let luns: [(&mut Vec<u8>, u64, &str, &str); 3] = [
        (&mut s0, 0, "ACME", "FAST"),
        (&mut s1, 1, "ACME", "SLOW"),
        (&mut s5, 5, "OTHER", "DISK"),
    ];
    for (storage, lun, vendor, model) in luns {
        let disk = RamDisk::new(storage, 512).unwrap();
        let id = LunConfig::new(
            vendor,
            model,
            "1",
            "S",
            NaaId::registered(0x1405, 100 + lun),
        )
        .with_lun(lun);
        a.add_lun(disk, id, (lun % 2) as u8).unwrap();
    }
    let mut scratch = vec![0u8; 2048];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(SCRATCH, &mut scratch).unwrap();
    let targets = [Target { number: 0, port: 1 }, Target { number: 1, port: 2 }];
    let adapters = [
        Adapter {
            number: 2,
            initiator: InitiatorId(7),
            targets: &targets,
        },
        Adapter {
            number: 3,
            initiator: InitiatorId(8),
            targets: &targets,
        },
    ];
    let (all, _) = psa::scan::<_, 4, 8>(
        &mut a,
        &mut memory,
        Instant(0),
        &scan_config(&adapters, 256),
    )
    .unwrap();
    assert_eq!(all.len(), 3);
    let (devices, _) =
        psa::scan::<_, 4, 8>(&mut a, &mut memory, Instant(0), &scan_config(&adapters, 2)).unwrap();
    assert_eq!(devices.len(), 2, "Disk.MaxLUN 2 hides LUN 5");
    let d1 = &devices[1];
    assert_eq!(d1.name.as_str(), "naa.5001405000000065");
    assert_eq!(d1.geometry.block_count, 128);
    assert_eq!(d1.geometry.block_size, 512);
    let names: Vec<String> = d1.paths.iter().map(|p| p.name.to_string()).collect();
    assert_eq!(
        names,
        [
            "vmhba2:C0:T0:L1",
            "vmhba2:C0:T1:L1",
            "vmhba3:C0:T0:L1",
            "vmhba3:C0:T1:L1"
        ]
    );
    // LUN 1 is owned by controller 1: its port-2 paths are optimized.
    let states: Vec<PathState> = d1.paths.iter().map(|p| p.state).collect();
    assert_eq!(
        states,
        [
            PathState::ActiveUnoptimized,
            PathState::Active,
            PathState::ActiveUnoptimized,
            PathState::Active
        ]
    );
    assert_eq!(d1.vendor_str(), "ACME");
    assert_eq!(d1.model_str(), "SLOW");
    assert_ne!(d1.tpgs, 0);

    let rules = [
        ClaimRule {
            vendor: Some("ACME"),
            model: Some("FAST"),
            alua: None,
            satp: "VMW_SATP_ALUA",
            psp: "VMW_PSP_RR",
            psp_options: Some("iops=1"),
        },
        ClaimRule {
            vendor: Some("OTHER"),
            model: None,
            alua: None,
            satp: "VMW_SATP_LOCAL",
            psp: "VMW_PSP_FIXED",
            psp_options: None,
        },
    ];
    let c0 = psa::claim(&rules, &all[0]);
    assert_eq!(
        (c0.satp, c0.psp, c0.psp_options, c0.rule),
        ("VMW_SATP_ALUA", "VMW_PSP_RR", Some("iops=1"), Some(0))
    );
    let c1 = psa::claim(&rules, &all[1]);
    assert_eq!(
        (c1.satp, c1.psp, c1.psp_options, c1.rule),
        ("VMW_SATP_ALUA", "VMW_PSP_MRU", None, None)
    );
    let c5 = psa::claim(&rules, &all[2]);
    assert_eq!(
        (c5.satp, c5.psp_options, c5.rule),
        ("VMW_SATP_LOCAL", None, Some(1))
    );
}

#[test]
fn an_satp_activation_trespasses_an_active_passive_lun() {
    let mut storage = vec![0u8; 64 * 512];
    let personality = Personality::ActivePassive {
        implicit_trespass: false,
    };
    let config = ArrayConfig::new(personality).with_latency(Duration::from_micros(100));
    let mut a: Sim<'_> = Array::new(config);
    a.add_port(1, 0).unwrap();
    a.add_port(2, 1).unwrap();
    let disk = RamDisk::new(&mut storage, 512).unwrap();
    a.add_lun(
        disk,
        LunConfig::new("AP", "ARRAY", "1", "S", NaaId::registered(1, 2)),
        0,
    )
    .unwrap();
    let mut scratch = vec![0u8; 2048];
    let mut page = vec![0u8; 4096];
    let mut memory = MemoryRegions::<2>::new();
    memory.add(SCRATCH, &mut scratch).unwrap();
    memory.add(PAGE, &mut page).unwrap();
    let targets = [Target { number: 0, port: 1 }, Target { number: 1, port: 2 }];
    let adapters = [Adapter {
        number: 1,
        initiator: InitiatorId(1),
        targets: &targets,
    }];
    let (devices, now) = psa::scan::<_, 1, 4>(
        &mut a,
        &mut memory,
        Instant(0),
        &scan_config(&adapters, 256),
    )
    .unwrap();
    let satp = common::StartStopTrespass::new(false);
    let mut nmp: NmpDevice<_, _, _, 4, 8> = NmpDevice::new(
        &mut a,
        &devices[0],
        satp,
        MostRecentlyUsed::new(),
        NmpConfig::default(),
    )
    .unwrap();
    // The array trespasses the LUN to controller 1: the first I/O finds path 0 passive
    // (NOT READY 02/04/03) and fails over to path 1.
    nmp.transport_mut().apply(
        now,
        Fault::Trespass {
            lun: 0,
            controller: 1,
        },
    );
    let sg = SgList::single(PAGE, 512).unwrap();
    let r = block::run_to_completion(
        &mut nmp,
        &mut memory,
        now,
        BlockRequest::write(Tag(1), Lba(0), BlockCount(1), sg.clone()),
        10_000,
        &mut |_| {},
    )
    .unwrap();
    assert!(r.completion.is_ok());
    // Path 0 (controller 0) is now standby, path 1 active.
    assert_eq!(nmp.paths()[0].state, PathState::Standby);
    assert_eq!(nmp.paths()[1].state, PathState::Active);
    // Controller 1's port goes down; the only path left is the standby one: the SATP
    // activates it with START STOP UNIT, which trespasses the LUN back.
    nmp.transport_mut().apply(
        r.now,
        Fault::LinkDown {
            port: 2,
            failure: array::LinkFailure::Error,
        },
    );
    let r = block::run_to_completion(
        &mut nmp,
        &mut memory,
        r.now,
        BlockRequest::read(Tag(2), Lba(0), BlockCount(1), sg),
        10_000,
        &mut |_| {},
    )
    .unwrap();
    assert!(r.completion.is_ok(), "{:?}", r.completion);
    assert_eq!(nmp.satp().activations, 1);
    assert_eq!(nmp.paths()[0].state, PathState::Active);
    assert_eq!(nmp.paths()[1].state, PathState::Dead);
    assert_eq!(nmp.transport().owner(0), Some(0));
    assert!(nmp.geometry().block_count == 64);
}

#[test]
fn capacity_is_read_on_an_active_path_when_the_first_is_passive() {
    let mut storage = vec![0u8; 96 * 512];
    let personality = Personality::ActivePassive {
        implicit_trespass: false,
    };
    let mut a: Sim<'_> = Array::new(ArrayConfig::new(personality));
    a.add_port(1, 0).unwrap();
    a.add_port(2, 1).unwrap();
    let disk = RamDisk::new(&mut storage, 512).unwrap();
    // Owned by controller 1: the first path scanned (port 1) is passive.
    a.add_lun(
        disk,
        LunConfig::new("AP", "ARRAY", "1", "S", NaaId::registered(1, 3)),
        1,
    )
    .unwrap();
    let mut scratch = vec![0u8; 2048];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(SCRATCH, &mut scratch).unwrap();
    let targets = [Target { number: 0, port: 1 }, Target { number: 1, port: 2 }];
    let adapters = [Adapter {
        number: 1,
        initiator: InitiatorId(1),
        targets: &targets,
    }];
    let (devices, _) = psa::scan::<_, 1, 4>(
        &mut a,
        &mut memory,
        Instant(0),
        &scan_config(&adapters, 256),
    )
    .unwrap();
    assert_eq!(devices[0].paths.len(), 2);
    assert_eq!(devices[0].geometry.block_count, 96);
}

/// An SATP that, when no usable path is left, makes the group of the first standby path
/// active/optimized with SET TARGET PORT GROUPS (explicit ALUA, parameter data through the
/// device's scratch buffer).
struct ExplicitAlua {
    inner: DefaultAa,
}

impl Satp for ExplicitAlua {
    fn name(&self) -> &'static str {
        "TEST_SATP_EXPLICIT_ALUA"
    }

    fn evaluate(
        &mut self,
        now: Instant,
        path: PathId,
        paths: &mut [Path],
        completion: &CommandCompletion,
    ) -> SatpAction {
        common::evaluate_or_activate(&mut self.inner, now, path, paths, completion)
    }

    fn activation(&mut self, _now: Instant, paths: &[Path]) -> Option<Activation> {
        let (i, p) = paths
            .iter()
            .enumerate()
            .find(|(_, p)| p.state == PathState::Standby)?;
        let group = p.group?.to_be_bytes();
        let mut data = heapless::Vec::new();
        data.extend_from_slice(&[0, 0, 0, 0, 0x00, 0, group[0], group[1]])
            .ok()?;
        let cdb = CdbBytes::from_repr(&CdbRepr::SetTargetPortGroups {
            parameter_list_length: 8,
        });
        Some(Activation {
            path: PathId(i as u16),
            cdb,
            data,
        })
    }
}

#[test]
fn an_explicit_alua_activation_sends_set_target_port_groups() {
    let mut storage = vec![0u8; 64 * 512];
    let personality = Personality::Alua {
        explicit: true,
        non_owner: scsi::AccessState::Standby,
    };
    let mut a: Sim<'_> = Array::new(ArrayConfig::new(personality));
    a.add_port(1, 0).unwrap();
    a.add_port(2, 1).unwrap();
    let disk = RamDisk::new(&mut storage, 512).unwrap();
    a.add_lun(
        disk,
        LunConfig::new("AL", "UA", "1", "S", NaaId::registered(1, 4)),
        0,
    )
    .unwrap();
    let mut scratch = vec![0u8; 2048];
    let mut page = vec![0u8; 4096];
    let mut activation = vec![0u8; 64];
    let mut memory = MemoryRegions::<3>::new();
    memory.add(SCRATCH, &mut scratch).unwrap();
    memory.add(PAGE, &mut page).unwrap();
    memory.add(MemAddr(0x30_0000), &mut activation).unwrap();
    let targets = [Target { number: 0, port: 1 }, Target { number: 1, port: 2 }];
    let adapters = [Adapter {
        number: 1,
        initiator: InitiatorId(1),
        targets: &targets,
    }];
    let (devices, now) = psa::scan::<_, 1, 4>(
        &mut a,
        &mut memory,
        Instant(0),
        &scan_config(&adapters, 256),
    )
    .unwrap();
    assert_eq!(devices[0].paths[1].state, PathState::Standby);
    let config = NmpConfig {
        scratch: Some(MemAddr(0x30_0000)),
        ..NmpConfig::default()
    };
    let satp = ExplicitAlua {
        inner: DefaultAa::default(),
    };
    let mut nmp: NmpDevice<_, _, _, 4, 8> =
        NmpDevice::new(&mut a, &devices[0], satp, MostRecentlyUsed::new(), config).unwrap();
    nmp.transport_mut().apply(
        now,
        Fault::LinkDown {
            port: 1,
            failure: array::LinkFailure::Error,
        },
    );
    let sg = SgList::single(PAGE, 512).unwrap();
    let r = block::run_to_completion(
        &mut nmp,
        &mut memory,
        now,
        BlockRequest::write(Tag(1), Lba(3), BlockCount(1), sg),
        10_000,
        &mut |_| {},
    )
    .unwrap();
    assert!(r.completion.is_ok(), "{:?}", r.completion);
    // The default `path_ok` makes the activated path usable; an ALUA SATP would re-read the
    // groups to learn that it is optimized now.
    assert!(nmp.paths()[1].state.is_usable());
    let groups = &nmp.transport().lun(0).unwrap().config().port_groups;
    assert_eq!(groups[1].id, 2);
    assert_eq!(groups[1].state, scsi::AccessState::ActiveOptimized);
}

/// An SATP that re-reads the target port groups every 2 s through its own commands.
struct GroupReader {
    inner: DefaultAa,
    next: Instant,
    reads: Vec<Vec<(u16, u8)>>,
}

impl Satp for GroupReader {
    fn name(&self) -> &'static str {
        "TEST_SATP_RTPG"
    }

    fn evaluate(
        &mut self,
        now: Instant,
        path: PathId,
        paths: &mut [Path],
        completion: &CommandCompletion,
    ) -> SatpAction {
        self.inner.evaluate(now, path, paths, completion)
    }

    fn poll_command(&mut self, now: Instant, _paths: &[Path]) -> Option<psa::SatpCommand> {
        if now < self.next {
            return None;
        }
        self.next = Instant(now.0 + 2_000_000_000);
        Some(psa::SatpCommand {
            path: PathId(0),
            cdb: CdbBytes::from_repr(&CdbRepr::ReportTargetPortGroups {
                extended: false,
                allocation_length: 256,
            }),
            data_out: heapless::Vec::new(),
            data_in_len: 256,
        })
    }

    fn command_done(
        &mut self,
        _now: Instant,
        _command: &psa::SatpCommand,
        paths: &mut [Path],
        completion: &CommandCompletion,
        data_in: &[u8],
    ) {
        if !completion.is_good() {
            return;
        }
        let (_, groups) = scsi::response::parse_target_port_groups(data_in).unwrap();
        let groups: Vec<(u16, u8)> = groups.flatten().map(|g| (g.id, g.state_code)).collect();
        for p in paths.iter_mut() {
            if let Some(&(_, code)) = groups.iter().find(|(id, _)| Some(*id) == p.group) {
                p.state = PathState::from_access_state(scsi::AccessState::from_code(code).unwrap());
            }
        }
        self.reads.push(groups);
    }

    fn next_event(&self) -> Option<Instant> {
        Some(self.next)
    }
}

#[test]
fn an_satp_reads_target_port_groups_through_its_own_commands() {
    let mut storage = vec![0u8; 64 * 512];
    let personality = Personality::Alua {
        explicit: false,
        non_owner: scsi::AccessState::ActiveNonOptimized,
    };
    let mut a: Sim<'_> = Array::new(ArrayConfig::new(personality));
    a.add_port(1, 0).unwrap();
    a.add_port(2, 1).unwrap();
    let disk = RamDisk::new(&mut storage, 512).unwrap();
    a.add_lun(
        disk,
        LunConfig::new("AL", "UA", "1", "S", NaaId::registered(1, 5)),
        0,
    )
    .unwrap();
    let mut scratch = vec![0u8; 2048];
    let mut page = vec![0u8; 4096];
    let mut satp_buf = vec![0u8; psa::SATP_DATA_MAX];
    let mut memory = MemoryRegions::<3>::new();
    memory.add(SCRATCH, &mut scratch).unwrap();
    memory.add(PAGE, &mut page).unwrap();
    memory.add(MemAddr(0x30_0000), &mut satp_buf).unwrap();
    let targets = [Target { number: 0, port: 1 }, Target { number: 1, port: 2 }];
    let adapters = [Adapter {
        number: 1,
        initiator: InitiatorId(1),
        targets: &targets,
    }];
    let (devices, now) = psa::scan::<_, 1, 4>(
        &mut a,
        &mut memory,
        Instant(0),
        &scan_config(&adapters, 256),
    )
    .unwrap();
    let config = NmpConfig {
        scratch: Some(MemAddr(0x30_0000)),
        ..NmpConfig::default()
    };
    let satp = GroupReader {
        inner: DefaultAa::default(),
        next: now,
        reads: Vec::new(),
    };
    let mut nmp: NmpDevice<_, _, _, 4, 8> =
        NmpDevice::new(&mut a, &devices[0], satp, MostRecentlyUsed::new(), config).unwrap();
    // The array swaps the groups at 1 s (group 1 non-optimized, group 2 optimized).
    nmp.transport_mut()
        .schedule(
            Instant(now.0 + 1_000_000_000),
            Fault::Trespass {
                lun: 0,
                controller: 1,
            },
        )
        .unwrap();
    // Idle for 5 s, following the device's timers (the SATP's 2 s reads).
    let mut t = now;
    for _ in 0..100 {
        match nmp.poll(t, &mut memory, &mut |c| panic!("{c:?}")) {
            Some(next) if next.0 < now.0 + 5_000_000_000 => t = next.max(Instant(t.0 + 1)),
            _ => break,
        }
    }
    let reads = &nmp.satp().reads;
    // The read at 2 s meets the ASYMMETRIC ACCESS STATE CHANGED unit attention; 0 s and 4 s
    // succeed.
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert_eq!(reads[0], vec![(1, 0), (2, 1)]);
    assert_eq!(reads.last().unwrap(), &vec![(1, 1), (2, 0)]);
    assert_eq!(nmp.paths()[0].state, PathState::ActiveUnoptimized);
    assert_eq!(nmp.paths()[1].state, PathState::Active);
}

#[test]
fn submit_refuses_only_for_back_pressure_and_duplicate_tags() {
    let mut storage = vec![0u8; 64 * 512];
    let mut a: Sim<'_> = Array::new(ArrayConfig::new(Personality::ActiveActive));
    a.add_port(1, 0).unwrap();
    let disk = RamDisk::new(&mut storage, 512).unwrap();
    a.add_lun(
        disk,
        LunConfig::new("AA", "X", "1", "S", NaaId::registered(1, 6)),
        0,
    )
    .unwrap();
    let mut scratch = vec![0u8; 2048];
    let mut page = vec![0u8; 4096];
    let mut memory = MemoryRegions::<2>::new();
    memory.add(SCRATCH, &mut scratch).unwrap();
    memory.add(PAGE, &mut page).unwrap();
    let targets = [Target { number: 0, port: 1 }];
    let adapters = [Adapter {
        number: 1,
        initiator: InitiatorId(1),
        targets: &targets,
    }];
    let (devices, now) = psa::scan::<_, 1, 4>(
        &mut a,
        &mut memory,
        Instant(0),
        &scan_config(&adapters, 256),
    )
    .unwrap();
    let mut nmp: NmpDevice<_, _, _, 4, 4> = NmpDevice::new(
        &mut a,
        &devices[0],
        DefaultAa::default(),
        MostRecentlyUsed::new(),
        NmpConfig::default(),
    )
    .unwrap();
    let sg = SgList::single(PAGE, 512).unwrap();
    let read = |t| BlockRequest::read(Tag(t), Lba(0), BlockCount(1), sg.clone());
    for t in 0..4 {
        nmp.submit(now, read(t)).unwrap();
    }
    let e = nmp.submit(now, read(1)).unwrap_err();
    assert_eq!(e.kind, block::SubmitErrorKind::DuplicateTag);
    let e = nmp.submit(now, read(9)).unwrap_err();
    assert_eq!(e.kind, block::SubmitErrorKind::QueueFull);
    assert_eq!(e.request, read(9), "the request is handed back");
    // A bad request is accepted and completes with an error; an unknown world likewise.
    let mut done = Vec::new();
    nmp.poll(now, &mut memory, &mut |c| done.push(c));
    assert_eq!(done.len(), 4);
    nmp.submit(
        now,
        BlockRequest::read(Tag(20), Lba(64), BlockCount(1), sg.clone()),
    )
    .unwrap();
    nmp.submit_as(psa::WorldId(77), now, read(21)).unwrap();
    done.clear();
    nmp.poll(now, &mut memory, &mut |c| done.push(c));
    let kinds: Vec<_> = done.iter().map(|c| c.result.unwrap_err().kind()).collect();
    assert_eq!(
        kinds,
        [
            block::ErrorKind::OutOfRange,
            block::ErrorKind::InvalidRequest
        ]
    );
    assert_eq!(nmp.outstanding(), 0);
}
