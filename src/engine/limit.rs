//! The adaptive in-flight limit of one destination (SPEC §14, §17): how many attempts
//! this instance runs to it at once.
//!
//! An AIMD limit with a latency gradient, in the spirit of TCP Vegas: the destination's
//! recent minimum latency stands for its uncongested round trip. Each attempt that ends
//! tells the limit how it went:
//! - an answer whose latency stays near the recent minimum, while the limit is in use
//!   (at least half of it was in flight), adds one — past the starting limit only while
//!   the recent p90 latency is at most [`GROW_P90_CEILING`];
//! - a timeout, a transport error, 5xx or 429, or an attempt in flight for longer than
//!   [`CONGESTED_AFTER`], multiplies it by [`BACKOFF`];
//! - an answer whose latency rose well above the recent minimum multiplies it by
//!   [`EASE`];
//! - anything else (a policy refusal, an answer in between) leaves it.
//!
//! The limit stays within [`Bounds`]: the configured minimum and maximum, the maximum
//! being at most half of the workers. Pure and clock-free: the caller measures latency.

use std::collections::VecDeque;
use std::time::Duration;

/// Where every destination's limit starts (today's fixed cap), within the bounds.
pub const START: u32 = 16;
/// The limit grows past [`START`] only while the recent p90 latency is at most this.
pub const GROW_P90_CEILING: Duration = Duration::from_millis(250);
/// An attempt in flight for longer than this is a sign of congestion.
pub const CONGESTED_AFTER: Duration = Duration::from_secs(1);
/// The factor applied on a failure or congestion.
pub const BACKOFF: f64 = 0.9;
/// The factor applied when latency rose well above the recent minimum.
pub const EASE: f64 = 0.95;
/// Latencies remembered for the recent minimum and p90.
const WINDOW: usize = 64;

/// The range a limit moves in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
}

impl Bounds {
    /// From `--callback-min/max-in-flight-per-destination` and `--workers`: the maximum
    /// is at most half of the workers (at least 1); the minimum at most the maximum.
    pub fn new(min: u32, max: u32, workers: usize) -> Self {
        let half = u32::try_from(workers / 2).unwrap_or(u32::MAX).max(1);
        let max = max.clamp(1, half);
        Self {
            min: min.clamp(1, max),
            max,
        }
    }

    /// Where a limit starts: [`START`] within the bounds.
    pub fn start(&self) -> u32 {
        START.clamp(self.min, self.max)
    }
}

/// How an attempt ended, as the limit sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// The endpoint answered (anything but 5xx and 429) after this long.
    Answered(Duration),
    /// A timeout, a transport error, 5xx or 429.
    Dropped,
    /// Nothing learned (refused by the callback policy).
    Neutral,
}

/// One destination's limit.
#[derive(Debug, Clone)]
pub struct Limit {
    bounds: Bounds,
    value: f64,
    /// The latest answers' latencies, oldest first.
    recent: VecDeque<Duration>,
}

