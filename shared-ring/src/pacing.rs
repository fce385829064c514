//! Consumer poll pacing: how a consumer that has caught up with a streaming producer spaces its
//! reloads of the producer's index.
//!
//! Why it exists. When the consumer is even slightly faster than the producer, it keeps
//! catching up with it, and then every poll reads the line of the producer's index (and the
//! slot lines the producer is still writing) while the producer writes them. Each poll takes
//! the line away from the producer's core, the producer's next stores wait for it, the
//! consumer catches up again sooner, and both settle in a "chasing" regime several times slower
//! than either side alone. This is not particular to this ring: on the benchmark machine a
//! nanosecond or two of producer work per item takes `rtrb` from 3.6 to 22-28 ns per 16-byte
//! item and `ringbuf` from 4.5 to 18-22 ns (see `BENCHMARKS.md`). A consumer that,
//! once caught up with a producer that is still publishing, leaves the index alone for a while
//! lets the producer get a few lines ahead, and then takes a whole run of items in one go.
//!
//! The ring reads no clock, so the pause is counted in the caller's own polls: a paced
//! `pop` or `read_chunk` answers "nothing yet" without touching shared memory. Pacing starts
//! only once the producer has streamed `min(N / 2, 512)` items without an idle spell, so
//! shorter bursts keep their latency. The interval starts at one poll, doubles while each
//! paced reload still finds fewer than a run worth having, halves when a paced reload finds
//! the ring three quarters full (the producer may have stalled on a full ring: a small ring,
//! or an interval grown while the producer was slower than it is now), and drops back to
//! nothing as soon as a paced reload finds the ring empty (the producer stopped), so a
//! consumer that waits for
//! sporadic items (a request and its reply, a doorbell) is never paced. While streaming, a reload that finds only a short run (items in
//! the very lines the producer is writing) leaves it for one pause too; the reload that ends
//! a pause takes whatever it finds.

/// How a [`Consumer`](crate::Consumer) spaces its reloads of the producer's index once it has
/// caught up with a producer that is still publishing. Set with
/// [`Consumer::set_pacing`](crate::Consumer::set_pacing); [`Pacing::Off`] until then.
///
/// The ring reads no clock, so a pause is counted in the caller's polls, and what it costs in
/// time depends on how often the caller polls. Pacing is for a consumer that polls in a tight
/// loop (a dedicated polling thread, a few nanoseconds to a microsecond between polls); there
/// [`Pacing::STREAMING`] takes the single-item stream of the benchmarks, when its consumer is
/// the faster side, from 26-46 ns to 3-9 ns per item. A consumer that polls between other
/// work (every few microseconds, say, while it serves other rings), or whose waiting loop
/// yields the CPU between polls, should keep [`Pacing::Off`]: its polls are too rare to
/// disturb the producer, and a burst that arrives between two of them would look like a
/// stream and wait for a pause of up to `max_deferred_polls` of its polls (the crate's stress
/// test, whose waiting loop yields at every poll after 64 spins, moves its items half as fast
/// paced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Pacing {
    /// Every `pop` or `read_chunk` that has used up the items it knew of reloads the producer's
    /// index: an item is seen at the first poll after it is published, at the price of the
    /// chasing regime when the consumer is the faster side. The default.
    #[default]
    Off,
    /// Adaptive pacing ([`Pacing::STREAMING`]). Once the producer has streamed `min(N / 2, 512)` items
    /// without an idle spell (4 empty reloads in a row), a consumer that catches up with it
    /// skips its next reloads, for an interval that starts at one poll, doubles while a paced
    /// reload still finds fewer than `min(N / 2, 512)` items, halves when a paced reload finds
    /// at least `3N / 4` (the producer may have stalled on the full ring), is at most
    /// `max_deferred_polls`, and is reset as soon as a paced reload finds the ring empty.
    /// Shorter bursts, and requests with their replies, are never paced.
    ///
    /// The cost is latency at the end of a stream: the last items a streaming producer
    /// publishes can stay unseen for up to `max_deferred_polls + 1` of the caller's polls. A
    /// consumer that polls rarely (microseconds apart) and wants each item at once should choose
    /// [`Pacing::Off`]. [`Consumer::available`](crate::Consumer::available) and
    /// [`Consumer::request_wakeup`](crate::Consumer::request_wakeup) always reload, and end
    /// any pause, so no item is ever hidden from a consumer about to sleep.
    Adaptive {
        /// The longest pause, in polls (calls of `pop` or `read_chunk` that would reload).
        max_deferred_polls: u16,
    },
}

