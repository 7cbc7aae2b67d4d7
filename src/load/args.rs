//! The options of `consuma load` (SPEC §7) and their value parsers.
//!
//! The doc comment of each field is its `--help` text. Every value is checked here, so a
//! bad option is a clap error (exit 2) before any request is sent; `--requests` and
//! `--duration` conflict in clap for the same reason.

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::client::Kind;
use super::schedule::{Pace, Stop};
use crate::delivery::signing::SigningSecret;

/// Options of `consuma load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Base URL of the service under test (http or https); /sync, /async and /healthz
    /// are appended to it.
    #[arg(long, default_value = "http://localhost:8000", value_parser = parse_target)]
    pub target: String,

    /// Requests to send in all (with --mode both, alternating sync and async).
    /// [default: 100]
    #[arg(long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Send for this long instead of a number of requests: 30s, 500ms or plain seconds
    /// (2.5). Requests still in flight at the end are awaited and counted.
    #[arg(long, value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,

    /// Closed loop (no --rate): this many workers, each sending its next request as soon
    /// as the previous one is answered. Ignored with --rate (see --max-in-flight).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,

    /// Open loop: send this many requests per second at fixed intervals, whether or not
    /// earlier ones were answered. Latency is measured from each request's intended send
    /// time, so a server that falls behind shows its queueing delay.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,

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

    /// The `text` of every request.
    #[arg(long, default_value = "Hello world")]
    pub text: String,

    /// The `count` of every request.
    #[arg(long, default_value_t = 3)]
    pub count: i64,

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
    /// Closed loop unless --rate asks for an open one.
    pub fn pace(&self) -> Pace {
        match self.rate {
            Some(rate) => Pace::Open {
                rate,
                max_in_flight: self.max_in_flight,
            },
            None => Pace::Closed {
                workers: self.concurrency,
            },
        }
    }

    /// --duration, else --requests (default 100).
    pub fn stop(&self) -> Stop {
        match self.duration {
            Some(d) => Stop::Elapsed(d),
            None => Stop::Count(self.requests.unwrap_or(DEFAULT_REQUESTS)),
        }
    }
}

/// Which endpoints a run loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Sync,
    Async,
    Both,
}

impl Mode {
    /// The name used in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
            Mode::Both => "both",
        }
    }

    /// Whether the run sends any /sync request.
    pub fn has_sync(self) -> bool {
        self != Mode::Async
    }

    /// Whether the run sends any /async request (and so needs the receiver).
    pub fn has_async(self) -> bool {
        self != Mode::Sync
    }

    /// The endpoint of request number `index`: `both` alternates, sync first.
    pub fn kind_of(self, index: u64) -> Kind {
        match self {
            Mode::Sync => Kind::Sync,
            Mode::Async => Kind::Async,
            Mode::Both if index.is_multiple_of(2) => Kind::Sync,
            Mode::Both => Kind::Async,
        }
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
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadArgs,
    }

    fn parse(argv: &[&str]) -> Result<LoadArgs, clap::Error> {
        let argv = std::iter::once("load").chain(argv.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    #[test]
    fn durations_take_seconds_milliseconds_and_plain_numbers() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_refuse_garbage_negative_and_unknown_units() {
        for bad in [
            "", "s", "ms", "abc", "-1", "-5s", "10m", "1h", "NaN", "inf", "1e400",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} was accepted");
        }
        assert!(parse_positive_duration("0s").is_err());
    }

    #[test]
    fn defaults_follow_the_spec() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.target, "http://localhost:8000");
        assert_eq!(a.requests, None);
        assert_eq!(a.concurrency, 10);
        assert_eq!(a.mode, Mode::Both);
        assert_eq!(a.callback_host, "127.0.0.1");
        assert_eq!(a.callback_port, 8888);
        assert_eq!(a.callback_timeout, Duration::from_secs(30));
        assert!(a.rate.is_none() && a.duration.is_none() && !a.json);
    }

    #[test]
    fn requests_and_duration_conflict() {
        let e = parse(&["--requests", "5", "--duration", "1s"])
            .err()
            .unwrap();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert_eq!(e.exit_code(), 2);
        assert!(parse(&["--duration", "1s"]).is_ok());
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let bad: &[&[&str]] = &[
            &["--requests", "0"],
            &["--concurrency", "0"],
            &["--rate", "0"],
            &["--rate", "-3"],
            &["--duration", "0s"],
            &["--target", "ftp://example.com"],
            &["--target", "not a url"],
            &["--mode", "sideways"],
            &["--signing-secret", "nope"],
            &["--api-key", ""],
            &["--api-key", "csk_with space"],
        ];
        for argv in bad {
            let e = parse(argv)
                .err()
                .unwrap_or_else(|| panic!("{argv:?} accepted"));
            assert_eq!(e.exit_code(), 2, "{argv:?}");
        }
    }

    #[test]
    fn both_alternates_starting_with_sync() {
        let kinds: Vec<Kind> = (0..4).map(|i| Mode::Both.kind_of(i)).collect();
        assert_eq!(kinds, [Kind::Sync, Kind::Async, Kind::Sync, Kind::Async]);
        assert_eq!(Mode::Async.kind_of(0), Kind::Async);
    }

    #[test]
    fn rate_selects_the_open_loop_and_duration_the_elapsed_stop() {
        let a = parse(&["--rate", "50", "--duration", "500ms"]).unwrap();
        assert_eq!(
            a.pace(),
            Pace::Open {
                rate: 50.0,
                max_in_flight: 1000
            }
        );
        assert_eq!(a.stop(), Stop::Elapsed(Duration::from_millis(500)));
        let b = parse(&["--concurrency", "3"]).unwrap();
        assert_eq!(b.pace(), Pace::Closed { workers: 3 });
        assert_eq!(b.stop(), Stop::Count(100));
    }

    #[test]
    fn the_api_key_is_read_and_never_shown_in_debug() {
        let a = parse(&["--api-key", "csk_abc"]).unwrap();
        assert_eq!(a.api_key.as_ref().map(ApiKeyArg::reveal), Some("csk_abc"));
        assert!(!format!("{a:?}").contains("csk_abc"));
    }

    #[test]
    fn a_trailing_slash_on_the_target_is_dropped() {
        let a = parse(&["--target", "http://127.0.0.1:9/base/"]).unwrap();
        assert_eq!(a.target, "http://127.0.0.1:9/base");
    }
}
