//! The flags of `consuma serve` (SPEC §6), read as a table: each flag's environment
//! variable (`CONSUMA_<FLAG>`), default and range or parser are declared on its field, and
//! the doc comment is its `--help` text. A value out of range or that does not parse is
//! refused by clap with a one-line reason naming the flag (exit status 2, `main`).
//! [`Config::from_args`](super::Config::from_args) only turns these values into the
//! service's types.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Args, ValueEnum};
use ipnet::IpNet;

use super::allowed_host::AllowedHost;
use crate::delivery::signing::SigningSecret;
use crate::telemetry::LogFormat;

/// How SQLite commits: `normal` survives any process crash, `full` also power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum SqliteSynchronous {
    #[default]
    Normal,
    Full,
}

/// The status POST /async acknowledges with (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AsyncAckStatus {
    /// 202 Accepted.
    #[default]
    #[value(name = "202")]
    Accepted,
    /// 200 OK, for clients of the predecessor that count only 200 as success.
    #[value(name = "200")]
    Ok,
}

impl AsyncAckStatus {
    pub fn code(self) -> u16 {
        match self {
            AsyncAckStatus::Accepted => 202,
            AsyncAckStatus::Ok => 200,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "CONSUMA_BIND", default_value = "0.0.0.0:8000", value_parser = parse_bind)]
    pub bind: SocketAddr,

    /// sqlite://relative/path, sqlite:///absolute/path, or postgres://… [env:
    /// CONSUMA_DATABASE_URL, then DATABASE_URL] [default: sqlite://data/consuma.db]
    #[arg(long, env = "CONSUMA_DATABASE_URL", hide_env = true)]
    pub database_url: Option<String>,

    /// SQLite durability: `normal` (WAL; survives a process crash) or `full` (fsync per
    /// commit; also survives power loss).
    #[arg(long, env = "CONSUMA_SQLITE_SYNCHRONOUS", value_enum, default_value_t)]
    pub sqlite_synchronous: SqliteSynchronous,

    /// PostgreSQL connections in this instance's pool (LISTEN and the lease keeper take one
    /// more each); size
    /// the server's max_connections for all instances.
    #[arg(long, env = "CONSUMA_DATABASE_MAX_CONNECTIONS", default_value_t = crate::store::DEFAULT_PG_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub database_max_connections: u32,

    /// Simulated processing delay before the work, in milliseconds.
    #[arg(long, env = "CONSUMA_WORK_DELAY_MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub work_delay_ms: u64,

    /// A TOML file of the operator's works (`[works.NAME]` tables, SPEC §13); without it
    /// only the built-in `text` exists.
    #[arg(long, env = "CONSUMA_WORKS")]
    pub works: Option<std::path::PathBuf>,

    /// Upstream calls of works (SPEC §17 "Two pools") this instance makes at once,
    /// 1 to 10,000; a job waiting for one holds no delivery worker.
    #[arg(long, env = "CONSUMA_WORK_WORKERS", default_value_t = 256, value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub work_workers: usize,

    /// Async jobs run at once by this instance; 0 runs an accept-only (API) node.
    #[arg(long, env = "CONSUMA_WORKERS", default_value_t = 256, value_parser = RangedU64ValueParser::<usize>::new().range(0..=100_000))]
    pub workers: usize,

    /// Seconds a worker holds a job before another instance may take it over (renewed
    /// while the job runs).
    #[arg(long, env = "CONSUMA_LEASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_secs: u64,

    /// Delivery attempts per callback, the first included.
    #[arg(long, env = "CONSUMA_CALLBACK_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub callback_max_attempts: u32,

    /// Backoff base: attempt k+1 starts base·2^(k−1) after attempt k ended, plus up to
    /// 10 % jitter.
    #[arg(long, env = "CONSUMA_CALLBACK_BASE_DELAY_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub callback_base_delay_ms: u64,

    /// Time a receiver has to answer one attempt, in milliseconds.
    #[arg(long, env = "CONSUMA_CALLBACK_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub callback_timeout_ms: u64,

    /// Open an address range to callbacks (repeatable; env: comma separated), e.g.
    /// 127.0.0.0/8 for local testing. Reserved names such as localhost stay refused.
    #[arg(long, env = "CONSUMA_ALLOW_CALLBACK_CIDR", value_delimiter = ',', value_parser = parse_cidr)]
    pub allow_callback_cidr: Vec<IpNet>,