impl Pacing {
    /// Adaptive, with pauses of at most 64 polls: for a consumer that polls in a tight loop.
    pub const STREAMING: Self = Self::Adaptive {
        max_deferred_polls: 64,
    };
}

/// Consecutive reloads that find the ring empty after which the producer counts as idle
/// rather than streaming (a consumer that chases a streaming producer finds it empty once in a
/// row; one that waits for a reply or for the next burst, several times).
const IDLE_RELOADS: u8 = 4;

/// The cap of both thresholds, a run worth having and the items that make a stream (otherwise
/// half the ring): enough for a pause to pay off, short enough that a stream earns pacing long
/// before a large ring has gone round once.
const RUN_CAP: usize = 512;

/// The consumer's pacing state: a few counters, touched only on the reload path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacer {
    /// The longest pause in polls; 0 turns pacing off.
    max: u16,
    /// A run worth having: a paced reload that finds fewer items doubles the pause.
    enough: u32,
    /// A paced reload that finds this many items (three quarters of the ring) halves the pause.
    crowded: u32,
    /// Items to take without an idle spell before the producer counts as streaming.
    streaming: u32,
    /// Items taken since the producer was last idle (saturating).
    streamed: u32,
    /// The pause to take the next time the consumer catches up; 0 while not streaming.
    interval: u16,
    /// Polls still to skip in the current pause.
    deferred_left: u16,
    /// The last reload ended a pause.
    pausing: bool,
    /// Consecutive reloads that found the ring empty (saturating).
    empty_run: u8,
}

impl Pacer {
    /// A pacer for a ring of `capacity` slots: a run worth having, and the items a producer
    /// publishes without an idle spell before it counts as streaming, are both half the ring,
    /// at most 512, so shorter bursts are never paced.
    pub(crate) const fn new(pacing: Pacing, capacity: usize) -> Self {
        let max = match pacing {
            Pacing::Off => 0,
            Pacing::Adaptive { max_deferred_polls } => max_deferred_polls,
        };
        let half = capacity / 2;
        let run = if half < RUN_CAP {
            half as u32
        } else {
            RUN_CAP as u32
        };
        Self {
            max,
            enough: run,
            crowded: (capacity - capacity / 4) as u32,
            streaming: run,
            streamed: 0,
            interval: 0,
            deferred_left: 0,
            pausing: false,
            empty_run: 0,
        }
    }

    pub(crate) const fn pacing(&self) -> Pacing {
        if self.max == 0 {
            Pacing::Off
        } else {
            Pacing::Adaptive {
                max_deferred_polls: self.max,
            }
        }
    }

    /// `true` if this poll is to be skipped (no reload).
    #[inline]
    pub(crate) fn skip_poll(&mut self) -> bool {
        if self.deferred_left == 0 {
            return false;
        }
        self.deferred_left -= 1;
        true
    }

    /// Ends any pause and forgets the streaming history: the next reload happens at once.
    pub(crate) fn reset(&mut self) {
        self.streamed = 0;
        self.interval = 0;
        self.deferred_left = 0;
        self.pausing = false;
        self.empty_run = 0;
    }

