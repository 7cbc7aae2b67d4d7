//! The callback policy (SPEC §4): which `callback_url`s the service will ever call.
//!
//! Two gates share one set of tables:
//! - **submit time**, [`CallbackPolicy::check_url`]: pure, no DNS, microseconds. The URL is
//!   parsed by the WHATWG parser (`url`), and every check runs on the parsed result, never
//!   on the input string: `http://0x7f.1/`, `http://①②⑦.⓪.⓪.①/` and `http://127.0.0.1/`
//!   are one and the same host by then.
//! - **delivery time**, [`VettedResolver`]: names are taken from `--callback-resolve`
//!   pins or resolved by [`Dns`] (`/etc/hosts`, then DNS, asynchronously: SPEC §9), every
//!   address is vetted, and the connector gets exactly the vetted addresses.
//!
//! Both gates end in [`CallbackPolicy::check_ip`]: the IANA special-purpose tables
//! (`ranges.rs`), the IPv4 embedded in IPv6 forms (`embedded.rs`) and the opened ranges.
//! Reserved names live in `hostnames.rs`, the delivery-time gate in `resolver.rs`, the
//! name lookup it uses in `dns.rs`.
//!
//! # Wiring it into the delivery client
//! ```text
//! reqwest::Client::builder()
//!     .no_proxy()                                   // a proxy would resolve for us
//!     .redirect(reqwest::redirect::Policy::none())  // SPEC §2: a 3xx is a failure
//!     .dns_resolver(Arc::new(VettedResolver::new(policy.clone(), dns)))
//! ```
//! A URL whose host is a literal address never reaches a resolver, so the delivery code
//! also runs `policy.check_url(url)` before each attempt (the opened ranges may have
//! changed since submit). A failed send whose chain holds a refusal
//! (`Refusal::find_in(&err)`) is a permanent failure; other errors are retried.
//!
//! # Opened ranges (`--allow-callback-cidr`)
//! An address inside an opened range is accepted even though a deny table lists it. The
//! rule is deliberately literal, to stay conservative:
//! - ranges match the address as written; no family conversion. Opening `127.0.0.0/8`
//!   opens `127.0.0.1`, not `::ffff:127.0.0.1`.
//! - an IPv6 address embedding IPv4 (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64,
//!   6to4, Teredo) is accepted only if BOTH the IPv6 address lies in an opened range AND
//!   every embedded IPv4 candidate is itself acceptable (not denied, or opened). So
//!   `::ffff:127.0.0.1` needs `::ffff:0:0/96` (or narrower) and `127.0.0.0/8` opened; an
//!   IPv6-only site behind DNS64 opens `64:ff9b::/96` and still cannot reach
//!   `64:ff9b::10.0.0.1` unless it opens `10.0.0.0/8` too.
//! - without an opened range, every embedding form is refused, even when the IPv4 inside is
//!   public: all of them are registry entries, or lie outside 2000::/3. The refusal names
//!   the embedded IPv4 (and, if it is denied, its range).
//! - names (`localhost`, `*.internal`, ...) are never lifted by any range.
//!
//! # Pins (`--callback-resolve HOST=IP`)
//! Pins stand in for DNS at delivery time only. Submit time never consults them (it never
//! consults DNS either), so a pinned name is accepted at submit like any name, and its
//! pinned address is refused or accepted when the callback is attempted.

mod dns;
mod embedded;
mod hostnames;
mod ranges;
mod resolver;

#[cfg(test)]
mod resolver_tests;
/// The integration suite's DNS server (shared source), for the unit tests here and in
/// `delivery`.
#[cfg(test)]
#[path = "../../tests/api/helpers/dns.rs"]
pub(crate) mod test_dns;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use dns::{Dns, DnsServers, parse_dns_server};
pub use resolver::{ResolveError, VettedResolver, parse_pin};

/// The longest `callback_url` accepted, in bytes as submitted (SPEC §4).
pub const MAX_URL_BYTES: usize = 2048;

/// Why a destination was refused; Display is the human reason used in the HTTP 400 problem
/// `detail` (the HTTP layer prefixes "callback_url refused: "). It names the scheme, host
/// or address range, and for embedded IPv4 the embedded IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl Refusal {
    /// The refusal somewhere in `err`'s `source()` chain (`err` included), if any: how
    /// the delivery code tells a policy refusal (permanent) from other transport errors.
    pub fn find_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
        std::iter::successors(Some(err), |e| e.source()).find_map(|e| e.downcast_ref())
    }
}

/// The callback policy: deny tables, opened ranges and pinned names. Cheap to share
/// (`Arc`); holds no connection and no cache (DNS lives in [`Dns`], beside it).
#[derive(Debug, Clone, Default)]
pub struct CallbackPolicy {
    allowed: Vec<ipnet::IpNet>,
    /// `(host, ip)`, host lower case without trailing dots.
    pinned: Vec<(String, IpAddr)>,
}

