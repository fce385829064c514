//! A mounted volume: a [`BlockDevice`] over its member devices.

use block::{
    BlockCount, BlockDevice, BlockError, BlockRequest, Completion, DEFAULT_SG_CAPACITY,
    DeviceFeatures, ErrorKind, Geometry, Instant, Lba, Memory, Operation, SubmitError,
    SubmitErrorKind, Tag,
};

use crate::error::{LvmError, LvmErrorKind, Structure, err, err_v};
use crate::scan::ScannedVolume;
use crate::wire::Uuid;

/// One extent in blocks: volume blocks `[start, start + blocks)` live on `device` from
/// `device_lba`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MapExtent {
    /// First volume block.
    pub start: u64,
    /// Length in blocks.
    pub blocks: u64,
    /// Member index.
    pub device: u16,
    /// First block on the device.
    pub device_lba: u64,
}

/// One piece of a request after mapping: `blocks` blocks from volume block `offset` blocks into
/// the request go to `device` at `device_lba`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Piece {
    /// Member index.
    pub device: u16,
    /// First block on the device.
    pub device_lba: u64,
    /// Offset of the piece in the request, in blocks.
    pub offset: u64,
    /// Length in blocks.
    pub blocks: u32,
}

/// Where a run of volume bytes lives: `len` bytes from byte `offset` of member `device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeviceRange {
    /// Member index (member order, as the volume's devices are given at mount).
    pub device: u16,
    /// Byte offset on the member device.
    pub offset: u64,
    /// Bytes from there that are contiguous on that device and inside the volume.
    pub len: u64,
}

/// The extent map of a volume, in blocks, with up to `E` extents.
#[derive(Debug, Clone)]
pub struct ExtentMap<const E: usize> {
    extents: heapless::Vec<MapExtent, E>,
    block_count: u64,
}

impl<const E: usize> ExtentMap<E> {
    /// Builds the map from a scanned volume for `block_size`-byte blocks.
    pub fn from_scanned<const N: usize>(
        volume: &ScannedVolume<N, E>,
        block_size: u32,
    ) -> Result<Self, LvmError> {
        let bs = u64::from(block_size);
        let mut extents = heapless::Vec::new();
        let mut next = 0u64;
        for e in volume.extents.iter() {
            let bad = || err_v(Structure::Volume, LvmErrorKind::BadField, e.logical_offset);
            if e.logical_offset % bs != 0 || e.length % bs != 0 || e.physical_offset % bs != 0 {
                return Err(bad());
            }
            let start = e.logical_offset / bs;
            if start != next || e.member >= volume.members.len() {
                return Err(err_v(
                    Structure::Volume,
                    LvmErrorKind::Hole,
                    e.logical_offset,
                ));
            }
            let blocks = e.length / bs;
            next = start
                .checked_add(blocks)
                .ok_or(err(Structure::Volume, LvmErrorKind::Overflow))?;
            let device = u16::try_from(e.member).map_err(|_| bad())?;
            extents
                .push(MapExtent {
                    start,
                    blocks,
                    device,
                    device_lba: e.physical_offset / bs,
                })
                .map_err(|_| err(Structure::Volume, LvmErrorKind::CapacityExceeded))?;
        }
        if next == 0 || next.checked_mul(bs) != Some(volume.logical_size) {
            return Err(err_v(Structure::Volume, LvmErrorKind::Hole, next));
        }
        Ok(Self {
            extents,
            block_count: next,
        })
    }

    /// The extents, in volume order.
    pub fn extents(&self) -> &[MapExtent] {
        &self.extents
    }

    /// Blocks in the volume.
    pub fn block_count(&self) -> u64 {
        self.block_count
    }

    /// The index of the extent holding volume block `lba`.
    #[inline]
    pub fn locate(&self, lba: u64) -> Option<usize> {
        if lba >= self.block_count {
            return None;
        }
        let after = self.extents.partition_point(|e| e.start <= lba);
        after.checked_sub(1)
    }

