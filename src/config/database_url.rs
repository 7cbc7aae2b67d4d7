//! The database URL (SPEC §6, §16): which backend, where, and how it is shown — never
//! with a password, whatever characters it holds.

use std::path::PathBuf;

use super::ConfigError;

/// Where the database lives; the scheme picks the backend.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A file path, relative to the working directory unless absolute.
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL, passed to the driver as it is.
    Postgres(String),
}

impl std::fmt::Debug for DatabaseUrl {
    /// Never prints a password (see [`redact_database_url`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => f.write_str(&redact_database_url(u)),
        }
    }
}

/// Query parameters of a PostgreSQL URL that hold a secret.
const SECRET_PARAMETERS: [&str; 3] = ["password", "sslpassword", "passfile"];

/// `raw` with the password of its user info and the values of its `password`,
/// `sslpassword` and `passfile` query parameters replaced by `***`; everything else as
/// written. A URL that does not parse is shown as its scheme only (`postgres://…`): where
/// its password ends cannot be known (SPEC §16, §17).
pub fn redact_database_url(raw: &str) -> String {
    if url::Url::parse(raw).is_err() {
        return scheme_only(raw);
    }
    let (base, query) = match raw.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (raw, None),
    };
    let mut out = redact_user_info(base);
    if let Some(query) = query {
        let pairs: Vec<String> = query.split('&').map(redact_parameter).collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// `postgres://…` for a URL that does not parse; `…` when not even a scheme shows.
fn scheme_only(raw: &str) -> String {
    let scheme = raw.split_once(':').map(|(s, _)| s).filter(|s| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    });
    match scheme {
        Some(scheme) => format!("{scheme}://…"),
        None => "…".to_owned(),
    }
}

/// `scheme://user:secret@host/…` → `scheme://user:***@host/…`. The user info ends at the
/// last `@` (a password may hold `/`, `@` or `:`), whatever a parser would make of it.
fn redact_user_info(base: &str) -> String {
    let start = base.find("://").map_or(0, |i| i + 3);
    let Some(at) = base[start..].rfind('@').map(|i| start + i) else {
        return base.to_owned();
    };
    match base[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &base[..start + colon], &base[at..]),
        None => base.to_owned(),
    }
}

/// `password=secret` → `password=***`; any other `key=value` as it is.
fn redact_parameter(pair: &str) -> String {
    let Some((key, _)) = pair.split_once('=') else {
        return pair.to_owned();
    };
    let decoded: String = url::form_urlencoded::parse(key.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    match SECRET_PARAMETERS
        .iter()
        .any(|s| decoded.eq_ignore_ascii_case(s))
    {
        true => format!("{key}=***"),
        false => pair.to_owned(),
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
        let bad = |why: &str| {
            let shown = redact_database_url(raw);
            ConfigError(format!("--database-url {shown:?}: {why}"))
        };
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
    fn a_password_in_the_query_string_is_redacted_and_other_parameters_stay_readable() {
        let raw = "postgres://u@h:5432/db?sslmode=require&password=secret&application_name=x";
        let shown = format!("{:?}", DatabaseUrl::parse(raw).unwrap());
        assert_eq!(
            shown,
            "postgres://u@h:5432/db?sslmode=require&password=***&application_name=x"
        );
    }

    #[test]
    fn every_kind_of_database_password_is_redacted() {
        let cases = [
            ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u@h/db?sslpassword=pw",
                "postgres://u@h/db?sslpassword=***",
            ),
            (
                "postgres://u@h/db?PASSWORD=pw",
                "postgres://u@h/db?PASSWORD=***",
            ),
            (
                "postgres://u@h/db?pass%77ord=pw",
                "postgres://u@h/db?pass%77ord=***",
            ),
            (
                "postgres://u:p@ss@h/d?password=a&password=b",
                "postgres://u:***@h/d?password=***&password=***",
            ),
            (
                "postgres://h/db?passwordless=1",
                "postgres://h/db?passwordless=1",
            ),
            ("postgres://u@h/db?password", "postgres://u@h/db?password"),
            ("sqlite://data/x.db", "sqlite://data/x.db"),
        ];
        for (raw, shown) in cases {
            assert_eq!(redact_database_url(raw), shown, "{raw}");
        }
    }

    #[test]
    fn an_unusable_database_url_is_refused_without_showing_its_password() {
        for raw in [
            "postgress://u:hunter2@h/db",
            "postgres://u:hunter2@h:99999/db?password=hunter2",
            "mysql://h/db?password=hunter2",
            "postgres://u:hunter2/x@127.0.0.1/db",
            "postgres://u:hun#ter2@127.0.0.1/db",
            "postgres://u:hunter2?x@127.0.0.1/db",
        ] {
            let e = DatabaseUrl::parse(raw).unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(!e.to_string().contains("hun"), "{e}");
        }
    }

    #[test]
    fn a_password_shows_nowhere_whatever_characters_it_holds() {
        // Parses (as host u, port 1234, path /x@h/db), yet "1234/x" was the password.
        assert_eq!(
            redact_database_url("postgres://u:1234/x@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact_database_url("postgres://u:a:b@c@h/db"),
            "postgres://u:***@h/db"
        );
        // What does not parse shows its scheme only.
        assert_eq!(
            redact_database_url("postgres://u:hunter2/x@127.0.0.1/db"),
            "postgres://…"
        );
        assert_eq!(redact_database_url("not a url at all"), "…");
        let e = DatabaseUrl::parse("postgres://u:hunter2/x@127.0.0.1/db").unwrap_err();
        assert!(e.to_string().contains("\"postgres://…\""), "{e}");
    }
}
