//! `consuma load`, the load generator (SPEC §7).
//!
//! A run is: start the callback receiver (async modes) → check `GET /healthz` → issue
//! requests on a [`schedule`] (closed loop with N workers, or open loop at a fixed rate;
//! stopping after a count or a duration) → wait for outstanding callbacks, at most
//! `--callback-timeout` → report. Every request is counted once ([`stats`]), every
//! callback matched by `request_id` ([`receiver`]); latencies are measured from each
//! request's due time, which in the open loop is its intended send time. Ctrl-C
//! ([`interrupt`]) cuts a run short without losing it: the first stops sending, the
//! second stops waiting, and the report of what was measured is printed either way.
//!
//! Exit codes: 0 when the run completed (failed requests included), 130 when it was
//! interrupted by SIGINT or SIGTERM (after printing its report), 1 when it could not
//! start (target unreachable, receiver port taken), 2 for bad options (clap).
//!
//! - [`args`]: the options and their parsers.
//! - [`schedule`]: pacing × stop condition, and the coordinated-omission correction.
//! - [`interrupt`]: Ctrl-C in two steps: stop sending, then stop waiting.
//! - [`client`]: what is sent; outcomes and failure reasons.
//! - [`transport`]: keep-alive connections (our HTTP/1.1 pool; reqwest for https).
//! - [`receiver`]: callback receiver, matching, signatures, duplicates.
//! - [`stats`]: per-endpoint counts and HDR histograms.
//! - [`report`]: table and JSON.

mod args;
mod client;
mod interrupt;
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
use tokio_util::sync::CancellationToken;

pub use args::{ApiKeyArg, LoadArgs, Mode, parse_duration};
pub use report::Report;

use client::{Client, Outcome};
use interrupt::{ABANDONED, EXIT_INTERRUPTED, Interrupt};
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
    let interrupt = Interrupt::default();
    let signals = interrupt.on_signals();
    let measured = on_own_thread(measure(args, progress, interrupt)).await;
    signals.abort();
    let report = match measured? {
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
    Ok(if report.interrupted {
        EXIT_INTERRUPTED
    } else {
        0
    })
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
    /// The second Ctrl-C: requests still in flight are abandoned.
    stop_waiting: CancellationToken,
}

impl Run {
    /// Sends the request of `ticket` and counts its outcome.
    async fn fire(&self, ticket: Ticket) {
        let kind = self.mode.kind_of(ticket.index);
        // An abandoned request was sent, so it is still counted, as `interrupted`.
        let outcome = tokio::select! {
            outcome = self.client.send(kind) => outcome,
            _ = self.stop_waiting.cancelled() => Outcome::Transport(ABANDONED),
        };
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
/// cannot start. A run interrupted through `interrupt` still reports.
pub async fn measure(
    args: LoadArgs,
    progress: ProgressBar,
    interrupt: Interrupt,
) -> Result<Report, String> {
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
    .and_then(|c| c.with_api_key(args.api_key.as_ref().map(ApiKeyArg::reveal)))
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
        stop_waiting: interrupt.stop_waiting().clone(),
    });
    let times = execute(&args, run.clone(), &interrupt).await;
    run.progress.finish_and_clear();
    let callbacks = match receiver {
        Some(receiver) => {
            let counts = receiver.book().counts();
            receiver.stop().await;
            Some((counts, callback_url))
        }
        None => None,
    };
    let facts = run_facts(&args, &run.tally, times, interrupt.interrupted());
    Ok(build_report(&args, facts, &run.tally, callbacks))
}

/// The figures of the run as a whole; `times` is (sending phase, total time).
fn run_facts(
    args: &LoadArgs,
    tally: &Tally,
    (sending, total): (Duration, Duration),
    interrupted: bool,
) -> RunFacts {
    RunFacts {
        target: args.target.clone(),
        mode: args.mode.as_str(),
        pacing: args.pace().into(),
        sending,
        total,
        answers: tally.answers(),
        interrupted,
    }
}

/// Puts the final counts together; `callbacks` is `None` when no async request ran.
fn build_report(
    args: &LoadArgs,
    facts: RunFacts,
    tally: &Tally,
    callbacks: Option<(CallbackCounts, String)>,
) -> Report {
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
/// The first Ctrl-C halts the schedule; the second also ends the wait for callbacks.
async fn execute(args: &LoadArgs, run: Arc<Run>, interrupt: &Interrupt) -> (Duration, Duration) {
    let schedule = Schedule::new(args.pace(), args.stop(), Instant::now())
        .halted_by(interrupt.stop_sending().clone());
    let schedule = Arc::new(schedule);
    let start = schedule.start();
    let fire_run = run.clone();
    schedule::drive(schedule, move |ticket| {
        let run = fire_run.clone();
        async move { run.fire(ticket).await }
    })
    .await;
    let sending = start.elapsed();
    if let Some(book) = &run.book {
        let deadline = Instant::now() + args.callback_timeout;
        wait_for_callbacks(book, deadline, &run.progress, interrupt).await;
    }
    (sending, start.elapsed())
}

/// Waits for the outstanding callbacks, showing how many came so far, until all are
/// here, `deadline` passes or the second Ctrl-C.
async fn wait_for_callbacks(
    book: &CallbackBook,
    deadline: Instant,
    progress: &ProgressBar,
    interrupt: &Interrupt,
) {
    let show = async {
        loop {
            let (received, expected) = book.progress();
            progress.set_message(format!("waiting for callbacks: {received}/{expected}"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        // First, so a run with nothing outstanding ends without announcing a wait.
        biased;
        _ = book.wait_for_all(deadline) => {}
        _ = interrupt.stop_waiting().cancelled() => {}
        _ = announce_interrupted_wait(book, progress, interrupt) => {}
        _ = show => {}
    }
}

/// Once the first Ctrl-C came, says on stderr what is still awaited and how to stop
/// waiting; then never finishes.
async fn announce_interrupted_wait(
    book: &CallbackBook,
    progress: &ProgressBar,
    interrupt: &Interrupt,
) {
    interrupt.stop_sending().cancelled().await;
    let (received, expected) = book.progress();
    let outstanding = expected.saturating_sub(received);
    // Printed around the progress bar, not through it (a hidden bar prints nothing).
    progress.suspend(|| {
        eprintln!(
            "consuma load: interrupted; stopped sending, waiting for {outstanding} callbacks \
             (Ctrl-C again to report now)"
        )
    });
    std::future::pending::<()>().await
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
