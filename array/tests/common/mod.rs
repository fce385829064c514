//! What the array's command-by-command tests share: the array type, a READ (10) of one block,
//! and running one command on a port of the array (or running it again until it gets past the
//! unit attentions).

#![allow(dead_code, unreachable_pub)]

use array::Array;
use block::{Instant, MemAddr, MemoryRegions, RamDisk, SgList, Tag};
use scsi::cdb::{CdbRepr, CdbSize, Rw, RwKind};
use scsi::{Asc, Command, CommandCompletion, InitiatorId, Nexus, SenseKey, run_to_completion};

pub type Sim<'a> = Array<RamDisk<'a, 16>, 2, 4, 16, 8>;

/// Where the commands that read data put it: the tests map a buffer here.
pub const BUFFER: MemAddr = MemAddr(0x1000);

/// READ (10) of block 0.
pub fn read() -> CdbRepr {
    CdbRepr::ReadWrite(
        RwKind::Read,
        Rw {
            size: CdbSize::Ten,
            lba: 0,
            blocks: 1,
            dpo: false,
            fua: false,
            bytchk: 0,
            group: 0,
        },
    )
}

/// The nexus of initiator 1 with LUN 0 through `port`.
pub fn nexus(port: u16) -> Nexus {
    Nexus {
        initiator: InitiatorId(1),
        target_port: port,
        lun: 0,
    }
}

/// Runs `repr` on `port` once, at `t`; a command other than TEST UNIT READY and START STOP
/// UNIT reads up to 512 bytes into [`BUFFER`].
pub fn once(
    a: &mut Sim<'_>,
    mem: &mut MemoryRegions<'_, 1>,
    t: u64,
    port: u16,
    repr: &CdbRepr,
) -> CommandCompletion {
    let mut cmd = Command::new(Tag(t + u64::from(port)), nexus(port), repr);
    if !matches!(repr, CdbRepr::TestUnitReady | CdbRepr::StartStopUnit { .. }) {
        cmd = cmd.data_in(SgList::single(BUFFER, 512).unwrap());
    }
    run_to_completion(a, mem, Instant(t), cmd, 64, &mut |_| {})
        .unwrap()
        .0
}

/// Runs `repr` on `port` until it gets past the unit attentions.
pub fn run_past_ua(
    a: &mut Sim<'_>,
    mem: &mut MemoryRegions<'_, 1>,
    t: u64,
    port: u16,
    repr: &CdbRepr,
) -> CommandCompletion {
    for i in 0..8 {
        let c = once(a, mem, t + i * 100, port, repr);
        match c.sense_repr() {
            Some(s) if s.key == SenseKey::UNIT_ATTENTION => continue,
            _ => return c,
        }
    }
    panic!("unit attentions never ended");
}

/// The sense key and additional sense code of a CHECK CONDITION.
pub fn key_asc(c: &CommandCompletion) -> (SenseKey, Asc) {
    let s = c.sense_repr().expect("sense");
    (s.key, s.asc)
}
