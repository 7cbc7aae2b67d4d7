//! When requests are sent: one pacing (closed loop | open loop) composed with one stop
//! condition (a count | a duration), instead of a code path per combination (STYLE §26).
//!
//! Every request gets a [`Ticket`] whose `due` instant is where its latency is measured
//! from. In the closed loop `due` is the moment a worker takes the ticket, i.e. when it
//! sends. In the open loop `due` is the *intended* send time `start + i / rate`, fixed
//! in advance: if the server stalls, requests that could not be sent on time (no free
//! in-flight slot, a busy runtime) still count from their intended time, so the report
//! shows the queueing delay instead of hiding it (the coordinated-omission correction of
//! oha's `start_latency_correction`).
//!
//! The open loop is deliberately not bounded by `--concurrency`: each request runs in
//! its own task, up to `--max-in-flight` at once, a guard against exhausting sockets and
//! high enough not to pace the run in practice.
//!
//! Besides its stop condition a schedule can be *halted* from outside (Ctrl-C, see
//! [`super::interrupt`]): it then issues no new ticket, and the open loop's dispatcher
//! wakes at once from waiting for the next intended time or a free slot, leaving that
//! ticket unsent. Requests already sent are still awaited, in both loops.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How requests are paced.
#[derive(Debug, Clone, PartialEq)]
pub enum Pace {
    /// `workers` tasks, each sending its next request when the previous one is done.
    Closed { workers: u32 },
    /// `rate` requests per second at fixed intervals, at most `max_in_flight` at once.
    Open { rate: f64, max_in_flight: u32 },
    /// The open loop at a rate ramped linearly through `stages` (`--stages`).
    Ramp { ramp: Arc<Ramp>, max_in_flight: u32 },
}

/// When the run stops issuing requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many requests.
    Count(u64),
    /// Once this long has passed since the start (open loop: once the intended send
    /// time reaches it).
    Elapsed(Duration),
}

/// One request to send: its number (from 0) and the instant its latency counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub index: u64,
    pub due: Instant,
}

/// Hands out tickets until the stop condition is met or it is halted; shared by all
/// workers.
#[derive(Debug)]
pub struct Schedule {
    pace: Pace,
    stop: Stop,
    start: Instant,
    issued: AtomicU64,
    halt: CancellationToken,
}

impl Schedule {
    /// A schedule whose clock starts at `start`.
    pub fn new(pace: Pace, stop: Stop, start: Instant) -> Self {
        Self {
            pace,
            stop,
            start,
            issued: AtomicU64::new(0),
            halt: CancellationToken::new(),
        }
    }

    /// The same schedule, halted once `halt` is cancelled.
    pub fn halted_by(self, halt: CancellationToken) -> Self {
        Self { halt, ..self }
    }

    /// The next ticket, or `None` once the stop condition is met or the schedule is
    /// halted. `now` is only read in the closed loop, where it is the ticket's due time.
    pub fn next(&self, now: Instant) -> Option<Ticket> {
        if self.halt.is_cancelled() {
            return None;
        }
        let index = self.issued.fetch_add(1, Ordering::Relaxed);
        let due = match &self.pace {
            Pace::Closed { .. } => now,
            Pace::Open { rate, .. } => self.start + intended_offset(index, *rate),
            Pace::Ramp { ramp, .. } => self.start + ramp.offset(index)?,
        };
        let done = match self.stop {
            Stop::Count(n) => index >= n,
            Stop::Elapsed(d) => due >= self.start + d,
        };
        (!done).then_some(Ticket { index, due })
    }

    /// Waits until `ticket` is due and one of `slots` is free; `None` when the schedule
    /// is halted first, and the ticket must not be sent.
    async fn ready_to_send(
        &self,
        ticket: &Ticket,
        slots: &Arc<Semaphore>,
    ) -> Option<OwnedSemaphorePermit> {
        let ready = async {
            // A ticket already overdue is sent at once: the dispatcher catches up instead
            // of shifting the rest of the schedule.
            if ticket.due > Instant::now() {
                tokio::time::sleep_until(ticket.due).await;
            }
            slots.clone().acquire_owned().await.expect("never closed")
        };
        tokio::select! {
            biased;
            _ = self.halt.cancelled() => None,
            slot = ready => Some(slot),
        }
    }
}

/// One stage of `--stages`: the rate goes linearly to `target` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: f64,
}

/// Stages of a ramped open loop, starting from rate 0 (SPEC §17), like k6's ramping
/// arrival rate: request `i` is due when the integral of the rate reaches `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ramp {
    stages: Vec<Stage>,
}

impl Ramp {
    /// A ramp through `stages` (each longer than zero, rates finite and ≥ 0).
    pub fn new(stages: Vec<Stage>) -> Self {
        Self { stages }
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The whole ramp's length.
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// When request `index` is due, from the start; `None` past the ramp's end.
    pub fn offset(&self, index: u64) -> Option<Duration> {
        let mut remaining = index as f64;
        let (mut from, mut elapsed) = (0.0_f64, 0.0_f64);
        for stage in &self.stages {
            let d = stage.duration.as_secs_f64();
            let area = (from + stage.target) / 2.0 * d;
            if remaining < area {
                // rate(t) = from + slope·t; solve from·t + slope·t²/2 = remaining,
                // in the form that needs no division by the slope.
                let half_slope = (stage.target - from) / (2.0 * d);
                let root = (from * from + 4.0 * half_slope * remaining).max(0.0).sqrt();
                let denominator = from + root;
                let t = match denominator > 0.0 {
                    true => 2.0 * remaining / denominator,
                    false => 0.0,
                };
                return Some(Duration::from_secs_f64(elapsed + t.min(d)));
            }
            remaining -= area;
            from = stage.target;
            elapsed += d;
        }
        None
    }
}

/// Offset of request `index` from the start in the open loop: `index / rate` seconds,
/// computed from the index (not by adding intervals) so rounding never accumulates.
pub fn intended_offset(index: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(index as f64 / rate)
}

/// Issues every ticket of `schedule`, running `fire` for each, and returns when all of
/// them have completed.
pub async fn drive<F, Fut>(schedule: Arc<Schedule>, fire: F)
where
    F: Fn(Ticket) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    match &schedule.pace {
        Pace::Closed { workers } => {
            let workers = *workers;
            closed_loop(schedule, workers, fire).await
        }
        Pace::Open { max_in_flight, .. } | Pace::Ramp { max_in_flight, .. } => {
            let max_in_flight = *max_in_flight;
            open_loop(schedule, max_in_flight, fire).await
        }
    }
}

async fn closed_loop<F, Fut>(schedule: Arc<Schedule>, workers: u32, fire: F)
where
    F: Fn(Ticket) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (schedule, fire) = (schedule.clone(), fire.clone());
        set.spawn(async move {
            while let Some(ticket) = schedule.next(Instant::now()) {
                fire(ticket).await;
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

async fn open_loop<F, Fut>(schedule: Arc<Schedule>, max_in_flight: u32, fire: F)
where
    F: Fn(Ticket) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_in_flight as usize));
    while let Some(ticket) = schedule.next(Instant::now()) {
        let Some(slot) = schedule.ready_to_send(&ticket, &slots).await else {
            break;
        };
        let fire = fire.clone();
        tokio::spawn(async move {
            fire(ticket).await;
            drop(slot);
        });
    }
    // Every slot free again = every request finished.
    let _all = slots
        .acquire_many(max_in_flight)
        .await
        .expect("never closed");
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
