//! Delivery-time tests. Only pins, a hosts table given by the test, a DNS server of our
//! own on loopback UDP and loopback listeners: no test here sends anything beyond loopback
//! (SPEC §4), and none depends on the machine's DNS or /etc/hosts.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::Hosts;
use reqwest::dns::Resolve;

use super::{
    CallbackPolicy, Dns, DnsServers, Refusal, ResolveError, VettedResolver, parse_dns_server,
    parse_pin,
};

use super::test_dns::DnsServer;

fn policy(allowed: &[&str], pins: &[&str]) -> CallbackPolicy {
    let allowed = allowed.iter().map(|r| r.parse().unwrap()).collect();
    let pins = pins.iter().map(|p| parse_pin(p).unwrap()).collect();
    CallbackPolicy::new(allowed, pins)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn hosts(table: &str) -> Hosts {
    let mut hosts = Hosts::default();
    hosts.read_hosts_conf(table.as_bytes()).unwrap();
    hosts
}

/// Lookups go to `dns` (after the `hosts` table); DNS queries time out after 5 s.
fn resolver_with(p: CallbackPolicy, dns: &DnsServer, table: &str) -> VettedResolver {
    let dns = Dns::with_hosts(
        DnsServers::At(dns.addr),
        Duration::from_secs(5),
        hosts(table),
    );
    VettedResolver::new(Arc::new(p), Arc::new(dns))
}

/// A resolver whose DNS server never answers, to show a lookup never reached it.
async fn resolver(p: CallbackPolicy) -> (VettedResolver, DnsServer) {
    let dns = DnsServer::silent("127.0.0.1").await;
    (resolver_with(p, &dns, ""), dns)
}

/// The refusal's text; panics on success or on a failed lookup.
async fn refused(r: &VettedResolver, host: &str) -> String {
    match r.lookup(host).await {
        Err(ResolveError::Refused(Refusal(why))) => why,
        other => panic!("{host}: expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_name_pinned_to_a_denied_address_is_refused() {
    let (r, dns) = resolver(policy(&["127.0.0.2/32"], &["hooks.test=127.0.0.1"])).await;
    let why = refused(&r, "hooks.test").await;
    assert!(
        why.contains("\"hooks.test\" resolves to an address in loopback")
            && !why.contains("127.0.0.1"),
        "{why}"
    );
    assert_eq!(dns.questions(), 0, "a pinned name never reaches DNS");
}

#[tokio::test]
async fn a_name_pinned_to_an_opened_address_resolves_to_it() {
    let (r, dns) = resolver(policy(&["127.0.0.2/32"], &["hooks.test=127.0.0.2"])).await;
    assert_eq!(r.lookup("hooks.test").await.unwrap(), [ip("127.0.0.2")]);
    // Case and the trailing dot do not matter.
    assert_eq!(r.lookup("HOOKS.Test.").await.unwrap(), [ip("127.0.0.2")]);
    assert_eq!(dns.questions(), 0, "a pinned name never reaches DNS");
}

#[tokio::test]
async fn any_denied_address_among_several_pins_refuses_the_host() {
    let pins = ["h.test=127.0.0.2", "h.test=127.0.0.3"];
    let (r, _dns) = resolver(policy(&["127.0.0.2/32"], &pins)).await;
    let why = refused(&r, "h.test").await;
    assert!(
        why.contains("loopback 127.0.0.0/8") && !why.contains("127.0.0.3"),
        "{why}"
    );
}

#[tokio::test]
async fn a_pin_to_a_public_address_needs_no_allow_list() {
    let (r, _dns) = resolver(policy(&[], &["h.test=[2001:4860:4860::8888]"])).await;
    let addrs = r.lookup("h.test").await.unwrap();
    assert_eq!(addrs, [ip("2001:4860:4860::8888")]);
}

#[tokio::test]
async fn reserved_names_are_refused_even_when_pinned_into_an_opened_range() {
    let (r, _dns) = resolver(policy(&["127.0.0.0/8"], &["localhost=127.0.0.2"])).await;
    assert!(refused(&r, "localhost").await.contains("reserved"));
}

#[tokio::test]
async fn literal_addresses_are_vetted_without_dns() {
    let (r, dns) = resolver(policy(&[], &[])).await;
    refused(&r, "10.1.2.3").await;
    refused(&r, "[::1]").await;
    assert_eq!(r.lookup("1.1.1.1").await.unwrap(), [ip("1.1.1.1")]);
    assert_eq!(dns.questions(), 0);
}

#[tokio::test]
async fn a_name_dns_resolves_to_a_denied_address_is_refused() {
    let dns = DnsServer::start("127.0.0.1", &[("rebind.dns.test", &["127.0.0.1"])]).await;
    let r = resolver_with(policy(&["127.0.0.2/32"], &[]), &dns, "");
    let why = refused(&r, "rebind.dns.test").await;
    assert!(why.contains("an address in loopback 127.0.0.0/8"), "{why}");
    assert!(
        !why.contains("127.0.0.1"),
        "no DNS answer in a refusal: {why}"
    );
    assert!(dns.questions() > 0);
}

#[tokio::test]
async fn a_name_dns_resolves_to_an_opened_address_resolves_to_it() {
    let dns = DnsServer::start("127.0.0.1", &[("good.dns.test", &["127.0.0.2"])]).await;
    let r = resolver_with(policy(&["127.0.0.2/32"], &[]), &dns, "");
    assert_eq!(r.lookup("good.dns.test").await.unwrap(), [ip("127.0.0.2")]);
    assert_eq!(r.lookup("GOOD.dns.test.").await.unwrap(), [ip("127.0.0.2")]);
}

#[tokio::test]
async fn any_denied_address_in_a_dns_answer_refuses_the_host() {
    let dns = DnsServer::start(
        "127.0.0.1",
        &[
            ("mixed.dns.test", &["127.0.0.2", "127.0.0.1"]),
            // The denied address in the other family's answer counts as well.
            ("dual.dns.test", &["127.0.0.2", "::1"]),
        ],
    )
    .await;
    let r = resolver_with(policy(&["127.0.0.2/32"], &[]), &dns, "");
    let why = refused(&r, "mixed.dns.test").await;
    assert!(
        why.contains("loopback 127.0.0.0/8") && !why.contains("127.0.0.1"),
        "{why}"
    );
    let why = refused(&r, "dual.dns.test").await;
    assert!(why.contains("loopback ::1/128"), "{why}");
}

#[tokio::test]
async fn a_name_in_the_hosts_file_is_answered_by_it_alone() {
    // DNS would say otherwise; the hosts file wins and DNS is never asked, in either
    // family (the glibc `files dns` order).
    let dns = DnsServer::start("127.0.0.1", &[("vm", &["127.0.0.2"])]).await;
    let table = "127.0.0.1 localhost\n127.0.0.1 runsc vm\n127.0.0.2 ok.hosts.test\n";
    let r = resolver_with(policy(&["127.0.0.2/32"], &[]), &dns, table);
    assert!(refused(&r, "vm").await.contains("an address in loopback"));
    // Refused: the file's 127.0.0.1, not DNS's (opened) 127.0.0.2, was used.
    assert!(refused(&r, "VM.").await.contains("an address in loopback"));
    assert_eq!(r.lookup("ok.hosts.test").await.unwrap(), [ip("127.0.0.2")]);
    assert_eq!(dns.questions(), 0);
}

#[tokio::test]
async fn an_unknown_name_is_a_failed_lookup_not_a_refusal() {
    let dns = DnsServer::start("127.0.0.1", &[("known.dns.test", &["127.0.0.2"])]).await;
    let r = resolver_with(policy(&["127.0.0.2/32"], &[]), &dns, "");
    match r.lookup("unknown.dns.test").await {
        Err(e @ (ResolveError::Lookup { .. } | ResolveError::NoAddress { .. })) => {
            let boxed = e.into_boxed();
            assert!(Refusal::find_in(&*boxed).is_none(), "{boxed}");
            assert!(boxed.to_string().contains("unknown.dns.test"), "{boxed}");
        }
        other => panic!("expected a failed lookup, got {other:?}"),
    }
}

#[tokio::test]
async fn a_dns_server_that_never_answers_is_cut_short_by_the_callers_timeout() {
    let (r, dns) = resolver(policy(&["127.0.0.2/32"], &[])).await;
    let started = Instant::now();
    let cut = tokio::time::timeout(Duration::from_millis(300), r.lookup("slow.dns.test")).await;
    assert!(cut.is_err(), "{cut:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(dns.questions() > 0, "the query was sent");
}

#[test]
fn a_failed_lookup_is_not_reported_as_a_policy_refusal() {
    let failed = ResolveError::Lookup {
        host: "h.test".into(),
        source: hickory_resolver::net::NetError::Timeout,
    }
    .into_boxed();
    assert!(Refusal::find_in(&*failed).is_none(), "{failed}");
    let refused = ResolveError::from(Refusal("denied".into())).into_boxed();
    assert_eq!(Refusal::find_in(&*refused), Some(&Refusal("denied".into())));
}

#[test]
fn dns_servers_parse_with_a_port_or_port_53() {
    let table: &[(&str, Result<&str, ()>)] = &[
        ("127.0.0.53:5353", Ok("127.0.0.53:5353")),
        (" 127.0.0.1:53 ", Ok("127.0.0.1:53")),
        ("10.0.0.2", Ok("10.0.0.2:53")),
        ("[::1]:5353", Ok("[::1]:5353")),
        ("[::1]", Ok("[::1]:53")),
        ("::1", Ok("[::1]:53")),
        ("dns.example:53", Err(())),
        ("127.0.0.1:99999", Err(())),
        ("", Err(())),
    ];
    for &(value, expected) in table {
        let parsed = parse_dns_server(value);
        match expected {
            Ok(addr) => assert_eq!(parsed, Ok(addr.parse().unwrap()), "{value:?}"),
            Err(()) => {
                let why = parsed.unwrap_err();
                assert!(
                    !why.contains('\n') && why.contains(value.trim()),
                    "{value:?}: {why}"
                );
            }
        }
    }
}

#[test]
fn pins_parse_with_or_without_brackets() {
    assert_eq!(
        parse_pin("Hooks.Test.=127.0.0.2"),
        Ok(("hooks.test".into(), ip("127.0.0.2")))
    );
    assert_eq!(parse_pin("h.test=[::1]"), Ok(("h.test".into(), ip("::1"))));
    assert_eq!(
        parse_pin(" h.test = ::1 "),
        Ok(("h.test".into(), ip("::1")))
    );
}

#[test]
fn bad_pins_explain_themselves_on_one_line() {
    for bad in [
        "h.test",
        "=127.0.0.1",
        "h.test=",
        "h.test=nope",
        "127.0.0.1=127.0.0.2",
        "a b=::1",
    ] {
        let err = parse_pin(bad).unwrap_err();
        assert!(!err.is_empty() && !err.contains('\n'), "{bad}: {err}");
    }
}

fn resolve_name(r: &VettedResolver, name: &str) -> reqwest::dns::Resolving {
    r.resolve(name.parse().unwrap())
}

#[tokio::test]
async fn the_resolver_hands_over_only_vetted_addresses() {
    let (r, _dns) = resolver(policy(&["127.0.0.2/32"], &["ok.test=127.0.0.2"])).await;
    let addrs: Vec<_> = resolve_name(&r, "ok.test").await.unwrap().collect();
    assert_eq!(addrs, ["127.0.0.2:0".parse().unwrap()]);
    let err = resolve_name(&r, "localhost").await.err().unwrap();
    assert!(err.downcast_ref::<Refusal>().is_some(), "{err}");
}

async fn client(policy: CallbackPolicy) -> (reqwest::Client, DnsServer) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (resolver, dns) = resolver(policy).await;
    let builder = reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(Arc::new(resolver));
    let client = builder
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (client, dns)
}

#[tokio::test]
async fn a_refusal_is_found_in_the_reqwest_error_chain() {
    // Refused before any connection is attempted.
    let (c, _dns) = client(policy(&[], &["rebind.test=127.0.0.1"])).await;
    let err = c.get("http://rebind.test:9/").send().await.unwrap_err();
    let refusal = Refusal::find_in(&err).expect("a Refusal in the source chain");
    assert!(refusal.0.contains("loopback 127.0.0.0/8"), "{refusal}");
}

#[tokio::test]
async fn a_pinned_name_connects_to_its_vetted_loopback_address() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = socket.read(&mut buf).await;
        let reply = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        socket.write_all(reply).await.unwrap();
    });
    let (c, _dns) = client(policy(&["127.0.0.1/32"], &["receiver.test=127.0.0.1"])).await;
    let response = c
        .get(format!("http://receiver.test:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}
