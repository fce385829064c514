//! Properties of the scheduler queue under random shares, arrivals and completions.

use proptest::prelude::*;
use psa::{SchedConfig, Scheduler, WorldId};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every item queued is dispatched exactly once, the device limit always holds, and
    /// backlogged worlds are served in proportion to their shares.
    #[test]
    fn exactly_once_within_limits_and_proportional(
        shares in prop::collection::vec(1u32..5000, 1..6),
        dsnro in 1u16..48,
        ops in prop::collection::vec(0u8..4, 200..600),
    ) {
        let config = SchedConfig { sched_num_req_outstanding: dsnro, ..SchedConfig::default() };
        let mut s: Scheduler<8, 256> = Scheduler::new(config);
        let worlds: Vec<usize> = shares
            .iter()
            .enumerate()
            .map(|(i, sh)| s.set_shares(WorldId(i as u32 + 1), *sh).unwrap())
            .collect();
        let mut next = 0u16;
        let mut queued = std::collections::HashSet::new();
        let mut active: Vec<(usize, u16)> = Vec::new();
        // Random arrivals and completions.
        for (i, op) in ops.iter().enumerate() {
            match op {
                0 | 1 => {
                    let w = worlds[i % worlds.len()];
                    if queued.len() + active.len() < 250 {
                        s.enqueue(w, next).unwrap();
                        queued.insert(next);
                        next += 1;
                    }
                }
                2 => {
                    while let Some((w, item)) = s.dispatch() {
                        prop_assert!(queued.remove(&item), "dispatched twice or never queued");
                        active.push((w, item));
                        prop_assert!(active.len() <= usize::from(s.queue_depth()));
                    }
                    prop_assert_eq!(usize::from(s.active()), active.len());
                }
                _ => {
                    if let Some((w, _)) = active.pop() {
                        s.complete(w);
                    }
                }
            }
        }
        // Drain: everything queued is dispatched once.
        for _ in 0..10_000 {
            while let Some((w, item)) = s.dispatch() {
                prop_assert!(queued.remove(&item));
                active.push((w, item));
            }
            match active.pop() {
                Some((w, _)) => s.complete(w),
                None => break,
            }
        }
        prop_assert!(queued.is_empty());
        prop_assert_eq!(s.queued(), 0);

        // Backlogged service is proportional to shares.
        let mut counts = vec![0u64; worlds.len()];
        for (k, w) in worlds.iter().enumerate() {
            for _ in 0..8 {
                s.enqueue(*w, 1000 + k as u16).unwrap();
            }
        }
        while let Some((w, _)) = active.pop() {
            s.complete(w);
        }
        let rounds = 20_000u64;
        for _ in 0..rounds {
            let (w, item) = s.dispatch().expect("backlogged");
            counts[worlds.iter().position(|x| *x == w).unwrap()] += 1;
            s.complete(w);
            s.enqueue(w, item).unwrap();
        }
        let total_shares: u64 = shares.iter().map(|x| u64::from(*x)).sum();
        for (k, sh) in shares.iter().enumerate() {
            let want = rounds as f64 * f64::from(*sh) / total_shares as f64;
            let got = counts[k] as f64;
            // Within 5%, or one request for tiny shares.
            prop_assert!((got - want).abs() <= (want * 0.05).max(2.0), "world {k}: {got} vs {want}");
        }
    }
}
