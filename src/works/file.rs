//! The works file (SPEC §13 "The file", §17 "The file"): `[works.NAME]` tables read with
//! `toml` and serde (`deny_unknown_fields`), then checked value by value. Every mistake is
//! one line naming the file, the table and the key; `main` exits with status 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::env::expand;
use super::schema::InputSchema;

/// Largest `max_response_bytes` (16 MiB).
pub const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// Default `max_response_bytes` (1 MiB).
pub const DEFAULT_RESPONSE_BYTES: u64 = 1024 * 1024;
/// `max_in_flight × max_response_bytes` may not exceed this (1 GiB).
pub const MAX_BUFFERED_BYTES: u64 = 1024 * 1024 * 1024;
/// Longest `timeout` (15 minutes).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Headers the service sets itself, which a works file may not set (§17).
pub const RESERVED_HEADERS: [&str; 7] = [
    "host",
    "content-length",
    "content-type",
    "idempotency-key",
    "traceparent",
    "x-request-id",
    "x-consuma-tenant",
];

/// One line: `--works FILE: [works.NAME] key: why`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--works {file}: {place}{why}")]
pub struct WorksFileError {
    file: String,
    place: String,
    why: String,
}

/// A checked `[works.NAME]` table of kind `http`.
#[derive(Clone)]
pub struct WorkSpec {
    pub name: String,
    /// The operator's service; never shown to callers nor logged.
    pub url: url::Url,
    pub timeout: Duration,
    pub max_in_flight: u32,
    pub max_attempts: u32,
    /// Configured headers, values marked sensitive (they hold credentials).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub input_schema: Option<InputSchema>,
    pub max_response_bytes: u64,
    /// Tenants that may call the work; `None`: every tenant.
    pub tenants: Option<Vec<String>>,
}

impl std::fmt::Debug for WorkSpec {
    /// Neither the URL nor header values: they are the operator's secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("WorkSpec")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_attempts", &self.max_attempts)
            .field("headers", &headers)
            .field("input_schema", &self.input_schema.is_some())
            .field("max_response_bytes", &self.max_response_bytes)
            .field("tenants", &self.tenants)
            .finish()
    }
}

/// A `[works.NAME]` table as written; every key optional so one key can be read alone.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWork {
    kind: Option<String>,
    url: Option<String>,
    timeout: Option<String>,
    max_in_flight: Option<i64>,
    max_attempts: Option<i64>,
    headers: Option<BTreeMap<String, String>>,
    input_schema: Option<toml::Table>,
    input_schema_file: Option<String>,
    max_response_bytes: Option<i64>,
    tenants: Option<Vec<String>>,
}

/// Reads and checks `path`; `${NAME}` values come from the process environment.
pub fn load(path: &Path) -> Result<Vec<WorkSpec>, WorksFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| WorksFileError {
        file: path.display().to_string(),
        place: String::new(),
        why: format!("cannot read the file: {e}"),
    })?;
    parse(path, &text, |name| std::env::var(name).ok())
}

