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
//! As a gate (SPEC §15, §17): `--threshold`s are checked on the final figures
//! ([`threshold`]), the run is compared with `--baseline` ([`baseline`]), and the exit
//! code says how it went: 0 all met (failed requests included when no threshold says
//! otherwise), 1 the run could not be made (target unreachable, receiver port taken,
//! every request refused with 401), 2 usage error (clap, or [`LoadArgs::check`], the
//! body file and the baseline, all read before anything is sent), 130 interrupted by
//! SIGINT or SIGTERM (after printing its report), 3 a threshold breached, 4 a
//! regression beyond `--max-regression`; when several apply, first in that order.
//!
//! - [`args`]: the options and their parsers.
//! - [`schedule`]: pacing × stop condition, and the coordinated-omission correction.
//! - [`interrupt`]: Ctrl-C in two steps: stop sending, then stop waiting.
//! - [`client`]: what is sent; outcomes and failure reasons.
//! - [`transport`]: keep-alive connections (our HTTP/1.1 pool; reqwest for https).
//! - [`receiver`]: callback receiver, matching, signatures, duplicates.
//! - [`stats`]: per-endpoint counts and HDR histograms.
//! - [`timeseries`]: per-second buckets by intended send time.
//! - [`report`]: table and JSON; [`table`]: its gate sections.
//! - [`threshold`], [`baseline`]: the gate.
//! - [`html`], [`svg`]: the self-contained HTML report.
//! - [`progress`]: the once-a-second line on a terminal.

mod args;
mod baseline;
mod client;
mod html;
mod interrupt;
mod mode;
mod progress;
mod receiver;
mod report;
mod schedule;
mod stats;
mod svg;
mod threshold;
mod timeseries;
mod transport;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use indicatif::ProgressBar;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use args::{ApiKeyArg, EXIT_CODES, LoadArgs, parse_duration};
pub use mode::Mode;
pub use report::Report;

use baseline::Baseline;
use client::{Client, Outcome};
use interrupt::{ABANDONED, EXIT_INTERRUPTED, Interrupt};
use receiver::{CallbackBook, CallbackCounts, Receiver};
use report::{AsyncInputs, RunFacts};
use schedule::{Schedule, Ticket};
use stats::Tally;

/// Printed when the service refused every async request with 400 (SPEC §7).
const CIDR_HINT: &str = "consuma load: hint: every async request was refused with 400; a server on \
defaults refuses loopback callbacks, start it with --allow-callback-cidr 127.0.0.0/8";

/// Printed when every request was answered 401 (the run could not be made: exit 1).
const API_KEY_HINT: &str = "consuma load: every request was refused with 401: the service \
holds API keys, pass one with --api-key (or CONSUMA_API_KEY)";

/// Exit codes (SPEC §15; 130 is [`EXIT_INTERRUPTED`]).
pub const EXIT_NOT_RUN: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_BREACHED: i32 = 3;
pub const EXIT_REGRESSED: i32 = 4;

/// What is read and checked before the run: a problem here is a usage error.
struct Prepared {
    input: String,
    baseline: Option<Baseline>,
}

fn prepare(args: &LoadArgs) -> Result<Prepared, String> {
    args.check()?;
    let input = match &args.body_file {
        Some(path) => client::read_input(path, args.mode.has_async())?,
        None => client::text_input(args.text(), args.count()),
    };
    let baseline = match &args.baseline {
        Some(path) => Some(Baseline::read(path, args.mode)?),
        None => None,
    };
    Ok(Prepared { input, baseline })
}

/// Runs the load generator; returns the process exit code.
pub async fn run(args: LoadArgs) -> anyhow::Result<i32> {
    let prepared = match prepare(&args) {
        Ok(prepared) => prepared,
        Err(usage) => {
            eprintln!("consuma load: {usage}");
            return Ok(EXIT_USAGE);
        }
    };
    let progress = progress::line(args.quiet);
    let interrupt = Interrupt::default();
    let signals = interrupt.on_signals();
    let measured = on_own_thread(measure(
        args.clone(),
        prepared.input.clone(),
        progress,
        interrupt,
    ))
    .await;
    signals.abort();
    let mut report = match measured? {
        Ok(report) => report,
        Err(reason) => {
            eprintln!("consuma load: {reason}");
            return Ok(EXIT_NOT_RUN);
        }
    };
    judge(&args, prepared.baseline.as_ref(), &mut report);
    Ok(publish(&args, &report))
}

/// Adds the thresholds' verdicts and the baseline comparison to `report`.
fn judge(args: &LoadArgs, baseline: Option<&Baseline>, report: &mut Report) {
    report.thresholds = args.thresholds.iter().map(|t| t.check(report)).collect();
    if let Some(baseline) = baseline {
        let current = serde_json::to_value(&*report).expect("a report always serialises");
        report.baseline = Some(baseline.compare(&current, args.max_regression));
    }
}

