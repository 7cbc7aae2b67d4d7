//! The options of `consuma load` (SPEC §7) and their value parsers.
//!
//! The doc comment of each field is its `--help` text. Every value is checked here, so a
//! bad option is a clap error (exit 2) before any request is sent; `--requests` and
//! `--duration` conflict in clap for the same reason.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::mode::Mode;
use super::schedule::{Pace, Ramp, Stage, Stop};
use super::threshold::{Threshold, parse_threshold};
use crate::delivery::signing::SigningSecret;

/// The exit codes, in `--help` (SPEC §15, §17).
pub const EXIT_CODES: &str = "\
Exit codes:
  0    the run completed and every threshold was met
  1    the run could not be made (target unreachable, callback port taken, every
       request refused with 401)
  2    usage error (a bad option, threshold or baseline)
  3    a threshold was breached
  4    a regression against --baseline beyond --max-regression
  130  interrupted (SIGINT or SIGTERM); the report of what was measured is printed
When several apply, the first in this order wins: 2, 1, 130, 3, 4.";

/// Options of `consuma load`.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct LoadArgs {
    /// Base URL of the service under test (http or https); /sync, /async and /healthz
    /// are appended to it.
    #[arg(long, default_value = "http://localhost:8000", value_parser = parse_target)]
    pub target: String,

    /// Requests to send in all (with --mode both, alternating sync and async).
    /// [default: 100]
    #[arg(long, conflicts_with_all = ["duration", "stages"], value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Send for this long instead of a number of requests: 30s, 500ms or plain seconds
    /// (2.5). Requests still in flight at the end are awaited and counted.
    #[arg(long, conflicts_with = "stages", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,

    /// Closed loop (no --rate): this many workers, each sending its next request as soon
    /// as the previous one is answered. Ignored with --rate (see --max-in-flight).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,

    /// Open loop: send this many requests per second at fixed intervals, whether or not
    /// earlier ones were answered. Latency is measured from each request's intended send
    /// time, so a server that falls behind shows its queueing delay.
    #[arg(long, conflicts_with = "stages", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Open loop with a ramped rate: `10s:100,30s:2000,10s:0` goes linearly from 0 to
    /// 100 requests/s over 10 s, then to 2000/s over 30 s, then down to 0 over 10 s.
    /// Excludes --rate, --requests and --duration.
    #[arg(long, value_parser = parse_stages)]
    pub stages: Option<Arc<Ramp>>,

    /// Open loop only: the most requests in flight at once (a guard against exhausting
    /// sockets). A request that must wait for a slot is sent late, and its latency
    /// still counts from its intended send time.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_in_flight: u32,

    /// Which endpoint to load: sync (POST /sync), async (POST /async and wait for the
    /// callbacks) or both (alternating, sync first).
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    pub mode: Mode,

    /// Address the built-in callback receiver listens on; the callback_url sent is
    /// http://<callback-host>:<port>/callback, so the service must be able to reach it
    /// (and its callback policy must allow it: --allow-callback-cidr 127.0.0.0/8).
    #[arg(long, default_value = "127.0.0.1")]
    pub callback_host: String,

    /// Port of the callback receiver; 0 picks a free port.
    #[arg(long, default_value_t = 8888)]
    pub callback_port: u16,

    /// After the last request, how long to wait for outstanding callbacks (30s, 500ms
    /// or plain seconds); the run ends as soon as all have arrived. Callbacks still
    /// missing then are counted as failures (callback_missing).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub callback_timeout: Duration,

    /// Time allowed for one request, from sending to the end of the response body; a
    /// request over it counts as a failure (timeout).
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// The `text` of every request. [default: Hello world]
    #[arg(long)]
    pub text: Option<String>,

    /// The `count` of every request. [default: 3]
    #[arg(long)]
    pub count: Option<i64>,

    /// The service's callback signing secret (whsec_…, as printed by `consuma secret`):
    /// every callback's Standard Webhooks signature is verified and bad ones counted.
    #[arg(long, value_parser = parse_secret)]
    pub signing_secret: Option<SigningSecret>,

    /// API key sent as `Authorization: Bearer <key>` on every request (needed once the
    /// service holds a key; see `consuma keys create`).
    #[arg(long, env = "CONSUMA_API_KEY", hide_env_values = true, value_parser = parse_api_key)]
    pub api_key: Option<ApiKeyArg>,

    /// Print one JSON document on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// A pass/fail condition on the final figures, `METRIC OP VALUE` (repeatable):
    /// METRIC is sync_p50|p95|p99|max, ack_…, callback_…, rps, error_rate,
    /// callback_missing, duplicates or bad_signatures; OP is <, <=, > or >=; latencies
    /// take ms (default) or s, error_rate a fraction or %: `callback_p99<250ms`,
    /// `error_rate<=0.1%`, `rps>=900`. A breached one exits 3.
    #[arg(long = "threshold", value_name = "EXPR", value_parser = parse_threshold)]
    pub thresholds: Vec<Threshold>,

    /// An earlier `--json` output of this tool, same mode: every figure is shown beside
    /// it with the change in per cent.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// With --baseline: a p50/p95/p99 latency higher, or requests_per_s lower, than the
    /// baseline's by more than PCT per cent exits 4.
    #[arg(long, value_name = "PCT", requires = "baseline", value_parser = parse_percent)]
    pub max_regression: Option<f64>,

    /// Also write the report as one self-contained HTML file (charts inline, nothing
    /// loaded from elsewhere).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// No progress line on stderr (it is only shown when stderr is a terminal).
    #[arg(long)]
    pub quiet: bool,

    /// Load the work NAME: requests go to /sync/NAME and /async/NAME.
    #[arg(long, value_name = "NAME")]
    pub work: Option<String>,

    /// With --work: FILE holds the JSON object sent as every request's input (async
    /// requests get a `callback_url` member added). Excludes --text and --count.
    #[arg(long, value_name = "FILE", requires = "work", conflicts_with_all = ["text", "count"])]
    pub body_file: Option<PathBuf>,
}