    /// Maps `[lba, lba + blocks)` to pieces, calling `each` for every piece in order. Returns
    /// the number of pieces, or `None` if the range leaves the volume.
    #[inline]
    pub fn map(&self, lba: u64, blocks: u32, mut each: impl FnMut(Piece)) -> Option<usize> {
        let end = lba.checked_add(u64::from(blocks))?;
        if end > self.block_count {
            return None;
        }
        if blocks == 0 {
            return Some(0);
        }
        let mut index = self.locate(lba)?;
        let mut at = lba;
        let mut count = 0usize;
        // Bounded by the number of extents.
        while at < end {
            let e = self.extents.get(index)?;
            let within = at - e.start;
            let take = (e.start + e.blocks - at).min(end - at);
            each(Piece {
                device: e.device,
                device_lba: e.device_lba + within,
                offset: at - lba,
                blocks: take as u32,
            });
            count += 1;
            at += take;
            index += 1;
        }
        Some(count)
    }

    /// The single piece `[lba, lba + blocks)` maps to, if it lies inside one extent.
    #[inline]
    pub fn single(&self, lba: u64, blocks: u32) -> Option<Piece> {
        let index = self.locate(lba)?;
        let e = self.extents.get(index)?;
        let within = lba - e.start;
        if blocks == 0 || within.checked_add(u64::from(blocks))? > e.blocks {
            return None;
        }
        Some(Piece {
            device: e.device,
            device_lba: e.device_lba + within,
            offset: 0,
            blocks,
        })
    }

    /// Where volume byte `offset` lives, for `block_size`-byte blocks: the member, the byte
    /// offset on it, and how many bytes from there are contiguous on that member (to the end of
    /// its extent, or further where the next extents continue on the same device). `None` past
    /// the end of the volume.
    pub fn locate_bytes(&self, offset: u64, block_size: u32) -> Option<DeviceRange> {
        let bs = u64::from(block_size);
        if bs == 0 {
            return None;
        }
        let lba = offset / bs;
        let index = self.locate(lba)?;
        let e = self.extents.get(index)?;
        let mut end_lba = e.device_lba.checked_add(e.blocks)?;
        // Bounded by the number of extents.
        for next in self.extents.iter().skip(index + 1) {
            if next.device != e.device || next.device_lba != end_lba {
                break;
            }
            end_lba = end_lba.checked_add(next.blocks)?;
        }
        let device_lba = e.device_lba.checked_add(lba - e.start)?;
        let within = offset % bs;
        let device_offset = device_lba.checked_mul(bs)?.checked_add(within)?;
        let len = (end_lba - device_lba)
            .checked_mul(bs)?
            .checked_sub(within)?;
        Some(DeviceRange {
            device: e.device,
            offset: device_offset,
            len,
        })
    }

    /// The volume block of `device_lba` on member `device`, for translating error locations.
    pub fn reverse(&self, device: u16, device_lba: u64) -> Option<u64> {
        self.extents
            .iter()
            .find(|e| {
                e.device == device
                    && device_lba >= e.device_lba
                    && device_lba - e.device_lba < e.blocks
            })
            .map(|e| e.start + (device_lba - e.device_lba))
    }

    /// The smallest extent, in blocks.
    pub fn smallest_extent(&self) -> u64 {
        self.extents.iter().map(|e| e.blocks).min().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    tag: Tag,
    remaining: u32,
    active: bool,
    live_pos: u16,
    error: Option<BlockError>,
}

const EMPTY_SLOT: Slot = Slot {
    tag: Tag(0),
    remaining: 0,
    active: false,
    live_pos: 0,
    error: None,
};

/// The parent table: slots, the free list, and a compact list of live parent tags (for the
/// duplicate-tag check, which then costs one compare per request in flight).
struct Parents<const P: usize> {
    slots: [Slot; P],
    free: heapless::Vec<u16, P>,
    live: heapless::Vec<(Tag, u16), P>,
}

impl<const P: usize> Parents<P> {
    fn new() -> Self {
        let mut free = heapless::Vec::new();
        for i in (0..P).rev() {
            // Cannot fail: P entries of capacity P; P <= u16::MAX is asserted at mount.
            let _ = free.push(i as u16);
        }
        Self {
            slots: [EMPTY_SLOT; P],
            free,
            live: heapless::Vec::new(),
        }
    }

