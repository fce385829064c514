//! Two LUNs of one array, each an NMP device, sharing the array through a `TransportHub`.

use std::time::Duration;

use array::{Array, ArrayConfig, Personality};
use block::{
    BlockCount, BlockDevice, BlockRequest, Completion, Instant, Lba, MemAddr, Memory,
    MemoryRegions, RamDisk, SgList, Tag,
};
use psa::{
    Adapter, DefaultAa, MostRecentlyUsed, NmpConfig, NmpDevice, ScanConfig, Target, TransportHub,
};
use scsi::{InitiatorId, LunConfig, NaaId};

#[test]
fn two_devices_share_one_array() {
    let mut s0 = vec![0u8; 256 * 512];
    let mut s1 = vec![0u8; 256 * 512];
    let config =
        ArrayConfig::new(Personality::ActiveActive).with_latency(Duration::from_micros(300));
    let mut a: Array<RamDisk<'_, 16>, 2, 2, 64, 1> = Array::new(config);
    a.add_port(1, 0).unwrap();
    a.add_port(2, 1).unwrap();
    for (lun, storage) in [(0u64, &mut s0), (1, &mut s1)] {
        let disk = RamDisk::new(storage, 512).unwrap();
        let id =
            LunConfig::new("SIM", "ARRAY", "1", "S", NaaId::registered(0x1405, lun)).with_lun(lun);
        a.add_lun(disk, id, 0).unwrap();
    }
    let mut scratch = vec![0u8; 2048];
    let mut buffers = vec![0u8; 64 * 512];
    let mut memory = MemoryRegions::<2>::new();
    memory.add(MemAddr(0x10_0000), &mut scratch).unwrap();
    memory.add(MemAddr(0x20_0000), &mut buffers).unwrap();
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
    let hub: TransportHub<_, 2, 64> = TransportHub::new(a);
    let mut port0 = hub.port(0).unwrap();
    let (devices, mut now) =
        psa::scan::<_, 2, 4>(&mut port0, &mut memory, Instant(0), &scan).unwrap();
    assert_eq!(devices.len(), 2);
    let mut d0: NmpDevice<_, _, _, 4, 32> = NmpDevice::new(
        port0,
        &devices[0],
        DefaultAa::default(),
        MostRecentlyUsed::new(),
        NmpConfig::default(),
    )
    .unwrap();
    let mut d1: NmpDevice<_, _, _, 4, 32> = NmpDevice::new(
        hub.port(1).unwrap(),
        &devices[1],
        DefaultAa::default(),
        MostRecentlyUsed::new(),
        NmpConfig::default(),
    )
    .unwrap();
    // Each device gets 32 one-block writes of its own pattern, all outstanding at once.
    for i in 0..32u64 {
        let a0 = MemAddr(0x20_0000 + i * 512);
        let a1 = MemAddr(0x20_0000 + (32 + i) * 512);
        memory.write(a0, &[i as u8; 512]).unwrap();
        memory.write(a1, &[0x80 | i as u8; 512]).unwrap();
        d0.submit(
            now,
            BlockRequest::write(
                Tag(i),
                Lba(i),
                BlockCount(1),
                SgList::single(a0, 512).unwrap(),
            ),
        )
        .unwrap();
        d1.submit(
            now,
            BlockRequest::write(
                Tag(i),
                Lba(i),
                BlockCount(1),
                SgList::single(a1, 512).unwrap(),
            ),
        )
        .unwrap();
    }
    let mut done: [Vec<Completion>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..1000 {
        let n0 = d0.poll(now, &mut memory, &mut |c| done[0].push(c));
        let n1 = d1.poll(now, &mut memory, &mut |c| done[1].push(c));
        if done[0].len() == 32 && done[1].len() == 32 {
            break;
        }
        now = [n0, n1]
            .into_iter()
            .flatten()
            .min()
            .expect("pending")
            .max(now);
    }
    assert!(
        done.iter()
            .all(|d| d.len() == 32 && d.iter().all(|c| c.is_ok()))
    );
    drop(d0);
    drop(d1);
    let a = hub.into_inner();
    let lu0 = a.lun(0).unwrap().device().contents();
    let lu1 = a.lun(1).unwrap().device().contents();
    for i in 0..32usize {
        assert!(lu0[i * 512..(i + 1) * 512].iter().all(|b| *b == i as u8));
        assert!(
            lu1[i * 512..(i + 1) * 512]
                .iter()
                .all(|b| *b == 0x80 | i as u8)
        );
    }
}

#[test]
fn a_port_refuses_more_than_its_share_so_stashes_never_overflow() {
    use scsi::cdb::CdbRepr;
    use scsi::{Command, Nexus, Transport, TransportSubmitErrorKind};
    let mut s0 = vec![0u8; 16 * 512];
    let mut a: Array<RamDisk<'_, 16>, 1, 1, 64, 1> =
        Array::new(ArrayConfig::new(Personality::ActiveActive));
    a.add_port(1, 0).unwrap();
    let disk = RamDisk::new(&mut s0, 512).unwrap();
    a.add_lun(
        disk,
        LunConfig::new("S", "A", "1", "S", NaaId::registered(1, 1)),
        0,
    )
    .unwrap();
    let hub: TransportHub<_, 2, 2> = TransportHub::new(a);
    let mut p0 = hub.port(0).unwrap();
    let mut p1 = hub.port(1).unwrap();
    let nexus = Nexus {
        initiator: InitiatorId(1),
        target_port: 1,
        lun: 0,
    };
    let tur = |t| Command::new(Tag(t), nexus, &CdbRepr::TestUnitReady);
    p0.submit(Instant(0), tur(1)).unwrap();
    p0.submit(Instant(0), tur(2)).unwrap();
    let e = p0.submit(Instant(0), tur(3)).unwrap_err();
    assert_eq!(e.kind, TransportSubmitErrorKind::QueueFull);
    assert_eq!(e.command.tag, Tag(3));
    p1.submit(Instant(0), tur(1)).unwrap();
    let mut memory = MemoryRegions::<1>::new();
    // Port 1 polls: its own completion comes back, port 0's two wait in its stash.
    let mut got = Vec::new();
    p1.poll(Instant(0), &mut memory, &mut |c| got.push(c.tag));
    assert_eq!(got, [Tag(1)]);
    got.clear();
    p0.poll(Instant(0), &mut memory, &mut |c| got.push(c.tag));
    got.sort();
    assert_eq!(got, [Tag(1), Tag(2)]);
    p0.submit(Instant(0), tur(3)).unwrap();
}
