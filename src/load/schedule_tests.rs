//! Tests of pacing, stop conditions, ramps and halting.
use super::*;
use std::sync::Mutex;

fn open(rate: f64, stop: Stop, start: Instant) -> Schedule {
    let pace = Pace::Open {
        rate,
        max_in_flight: 10,
    };
    Schedule::new(pace, stop, start)
}

fn drain(s: &Schedule, now: Instant) -> Vec<Ticket> {
    std::iter::from_fn(|| s.next(now)).collect()
}

#[test]
fn open_loop_intended_times_are_evenly_spaced_from_the_start() {
    let start = Instant::now();
    let tickets = drain(&open(4.0, Stop::Count(9), start), start);
    assert_eq!(tickets.len(), 9);
    for (i, t) in tickets.iter().enumerate() {
        assert_eq!(t.index, i as u64);
        assert_eq!(t.due - start, Duration::from_millis(250) * i as u32);
    }
}

#[test]
fn a_ramp_from_zero_sends_its_area_with_the_rate_rising_then_falling() {
    let secs = Duration::from_secs;
    // 0 → 10/s over 10 s (50 requests), 10/s for 10 s (100), 10 → 0 over 10 s (50).
    let stages = [(10, 10.0), (10, 10.0), (10, 0.0)].map(|(d, target)| Stage {
        duration: secs(d),
        target,
    });
    let ramp = Ramp::new(stages.to_vec());
    assert_eq!(ramp.duration(), secs(30));
    let offsets: Vec<Duration> = (0..).map_while(|i| ramp.offset(i)).collect();
    assert_eq!(offsets.len(), 200);
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "not monotonic");
    let near = |d: Duration, want: f64| (d.as_secs_f64() - want).abs() < 1e-6;
    // Request i of the first stage is due when t²/2 = i, i.e. t = sqrt(2i).
    assert!(
        near(offsets[0], 0.0) && near(offsets[8], 4.0),
        "{offsets:?}"
    );
    assert!(near(offsets[50], 10.0) && near(offsets[60], 11.0));
    // In the last stage the gaps widen as the rate falls.
    assert!(offsets[199] - offsets[198] > offsets[151] - offsets[150]);
    assert!(offsets[199] < secs(30));
    let counted = |from: u64, to: u64| {
        offsets
            .iter()
            .filter(|o| **o >= secs(from) && **o < secs(to))
            .count()
    };
    assert_eq!(
        (counted(0, 10), counted(10, 20), counted(20, 30)),
        (50, 100, 50)
    );
}

#[test]
fn a_ramped_schedule_stops_at_the_end_of_its_stages() {
    let start = Instant::now();
    let stage = Stage {
        duration: Duration::from_secs(2),
        target: 4.0,
    };
    let pace = Pace::Ramp {
        ramp: Arc::new(Ramp::new(vec![stage])),
        max_in_flight: 10,
    };
    let s = Schedule::new(pace, Stop::Elapsed(Duration::from_secs(2)), start);
    assert_eq!(drain(&s, start).len(), 4);
}

#[test]
fn open_loop_times_do_not_drift_over_many_requests() {
    let offset = intended_offset(3_000_000, 3.0);
    assert_eq!(offset, Duration::from_secs(1_000_000));
}

#[test]
fn open_loop_duration_stops_at_the_last_intended_time_before_the_end() {
    let start = Instant::now();
    let s = open(10.0, Stop::Elapsed(Duration::from_secs(2)), start);
    let tickets = drain(&s, start);
    assert_eq!(tickets.len(), 20);
    assert!(tickets.last().unwrap().due < start + Duration::from_secs(2));
}

#[test]
fn closed_loop_count_stops_after_n_and_stays_stopped() {
    let start = Instant::now();
    let s = Schedule::new(Pace::Closed { workers: 2 }, Stop::Count(3), start);
    let later = start + Duration::from_secs(5);
    let tickets = drain(&s, later);
    assert_eq!(tickets.len(), 3);
    assert!(tickets.iter().all(|t| t.due == later));
    assert!(s.next(later).is_none());
}

#[test]
fn closed_loop_duration_stops_when_the_clock_passes_the_end() {
    let start = Instant::now();
    let s = Schedule::new(
        Pace::Closed { workers: 2 },
        Stop::Elapsed(Duration::from_secs(1)),
        start,
    );
    assert!(s.next(start + Duration::from_millis(999)).is_some());
    assert!(s.next(start + Duration::from_secs(1)).is_none());
}

