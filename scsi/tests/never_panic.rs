//! The parser and executor never panic, and every accepted command completes exactly once,
//! whatever the CDB bytes, allocation lengths, data directions and SG lists, on a device that
//! injects faults.

use std::time::Duration;

use block::testing::{ExactlyOnce, FaultConfig, FaultInjector};
use block::{ErrorKind, Instant, MemAddr, MemoryRegions, RamDisk, Segment, SgList, Tag};
use proptest::prelude::*;
use scsi::{
    CdbBytes, Command, DataDirection, InitiatorId, Lun, LunConfig, NaaId, Nexus, Sense, SenseRepr,
    Status, Transport,
};

/// 1000 cases by default, 200 000 under `SOAK=1` (`cargo xtask soak`); `SCSI_FUZZ_CASES=N`
/// chooses any number (the fuzz entry point).
fn cases() -> u32 {
    let default = if std::env::var_os("SOAK").is_some() {
        200_000
    } else {
        1000
    };
    std::env::var("SCSI_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const BASE: u64 = 0x10_0000;
const MEM_LEN: usize = 64 * 1024;

fn cdb_bytes() -> impl Strategy<Value = Vec<u8>> {
    // Mostly CDBs of known commands with only their usage bits set (so that deep paths are
    // reached), optionally with small fields; sometimes any bytes at all.
    let known = (
        0..scsi::COMMANDS.len(),
        proptest::collection::vec(any::<u8>(), 16),
        any::<bool>(),
    )
        .prop_map(|(i, raw, small)| {
            let spec = &scsi::COMMANDS[i];
            let len = usize::from(spec.cdb_len);
            let mut v: Vec<u8> = (0..len).map(|j| raw[j] & spec.usage[j]).collect();
            v[0] = spec.opcode;
            if let Some(sa) = spec.service_action {
                v[1] = (v[1] & !0x1F) | sa;
            }
            if small {
                for b in v.iter_mut().take(len - 3).skip(2) {
                    *b &= 0x01;
                }
            }
            v
        });
    let arbitrary = proptest::collection::vec(any::<u8>(), 1..=16);
    prop_oneof![4 => known, 1 => arbitrary]
}

fn sg() -> impl Strategy<Value = Vec<(u64, u32)>> {
    proptest::collection::vec((0u64..(MEM_LEN as u64 + 8192), 0u32..9000), 0..5)
}

fn direction() -> impl Strategy<Value = DataDirection> {
    prop_oneof![
        Just(DataDirection::None),
        Just(DataDirection::ToDevice),
        Just(DataDirection::FromDevice)
    ]
}

#[derive(Debug, Clone)]
struct Cmd {
    cdb: Vec<u8>,
    direction: DataDirection,
    sg: Vec<(u64, u32)>,
    initiator: u64,
    port: u16,
    attribute: scsi::TaskAttribute,
}

fn cmd() -> impl Strategy<Value = Cmd> {
    (
        cdb_bytes(),
        direction(),
        sg(),
        prop_oneof![4 => 0u64..3, 1 => 0u64..40],
        0u16..3,
        prop_oneof![
            6 => Just(scsi::TaskAttribute::Simple),
            2 => Just(scsi::TaskAttribute::Ordered),
            1 => Just(scsi::TaskAttribute::HeadOfQueue),
            1 => Just(scsi::TaskAttribute::Aca),
        ],
    )
        .prop_map(|(cdb, direction, sg, initiator, port, attribute)| Cmd {
            attribute,
            cdb,
            direction,
            sg,
            initiator,
            port,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_commands_never_panic_and_complete_once(
        cmds in proptest::collection::vec(cmd(), 1..24),
        seed in any::<u64>(),
        reset_at in proptest::option::of(0usize..24),
    ) {
        let mut disk_bytes = vec![0u8; 64 * 512];
        let disk = RamDisk::<4>::new(&mut disk_bytes, 512).unwrap().with_max_transfer(32);
        let faults = FaultConfig {
            fail_ppm: 50_000,
            fail_kind: ErrorKind::MediumError,
            delay_ppm: 200_000,
            max_delay: Duration::from_micros(50),
            reorder: true,
            tear_ppm: 0,
            lose_after_submissions: None,
        };
        let device = ExactlyOnce::<_, 16>::new(FaultInjector::<_, 4>::new(disk, seed, faults));
        let groups = [
            scsi::PortGroup::new(1, scsi::AccessState::ActiveOptimized, &[1]),
            scsi::PortGroup::new(2, scsi::AccessState::Standby, &[2]),
        ];
        let config = LunConfig::new("V", "P", "R", "S", NaaId::registered(1, 2)).with_alua(3, &groups);
        let mut lun: Lun<_, 8> = Lun::new(device, config);
        // Parameter lists and data come from memory: fill it with noise, mostly small
        // values so that lengths and LBAs inside parameter lists are often plausible.
        let mut mem = vec![0u8; MEM_LEN];
        let mut x = seed | 1;
        for b in mem.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = if x % 4 == 0 { x as u8 } else { (x as u8) & 0x07 };
        }
        let mut memory = MemoryRegions::<1>::new();
        memory.add(MemAddr(BASE), &mut mem).unwrap();

        let mut outstanding: Vec<Tag> = Vec::new();
        let mut completed = 0usize;
        let mut now = Instant(0);
        let mut pending = cmds.into_iter().enumerate().peekable();
        for _round in 0..10_000 {
            // Submit what fits.
            while let Some((i, c)) = pending.peek().cloned() {
                if reset_at == Some(i) {
                    lun.reset();
                }
                let segments: Vec<Segment> = c.sg.iter().map(|(a, l)| Segment::new(MemAddr(BASE + a), *l)).collect();
                let command = Command {
                    attribute: c.attribute,
                    tag: Tag(i as u64),
                    nexus: Nexus { initiator: InitiatorId(c.initiator), target_port: c.port, lun: u64::from(c.port == 2 && c.initiator == 2) },
                    cdb: CdbBytes::new(&c.cdb).unwrap(),
                    direction: c.direction,
                    sg: SgList::from_segments(&segments).unwrap(),
                };
                match lun.submit(now, command) {
                    Ok(()) => {
                        outstanding.push(Tag(i as u64));
                        pending.next();
                    }
                    Err(_) => break,
                }
            }
            let mut finished = Vec::new();
            let next = lun.poll(now, &mut memory, &mut |c| finished.push(c));
            for c in finished {
                let at = outstanding.iter().position(|t| *t == c.tag);
                prop_assert!(at.is_some(), "tag {:?} completed twice or never submitted", c.tag);
                outstanding.swap_remove(at.unwrap());
                completed += 1;
                if c.status == Status::CHECK_CONDITION {
                    let view = Sense::new_checked(&c.sense[..]);
                    prop_assert!(view.is_ok(), "unparseable sense {:?}", c.sense);
                    prop_assert!(SenseRepr::parse(&view.unwrap()).is_ok());
                } else {
                    prop_assert!(c.sense.is_empty());
                }
            }
            if outstanding.is_empty() && pending.peek().is_none() {
                break;
            }
            now = match next {
                Some(t) if t > now => t,
                _ => Instant(now.0 + 1000),
            };
        }
        prop_assert!(outstanding.is_empty(), "commands never completed: {:?}", outstanding);
        // Drain background work (SYNCHRONIZE CACHE with IMMED) without new completions.
        for _ in 0..1000 {
            if lun.outstanding() == 0 {
                break;
            }
            let next = lun.poll(now, &mut memory, &mut |c| panic!("unexpected completion {c:?}"));
            now = match next {
                Some(t) if t > now => t,
                _ => Instant(now.0 + 1000),
            };
        }
        prop_assert_eq!(lun.outstanding(), 0);
        prop_assert!(lun.device().violations().is_empty(), "{:?}", lun.device().violations());
        prop_assert_eq!(lun.device().outstanding(), 0);
        let _ = completed;
    }
}
