//! The asynchronous data path: file requests split at block boundaries into device reads, with
//! pointer blocks fetched into the cache by asynchronous metadata reads.

use block::{
    BlockCount, BlockDevice, BlockError, BlockRequest, Completion, ErrorKind, Instant, Lba,
    MemAddr, Memory, SgList, SubmitErrorKind, Tag,
};
use fss::{FileHandle, FileRequest, FsError, FsErrorKind};

use crate::volume::{Step, Vmfs};

/// File requests outstanding at once.
pub const MAX_REQUESTS: usize = 32;
/// Device reads (data and metadata) outstanding at once.
pub const MAX_CHILDREN: usize = 32;
/// Tags of device reads are `CHILD_TAG_BASE + slot`.
const CHILD_TAG_BASE: u64 = 1 << 40;
/// Steps one request may take in one poll before yielding to the others.
const STEPS_PER_POLL: usize = 256;

pub(crate) struct Parent<const SG: usize> {
    tag: Tag,
    handle: usize,
    offset: u64,
    len: u64,
    /// Bytes of the request that lie inside the file (the rest reads as zeros).
    valid: u64,
    sg: SgList<SG>,
    issued: u64,
    outstanding: u16,
    error: Option<BlockError>,
    waiting: Option<u64>,
}

#[derive(Clone, Copy)]
enum Child {
    Data { parent: usize },
    Meta { raw: u64, slot: u16 },
}

pub(crate) struct Engine<const SG: usize> {
    parents: [Option<Parent<SG>>; MAX_REQUESTS],
    children: [Option<Child>; MAX_CHILDREN],
    pub(crate) stash: heapless::Deque<Completion, 64>,
}

impl<const SG: usize> Engine<SG> {
    pub(crate) fn new() -> Self {
        Self {
            parents: core::array::from_fn(|_| None),
            children: [None; MAX_CHILDREN],
            stash: heapless::Deque::new(),
        }
    }

    /// Whether an asynchronous metadata read is filling cache slot `slot`.
    pub(crate) fn slot_busy(&self, slot: u16) -> bool {
        self.children
            .iter()
            .flatten()
            .any(|c| matches!(c, Child::Meta { slot: s, .. } if *s == slot))
    }

    pub(crate) fn uses_handle(&self, handle: usize) -> bool {
        self.parents.iter().flatten().any(|p| p.handle == handle)
    }
}

fn zero_fill<const SG: usize>(
    memory: &mut dyn Memory,
    sg: &SgList<SG>,
    offset: u64,
    len: u64,
) -> Result<(), BlockError> {
    if len == 0 {
        return Ok(());
    }
    let part = sg
        .slice(offset, len)
        .map_err(|_| BlockError::new(ErrorKind::InvalidRequest))?;
    for segment in part.segments() {
        memory
            .slice_mut(segment.addr, segment.len as usize)
            .map_err(|_| BlockError::new(ErrorKind::MemoryFault))?
            .fill(0);
    }
    Ok(())
}

impl<D: BlockDevice<SG>, const SG: usize> Vmfs<D, SG> {
    pub(crate) fn submit_request(
        &mut self,
        request: FileRequest<SG>,
    ) -> Result<(), (FsError, FileRequest<SG>)> {
        if self
            .io
            .parents
            .iter()
            .flatten()
            .any(|p| p.tag == request.tag)
        {
            return Err((
                FsError::new(FsErrorKind::InvalidRequest, "duplicate tag", request.tag.0),
                request,
            ));
        }
        let Some(slot) = self.io.parents.iter().position(Option::is_none) else {
            return Err((
                FsError::new(FsErrorKind::NoSpace, "request table", MAX_REQUESTS as u64),
                request,
            ));
        };
        let handle = request.handle.0 as usize;
        let align = self.block_bytes;
        let mut error = None;
        let size = match self.open.get(handle) {
            Some(Some(file)) => file.meta.size,
            _ => {
                error = Some(BlockError::new(ErrorKind::InvalidRequest));
                0
            }
        };
        let aligned = request.offset.is_multiple_of(align) && request.len.is_multiple_of(align);
        let inside = (request.offset < size || request.len == 0)
            && request.offset.checked_add(request.len).is_some();
        if !aligned || !inside || request.sg.total_len() != request.len {
            error.get_or_insert(BlockError::with_info(
                ErrorKind::InvalidRequest,
                request.offset,
            ));
        }
        let valid = size.saturating_sub(request.offset).min(request.len);
        self.io.parents[slot] = Some(Parent {
            tag: request.tag,
            handle,
            offset: request.offset,
            len: request.len,
            valid,
            sg: request.sg,
            issued: 0,
            outstanding: 0,
            error,
            waiting: None,
        });
        Ok(())
    }

