//! Name lookups at delivery time (SPEC §9 "Bounded delivery"): `/etc/hosts` first, then
//! DNS, both without a blocked thread, so that the attempt timeout covers resolution too.
//!
//! `tokio::net::lookup_host` runs getaddrinfo on the blocking pool: a DNS server that never
//! answers would hold a pool thread for as long as the C library insists, whatever the
//! attempt's timeout. [hickory](hickory_resolver) sends the queries from the runtime
//! itself; dropping the lookup (the attempt timed out) abandons it.
//!
//! - **Hosts file.** Read once, when the client is built (a later change to `/etc/hosts`
//!   needs a restart). A name listed there is answered from the file alone, in either
//!   family, and never reaches DNS: the glibc `hosts: files dns` order. (hickory on its own
//!   would still ask DNS for the family the file does not list.)
//! - **Servers.** The system configuration (`/etc/resolv.conf`: servers, search list,
//!   options) unless `--callback-dns-server IP:PORT` names one server (UDP, TCP when an
//!   answer is truncated), with no search list.
//! - **Families.** A and AAAA are asked for together; every address of both answers is
//!   returned, so that the policy can refuse the host if any one is denied. (When one of
//!   the two queries fails and the other answers, only the answer is returned: the
//!   connector never sees an address that was not vetted.)
//! - **Caching and sharing.** hickory caches answers for their TTL (every lookup, cached
//!   or not, is vetted again by the caller), and sends identical queries that are in
//!   flight at the same time only once: an attempt that joins a query started earlier may
//!   end with that query's `request timed out` a little before its own deadline.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::Query;
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{Hosts, TokioResolver};

/// Where delivery-time DNS queries go (`--callback-dns-server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsServers {
    /// The system configuration, `/etc/resolv.conf`.
    #[default]
    System,
    /// This one server (UDP, with TCP for truncated answers); no search list.
    At(SocketAddr),
}

/// Parses a `--callback-dns-server` value: `IP:PORT`, `[IPv6]:PORT`, or a bare address
/// (port 53). Error text is one line.
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|ip| ip.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("expected IP:PORT (e.g. 127.0.0.53:53), got {s:?}"))
}

/// The delivery-time name lookup: hosts file, then DNS. Cheap to share.
pub struct Dns {
    resolver: TokioResolver,
    hosts: Arc<Hosts>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").finish_non_exhaustive()
    }
}

impl Dns {
    /// Lookups through `servers`, each DNS query given at most `timeout` (the attempt's
    /// own timeout bounds the whole lookup anyway), with `/etc/hosts` read now.
    pub fn new(servers: DnsServers, timeout: Duration) -> Self {
        let hosts = Hosts::from_system().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read /etc/hosts; callback names go to DNS only");
            Hosts::default()
        });
        Self::with_hosts(servers, timeout, hosts)
    }

    /// Like [`Dns::new`], with a hosts table given instead of `/etc/hosts`.
    pub fn with_hosts(servers: DnsServers, timeout: Duration, hosts: Hosts) -> Self {
        let (config, mut options) = match servers {
            DnsServers::System => system_config(),
            DnsServers::At(addr) => (one_server(addr), ResolverOpts::default()),
        };
        options.use_hosts_file = ResolveHosts::Never; // Read here, with files-then-DNS order.
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.timeout = options.timeout.min(timeout);
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()
            .unwrap_or_else(|e| {
                // Only DNS-over-TLS settings can fail here, and none are enabled.
                tracing::warn!(error = %e, "cannot build the DNS resolver; using no server");
                let none = ResolverConfig::from_name_servers(Vec::new());
                TokioResolver::builder_with_config(none, TokioRuntimeProvider::default())
                    .build()
                    .expect("a resolver without servers always builds")
            });
        Self {
            resolver,
            hosts: Arc::new(hosts),
        }
    }

    /// The addresses of `host` (not an IP literal), distinct, in answer order: from the
    /// hosts file when it lists the name, else from DNS. An empty answer is `Ok(vec![])`.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, NetError> {
        let host = host.to_ascii_lowercase();
        if let Some(listed) = self.listed_in_hosts_file(&host) {
            return Ok(listed);
        }
        let answer = self.resolver.lookup_ip(host.as_str()).await?;
        Ok(distinct(answer.iter()))
    }

    /// Both families' entries for `host`, if the hosts file lists it at all.
    fn listed_in_hosts_file(&self, host: &str) -> Option<Vec<IpAddr>> {
        let mut name = Name::from_ascii(host).ok()?;
        name.set_fqdn(true);
        let lookups = [RecordType::A, RecordType::AAAA].map(|family| {
            self.hosts
                .lookup_static_host(&Query::query(name.clone(), family))
        });
        let records = lookups.iter().flatten().flat_map(|l| l.answers());
        let listed = distinct(records.filter_map(|r| r.data.ip_addr()));
        (!listed.is_empty()).then_some(listed)
    }
}

/// The system's servers and options; with none readable, no server (every DNS lookup
/// fails, recorded per attempt, while pins and the hosts file still work).
fn system_config() -> (ResolverConfig, ResolverOpts) {
    hickory_resolver::system_conf::read_system_conf().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read the system DNS configuration; callback names resolve only through pins and /etc/hosts");
        (
            ResolverConfig::from_name_servers(Vec::new()),
            ResolverOpts::default(),
        )
    })
}

fn one_server(addr: SocketAddr) -> ResolverConfig {
    let on_port = |mut c: ConnectionConfig| {
        c.port = addr.port();
        c
    };
    let connections = vec![
        on_port(ConnectionConfig::udp()),
        on_port(ConnectionConfig::tcp()),
    ];
    ResolverConfig::from_name_servers(vec![NameServerConfig::new(addr.ip(), true, connections)])
}

fn distinct(ips: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in ips {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}