    #[inline]
    fn is_live(&self, tag: Tag) -> bool {
        self.live.iter().any(|(t, _)| *t == tag)
    }

    /// Takes the free slot `slot` (the last of `free`) for `tag`.
    #[inline]
    fn take(&mut self, slot: u16, tag: Tag) {
        self.free.pop();
        let pos = self.live.len() as u16;
        // Cannot fail: at most P live parents.
        let _ = self.live.push((tag, slot));
        self.slots[usize::from(slot)] = Slot {
            tag,
            remaining: 0,
            active: true,
            live_pos: pos,
            error: None,
        };
    }

    /// Frees `slot` and returns its completion.
    #[inline]
    fn release(&mut self, slot: u16) -> Completion {
        let s = &mut self.slots[usize::from(slot)];
        s.active = false;
        let completion = Completion {
            tag: s.tag,
            result: s.error.map_or(Ok(()), Err),
        };
        let pos = usize::from(s.live_pos);
        if pos < self.live.len() {
            self.live.swap_remove(pos);
            if let Some(&(_, moved)) = self.live.get(pos) {
                self.slots[usize::from(moved)].live_pos = pos as u16;
            }
        }
        // Cannot fail: the slot was taken from `free`.
        let _ = self.free.push(slot);
        completion
    }
}

/// A mounted volume over `N` member devices of type `D`, with up to `E` extents and `P`
/// requests outstanding.
///
/// A request is mapped through the extents; one that crosses an extent or device boundary is
/// split into children, one per piece, whose tags are `slot << 32 | piece` (unique per device
/// while outstanding). The parent completes once, when its last child does, with the first
/// error any child reported. Reads and writes are never longer than the smallest extent (the
/// geometry's `max_transfer_blocks` says so), so they split into at most two children; unmap
/// and write-zeroes may split into one child per extent, and a flush goes to every member.
/// Compare-and-write is passed on only when it lies within one extent.
///
/// Back-pressure: a request is refused with [`SubmitErrorKind::QueueFull`] when no parent slot
/// is free or a member it needs has no free queue slot (as counted by the volume). If a member
/// refuses a child anyway, that child fails with [`ErrorKind::QueueFull`] and so does the
/// parent (retryable).
pub struct Volume<
    D,
    const N: usize,
    const E: usize,
    const P: usize,
    const SG: usize = DEFAULT_SG_CAPACITY,
> {
    devices: heapless::Vec<D, N>,
    depth: heapless::Vec<u16, N>,
    outstanding: heapless::Vec<u16, N>,
    map: ExtentMap<E>,
    geometry: Geometry,
    uuid: Uuid,
    parents: Parents<P>,
    ready: heapless::Deque<u16, P>,
}

impl<D, const N: usize, const E: usize, const P: usize, const SG: usize> Volume<D, N, E, P, SG>
where
    D: BlockDevice<SG>,
{
    /// Builds the volume over `devices`, given in member order. Refuses a volume that is not
    /// complete (incomplete, invalid); policy about snapshots is the mount table's.
    pub(crate) fn new(
        volume: &ScannedVolume<N, E>,
        devices: heapless::Vec<D, N>,
    ) -> Result<Self, (LvmError, heapless::Vec<D, N>)> {
        match Self::check(volume, &devices) {
            Ok((map, geometry, depth)) => {
                let outstanding = depth.iter().map(|_| 0u16).collect();
                Ok(Self {
                    devices,
                    depth,
                    outstanding,
                    map,
                    geometry,
                    uuid: volume.uuid,
                    parents: Parents::new(),
                    ready: heapless::Deque::new(),
                })
            }
            Err(e) => Err((e, devices)),
        }
    }

    fn check(
        volume: &ScannedVolume<N, E>,
        devices: &heapless::Vec<D, N>,
    ) -> Result<(ExtentMap<E>, Geometry, heapless::Vec<u16, N>), LvmError> {
        const { assert!(P > 0 && P <= u16::MAX as usize, "P must be 1..=65535") };
        if matches!(
            volume.status,
            crate::scan::VolumeStatus::Incomplete { .. } | crate::scan::VolumeStatus::Invalid(_)
        ) {
            return Err(err(Structure::Volume, LvmErrorKind::Incomplete));
        }
        if devices.len() != volume.members.len() || devices.is_empty() {
            return Err(err_v(
                Structure::Volume,
                LvmErrorKind::DeviceMismatch,
                devices.len() as u64,
            ));
        }
        let first = devices[0].geometry();
        let map = ExtentMap::from_scanned(volume, first.block_size)?;
        let mut features = DeviceFeatures::UNMAP
            | DeviceFeatures::WRITE_ZEROES
            | DeviceFeatures::COMPARE_AND_WRITE
            | DeviceFeatures::UNMAP_READS_ZERO;
        let mut max_transfer = u64::from(u32::MAX);
        let mut depth = heapless::Vec::new();
        for (index, device) in devices.iter().enumerate() {
            let g = device.geometry();
            if g.block_size != first.block_size {
                return Err(err_v(
                    Structure::Volume,
                    LvmErrorKind::DeviceMismatch,
                    u64::from(g.block_size),
                ));
            }
            let always = DeviceFeatures::UNMAP
                | DeviceFeatures::WRITE_ZEROES
                | DeviceFeatures::COMPARE_AND_WRITE
                | DeviceFeatures::UNMAP_READS_ZERO;
            features = (features & (g.features & always))
                | (g.features & (DeviceFeatures::READ_ONLY | DeviceFeatures::VOLATILE_CACHE));
            max_transfer = max_transfer.min(u64::from(g.max_transfer_blocks));
            for e in map
                .extents()
                .iter()
                .filter(|e| usize::from(e.device) == index)
            {
                let end = e
                    .device_lba
                    .checked_add(e.blocks)
                    .ok_or(err(Structure::Volume, LvmErrorKind::Overflow))?;
                if end > g.block_count {
                    return Err(err_v(
                        Structure::Volume,
                        LvmErrorKind::ExtentOutOfRange,
                        e.start,
                    ));
                }
            }
            // Cannot fail: at most N devices.
            let _ = depth.push(g.queue_depth.max(1));
        }
        max_transfer = max_transfer.min(map.smallest_extent()).max(1);
        let geometry = Geometry {
            block_size: first.block_size,
            block_count: map.block_count(),
            max_transfer_blocks: max_transfer as u32,
            queue_depth: P as u16,
            features,
        };
        Ok((map, geometry, depth))
    }

    /// The volume UUID.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The extent map.
    pub fn extent_map(&self) -> &ExtentMap<E> {
        &self.map
    }

    /// Where volume byte `offset` lives: member, byte offset on it, and the bytes contiguous
    /// from there ([`ExtentMap::locate_bytes`] with the volume's block size).
    pub fn locate_bytes(&self, offset: u64) -> Option<DeviceRange> {
        self.map.locate_bytes(offset, self.geometry.block_size)
    }

    /// Requests accepted and not yet completed.
    pub fn outstanding(&self) -> usize {
        P - self.parents.free.len()
    }

    /// The member devices, for inspection.
    pub fn devices(&self) -> &[D] {
        &self.devices
    }

    /// Takes the devices back (used by unmount).
    pub(crate) fn into_devices(self) -> heapless::Vec<D, N> {
        self.devices
    }

    fn finish_now(&mut self, slot: u16, error: Option<BlockError>) {
        let s = &mut self.parents.slots[usize::from(slot)];
        s.error = error;
        s.remaining = 0;
        // Cannot fail: the slot came from `free`, so fewer than P slots are ready.
        let _ = self.ready.push_back(slot);
    }
}

struct Sent<'a> {
    accepted: &'a mut u32,
    first_error: &'a mut Option<BlockError>,
}

