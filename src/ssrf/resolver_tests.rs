//! Delivery-time tests. Only pins, `/etc/hosts` names and loopback listeners: no test here
//! sends anything beyond loopback (SPEC §4), and none depends on outside DNS.

use std::net::IpAddr;
use std::sync::Arc;

use reqwest::dns::Resolve;

use super::{CallbackPolicy, Refusal, ResolveError, VettedResolver, parse_pin};

fn policy(allowed: &[&str], pins: &[&str]) -> CallbackPolicy {
    let allowed = allowed.iter().map(|r| r.parse().unwrap()).collect();
    let pins = pins.iter().map(|p| parse_pin(p).unwrap()).collect();
    CallbackPolicy::new(allowed, pins)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_name_pinned_to_a_denied_address_is_refused() {
    let p = policy(&["127.0.0.2/32"], &["hooks.test=127.0.0.1"]);
    let why = p.resolve("hooks.test").await.unwrap_err().0;
    assert!(
        why.contains("\"hooks.test\" resolves to address 127.0.0.1 is in loopback"),
        "{why}"
    );
}

#[tokio::test]
async fn a_name_pinned_to_an_opened_address_resolves_to_it() {
    let p = policy(&["127.0.0.2/32"], &["hooks.test=127.0.0.2"]);
    assert_eq!(p.resolve("hooks.test").await, Ok(vec![ip("127.0.0.2")]));
    // Case and the trailing dot do not matter.
    assert_eq!(p.resolve("HOOKS.Test.").await, Ok(vec![ip("127.0.0.2")]));
}

#[tokio::test]
async fn any_denied_address_among_several_pins_refuses_the_host() {
    let p = policy(&["127.0.0.2/32"], &["h.test=127.0.0.2", "h.test=127.0.0.3"]);
    assert!(
        p.resolve("h.test")
            .await
            .unwrap_err()
            .0
            .contains("127.0.0.3")
    );
}

#[tokio::test]
async fn a_pin_to_a_public_address_needs_no_allow_list() {
    let p = policy(&[], &["h.test=[2001:4860:4860::8888]"]);
    assert_eq!(
        p.resolve("h.test").await,
        Ok(vec![ip("2001:4860:4860::8888")])
    );
}

#[tokio::test]
async fn reserved_names_are_refused_even_when_pinned_into_an_opened_range() {
    let p = policy(&["127.0.0.0/8"], &["localhost=127.0.0.2"]);
    assert!(
        p.resolve("localhost")
            .await
            .unwrap_err()
            .0
            .contains("reserved")
    );
}

#[tokio::test]
async fn literal_addresses_are_vetted_without_dns() {
    let p = policy(&[], &[]);
    assert!(p.resolve("10.1.2.3").await.is_err());
    assert!(p.resolve("[::1]").await.is_err());
    assert_eq!(p.resolve("1.1.1.1").await, Ok(vec![ip("1.1.1.1")]));
}

/// Names `/etc/hosts` maps to 127.0.0.1 (this machine has `vm` and `runsc`), excluding the
/// reserved `localhost*` so that the DNS path, not the name rule, is what refuses.
fn loopback_names_in_etc_hosts() -> Vec<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let lines = hosts.lines().map(|l| l.split('#').next().unwrap_or(""));
    let entries = lines.filter_map(|l| {
        let mut words = l.split_whitespace();
        (words.next()? == "127.0.0.1").then(|| words.map(str::to_owned).collect::<Vec<_>>())
    });
    let names = entries
        .flatten()
        .filter(|n| !n.contains("localhost") && !n.contains('.'));
    names.collect()
}

#[tokio::test]
async fn a_name_the_system_resolves_to_loopback_is_refused() {
    let names = loopback_names_in_etc_hosts();
    let Some(name) = names.first() else {
        println!("skipped: /etc/hosts maps no plain name to 127.0.0.1");
        return;
    };
    let why = policy(&[], &[]).resolve(name).await.unwrap_err().0;
    assert!(why.contains("127.0.0.1 is in loopback"), "{name}: {why}");
}

#[test]
fn a_failed_lookup_is_not_reported_as_a_policy_refusal() {
    // Built by hand: a real failed lookup would need a DNS query beyond loopback.
    let source = std::io::Error::other("no such host");
    let failed = ResolveError::Lookup {
        host: "h.test".into(),
        source,
    }
    .into_boxed();
    assert!(Refusal::find_in(&*failed).is_none(), "{failed}");
    let refused = ResolveError::from(Refusal("denied".into())).into_boxed();
    assert_eq!(Refusal::find_in(&*refused), Some(&Refusal("denied".into())));
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
    let r = VettedResolver::new(Arc::new(policy(&["127.0.0.2/32"], &["ok.test=127.0.0.2"])));
    let addrs: Vec<_> = resolve_name(&r, "ok.test").await.unwrap().collect();
    assert_eq!(addrs, ["127.0.0.2:0".parse().unwrap()]);
    let err = resolve_name(&r, "localhost").await.err().unwrap();
    assert!(err.downcast_ref::<Refusal>().is_some(), "{err}");
}

fn client(policy: CallbackPolicy) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resolver = Arc::new(VettedResolver::new(Arc::new(policy)));
    let builder = reqwest::Client::builder().no_proxy().dns_resolver(resolver);
    builder
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_refusal_is_found_in_the_reqwest_error_chain() {
    // Refused before any connection is attempted.
    let c = client(policy(&[], &["rebind.test=127.0.0.1"]));
    let err = c.get("http://rebind.test:9/").send().await.unwrap_err();
    let refusal = Refusal::find_in(&err).expect("a Refusal in the source chain");
    assert!(refusal.0.contains("127.0.0.1"), "{refusal}");
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
    let c = client(policy(&["127.0.0.1/32"], &["receiver.test=127.0.0.1"]));
    let response = c
        .get(format!("http://receiver.test:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}