/// Checks the text of the works file at `path` (relative `input_schema_file`s are read
/// beside it).
pub fn parse(
    path: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<WorkSpec>, WorksFileError> {
    let ctx = Ctx {
        file: path.display().to_string(),
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        env: &env,
    };
    let root: toml::Table = toml::from_str(text).map_err(|e| ctx.syntax(text, &e))?;
    let mut works = Vec::new();
    for (key, value) in root {
        if key != "works" {
            return Err(ctx.err("", &key, "unknown key (expected [works.NAME] tables)"));
        }
        let toml::Value::Table(tables) = value else {
            return Err(ctx.err("", "works", "must be a table of [works.NAME] tables"));
        };
        for (name, table) in tables {
            works.push(ctx.work(&name, table)?);
        }
    }
    Ok(works)
}

struct Ctx<'a> {
    file: String,
    dir: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    fn err(&self, table: &str, key: &str, why: impl Into<String>) -> WorksFileError {
        let place = match (table.is_empty(), key.is_empty()) {
            (true, true) => String::new(),
            (true, false) => format!("{key}: "),
            (false, true) => format!("[{table}] "),
            (false, false) => format!("[{table}] {key}: "),
        };
        WorksFileError {
            file: self.file.clone(),
            place,
            why: why.into(),
        }
    }

    /// A TOML syntax error as one line with its line and column.
    fn syntax(&self, text: &str, e: &toml::de::Error) -> WorksFileError {
        let at = e.span().map(|s| {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {col}: ")
        });
        let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
        self.err("", "", format!("{}{message}", at.unwrap_or_default()))
    }

    /// One `[works.NAME]` table, checked.
    fn work(&self, name: &str, value: toml::Value) -> Result<WorkSpec, WorksFileError> {
        let table_name = format!("works.{name}");
        let t = table_name.as_str();
        if !is_work_name(name) {
            return Err(self.err(t, "", "the name must match ^[a-z][a-z0-9-]{0,62}$"));
        }
        if name == "text" {
            return Err(self.err(t, "", "`text` is the built-in work and cannot be redefined"));
        }
        let toml::Value::Table(table) = value else {
            return Err(self.err(t, "", "must be a table"));
        };
        if let Some(key) = find_datetime(&table) {
            return Err(self.err(t, &key, "TOML datetimes are not accepted"));
        }
        let raw = read_raw(&table).map_err(|(key, why)| self.err(t, &key, why))?;
        self.check(name, t, raw)
    }

    fn check(&self, name: &str, t: &str, raw: RawWork) -> Result<WorkSpec, WorksFileError> {
        match raw.kind.as_deref() {
            Some("http") => {}
            Some(other) => {
                return Err(self.err(
                    t,
                    "kind",
                    format!("unknown kind {other:?} (expected \"http\")"),
                ));
            }
            None => return Err(self.err(t, "kind", "is required (kind = \"http\")")),
        }
        let url = self.url(t, raw.url)?;
        let timeout = match raw.timeout {
            Some(s) => parse_timeout(&s).map_err(|why| self.err(t, "timeout", why))?,
            None => Duration::from_secs(30),
        };
        let max_in_flight = int_in(raw.max_in_flight, 64, 1, 10_000)
            .map_err(|w| self.err(t, "max_in_flight", w))?;
        let max_attempts =
            int_in(raw.max_attempts, 3, 1, 20).map_err(|w| self.err(t, "max_attempts", w))?;
        let max_response_bytes = int_in(
            raw.max_response_bytes,
            DEFAULT_RESPONSE_BYTES as i64,
            1,
            MAX_RESPONSE_BYTES as i64,
        )
        .map_err(|w| self.err(t, "max_response_bytes", w))?;
        if max_in_flight as u64 * max_response_bytes as u64 > MAX_BUFFERED_BYTES {
            return Err(self.err(t, "max_response_bytes", format!(
                "max_in_flight ({max_in_flight}) × max_response_bytes ({max_response_bytes}) exceeds 1 GiB"
            )));
        }
        let headers = self.headers(t, raw.headers.unwrap_or_default())?;
        let input_schema = self.schema(t, raw.input_schema, raw.input_schema_file)?;
        let tenants = raw.tenants.map(|list| self.tenants(t, list)).transpose()?;
        Ok(WorkSpec {
            name: name.to_owned(),
            url,
            timeout,
            max_in_flight: max_in_flight as u32,
            max_attempts: max_attempts as u32,
            headers,
            input_schema,
            max_response_bytes: max_response_bytes as u64,
            tenants,
        })
    }

    fn expand(&self, t: &str, key: &str, raw: &str) -> Result<String, WorksFileError> {
        expand(raw, |n| (self.env)(n)).map_err(|why| self.err(t, key, why))
    }

    fn url(&self, t: &str, raw: Option<String>) -> Result<url::Url, WorksFileError> {
        let raw = raw.ok_or_else(|| self.err(t, "url", "is required"))?;
        let expanded = self.expand(t, "url", &raw)?;
        // The reason only: the URL itself may hold a credential.
        let url = url::Url::parse(&expanded)
            .map_err(|e| self.err(t, "url", format!("not a URL ({e})")))?;
        match (url.scheme(), url.has_host()) {
            ("http" | "https", true) => Ok(url),
            ("http" | "https", false) => Err(self.err(t, "url", "has no host")),
            _ => Err(self.err(t, "url", "must be an http:// or https:// URL")),
        }
    }

    fn headers(
        &self,
        t: &str,
        raw: BTreeMap<String, String>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, WorksFileError> {
        let mut out = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            let key = format!("headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| self.err(t, &key, "not a valid header name"))?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(self.err(t, &key, "is set by the service and cannot be configured"));
            }
            let value = self.expand(t, &key, &value)?;
            if value.contains(['\r', '\n']) {
                return Err(self.err(t, &key, "the value holds CR or LF"));
            }
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| self.err(t, &key, "the value is not a valid header value"))?;
            value.set_sensitive(true);
            out.push((header, value));
        }
        Ok(out)
    }

    fn schema(
        &self,
        t: &str,
        inline: Option<toml::Table>,
        file: Option<String>,
    ) -> Result<Option<InputSchema>, WorksFileError> {
        let (key, doc) = match (inline, file) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    t,
                    "input_schema_file",
                    "give input_schema or input_schema_file, not both",
                ));
            }
            (None, None) => return Ok(None),
            (Some(table), None) => (
                "input_schema",
                serde_json::to_value(table)
                    .map_err(|e| self.err(t, "input_schema", e.to_string()))?,
            ),
            (None, Some(rel)) => ("input_schema_file", self.schema_file(t, &rel)?),
        };
        InputSchema::compile(doc)
            .map(Some)
            .map_err(|why| self.err(t, key, why))
    }

    fn schema_file(&self, t: &str, rel: &str) -> Result<serde_json::Value, WorksFileError> {
        let path = self.dir.join(rel);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            self.err(
                t,
                "input_schema_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            self.err(
                t,
                "input_schema_file",
                format!("{} is not JSON: {e}", path.display()),
            )
        })
    }

    fn tenants(&self, t: &str, list: Vec<String>) -> Result<Vec<String>, WorksFileError> {
        if let Some(bad) = list
            .iter()
            .find(|n| crate::auth::keys::TenantName::parse(n).is_err())
        {
            return Err(self.err(t, "tenants", format!("{bad:?} is not a tenant name")));
        }
        Ok(list)
    }
}

