//! Flat extents (FLAT, VMFS, VMFSRDM, VMFSRAW) as block devices: a window of the device that
//! holds the file, from an offset, passed through without copying.

use block::{
    BlockDevice, BlockError, BlockRequest, Completion, Geometry, Instant, Lba, Memory, SubmitError,
    SubmitErrorKind,
};

/// A flat extent: `sectors` sectors of `D` from sector `offset`, as a block device of its own.
/// Requests are passed through with their tags and the block address shifted; a request
/// outside the window completes with an error without reaching `D`.
pub struct FlatExtent<D, const Q: usize = 8> {
    dev: D,
    offset: u64,
    sectors: u64,
    refused: heapless::Deque<Completion, Q>,
}

impl<D: BlockDevice, const Q: usize> FlatExtent<D, Q> {
    /// The window `[offset, offset + sectors)` of `dev`, which must lie inside it and have
    /// 512-byte blocks.
    pub fn new(dev: D, offset: u64, sectors: u64) -> crate::Result<Self> {
        let g = dev.geometry();
        let end = offset
            .checked_add(sectors)
            .ok_or(crate::error::err(crate::ErrorKind::BadSize, offset))?;
        if g.block_size != 512 || end > g.block_count || sectors == 0 {
            return Err(crate::error::err(crate::ErrorKind::BadSize, end));
        }
        Ok(Self {
            dev,
            offset,
            sectors,
            refused: heapless::Deque::new(),
        })
    }

    /// The inner device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Gives the inner device back.
    pub fn into_inner(self) -> D {
        self.dev
    }
}

impl<D: BlockDevice, const Q: usize> BlockDevice for FlatExtent<D, Q> {
    fn geometry(&self) -> Geometry {
        Geometry {
            block_count: self.sectors,
            ..self.dev.geometry()
        }
    }

    fn submit(&mut self, now: Instant, mut request: BlockRequest) -> Result<(), SubmitError> {
        if let Err(e) = request.validate(&self.geometry()) {
            return match self.refused.push_back(Completion::err(request.tag, e)) {
                Ok(()) => Ok(()),
                Err(_) => Err(SubmitError::new(SubmitErrorKind::QueueFull, request)),
            };
        }
        let original = request.lba;
        request.lba = Lba(original.0 + self.offset);
        self.dev.submit(now, request).map_err(|mut e| {
            e.request.lba = original;
            e
        })
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        while let Some(c) = self.refused.pop_front() {
            done(c);
        }
        self.dev.poll(now, memory, &mut |c: Completion| {
            // The inner device locates errors in its own blocks; shift them back.
            let result = c.result.map_err(|e| match e.info() {
                Some(at) if at >= self.offset => BlockError::with_info(e.kind(), at - self.offset),
                _ => e,
            });
            done(Completion { tag: c.tag, result });
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use block::{BlockCount, MemAddr, MemoryRegions, RamDisk, SgList, Tag, run_to_completion};

    #[test]
    fn a_window_of_the_device() {
        let mut storage = vec![0u8; 64 * 512];
        for (i, b) in storage.iter_mut().enumerate() {
            *b = (i / 512) as u8;
        }
        let disk = RamDisk::<4>::new(&mut storage, 512).unwrap();
        let mut flat = FlatExtent::<_, 4>::new(disk, 10, 20).unwrap();
        assert_eq!(flat.geometry().block_count, 20);
        let mut page = [0u8; 512];
        let mut memory = MemoryRegions::<1>::new();
        memory.add(MemAddr(0), &mut page).unwrap();
        let sg = SgList::single(MemAddr(0), 512).unwrap();
        let req = BlockRequest::read(Tag(1), Lba(3), BlockCount(1), sg.clone());
        let d = run_to_completion(&mut flat, &mut memory, Instant(0), req, 4, &mut |_| {}).unwrap();
        assert!(d.completion.is_ok());
        use block::Memory as _;
        assert_eq!(memory.slice(MemAddr(0), 1).unwrap()[0], 13);
        let req = BlockRequest::read(Tag(2), Lba(20), BlockCount(1), sg);
        let d = run_to_completion(&mut flat, &mut memory, Instant(0), req, 4, &mut |_| {}).unwrap();
        assert!(!d.completion.is_ok(), "outside the window");
        assert!(FlatExtent::<_, 4>::new(flat.into_inner(), 60, 8).is_err());
    }
}