    /// Takes note of what a reload found, `available` items, and says whether to take them now
    /// (`true`) or to hold them back for one pause (`false`).
    pub(crate) fn observe(&mut self, available: u32) -> bool {
        if self.max == 0 {
            return true;
        }
        if available == 0 {
            if self.pausing {
                // A whole pause and nothing came: the producer stopped.
                self.reset();
            } else if self.empty_run == 0 && self.interval > 0 {
                // Caught up with a producer known to be streaming: pause.
                self.deferred_left = self.interval;
                self.pausing = true;
            }
            self.empty_run = self.empty_run.saturating_add(1);
            if self.empty_run >= IDLE_RELOADS {
                self.reset();
                self.empty_run = IDLE_RELOADS;
            }
            return true;
        }
        if self.pausing && available >= self.crowded {
            // The pause let the ring nearly fill: the producer has probably stalled on it for
            // part of the pause (a pause grown while the producer was slow, now that it is
            // fast, or a small ring). Shorten it.
            self.interval = (self.interval / 2).max(1);
        }
        if available < self.enough && self.streamed >= self.streaming {
            if self.pausing {
                // The pause was too short to let the producer get a run ahead.
                self.interval = self.interval.saturating_mul(2).min(self.max);
            } else if self.empty_run == 0 && self.interval > 0 {
                // Within a short run of a streaming producer: those items sit in the lines it
                // is writing now. Leave them for one pause rather than pull the lines away
                // item by item (the next reload ends the pause and takes them, whatever it
                // finds).
                self.deferred_left = self.interval;
                self.pausing = true;
                return false;
            } else if self.empty_run == 1 {
                // Items arrived right after one empty poll: the producer is publishing while
                // the consumer polls, which is the chasing regime starting.
                self.interval = self.interval.max(1);
            }
        }
        self.streamed = self.streamed.saturating_add(available);
        self.pausing = false;
        self.empty_run = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ring of the tests: 128 slots, a run worth having is 64 items, streaming after 64.
    const CAPACITY: usize = 128;

    fn pacer(pacing: Pacing) -> Pacer {
        Pacer::new(pacing, CAPACITY)
    }

    /// A pacer that has seen a producer stream a ring's worth of items, caught up with
    /// it once (one empty reload) and found a short run right after: pause interval 1.
    fn streaming_pacer() -> Pacer {
        let mut pacer = pacer(Pacing::STREAMING);
        assert!(pacer.observe(CAPACITY as u32));
        assert!(pacer.observe(0));
        assert!(pacer.observe(3));
        assert_eq!(pacer.interval, 1);
        pacer
    }

    /// Plays a consumer that polls once per step, and takes whatever a reload lets it take,
    /// against a producer that publishes `per_ten_polls` items every ten steps, for each
    /// `(steps, per_ten_polls)` phase in turn, and stalls while the ring is full. Returns the
    /// pause interval at the end, and the steps of the last phase in which the producer found
    /// the ring full.
    fn play(phases: &[(u32, u32)], max: u16) -> (u16, u32) {
        let mut pacer = pacer(Pacing::Adaptive {
            max_deferred_polls: max,
        });
        let (mut published, mut taken) = (0u32, 0u32);
        let mut stalled = 0;
        for &(steps, per_ten_polls) in phases {
            stalled = 0;
            // Tenths of an item the producer has made and not yet published.
            let mut made = 0;
            for _ in 0..steps {
                made += per_ten_polls;
                let room = CAPACITY as u32 - (published - taken);
                let ready = made / 10;
                if ready > room {
                    stalled += 1;
                    // A stalled producer holds one item, and makes no more until it is out.
                    made = 10;
                }
                published += ready.min(room);
                made -= 10 * ready.min(room);
                if pacer.skip_poll() {
                    continue;
                }
                if pacer.observe(published - taken) {
                    taken = published;
                }
            }
        }
        assert!(published > 0);
        (pacer.interval, stalled)
    }

    /// The interval a consumer settles on against a producer of constant speed.
    fn settle(per_ten_polls: u32, max: u16) -> u16 {
        play(&[(100_000, per_ten_polls)], max).0
    }

    #[test]
    fn off_never_pauses() {
        let mut pacer = pacer(Pacing::Off);
        for found in [128, 0, 1, 0, 1, 0, 2, 1, 0, 1] {
            assert!(!pacer.skip_poll());
            assert!(pacer.observe(found));
        }
        assert!(!pacer.skip_poll());
        assert_eq!(pacer.pacing(), Pacing::Off);
    }

    #[test]
    fn a_streaming_producer_is_given_room_up_to_the_bound() {
        // One item every second poll: the consumer is the faster side and keeps catching up;
        // the interval grows until a paced reload finds a whole run (64 items, 128 polls).
        assert_eq!(settle(5, 256), 128);
        // Capped by the bound.
        assert_eq!(settle(5, 8), 8);
    }

    #[test]
    fn a_pause_that_lets_the_ring_fill_is_shortened() {
        // The producer speeds up from one item every second poll (the interval grows to 128
        // polls) to 2 items a poll: a pause of 128 polls would leave it stalled on a full ring
        // for most of every pause. The interval comes down until a pause finds the ring less
        // than three quarters full.
        let (interval, stalled) = play(&[(100_000, 5), (100_000, 20)], 256);
        assert!((1..=48).contains(&interval), "interval {interval}");
        let (_, stalled_unpaced) = play(&[(100_000, 5), (100_000, 20)], 0);
        assert_eq!(stalled_unpaced, 0);
        assert!(
            stalled < 100_000 / 50,
            "stalled in {stalled} of 100000 polls"
        );
    }

    #[test]
    fn a_fast_producer_that_is_never_caught_is_never_paced() {
        assert_eq!(settle(1000, 256), 0);
    }

    #[test]
    fn a_request_and_its_reply_are_never_paced() {
        // An item after several empty polls, then empty again: no pause at any time.
        let mut pacer = pacer(Pacing::STREAMING);
        for _ in 0..1000 {
            for _ in 0..5 {
                assert!(!pacer.skip_poll());
                assert!(pacer.observe(0));
            }
            assert!(!pacer.skip_poll());
            assert!(pacer.observe(1));
        }
        assert_eq!(pacer.interval, 0);
    }

    #[test]
    fn bursts_that_fit_in_the_ring_are_never_paced() {
        // Bursts of 16 chased item by item, with an idle spell between bursts.
        let mut pacer = pacer(Pacing::STREAMING);
        for _ in 0..1000 {
            for _ in 0..8 {
                assert!(!pacer.skip_poll());
                assert!(pacer.observe(1));
                assert!(pacer.observe(0));
            }
            for _ in 0..IDLE_RELOADS {
                assert!(!pacer.skip_poll());
                assert!(pacer.observe(0));
            }
        }
        assert_eq!(pacer.interval, 0);
    }

    #[test]
    fn a_pause_that_finds_nothing_ends_pacing() {
        let mut pacer = streaming_pacer();
        assert!(pacer.observe(0)); // caught up: pause one poll
        assert!(pacer.skip_poll());
        assert!(!pacer.skip_poll());
        assert!(pacer.observe(0)); // nothing came: the producer stopped
        assert!(pacer.observe(0));
        assert!(!pacer.skip_poll());
        assert_eq!((pacer.interval, pacer.streamed), (0, 0));
    }

    #[test]
    fn a_short_run_of_a_streaming_producer_is_held_back_for_one_pause_only() {
        let mut pacer = streaming_pacer();
        assert!(
            !pacer.observe(2),
            "a short run right behind the producer waits"
        );
        assert!(pacer.skip_poll());
        assert!(!pacer.skip_poll());
        assert!(
            pacer.observe(3),
            "after the pause it is taken, short or not"
        );
        assert_eq!(pacer.interval, 2);
        // A run worth having is taken at once.
        assert!(pacer.observe(64));
    }

    #[test]
    fn reset_ends_a_pause() {
        let mut pacer = streaming_pacer();
        assert!(pacer.observe(0));
        pacer.reset();
        assert!(!pacer.skip_poll());
        assert_eq!(pacer.pacing(), Pacing::STREAMING);
    }
}
