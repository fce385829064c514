#![cfg_attr(not(feature = "std"), no_std)]
#![doc = include_str!("../README.md")]

use core::time::Duration;

use block::Instant;
use psa::{IoHint, MAX_PATHS, Path, PathId, PathState, Psp};

/// Bit of path `i` in a path mask.
const fn bit(i: usize) -> u32 {
    1u32 << (i % 32)
}

/// The masks of usable paths, kept by `paths_changed` so that a pick is O(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Masks {
    /// Active (optimized) paths.
    ao: u32,
    /// Active unoptimized paths.
    ano: u32,
}

impl Masks {
    fn of(paths: &[Path]) -> Self {
        let mut m = Masks::default();
        for (i, p) in paths.iter().enumerate().take(MAX_PATHS) {
            match p.state {
                PathState::Active => m.ao |= bit(i),
                PathState::ActiveUnoptimized => m.ano |= bit(i),
                _ => {}
            }
        }
        m
    }
}

/// Whether path `i` may take this I/O now (usable and not already failed by it).
#[inline]
fn fits(paths: &[Path], i: u16, io: &IoHint) -> bool {
    let i = usize::from(i);
    io.avoid & bit(i) == 0 && paths.get(i).is_some_and(|p| p.state.is_usable())
}

/// The first set bit of `mask` after position `after` (wrapping around), if any.
#[inline]
fn next_after(mask: u32, after: u16) -> Option<u16> {
    if mask == 0 {
        return None;
    }
    let above = mask
        & 1u32
            .checked_shl(u32::from(after) + 1)
            .map_or(0, |b| !(b - 1));
    let pick = if above != 0 { above } else { mask };
    u16::try_from(pick.trailing_zeros()).ok()
}

/// A `u32` that orders like `cost` to 24 significant bits, and stays below `2^31`: costs
/// below `2^24` are themselves; larger ones keep their top 24 bits after a count of the bits
/// dropped, so the mapping is monotonic (never reverses an order, only merges costs within
/// one part in `2^23` of each other into ties).
#[inline]
const fn compress(cost: u64) -> u32 {
    let bits = 64 - cost.leading_zeros();
    if bits <= 24 {
        cost as u32
    } else {
        let shift = bits - 24;
        (shift << 23) + (cost >> shift) as u32
    }
}

/// The compact per-path costs of the picks that compare paths (queue-length, service-time,
/// the latency round robin), so that a pick over 32 paths stays a few nanoseconds.
///
/// Each candidate path has a `u32` key ([`compress`]ed cost; `u32::MAX` for the others). A
/// path's cost can only change when it takes a command (the NMP counts it outstanding once
/// `select` has picked it), when one of its commands completes (`completed`), or when the
/// paths change (`paths_changed`): those paths are marked dirty and only their keys are
/// recomputed at the next pick. The pick itself is the lowest of the keys (a loop over a
/// `[u32; 32]` that the compiler vectorises) and the first path holding it after the last
/// pick, found in a bit mask: ties go round robin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Argmin {
    keys: [u32; MAX_PATHS],
    /// The candidate mask the keys were computed for.
    cand: u32,
    /// Paths whose keys must be recomputed.
    dirty: u32,
}

impl Argmin {
    const fn new() -> Self {
        Self {
            keys: [u32::MAX; MAX_PATHS],
            cand: 0,
            dirty: u32::MAX,
        }
    }

    /// Path `i`'s cost may have changed.
    #[inline]
    fn touch(&mut self, i: usize) {
        if i < MAX_PATHS {
            self.dirty |= bit(i);
        }
    }

    /// Every cost may have changed.
    fn touch_all(&mut self) {
        self.dirty = u32::MAX;
    }