    /// While no API key exists, also answer requests whose Host is NAME (repeatable; env:
    /// comma separated; `*.example.com` for any name under it). IP addresses, localhost
    /// and *.localhost always pass; other names get 421 (DNS rebinding, SPEC §16).
    #[arg(long, env = "CONSUMA_ALLOWED_HOST", value_delimiter = ',', value_parser = AllowedHost::parse)]
    pub allowed_host: Vec<AllowedHost>,

    /// Pin HOST to IP instead of asking DNS, like curl's --resolve (repeatable; env:
    /// comma separated). The address is still vetted by the callback policy.
    #[arg(long, env = "CONSUMA_CALLBACK_RESOLVE", value_delimiter = ',', value_parser = parse_pin)]
    pub callback_resolve: Vec<(String, IpAddr)>,

    /// Send callback DNS lookups to this server, IP:PORT (UDP, TCP for truncated
    /// answers; no search list) instead of the system's (/etc/resolv.conf). /etc/hosts and
    /// --callback-resolve pins are consulted first either way. [default: the system's]
    #[arg(long, env = "CONSUMA_CALLBACK_DNS_SERVER", value_parser = crate::ssrf::parse_dns_server)]
    pub callback_dns_server: Option<SocketAddr>,

    /// Callback signing secret, `whsec_<base64>`. Default: generated at first start and
    /// kept in the database, so every instance sharing it signs alike.
    #[arg(long, env = "CONSUMA_SIGNING_SECRET", hide_env_values = true, value_parser = SigningSecret::parse)]
    pub signing_secret: Option<SigningSecret>,

    /// Log format on stderr.
    #[arg(long, env = "CONSUMA_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,

    /// Seconds in-flight work may take to finish after SIGTERM/SIGINT before its jobs are
    /// released for another instance.
    #[arg(long, env = "CONSUMA_SHUTDOWN_GRACE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_secs: u64,

    /// Longest an idle worker sleeps before looking for due jobs again when no wake-up
    /// arrives (new jobs and retries wake it at once; this is the fallback).
    #[arg(long, env = "CONSUMA_JOB_POLL_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub job_poll_ms: u64,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "CONSUMA_MAX_BODY_BYTES", default_value_t = 256 * 1024, value_parser = RangedU64ValueParser::<usize>::new().range(1024..=16 * 1024 * 1024))]
    pub max_body_bytes: usize,

