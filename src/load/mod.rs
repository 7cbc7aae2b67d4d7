//! `consuma load`, the load generator (SPEC §7).
//!
//! A run is: start the callback receiver (async modes) → check `GET /healthz` → issue
//! requests on a [`schedule`] (closed loop with N workers, or open loop at a fixed rate;
//! stopping after a count or a duration) → wait for outstanding callbacks, at most
//! `--callback-timeout` → report. Every request is counted once ([`stats`]), every
//! callback matched by `request_id` ([`receiver`]); latencies are measured from each
//! request's due time, which in the open loop is its intended send time.
//!
//! Exit codes: 0 when the run completed (failed requests included), 1 when it could not
//! start (target unreachable, receiver port taken), 2 for bad options (clap).
//!
//! - [`args`]: the options and their parsers.
//! - [`schedule`]: pacing × stop condition, and the coordinated-omission correction.
//! - [`client`]: what is sent; outcomes and failure reasons.
//! - [`transport`]: keep-alive connections (our HTTP/1.1 pool; reqwest for https).
//! - [`receiver`]: callback receiver, matching, signatures, duplicates.
//! - [`stats`]: per-endpoint counts and HDR histograms.
//! - [`report`]: table and JSON.

mod args;
mod client;
mod receiver;
mod report;
mod schedule;
mod stats;
mod transport;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

pub use args::{LoadArgs, Mode, parse_duration};
pub use report::Report;

use client::{Client, Outcome};
use receiver::{CallbackBook, CallbackCounts, Receiver};
use report::{AsyncInputs, RunFacts};
use schedule::{Schedule, Stop, Ticket};
use stats::Tally;

/// Printed when the service refused every async request with 400 (SPEC §7).
const CIDR_HINT: &str = "consuma load: hint: every async request was refused with 400; a server on \
defaults refuses loopback callbacks, start it with --allow-callback-cidr 127.0.0.0/8";

/// Runs the load generator; returns the process exit code.
pub async fn run(args: LoadArgs) -> anyhow::Result<i32> {
    let json = args.json;
    let progress = progress_bar(args.stop());
    let report = match on_own_thread(measure(args, progress)).await? {
        Ok(report) => report,
        Err(reason) => {
            eprintln!("consuma load: {reason}");
            return Ok(1);
        }
    };
    if report.callbacks_refused_by_policy() {
        eprintln!("{CIDR_HINT}");
    }
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    Ok(0)
}

/// Runs `work` on a single-threaded runtime of its own thread.
///
/// Why: with every task of the generator (request tasks, connection tasks, the
/// receiver) on one thread, a request costs no cross-thread wake-ups; on the benchmark
/// that cut the generator's CPU per request by about 30 % (73 → 52 µs with reqwest),
/// CPU that on a shared machine is taken from the server under test. At the ~36 µs per
/// request of the HTTP/1.1 pool, one thread has room for roughly 25,000 requests/s (an
/// estimate), about ten times what the service answers on our 2-core machines.
async fn on_own_thread<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the generator's runtime")?;
    tokio::task::spawn_blocking(move || runtime.block_on(work))
        .await
        .context("the generator's thread panicked")
}

/// Everything the request tasks share.
struct Run {
    mode: Mode,
    client: Client,
    tally: Tally,
    book: Option<Arc<CallbackBook>>,
    progress: ProgressBar,
}

impl Run {
    /// Sends the request of `ticket` and counts its outcome.
    async fn fire(&self, ticket: Ticket) {
        let kind = self.mode.kind_of(ticket.index);
        let outcome = self.client.send(kind).await;
        let latency = Instant::now().saturating_duration_since(ticket.due);
        if let (
            Some(book),
            Outcome::Ok {
                request_id: Some(id),
            },
        ) = (&self.book, &outcome)
        {
            book.expect(id.clone(), ticket.due);
        }
        self.tally.record(kind, &outcome, latency);
        self.progress.inc(1);
    }
}

