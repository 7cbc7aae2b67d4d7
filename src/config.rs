//! Checked configuration: [`ServeArgs`] in, a typed [`Config`] out, or a one-line
//! [`ConfigError`] that `main` prints before exiting with status 2 (SPEC §6).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{LogFormat, ServeArgs, SqliteSyncArg};
use crate::delivery::signing::SigningSecret;

pub use crate::cli::SqliteSyncArg as SqliteSynchronous;

/// Where the database lives; the scheme picks the backend.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A file path, relative to the working directory unless absolute.
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL, passed to the driver as it is.
    Postgres(String),
}

impl std::fmt::Debug for DatabaseUrl {
    /// Never prints a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => match url::Url::parse(u) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    write!(f, "{u}")
                }
                Err(_) => f.write_str("postgres://(unparsable)"),
            },
        }
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The default database when no URL is given.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/consuma.db";

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError(format!("--database-url {raw:?}: {why}"));
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
            return Ok(DatabaseUrl::Postgres(raw.to_owned()));
        }
        let Some(rest) = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
        else {
            return Err(bad("expected sqlite://path or postgres://…"));
        };
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err(bad(
                "needs a file path (an in-memory database would lose acknowledged work)",
            ));
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
    }

    /// `--database-url`, then `CONSUMA_DATABASE_URL` (both via clap), then `DATABASE_URL`,
    /// then the default.
    pub fn from_flag_or_env(flag: Option<&str>) -> Result<Self, ConfigError> {
        let env = std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty());
        Self::parse(flag.or(env.as_deref()).unwrap_or(DEFAULT_DATABASE_URL))
    }
}

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
    pub callback_resolve: Vec<(String, IpAddr)>,
    pub callback_dns_server: crate::ssrf::DnsServers,
    /// `None`: use the secret stored in the database (generated at first start).
    pub signing_secret: Option<SigningSecret>,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    pub job_poll: Duration,
    pub max_body_bytes: usize,
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
        })
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

impl SqliteSyncArg {
    pub fn as_str(self) -> &'static str {
        match self {
            SqliteSyncArg::Normal => "normal",
            SqliteSyncArg::Full => "full",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_relative_and_absolute_paths() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/x.db").unwrap(),
            DatabaseUrl::Sqlite("data/x.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db").unwrap(),
            DatabaseUrl::Sqlite("/tmp/x.db".into())
        );
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(matches!(
            DatabaseUrl::parse("postgresql://u@h/db").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
    }

    #[test]
    fn database_url_debug_hides_the_password() {
        let url = DatabaseUrl::parse("postgres://u:hunter2@h/db").unwrap();
        assert!(!format!("{url:?}").contains("hunter2"));
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