    /// The candidate in `cand` with the lowest `cost`, the first after `after` among equals.
    /// (The caller [`Argmin::touch`]es the path it then returns: it is about to take a
    /// command.)
    #[inline]
    fn pick(&mut self, cand: u32, after: u16, mut cost: impl FnMut(usize) -> u64) -> Option<u16> {
        if cand != self.cand {
            // Another candidate set (a retry avoiding paths, or new path states): every key
            // is recomputed, and the others drop out.
            self.cand = cand;
            self.dirty = u32::MAX;
        }
        let mut d = self.dirty;
        self.dirty = 0;
        // Bounded: each pass clears one of at most 32 bits.
        while d != 0 {
            let i = d.trailing_zeros() as usize;
            d &= d - 1;
            let key = if cand & bit(i) != 0 {
                compress(cost(i))
            } else {
                u32::MAX
            };
            // Stored only if it changed: the vector loads below would otherwise wait for the
            // store to reach the cache (a failed store-to-load forwarding, about 12 ns).
            if self.keys[i] != key {
                self.keys[i] = key;
            }
        }
        // Fixed-length loops vectorise (a slice of the candidates' length made the pick twice
        // as slow): the first 8 keys when no candidate lies beyond them, else all 32.
        let ties = match self.keys.first_chunk::<8>() {
            Some(first) if cand >> 8 == 0 => lowest(first),
            _ => lowest(&self.keys),
        };
        next_after(ties, after)
    }
}

/// The positions of the lowest key of `keys` below `u32::MAX`, as a bit mask (0 if none).
#[inline]
fn lowest<const N: usize>(keys: &[u32; N]) -> u32 {
    let min = keys.iter().copied().min().unwrap_or(u32::MAX);
    if min == u32::MAX {
        return 0;
    }
    let mut ties = 0u32;
    for (i, k) in keys.iter().enumerate() {
        ties |= u32::from(*k == min) << (i % 32);
    }
    ties
}

/// The path of last resort, as psa's MRU chooses it (O(paths), only when no usable path
/// passes the fast checks): active before unoptimized before standby or transitioning, paths
/// this I/O failed on last; never dead or unavailable.
fn fallback(paths: &[Path], io: &IoHint) -> Option<PathId> {
    let mut best: Option<(u8, usize)> = None;
    for (i, p) in paths.iter().enumerate().take(MAX_PATHS) {
        let base = match p.state {
            PathState::Active => 0,
            PathState::ActiveUnoptimized => 1,
            PathState::Standby | PathState::Transitioning => 2,
            PathState::Unavailable | PathState::Dead => continue,
        };
        let r = if io.avoid & bit(i) != 0 {
            base + 3
        } else {
            base
        };
        if best.is_none_or(|(b, _)| r < b) {
            best = Some((r, i));
        }
    }
    best.and_then(|(_, i)| u16::try_from(i).ok()).map(PathId)
}

/// `VMW_PSP_MRU`: the first working path; on failure another; never fails back on its own,
/// except that it leaves an active unoptimized path for an active/optimized one (ALUA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mru {
    current: Option<u16>,
    masks: Masks,
}

impl Mru {
    /// A PSP with no path chosen yet.
    pub const fn new() -> Self {
        Self {
            current: None,
            masks: Masks { ao: 0, ano: 0 },
        }
    }

    /// The path in use.
    pub fn current(&self) -> Option<PathId> {
        self.current.map(PathId)
    }
}

impl Psp for Mru {
    fn name(&self) -> &'static str {
        "VMW_PSP_MRU"
    }

    #[inline]
    fn select(&mut self, _now: Instant, paths: &[Path], io: &IoHint) -> Option<PathId> {
        if let Some(c) = self.current
            && fits(paths, c, io)
        {
            let ao = self.masks.ao & !io.avoid;
            if paths[usize::from(c)].state == PathState::Active || ao == 0 {
                return Some(PathId(c));
            }
            // Current became unoptimized: move to an active/optimized path.
            if let Some(i) = next_after(ao, c)
                && fits(paths, i, io)
            {
                self.current = Some(i);
                return Some(PathId(i));
            }
            return Some(PathId(c));
        }
        let chosen = fallback(paths, io)?;
        if paths[usize::from(chosen.0)].state.is_usable() {
            self.current = Some(chosen.0);
        }
        Some(chosen)
    }

    fn paths_changed(&mut self, paths: &[Path]) {
        self.masks = Masks::of(paths);
    }
}

