//! The circuit's schedule, on an injected clock: the book is told `now` with every
//! question, so a cool-down is proved to the millisecond without waiting for it. What the
//! store adds (the block every instance honours, the one probe its claim hands out once
//! the block ends) is given here as the [`Destination`] a claim would read.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;

const COOL: Duration = Duration::from_millis(1500);
const MS: Duration = Duration::from_millis(1);

fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(d).unwrap()
}

fn before(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t - chrono::Duration::from_std(d).unwrap()
}

/// Destination 7 as the store has it: `blocked_until` and the cool-down in force.
fn seen(blocked_until: Option<DateTime<Utc>>, cooldown: Option<Duration>) -> Destination {
    Destination {
        id: 7,
        tenant: "t".into(),
        origin: "https://a.example:443".into(),
        blocked_until,
        cooldown,
        paused: false,
        rate_limited: false,
    }
}

fn finish(
    book: &mut Destinations,
    d: &Destination,
    probe: bool,
    health: Health,
    now: DateTime<Utc>,
) -> Option<CircuitChange> {
    book.finish(d, probe, (health, MS), Some("HTTP 503"), now)
}

/// A book whose circuit for destination 7 opened at `t0`, after five failures; the
/// block to store.
fn opened_at(t0: DateTime<Utc>) -> (Destinations, DateTime<Utc>) {
    let mut book = Destinations::new(Bounds::new(1, 1, 1024), COOL);
    let d = seen(None, None);
    for _ in 0..FAILURES_TO_OPEN - 1 {
        assert!(book.begin(7, false, t0));
        assert_eq!(finish(&mut book, &d, false, Health::Failed, t0), None);
    }
    assert!(book.begin(7, false, t0));
    let Some(CircuitChange::Open {
        until, cooldown, ..
    }) = finish(&mut book, &d, false, Health::Failed, t0)
    else {
        panic!("the fifth failure in a row opens the circuit");
    };
    assert_eq!((until, cooldown), (after(t0, COOL), COOL));
    (book, until)
}

#[test]
fn nothing_but_the_probe_goes_before_the_cool_down_ends() {
    let t0 = Utc::now();
    let (mut book, until) = opened_at(t0);
    let blocked = seen(Some(until), Some(COOL));
    for ms in [0, 1, 700, 1499] {
        let now = after(t0, Duration::from_millis(ms));
        assert_eq!(book.admits(&blocked, now), Admit::CircuitOpen, "at {ms} ms");
        assert!(!book.begin(7, false, now), "a claimed delivery at {ms} ms");
        // Not yet stored (or storing the block failed): this instance holds back anyway.
        assert_eq!(book.admits(&seen(None, None), now), Admit::CircuitOpen);
    }
    // The block is the store's: while it stands, work that ends waits for the claim,
    // whatever the time, and the claim's one probe is the only attempt that goes.
    let late = after(t0, COOL * 3);
    assert_eq!(book.admits(&blocked, late), Admit::CircuitOpen);
    assert!(
        book.begin(7, true, until),
        "the probe goes at the end of the cool-down"
    );
    assert_eq!(book.in_flight(7), 1);
    assert!(
        !book.begin(7, false, until),
        "at the cap: nothing goes beside the probe"
    );
    // Had the block not been stored, this instance's own hold lapses with the cool-down.
    let lapsed = opened_at(t0).0;
    assert_eq!(lapsed.admits(&seen(None, None), until), Admit::Attempt);
}

#[test]
fn an_answer_to_the_probe_closes_the_circuit_and_the_count_starts_again() {
    let t0 = Utc::now();
    let (mut book, until) = opened_at(t0);
    let blocked = seen(Some(until), Some(COOL));
    assert!(book.begin(7, true, until));
    let closed = finish(
        &mut book,
        &blocked,
        true,
        Health::Answered,
        after(until, MS),
    );
    assert_eq!(closed, Some(CircuitChange::Close { destination: 7 }));
    let open = seen(None, None);
    let now = after(until, MS * 2);
    assert_eq!(book.admits(&open, now), Admit::Attempt);
    // Four failures after the close do not open it again: the count restarted.
    assert_eq!(finish(&mut book, &open, false, Health::Failed, now), None);
    for _ in 0..FAILURES_TO_OPEN - 2 {
        assert!(book.begin(7, false, now));
        assert_eq!(finish(&mut book, &open, false, Health::Failed, now), None);
    }
}

#[test]
fn a_failed_probe_reopens_for_the_next_cool_down_each_twice_the_last_up_to_thirty_times() {
    let t0 = Utc::now();
    let (mut book, mut until) = opened_at(t0);
    let mut cooldown = COOL;
    for next in [2, 4, 8, 16, 30, 30].map(|n| COOL * n) {
        // The probe goes when the cool-down ends, and fails.
        assert!(book.begin(7, true, until));
        let blocked = seen(Some(until), Some(cooldown));
        let failed_at = after(until, MS * 10);
        let Some(CircuitChange::Open {
            until: reopened,
            cooldown: longer,
            ..
        }) = finish(&mut book, &blocked, true, Health::Failed, failed_at)
        else {
            panic!("a failed probe reopens the circuit");
        };
        assert_eq!((longer, reopened), (next, after(failed_at, next)));
        // This instance holds back until the new cool-down ends, not a millisecond less.
        assert!(!book.begin(7, false, before(reopened, MS)));
        let unstored = seen(None, None);
        assert_eq!(
            book.admits(&unstored, after(failed_at, next - MS)),
            Admit::CircuitOpen
        );
        (until, cooldown) = (reopened, longer);
    }
}
