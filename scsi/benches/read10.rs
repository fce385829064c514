//! CDB decode + execute of a 4 KiB READ(10) on a RamDisk, per command; and CDB parsing alone.

use std::hint::black_box;

use block::{Instant, MemAddr, MemoryRegions, RamDisk, SgList, Tag};
use criterion::{Criterion, criterion_group, criterion_main};
use scsi::cdb::{Cdb, CdbRepr, CdbSize, Rw, RwKind};
use scsi::{
    CdbBytes, Command, DataDirection, InitiatorId, Lun, LunConfig, NaaId, Nexus, Transport,
};

fn read10(c: &mut Criterion) {
    let mut disk_bytes = vec![0x5Au8; 1024 * 512];
    let disk = RamDisk::<16>::new(&mut disk_bytes, 512).unwrap();
    let config = LunConfig::new("BENCH", "DISK", "1", "1", NaaId::registered(1, 1));
    let mut lun: Lun<_, 16> = Lun::new(disk, config);
    let mut buffer = vec![0u8; 4096];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(0x1000), &mut buffer).unwrap();
    let repr = CdbRepr::ReadWrite(
        RwKind::Read,
        Rw {
            size: CdbSize::Ten,
            lba: 64,
            blocks: 8,
            dpo: false,
            fua: false,
            bytchk: 0,
            group: 0,
        },
    );
    let cdb = CdbBytes::from_repr(&repr);
    let sg = SgList::single(MemAddr(0x1000), 4096).unwrap();
    let nexus = Nexus {
        initiator: InitiatorId(1),
        target_port: 0,
        lun: 0,
    };
    let run = |lun: &mut Lun<_, 16>, memory: &mut MemoryRegions<'_, 1>| {
        let command = Command {
            attribute: scsi::TaskAttribute::Simple,
            tag: Tag(1),
            nexus,
            cdb,
            direction: DataDirection::FromDevice,
            sg: sg.clone(),
        };
        lun.submit(Instant(0), command).unwrap();
        let mut good = false;
        lun.poll(Instant(0), memory, &mut |c| good = c.is_good());
        good
    };
    // Consume the power-on unit attention.
    run(&mut lun, &mut memory);
    assert!(run(&mut lun, &mut memory));
    c.bench_function("lun_read10_4k_ramdisk", |b| {
        b.iter(|| black_box(run(&mut lun, &mut memory)))
    });

    let bytes = repr.to_bytes();
    c.bench_function("cdb_parse_read10", |b| {
        b.iter(|| CdbRepr::parse(&Cdb::new_checked(black_box(&bytes[..10])).unwrap()))
    });
}

criterion_group!(benches, read10);
criterion_main!(benches);