/// Reads the table through serde; on failure finds the key at fault by reading each key
/// alone, so a wrong type names its key as an unknown key does.
fn read_raw(table: &toml::Table) -> Result<RawWork, (String, String)> {
    let whole = RawWork::deserialize(toml::Value::Table(table.clone()));
    let Err(e) = whole else {
        return Ok(whole.unwrap_or_default());
    };
    for (key, value) in table {
        let one = toml::Table::from_iter([(key.clone(), value.clone())]);
        if let Err(e) = RawWork::deserialize(toml::Value::Table(one)) {
            let why = e.message().trim().to_owned();
            let why = match why.starts_with("unknown field") {
                true => "unknown key".to_owned(),
                false => format!("wrong type: {why}"),
            };
            return Err((key.clone(), why));
        }
    }
    Err((String::new(), e.message().trim().to_owned()))
}

/// The dotted path of the first datetime anywhere in `table`.
fn find_datetime(table: &toml::Table) -> Option<String> {
    fn walk(v: &toml::Value, path: String) -> Option<String> {
        match v {
            toml::Value::Datetime(_) => Some(path),
            toml::Value::Table(t) => t.iter().find_map(|(k, v)| walk(v, format!("{path}.{k}"))),
            toml::Value::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, format!("{path}[{i}]"))),
            _ => None,
        }
    }
    table.iter().find_map(|(k, v)| walk(v, k.clone()))
}

/// `^[a-z][a-z0-9-]{0,62}$`.
pub fn is_work_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn int_in(v: Option<i64>, default: i64, lo: i64, hi: i64) -> Result<i64, String> {
    match v.unwrap_or(default) {
        n if (lo..=hi).contains(&n) => Ok(n),
        n => Err(format!(
            "{n} is out of range (an integer from {lo} to {hi})"
        )),
    }
}

/// `timeout`: a whole number followed by `ms`, `s`, `m`, `h` or `d`, from 1 ms to 15 min.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("{s:?}: expected a whole number followed by ms, s, m, h or d (250ms, 30s, 15m)");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    let d = Duration::from_millis(n.checked_mul(ms_per).ok_or_else(bad)?);
    match d >= Duration::from_millis(1) && d <= MAX_TIMEOUT {
        true => Ok(d),
        false => Err(format!("{s:?} is out of range (1ms to 15m)")),
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
