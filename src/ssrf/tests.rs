//! Submit-time tests: the shared conformance cases, refusal texts, opened ranges, and
//! property tests over every notation of a denied address the WHATWG parser accepts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::ranges::{SPECIAL_V4, SPECIAL_V6};
use super::{CallbackPolicy, MAX_URL_BYTES, embedded};

const CASES: &str = include_str!("../../tests/data/ssrf_cases.json");

fn strict() -> CallbackPolicy {
    CallbackPolicy::new(vec![], vec![])
}

fn opening(ranges: &[&str]) -> CallbackPolicy {
    CallbackPolicy::new(ranges.iter().map(|r| r.parse().unwrap()).collect(), vec![])
}

fn refusal(policy: &CallbackPolicy, url: &str) -> String {
    match policy.check_url(url) {
        Ok(parsed) => panic!("{url} was accepted as {parsed}"),
        Err(r) => r.0,
    }
}

fn case_urls(kind: &str) -> Vec<String> {
    let cases: serde_json::Value = serde_json::from_str(CASES).unwrap();
    let list = cases[kind].as_array().expect("a list of cases");
    list.iter()
        .map(|c| c["url"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_conformance_case_gets_its_verdict() {
    let policy = strict();
    let mut wrong = Vec::new();
    let rejects = case_urls("reject");
    let accepts = case_urls("accept");
    assert!(
        rejects.len() > 40 && accepts.len() > 10,
        "the cases file was read"
    );
    for url in &rejects {
        if let Ok(parsed) = policy.check_url(url) {
            wrong.push(format!("accepted {url:?} (parsed as {parsed})"));
        }
    }
    for url in &accepts {
        if let Err(r) = policy.check_url(url) {
            wrong.push(format!("refused {url:?}: {r}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn refusals_name_the_scheme_host_range_or_embedded_ipv4() {
    let p = strict();
    assert!(refusal(&p, "ftp://example.com/f").contains("\"ftp\""));
    assert!(refusal(&p, "http://Metadata.Google.Internal./").contains("metadata.google.internal"));
    assert!(refusal(&p, "http://0177.0.0.1/").contains("127.0.0.1 is in loopback 127.0.0.0/8"));
    assert!(refusal(&p, "http://[fc00::1]/").contains("fc00::/7"));
    let mapped = refusal(&p, "http://[::ffff:127.0.0.1]/");
    assert!(
        mapped.contains("IPv4-mapped") && mapped.contains("embedding 127.0.0.1"),
        "{mapped}"
    );
    let teredo = refusal(&p, "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/");
    assert!(
        teredo.contains("Teredo") && teredo.contains("client 192.0.2.45"),
        "{teredo}"
    );
    let six = refusal(&p, "http://[2002:7f00:1::]/");
    assert!(six.contains("6to4") && six.contains("127.0.0.1"), "{six}");
    let nat64 = refusal(&p, "http://[64:ff9b:1::a00:1]/");
    assert!(
        nat64.contains("embedding 10.0.0.1, in private-use"),
        "{nat64}"
    );
}

#[test]
fn public_ipv4_inside_an_embedding_form_is_still_refused_and_named() {
    let r = refusal(&strict(), "http://[2002:808:808::1]/");
    assert!(r.contains("embedding 8.8.8.8; refused unless"), "{r}");
}

#[test]
fn url_length_limit_counts_bytes_as_submitted() {
    let base = "https://example.com/";
    let at_limit = format!("{base}{}", "é".repeat((MAX_URL_BYTES - base.len()) / 2));
    assert!(at_limit.len() <= MAX_URL_BYTES);
    assert!(strict().check_url(&at_limit).is_ok());
    let over = format!("{base}{}", "a".repeat(MAX_URL_BYTES + 1 - base.len()));
    assert!(refusal(&strict(), &over).contains("2049 bytes"));
}

#[test]
fn user_info_is_refused_even_without_a_user_name() {
    assert!(refusal(&strict(), "https://:secret@example.com/").contains("user info"));
    assert!(refusal(&strict(), "https://user:@example.com/").contains("user info"));
}

#[test]
fn the_parsed_url_is_returned() {
    let url = strict()
        .check_url("https://EXAMPLE.COM:443/Hook?x=1")
        .unwrap();
    assert_eq!(url.as_str(), "https://example.com/Hook?x=1");
}

#[test]
fn an_opened_range_opens_its_addresses_in_any_notation() {
    let p = opening(&["127.0.0.0/8"]);
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://127.1/",
        "http://0x7f000002/",
    ] {
        assert!(p.check_url(url).is_ok(), "{url}");
    }
    assert!(p.check_url("http://10.0.0.1/").is_err());
    let narrow = opening(&["127.0.0.2/32"]);
    assert!(narrow.check_url("http://127.0.0.2:9000/").is_ok());
    assert!(narrow.check_url("http://127.0.0.1:9000/").is_err());
}

#[test]
fn opened_ranges_never_lift_reserved_names() {
    let p = opening(&["0.0.0.0/0", "::/0"]);
    for url in [
        "http://localhost/",
        "http://localhost./",
        "http://x.internal/",
    ] {
        assert!(refusal(&p, url).contains("reserved"), "{url}");
    }
}

#[test]
fn an_opened_ipv4_range_does_not_open_its_ipv6_embeddings() {
    let p = opening(&["127.0.0.0/8"]);
    assert!(refusal(&p, "http://[::ffff:127.0.0.1]/").contains("embedding 127.0.0.1"));
    assert!(refusal(&p, "http://[64:ff9b::127.0.0.1]/").contains("NAT64"));
}

#[test]
fn an_embedding_form_needs_both_layers_opened() {
    let v6_only = opening(&["::ffff:0:0/96"]);
    assert!(refusal(&v6_only, "http://[::ffff:127.0.0.1]/").contains("loopback"));
    assert!(v6_only.check_url("http://[::ffff:8.8.8.8]/").is_ok());
    let both = opening(&["::ffff:0:0/96", "127.0.0.0/8"]);
    assert!(both.check_url("http://[::ffff:127.0.0.1]/").is_ok());
    let dns64 = opening(&["64:ff9b::/96"]);
    assert!(dns64.check_url("http://[64:ff9b::8.8.8.8]/").is_ok());
    assert!(refusal(&dns64, "http://[64:ff9b::10.0.0.1]/").contains("10.0.0.1"));
    let teredo = opening(&["2001::/32"]);
    let client_public = "http://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/"; // client 8.8.8.8
    assert!(teredo.check_url(client_public).is_ok());
    let server_private = "http://[2001:0:a00:1:8000:63bf:f7f7:f7f7]/"; // server 10.0.0.1
    assert!(refusal(&teredo, server_private).contains("server 10.0.0.1"));
}

#[test]
fn pins_are_not_consulted_at_submit_time() {
    let pinned = vec![("hooks.test".to_owned(), IpAddr::from([127, 0, 0, 1]))];
    let p = CallbackPolicy::new(vec![], pinned);
    assert!(p.check_url("http://hooks.test:8080/cb").is_ok());
}

// ---- property tests -------------------------------------------------------------------

/// A random address inside a random entry of the IPv4 deny table.
fn denied_v4() -> impl Strategy<Value = Ipv4Addr> {
    (0..SPECIAL_V4.len(), any::<u32>()).prop_map(|(i, r)| {
        let net = SPECIAL_V4[i].net;
        Ipv4Addr::from(u32::from(net.network()) | (r & u32::from(net.hostmask())))
    })
}

/// A random address inside a random entry of the IPv6 deny table.
fn denied_v6() -> impl Strategy<Value = Ipv6Addr> {
    (0..SPECIAL_V6.len(), any::<u128>()).prop_map(|(i, r)| {
        let net = SPECIAL_V6[i].net;
        Ipv6Addr::from(u128::from(net.network()) | (r & u128::from(net.hostmask())))
    })
}

/// How to write one number: radix (0 decimal, 1 octal, 2 hex), leading zeros, upper case.
type PartStyle = (u8, usize, bool);

fn write_part(value: u32, (radix, pad, upper): PartStyle) -> String {
    let zeros = "0".repeat(pad);
    match radix {
        0 => value.to_string(),
        1 => format!("0{zeros}{value:o}"),
        _ if upper => format!("0X{zeros}{value:X}"),
        _ => format!("0x{zeros}{value:x}"),
    }
}

/// `n` as 1 to 4 dot-separated parts, the last part spanning the remaining bytes.
fn write_ipv4(n: u32, parts: usize, styles: &[PartStyle], trailing_dot: bool) -> String {
    let b = n.to_be_bytes().map(u32::from);
    let values = match parts {
        1 => vec![n],
        2 => vec![b[0], n & 0xff_ffff],
        3 => vec![b[0], b[1], n & 0xffff],
        _ => b.to_vec(),
    };
    let written: Vec<_> = values
        .iter()
        .zip(styles)
        .map(|(&v, &s)| write_part(v, s))
        .collect();
    let dot = if trailing_dot { "." } else { "" };
    format!("{}{dot}", written.join("."))
}

/// Rewrites characters the way WHATWG host parsing undoes: percent-encoding, and the
/// full-width forms and ideographic dots that IDNA mapping folds back to ASCII.
fn disguise(host: &str, choices: &[u8]) -> String {
    let mut out = String::new();
    for (c, &choice) in host.chars().zip(choices.iter().cycle()) {
        match (choice, c) {
            (6, _) => c
                .to_string()
                .bytes()
                .for_each(|b| out.push_str(&format!("%{b:02X}"))),
            (7, '.') => out.push('。'),
            (8, '.') => out.push('．'),
            // Every printable ASCII character has a full-width twin 0xfee0 above it.
            (7 | 8, c) if c.is_ascii_alphanumeric() => {
                out.push(char::from_u32(u32::from(c) + 0xfee0).unwrap());
            }
            _ => out.push(c),
        }
    }
    out
}

/// Any IPv4 number in any notation the WHATWG parser accepts, disguised or not.
fn notation(n: impl Strategy<Value = Ipv4Addr>) -> impl Strategy<Value = (Ipv4Addr, String)> {
    let style = (0u8..3, 0usize..3, any::<bool>());
    let styles = prop::collection::vec(style, 4);
    let disguises = prop::collection::vec(0u8..9, 1..24);
    (
        n,
        1usize..=4,
        styles,
        any::<bool>(),
        any::<bool>(),
        disguises,
    )
        .prop_map(|(ip, parts, styles, dot, disguised, choices)| {
            let host = write_ipv4(u32::from(ip), parts, &styles, dot);
            let host = if disguised {
                disguise(&host, &choices)
            } else {
                host
            };
            (ip, format!("http://{host}/cb"))
        })
}

/// A denied IPv4 written inside one of the IPv6 forms that embed it.
fn embedding(v4: Ipv4Addr, form: u8, filler: [u16; 4]) -> String {
    let n = u32::from(v4);
    let (hi, lo) = (n >> 16, n & 0xffff);
    let [a, b, c, d] = filler;
    let host = match form {
        0 => format!("::ffff:{v4}"),
        1 => format!("::ffff:{hi:x}:{lo:x}"),
        2 => format!("::ffff:0:{v4}"),
        3 => format!("64:ff9b::{v4}"),
        4 => format!("64:ff9b:1:{a:x}:{b:x}:{c:x}:{hi:x}:{lo:x}"),
        5 => format!("2002:{hi:x}:{lo:x}:{a:x}::{d:x}"),
        6 => format!(
            "2001:0:{a:x}:{b:x}:{c:x}:{d:x}:{:x}:{:x}",
            !hi & 0xffff,
            !lo & 0xffff
        ),
        // Teredo server, with a public client (1.1.1.1 obfuscated) so the server is named.
        7 => format!("2001:0:{hi:x}:{lo:x}:{c:x}:{d:x}:fefe:fefe"),
        _ if n > 1 => format!("::{v4}"), // IPv4-compatible; ::0 and ::1 are not embeddings
        _ => format!("::ffff:{v4}"),
    };
    format!("http://[{host}]/")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn denied_ipv4_in_any_notation_is_refused((ip, url) in notation(denied_v4())) {
        let why = strict().check_url(&url).expect_err(&url).0;
        prop_assert!(why.contains(&format!("address {ip} ")), "{url}: {why}");
    }

    #[test]
    fn any_ipv4_notation_is_read_as_its_number((ip, url) in notation(any::<Ipv4Addr>())) {
        let parsed = url::Url::parse(&url).expect("a valid notation");
        prop_assert_eq!(parsed.host(), Some(url::Host::Ipv4(ip)), "{}", url);
        let by_url = strict().check_url(&url).is_ok();
        prop_assert_eq!(by_url, strict().check_ip(ip.into()).is_ok(), "{}", url);
    }

    #[test]
    fn denied_ipv4_embedded_in_ipv6_is_refused_and_named(
        v4 in denied_v4(), form in 0u8..9, filler in any::<[u16; 4]>(),
    ) {
        let url = embedding(v4, form, filler);
        let why = strict().check_url(&url).expect_err(&url).0;
        prop_assert!(why.contains(&format!("embedding {v4}"))
            || why.contains(&format!("client {v4}"))
            || why.contains(&format!("server {v4}")), "{url}: {why}");
    }

    #[test]
    fn denied_ipv6_is_refused_at_both_gates(ip in denied_v6()) {
        let url = format!("http://[{ip}]/");
        let why = strict().check_url(&url).expect_err(&url).0;
        prop_assert!(why.contains(&format!("address {ip} ")), "{url}: {why}");
        prop_assert!(strict().check_ip(ip.into()).is_err());
        if let Some(found) = embedded::find(ip) {
            prop_assert!(why.contains(&found.primary().ipv4.to_string()) || why.contains(" in "));
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>(), t in "(https?|ftp)://[^/]{0,40}/?.{0,8}") {
        let _ = strict().check_url(&s);
        let _ = opening(&["127.0.0.0/8"]).check_url(&t);
    }

    #[test]
    fn arbitrary_addresses_never_panic(
        ip in any::<IpAddr>(), nets in prop::collection::vec((any::<IpAddr>(), 0u8..=128), 0..3),
    ) {
        let allowed = nets.into_iter().filter_map(|(a, l)| ipnet::IpNet::new(a, l).ok()).collect();
        let _ = CallbackPolicy::new(allowed, vec![]).check_ip(ip);
        let _ = strict().check_ip(ip);
    }
}
