//! The device scheduler queue: start-time fair queuing by shares among worlds (VMs), the
//! `Disk.SchedNumReqOutstanding` limit when worlds compete, the device queue depth, and
//! adaptive queue-depth throttling on QUEUE FULL / BUSY.
//!
//! Start-time fair queuing (Goyal, Vin and Cheng): each request gets a start tag
//! `S = max(v, F_prev)` and a finish tag `F = S + cost / shares` when it arrives, where `v` is
//! the virtual time (the start tag of the request dispatched last) and `F_prev` the finish tag
//! of the world's previous request. Requests are dispatched in increasing start tag order, so
//! backlogged worlds share the device in proportion to their shares, and a world that was idle
//! starts at the current virtual time: it neither banks credit nor waits behind the others.

use core::fmt;

/// A world (a VM, or any other consumer with its own shares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WorldId(pub u32);

/// Shares ESXi gives a disk at "normal".
pub const SHARES_NORMAL: u32 = 1000;

/// Scale of the virtual time: one request of cost 1 at 1 share advances a world this much.
const VTIME_SCALE: u64 = 1 << 24;

/// The scheduler's knobs, named after ESXi's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SchedConfig {
    /// `Disk.SchedNumReqOutstanding` (DSNRO): the most commands outstanding on the device
    /// while more than one world has I/O queued or outstanding. Default 32.
    pub sched_num_req_outstanding: u16,
    /// The device (LUN) queue depth: the most commands outstanding at all. Default 64.
    pub queue_depth: u16,
    /// `QFullSampleSize`: QUEUE FULL / BUSY answers after which the queue depth halves
    /// (0 disables throttling). Default 32.
    pub qfull_sample_size: u16,
    /// `QFullThreshold`: good completions after which a throttled queue depth grows by one.
    /// Default 4.
    pub qfull_threshold: u16,
}

impl Default for SchedConfig {
    fn default() -> Self {
        Self {
            sched_num_req_outstanding: 32,
            queue_depth: 64,
            qfull_sample_size: 32,
            qfull_threshold: 4,
        }
    }
}

/// Why the scheduler refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SchedError {
    /// No such world.
    UnknownWorld,
    /// The world table is full.
    TooManyWorlds,
    /// The world's queue is full.
    QueueFull,
    /// Shares must be at least 1.
    ZeroShares,
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchedError::UnknownWorld => "unknown world",
            SchedError::TooManyWorlds => "world table full",
            SchedError::QueueFull => "world queue full",
            SchedError::ZeroShares => "shares must be at least 1",
        })
    }
}

impl core::error::Error for SchedError {}

#[derive(Debug, Clone, Copy)]
struct Entry {
    item: u16,
    start: u64,
}

#[derive(Debug)]
struct World<const N: usize> {
    id: WorldId,
    shares: u32,
    last_finish: u64,
    active: u16,
    queue: heapless::Deque<Entry, N>,
}

/// The per-device scheduler of up to `W` worlds, each with up to `N` queued items (the
/// caller's slot numbers).
#[derive(Debug)]
pub struct Scheduler<const W: usize, const N: usize> {
    config: SchedConfig,
    worlds: heapless::Vec<World<N>, W>,
    vtime: u64,
    active: u16,
    queued: u16,
    dqlen: u16,
    qfull_seen: u16,
    good_seen: u16,
}