#[tokio::test(start_paused = true)]
async fn open_loop_sends_at_the_intended_times_even_when_requests_never_finish_quickly() {
    // Every request takes 10 s; the open loop must still send one every 100 ms.
    let sent = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let schedule = Arc::new(open(10.0, Stop::Count(5), start));
    let log = sent.clone();
    drive(schedule, move |t: Ticket| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push((t.due, Instant::now()));
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    })
    .await;
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 5);
    for (due, at) in sent.iter() {
        assert_eq!(due, at, "a request was not sent at its intended time");
    }
    assert!(
        start.elapsed() >= Duration::from_secs(10),
        "drive returned before the requests finished"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_in_flight_limit_delays_sending_but_not_the_measurement_origin() {
    let start = Instant::now();
    let pace = Pace::Open {
        rate: 10.0,
        max_in_flight: 1,
    };
    let schedule = Arc::new(Schedule::new(pace, Stop::Count(3), start));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    drive(schedule, move |t: Ticket| {
        let log = log.clone();
        async move {
            log.lock()
                .unwrap()
                .push((t.due - start, Instant::now() - start));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
    let sent = sent.lock().unwrap();
    let secs = |d: Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
    let seen: Vec<(f64, f64)> = sent.iter().map(|(d, a)| (secs(*d), secs(*a))).collect();
    assert_eq!(seen, vec![(0.0, 0.0), (0.1, 1.0), (0.2, 2.0)]);
}

#[tokio::test(start_paused = true)]
async fn closed_loop_keeps_exactly_n_requests_in_flight() {
    let start = Instant::now();
    let schedule = Arc::new(Schedule::new(
        Pace::Closed { workers: 4 },
        Stop::Count(12),
        start,
    ));
    let peak = Arc::new(Mutex::new((0u32, 0u32)));
    let p = peak.clone();
    drive(schedule, move |_t: Ticket| {
        let p = p.clone();
        async move {
            {
                let mut g = p.lock().unwrap();
                g.0 += 1;
                g.1 = g.1.max(g.0);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            p.lock().unwrap().0 -= 1;
        }
    })
    .await;
    assert_eq!(peak.lock().unwrap().1, 4);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[test]
fn a_halted_schedule_issues_no_more_tickets_in_either_loop() {
    let start = Instant::now();
    for pace in [
        Pace::Closed { workers: 2 },
        Pace::Open {
            rate: 10.0,
            max_in_flight: 10,
        },
    ] {
        let halt = CancellationToken::new();
        let s = Schedule::new(pace.clone(), Stop::Count(100), start).halted_by(halt.clone());
        assert!(s.next(start).is_some());
        halt.cancel();
        assert!(s.next(start).is_none(), "{pace:?}");
        assert!(s.next(start).is_none(), "{pace:?} stays halted");
    }
}

/// What a halted drive did: requests sent, requests finished, and when `drive`
/// returned (from the start).
#[derive(Debug, PartialEq)]
struct Halted {
    sent: u64,
    finished: u64,
    returned_at: Duration,
}

/// Drives a schedule of 1,000 requests taking `service` each, halted at `halt_at`.
async fn drive_halted_at(pace: Pace, service: Duration, halt_at: Duration) -> Halted {
    let start = Instant::now();
    let halt = CancellationToken::new();
    let schedule = Schedule::new(pace, Stop::Count(1000), start).halted_by(halt.clone());
    tokio::spawn(async move {
        tokio::time::sleep(halt_at).await;
        halt.cancel();
    });
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let c = counts.clone();
    drive(Arc::new(schedule), move |_t: Ticket| {
        let c = c.clone();
        async move {
            c.0.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(service).await;
            c.1.fetch_add(1, Ordering::Relaxed);
        }
    })
    .await;
    Halted {
        sent: counts.0.load(Ordering::Relaxed),
        finished: counts.1.load(Ordering::Relaxed),
        returned_at: start.elapsed(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_halt_wakes_the_open_loop_from_its_sleep_without_sending_more() {
    // One request a second: sent at 0, 1 and 2 s, each done 200 ms later. Halted at
    // 2.5 s while sleeping until 3 s: it must return then, with no fourth request.
    let pace = Pace::Open {
        rate: 1.0,
        max_in_flight: 10,
    };
    let ms = Duration::from_millis;
    let halted = drive_halted_at(pace, ms(200), ms(2500)).await;
    let expected = Halted {
        sent: 3,
        finished: 3,
        returned_at: ms(2500),
    };
    assert_eq!(halted, expected);
}

#[tokio::test(start_paused = true)]
async fn a_halted_open_loop_still_awaits_the_requests_in_flight() {
    let pace = Pace::Open {
        rate: 1.0,
        max_in_flight: 10,
    };
    let secs = Duration::from_secs;
    let halted = drive_halted_at(pace, secs(10), Duration::from_millis(2500)).await;
    // The request sent at 2 s finishes at 12 s.
    let expected = Halted {
        sent: 3,
        finished: 3,
        returned_at: secs(12),
    };
    assert_eq!(halted, expected);
}

#[tokio::test(start_paused = true)]
async fn a_halt_wakes_the_open_loop_waiting_for_a_free_slot() {
    // One slot, held 10 s by the first request; the second (due at 0.1 s) waits for
    // it and must be dropped, not sent, when the halt comes at 1 s.
    let pace = Pace::Open {
        rate: 10.0,
        max_in_flight: 1,
    };
    let secs = Duration::from_secs;
    let halted = drive_halted_at(pace, secs(10), secs(1)).await;
    let expected = Halted {
        sent: 1,
        finished: 1,
        returned_at: secs(10),
    };
    assert_eq!(halted, expected);
}

#[tokio::test(start_paused = true)]
async fn halted_closed_loop_workers_finish_their_request_and_take_no_other() {
    // Two workers, 1 s per request: two sent at 0 s, two at 1 s; halted at 1.5 s.
    let pace = Pace::Closed { workers: 2 };
    let secs = Duration::from_secs;
    let halted = drive_halted_at(pace, secs(1), Duration::from_millis(1500)).await;
    let expected = Halted {
        sent: 4,
        finished: 4,
        returned_at: secs(2),
    };
    assert_eq!(halted, expected);
}
