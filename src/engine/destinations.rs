//! This instance's view of each destination (SPEC §8, §14): attempts running now, its
//! adaptive in-flight limit ([`super::limit`]), consecutive counted failures, and whether
//! it knows the circuit to be open.
//!
//! Pure and clock-free: the engine asks it before an attempt and tells it after; it
//! answers with the [`CircuitChange`] to store with the attempt. What every instance
//! must honour (a block, its cool-down) lives in the store; what is per instance (the
//! cap, the failure count) lives here.
//!
//! Rules:
//! - an attempt *counts* against its destination when it ends without a response or
//!   with 5xx or 429; a 2xx, 3xx or other 4xx means the endpoint answered; a refusal by
//!   the callback policy is neither;
//! - 5 consecutive counted failures open the circuit for the configured cool-down;
//! - a counted failure of a probe opens it again for twice the cool-down it had (at most
//!   30 times the setting); an answer closes it, whether from the probe or from an
//!   attempt that was already running.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::limit::{Bounds, Limit, Sample};
use crate::store::{CircuitChange, Destination};

/// Consecutive counted failures that open a circuit.
pub const FAILURES_TO_OPEN: u32 = 5;
/// The longest cool-down, as a multiple of `--callback-breaker-cooldown-ms`.
pub const MAX_COOLDOWN_FACTOR: u32 = 30;

/// How an attempt went, as far as its destination's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The endpoint answered (2xx, 3xx, 4xx other than 429).
    Answered,
    /// No response, a timeout, 5xx or 429.
    Failed,
    /// Refused by the callback policy: says nothing about the endpoint.
    Neutral,
}

#[derive(Debug, Clone)]
struct State {
    in_flight: u32,
    limit: Limit,
    failures: u32,
    /// This instance opened the circuit (or saw a probe fail) until then, and has not
    /// seen it close. It holds back attempts even before the block is stored; it lapses
    /// by itself, should storing the block have failed.
    open_until: Option<DateTime<Utc>>,
}

impl State {
    fn new(bounds: Bounds) -> Self {
        Self {
            in_flight: 0,
            limit: Limit::new(bounds),
            failures: 0,
            open_until: None,
        }
    }

    fn full(&self) -> bool {
        self.in_flight >= self.limit.get()
    }

    fn open(&self, now: DateTime<Utc>) -> bool {
        self.open_until.is_some_and(|until| until > now)
    }
}

/// Per-destination limits and circuits of one instance.
#[derive(Debug)]
pub struct Destinations {
    bounds: Bounds,
    cooldown: Duration,
    states: HashMap<i64, State>,
    /// Paused or rate-limited destinations as last read from the store (every instance
    /// refreshes them every 250 ms): work that ends does not attempt them directly, even
    /// when its claim saw them otherwise.
    held: HashSet<i64>,
}

/// What the engine does with a job whose work just ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Attempt now, if a slot is still free once the work is recorded.
    Attempt,
    /// The destination is at this instance's cap: wait for a slot.
    AtCap,
    /// The circuit is open (or being probed): wait for it.
    CircuitOpen,
    /// Paused, or rate limited (every attempt then goes through a claim): wait for it.
    Held,
}

impl Destinations {
    pub fn new(bounds: Bounds, cooldown: Duration) -> Self {
        Self {
            bounds,
            cooldown,
            states: HashMap::new(),
            held: HashSet::new(),
        }
    }

    /// The paused and rate-limited destinations, as the store has them now.
    pub fn set_held(&mut self, held: impl IntoIterator<Item = i64>) {
        self.held = held.into_iter().collect();
    }

    /// The limit of a destination this instance knows nothing about.
    pub fn cap(&self) -> u32 {
        self.bounds.start()
    }

    /// `destination`'s in-flight limit here now.
    pub fn limit(&self, destination: i64) -> u32 {
        self.states
            .get(&destination)
            .map_or(self.cap(), |s| s.limit.get())
    }