/// Prints the report (and writes `--html`) and returns the exit code, by SPEC §17's
/// precedence: 1 (could not be made) > 130 (interrupted) > 3 (breached) > 4 (regressed).
fn publish(args: &LoadArgs, report: &Report) -> i32 {
    if report.callbacks_refused_by_policy() {
        eprintln!("{CIDR_HINT}");
    }
    let unauthorized = report.all_unauthorized();
    if unauthorized {
        eprintln!("{API_KEY_HINT}");
    }
    // A reader that went away (`consuma load --json | head`) is not a failure of the run.
    let text = match args.json {
        true => format!("{}\n", report.to_json()),
        false => report.to_string(),
    };
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut out, text.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut out));
    let html_written = match &args.html {
        Some(path) => html::write(path, report)
            .map_err(|e| eprintln!("consuma load: cannot write --html {}: {e}", path.display()))
            .is_ok(),
        None => true,
    };
    exit_code(report, unauthorized || !html_written)
}

/// The exit code of a run that reported; `not_made` when it could not be made after
/// all (every request refused with 401, the HTML report not written).
fn exit_code(report: &Report, not_made: bool) -> i32 {
    if not_made {
        EXIT_NOT_RUN
    } else if report.interrupted {
        EXIT_INTERRUPTED
    } else if report.thresholds.iter().any(|t| !t.met) {
        EXIT_BREACHED
    } else if report
        .baseline
        .as_ref()
        .is_some_and(|b| !b.regressions.is_empty())
    {
        EXIT_REGRESSED
    } else {
        0
    }
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
    /// Requests sent so far, for the progress line.
    sent: AtomicU64,
    /// The second Ctrl-C: requests still in flight are abandoned.
    stop_waiting: CancellationToken,
}

impl Run {
    /// Sends the request of `ticket` and counts its outcome.
    async fn fire(&self, ticket: Ticket) {
        let kind = self.mode.kind_of(ticket.index);
        self.sent.fetch_add(1, Ordering::Relaxed);
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
        self.tally.record(kind, &outcome, latency, ticket.due);
    }

    /// The progress line's figures.
    fn counters(&self) -> progress::Counters {
        let (finished, errors) = self.tally.progress();
        progress::Counters {
            sent: self.sent.load(Ordering::Relaxed),
            finished,
            errors,
            callbacks: self.book.as_ref().map(|b| b.progress()),
        }
    }
}

/// Runs the load and builds the report; `Err` with a one-line reason when the run
/// cannot start. A run interrupted through `interrupt` still reports.
pub async fn measure(
    args: LoadArgs,
    input: String,
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
        args.work.as_deref(),
        &input,
        &callback_url,
        args.timeout,
    )
    .and_then(|c| c.with_api_key(args.api_key.as_ref().map(ApiKeyArg::reveal)))
    .map_err(|e| format!("{e:#}"))?;
    client
        .check_health()
        .await
        .map_err(|e| format!("cannot reach {}: {e}", args.target))?;
    let start = Instant::now();
    let run = Arc::new(Run {
        mode: args.mode,
        client,
        tally: Tally::starting_at(start),
        book: receiver.as_ref().map(|r| r.book().clone()),
        sent: AtomicU64::new(0),
        stop_waiting: interrupt.stop_waiting().clone(),
    });
    if let Some(book) = &run.book {
        book.set_origin(start);
    }
    let ticker = progress::tick(progress.clone(), start, {
        let run = run.clone();
        move || run.counters()
    });
    let times = tokio::select! {
        times = execute(&args, start, run.clone(), &interrupt, &progress) => times,
        never = ticker => match never {},
    };
    progress.finish_and_clear();
    let mut series = run.tally.take_series();
    let callbacks = match receiver {
        Some(receiver) => {
            let counts = receiver.book().counts();
            series.merge(receiver.book().take_series());
            receiver.stop().await;
            Some((counts, callback_url))
        }
        None => None,
    };
    let facts = run_facts(&args, &run.tally, times, interrupt.interrupted());
    let mut report = build_report(&args, facts, &run.tally, callbacks);
    report.timeseries = series.seconds();
    Ok(report)
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
async fn execute(
    args: &LoadArgs,
    start: Instant,
    run: Arc<Run>,
    interrupt: &Interrupt,
    progress: &ProgressBar,
) -> (Duration, Duration) {
    let schedule =
        Schedule::new(args.pace(), args.stop(), start).halted_by(interrupt.stop_sending().clone());
    let schedule = Arc::new(schedule);
    let fire_run = run.clone();
    schedule::drive(schedule, move |ticket| {
        let run = fire_run.clone();
        async move { run.fire(ticket).await }
    })
    .await;
    let sending = start.elapsed();
    if let Some(book) = &run.book {
        let deadline = Instant::now() + args.callback_timeout;
        wait_for_callbacks(book, deadline, progress, interrupt).await;
    }
    (sending, start.elapsed())
}

/// Waits for the outstanding callbacks until all are here, `deadline` passes or the
/// second Ctrl-C.
async fn wait_for_callbacks(
    book: &CallbackBook,
    deadline: Instant,
    progress: &ProgressBar,
    interrupt: &Interrupt,
) {
    tokio::select! {
        // First, so a run with nothing outstanding ends without announcing a wait.
        biased;
        _ = book.wait_for_all(deadline) => {}
        _ = interrupt.stop_waiting().cancelled() => {}
        _ = announce_interrupted_wait(book, progress, interrupt) => {}
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

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
