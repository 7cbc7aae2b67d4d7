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
//!   can recover), so [`VettedResolver`] keeps the two apart in its error chain;
//! - other names go to [`Dns`] (`/etc/hosts`, then DNS, asynchronously): the lookup is
//!   part of the attempt and ends with it, whatever the DNS server does.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::dns::Dns;
use super::{CallbackPolicy, Refusal, hostnames};

/// Why [`VettedResolver::lookup`] returned no addresses.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The policy refused the name or one of its addresses: permanent.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The DNS lookup failed (no such name, server failure, no server): possibly
    /// transient.
    #[error("looking up {host:?} failed: {}", brief(.source))]
    Lookup {
        /// The host that was looked up.
        host: String,
        /// What the resolver said.
        source: NetError,
    },
    /// The lookup succeeded but gave no address.
    #[error("{host:?} has no address")]
    NoAddress {
        /// The host that was looked up.
        host: String,
    },
}

/// A failed lookup in a few words: hickory's own text for "no records" quotes the whole
/// query structure.
fn brief(e: &NetError) -> String {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(none)) => match none.response_code {
            ResponseCode::NXDomain => "no such name (NXDOMAIN)".to_owned(),
            _ => "no address records".to_owned(),
        },
        other => other.to_string(),
    }
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
    /// The pinned addresses for `host` (case-insensitive, trailing dots ignored).
    fn pinned(&self, host: &str) -> Vec<IpAddr> {
        let host = host.trim_end_matches('.');
        let pins = self
            .pinned
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(host));
        pins.map(|&(_, ip)| ip).collect()
    }

    /// Refuses the host if any one of its addresses is denied, naming the refused range
    /// but never the address the name resolved to (SPEC §16: no DNS answer reaches a
    /// caller or a log).
    fn vet_all(&self, host: &str, addrs: &[IpAddr]) -> Result<(), Refusal> {
        for &ip in addrs {
            if self.check_ip(ip).is_err() {
                let range = self.refused_range(ip);
                return Err(Refusal(format!("host {host:?} resolves to {range}")));
            }
        }
        Ok(())
    }
}

/// reqwest DNS resolver that hands the connector only vetted addresses (no second
/// lookup). Install it with `ClientBuilder::dns_resolver` together with `no_proxy()` (a
/// proxy would resolve the name itself). Literal-IP URLs never reach a resolver: they
/// are vetted by [`CallbackPolicy::check_url`] / [`CallbackPolicy::check_ip`].
#[derive(Debug, Clone)]
pub struct VettedResolver {
    policy: Arc<CallbackPolicy>,
    dns: Arc<Dns>,
}

impl VettedResolver {
    /// A resolver applying `policy`, asking `dns` for names that are not pinned.
    pub fn new(policy: Arc<CallbackPolicy>, dns: Arc<Dns>) -> Self {
        Self { policy, dns }
    }

    /// The vetted addresses of `host`: a literal address, the pinned addresses
    /// (`--callback-resolve`; DNS is never asked), or the hosts file's or DNS's answer.
    /// `Refused` if the name is reserved or ANY address is denied (stricter than svix,
    /// which drops denied ones); `Lookup`/`NoAddress` when there is nothing to vet.
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
            Err(_) => match self.policy.pinned(host) {
                pinned if !pinned.is_empty() => pinned,
                _ => self.ask_dns(host).await?,
            },
        };
        self.policy.vet_all(host, &addrs)?;
        Ok(addrs)
    }

    async fn ask_dns(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let addrs = self
            .dns
            .addresses(host)
            .await
            .map_err(|source| ResolveError::Lookup {
                host: host.to_owned(),
                source,
            })?;
        if addrs.is_empty() {
            return Err(ResolveError::NoAddress {
                host: host.to_owned(),
            });
        }
        Ok(addrs)
    }
}

impl Resolve for VettedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addrs = this
                .lookup(name.as_str())
                .await
                .map_err(ResolveError::into_boxed)?;
            // Port 0: the connector substitutes the URL's port.
            let addrs: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}
