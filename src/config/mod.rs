//! Checked configuration: [`ServeArgs`] (the flags, in [`flags`]) in, a typed [`Config`] out, or a one-line
//! [`ConfigError`] that `main` prints before exiting with status 2 (SPEC §6).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::delivery::signing::SigningSecret;
use crate::telemetry::LogFormat;

pub mod allowed_host;
mod database_url;
mod flags;

pub use database_url::{DEFAULT_DATABASE_URL, DatabaseUrl, redact_database_url};
pub use flags::{AsyncAckStatus, Retention, ServeArgs, SqliteSynchronous};

/// A configuration value that cannot be used; printed as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Everything `consuma serve` needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub database_url: DatabaseUrl,
    pub sqlite_synchronous: SqliteSynchronous,
    pub database_max_connections: u32,
    pub work_delay: Duration,
    /// The works file's works (`--works`), checked (SPEC §13).
    pub works: Vec<crate::works::WorkSpec>,
    /// `--work-workers`: upstream calls of works at once.
    pub work_workers: usize,
    pub workers: usize,
    pub lease: Duration,
    pub callback_max_attempts: u32,
    pub callback_base_delay: Duration,
    pub callback_timeout: Duration,
    pub allow_callback_cidrs: Vec<ipnet::IpNet>,
    /// `--allowed-host`: names an open instance answers besides IPs and localhost.
    pub allowed_hosts: Vec<allowed_host::AllowedHost>,
    pub callback_resolve: Vec<(String, IpAddr)>,
    pub callback_dns_server: crate::ssrf::DnsServers,
    /// `None`: use the secret stored in the database (generated at first start).
    pub signing_secret: Option<SigningSecret>,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    pub job_poll: Duration,
    pub max_body_bytes: usize,
    pub callback_min_in_flight_per_destination: u32,
    pub callback_max_in_flight_per_destination: u32,
    pub callback_breaker_cooldown: Duration,
    pub callback_expire_after: Duration,
    pub max_pending_jobs: u64,
    pub max_pending_jobs_per_tenant: u64,
    /// `--max-redeliveries` (SPEC §16): 0 turns redelivery off.
    pub max_redeliveries: u32,
    /// `None`: keep everything.
    pub retention: Option<Duration>,
    pub http: HttpLimits,
    /// 202, or 200 with `--async-ack-status 200`.
    pub async_ack_status: u16,
    /// Refuse to start while no API key exists.
    pub require_auth: bool,
}

/// What a client may cost the HTTP server (SPEC §9 "Slow and idle clients").
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// To send the complete request headers; also the longest idle keep-alive.
    pub header_timeout: Duration,
    /// To send the body, from the end of the headers.
    pub body_timeout: Duration,
    /// Connections open at once, before [`crate::http::capacity`] checks the fd limit.
    pub max_connections: usize,
}

impl HttpLimits {
    fn from_args(a: &ServeArgs) -> Self {
        Self {
            header_timeout: Duration::from_millis(a.http_header_timeout_ms),
            body_timeout: Duration::from_millis(a.http_body_timeout_ms),
            max_connections: a.max_connections,
        }
    }
}

impl Config {
    /// The checked flags as the service's types. Ranges and formats were checked by clap
    /// ([`flags`]); what is left is the database URL, which may also come from
    /// `DATABASE_URL`, and the adaptive limit's floor against its ceiling.
    pub fn from_args(a: ServeArgs) -> Result<Self, ConfigError> {
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        let (min, max) = (
            a.callback_min_in_flight_per_destination,
            a.callback_max_in_flight_per_destination,
        );
        if min > max {
            return Err(ConfigError(format!(
                "--callback-min-in-flight-per-destination {min} is above --callback-max-in-flight-per-destination {max}: set them equal to fix the limit"
            )));
        }
        Ok(Self {
            bind: a.bind,
            database_url: DatabaseUrl::from_flag_or_env(a.database_url.as_deref())?,
            sqlite_synchronous: a.sqlite_synchronous,
            database_max_connections: a.database_max_connections,
            work_delay: ms(a.work_delay_ms),
            works: match &a.works {
                Some(path) => {
                    crate::works::file::load(path).map_err(|e| ConfigError(e.to_string()))?
                }
                None => Vec::new(),
            },
            work_workers: a.work_workers,
            workers: a.workers,
            lease: secs(a.lease_secs),
            callback_max_attempts: a.callback_max_attempts,
            callback_base_delay: ms(a.callback_base_delay_ms),
            callback_timeout: ms(a.callback_timeout_ms),
            http: HttpLimits::from_args(&a),
            allow_callback_cidrs: a.allow_callback_cidr,
            allowed_hosts: a.allowed_host,
            callback_resolve: a.callback_resolve,
            callback_dns_server: a
                .callback_dns_server
                .map_or(crate::ssrf::DnsServers::System, crate::ssrf::DnsServers::At),
            signing_secret: a.signing_secret,
            log_format: a.log_format,
            shutdown_grace: secs(a.shutdown_grace_secs),
            job_poll: ms(a.job_poll_ms),
            max_body_bytes: a.max_body_bytes,
            callback_min_in_flight_per_destination: a.callback_min_in_flight_per_destination,
            callback_max_in_flight_per_destination: a.callback_max_in_flight_per_destination,
            callback_breaker_cooldown: ms(a.callback_breaker_cooldown_ms),
            callback_expire_after: secs(a.callback_expire_after_secs),
            max_pending_jobs: a.max_pending_jobs,
            max_pending_jobs_per_tenant: a.max_pending_jobs_per_tenant,
            max_redeliveries: a.max_redeliveries,
            retention: a.retention.0,
            async_ack_status: a.async_ack_status.code(),
            require_auth: a.require_auth,
        })
    }
}
