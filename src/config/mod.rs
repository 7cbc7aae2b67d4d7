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
pub use flags::{AsyncAckStatus, ServeArgs, SqliteSynchronous};

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
    fn from_args(a: &ServeArgs) -> Result<Self, ConfigError> {
        let ms = |flag, v| in_range(flag, v, 100, 600_000).map(Duration::from_millis);
        Ok(Self {
            header_timeout: ms("http-header-timeout-ms", a.http_header_timeout_ms)?,
            body_timeout: ms("http-body-timeout-ms", a.http_body_timeout_ms)?,
            max_connections: in_range("max-connections", a.max_connections, 1, 1_000_000)?,
        })
    }
}

/// `--callback-min/max-in-flight-per-destination`: each in its range, the minimum at
/// most the maximum.
fn in_flight_bounds(a: &ServeArgs) -> Result<(u32, u32), ConfigError> {
    let min = in_range(
        "callback-min-in-flight-per-destination",
        a.callback_min_in_flight_per_destination,
        1,
        1000,
    )?;
    let max = in_range(
        "callback-max-in-flight-per-destination",
        a.callback_max_in_flight_per_destination,
        1,
        10_000,
    )?;
    if min > max {
        return Err(ConfigError(format!(
            "--callback-min-in-flight-per-destination {min} is above --callback-max-in-flight-per-destination {max}: set them equal to fix the limit"
        )));
    }
    Ok((min, max))
}

fn in_range<T: PartialOrd + std::fmt::Display>(
    flag: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError(format!(
            "--{flag} {v}: must be from {lo} to {hi}"
        )));
    }
    Ok(v)
}

impl Config {
    pub fn from_args(a: ServeArgs) -> Result<Self, ConfigError> {
        let bind = a.bind.parse().map_err(|_| {
            ConfigError(format!(
                "--bind {:?}: expected IP:PORT, e.g. 0.0.0.0:8000",
                a.bind
            ))
        })?;
        let allow_callback_cidrs = a
            .allow_callback_cidr
            .iter()
            .map(|s| parse_cidr(s.trim()))
            .collect::<Result<_, _>>()?;
        let allowed_hosts = a
            .allowed_host
            .iter()
            .map(|s| {
                allowed_host::AllowedHost::parse(s)
                    .map_err(|e| ConfigError(format!("--allowed-host: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let callback_resolve = a
            .callback_resolve
            .iter()
            .map(|s| {
                crate::ssrf::parse_pin(s.trim())
                    .map_err(|e| ConfigError(format!("--callback-resolve {s:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let callback_dns_server = match a.callback_dns_server.as_deref() {
            None => crate::ssrf::DnsServers::System,
            Some(s) => crate::ssrf::parse_dns_server(s)
                .map(crate::ssrf::DnsServers::At)
                .map_err(|e| ConfigError(format!("--callback-dns-server: {e}")))?,
        };
        let signing_secret = a
            .signing_secret
            .as_deref()
            .map(|s| {
                SigningSecret::parse(s).map_err(|e| ConfigError(format!("--signing-secret: {e}")))
            })
            .transpose()?;
        let (min_in_flight, max_in_flight) = in_flight_bounds(&a)?;
        Ok(Self {
            bind,
            database_url: DatabaseUrl::from_flag_or_env(a.database_url.as_deref())?,
            sqlite_synchronous: a.sqlite_synchronous,
            database_max_connections: in_range(
                "database-max-connections",
                a.database_max_connections,
                2,
                1000,
            )?,
            work_delay: Duration::from_millis(in_range(
                "work-delay-ms",
                a.work_delay_ms,
                0,
                600_000,
            )?),
            workers: in_range("workers", a.workers, 0, 100_000)?,
            lease: Duration::from_secs(in_range("lease-secs", a.lease_secs, 2, 3600)?),
            callback_max_attempts: in_range(
                "callback-max-attempts",
                a.callback_max_attempts,
                1,
                100,
            )?,
            callback_base_delay: Duration::from_millis(in_range(
                "callback-base-delay-ms",
                a.callback_base_delay_ms,
                1,
                3_600_000,
            )?),
            callback_timeout: Duration::from_millis(in_range(
                "callback-timeout-ms",
                a.callback_timeout_ms,
                1,
                600_000,
            )?),
            allow_callback_cidrs,
            allowed_hosts,
            callback_resolve,
            callback_dns_server,
            signing_secret,
            log_format: a.log_format,
            shutdown_grace: Duration::from_secs(in_range(
                "shutdown-grace-secs",
                a.shutdown_grace_secs,
                0,
                3600,
            )?),
            job_poll: Duration::from_millis(in_range("job-poll-ms", a.job_poll_ms, 10, 3_600_000)?),
            max_body_bytes: in_range("max-body-bytes", a.max_body_bytes, 1024, 16 * 1024 * 1024)?,
            callback_min_in_flight_per_destination: min_in_flight,
            callback_max_in_flight_per_destination: max_in_flight,
            callback_breaker_cooldown: Duration::from_millis(in_range(
                "callback-breaker-cooldown-ms",
                a.callback_breaker_cooldown_ms,
                100,
                3_600_000,
            )?),
            callback_expire_after: Duration::from_secs(in_range(
                "callback-expire-after-secs",
                a.callback_expire_after_secs,
                1,
                31_536_000,
            )?),
            max_pending_jobs: in_range("max-pending-jobs", a.max_pending_jobs, 0, 1_000_000_000)?,
            max_pending_jobs_per_tenant: in_range(
                "max-pending-jobs-per-tenant",
                a.max_pending_jobs_per_tenant,
                0,
                1_000_000_000,
            )?,
            retention: parse_retention(&a.retention)?,
            http: HttpLimits::from_args(&a)?,
            async_ack_status: a.async_ack_status.code(),
            require_auth: a.require_auth,
        })
    }
}

/// `--retention`: `0` (keep everything) or a whole number followed by `s`, `m`, `h` or
/// `d`, at most 100 years.
pub fn parse_retention(s: &str) -> Result<Option<Duration>, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "--retention {s:?}: expected 0 or a whole number followed by s, m, h or d (e.g. 90d, 12h, 10s)"
        ))
    };
    let s = s.trim();
    if s == "0" {
        return Ok(None);
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
        Some(secs) if secs > 0 && secs <= 100 * 365 * 86_400 => Ok(Some(Duration::from_secs(secs))),
        Some(0) => Ok(None),
        _ => Err(bad()),
    }
}

/// A CIDR such as `127.0.0.0/8`; a bare address means just that address.
fn parse_cidr(s: &str) -> Result<ipnet::IpNet, ConfigError> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| {
            ConfigError(format!(
                "--allow-callback-cidr {s:?}: expected a CIDR such as 127.0.0.0/8"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_takes_whole_numbers_with_a_unit_or_zero() {
        let d = |s| parse_retention(s).unwrap();
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
            assert!(parse_retention(bad).is_err(), "{bad:?}");
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
