//! The body of the `scan` fuzz target, shared with a proptest in `tests/robustness.rs`: lays
//! arbitrary bytes over the LVM metadata of up to three in-memory devices, scans them, mounts
//! every complete volume and reads its first and last blocks. Nothing may panic.
#![allow(dead_code, missing_docs, unreachable_pub)]

use block::{
    BlockCount, BlockDevice, BlockRequest, Instant, Lba, MemAddr, MemoryRegions, RamDisk, SgList,
    Tag,
};
use lvm::wire::{HEADER_OFFSET, Layout};
use lvm::{MetadataIo, MountMode, MountTable, Scan, VolumeStatus, scan};

/// Bytes per device: enough for the LVM 5 and 6 tables and a little data.
pub const DEVICE_BYTES: usize = 4 << 20;

/// Where the input bytes of one device go: header, volume table, extent table.
fn places() -> [(u64, usize); 3] {
    let v5 = Layout::new(5, 0).unwrap();
    [
        (HEADER_OFFSET, 512),
        (v5.volume_descriptor_offset(0).unwrap(), 512),
        (v5.pe_entry_offset(0).unwrap(), 512),
    ]
}

/// Returns how many volumes were mounted.
pub fn run(data: &[u8]) -> usize {
    let Some((&count, mut rest)) = data.split_first() else {
        return 0;
    };
    let count = usize::from(count % 3) + 1;
    let mut storage: Vec<Vec<u8>> = (0..count).map(|_| vec![0u8; DEVICE_BYTES]).collect();
    let v6 = Layout::new(6, 4096).unwrap();
    for bytes in storage.iter_mut() {
        for (offset, len) in places() {
            let take = rest.len().min(len);
            let (now, later) = rest.split_at(take);
            bytes[offset as usize..][..take].copy_from_slice(now);
            rest = later;
        }
        // The same volume and extent bytes where LVM 6 looks for them.
        let vt = places()[1].0 as usize;
        let pt = places()[2].0 as usize;
        let (a, b) = (
            v6.volume_descriptor_offset(0).unwrap() as usize,
            v6.pe_entry_offset(0).unwrap() as usize,
        );
        bytes.copy_within(vt..vt + 512, a);
        bytes.copy_within(pt..pt + 512, b);
    }
    let mut disks: Vec<RamDisk<'_, 4>> = storage
        .iter_mut()
        .map(|b| RamDisk::new(b, 512).unwrap())
        .collect();
    let mut meta = vec![0u8; 64 * 1024];
    let mut page = vec![0u8; 4096];
    let mut memory = MemoryRegions::<2>::new();
    memory.add(MemAddr(0x10_0000), &mut meta).unwrap();
    memory.add(MemAddr(0x20_0000), &mut page).unwrap();
    let found: Scan<4, 16> = {
        let mut io =
            MetadataIo::new(&mut memory, MemAddr(0x10_0000), 64 * 1024, Instant(0)).unwrap();
        scan(&mut disks, &[None, None, None][..count], &mut io).unwrap()
    };
    let mut mounted_count = 0;
    for volume in found.volumes.iter() {
        if !matches!(
            volume.status,
            VolumeStatus::Complete | VolumeStatus::Snapshot
        ) {
            continue;
        }
        let members: heapless::Vec<&mut RamDisk<'_, 4>, 4> = {
            // Hand out the member disks in member order (each at most once).
            let mut taken: Vec<Option<&mut RamDisk<'_, 4>>> = disks.iter_mut().map(Some).collect();
            volume
                .member_devices()
                .filter_map(|i| taken.get_mut(i).and_then(Option::take))
                .collect()
        };
        let mut table = MountTable::<1>::new();
        let Ok(mut mounted) = table.mount::<_, 4, 16, 4, 16>(volume, members, MountMode::Force)
        else {
            continue;
        };
        mounted_count += 1;
        let total = mounted.geometry().block_count;
        for (tag, lba) in [(1u64, 0u64), (2, total.saturating_sub(1)), (3, total)] {
            let sg = SgList::single(MemAddr(0x20_0000), 512).unwrap();
            let request = BlockRequest::read(Tag(tag), Lba(lba), BlockCount(1), sg);
            if mounted.submit(Instant(0), request).is_ok() {
                let mut n = 0;
                mounted.poll(Instant(0), &mut memory, &mut |_| n += 1);
                assert_eq!(n, 1, "one completion per request");
            }
        }
    }
    mounted_count
}
