//! The scheduler queue through the NMP device on the simulated array: proportional shares,
//! a light world's latency next to a heavy one, and queue-depth throttling.

mod common;

use std::collections::HashMap;

use array::{Fault, Personality};
use block::{BlockCount, BlockRequest, Instant, Lba, MemAddr, SgList, Tag};
use common::*;
use psa::{NmpConfig, WorldId};

type Dev<'a, 'b> =
    psa::NmpDevice<&'b mut Sim<'a>, psa::DefaultAa, psa::MostRecentlyUsed, 4, 128, 8>;

/// Keeps `depth[w]` requests outstanding for each world (with `think_ns` between a world's
/// completion and its next request when its depth is 1) until `total` have completed;
/// returns per world (completions, summed latency ns) and the end time.
fn drive(
    dev: &mut Dev<'_, '_>,
    memory: &mut block::MemoryRegions<'_, 2>,
    start: Instant,
    worlds: &[(WorldId, usize, u64)],
    total: u64,
    mut observe: impl FnMut(&Dev<'_, '_>, Instant),
) -> (Vec<(u64, u64)>, Instant) {
    let sg = SgList::single(MemAddr(BUFFERS.0), 4096).unwrap();
    let mut outstanding = vec![0usize; worlds.len()];
    let mut ready_at = vec![start; worlds.len()];
    let mut submitted: HashMap<u64, (usize, Instant)> = HashMap::new();
    let mut per_world = vec![(0u64, 0u64); worlds.len()];
    let mut seq = 0u64;
    let mut done_total = 0u64;
    let mut now = start;
    let mut rng = seeded(99);
    for _ in 0..10_000_000u64 {
        for (w, (id, depth, _)) in worlds.iter().enumerate() {
            while done_total < total && outstanding[w] < *depth && ready_at[w] <= now {
                seq += 1;
                let tag = Tag((w as u64) << 40 | seq);
                let lba = rng.random_range(0..DISK_BLOCKS - 8);
                let request = BlockRequest::read(tag, Lba(lba), BlockCount(8), sg.clone());
                dev.submit_as(*id, now, request).expect("accepted");
                submitted.insert(tag.0, (w, now));
                outstanding[w] += 1;
            }
        }
        let mut completions = Vec::new();
        let next = block::BlockDevice::poll(dev, now, memory, &mut |c| completions.push(c));
        observe(dev, now);
        for c in &completions {
            assert!(c.is_ok(), "{c:?}");
            let Some((w, at)) = submitted.remove(&c.tag.0) else {
                panic!(
                    "unknown tag {c:?} at {now:?}, seq {seq}, {:?}",
                    dev.esxtop()
                );
            };
            outstanding[w] -= 1;
            per_world[w].0 += 1;
            per_world[w].1 += now.0 - at.0;
            ready_at[w] = Instant(now.0 + worlds[w].2);
            done_total += 1;
        }
        if done_total >= total && submitted.is_empty() {
            return (per_world, now);
        }
        if !completions.is_empty() || next == Some(now) {
            continue;
        }
        let think = ready_at.iter().copied().filter(|t| *t > now).min();
        now = match (next, think) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => panic!("stalled"),
        };
    }
    panic!("did not finish");
}