/// `VMW_PSP_FIXED`: the preferred path (configured, or the first usable path found); fails
/// over when it fails and fails back as soon as it is usable again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fixed {
    preferred: Option<u16>,
    current: Option<u16>,
}

impl Fixed {
    /// A PSP preferring `preferred` (`None`: the first usable path it is shown).
    pub const fn new(preferred: Option<PathId>) -> Self {
        Self {
            preferred: match preferred {
                Some(p) => Some(p.0),
                None => None,
            },
            current: None,
        }
    }

    /// The preferred path.
    pub fn preferred(&self) -> Option<PathId> {
        self.preferred.map(PathId)
    }
}

impl Psp for Fixed {
    fn name(&self) -> &'static str {
        "VMW_PSP_FIXED"
    }

    #[inline]
    fn select(&mut self, _now: Instant, paths: &[Path], io: &IoHint) -> Option<PathId> {
        if let Some(p) = self.preferred
            && fits(paths, p, io)
        {
            self.current = Some(p);
            return Some(PathId(p));
        }
        if let Some(c) = self.current
            && fits(paths, c, io)
        {
            return Some(PathId(c));
        }
        let chosen = fallback(paths, io)?;
        if paths[usize::from(chosen.0)].state.is_usable() {
            self.current = Some(chosen.0);
        }
        Some(chosen)
    }

    fn paths_changed(&mut self, paths: &[Path]) {
        if self.preferred.is_none() {
            self.preferred = paths
                .iter()
                .position(|p| p.state.is_usable())
                .and_then(|i| u16::try_from(i).ok());
        }
    }
}

/// The latency sub-policy of [`RoundRobin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyConfig {
    /// `samplingCycles`: I/Os whose latency is sampled on each path. Default 16.
    pub sampling_cycles: u32,
    /// `latencyEvalTime`: how often the paths are sampled again. Default 180 s.
    pub eval_time: Duration,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self {
            sampling_cycles: 16,
            eval_time: Duration::from_secs(180),
        }
    }
}

/// The tunables of [`RoundRobin`] (`esxcli storage nmp psp roundrobin deviceconfig set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrConfig {
    /// `iops`: commands on a path before switching. Default 1000.
    pub iops: u32,
    /// `bytes`: bytes on a path before switching. Default 10 MiB.
    pub bytes: u64,
    /// `useANO`: include active unoptimized paths even while optimized ones exist.
    pub use_ano: bool,
    /// The latency sub-policy (`type=latency`), if chosen.
    pub latency: Option<LatencyConfig>,
}

