//! Callback policy (SPEC §4). PLACEHOLDER: replaced by the ssrf work before merge.
use std::net::IpAddr;

/// Why a callback destination was refused; the text goes into the problem `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// The callback policy: deny tables, opened ranges and pinned names.
#[derive(Debug, Clone, Default)]
pub struct CallbackPolicy {
    allowed: Vec<ipnet::IpNet>,
    pinned: Vec<(String, IpAddr)>,
}

impl CallbackPolicy {
    pub fn new(allowed: Vec<ipnet::IpNet>, pinned: Vec<(String, IpAddr)>) -> Self {
        Self { allowed, pinned }
    }
    pub fn allowed(&self) -> &[ipnet::IpNet] {
        &self.allowed
    }
    pub fn check_url(&self, raw: &str) -> Result<url::Url, Refusal> {
        let _ = &self.pinned;
        url::Url::parse(raw).map_err(|e| Refusal(e.to_string()))
    }
}

/// Parses one `--callback-resolve HOST=IP` value.
pub fn parse_pin(s: &str) -> Result<(String, IpAddr), String> {
    let (h, ip) = s.split_once('=').ok_or("expected HOST=IP")?;
    Ok((h.to_string(), ip.parse().map_err(|e| format!("{e}"))?))
}