impl CallbackPolicy {
    /// A policy opening `allowed` ranges and pinning `pinned` names to addresses.
    pub fn new(allowed: Vec<ipnet::IpNet>, pinned: Vec<(String, IpAddr)>) -> Self {
        let pinned = pinned
            .into_iter()
            .map(|(host, ip)| (host.trim_end_matches('.').to_ascii_lowercase(), ip))
            .collect();
        Self { allowed, pinned }
    }

    /// The ranges opened by `--allow-callback-cidr`.
    pub fn allowed(&self) -> &[ipnet::IpNet] {
        &self.allowed
    }

    /// Submit-time check: pure, no DNS, microseconds. Returns the WHATWG-parsed URL.
    pub fn check_url(&self, raw: &str) -> Result<url::Url, Refusal> {
        if raw.len() > MAX_URL_BYTES {
            let len = raw.len();
            return Err(Refusal(format!(
                "URL is {len} bytes long; the limit is {MAX_URL_BYTES}"
            )));
        }
        let url = url::Url::parse(raw).map_err(|e| Refusal(format!("not a valid URL: {e}")))?;
        check_scheme_and_user(&url)?;
        match url.host() {
            None => Err(Refusal("URL has no host".into())),
            Some(url::Host::Domain(name)) => check_name(name),
            Some(url::Host::Ipv4(ip)) => self.check_ip(ip.into()),
            Some(url::Host::Ipv6(ip)) => self.check_ip(ip.into()),
        }?;
        Ok(url)
    }

    /// The address check both gates share (deny tables, embedded IPv4, opened ranges).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        match ip {
            IpAddr::V4(v4) => self.check_v4(v4),
            IpAddr::V6(v6) => match embedded::find(v6) {
                Some(found) => self.check_embedded(v6, found),
                None => self.check_v6(v6),
            },
        }
    }

    /// The range that refuses `ip`, in words without the address itself: what a refusal
    /// for a resolved name may say.
    pub fn refused_range(&self, ip: IpAddr) -> String {
        let in_range = |v4: Ipv4Addr| ranges::special_v4(v4).map(|r| format!("an address in {r}"));
        let found = match ip {
            IpAddr::V4(v4) => in_range(v4),
            IpAddr::V6(v6) => match embedded::find(v6) {
                Some(e) => e.candidates().find_map(|c| in_range(c.ipv4)).or_else(|| {
                    Some(format!(
                        "{}, refused unless an opened range holds it",
                        e.form
                    ))
                }),
                None => ranges::special_v6(v6).map(|r| format!("an address in {r}")),
            },
        };
        found.unwrap_or_else(|| "a refused address".to_owned())
    }

    fn opens(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|net| net.contains(&ip))
    }

    fn check_v4(&self, ip: Ipv4Addr) -> Result<(), Refusal> {
        match ranges::special_v4(ip) {
            Some(range) if !self.opens(ip.into()) => {
                Err(Refusal(format!("address {ip} is in {range}")))
            }
            _ => Ok(()),
        }
    }

    fn check_v6(&self, ip: Ipv6Addr) -> Result<(), Refusal> {
        match ranges::special_v6(ip) {
            Some(range) if !self.opens(ip.into()) => {
                Err(Refusal(format!("address {ip} is in {range}")))
            }
            _ => Ok(()),
        }
    }

    /// Both layers must pass: each embedded IPv4, and the IPv6 address itself.
    fn check_embedded(&self, ip: Ipv6Addr, found: embedded::Embedded) -> Result<(), Refusal> {
        let form = found.form;
        for c in found.candidates() {
            let denied = ranges::special_v4(c.ipv4).filter(|_| !self.opens(c.ipv4.into()));
            if let Some(range) = denied {
                let (role, v4) = (c.role, c.ipv4);
                let why = format!("address {ip} is {form} embedding {role}{v4}, in {range}");
                return Err(Refusal(why));
            }
        }
        if self.opens(ip.into()) {
            return Ok(());
        }
        let embedded::Candidate { role, ipv4: v4 } = found.primary();
        Err(Refusal(format!(
            "address {ip} is {form} embedding {role}{v4}; refused unless an opened range holds it"
        )))
    }
}

fn check_scheme_and_user(url: &url::Url) -> Result<(), Refusal> {
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return Err(Refusal(format!(
            "scheme {scheme:?} is not allowed (only http and https)"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal(
            "URL carries user info (a user name or password)".into(),
        ));
    }
    Ok(())
}

fn check_name(host: &str) -> Result<(), Refusal> {
    match hostnames::reserved(host) {
        Some(why) => Err(Refusal(format!("host {host:?} is reserved: {why}"))),
        None => Ok(()),
    }
}