impl Default for RrConfig {
    fn default() -> Self {
        Self {
            iops: 1000,
            bytes: 10 << 20,
            use_ano: false,
            latency: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sampling every candidate path's latency.
    Sampling,
    /// Choosing by the sampled latencies until the next evaluation.
    Steady { until: Instant },
}

/// `VMW_PSP_RR`: round robin over the active/optimized paths (and unoptimized ones with
/// `use_ano`, or when no optimized path is left), switching after `iops` commands or `bytes`
/// bytes; with the latency sub-policy, each path's latency is sampled over `sampling_cycles`
/// I/Os every `eval_time`, and between samplings each I/O goes to the path with the lowest
/// sampled latency weighted by its outstanding I/O (`latency x (outstanding + 1)`).
///
/// A plain round-robin pick is O(1) (bit masks kept by `paths_changed`). A latency pick
/// compares the candidates' costs to 24 significant bits (nearer costs are ties, taken round
/// robin) through compact per-path keys: only the keys of paths that took or completed a
/// command since the last pick are recomputed, then 32 keys are scanned in a vectorised
/// loop.
#[derive(Debug, Clone)]
pub struct RoundRobin<const P: usize = MAX_PATHS> {
    config: RrConfig,
    masks: Masks,
    current: u16,
    count: u32,
    bytes: u64,
    phase: Phase,
    sum_ns: [u64; P],
    samples: [u32; P],
    latency_ns: [u64; P],
    argmin: Argmin,
}

impl<const P: usize> RoundRobin<P> {
    /// A PSP with `config`.
    pub fn new(config: RrConfig) -> Self {
        Self {
            config,
            masks: Masks::default(),
            current: 0,
            count: 0,
            bytes: 0,
            phase: Phase::Sampling,
            sum_ns: [0; P],
            samples: [0; P],
            latency_ns: [0; P],
            argmin: Argmin::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RrConfig {
        &self.config
    }

    /// The latency sampled on each path (ns; 0: not sampled).
    pub fn latencies(&self) -> &[u64; P] {
        &self.latency_ns
    }

    fn candidates(&self, io: &IoHint) -> u32 {
        let mut m = if self.config.use_ano || self.masks.ao == 0 {
            self.masks.ao | self.masks.ano
        } else {
            self.masks.ao
        };
        if P < 32 {
            m &= bit(P) - 1;
        }
        if m & !io.avoid != 0 { m & !io.avoid } else { m }
    }

    fn latency_pick(&mut self, now: Instant, paths: &[Path], cand: u32) -> Option<u16> {
        let lat = self.config.latency?;
        if let Phase::Steady { until } = self.phase
            && now >= until
        {
            self.phase = Phase::Sampling;
            self.sum_ns = [0; P];
            self.samples = [0; P];
        }
        match self.phase {
            Phase::Sampling => {
                let mut m = cand;
                let mut done = true;
                while m != 0 {
                    let i = m.trailing_zeros() as usize;
                    m &= m - 1;
                    if self
                        .samples
                        .get(i)
                        .is_some_and(|s| *s < lat.sampling_cycles)
                    {
                        done = false;
                    }
                }
                if !done {
                    // Sample: one I/O per candidate path in turn.
                    return None.or_else(|| next_after(cand, self.current));
                }
                for i in 0..P {
                    if self.samples[i] > 0 {
                        self.latency_ns[i] = self.sum_ns[i] / u64::from(self.samples[i]);
                    }
                }
                self.phase = Phase::Steady {
                    until: now.saturating_add(lat.eval_time),
                };
                self.argmin.touch_all();
                self.latency_pick(now, paths, cand)
            }
            Phase::Steady { .. } => {
                let latency = &self.latency_ns;
                self.argmin.pick(cand, self.current, |i| {
                    let active = paths.get(i).map_or(u32::MAX, |p| p.stats.active);
                    let ns = latency.get(i).copied().unwrap_or(u64::MAX).max(1);
                    ns.saturating_mul(u64::from(active) + 1)
                })
            }
        }
    }

    /// [`Psp::select`] without the bookkeeping of the compact costs.
    #[inline]
    fn choose(&mut self, now: Instant, paths: &[Path], io: &IoHint) -> Option<PathId> {
        let cand = self.candidates(io);
        if cand == 0 {
            return fallback(paths, io);
        }
        if self.config.latency.is_some() {
            let i = self.latency_pick(now, paths, cand);
            if let Some(i) = i
                && fits(paths, i, io)
            {
                self.current = i;
                return Some(PathId(i));
            }
            return fallback(paths, io);
        }
        let c = self.current;
        if cand & bit(usize::from(c)) != 0
            && self.count < self.config.iops
            && self.bytes < self.config.bytes
            && fits(paths, c, io)
        {
            self.count += 1;
            self.bytes = self.bytes.saturating_add(io.bytes);
            return Some(PathId(c));
        }
        match next_after(cand, c) {
            Some(i) if fits(paths, i, io) => {
                self.current = i;
                self.count = 1;
                self.bytes = io.bytes;
                Some(PathId(i))
            }
            _ => fallback(paths, io),
        }
    }
}

impl<const P: usize> Default for RoundRobin<P> {
    fn default() -> Self {
        Self::new(RrConfig::default())
    }
}

impl<const P: usize> Psp for RoundRobin<P> {
    fn name(&self) -> &'static str {
        "VMW_PSP_RR"
    }

    #[inline]
    fn select(&mut self, now: Instant, paths: &[Path], io: &IoHint) -> Option<PathId> {
        let chosen = self.choose(now, paths, io);
        if let Some(p) = chosen {
            self.argmin.touch(usize::from(p.0));
        }
        chosen
    }

    fn completed(&mut self, _now: Instant, path: PathId, latency: Duration, ok: bool) {
        self.argmin.touch(usize::from(path.0));
        if ok
            && self.phase == Phase::Sampling
            && let Some(i) = Some(usize::from(path.0)).filter(|i| *i < P)
        {
            self.sum_ns[i] = self.sum_ns[i].saturating_add(latency.as_nanos() as u64);
            self.samples[i] = self.samples[i].saturating_add(1);
        }
    }

    fn paths_changed(&mut self, paths: &[Path]) {
        self.masks = Masks::of(paths);
        self.argmin.touch_all();
    }
}

/// dm-multipath's `queue-length`: the usable path with the fewest commands outstanding
/// (ties go round robin); active/optimized paths first. Picks keep compact per-path keys, as
/// [`RoundRobin`]'s latency picks do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLength {
    masks: Masks,
    last: u16,
    argmin: Argmin,
}

impl QueueLength {
    /// A PSP.
    pub const fn new() -> Self {
        Self {
            masks: Masks { ao: 0, ano: 0 },
            last: 0,
            argmin: Argmin::new(),
        }
    }
}

impl Default for QueueLength {
    fn default() -> Self {
        Self::new()
    }
}

fn candidates(masks: Masks, io: &IoHint) -> u32 {
    let m = if masks.ao != 0 { masks.ao } else { masks.ano };
    if m & !io.avoid != 0 { m & !io.avoid } else { m }
}

impl Psp for QueueLength {
    fn name(&self) -> &'static str {
        "DM_PSP_QUEUE_LENGTH"
    }

    #[inline]
    fn select(&mut self, _now: Instant, paths: &[Path], io: &IoHint) -> Option<PathId> {
        let cand = candidates(self.masks, io);
        let pick = self.argmin.pick(cand, self.last, |i| {
            u64::from(paths.get(i).map_or(u32::MAX, |p| p.stats.active))
        });
        let chosen = match pick {
            Some(i) if fits(paths, i, io) => {
                self.last = i;
                Some(PathId(i))
            }
            _ => fallback(paths, io),
        };
        if let Some(p) = chosen {
            self.argmin.touch(usize::from(p.0));
        }
        chosen
    }

    fn completed(&mut self, _now: Instant, path: PathId, _latency: Duration, _ok: bool) {
        self.argmin.touch(usize::from(path.0));
    }

    fn paths_changed(&mut self, paths: &[Path]) {
        self.masks = Masks::of(paths);
        self.argmin.touch_all();
    }
}

/// dm-multipath's `service-time`: the usable path with the least estimated service time,
/// `(outstanding + 1) x its measured latency` (dm's relative throughput, estimated from a
/// moving average of each path's latency rather than configured), compared to 24 significant
/// bits (ties go round robin); active/optimized paths first. Picks keep compact per-path
/// keys, as [`RoundRobin`]'s latency picks do.
#[derive(Debug, Clone)]
pub struct ServiceTime<const P: usize = MAX_PATHS> {
    masks: Masks,
    last: u16,
    ewma_ns: [u64; P],
    argmin: Argmin,
}

impl<const P: usize> ServiceTime<P> {
    /// A PSP.
    pub const fn new() -> Self {
        Self {
            masks: Masks { ao: 0, ano: 0 },
            last: 0,
            ewma_ns: [0; P],
            argmin: Argmin::new(),
        }
    }