/// The `--api-key` value; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyArg(String);

impl std::fmt::Debug for ApiKeyArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeyArg(redacted)")
    }
}

impl ApiKeyArg {
    /// The key, to put in the header.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

/// Any key that fits in a header (a wrong one is the server's to refuse, with 401).
fn parse_api_key(raw: &str) -> Result<ApiKeyArg, String> {
    let printable = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_graphic());
    match printable {
        true => Ok(ApiKeyArg(raw.to_owned())),
        false => Err("an API key is printable ASCII without spaces".to_owned()),
    }
}

impl LoadArgs {
    /// Closed loop unless --rate or --stages asks for an open one.
    pub fn pace(&self) -> Pace {
        let max_in_flight = self.max_in_flight;
        match (self.rate, &self.stages) {
            (_, Some(ramp)) => Pace::Ramp {
                ramp: ramp.clone(),
                max_in_flight,
            },
            (Some(rate), None) => Pace::Open {
                rate,
                max_in_flight,
            },
            (None, None) => Pace::Closed {
                workers: self.concurrency,
            },
        }
    }

    /// The stages' length, else --duration, else --requests (default 100).
    pub fn stop(&self) -> Stop {
        match (&self.stages, self.duration) {
            (Some(ramp), _) => Stop::Elapsed(ramp.duration()),
            (None, Some(d)) => Stop::Elapsed(d),
            (None, None) => Stop::Count(self.requests.unwrap_or(DEFAULT_REQUESTS)),
        }
    }

    /// The `text` of each request (`--text`, default "Hello world").
    pub fn text(&self) -> &str {
        self.text.as_deref().unwrap_or("Hello world")
    }

    /// The `count` of each request (`--count`, default 3).
    pub fn count(&self) -> i64 {
        self.count.unwrap_or(3)
    }

    /// The checks clap cannot make: a threshold on a figure this mode does not produce,
    /// `bad_signatures` without `--signing-secret`, a work name outside the grammar.
    /// `Err` is the one-line usage error.
    pub fn check(&self) -> Result<(), String> {
        for t in &self.thresholds {
            if !t.metric.produced_by(self.mode) {
                return Err(format!(
                    "threshold `{}`: --mode {} does not produce that figure",
                    t.expression,
                    self.mode.as_str()
                ));
            }
            if t.metric == super::threshold::Metric::BadSignatures && self.signing_secret.is_none()
            {
                return Err(format!(
                    "threshold `{}` needs --signing-secret (signatures are not checked \
                     without it)",
                    t.expression
                ));
            }
        }
        if let Some(work) = &self.work {
            // SPEC §13: ^[a-z][a-z0-9-]{0,62}$ (and `text`).
            let bytes = work.as_bytes();
            let valid = bytes.first().is_some_and(u8::is_ascii_lowercase)
                && bytes.len() <= 63
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
            if !valid {
                return Err(format!(
                    "--work `{work}` is not a work name (a lowercase letter, then up to 62 \
                     lowercase letters, digits or -)"
                ));
            }
        }
        Ok(())
    }
}

/// Requests sent when neither --requests nor --duration is given (SPEC §7).
pub const DEFAULT_REQUESTS: u64 = 100;

/// Parses `30s`, `500ms` or plain seconds (`2`, `2.5`) into a [`Duration`].
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{raw}` is not a duration (use 30s, 500ms or plain seconds)"))?;
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("`{raw}` is not a duration of zero or more"))
}

/// Like [`parse_duration`], refusing zero.
fn parse_positive_duration(raw: &str) -> Result<Duration, String> {
    match parse_duration(raw)? {
        d if d.is_zero() => Err(format!("`{raw}` must be longer than zero")),
        d => Ok(d),
    }
}

/// A request rate: a finite number of requests per second above zero.
fn parse_rate(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "`{raw}` is not a rate above zero (requests per second)"
        )),
    }
}

/// `--stages`: `DURATION:RATE` pairs separated by commas, each longer than zero.
fn parse_stages(raw: &str) -> Result<Arc<Ramp>, String> {
    let bad =
        |why: String| format!("`{raw}` is not a list of stages like 10s:100,30s:2000 ({why})");
    let mut stages = Vec::new();
    for part in raw.split(',') {
        let (duration, target) = part
            .split_once(':')
            .ok_or_else(|| bad(format!("`{part}` has no `:`")))?;
        let duration = parse_positive_duration(duration).map_err(bad)?;
        let target = match target.trim().parse::<f64>() {
            Ok(r) if r.is_finite() && r >= 0.0 => r,
            _ => return Err(bad(format!("`{target}` is not a rate of zero or more"))),
        };
        stages.push(Stage { duration, target });
    }
    if stages.iter().all(|s| s.target == 0.0) {
        return Err(bad("every rate is zero".to_owned()));
    }
    Ok(Arc::new(Ramp::new(stages)))
}

/// `--max-regression`: a per cent of zero or more.
fn parse_percent(raw: &str) -> Result<f64, String> {
    let number = raw.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        _ => Err(format!("`{raw}` is not a per cent of zero or more")),
    }
}

/// An http(s) base URL.
fn parse_target(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(raw.trim_end_matches('/').to_string()),
        other => Err(format!("scheme `{other}` is not http or https")),
    }
}

fn parse_secret(raw: &str) -> Result<SigningSecret, String> {
    SigningSecret::parse(raw)
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
