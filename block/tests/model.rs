//! A random mix of overlapping requests on `RamDisk`, with and without the fault injector,
//! checked against a simple model of what the disk must hold, and against the exactly-once
//! contract.

use core::time::Duration;

use block::testing::{ExactlyOnce, FaultConfig, FaultInjector, Violation};
use block::{
    BlockCount, BlockDevice, BlockRequest, Completion, ErrorKind, Geometry, Instant, Lba, MemAddr,
    Memory, MemoryRegions, RamDisk, Segment, SgList, SubmitError, Tag,
};
use proptest::prelude::*;

const BLOCK: usize = 512;
const DISK_BLOCKS: usize = 32;
const MAX_BLOCKS: u32 = 4;
const QUEUE: usize = 8;
/// Each request of a batch owns one slot of memory, big enough for a compare-and-write.
const SLOT: usize = 2 * MAX_BLOCKS as usize * BLOCK;

#[derive(Debug, Clone, Copy)]
enum Op {
    Read,
    Write,
    Unmap,
    WriteZeroes,
    CompareAndWrite,
    Flush,
}

#[derive(Debug, Clone)]
struct Step {
    op: Op,
    lba: u64,
    blocks: u32,
    /// Where the SG list is cut in two (the halves are placed in memory in swapped order).
    cut: u32,
    /// Whether to poll (and move time forward by `advance_ns`) after submitting.
    poll_after: bool,
    advance_ns: u64,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![
            3 => Just(Op::Write),
            3 => Just(Op::Read),
            1 => Just(Op::Unmap),
            1 => Just(Op::WriteZeroes),
            1 => Just(Op::CompareAndWrite),
            1 => Just(Op::Flush),
        ],
        // Occasionally past the end of the disk, to exercise range errors.
        0u64..DISK_BLOCKS as u64 + 2,
        1u32..=MAX_BLOCKS,
        any::<u32>(),
        any::<bool>(),
        0u64..3000,
    )
        .prop_map(|(op, lba, blocks, cut, poll_after, advance_ns)| Step {
            op,
            lba,
            blocks,
            cut,
            poll_after,
            advance_ns,
        })
}

fn fill_block(buf: &mut [u8], value: u32) {
    for word in buf.chunks_exact_mut(4) {
        word.copy_from_slice(&value.to_le_bytes());
    }
}

/// The value a block holds, or `None` if it mixes two writes.
fn block_value(buf: &[u8]) -> Option<u32> {
    let first = u32::from_le_bytes(buf[..4].try_into().unwrap());
    buf.chunks_exact(4)
        .all(|w| u32::from_le_bytes(w.try_into().unwrap()) == first)
        .then_some(first)
}

/// The SG list for `len` bytes of slot `slot`: two segments, placed in swapped order so that
/// order mistakes show.
fn slot_sg(slot: usize, len: usize, cut: u32) -> SgList {
    let base = (slot * SLOT) as u64;
    let cut = if len == 0 { 0 } else { cut as usize % len };
    let head = Segment::new(MemAddr(base + (SLOT - cut) as u64), cut as u32);
    let tail = Segment::new(MemAddr(base), (len - cut) as u32);
    SgList::from_segments(&[head, tail]).unwrap()
}

/// Per-slot byte offset of logical byte `i` for the layout `slot_sg` makes.
fn slot_bytes(memory: &MemoryRegions<'_, 1>, slot: usize, len: usize, cut: u32) -> Vec<u8> {
    let sg = slot_sg(slot, len, cut);
    let mut out = vec![0u8; len];
    memory.gather(&sg, &mut out).unwrap();
    out
}

struct Issued {
    step: Step,
    tag: Tag,
    slot: usize,
    /// The value a write-like request stores (0 for unmap / write zeroes).
    value: Option<u32>,
    /// For compare-and-write: the value the compare half holds.
    expected: u32,
}

impl Issued {
    fn range(&self) -> core::ops::Range<u64> {
        self.step.lba..self.step.lba + self.step.blocks as u64
    }
    fn in_range(&self) -> bool {
        self.step.lba + self.step.blocks as u64 <= DISK_BLOCKS as u64
    }
}

fn request_for(issued: &Issued) -> BlockRequest {
    let s = &issued.step;
    let (lba, n) = (Lba(s.lba), BlockCount(s.blocks));
    let len = s.blocks as usize * BLOCK;
    match s.op {
        Op::Read => BlockRequest::read(issued.tag, lba, n, slot_sg(issued.slot, len, s.cut)),
        Op::Write => BlockRequest::write(issued.tag, lba, n, slot_sg(issued.slot, len, s.cut)),
        Op::Unmap => BlockRequest::unmap(issued.tag, lba, n),
        Op::WriteZeroes => BlockRequest::write_zeroes(issued.tag, lba, n),
        Op::CompareAndWrite => BlockRequest::compare_and_write(
            issued.tag,
            lba,
            n,
            slot_sg(issued.slot, 2 * len, s.cut),
        ),
        Op::Flush => BlockRequest::flush(issued.tag),
    }
}