#[test]
fn shares_one_two_four_get_iops_within_five_percent() {
    let mut storage = vec![0u8; DISK_BLOCKS as usize * BLOCK];
    let mut scratch = vec![0u8; 2048];
    let mut buffers = vec![0u8; QD * BUFFER_LEN];
    let mut memory = memory_regions(&mut scratch, &mut buffers);
    let mut array = make_array(&mut storage, Personality::ActiveActive, 1);
    let (mut dev, start) = claim_with::<128>(&mut array, &mut memory, NmpConfig::default());
    for (id, shares) in [(1, 1000), (2, 2000), (3, 4000)] {
        dev.set_shares(WorldId(id), shares).unwrap();
    }
    let worlds = [
        (WorldId(1), 40, 0),
        (WorldId(2), 40, 0),
        (WorldId(3), 40, 0),
    ];
    let mut max_active = 0;
    let (per_world, _) = drive(&mut dev, &mut memory, start, &worlds, 21_000, |d, _| {
        max_active = max_active.max(d.esxtop().active);
    });
    assert_eq!(
        max_active, 32,
        "DSNRO caps the device at 32 while worlds compete"
    );
    let unit = per_world[0].0 as f64;
    for (w, want) in [(1usize, 2.0f64), (2, 4.0)] {
        let ratio = per_world[w].0 as f64 / unit;
        assert!(
            (ratio / want - 1.0).abs() < 0.05,
            "world {w}: ratio {ratio:.3} vs {want}: {per_world:?}"
        );
    }
}

#[test]
fn a_light_world_keeps_low_latency_next_to_a_heavy_one() {
    let mut storage = vec![0u8; DISK_BLOCKS as usize * BLOCK];
    let mut scratch = vec![0u8; 2048];
    let mut buffers = vec![0u8; QD * BUFFER_LEN];
    let mut memory = memory_regions(&mut scratch, &mut buffers);
    let mut array = make_array(&mut storage, Personality::ActiveActive, 1);
    let (mut dev, start) = claim_with::<128>(&mut array, &mut memory, NmpConfig::default());
    dev.set_shares(WorldId(1), 1000).unwrap();
    dev.set_shares(WorldId(2), 1000).unwrap();
    // Light: one request at a time, 1 ms apart. Heavy: 127 outstanding.
    let worlds = [(WorldId(1), 1, MS), (WorldId(2), 127, 0)];
    let (per_world, _) = drive(&mut dev, &mut memory, start, &worlds, 30_000, |_, _| {});
    let light = per_world[0].1 / per_world[0].0;
    let heavy = per_world[1].1 / per_world[1].0;
    let davg = dev.esxtop().stats.davg_ns();
    assert!(per_world[0].0 > 50, "{per_world:?}");
    assert!(
        light * 3 < heavy * 2,
        "light {light} ns vs heavy {heavy} ns (DAVG {davg})"
    );
    assert!(
        light < davg + davg / 5,
        "light {light} ns vs DAVG {davg} ns"
    );
}

#[test]
fn queue_full_shrinks_the_queue_depth_and_it_recovers() {
    let mut storage = vec![0u8; DISK_BLOCKS as usize * BLOCK];
    let mut scratch = vec![0u8; 2048];
    let mut buffers = vec![0u8; QD * BUFFER_LEN];
    let mut memory = memory_regions(&mut scratch, &mut buffers);
    let mut array = make_array(&mut storage, Personality::ActiveActive, 1);
    let (mut dev, start) = claim_with::<128>(&mut array, &mut memory, NmpConfig::default());
    assert_eq!(dev.esxtop().queue_depth, 64);
    dev.transport_mut().apply(
        start,
        Fault::QueueLimit {
            lun: 0,
            limit: Some(8),
        },
    );
    let worlds = [(WorldId(0), 64, 0)];
    let mut min_dqlen = u16::MAX;
    let (_, end) = drive(&mut dev, &mut memory, start, &worlds, 20_000, |d, _| {
        min_dqlen = min_dqlen.min(d.esxtop().queue_depth);
    });
    let throttled = dev.esxtop();
    assert!(throttled.stats.queue_full > 0);
    assert!(min_dqlen <= 16, "throttled to {min_dqlen}");
    dev.transport_mut().apply(
        end,
        Fault::QueueLimit {
            lun: 0,
            limit: None,
        },
    );
    let mut last = 0;
    drive(&mut dev, &mut memory, end, &worlds, 20_000, |d, _| {
        last = d.esxtop().queue_depth;
    });
    assert_eq!(last, 64, "recovered to the full depth");
}