    /// Whether `destination` has as many attempts running here as its limit allows.
    pub fn full(&self, destination: i64) -> bool {
        self.states.get(&destination).is_some_and(State::full)
    }

    fn state(&mut self, destination: i64) -> &mut State {
        let bounds = self.bounds;
        self.states
            .entry(destination)
            .or_insert_with(|| State::new(bounds))
    }

    /// For a job whose work just ended: whether it may attempt now: the destination is
    /// neither held nor known to be blocked, and it is under the cap. Takes no slot: the
    /// job takes one with [`Self::begin`] once its work is recorded, so the cap counts
    /// attempts under way, not records being written.
    pub fn admits(&self, d: &Destination, now: DateTime<Utc>) -> Admit {
        if d.paused || d.rate_limited || self.held.contains(&d.id) {
            return Admit::Held;
        }
        let state = self.states.get(&d.id);
        if state.is_some_and(|s| s.open(now)) || d.blocked_until.is_some() {
            return Admit::CircuitOpen;
        }
        if state.is_some_and(State::full) {
            return Admit::AtCap;
        }
        Admit::Attempt
    }

    /// Before an attempt: take a slot if there still is one (work that ended since the
    /// claim, or since [`Self::admits`], may have taken the last) and this instance has not
    /// just opened the circuit; a probe always goes.
    pub fn begin(&mut self, destination: i64, probe: bool, now: DateTime<Utc>) -> bool {
        let state = self.state(destination);
        if !probe && (state.full() || state.open(now)) {
            return false;
        }
        state.in_flight += 1;
        true
    }

    /// Gives a slot back without an outcome (the attempt never happened).
    pub fn abandon(&mut self, destination: i64) {
        if let Some(state) = self.states.get_mut(&destination) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        self.forget_if_idle(destination);
    }