/// Runs `batches` against `device`, checking each completion against the model.
///
/// `strict`: completions arrive in the order requests took effect (a bare `RamDisk`), so every
/// read and compare is checked exactly against the model at that moment. Otherwise (faults,
/// reordering) each block must hold the old value or the value of one request of the batch
/// that touched it, and never a mix within a block.
fn run_model<D: BlockDevice>(
    device: &mut D,
    contents: impl Fn(&D) -> Vec<u8>,
    batches: &[Vec<Step>],
    strict: bool,
) -> Result<(), TestCaseError> {
    let mut memory_bytes = vec![0u8; QUEUE * SLOT];
    let mut memory = MemoryRegions::<1>::new();
    memory.add(MemAddr(0), &mut memory_bytes).unwrap();
    let mut model = vec![0u32; DISK_BLOCKS];
    let mut next_value = 1u32;
    let mut next_tag = 0u64;
    let mut now = Instant(0);

    for batch in batches {
        let before = model.clone();
        let mut issued: Vec<Issued> = Vec::new();
        let mut results: Vec<(usize, Completion)> = Vec::new();
        let mut arrivals: Vec<Completion> = Vec::new();

        let handle = |arrivals: &mut Vec<Completion>,
                      issued: &Vec<Issued>,
                      memory: &MemoryRegions<'_, 1>,
                      model: &mut Vec<u32>,
                      results: &mut Vec<(usize, Completion)>|
         -> Result<(), TestCaseError> {
            for completion in arrivals.drain(..) {
                let index = issued.iter().position(|i| i.tag == completion.tag).unwrap();
                let item = &issued[index];
                results.push((index, completion));
                if !item.in_range() && !matches!(item.step.op, Op::Flush) {
                    // Under faults an injected error may come first; never success.
                    let kind = completion.result.unwrap_err().kind();
                    prop_assert!(kind == ErrorKind::OutOfRange || !strict, "{:?}", kind);
                    continue;
                }
                if !strict {
                    continue;
                }
                match item.step.op {
                    Op::Read => {
                        prop_assert!(completion.is_ok());
                        let data = slot_bytes(
                            memory,
                            item.slot,
                            item.step.blocks as usize * BLOCK,
                            item.step.cut,
                        );
                        for (k, b) in item.range().enumerate() {
                            prop_assert_eq!(
                                block_value(&data[k * BLOCK..(k + 1) * BLOCK]),
                                Some(model[b as usize])
                            );
                        }
                    }
                    Op::Write | Op::Unmap | Op::WriteZeroes => {
                        prop_assert!(completion.is_ok());
                        for b in item.range() {
                            model[b as usize] = item.value.unwrap();
                        }
                    }
                    Op::CompareAndWrite => {
                        let mismatch = item
                            .range()
                            .position(|b| model[b as usize] != item.expected);
                        match mismatch {
                            None => {
                                prop_assert!(completion.is_ok());
                                for b in item.range() {
                                    model[b as usize] = item.value.unwrap();
                                }
                            }
                            Some(k) => {
                                let err = completion.result.unwrap_err();
                                prop_assert_eq!(err.kind(), ErrorKind::Miscompare);
                                // The first differing byte is the first byte of that block.
                                prop_assert_eq!(err.info(), Some((k * BLOCK) as u64));
                            }
                        }
                    }
                    Op::Flush => prop_assert!(completion.is_ok()),
                }
            }
            Ok(())
        };

        for (slot, step) in batch.iter().enumerate() {
            let value = match step.op {
                Op::Write | Op::CompareAndWrite => {
                    next_value += 1;
                    Some(next_value)
                }
                Op::Unmap | Op::WriteZeroes => Some(0),
                Op::Read | Op::Flush => None,
            };
            // Compare against the current value of the first block, so both outcomes happen.
            let expected = before.get(step.lba as usize).copied().unwrap_or(0);
            let item = Issued {
                step: step.clone(),
                tag: Tag(next_tag),
                slot,
                value,
                expected,
            };
            next_tag += 1;
            let len = step.blocks as usize * BLOCK;
            match step.op {
                Op::Write => {
                    let mut data = vec![0u8; len];
                    data.chunks_exact_mut(BLOCK)
                        .for_each(|b| fill_block(b, value.unwrap()));
                    memory
                        .scatter(&slot_sg(slot, len, step.cut), &data)
                        .unwrap();
                }
                Op::CompareAndWrite => {
                    let mut data = vec![0u8; 2 * len];
                    let (cmp, new) = data.split_at_mut(len);
                    cmp.chunks_exact_mut(BLOCK)
                        .for_each(|b| fill_block(b, expected));
                    new.chunks_exact_mut(BLOCK)
                        .for_each(|b| fill_block(b, value.unwrap()));
                    memory
                        .scatter(&slot_sg(slot, 2 * len, step.cut), &data)
                        .unwrap();
                }
                _ => {}
            }
            let request = request_for(&item);
            issued.push(item);
            let accepted: Result<(), SubmitError> = device.submit(now, request);
            prop_assert!(
                accepted.is_ok(),
                "queue of {} refused a batch of {}",
                QUEUE,
                batch.len()
            );
            if step.poll_after {
                device.poll(now, &mut memory, &mut |c| arrivals.push(c));
                handle(&mut arrivals, &issued, &memory, &mut model, &mut results)?;
                now = Instant(now.0 + step.advance_ns);
            }
        }
        // Drain, following the device's timers; bounded.
        for _ in 0..10_000 {
            if results.len() == issued.len() {
                break;
            }
            let next = device.poll(now, &mut memory, &mut |c| arrivals.push(c));
            handle(&mut arrivals, &issued, &memory, &mut model, &mut results)?;
            match next {
                Some(t) => now = now.max(t),
                None => prop_assert_eq!(
                    results.len(),
                    issued.len(),
                    "device went idle with requests outstanding"
                ),
            }
        }
        prop_assert_eq!(results.len(), issued.len());

        let bytes = contents(device);
        for b in 0..DISK_BLOCKS {
            let actual = block_value(&bytes[b * BLOCK..(b + 1) * BLOCK]);
            prop_assert!(actual.is_some(), "block {} mixes two writes", b);
            let actual = actual.unwrap();
            if strict {
                prop_assert_eq!(actual, model[b], "block {}", b);
                continue;
            }
            let touching: Vec<&(usize, Completion)> = results
                .iter()
                .filter(|(i, _)| {
                    let item = &issued[*i];
                    item.value.is_some() && item.in_range() && item.range().contains(&(b as u64))
                })
                .collect();
            let any_ok = touching
                .iter()
                .any(|(i, c)| c.is_ok() && !matches!(issued[*i].step.op, Op::CompareAndWrite));
            let mut allowed: Vec<u32> = touching
                .iter()
                .map(|(i, _)| issued[*i].value.unwrap())
                .collect();
            if !any_ok {
                allowed.push(before[b]);
            }
            prop_assert!(
                allowed.contains(&actual),
                "block {} holds {} but only {:?} are possible",
                b,
                actual,
                allowed
            );
            model[b] = actual;
        }
        // Reads of a faulty run: every block old or new, never mixed.
        if !strict {
            for (index, completion) in &results {
                let item = &issued[*index];
                if matches!(item.step.op, Op::Read) && completion.is_ok() {
                    let data = slot_bytes(
                        &memory,
                        item.slot,
                        item.step.blocks as usize * BLOCK,
                        item.step.cut,
                    );
                    for k in 0..item.step.blocks as usize {
                        prop_assert!(block_value(&data[k * BLOCK..(k + 1) * BLOCK]).is_some());
                    }
                }
            }
        }
    }
    Ok(())
}

