use core::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::addr::{BlockCount, Instant, Tag};
use crate::device::{BlockDevice, Geometry, SubmitError, SubmitErrorKind};
use crate::memory::Memory;
use crate::request::{BlockError, BlockRequest, Completion, ErrorKind, Operation};

/// Which faults a [`FaultInjector`] injects, and how often (probabilities in parts per million).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultConfig {
    /// Chance that a request fails without reaching the device.
    pub fail_ppm: u32,
    /// The error such a request fails with.
    pub fail_kind: ErrorKind,
    /// Chance that a completion is held back by a random delay up to `max_delay`.
    pub delay_ppm: u32,
    /// The longest added delay.
    pub max_delay: Duration,
    /// Hand out ready completions in a random order instead of the device's order.
    pub reorder: bool,
    /// Chance that a multi-block write is torn: only a prefix of whole blocks reaches the
    /// device, and the request completes with [`ErrorKind::Aborted`].
    pub tear_ppm: u32,
    /// After this many accepted submissions the device is lost: every later request completes
    /// with [`ErrorKind::DeviceLost`] without reaching it.
    pub lose_after_submissions: Option<u64>,
}

impl Default for FaultConfig {
    /// No faults at all.
    fn default() -> Self {
        Self {
            fail_ppm: 0,
            fail_kind: ErrorKind::MediumError,
            delay_ppm: 0,
            max_delay: Duration::ZERO,
            reorder: false,
            tear_ppm: 0,
            lose_after_submissions: None,
        }
    }
}

/// What a [`FaultInjector`] did, for a test to report or assert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultStats {
    /// Requests failed before reaching the device.
    pub failed: u64,
    /// Completions delayed.
    pub delayed: u64,
    /// Writes torn.
    pub torn: u64,
    /// Requests refused because the device was lost.
    pub lost: u64,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    release_at: Instant,
    completion: Completion,
}

/// Wraps a device and injects faults, reproducibly from a seed.
///
/// Up to `Q` requests may be outstanding through the injector. Faults: fail a request, delay a
/// completion, reorder completions, tear a write at a block boundary, lose the device. Every
/// accepted request still completes exactly once.
pub struct FaultInjector<D, const Q: usize> {
    inner: D,
    rng: ChaCha8Rng,
    config: FaultConfig,
    held: heapless::Vec<Held, Q>,
    torn: heapless::Vec<Tag, Q>,
    in_flight: usize,
    submissions: u64,
    stats: FaultStats,
}

impl<D, const Q: usize> FaultInjector<D, Q> {
    /// Wraps `inner`, drawing every decision from a ChaCha8 generator seeded with `seed`.
    pub fn new(inner: D, seed: u64, config: FaultConfig) -> Self {
        Self {
            inner,
            rng: ChaCha8Rng::seed_from_u64(seed),
            config,
            held: heapless::Vec::new(),
            torn: heapless::Vec::new(),
            in_flight: 0,
            submissions: 0,
            stats: FaultStats::default(),
        }
    }

    /// What was injected so far.
    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Changes the configuration from now on (for example to lose the device mid-run).
    pub fn set_config(&mut self, config: FaultConfig) {
        self.config = config;
    }

    fn chance(rng: &mut ChaCha8Rng, ppm: u32) -> bool {
        ppm > 0 && rng.next_u32() % 1_000_000 < ppm
    }

    fn random_delay(rng: &mut ChaCha8Rng, max: Duration) -> Duration {
        let max_nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if max_nanos == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(rng.next_u64() % (max_nanos + 1))
        }
    }

    fn hold(&mut self, release_at: Instant, completion: Completion) {
        // Capacity is guaranteed: `in_flight` never exceeds Q and each held entry is in flight.
        let _ = self.held.push(Held {
            release_at,
            completion,
        });
    }
}

impl<D: BlockDevice<SG>, const Q: usize, const SG: usize> BlockDevice<SG> for FaultInjector<D, Q> {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn submit(
        &mut self,
        now: Instant,
        mut request: BlockRequest<SG>,
    ) -> Result<(), SubmitError<SG>> {
        if self.in_flight >= Q {
            return Err(SubmitError::new(SubmitErrorKind::QueueFull, request));
        }
        let lost = self
            .config
            .lose_after_submissions
            .is_some_and(|n| self.submissions >= n);
        if lost || Self::chance(&mut self.rng, self.config.fail_ppm) {
            let kind = if lost {
                ErrorKind::DeviceLost
            } else {
                self.config.fail_kind
            };
            if lost {
                self.stats.lost += 1;
            } else {
                self.stats.failed += 1;
            }
            self.submissions += 1;
            self.in_flight += 1;
            self.hold(now, Completion::err(request.tag, BlockError::new(kind)));
            return Ok(());
        }
        let mut tear = request.operation == Operation::Write
            && request.blocks.0 >= 2
            && request.validate(&self.inner.geometry()).is_ok()
            && Self::chance(&mut self.rng, self.config.tear_ppm);
        let tag = request.tag;
        if tear {
            let block_size = self.inner.geometry().block_size;
            let kept = 1 + self.rng.next_u32() % (request.blocks.0 - 1);
            let kept_bytes = u64::from(kept) * u64::from(block_size);
            match request.sg.slice(0, kept_bytes) {
                Ok(prefix) => {
                    request.blocks = BlockCount(kept);
                    request.sg = prefix;
                }
                // An SG list shorter than the range: leave it whole for the device to refuse.
                Err(_) => tear = false,
            }
        }
        self.inner.submit(now, request)?;
        if tear {
            let _ = self.torn.push(tag);
            self.stats.torn += 1;
        }
        self.submissions += 1;
        self.in_flight += 1;
        Ok(())
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(Completion),
    ) -> Option<Instant> {
        let mut arrived: heapless::Vec<Completion, Q> = heapless::Vec::new();
        let inner_next = self.inner.poll(now, memory, &mut |c| {
            // The inner device completes only what we submitted, at most Q at once.
            let _ = arrived.push(c);
        });
        for mut completion in arrived {
            if let Some(i) = self.torn.iter().position(|t| *t == completion.tag) {
                self.torn.swap_remove(i);
                completion.result = Err(BlockError::new(ErrorKind::Aborted));
            }
            let mut release_at = now;
            if Self::chance(&mut self.rng, self.config.delay_ppm) {
                release_at =
                    now.saturating_add(Self::random_delay(&mut self.rng, self.config.max_delay));
                self.stats.delayed += 1;
            }
            self.hold(release_at, completion);
        }
        // Each pass removes one held completion, so the loop ends within Q passes.
        loop {
            let ready = self.held.iter().filter(|h| h.release_at <= now).count();
            if ready == 0 {
                break;
            }
            let pick = if self.config.reorder {
                (self.rng.next_u32() as usize) % ready
            } else {
                0
            };
            let index = self
                .held
                .iter()
                .enumerate()
                .filter(|(_, h)| h.release_at <= now)
                .nth(pick)
                .map(|(i, _)| i)
                .unwrap_or(0);
            let held = self.held.remove(index);
            self.in_flight -= 1;
            done(held.completion);
        }
        let held_next = self.held.iter().map(|h| h.release_at).min();
        match (inner_next, held_next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