    /// Records the end of an attempt to `d` (a `probe` or not) at `now`, after `took`;
    /// returns the change to store with it, if any. `why` is the attempt's error, for the
    /// reason.
    pub fn finish(
        &mut self,
        d: &Destination,
        probe: bool,
        (health, took): (Health, Duration),
        why: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<CircuitChange> {
        let cooldown = self.cooldown;
        let state = self.state(d.id);
        let sample = match health {
            Health::Answered => Sample::Answered(took),
            Health::Failed => Sample::Dropped,
            Health::Neutral => Sample::Neutral,
        };
        state.limit.record(sample, state.in_flight.max(1));
        state.in_flight = state.in_flight.saturating_sub(1);
        let change = match health {
            Health::Neutral => None,
            Health::Answered => {
                state.failures = 0;
                let was_open = state.open_until.is_some() || probe || d.blocked_until.is_some();
                state.open_until = None;
                was_open.then_some(CircuitChange::Close { destination: d.id })
            }
            Health::Failed => {
                state.failures += 1;
                let why = why.unwrap_or("no response");
                let change = if probe {
                    let longer = d.cooldown.unwrap_or(cooldown) * 2;
                    let next = longer.min(cooldown * MAX_COOLDOWN_FACTOR);
                    let reason = format!("{} still failing: the probe got {why}", d.origin);
                    Some(open(d, now, next, reason))
                } else if !state.open(now)
                    && d.blocked_until.is_none()
                    && state.failures >= FAILURES_TO_OPEN
                {
                    let reason = format!(
                        "{} failed {} times in a row (last: {why})",
                        d.origin, state.failures
                    );
                    Some(open(d, now, cooldown, reason))
                } else {
                    None
                };
                if let Some(CircuitChange::Open { until, .. }) = &change {
                    state.open_until = Some(*until);
                }
                change
            }
        };
        self.forget_if_idle(d.id);
        change
    }

    /// Destinations this instance knows (attempts running, or a limit learned), and how
    /// many more attempts each may take now.
    pub fn slots_left(&self) -> HashMap<i64, u32> {
        self.states
            .iter()
            .map(|(id, s)| (*id, s.limit.get().saturating_sub(s.in_flight)))
            .collect()
    }

    /// Destinations at their limit here.
    pub fn at_cap(&self) -> Vec<i64> {
        self.states
            .iter()
            .filter(|(_, s)| s.full())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Attempts running to `destination` here.
    pub fn in_flight(&self, destination: i64) -> u32 {
        self.states.get(&destination).map_or(0, |s| s.in_flight)
    }

    /// Keeps the map to the destinations that have something to remember.
    fn forget_if_idle(&mut self, destination: i64) {
        if let Some(s) = self.states.get(&destination)
            && s.in_flight == 0
            && s.failures == 0
            && s.open_until.is_none()
            && s.limit.get() == self.bounds.start()
        {
            self.states.remove(&destination);
        }
    }
}

fn open(d: &Destination, now: DateTime<Utc>, cooldown: Duration, reason: String) -> CircuitChange {
    CircuitChange::Open {
        destination: d.id,
        until: now + cooldown,
        cooldown,
        reason,
    }
}

#[cfg(test)]
#[path = "destinations_tests.rs"]
mod schedule_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(10);
    const MS: Duration = Duration::from_millis(1);

    /// Books whose limit is fixed at `cap`.
    fn fixed(cap: u32) -> Destinations {
        Destinations::new(Bounds::new(cap, cap, 1024), COOL)
    }

    fn dest(blocked: bool, cooldown: Option<Duration>) -> Destination {
        Destination {
            id: 7,
            tenant: "t".into(),
            origin: "https://a.example:443".into(),
            blocked_until: blocked.then(Utc::now),
            cooldown,
            paused: false,
            rate_limited: false,
        }
    }

    /// As the engine does when a work ends: asks, then takes a slot to attempt.
    fn take(book: &mut Destinations, d: &Destination) -> Admit {
        let admit = book.admits(d, Utc::now());
        if admit == Admit::Attempt {
            assert!(
                book.begin(d.id, false, Utc::now()),
                "admitted, so a slot is free"
            );
        }
        admit
    }

    fn fail(book: &mut Destinations, d: &Destination, probe: bool) -> Option<CircuitChange> {
        book.finish(d, probe, (Health::Failed, MS), Some("timeout"), Utc::now())
    }

    #[test]
    fn the_cap_bounds_attempts_and_frees_a_slot_when_one_ends() {
        let mut book = fixed(2);
        let d = dest(false, None);
        assert_eq!(take(&mut book, &d), Admit::Attempt);
        assert_eq!(take(&mut book, &d), Admit::Attempt);
        assert_eq!(take(&mut book, &d), Admit::AtCap);
        assert_eq!(book.at_cap(), vec![7]);
        assert_eq!(book.slots_left()[&7], 0);
        book.finish(&d, false, (Health::Answered, MS), None, Utc::now());
        assert_eq!(book.slots_left()[&7], 1);
        assert_eq!(take(&mut book, &d), Admit::Attempt);
    }

    #[test]
    fn the_limit_adapts_per_destination_and_is_kept_while_learned() {
        let mut book = Destinations::new(Bounds::new(4, 256, 256), COOL);
        let d = dest(false, None);
        for _ in 0..16 {
            assert_eq!(take(&mut book, &d), Admit::Attempt);
        }
        assert_eq!(take(&mut book, &d), Admit::AtCap);
        book.finish(&d, false, (Health::Answered, MS), None, Utc::now());
        assert_eq!(
            book.limit(7),
            17,
            "a fast answer under load grows the limit"
        );
        assert_eq!(book.slots_left()[&7], 2);
        for _ in 0..15 {
            book.finish(&d, false, (Health::Failed, MS), None, Utc::now());
        }
        assert_eq!(book.in_flight(7), 0);
        assert!(book.limit(7) < 16, "failures shrink it: {}", book.limit(7));
        assert!(book.at_cap().is_empty());
        assert!(
            book.slots_left().contains_key(&7),
            "an idle destination keeps a learned limit"
        );
        assert_eq!(book.limit(8), 16, "another destination starts at 16");
    }

    #[test]
    fn paused_rate_limited_or_held_destinations_are_not_attempted_after_work() {
        let mut book = fixed(4);
        let mut d = dest(false, None);
        d.paused = true;
        assert_eq!(take(&mut book, &d), Admit::Held);
        d.paused = false;
        d.rate_limited = true;
        assert_eq!(take(&mut book, &d), Admit::Held);
        d.rate_limited = false;
        book.set_held([7]);
        assert_eq!(take(&mut book, &d), Admit::Held, "paused since the claim");
        book.set_held([]);
        assert_eq!(take(&mut book, &d), Admit::Attempt);
    }

    #[test]
    fn five_counted_failures_in_a_row_open_the_circuit_once() {
        let mut book = fixed(16);
        let d = dest(false, None);
        for _ in 0..4 {
            book.begin(7, false, Utc::now());
            assert_eq!(fail(&mut book, &d, false), None);
        }
        book.begin(7, false, Utc::now());
        let Some(CircuitChange::Open {
            cooldown, reason, ..
        }) = fail(&mut book, &d, false)
        else {
            panic!("the fifth failure opens the circuit");
        };
        assert_eq!(cooldown, COOL);
        assert!(
            reason.contains("https://a.example:443 failed 5 times"),
            "{reason}"
        );
        assert!(
            !book.begin(7, false, Utc::now()),
            "only probes go while open"
        );
        assert_eq!(take(&mut book, &d), Admit::CircuitOpen);
        assert!(book.begin(7, true, Utc::now()));
        assert_eq!(fail(&mut book, &d, false), None, "already open");
    }

    #[test]
    fn an_answer_in_between_resets_the_count_and_neutral_refusals_do_not_count() {
        let mut book = fixed(16);
        let d = dest(false, None);
        for health in [
            Health::Failed,
            Health::Failed,
            Health::Failed,
            Health::Failed,
            Health::Answered,
            Health::Neutral,
            Health::Failed,
        ] {
            book.begin(7, false, Utc::now());
            assert_eq!(book.finish(&d, false, (health, MS), None, Utc::now()), None);
        }
    }

    #[test]
    fn a_failed_probe_doubles_the_cool_down_up_to_thirty_times() {
        let mut book = fixed(16);
        let Some(CircuitChange::Open { cooldown, .. }) =
            fail(&mut book, &dest(true, Some(COOL)), true)
        else {
            panic!("a failed probe re-opens");
        };
        assert_eq!(cooldown, COOL * 2);
        let Some(CircuitChange::Open { cooldown, .. }) =
            fail(&mut book, &dest(true, Some(COOL * 20)), true)
        else {
            panic!("a failed probe re-opens");
        };
        assert_eq!(cooldown, COOL * 30);
    }

    #[test]
    fn an_answer_to_a_probe_or_a_late_attempt_closes_the_circuit() {
        let mut book = fixed(16);
        let d = dest(true, Some(COOL));
        assert_eq!(
            book.finish(&d, true, (Health::Answered, MS), None, Utc::now()),
            Some(CircuitChange::Close { destination: 7 })
        );
        book.begin(7, false, Utc::now());
        assert_eq!(
            book.finish(&d, false, (Health::Answered, MS), None, Utc::now()),
            Some(CircuitChange::Close { destination: 7 })
        );
    }

    #[test]
    fn a_claimed_delivery_finds_no_slot_when_work_took_the_last() {
        let mut book = fixed(1);
        let d = dest(false, None);
        assert_eq!(take(&mut book, &d), Admit::Attempt);
        assert!(!book.begin(7, false, Utc::now()));
        assert!(book.begin(7, true, Utc::now()), "a probe always goes");
    }

    #[test]
    fn idle_destinations_are_forgotten() {
        let mut book = fixed(4);
        let d = dest(false, None);
        take(&mut book, &d);
        book.abandon(7);
        assert!(book.slots_left().is_empty());
        assert_eq!(book.in_flight(7), 0);
    }
}