fn batches() -> impl Strategy<Value = Vec<Vec<Step>>> {
    prop::collection::vec(prop::collection::vec(step(), 1..=QUEUE), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn ramdisk_matches_model(batches in batches(), latency_ns in 0u64..5000) {
        let mut storage = vec![0u8; DISK_BLOCKS * BLOCK];
        let disk = RamDisk::<'_, QUEUE>::new(&mut storage, BLOCK as u32)
            .unwrap()
            .with_latency(Duration::from_nanos(latency_ns));
        let mut checked = ExactlyOnce::<_, QUEUE>::new(disk);
        run_model(&mut checked, |d| d.inner().contents().to_vec(), &batches, true)?;
        prop_assert_eq!(checked.violations(), &[] as &[Violation]);
        prop_assert_eq!(checked.outstanding(), 0);
    }

    #[test]
    fn ramdisk_under_faults_matches_model(
        batches in batches(),
        seed in any::<u64>(),
        fail_ppm in 0u32..300_000,
        delay_ppm in 0u32..500_000,
        tear_ppm in 0u32..500_000,
        reorder in any::<bool>(),
        lose_after in prop::option::of(0u64..60),
    ) {
        let mut storage = vec![0u8; DISK_BLOCKS * BLOCK];
        let disk = RamDisk::<'_, QUEUE>::new(&mut storage, BLOCK as u32).unwrap();
        let config = FaultConfig {
            fail_ppm,
            fail_kind: ErrorKind::MediumError,
            delay_ppm,
            max_delay: Duration::from_micros(20),
            reorder,
            tear_ppm,
            lose_after_submissions: lose_after,
        };
        let faulty = FaultInjector::<_, QUEUE>::new(disk, seed, config);
        let mut checked = ExactlyOnce::<_, QUEUE>::new(faulty);
        run_model(&mut checked, |d| d.inner().inner().contents().to_vec(), &batches, false)?;
        prop_assert_eq!(checked.violations(), &[] as &[Violation]);
        prop_assert_eq!(checked.outstanding(), 0);
    }
}

/// A deliberately broken device: it hands every completion out twice.
struct CompletesTwice<D>(D);

impl<D: BlockDevice> BlockDevice for CompletesTwice<D> {
    fn geometry(&self) -> Geometry {
        self.0.geometry()
    }
    fn submit(&mut self, now: Instant, request: BlockRequest) -> Result<(), SubmitError> {
        self.0.submit(now, request)
    }
    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        self.0.poll(now, memory, &mut |c| {
            done(c);
            done(c);
        })
    }
}