    /// The moving average latency of each path (ns; 0: not measured).
    pub fn latencies(&self) -> &[u64; P] {
        &self.ewma_ns
    }
}

impl<const P: usize> Default for ServiceTime<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const P: usize> Psp for ServiceTime<P> {
    fn name(&self) -> &'static str {
        "DM_PSP_SERVICE_TIME"
    }

    #[inline]
    fn select(&mut self, _now: Instant, paths: &[Path], io: &IoHint) -> Option<PathId> {
        let cand = candidates(self.masks, io);
        let ewma = &self.ewma_ns;
        let pick = self.argmin.pick(cand, self.last, |i| {
            let active = paths.get(i).map_or(u32::MAX, |p| p.stats.active);
            let ns = ewma.get(i).copied().unwrap_or(u64::MAX).max(1);
            ns.saturating_mul(u64::from(active) + 1)
        });
        let chosen = match pick {
            Some(i) if fits(paths, i, io) => {
                self.last = i;
                Some(PathId(i))
            }
            _ => fallback(paths, io),
        };
        if let Some(p) = chosen {
            self.argmin.touch(usize::from(p.0));
        }
        chosen
    }

    fn completed(&mut self, _now: Instant, path: PathId, latency: Duration, ok: bool) {
        self.argmin.touch(usize::from(path.0));
        if let Some(e) = self.ewma_ns.get_mut(usize::from(path.0))
            && ok
        {
            let l = latency.as_nanos() as u64;
            *e = if *e == 0 { l } else { *e - *e / 8 + l / 8 };
        }
    }

