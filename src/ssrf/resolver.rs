//! The delivery-time gate (SPEC §4): turn a callback host into addresses, vet every one,
//! and hand the HTTP connector only those, so there is no second lookup for DNS
//! rebinding to slip into.
//!
//! Invariants:
//! - a pinned name (`--callback-resolve HOST=IP`) never reaches DNS; its address is still
//!   vetted like any DNS answer;
//! - if ANY address of the answer is denied, the whole host is refused (svix drops the
//!   denied ones and connects to the rest; an attacker controlling the zone could then
//!   still steer some attempts inward);
//! - a policy refusal is a [`Refusal`] (a permanent failure); a failed lookup is not (DNS
//!   can recover), so [`VettedResolver`] keeps the two apart in its error chain.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{CallbackPolicy, Refusal, hostnames};

/// Why [`CallbackPolicy::lookup`] returned no addresses.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The policy refused the name or one of its addresses: permanent.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The DNS lookup failed (no such name, timeout, no resolver): possibly transient.
    #[error("looking up {host:?} failed: {source}")]
    Lookup {
        /// The host that was looked up.
        host: String,
        /// What the system resolver said.
        source: std::io::Error,
    },
    /// The lookup succeeded but gave no address.
    #[error("{host:?} has no address")]
    NoAddress {
        /// The host that was looked up.
        host: String,
    },
}

impl ResolveError {
    /// As an error for reqwest's connector. A refusal is boxed on its own, so that
    /// [`Refusal::find_in`] finds it by walking `source()` from the reqwest error.
    pub(super) fn into_boxed(self) -> Box<dyn StdError + Send + Sync> {
        match self {
            ResolveError::Refused(refusal) => Box::new(refusal),
            other => Box::new(other),
        }
    }
}

/// Parses one `--callback-resolve HOST=IP` value (IPv6 may be bracketed). Error text is
/// one line. The host is stored as the URL parser would write it (lower case, IDNA).
pub fn parse_pin(s: &str) -> Result<(String, IpAddr), String> {
    let (host, ip) = s
        .split_once('=')
        .ok_or_else(|| format!("expected HOST=IP (e.g. hooks.test=127.0.0.2), got {s:?}"))?;
    let host = normalise_pin_host(host.trim())?;
    let ip = ip.trim();
    let bare = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    let ip = bare
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    Ok((host, ip))
}

fn normalise_pin_host(host: &str) -> Result<String, String> {
    match url::Host::parse(host) {
        Ok(url::Host::Domain(d)) if !d.trim_end_matches('.').is_empty() => {
            Ok(d.trim_end_matches('.').to_owned())
        }
        Ok(_) => Err(format!(
            "{host:?} is not a host name (pins map a name to an address)"
        )),
        Err(e) => Err(format!("{host:?} is not a host name: {e}")),
    }
}

impl CallbackPolicy {
    /// Delivery-time: pinned address (from --callback-resolve) or DNS
    /// (`tokio::net::lookup_host`); Err if no address, or if ANY resolved address is
    /// denied (stricter than svix, which drops denied ones). A failed lookup is reported
    /// as a `Refusal` too here; use [`CallbackPolicy::lookup`] to tell the two apart.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, Refusal> {
        self.lookup(host).await.map_err(|e| match e {
            ResolveError::Refused(refusal) => refusal,
            other => Refusal(other.to_string()),
        })
    }

    /// Like [`CallbackPolicy::resolve`], but keeps a policy refusal (permanent) apart from
    /// a failed lookup (retryable).
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Some(why) = hostnames::reserved(host) {
            return Err(Refusal(format!("host {host:?} is reserved: {why}")).into());
        }
        let addrs = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match self.pinned(host) {
                pinned if !pinned.is_empty() => pinned,
                _ => dns(host).await?,
            },
        };
        self.vet_all(host, &addrs)?;
        Ok(addrs)
    }

    /// The pinned addresses for `host` (case-insensitive, trailing dots ignored).
    fn pinned(&self, host: &str) -> Vec<IpAddr> {
        let host = host.trim_end_matches('.');
        let pins = self
            .pinned
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(host));
        pins.map(|&(_, ip)| ip).collect()
    }

    /// Refuses the host if any one of its addresses is denied.
    fn vet_all(&self, host: &str, addrs: &[IpAddr]) -> Result<(), Refusal> {
        for &ip in addrs {
            self.check_ip(ip)
                .map_err(|r| Refusal(format!("host {host:?} resolves to {r}")))?;
        }
        Ok(())
    }
}

/// Asks the system resolver; distinct addresses in answer order.
async fn dns(host: &str) -> Result<Vec<IpAddr>, ResolveError> {
    let answer =
        tokio::net::lookup_host((host, 0))
            .await
            .map_err(|source| ResolveError::Lookup {
                host: host.to_owned(),
                source,
            })?;
    let mut addrs: Vec<IpAddr> = Vec::new();
    for ip in answer.map(|sa| sa.ip()) {
        if !addrs.contains(&ip) {
            addrs.push(ip);
        }
    }
    if addrs.is_empty() {
        return Err(ResolveError::NoAddress {
            host: host.to_owned(),
        });
    }
    Ok(addrs)
}

/// reqwest DNS resolver that hands the connector only vetted addresses (no second
/// lookup). Install it with `ClientBuilder::dns_resolver` together with `no_proxy()` (a
/// proxy would resolve the name itself). Literal-IP URLs never reach a resolver: they
/// are vetted by [`CallbackPolicy::check_url`] / [`CallbackPolicy::check_ip`].
#[derive(Debug, Clone)]
pub struct VettedResolver {
    policy: Arc<CallbackPolicy>,
}

impl VettedResolver {
    /// A resolver applying `policy`.
    pub fn new(policy: Arc<CallbackPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for VettedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let addrs = policy
                .lookup(name.as_str())
                .await
                .map_err(ResolveError::into_boxed)?;
            // Port 0: the connector substitutes the URL's port.
            let addrs: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}
