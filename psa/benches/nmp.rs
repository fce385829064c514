//! Per-I/O cost of psa's data path (scheduler queue, NMP, path pick, completion) on a
//! zero-latency RamDisk-backed array, and the same read sent straight to the array, so that
//! the difference is psa's own cost.

use std::hint::black_box;

use array::{Array, ArrayConfig, Personality};
use block::{
    BlockCount, BlockDevice, BlockRequest, Instant, Lba, MemAddr, MemoryRegions, RamDisk, SgList,
    Tag,
};
use criterion::{Criterion, criterion_group, criterion_main};
use psa::{Adapter, DefaultAa, MostRecentlyUsed, NmpConfig, NmpDevice, ScanConfig, Target};
use scsi::cdb::{CdbRepr, CdbSize, Rw, RwKind};
use scsi::{Command, InitiatorId, LunConfig, NaaId, Nexus, Transport};

type Sim<'a> = Array<RamDisk<'a, 32>, 1, 2, 32, 1>;

/// A transport that answers every command GOOD at the next poll without moving data: what is
/// left is psa's own cost.
#[derive(Default)]
struct Loopback {
    done: Vec<scsi::CommandCompletion>,
}

impl Transport for Loopback {
    fn submit(
        &mut self,
        _now: Instant,
        command: Command,
    ) -> Result<(), scsi::TransportSubmitError> {
        self.done.push(scsi::CommandCompletion::good(
            command.tag,
            scsi::Residual::None,
        ));
        Ok(())
    }

    fn poll(
        &mut self,
        _now: Instant,
        _memory: &mut dyn block::Memory,
        done: &mut dyn FnMut(scsi::CommandCompletion),
    ) -> Option<Instant> {
        for c in self.done.drain(..) {
            done(c);
        }
        None
    }
}

fn array(storage: &mut [u8]) -> Sim<'_> {
    let mut a: Sim<'_> = Array::new(ArrayConfig::new(Personality::ActiveActive));
    a.add_port(1, 0).unwrap();
    a.add_port(2, 1).unwrap();
    let disk = RamDisk::new(storage, 512).unwrap();
    let id = LunConfig::new("BENCH", "ARRAY", "1", "1", NaaId::registered(1, 1));
    a.add_lun(disk, id, 0).unwrap();
    a
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("psa");
    let mut storage = vec![0u8; 4096 * 512];
    let mut scratch = vec![0u8; 2048];
    let mut page = vec![0u8; 4096];
    let mut memory = MemoryRegions::<2>::new();
    memory.add(MemAddr(0x10_0000), &mut scratch).unwrap();
    memory.add(MemAddr(0x20_0000), &mut page).unwrap();
    let sg = SgList::single(MemAddr(0x20_0000), 512).unwrap();

    // Straight to the array: CDB build, array, LU, RamDisk.
    {
        let mut a = array(&mut storage);
        let nexus = Nexus {
            initiator: InitiatorId(1),
            target_port: 1,
            lun: 0,
        };
        let repr = CdbRepr::ReadWrite(
            RwKind::Read,
            Rw {
                size: CdbSize::Ten,
                lba: 8,
                blocks: 1,
                dpo: false,
                fua: false,
                bytchk: 0,
                group: 0,
            },
        );
        // Get past the power-on unit attention.
        for i in 0..4 {
            let cmd = Command::new(Tag(1000 + i), nexus, &repr).data_in(sg.clone());
            a.submit(Instant(0), cmd).unwrap();
            a.poll(Instant(0), &mut memory, &mut |_| {});
        }
        let mut tag = 0u64;
        group.bench_function("array_read_512_direct", |b| {
            b.iter(|| {
                tag = tag.wrapping_add(1);
                let cmd = Command::new(Tag(tag), nexus, &repr).data_in(sg.clone());
                a.submit(Instant(0), cmd).unwrap();
                let mut n = 0;
                a.poll(Instant(0), &mut memory, &mut |c| {
                    n += usize::from(c.is_good());
                });
                black_box(n)
            })
        });
    }

    // Through psa: scheduler queue, NMP, MRU path pick, completion, statistics.
    {
        let mut a = array(&mut storage);
        let targets = [Target { number: 0, port: 1 }, Target { number: 1, port: 2 }];
        let adapters = [Adapter {
            number: 1,
            initiator: InitiatorId(1),
            targets: &targets,
        }];
        let scan = ScanConfig {
            adapters: &adapters,
            max_lun: 256,
            scratch: MemAddr(0x10_0000),
            max_polls: 64,
        };
        let (devices, now) = psa::scan::<_, 1, 4>(&mut a, &mut memory, Instant(0), &scan).unwrap();
        let mut nmp: NmpDevice<_, _, _, 4, 32> = NmpDevice::new(
            &mut a,
            &devices[0],
            DefaultAa::default(),
            MostRecentlyUsed::new(),
            NmpConfig::default(),
        )
        .unwrap();
        let mut tag = 0u64;
        group.bench_function("nmp_read_512_on_array", |b| {
            b.iter(|| {
                tag = tag.wrapping_add(1);
                let request = BlockRequest::read(Tag(tag), Lba(8), BlockCount(1), sg.clone());
                nmp.submit(now, request).unwrap();
                let mut n = 0;
                nmp.poll(now, &mut memory, &mut |c| n += usize::from(c.is_ok()));
                black_box(n)
            })
        });
        assert_eq!(nmp.esxtop().stats.failed, 0);
    }

    // psa alone: the same NMP device over a loopback transport.
    {
        let mut a = array(&mut storage);
        let targets = [Target { number: 0, port: 1 }, Target { number: 1, port: 2 }];
        let adapters = [Adapter {
            number: 1,
            initiator: InitiatorId(1),
            targets: &targets,
        }];
        let scan = ScanConfig {
            adapters: &adapters,
            max_lun: 256,
            scratch: MemAddr(0x10_0000),
            max_polls: 64,
        };
        let (devices, now) = psa::scan::<_, 1, 4>(&mut a, &mut memory, Instant(0), &scan).unwrap();
        let mut nmp: NmpDevice<_, _, _, 4, 32> = NmpDevice::new(
            Loopback::default(),
            &devices[0],
            DefaultAa::default(),
            MostRecentlyUsed::new(),
            NmpConfig::default(),
        )
        .unwrap();
        let mut tag = 0u64;
        group.bench_function("nmp_read_512_on_loopback", |b| {
            b.iter(|| {
                tag = tag.wrapping_add(1);
                let request = BlockRequest::read(Tag(tag), Lba(8), BlockCount(1), sg.clone());
                nmp.submit(now, request).unwrap();
                let mut n = 0;
                nmp.poll(now, &mut memory, &mut |c| n += usize::from(c.is_ok()));
                black_box(n)
            })
        });
        assert_eq!(nmp.esxtop().stats.failed, 0);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