/// A deliberately broken device: it loses every third completion.
struct LosesCompletions<D>(D, u32);

impl<D: BlockDevice> BlockDevice for LosesCompletions<D> {
    fn geometry(&self) -> Geometry {
        self.0.geometry()
    }
    fn submit(&mut self, now: Instant, request: BlockRequest) -> Result<(), SubmitError> {
        self.0.submit(now, request)
    }
    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        let count = &mut self.1;
        self.0.poll(now, memory, &mut |c| {
            *count += 1;
            if !(*count).is_multiple_of(3) {
                done(c);
            }
        })
    }
}

fn flush_three<D: BlockDevice>(device: &mut D) {
    let mut memory = MemoryRegions::<1>::new();
    for t in 0..3 {
        device
            .submit(Instant(0), BlockRequest::flush(Tag(t)))
            .unwrap();
    }
    device.poll(Instant(0), &mut memory, &mut |_| {});
}

#[test]
fn checker_catches_a_double_completion() {
    let mut storage = vec![0u8; 4 * BLOCK];
    let disk = RamDisk::<'_, 4>::new(&mut storage, BLOCK as u32).unwrap();
    let mut checked = ExactlyOnce::<_, 4>::new(CompletesTwice(disk));
    flush_three(&mut checked);
    assert_eq!(
        checked.violations(),
        &[
            Violation::UnexpectedCompletion(Tag(0)),
            Violation::UnexpectedCompletion(Tag(1)),
            Violation::UnexpectedCompletion(Tag(2))
        ]
    );
}

#[test]
fn checker_catches_a_lost_completion() {
    let mut storage = vec![0u8; 4 * BLOCK];
    let disk = RamDisk::<'_, 4>::new(&mut storage, BLOCK as u32).unwrap();
    let mut checked = ExactlyOnce::<_, 4>::new(LosesCompletions(disk, 0));
    flush_three(&mut checked);
    assert!(checked.violations().is_empty());
    assert_eq!(checked.outstanding(), 1, "the lost tag stays outstanding");
}

#[test]
fn lost_device_fails_everything_after_the_loss() {
    let mut storage = vec![0u8; 4 * BLOCK];
    let disk = RamDisk::<'_, 4>::new(&mut storage, BLOCK as u32).unwrap();
    let config = FaultConfig {
        lose_after_submissions: Some(1),
        ..FaultConfig::default()
    };
    let mut faulty = FaultInjector::<_, 4>::new(disk, 7, config);
    let mut memory = MemoryRegions::<1>::new();
    faulty
        .submit(Instant(0), BlockRequest::flush(Tag(1)))
        .unwrap();
    faulty
        .submit(Instant(0), BlockRequest::flush(Tag(2)))
        .unwrap();
    let mut seen = Vec::new();
    faulty.poll(Instant(0), &mut memory, &mut |c| seen.push(c));
    seen.sort_by_key(|c| c.tag);
    assert!(seen[0].is_ok());
    assert_eq!(seen[1].result.unwrap_err().kind(), ErrorKind::DeviceLost);
    assert_eq!(faulty.stats().lost, 1);
}