impl<const W: usize, const N: usize> Scheduler<W, N> {
    /// A scheduler with `config` and no worlds.
    pub fn new(config: SchedConfig) -> Self {
        Self {
            config,
            worlds: heapless::Vec::new(),
            vtime: 0,
            active: 0,
            queued: 0,
            dqlen: config.queue_depth.max(1),
            qfull_seen: 0,
            good_seen: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SchedConfig {
        &self.config
    }

    /// Adds world `id` with `shares`, or changes its shares.
    pub fn set_shares(&mut self, id: WorldId, shares: u32) -> Result<usize, SchedError> {
        if shares == 0 {
            return Err(SchedError::ZeroShares);
        }
        if let Some(index) = self.worlds.iter().position(|w| w.id == id) {
            self.worlds[index].shares = shares;
            return Ok(index);
        }
        self.worlds
            .push(World {
                id,
                shares,
                last_finish: 0,
                active: 0,
                queue: heapless::Deque::new(),
            })
            .map_err(|_| SchedError::TooManyWorlds)?;
        Ok(self.worlds.len() - 1)
    }

    /// The index of world `id`.
    pub fn world_index(&self, id: WorldId) -> Option<usize> {
        self.worlds.iter().position(|w| w.id == id)
    }

    /// Queues `item` for world number `world` (an index from [`Scheduler::set_shares`]) at
    /// cost 1.
    pub fn enqueue(&mut self, world: usize, item: u16) -> Result<(), SchedError> {
        let vtime = self.vtime;
        let w = self.worlds.get_mut(world).ok_or(SchedError::UnknownWorld)?;
        let start = vtime.max(w.last_finish);
        w.queue
            .push_back(Entry { item, start })
            .map_err(|_| SchedError::QueueFull)?;
        w.last_finish = start.saturating_add(VTIME_SCALE / u64::from(w.shares));
        self.queued = self.queued.saturating_add(1);
        Ok(())
    }

    /// How many commands may be outstanding on the device now: the (throttled) queue depth,
    /// and DSNRO when more than one world competes.
    pub fn limit(&self) -> u16 {
        let mut busy = 0u32;
        for w in self.worlds.iter() {
            if w.active > 0 || !w.queue.is_empty() {
                busy += 1;
            }
        }
        if busy > 1 {
            self.dqlen.min(self.config.sched_num_req_outstanding.max(1))
        } else {
            self.dqlen
        }
    }

    /// The next item to send to the device, with its world index, if the limits allow one.
    pub fn dispatch(&mut self) -> Option<(usize, u16)> {
        if self.queued == 0 || self.active >= self.limit() {
            return None;
        }
        let mut best: Option<(usize, u64)> = None;
        for (index, w) in self.worlds.iter().enumerate() {
            if let Some(head) = w.queue.front()
                && best.is_none_or(|(_, s)| head.start < s)
            {
                best = Some((index, head.start));
            }
        }
        let (index, _) = best?;
        let w = &mut self.worlds[index];
        let entry = w.queue.pop_front()?;
        w.active = w.active.saturating_add(1);
        self.vtime = self.vtime.max(entry.start);
        self.active = self.active.saturating_add(1);
        self.queued = self.queued.saturating_sub(1);
        Some((index, entry.item))
    }

    /// An item of world `world` left the device (completed, or failed for good).
    pub fn complete(&mut self, world: usize) {
        if let Some(w) = self.worlds.get_mut(world) {
            w.active = w.active.saturating_sub(1);
        }
        self.active = self.active.saturating_sub(1);
    }

    /// A command was answered QUEUE FULL (TASK SET FULL) or BUSY: after
    /// `qfull_sample_size` of them the queue depth halves.
    pub fn queue_full(&mut self) {
        if self.config.qfull_sample_size == 0 {
            return;
        }
        self.good_seen = 0;
        self.qfull_seen = self.qfull_seen.saturating_add(1);
        if self.qfull_seen >= self.config.qfull_sample_size {
            self.qfull_seen = 0;
            self.dqlen = (self.dqlen / 2).max(1);
        }
    }

    /// A command completed well: after `qfull_threshold` of them a throttled queue depth
    /// grows by one, up to the configured depth.
    pub fn good(&mut self) {
        if self.dqlen >= self.config.queue_depth {
            return;
        }
        self.good_seen = self.good_seen.saturating_add(1);
        if self.good_seen >= self.config.qfull_threshold.max(1) {
            self.good_seen = 0;
            self.qfull_seen = 0;
            self.dqlen = self.dqlen.saturating_add(1);
        }
    }

    /// The current (possibly throttled) device queue depth: esxtop's DQLEN.
    pub fn queue_depth(&self) -> u16 {
        self.dqlen
    }

    /// Items dispatched and not completed: esxtop's ACTV.
    pub fn active(&self) -> u16 {
        self.active
    }

    /// Items waiting in the queues: esxtop's QUED.
    pub fn queued(&self) -> u16 {
        self.queued
    }

    /// Removes and returns every queued item (for failing them all at once), world index
    /// first. Bounded by the queued count.
    pub fn drain_one(&mut self) -> Option<(usize, u16)> {
        for (index, w) in self.worlds.iter_mut().enumerate() {
            if let Some(e) = w.queue.pop_front() {
                self.queued = self.queued.saturating_sub(1);
                return Some((index, e.item));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlogged_worlds_share_by_shares() {
        let mut s: Scheduler<4, 64> = Scheduler::new(SchedConfig::default());
        let a = s.set_shares(WorldId(1), 1000).unwrap();
        let b = s.set_shares(WorldId(2), 2000).unwrap();
        let c = s.set_shares(WorldId(3), 4000).unwrap();
        let mut counts = [0u32; 3];
        let mut next = 0u16;
        for w in [a, b, c] {
            for _ in 0..32 {
                s.enqueue(w, next).unwrap();
                next += 1;
            }
        }
        for _ in 0..7000 {
            let (w, item) = s.dispatch().expect("backlogged");
            counts[w] += 1;
            s.complete(w);
            s.enqueue(w, item).unwrap();
        }
        assert_eq!(counts, [1000, 2000, 4000]);
    }

    #[test]
    fn dsnro_applies_only_when_worlds_compete() {
        let mut s: Scheduler<4, 128> = Scheduler::new(SchedConfig::default());
        let a = s.set_shares(WorldId(1), 1000).unwrap();
        let b = s.set_shares(WorldId(2), 1000).unwrap();
        for i in 0..100 {
            s.enqueue(a, i).unwrap();
        }
        let mut n = 0;
        while s.dispatch().is_some() {
            n += 1;
        }
        assert_eq!(n, 64, "alone: the device queue depth");
        s.enqueue(b, 200).unwrap();
        assert_eq!(s.limit(), 32);
        assert!(
            s.dispatch().is_none(),
            "64 active > DSNRO 32 with two worlds"
        );
    }

    #[test]
    fn throttling_halves_and_recovers() {
        let mut s: Scheduler<1, 8> = Scheduler::new(SchedConfig::default());
        for _ in 0..32 {
            s.queue_full();
        }
        assert_eq!(s.queue_depth(), 32);
        for _ in 0..64 {
            s.queue_full();
        }
        assert_eq!(s.queue_depth(), 8);
        for _ in 0..4 * 56 {
            s.good();
        }
        assert_eq!(s.queue_depth(), 64);
        s.good();
        assert_eq!(s.queue_depth(), 64);
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;
    extern crate std;

    #[test]
    fn batch_completions_keep_proportions() {
        let mut s: Scheduler<4, 128> = Scheduler::new(SchedConfig::default());
        let ws = [
            s.set_shares(WorldId(1), 1000).unwrap(),
            s.set_shares(WorldId(2), 2000).unwrap(),
            s.set_shares(WorldId(3), 4000).unwrap(),
        ];
        let mut next = 0u16;
        for w in ws {
            for _ in 0..40 {
                s.enqueue(w, next).unwrap();
                next += 1;
            }
        }
        let mut counts = [0u32; 3];
        for _ in 0..500 {
            let mut batch = std::vec::Vec::new();
            while let Some((w, item)) = s.dispatch() {
                counts[w] += 1;
                batch.push((w, item));
            }
            for (w, _) in &batch {
                s.complete(*w);
            }
            for (w, item) in batch {
                s.enqueue(w, item).unwrap();
            }
        }
        assert!(counts[2] as f64 / counts[0] as f64 > 3.8, "{counts:?}");
    }
}