impl Sent<'_> {
    fn send<D: BlockDevice<SG>, const N: usize, const SG: usize>(
        &mut self,
        devices: &mut heapless::Vec<D, N>,
        outstanding: &mut heapless::Vec<u16, N>,
        now: Instant,
        device: usize,
        child: BlockRequest<SG>,
    ) {
        match devices[device].submit(now, child) {
            Ok(()) => {
                outstanding[device] = outstanding[device].saturating_add(1);
                *self.accepted += 1;
            }
            Err(e) => {
                let kind = match e.kind {
                    SubmitErrorKind::QueueFull => ErrorKind::QueueFull,
                    _ => ErrorKind::InvalidRequest,
                };
                self.first_error.get_or_insert(BlockError::new(kind));
            }
        }
    }
}

fn child_tag(slot: u16, piece: usize) -> Tag {
    Tag((u64::from(slot) << 32) | piece as u64)
}

impl<D, const N: usize, const E: usize, const P: usize, const SG: usize> BlockDevice<SG>
    for Volume<D, N, E, P, SG>
where
    D: BlockDevice<SG>,
{
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn submit(&mut self, now: Instant, request: BlockRequest<SG>) -> Result<(), SubmitError<SG>> {
        if self.parents.is_live(request.tag) {
            return Err(SubmitError::new(SubmitErrorKind::DuplicateTag, request));
        }
        let Some(&slot) = self.parents.free.last() else {
            return Err(SubmitError::new(SubmitErrorKind::QueueFull, request));
        };
        // Fast path: a request inside one extent goes down unchanged but for tag and LBA, its
        // SG list moved rather than sliced.
        if request.operation != Operation::Flush
            && let Some(p) = self.map.single(request.lba.0, request.blocks.0)
            && request.validate(&self.geometry).is_ok()
        {
            let device = usize::from(p.device);
            if self.outstanding[device] >= self.depth[device] {
                return Err(SubmitError::new(SubmitErrorKind::QueueFull, request));
            }
            self.parents.take(slot, request.tag);
            let mut child = request;
            child.tag = child_tag(slot, 0);
            child.lba = Lba(p.device_lba);
            match self.devices[device].submit(now, child) {
                Ok(()) => {
                    self.outstanding[device] += 1;
                    self.parents.slots[usize::from(slot)].remaining = 1;
                }
                Err(e) => {
                    let kind = match e.kind {
                        SubmitErrorKind::QueueFull => ErrorKind::QueueFull,
                        _ => ErrorKind::InvalidRequest,
                    };
                    self.finish_now(slot, Some(BlockError::new(kind)));
                }
            }
            return Ok(());
        }
        // Count children per member before submitting anything, to refuse cleanly.
        let mut need = [0u16; N];
        let flush = request.operation == Operation::Flush;
        let valid = request.validate(&self.geometry);
        let mut pieces = 0usize;
        if valid.is_ok() {
            if flush {
                for n in need.iter_mut().take(self.devices.len()) {
                    *n = 1;
                }
                pieces = self.devices.len();
            } else {
                pieces = self
                    .map
                    .map(request.lba.0, request.blocks.0, |p| {
                        need[usize::from(p.device)] += 1;
                    })
                    .unwrap_or(0);
            }
            for (i, n) in need.iter().enumerate().take(self.devices.len()) {
                if *n > 0 && self.outstanding[i].saturating_add(*n) > self.depth[i] {
                    return Err(SubmitError::new(SubmitErrorKind::QueueFull, request));
                }
            }
        }
        self.parents.take(slot, request.tag);
        if let Err(e) = valid {
            self.finish_now(slot, Some(e));
            return Ok(());
        }
        if request.operation == Operation::CompareAndWrite && pieces > 1 {
            self.finish_now(slot, Some(BlockError::new(ErrorKind::InvalidRequest)));
            return Ok(());
        }
        let bs = u64::from(self.geometry.block_size);
        let mut accepted = 0u32;
        let mut first_error: Option<BlockError> = None;
        let Self {
            devices,
            outstanding,
            map,
            ..
        } = self;
        let mut sent = Sent {
            accepted: &mut accepted,
            first_error: &mut first_error,
        };
        if flush {
            for i in 0..devices.len() {
                let child = BlockRequest::flush(child_tag(slot, i)).with_flags(request.flags);
                sent.send(devices, outstanding, now, i, child);
            }
        } else {
            let mut k = 0usize;
            map.map(request.lba.0, request.blocks.0, |p| {
                let tag = child_tag(slot, k);
                k += 1;
                let lba = Lba(p.device_lba);
                let blocks = BlockCount(p.blocks);
                let child = match request.operation {
                    Operation::Read | Operation::Write => {
                        let sg = request.sg.slice(p.offset * bs, u64::from(p.blocks) * bs);
                        match sg {
                            Ok(sg) if request.operation == Operation::Read => {
                                Some(BlockRequest::read(tag, lba, blocks, sg))
                            }
                            Ok(sg) => Some(BlockRequest::write(tag, lba, blocks, sg)),
                            Err(_) => None,
                        }
                    }
                    Operation::Unmap => Some(BlockRequest::unmap(tag, lba, blocks)),
                    Operation::WriteZeroes => Some(BlockRequest::write_zeroes(tag, lba, blocks)),
                    Operation::CompareAndWrite => Some(BlockRequest::compare_and_write(
                        tag,
                        lba,
                        blocks,
                        request.sg.clone(),
                    )),
                    Operation::Flush => None,
                };
                match child {
                    Some(child) => sent.send(
                        devices,
                        outstanding,
                        now,
                        usize::from(p.device),
                        child.with_flags(request.flags),
                    ),
                    None => {
                        sent.first_error
                            .get_or_insert(BlockError::new(ErrorKind::InvalidRequest));
                    }
                }
            });
        }
        let s = &mut self.parents.slots[usize::from(slot)];
        s.remaining = accepted;
        s.error = first_error;
        if accepted == 0 {
            // Nothing went down: either every child was refused (the first error), or the
            // request had no blocks (done, successfully).
            self.finish_now(slot, first_error);
        }
        Ok(())
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        // Bounded: at most P ready slots.
        while let Some(slot) = self.ready.pop_front() {
            let completion = self.parents.release(slot);
            done(completion);
        }
        let Self {
            devices,
            outstanding,
            parents,
            map,
            ..
        } = self;
        let mut next: Option<Instant> = None;
        for (index, device) in devices.iter_mut().enumerate() {
            // The volume owns its members: one with nothing of ours outstanding has nothing to
            // hand back and no timer we need.
            if outstanding[index] == 0 {
                continue;
            }
            let at = device.poll(now, memory, &mut |c: Completion| {
                let slot = (c.tag.0 >> 32) as usize;
                let Some(s) = parents.slots.get_mut(slot) else {
                    return;
                };
                if !s.active || s.remaining == 0 {
                    return; // not ours, or already complete: never completes twice
                }
                outstanding[index] = outstanding[index].saturating_sub(1);
                if let Err(e) = c.result
                    && s.error.is_none()
                {
                    let located =
                        matches!(e.kind(), ErrorKind::OutOfRange | ErrorKind::MediumError);
                    let translated = match e.info() {
                        Some(info) if located => match map.reverse(index as u16, info) {
                            Some(lba) => BlockError::with_info(e.kind(), lba),
                            None => BlockError::new(e.kind()),
                        },
                        _ => e,
                    };
                    s.error = Some(translated);
                }
                s.remaining -= 1;
                if s.remaining == 0 {
                    let completion = parents.release(slot as u16);
                    done(completion);
                }
            });
            next = match (next, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if !self.ready.is_empty() {
            return Some(now);
        }
        next
    }
}