    /// Fewest delivery attempts at once this instance allows one destination (a tenant
    /// and a callback origin) however it fares, 1 to 1,000: the adaptive limit's floor.
    #[arg(
        long,
        env = "CONSUMA_CALLBACK_MIN_IN_FLIGHT_PER_DESTINATION",
        default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=1000),
    )]
    pub callback_min_in_flight_per_destination: u32,

    /// Most delivery attempts this instance makes to one destination at once, 1 to
    /// 10,000 (and at most half of `--workers`): the adaptive limit's ceiling. Equal to
    /// the minimum, it fixes the limit.
    #[arg(
        long,
        env = "CONSUMA_CALLBACK_MAX_IN_FLIGHT_PER_DESTINATION",
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..=10_000),
    )]
    pub callback_max_in_flight_per_destination: u32,

    /// How long a destination's deliveries wait after its circuit opens (5 consecutive
    /// failures), in milliseconds, 100 to 3,600,000; doubled after each failed probe, up
    /// to 30 times this.
    #[arg(
        long,
        env = "CONSUMA_CALLBACK_BREAKER_COOLDOWN_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(100..=3_600_000),
    )]
    pub callback_breaker_cooldown_ms: u64,

    /// A delivery not done this many seconds after its work ended (or its last
    /// redelivery) ends failed with `expired: …`, 1 to 31,536,000.
    #[arg(
        long,
        env = "CONSUMA_CALLBACK_EXPIRE_AFTER_SECS",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(1..=31_536_000),
    )]
    pub callback_expire_after_secs: u64,

    /// Async requests whose callback is not yet terminal, all tenants; at the limit POST
    /// /async answers 503 and stores nothing. 0 = no limit.
    #[arg(long, env = "CONSUMA_MAX_PENDING_JOBS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
    pub max_pending_jobs: u64,

    /// The same limit per tenant (POST /async then answers 429). 0 = only the global limit.
    #[arg(long, env = "CONSUMA_MAX_PENDING_JOBS_PER_TENANT", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
    pub max_pending_jobs_per_tenant: u64,

    /// How many times one request's callback may be redelivered (0 to 10,000); then
    /// POST /requests/{id}/redeliver answers 429. 0 turns redelivery off.
    #[arg(long, env = "CONSUMA_MAX_REDELIVERIES", default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub max_redeliveries: u32,

    /// Terminal records older than this are deleted (with their attempts and idempotency
    /// keys): a whole number followed by s, m, h or d (`90d`, `12h`, `10s`), or 0 to keep
    /// everything.
    #[arg(long, env = "CONSUMA_RETENTION", default_value = "90d", value_parser = Retention::parse)]
    pub retention: Retention,

    // The HTTP edge (SPEC §9 "Slow and idle clients").
    /// Milliseconds a client has to send its complete request headers; an idle keep-alive
    /// connection is closed after as long.
    #[arg(long, env = "CONSUMA_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub http_header_timeout_ms: u64,

    /// Milliseconds a client has to send its body, counted from the end of its headers;
    /// a stalled body gets 408.
    #[arg(long, env = "CONSUMA_HTTP_BODY_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub http_body_timeout_ms: u64,

    /// HTTP connections open at once; more wait in the kernel's accept queue. Lowered at
    /// start (with a warning) when the open-file limit cannot hold them.
    #[arg(long, env = "CONSUMA_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,

    /// The status of POST /async's acknowledgement: 202, or 200 (same body and headers)
    /// for clients of the predecessor.
    #[arg(long, env = "CONSUMA_ASYNC_ACK_STATUS", value_enum, default_value_t)]
    pub async_ack_status: AsyncAckStatus,

    /// Refuse to start while the database holds no API key (create one with `consuma
    /// keys create`), instead of serving everyone as the tenant `default`.
    #[arg(long, env = "CONSUMA_REQUIRE_AUTH")]
    pub require_auth: bool,
}

impl SqliteSynchronous {
    pub fn as_str(self) -> &'static str {
        match self {
            SqliteSynchronous::Normal => "normal",
            SqliteSynchronous::Full => "full",
        }
    }
}

/// `--bind`: an IP address and port.
fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected IP:PORT, e.g. 0.0.0.0:8000".to_owned())
}

/// `--allow-callback-cidr`: a CIDR such as `127.0.0.0/8`; a bare address means just that
/// address.
pub(super) fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| "expected a CIDR such as 127.0.0.0/8".to_owned())
}

/// `--callback-resolve HOST=IP`.
fn parse_pin(s: &str) -> Result<(String, IpAddr), String> {
    crate::ssrf::parse_pin(s.trim())
}

/// `--retention`: how long terminal records are kept; `None` keeps everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

impl Retention {
    /// `0` (keep everything) or a whole number followed by `s`, `m`, `h` or `d`, at most
    /// 100 years.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            "expected 0 or a whole number followed by s, m, h or d (e.g. 90d, 12h, 10s)".to_owned()
        };
        let s = s.trim();
        if s == "0" {
            return Ok(Self(None));
        }
        let (digits, unit) = s.split_at(s.len().saturating_sub(1));
        let secs_per = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        match n.checked_mul(secs_per) {
            Some(0) => Ok(Self(None)),
            Some(secs) if secs <= 100 * 365 * 86_400 => Ok(Self(Some(Duration::from_secs(secs)))),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_takes_whole_numbers_with_a_unit_or_zero() {
        let d = |s| Retention::parse(s).unwrap().0;
        assert_eq!(d("0"), None);
        assert_eq!(d("90d"), Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(d("12h"), Some(Duration::from_secs(12 * 3600)));
        assert_eq!(d("10s"), Some(Duration::from_secs(10)));
        assert_eq!(d("5m"), Some(Duration::from_secs(300)));
        for bad in [
            "",
            "d",
            "10",
            "1.5h",
            "-1d",
            "10w",
            "ten d",
            "99999999999999999999d",
        ] {
            assert!(Retention::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cidrs_accept_bare_addresses_and_normalise_host_bits() {
        assert_eq!(
            parse_cidr("127.0.0.1/8").unwrap().to_string(),
            "127.0.0.0/8"
        );
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        assert!(parse_cidr("127.0.0.0/33").is_err());
    }
}