/// Runs the load and builds the report; `Err` with a one-line reason when the run
/// cannot start.
pub async fn measure(args: LoadArgs, progress: ProgressBar) -> Result<Report, String> {
    let receiver = match args.mode.has_async() {
        true => Some(
            Receiver::start(
                &args.callback_host,
                args.callback_port,
                args.signing_secret.clone(),
            )
            .await?,
        ),
        false => None,
    };
    let callback_url = receiver.as_ref().map(|r| r.url.clone()).unwrap_or_default();
    let client = Client::new(
        &args.target,
        &args.text,
        args.count,
        &callback_url,
        args.timeout,
    )
    .map_err(|e| format!("{e:#}"))?;
    client
        .check_health()
        .await
        .map_err(|e| format!("cannot reach {}: {e}", args.target))?;
    let run = Arc::new(Run {
        mode: args.mode,
        client,
        tally: Tally::default(),
        book: receiver.as_ref().map(|r| r.book().clone()),
        progress,
    });
    let (sending, total) = execute(&args, run.clone()).await;
    run.progress.finish_and_clear();
    let callbacks = match receiver {
        Some(receiver) => {
            let counts = receiver.book().counts();
            receiver.stop().await;
            Some((counts, callback_url))
        }
        None => None,
    };
    Ok(build_report(&args, &run.tally, (sending, total), callbacks))
}

/// Puts the final counts together; `callbacks` is `None` when no async request ran.
fn build_report(
    args: &LoadArgs,
    tally: &Tally,
    (sending, total): (Duration, Duration),
    callbacks: Option<(CallbackCounts, String)>,
) -> Report {
    let facts = RunFacts {
        target: args.target.clone(),
        mode: args.mode.as_str(),
        pacing: args.pace().into(),
        sending,
        total,
        answers: tally.answers(),
    };
    let (sync, asynch) = tally.take_sections();
    let asynch = callbacks.map(|(callbacks, callback_url)| AsyncInputs {
        section: asynch,
        callbacks,
        signatures_verified: args.signing_secret.is_some(),
        callback_url,
    });
    Report::build(facts, args.mode.has_sync().then_some(sync), asynch)
}

/// Sends every request, then waits for callbacks; returns (sending phase, total time).
async fn execute(args: &LoadArgs, run: Arc<Run>) -> (Duration, Duration) {
    let schedule = Arc::new(Schedule::new(args.pace(), args.stop(), Instant::now()));
    let start = schedule.start();
    let fire_run = run.clone();
    schedule::drive(schedule, move |ticket| {
        let run = fire_run.clone();
        async move { run.fire(ticket).await }
    })
    .await;
    let sending = start.elapsed();
    if let Some(book) = &run.book {
        wait_for_callbacks(book, Instant::now() + args.callback_timeout, &run.progress).await;
    }
    (sending, start.elapsed())
}

/// Waits for the outstanding callbacks, showing how many came so far.
async fn wait_for_callbacks(book: &CallbackBook, deadline: Instant, progress: &ProgressBar) {
    let show = async {
        loop {
            let (received, expected) = book.progress();
            progress.set_message(format!("waiting for callbacks: {received}/{expected}"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        _ = book.wait_for_all(deadline) => {}
        _ = show => {}
    }
}

/// A progress bar on stderr when it is a terminal; hidden otherwise (pipes, CI, --json
/// into a file keep a clean stderr).
fn progress_bar(stop: Stop) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match stop {
        Stop::Count(n) => (
            ProgressBar::new(n),
            "{bar:40} {pos}/{len} requests  {elapsed}  {msg}".to_string(),
        ),
        Stop::Elapsed(d) => (
            ProgressBar::new_spinner(),
            format!(
                "{{spinner}} {{pos}} requests  {{elapsed}} of {}s  {{msg}}",
                d.as_secs_f64()
            ),
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
