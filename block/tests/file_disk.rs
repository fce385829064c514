//! `FileDisk` against a real host file, and the slow-path driver.

use block::{
    BlockCount, BlockDevice, BlockRequest, Completion, DriveError, ErrorKind, FileDisk, Geometry,
    Instant, Lba, MemAddr, Memory, MemoryRegions, SgList, SubmitError, Tag, run_to_completion,
};

fn temp_image(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("block-test-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn drive(disk: &mut FileDisk<4>, memory: &mut dyn Memory, request: BlockRequest) -> Completion {
    run_to_completion(disk, memory, Instant(0), request, 4, &mut |_| {
        panic!("no other request")
    })
    .unwrap()
    .completion
}

#[test]
fn file_disk_reads_writes_and_zeroes_the_file() {
    let path = temp_image("rw", &vec![0x11u8; 8 * 512]);
    let mut disk = FileDisk::<4>::open(&path, 512).unwrap();
    assert_eq!(disk.geometry().block_count, 8);
    let mut buf = vec![0u8; 1024];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(0x4000), &mut buf).unwrap();

    memory.write(MemAddr(0x4000), &[0xAB; 1024]).unwrap();
    let sg = SgList::single(MemAddr(0x4000), 1024).unwrap();
    assert!(
        drive(
            &mut disk,
            &mut memory,
            BlockRequest::write(Tag(1), Lba(2), BlockCount(2), sg.clone())
        )
        .is_ok()
    );
    assert!(
        drive(
            &mut disk,
            &mut memory,
            BlockRequest::write_zeroes(Tag(2), Lba(3), BlockCount(1))
        )
        .is_ok()
    );
    assert!(drive(&mut disk, &mut memory, BlockRequest::flush(Tag(3))).is_ok());
    assert!(
        drive(
            &mut disk,
            &mut memory,
            BlockRequest::read(Tag(4), Lba(2), BlockCount(2), sg.clone())
        )
        .is_ok()
    );
    let mut back = [0u8; 1024];
    memory.read(MemAddr(0x4000), &mut back).unwrap();
    assert!(back[..512].iter().all(|&b| b == 0xAB));
    assert!(back[512..].iter().all(|&b| b == 0));

    let on_disk = std::fs::read(&path).unwrap();
    assert!(on_disk[..1024].iter().all(|&b| b == 0x11));
    assert!(on_disk[1024..1536].iter().all(|&b| b == 0xAB));
    assert!(on_disk[1536..2048].iter().all(|&b| b == 0));

    let c = drive(
        &mut disk,
        &mut memory,
        BlockRequest::read(Tag(5), Lba(7), BlockCount(2), sg),
    );
    assert_eq!(c.result.unwrap_err().kind(), ErrorKind::OutOfRange);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn file_disk_compare_and_write_and_read_only() {
    let path = temp_image("caw", &vec![0u8; 2 * 512]);
    let mut disk = FileDisk::<4>::open(&path, 512).unwrap();
    let mut buf = vec![0u8; 1024];
    buf[512..].fill(0x5A);
    buf[100] = 1;
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(0), &mut buf).unwrap();
    let sg = SgList::single(MemAddr(0), 1024).unwrap();
    let c = drive(
        &mut disk,
        &mut memory,
        BlockRequest::compare_and_write(Tag(1), Lba(0), BlockCount(1), sg.clone()),
    );
    assert_eq!(c.result.unwrap_err().info(), Some(100));
    memory.write(MemAddr(100), &[0]).unwrap();
    assert!(
        drive(
            &mut disk,
            &mut memory,
            BlockRequest::compare_and_write(Tag(2), Lba(0), BlockCount(1), sg)
        )
        .is_ok()
    );
    assert!(
        std::fs::read(&path).unwrap()[..512]
            .iter()
            .all(|&b| b == 0x5A)
    );

    let mut read_only = FileDisk::<4>::open_read_only(&path, 512).unwrap();
    let c = drive(
        &mut read_only,
        &mut memory,
        BlockRequest::unmap(Tag(3), Lba(0), BlockCount(1)),
    );
    assert_eq!(c.result.unwrap_err().kind(), ErrorKind::WriteProtected);
    assert!(
        FileDisk::<4>::open(&path, 1000).is_err(),
        "length not a multiple of the block size"
    );
    std::fs::remove_file(path).unwrap();
}

/// A device that accepts requests and never completes them.
struct BlackHole;

impl BlockDevice for BlackHole {
    fn geometry(&self) -> Geometry {
        Geometry {
            block_size: 512,
            block_count: 1,
            max_transfer_blocks: 1,
            queue_depth: 1,
            features: Default::default(),
        }
    }
    fn submit(&mut self, _: Instant, _: BlockRequest) -> Result<(), SubmitError> {
        Ok(())
    }
    fn poll(
        &mut self,
        now: Instant,
        _: &mut dyn Memory,
        _: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        Some(Instant(now.0 + 1))
    }
}

#[test]
fn driver_gives_up_after_its_poll_limit() {
    let mut memory = MemoryRegions::<1>::new();
    let result = run_to_completion(
        &mut BlackHole,
        &mut memory,
        Instant(0),
        BlockRequest::flush(Tag(1)),
        10,
        &mut |_| {},
    );
    assert_eq!(result.unwrap_err(), DriveError::PollLimit);
}