    fn child_done(&mut self, completion: Completion) {
        let Some(index) = completion.tag.0.checked_sub(CHILD_TAG_BASE) else {
            return;
        };
        let Some(child) = self
            .io
            .children
            .get_mut(index as usize)
            .and_then(Option::take)
        else {
            return;
        };
        match child {
            Child::Data { parent } => {
                if let Some(p) = self.io.parents[parent].as_mut() {
                    p.outstanding = p.outstanding.saturating_sub(1);
                    if let Err(e) = completion.result {
                        p.error.get_or_insert(e);
                    }
                }
            }
            Child::Meta { raw, slot } => {
                match completion.result {
                    Ok(()) => self.cache_loaded(raw, slot),
                    Err(_) => self.cache_drop(raw, slot),
                }
                for p in self.io.parents.iter_mut().flatten() {
                    if p.waiting == Some(raw) {
                        p.waiting = None;
                        if let Err(e) = completion.result {
                            p.error.get_or_insert(e);
                        }
                    }
                }
            }
        }
    }

    fn free_child(&self) -> Option<usize> {
        self.io.children.iter().position(Option::is_none)
    }

    /// Starts reading pointer block `raw` (or the one its location depends on). Returns the
    /// address now being read, or `None` when no slot is free yet.
    fn start_fetch(
        &mut self,
        now: Instant,
        memory: &dyn Memory,
        raw: u64,
    ) -> Result<Option<u64>, BlockError> {
        let mut raw = raw;
        for _ in 0..8 {
            if self.cache_loading(raw) {
                return Ok(Some(raw));
            }
            let step = self
                .pb_location(memory, raw, 0)
                .map_err(|e| BlockError::with_info(e.block_kind(), e.at()))?;
            match step {
                Step::Need(inner) => raw = inner,
                Step::Volume(offset, len) => {
                    let Some(child) = self.free_child() else {
                        return Ok(None);
                    };
                    let Some(slot) = self.cache_alloc(raw) else {
                        return Ok(None);
                    };
                    let dst: MemAddr = self.slot_addr(slot);
                    let bb = self.block_bytes;
                    let sg = SgList::<SG>::single(dst, len as u32)
                        .map_err(|_| BlockError::new(ErrorKind::MemoryFault))?;
                    let request = BlockRequest::read(
                        Tag(CHILD_TAG_BASE + child as u64),
                        Lba(offset / bb),
                        BlockCount((len / bb) as u32),
                        sg,
                    );
                    match self.device.submit(now, request) {
                        Ok(()) => {
                            self.counters.metadata_reads += 1;
                            self.io.children[child] = Some(Child::Meta { raw, slot });
                            return Ok(Some(raw));
                        }
                        Err(e) => {
                            self.cache_drop(raw, slot);
                            return match e.kind {
                                SubmitErrorKind::QueueFull => Ok(None),
                                _ => Err(BlockError::new(ErrorKind::InvalidRequest)),
                            };
                        }
                    }
                }
                Step::Zero(_) => return Err(BlockError::with_info(ErrorKind::MediumError, raw)),
            }
        }
        Err(BlockError::with_info(ErrorKind::MediumError, raw))
    }