impl Limit {
    pub fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            value: f64::from(bounds.start()),
            recent: VecDeque::with_capacity(WINDOW),
        }
    }

    /// Attempts allowed at once now.
    pub fn get(&self) -> u32 {
        (self.value.floor() as u32).clamp(self.bounds.min, self.bounds.max)
    }

    /// Whether the limit is where it started with nothing learned: safe to forget.
    pub fn is_fresh(&self) -> bool {
        self.get() == self.bounds.start() && self.recent.is_empty()
    }

    /// Learns from an attempt that ended; `in_flight` is how many attempts to this
    /// destination were running when it ended (itself included).
    pub fn record(&mut self, sample: Sample, in_flight: u32) {
        match sample {
            Sample::Neutral => {}
            Sample::Dropped => self.scale(BACKOFF),
            Sample::Answered(latency) => self.answered(latency, in_flight),
        }
    }

    fn answered(&mut self, latency: Duration, in_flight: u32) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(latency);
        if latency > CONGESTED_AFTER {
            return self.scale(BACKOFF);
        }
        let floor = self.recent_min();
        if latency > floor * 4 + Duration::from_millis(100) {
            return self.scale(EASE);
        }
        let near = latency <= floor * 2 + Duration::from_millis(20);
        let in_use = f64::from(in_flight) * 2.0 >= self.value;
        if !near || !in_use {
            return;
        }
        let ceiling = match self.p90() <= GROW_P90_CEILING {
            true => self.bounds.max,
            false => self.bounds.start(),
        };
        // Up by one, to the ceiling at most; never down for being above it.
        self.value = (self.value + 1.0).min(f64::from(ceiling)).max(self.value);
    }

    fn scale(&mut self, factor: f64) {
        self.value = (self.value * factor).max(f64::from(self.bounds.min));
    }

    fn recent_min(&self) -> Duration {
        self.recent.iter().min().copied().unwrap_or_default()
    }

    /// The recent answers' 90th percentile latency.
    fn p90(&self) -> Duration {
        let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        let at = (sorted.len() * 9).div_ceil(10).saturating_sub(1);
        sorted.get(at).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limit(min: u32, max: u32, workers: usize) -> Limit {
        Limit::new(Bounds::new(min, max, workers))
    }

    /// Feeds `n` samples, each ending with the limit fully in use.
    fn feed(l: &mut Limit, sample: Sample, n: usize) -> u32 {
        for _ in 0..n {
            let busy = l.get();
            l.record(sample, busy);
        }
        l.get()
    }

    #[test]
    fn bounds_follow_the_flags_and_half_the_workers() {
        #[rustfmt::skip]
        let table = [
            // (min, max, workers) -> (min, max, start)
            ((4, 256, 256), (4, 128, 16)),
            ((4, 256, 1024), (4, 256, 16)),
            ((4, 256, 10), (4, 5, 5)),
            ((4, 256, 2), (1, 1, 1)),
            ((4, 256, 0), (1, 1, 1)),
            ((1, 3, 256), (1, 3, 3)),
            ((8, 8, 256), (8, 8, 8)),
            ((20, 30, 256), (20, 30, 20)),
        ];
        for ((min, max, workers), (lo, hi, start)) in table {
            let b = Bounds::new(min, max, workers);
            assert_eq!(
                (b.min, b.max, b.start()),
                (lo, hi, start),
                "{min} {max} {workers}"
            );
        }
    }

    #[test]
    fn fast_answers_grow_the_limit_up_to_the_maximum() {
        let mut l = limit(4, 256, 256);
        assert_eq!(l.get(), 16);
        assert_eq!(feed(&mut l, Sample::Answered(2 * MS), 10), 26);
        assert_eq!(feed(&mut l, Sample::Answered(2 * MS), 500), 128);
    }

    #[test]
    fn an_idle_destination_does_not_grow() {
        let mut l = limit(4, 256, 256);
        for _ in 0..100 {
            l.record(Sample::Answered(2 * MS), 1);
        }
        assert_eq!(l.get(), 16, "growth needs at least half the limit in use");
    }

    #[test]
    fn failures_and_congestion_shrink_the_limit_to_the_minimum() {
        for sample in [
            Sample::Dropped,
            Sample::Answered(Duration::from_millis(1500)),
        ] {
            let mut l = limit(4, 256, 256);
            feed(&mut l, Sample::Answered(2 * MS), 40);
            let grown = l.get();
            assert!(grown > 16, "{grown}");
            let once = feed(&mut l, sample, 1);
            assert!(once < grown, "{sample:?}: {once} < {grown}");
            assert_eq!(feed(&mut l, sample, 60), 4, "{sample:?}");
        }
    }

    #[test]
    fn rising_latency_eases_the_limit_and_holds_in_between() {
        let mut l = limit(4, 256, 256);
        feed(&mut l, Sample::Answered(10 * MS), 20);
        let grown = l.get();
        assert_eq!(grown, 36);
        assert_eq!(
            feed(&mut l, Sample::Answered(50 * MS), 5),
            grown,
            "in between holds"
        );
        assert!(feed(&mut l, Sample::Answered(400 * MS), 5) < grown);
    }

    #[test]
    fn a_slow_receiver_never_grows_past_the_start() {
        // Answers in 300 ms, steady: near its own minimum, but its p90 is over 250 ms.
        let mut l = limit(4, 256, 256);
        assert_eq!(feed(&mut l, Sample::Answered(300 * MS), 200), 16);
        // Below the start it may grow back to the start, not further.
        let mut l = limit(4, 256, 256);
        feed(&mut l, Sample::Dropped, 10);
        assert!(l.get() < 16);
        assert_eq!(feed(&mut l, Sample::Answered(300 * MS), 200), 16);
    }

    #[test]
    fn min_equal_to_max_fixes_the_limit() {
        let mut l = limit(7, 7, 256);
        assert_eq!(feed(&mut l, Sample::Answered(MS), 100), 7);
        assert_eq!(feed(&mut l, Sample::Dropped, 100), 7);
    }

    #[test]
    fn neutral_samples_teach_nothing() {
        let mut l = limit(4, 256, 256);
        assert_eq!(feed(&mut l, Sample::Neutral, 100), 16);
        assert!(l.is_fresh());
    }
}
