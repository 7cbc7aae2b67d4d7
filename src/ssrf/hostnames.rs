//! Host names that never receive a callback, whatever they resolve to (SPEC §4).
//!
//! Matching is on the host as the WHATWG parser leaves it (IDNA-mapped, lower case), but
//! is case-insensitive anyway because the delivery gate may be handed any spelling. A
//! trailing dot (the fully-qualified form, `localhost.`) is ignored: the old service let
//! `localhost.` through. Opened ranges (`--allow-callback-cidr`) never lift these names.

/// One rule: a name and whether its sub-domains are covered too, with the reason.
struct Rule {
    name: &'static str,
    subdomains: bool,
    why: &'static str,
}

#[rustfmt::skip]
const RULES: &[Rule] = &[
    Rule { name: "localhost", subdomains: true, why: "loopback name, RFC 6761 §6.3" },
    Rule { name: "local", subdomains: true, why: "multicast DNS, link-local only, RFC 6762" },
    Rule { name: "internal", subdomains: true, why: "private-use TLD, ICANN 2024" },
    Rule { name: "home.arpa", subdomains: true, why: "home networks, RFC 8375" },
    Rule { name: "metadata", subdomains: false, why: "cloud metadata service" },
    // Also covered by *.internal; listed so the refusal says what it is.
    Rule { name: "metadata.google.internal", subdomains: false, why: "GCP metadata service" },
];

/// Why `host` is a reserved name, e.g. `*.local (multicast DNS, ...)`, or `None`.
pub fn reserved(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.');
    // Exact names first, so `metadata.google.internal` is named for what it is.
    let mut rules = RULES
        .iter()
        .filter(|r| !r.subdomains)
        .chain(RULES.iter().filter(|r| r.subdomains));
    let rule = rules.find(|r| matches(host, r))?;
    let pattern = if rule.subdomains { "*." } else { "" };
    Some(format!("{pattern}{} ({})", rule.name, rule.why))
}

fn matches(host: &str, rule: &Rule) -> bool {
    if host.eq_ignore_ascii_case(rule.name) {
        return true;
    }
    // `host` ends with `.` + name, compared without allocating.
    rule.subdomains
        && host.len() > rule.name.len()
        && host.is_char_boundary(host.len() - rule.name.len() - 1)
        && host.as_bytes()[host.len() - rule.name.len() - 1] == b'.'
        && host[host.len() - rule.name.len()..].eq_ignore_ascii_case(rule.name)
}

#[cfg(test)]
mod tests {
    use super::reserved;

    #[test]
    fn reserved_names_in_any_case_with_or_without_trailing_dot() {
        for host in [
            "localhost",
            "LOCALHOST.",
            "foo.localhost",
            "a.b.LocalHost..",
            "printer.local",
            "local",
            "db.internal",
            "router.home.arpa",
            "home.arpa.",
            "metadata",
            "Metadata.Google.Internal.",
        ] {
            assert!(reserved(host).is_some(), "{host} should be reserved");
        }
    }

    #[test]
    fn ordinary_names_that_merely_contain_a_reserved_word_pass() {
        for host in [
            "localhost.example.com",
            "mylocalhost",
            "notlocal",
            "local.example.com",
            "internal.example.com",
            "metadata.example.com",
            "home.arpa.example.com",
            "xn--bcher-kva.de",
            "",
            ".",
        ] {
            assert_eq!(reserved(host), None, "{host} should pass");
        }
    }

    #[test]
    fn the_reason_names_the_rule() {
        assert_eq!(
            reserved("metadata.google.internal.").unwrap(),
            "metadata.google.internal (GCP metadata service)"
        );
        assert!(reserved("printer.local").unwrap().starts_with("*.local ("));
    }

    #[test]
    fn non_ascii_hosts_do_not_panic() {
        assert_eq!(reserved("ü.é"), None);
        assert_eq!(
            reserved("é.local")
                .as_deref()
                .map(|r| r.starts_with("*.local")),
            Some(true)
        );
        assert_eq!(reserved("éloca"), None);
    }
}