    /// Issues what can be issued of parent `index`. Returns whether it is blocked on a full
    /// table or queue (so a poll soon may help).
    fn advance(&mut self, now: Instant, memory: &mut dyn Memory, index: usize) -> bool {
        let Some(mut p) = self.io.parents[index].take() else {
            return false;
        };
        let mut blocked = false;
        for _ in 0..STEPS_PER_POLL {
            if p.error.is_some() || p.waiting.is_some() || p.issued >= p.len {
                break;
            }
            if p.issued >= p.valid {
                if let Err(e) = zero_fill(memory, &p.sg, p.issued, p.len - p.issued) {
                    p.error = Some(e);
                }
                p.issued = p.len;
                break;
            }
            let at = p.offset + p.issued;
            let step = match self.open[p.handle].as_ref() {
                Some(file) => self.map(&*memory, file, at, 0),
                None => Err(FsError::new(FsErrorKind::BadHandle, "file handle", 0)),
            };
            match step {
                Err(e) => p.error = Some(BlockError::with_info(e.block_kind(), e.at())),
                Ok(Step::Zero(n)) => {
                    let n = n.min(p.valid - p.issued).max(1);
                    if let Err(e) = zero_fill(memory, &p.sg, p.issued, n) {
                        p.error = Some(e);
                    }
                    p.issued += n;
                }
                Ok(Step::Volume(vol, n)) => {
                    let bb = self.block_bytes;
                    let want = n.min(p.valid - p.issued).min(self.max_transfer_bytes);
                    let len = match self.data_read_len(vol, n, want) {
                        Ok(len) if len <= p.len - p.issued => len,
                        _ => {
                            p.error = Some(BlockError::with_info(ErrorKind::MediumError, vol));
                            break;
                        }
                    };
                    let Some(child) = self.free_child() else {
                        blocked = true;
                        break;
                    };
                    let sg = match p.sg.slice(p.issued, len) {
                        Ok(sg) => sg,
                        Err(_) => {
                            p.error = Some(BlockError::new(ErrorKind::InvalidRequest));
                            break;
                        }
                    };
                    let request = BlockRequest::read(
                        Tag(CHILD_TAG_BASE + child as u64),
                        Lba(vol / bb),
                        BlockCount((len / bb) as u32),
                        sg,
                    );
                    match self.device.submit(now, request) {
                        Ok(()) => {
                            self.counters.data_reads += 1;
                            self.io.children[child] = Some(Child::Data { parent: index });
                            p.outstanding += 1;
                            p.issued += len;
                        }
                        Err(e) if e.kind == SubmitErrorKind::QueueFull => {
                            blocked = true;
                            break;
                        }
                        Err(_) => p.error = Some(BlockError::new(ErrorKind::InvalidRequest)),
                    }
                }
                Ok(Step::Need(raw)) => match self.start_fetch(now, &*memory, raw) {
                    Ok(Some(fetching)) => p.waiting = Some(fetching),
                    Ok(None) => {
                        blocked = true;
                        break;
                    }
                    Err(e) => p.error = Some(e),
                },
            }
        }
        self.io.parents[index] = Some(p);
        blocked
    }

    /// Applies completions that arrived during synchronous reads.
    pub(crate) fn drain_stash(&mut self) {
        while let Some(c) = self.take_stash() {
            self.child_done(c);
        }
    }

    pub(crate) fn poll_requests(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        self.drain_stash();
        let mut arrived: heapless::Vec<Completion, { MAX_CHILDREN + 1 }> = heapless::Vec::new();
        let mut next = self.device.poll(now, memory, &mut |c| {
            let _ = arrived.push(c);
        });
        for c in arrived {
            self.child_done(c);
        }
        let mut again = false;
        for index in 0..MAX_REQUESTS {
            if self.advance(now, memory, index) {
                again = true;
            }
            let finished = match &self.io.parents[index] {
                Some(p) => {
                    p.outstanding == 0
                        && (p.error.is_some() || (p.issued >= p.len && p.waiting.is_none()))
                }
                None => false,
            };
            if finished && let Some(p) = self.io.parents[index].take() {
                let mut result = match p.error {
                    Some(e) => Err(e),
                    None => Ok(()),
                };
                if result.is_ok() && p.valid < p.len {
                    // The last device block may carry bytes past the end of the file.
                    result = zero_fill(memory, &p.sg, p.valid, p.len - p.valid);
                }
                done(Completion { tag: p.tag, result });
            }
        }
        let busy = self
            .io
            .parents
            .iter()
            .flatten()
            .any(|p| p.waiting.is_none() && p.error.is_none() && p.issued < p.len);
        if again || busy {
            next = Some(next.map_or(now, |n| n.min(now)));
        }
        next
    }

    /// Whether any file request is outstanding.
    pub fn has_outstanding(&self) -> bool {
        self.io.parents.iter().any(Option::is_some)
    }

    pub(crate) fn check_close(&self, handle: FileHandle) -> Result<(), FsError> {
        if self.io.uses_handle(handle.0 as usize) {
            return Err(FsError::new(
                FsErrorKind::InvalidRequest,
                "file handle busy",
                handle.0 as u64,
            ));
        }
        Ok(())
    }
}
