//! This instance's view of each destination (SPEC §8): attempts running now (the cap),
//! consecutive counted failures, and whether it knows the circuit to be open.
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

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

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

#[derive(Debug, Default, Clone)]
struct State {
    in_flight: u32,
    failures: u32,
    /// This instance opened the circuit (or saw a probe fail) until then, and has not
    /// seen it close. It holds back attempts even before the block is stored; it lapses
    /// by itself, should storing the block have failed.
    open_until: Option<DateTime<Utc>>,
}

impl State {
    fn open(&self, now: DateTime<Utc>) -> bool {
        self.open_until.is_some_and(|until| until > now)
    }
}

/// Per-destination caps and circuits of one instance.
#[derive(Debug)]
pub struct Destinations {
    cap: u32,
    cooldown: Duration,
    states: HashMap<i64, State>,
}

/// What the engine does with a job whose work just ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A slot is taken: attempt now.
    Attempt,
    /// The destination is at this instance's cap: wait for a slot.
    AtCap,
    /// The circuit is open (or being probed): wait for it.
    CircuitOpen,
}

impl Destinations {
    pub fn new(cap: u32, cooldown: Duration) -> Self {
        Self {
            cap: cap.max(1),
            cooldown,
            states: HashMap::new(),
        }
    }

    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// For a job whose work just ended: take a slot if the destination's circuit is closed
    /// and it is under the cap.
    pub fn try_begin(&mut self, d: &Destination, now: DateTime<Utc>) -> Admit {
        let state = self.states.entry(d.id).or_default();
        if state.open(now) || d.blocked_until.is_some() {
            return Admit::CircuitOpen;
        }
        if state.in_flight >= self.cap {
            return Admit::AtCap;
        }
        state.in_flight += 1;
        Admit::Attempt
    }

    /// For a delivery the claim handed out: take a slot if there still is one (work that
    /// ended since the claim may have taken the last) and this instance has not just
    /// opened the circuit; a probe always goes.
    pub fn begin(&mut self, destination: i64, probe: bool, now: DateTime<Utc>) -> bool {
        let cap = self.cap;
        let state = self.states.entry(destination).or_default();
        if !probe && (state.in_flight >= cap || state.open(now)) {
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

    /// Records the end of an attempt to `d` (a `probe` or not) at `now`; returns the
    /// change to store with it, if any. `why` is the attempt's error, for the reason.
    pub fn finish(
        &mut self,
        d: &Destination,
        probe: bool,
        health: Health,
        why: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<CircuitChange> {
        let cooldown = self.cooldown;
        let state = self.states.entry(d.id).or_default();
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

    /// Destinations with attempts running here, and how many more each may take.
    pub fn slots_left(&self) -> HashMap<i64, u32> {
        self.states
            .iter()
            .filter(|(_, s)| s.in_flight > 0)
            .map(|(id, s)| (*id, self.cap.saturating_sub(s.in_flight)))
            .collect()
    }

    /// Destinations at this instance's cap.
    pub fn at_cap(&self) -> Vec<i64> {
        self.states
            .iter()
            .filter(|(_, s)| s.in_flight >= self.cap)
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
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(10);

    fn dest(blocked: bool, cooldown: Option<Duration>) -> Destination {
        Destination {
            id: 7,
            tenant: "t".into(),
            origin: "https://a.example:443".into(),
            blocked_until: blocked.then(Utc::now),
            cooldown,
        }
    }

    fn fail(book: &mut Destinations, d: &Destination, probe: bool) -> Option<CircuitChange> {
        book.finish(d, probe, Health::Failed, Some("timeout"), Utc::now())
    }

    #[test]
    fn the_cap_bounds_attempts_and_frees_a_slot_when_one_ends() {
        let mut book = Destinations::new(2, COOL);
        let d = dest(false, None);
        assert_eq!(book.try_begin(&d, Utc::now()), Admit::Attempt);
        assert_eq!(book.try_begin(&d, Utc::now()), Admit::Attempt);
        assert_eq!(book.try_begin(&d, Utc::now()), Admit::AtCap);
        assert_eq!(book.at_cap(), vec![7]);
        assert_eq!(book.slots_left()[&7], 0);
        book.finish(&d, false, Health::Answered, None, Utc::now());
        assert_eq!(book.slots_left()[&7], 1);
        assert_eq!(book.try_begin(&d, Utc::now()), Admit::Attempt);
    }

    #[test]
    fn five_counted_failures_in_a_row_open_the_circuit_once() {
        let mut book = Destinations::new(16, COOL);
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
        assert_eq!(book.try_begin(&d, Utc::now()), Admit::CircuitOpen);
        assert!(book.begin(7, true, Utc::now()));
        assert_eq!(fail(&mut book, &d, false), None, "already open");
    }

    #[test]
    fn an_answer_in_between_resets_the_count_and_neutral_refusals_do_not_count() {
        let mut book = Destinations::new(16, COOL);
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
            assert_eq!(book.finish(&d, false, health, None, Utc::now()), None);
        }
    }

    #[test]
    fn a_failed_probe_doubles_the_cool_down_up_to_thirty_times() {
        let mut book = Destinations::new(16, COOL);
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
        let mut book = Destinations::new(16, COOL);
        let d = dest(true, Some(COOL));
        assert_eq!(
            book.finish(&d, true, Health::Answered, None, Utc::now()),
            Some(CircuitChange::Close { destination: 7 })
        );
        book.begin(7, false, Utc::now());
        assert_eq!(
            book.finish(&d, false, Health::Answered, None, Utc::now()),
            Some(CircuitChange::Close { destination: 7 })
        );
    }

    #[test]
    fn a_claimed_delivery_finds_no_slot_when_work_took_the_last() {
        let mut book = Destinations::new(1, COOL);
        let d = dest(false, None);
        assert_eq!(book.try_begin(&d, Utc::now()), Admit::Attempt);
        assert!(!book.begin(7, false, Utc::now()));
        assert!(book.begin(7, true, Utc::now()), "a probe always goes");
    }

    #[test]
    fn idle_destinations_are_forgotten() {
        let mut book = Destinations::new(4, COOL);
        let d = dest(false, None);
        book.try_begin(&d, Utc::now());
        book.abandon(7);
        assert!(book.slots_left().is_empty());
        assert_eq!(book.in_flight(7), 0);
    }
}
