//! The flags of `consuma serve` (SPEC §6): each also reads `CONSUMA_<FLAG>` from the
//! environment; the doc comment of each field is its `--help` text. Values are only parsed
//! here; [`Config::from_args`](super::Config::from_args) checks them.

use clap::{Args, ValueEnum};

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
    #[arg(long, env = "CONSUMA_BIND", default_value = "0.0.0.0:8000")]
    pub bind: String,

    /// sqlite://relative/path, sqlite:///absolute/path, or postgres://… [env:
    /// CONSUMA_DATABASE_URL, then DATABASE_URL] [default: sqlite://data/consuma.db]
    #[arg(long, env = "CONSUMA_DATABASE_URL", hide_env = true)]
    pub database_url: Option<String>,

    /// SQLite durability: `normal` (WAL; survives a process crash) or `full` (fsync per
    /// commit; also survives power loss).
    #[arg(long, env = "CONSUMA_SQLITE_SYNCHRONOUS", value_enum, default_value_t)]
    pub sqlite_synchronous: SqliteSynchronous,

    /// PostgreSQL connections in this instance's pool (LISTEN takes one more); size
    /// the server's max_connections for all instances.
    #[arg(long, env = "CONSUMA_DATABASE_MAX_CONNECTIONS", default_value_t = crate::store::DEFAULT_PG_MAX_CONNECTIONS)]
    pub database_max_connections: u32,

    /// Simulated processing delay before the work, in milliseconds.
    #[arg(long, env = "CONSUMA_WORK_DELAY_MS", default_value_t = 200)]
    pub work_delay_ms: u64,

    /// Async jobs run at once by this instance; 0 runs an accept-only (API) node.
    #[arg(long, env = "CONSUMA_WORKERS", default_value_t = 256)]
    pub workers: usize,

    /// Seconds a worker holds a job before another instance may take it over (renewed
    /// while the job runs).
    #[arg(long, env = "CONSUMA_LEASE_SECS", default_value_t = 30)]
    pub lease_secs: u64,

    /// Delivery attempts per callback, the first included.
    #[arg(long, env = "CONSUMA_CALLBACK_MAX_ATTEMPTS", default_value_t = 5)]
    pub callback_max_attempts: u32,

    /// Backoff base: attempt k+1 starts base·2^(k−1) after attempt k ended, plus up to
    /// 10 % jitter.
    #[arg(long, env = "CONSUMA_CALLBACK_BASE_DELAY_MS", default_value_t = 1000)]
    pub callback_base_delay_ms: u64,

    /// Time a receiver has to answer one attempt, in milliseconds.
    #[arg(long, env = "CONSUMA_CALLBACK_TIMEOUT_MS", default_value_t = 10_000)]
    pub callback_timeout_ms: u64,

    /// Open an address range to callbacks (repeatable; env: comma separated), e.g.
    /// 127.0.0.0/8 for local testing. Reserved names such as localhost stay refused.
    #[arg(long, env = "CONSUMA_ALLOW_CALLBACK_CIDR", value_delimiter = ',')]
    pub allow_callback_cidr: Vec<String>,

    /// While no API key exists, also answer requests whose Host is NAME (repeatable; env:
    /// comma separated; `*.example.com` for any name under it). IP addresses, localhost
    /// and *.localhost always pass; other names get 421 (DNS rebinding, SPEC §16).
    #[arg(long, env = "CONSUMA_ALLOWED_HOST", value_delimiter = ',')]
    pub allowed_host: Vec<String>,

    /// Pin HOST to IP instead of asking DNS, like curl's --resolve (repeatable; env:
    /// comma separated). The address is still vetted by the callback policy.
    #[arg(long, env = "CONSUMA_CALLBACK_RESOLVE", value_delimiter = ',')]
    pub callback_resolve: Vec<String>,

    /// Send callback DNS lookups to this server, IP:PORT (UDP, TCP for truncated
    /// answers; no search list) instead of the system's (/etc/resolv.conf). /etc/hosts and
    /// --callback-resolve pins are consulted first either way. [default: the system's]
    #[arg(long, env = "CONSUMA_CALLBACK_DNS_SERVER")]
    pub callback_dns_server: Option<String>,

    /// Callback signing secret, `whsec_<base64>`. Default: generated at first start and
    /// kept in the database, so every instance sharing it signs alike.
    #[arg(long, env = "CONSUMA_SIGNING_SECRET", hide_env_values = true)]
    pub signing_secret: Option<String>,

    /// Log format on stderr.
    #[arg(long, env = "CONSUMA_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,

    /// Seconds in-flight work may take to finish after SIGTERM/SIGINT before its jobs are
    /// released for another instance.
    #[arg(long, env = "CONSUMA_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// Longest an idle worker sleeps before looking for due jobs again when no wake-up
    /// arrives (new jobs and retries wake it at once; this is the fallback).
    #[arg(long, env = "CONSUMA_JOB_POLL_MS", default_value_t = 2000)]
    pub job_poll_ms: u64,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "CONSUMA_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Fewest delivery attempts at once this instance allows one destination (a tenant
    /// and a callback origin) however it fares, 1 to 1,000: the adaptive limit's floor.
    #[arg(
        long,
        env = "CONSUMA_CALLBACK_MIN_IN_FLIGHT_PER_DESTINATION",
        default_value_t = 4
    )]
    pub callback_min_in_flight_per_destination: u32,

    /// Most delivery attempts this instance makes to one destination at once, 1 to
    /// 10,000 (and at most half of `--workers`): the adaptive limit's ceiling. Equal to
    /// the minimum, it fixes the limit.
    #[arg(
        long,
        env = "CONSUMA_CALLBACK_MAX_IN_FLIGHT_PER_DESTINATION",
        default_value_t = 256
    )]
    pub callback_max_in_flight_per_destination: u32,

    /// How long a destination's deliveries wait after its circuit opens (5 consecutive
    /// failures), in milliseconds, 100 to 3,600,000; doubled after each failed probe, up
    /// to 30 times this.
    #[arg(
        long,
        env = "CONSUMA_CALLBACK_BREAKER_COOLDOWN_MS",
        default_value_t = 10_000
    )]
    pub callback_breaker_cooldown_ms: u64,

    /// A delivery not done this many seconds after its work ended (or its last
    /// redelivery) ends failed with `expired: …`, 1 to 31,536,000.
    #[arg(
        long,
        env = "CONSUMA_CALLBACK_EXPIRE_AFTER_SECS",
        default_value_t = 86_400
    )]
    pub callback_expire_after_secs: u64,

    /// Async requests whose callback is not yet terminal, all tenants; at the limit POST
    /// /async answers 503 and stores nothing. 0 = no limit.
    #[arg(long, env = "CONSUMA_MAX_PENDING_JOBS", default_value_t = 100_000)]
    pub max_pending_jobs: u64,

    /// The same limit per tenant (POST /async then answers 429). 0 = only the global limit.
    #[arg(long, env = "CONSUMA_MAX_PENDING_JOBS_PER_TENANT", default_value_t = 0)]
    pub max_pending_jobs_per_tenant: u64,

    /// Terminal records older than this are deleted (with their attempts and idempotency
    /// keys): a whole number followed by s, m, h or d (`90d`, `12h`, `10s`), or 0 to keep
    /// everything.
    #[arg(long, env = "CONSUMA_RETENTION", default_value = "90d")]
    pub retention: String,

    // The HTTP edge (SPEC §9 "Slow and idle clients").
    /// Milliseconds a client has to send its complete request headers; an idle keep-alive
    /// connection is closed after as long.
    #[arg(long, env = "CONSUMA_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_header_timeout_ms: u64,

    /// Milliseconds a client has to send its body, counted from the end of its headers;
    /// a stalled body gets 408.
    #[arg(long, env = "CONSUMA_HTTP_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub http_body_timeout_ms: u64,

    /// HTTP connections open at once; more wait in the kernel's accept queue. Lowered at
    /// start (with a warning) when the open-file limit cannot hold them.
    #[arg(long, env = "CONSUMA_MAX_CONNECTIONS", default_value_t = 10_000)]
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
