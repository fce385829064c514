//! Shared test rig: a `Lun` over a `RamDisk`, one memory region, and a helper that runs one
//! command to completion.
#![allow(dead_code)]

use block::{
    BlockDevice, BlockRequest, Completion, Geometry, Instant, MemAddr, Memory, MemoryRegions,
    Operation, RequestFlags, SgList, SubmitError, Tag,
};
use scsi::{
    CdbBytes, Command, CommandCompletion, DataDirection, InitiatorId, Lun, Nexus, SenseRepr,
    Transport,
};

/// Where the test buffer lives in the address space.
pub(crate) const BASE: u64 = 0x10_0000;

/// A device wrapper that records every request's operation and flags, and can change the
/// reported capacity.
pub(crate) struct Recorder<D> {
    pub(crate) inner: D,
    pub(crate) log: Vec<(Operation, u64, u32, RequestFlags)>,
    pub(crate) block_count: Option<u64>,
}

impl<D> Recorder<D> {
    pub(crate) fn new(inner: D) -> Self {
        Self {
            inner,
            log: Vec::new(),
            block_count: None,
        }
    }
}

impl<D: BlockDevice> BlockDevice for Recorder<D> {
    fn geometry(&self) -> Geometry {
        let mut g = self.inner.geometry();
        if let Some(n) = self.block_count {
            g.block_count = n;
        }
        g
    }

    fn submit(&mut self, now: Instant, request: BlockRequest) -> Result<(), SubmitError> {
        self.log.push((
            request.operation,
            request.lba.0,
            request.blocks.0,
            request.flags,
        ));
        self.inner.submit(now, request)
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        self.inner.poll(now, memory, done)
    }
}

/// Runs one command from `initiator` through target port `port`, with `len` bytes of buffer
/// at `BASE` in `mem`, to completion.
pub(crate) fn exec_on<T: Transport>(
    lun: &mut T,
    mem: &mut [u8],
    initiator: u64,
    port: u16,
    cdb: &[u8],
    direction: DataDirection,
    len: u32,
) -> CommandCompletion {
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(BASE), mem).unwrap();
    let sg = if len == 0 {
        SgList::new()
    } else {
        SgList::single(MemAddr(BASE), len).unwrap()
    };
    let command = Command {
        attribute: scsi::TaskAttribute::Simple,
        tag: Tag(7),
        nexus: Nexus {
            initiator: InitiatorId(initiator),
            target_port: port,
            lun: 0,
        },
        cdb: CdbBytes::new(cdb).unwrap(),
        direction,
        sg,
    };
    lun.submit(Instant(0), command).unwrap();
    let mut out = None;
    let mut now = Instant(0);
    for _ in 0..64 {
        let next = lun.poll(now, &mut memory, &mut |c| {
            assert!(out.is_none(), "completed twice");
            out = Some(c)
        });
        if out.is_some() {
            break;
        }
        now = next.unwrap_or(now);
    }
    out.expect("command never completed")
}

pub(crate) fn exec<T: Transport>(
    lun: &mut T,
    mem: &mut [u8],
    initiator: u64,
    cdb: &[u8],
    direction: DataDirection,
    len: u32,
) -> CommandCompletion {
    exec_on(lun, mem, initiator, 1, cdb, direction, len)
}

/// Sends commands until the initiator's power-on unit attention is consumed.
pub(crate) fn clear_ua<T: Transport>(lun: &mut T, mem: &mut [u8], initiator: u64) {
    for _ in 0..8 {
        let c = exec(
            lun,
            mem,
            initiator,
            &[0, 0, 0, 0, 0, 0],
            DataDirection::None,
            0,
        );
        if c.is_good() {
            return;
        }
    }
    panic!("unit attentions never cleared");
}

pub(crate) fn sense(c: &CommandCompletion) -> SenseRepr {
    c.sense_repr()
        .unwrap_or_else(|| panic!("no sense in {c:?}"))
}

pub(crate) fn lun_config() -> scsi::LunConfig {
    scsi::LunConfig::new(
        "ACME",
        "VDISK",
        "0001",
        "SN-12345",
        scsi::NaaId::registered(0x00_14_05, 0x1234_5678),
    )
}

pub(crate) type TestLun<'a> = Lun<Recorder<block::RamDisk<'a, 16>>, 8>;
