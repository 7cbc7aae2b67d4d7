//! `--allowed-host` (SPEC §16, §17): the names an open instance answers besides IP
//! literals, `localhost` and `*.localhost`; [`crate::http::guard`] applies the rule.

use std::net::IpAddr;

/// One allowed host pattern: an exact name, or `*.suffix` (any name ending in `.suffix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHost {
    Exact(String),
    /// The suffix with its leading dot: `.example.com`.
    Wildcard(String),
}

impl AllowedHost {
    /// Parses `--allowed-host NAME` (`*.example.com` allowed); lower case, without a
    /// trailing dot or a port.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = normalise(raw.trim());
        let (wild, rest) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, name.clone()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if rest.is_empty() || rest.len() > 253 || !rest.split('.').all(label_ok) {
            return Err(format!(
                "{raw:?} is not a host name (e.g. consuma.internal or *.example.com)"
            ));
        }
        Ok(match wild {
            true => AllowedHost::Wildcard(format!(".{rest}")),
            false => AllowedHost::Exact(rest),
        })
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            AllowedHost::Exact(name) => host == name,
            AllowedHost::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }
}

/// Lower case, without a port or a trailing dot.
fn normalise(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The host part of a `Host` value: `name`, `name:port`, `[v6]` or `[v6]:port`.
fn host_of(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => value,
    }
}

/// The name a refusal shows: the host part of `value`, normalised.
pub fn shown_host(value: &str) -> String {
    normalise(host_of(value.trim()))
}

/// Whether a request naming `host` (a `Host` value) may reach an open instance.
pub fn host_allowed(value: &str, allowed: &[AllowedHost]) -> bool {
    let host = normalise(host_of(value.trim()));
    if host.parse::<IpAddr>().is_ok() || host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    allowed.iter().any(|a| a.matches(&host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &[&str]) -> Vec<AllowedHost> {
        list.iter()
            .map(|s| AllowedHost::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn ip_literals_and_localhost_always_pass() {
        for host in [
            "127.0.0.1:8000",
            "10.1.2.3",
            "[::1]:8000",
            "[fe80::1]",
            "localhost",
            "LOCALHOST:80",
            "localhost.",
            "app.localhost:3000",
            "A.B.Localhost.",
        ] {
            assert!(host_allowed(host, &[]), "{host}");
        }
    }

    #[test]
    fn other_names_pass_only_when_listed_ignoring_case_port_and_a_trailing_dot() {
        let list = allowed(&["consuma.internal", "*.example.com"]);
        for host in [
            "consuma.internal",
            "Consuma.Internal.:8000",
            "api.example.com",
            "a.b.EXAMPLE.com.:443",
        ] {
            assert!(host_allowed(host, &list), "{host}");
        }
        for host in [
            "evil.test",
            "example.com",
            "notexample.com",
            "consuma.internal.evil.test",
            "localhost.evil.test",
        ] {
            assert!(!host_allowed(host, &list), "{host}");
        }
        assert!(!host_allowed("consuma.internal", &[]));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for raw in ["", "*.", "a..b", "exa mple.com", "*", "a/b"] {
            assert!(AllowedHost::parse(raw).is_err(), "{raw:?}");
        }
        assert_eq!(
            AllowedHost::parse("API.Example.com.").unwrap(),
            AllowedHost::Exact("api.example.com".into())
        );
    }
}