    fn paths_changed(&mut self, paths: &[Path]) {
        self.masks = Masks::of(paths);
        self.argmin.touch_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rand::{Rng, RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A value of a random bit length (so that every magnitude is tried).
    fn magnitude(rng: &mut ChaCha8Rng) -> u64 {
        let bits: u32 = rng.random_range(0..=64);
        rng.next_u64().checked_shr(64 - bits).unwrap_or(0)
    }

    #[test]
    fn compress_is_monotonic_exact_below_2_24_and_below_2_31() {
        assert_eq!(compress(0), 0);
        assert_eq!(compress((1 << 24) - 1), (1 << 24) - 1);
        assert_eq!(compress(1 << 24), 1 << 24);
        assert!(compress(u64::MAX) < 1 << 31);
        // Around every power of two, and random pairs.
        for shift in 0..64u32 {
            let p = 1u64 << shift;
            for v in [p - 1, p, p + 1] {
                assert!(compress(v) <= compress(v + 1), "{v}");
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(24);
        for _ in 0..100_000 {
            let (a, b) = (magnitude(&mut rng), magnitude(&mut rng));
            let (lo, hi) = (a.min(b), a.max(b));
            assert!(compress(lo) <= compress(hi), "{lo} {hi}");
            if compress(lo) == compress(hi) {
                // Merged only within one part in 2^23.
                assert!(hi - lo <= hi >> 23, "{lo} {hi}");
            }
        }
    }

    /// The pick is a candidate of the lowest cost (to 24 significant bits), the first after
    /// `after` among equal keys, against a plain scan; a key is recomputed when touched.
    #[test]
    fn argmin_matches_a_plain_scan() {
        let mut rng = ChaCha8Rng::seed_from_u64(0xA6);
        let mut argmin = Argmin::new();
        let mut costs = [0u64; MAX_PATHS];
        for round in 0..20_000u32 {
            let cand = match rng.random_range(0..4) {
                0 => rng.next_u32(),
                1 => u32::MAX,
                2 => 0b1111,
                _ => argmin.cand,
            };
            // Change a few costs (touched), sometimes to equal values (ties).
            for _ in 0..rng.random_range(0..3) {
                let i = rng.random_range(0..32);
                costs[i] = if rng.random() {
                    rng.random_range(0..4)
                } else {
                    magnitude(&mut rng)
                };
                argmin.touch(i);
            }
            if round.is_multiple_of(97) {
                argmin.touch_all();
            }
            let after = rng.random_range(0..32);
            let pick = argmin.pick(cand, after, |i| costs[i]);
            if cand == 0 {
                assert_eq!(pick, None);
                continue;
            }
            let pick = usize::from(pick.expect("a candidate"));
            assert!(cand & bit(pick) != 0, "round {round}");
            let min = (0..32)
                .filter(|i| cand & bit(*i) != 0)
                .map(|i| compress(costs[i]))
                .min()
                .unwrap();
            assert_eq!(compress(costs[pick]), min, "round {round}");
            // No candidate with the same key lies between `after` and the pick.
            let mut i = (usize::from(after) + 1) % 32;
            while i != pick {
                assert!(
                    cand & bit(i) == 0 || compress(costs[i]) != min,
                    "round {round}: {i} before {pick}"
                );
                i = (i + 1) % 32;
            }
        }
    }
}
