//! IPv6 addresses that carry an IPv4 address inside them, and the IPv4 they carry.
//!
//! A packet to such an address may end up at the embedded IPv4 (a dual-stack socket, a
//! NAT64 gateway, a 6to4 relay, a Teredo server), so the policy checks the embedded IPv4
//! against the IPv4 table too and names it in the refusal (SPEC §4).
//!
//! Where the position of the IPv4 is ambiguous, every plausible position is returned
//! ("candidates"), and the caller refuses if any of them is denied:
//! - Teredo (RFC 4380 §4) carries two: the server in bits 32–63 and the client, obfuscated,
//!   in the last 32 bits (XOR 0xffff_ffff).
//! - The local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215) may be deployed as a /48, with
//!   the RFC 6052 §2.2 layout (bits 48–63 and 72–87), or carved into /96s (last 32 bits).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The kinds of IPv6 address that embed an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `::ffff:0:0/96` (RFC 4291 §2.5.5.2).
    Mapped,
    /// `::/96`, deprecated (RFC 4291 §2.5.5.1); `::` and `::1` excluded.
    Compatible,
    /// `::ffff:0:0:0/96` (RFC 2765 §2.1, SIIT).
    Translated,
    /// `64:ff9b::/96` (RFC 6052).
    Nat64,
    /// `64:ff9b:1::/48` (RFC 8215).
    Nat64Local,
    /// `2002::/16` (RFC 3056).
    SixToFour,
    /// `2001::/32` (RFC 4380).
    Teredo,
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Form::Mapped => "an IPv4-mapped address (::ffff:0:0/96, RFC 4291)",
            Form::Compatible => "a deprecated IPv4-compatible address (::/96, RFC 4291 §2.5.5.1)",
            Form::Translated => "an IPv4-translated address (::ffff:0:0:0/96, RFC 2765)",
            Form::Nat64 => "a NAT64 address (64:ff9b::/96, RFC 6052)",
            Form::Nat64Local => "a local-use NAT64 address (64:ff9b:1::/48, RFC 8215)",
            Form::SixToFour => "a 6to4 address (2002::/16, RFC 3056)",
            Form::Teredo => "a Teredo address (2001::/32, RFC 4380)",
        })
    }
}

/// One embedded IPv4 address and its role ("" when the form has only one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// `"server "`, `"client "`, `"(/48 layout) "` or `""`: a prefix for messages.
    pub role: &'static str,
    /// The IPv4 address found at that position.
    pub ipv4: Ipv4Addr,
}

/// An IPv6 address recognised as embedding IPv4, with its one or two candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded {
    /// Which kind of embedding.
    pub form: Form,
    first: Candidate,
    second: Option<Candidate>,
}

impl Embedded {
    fn one(form: Form, ipv4: Ipv4Addr) -> Self {
        let first = Candidate { role: "", ipv4 };
        Self {
            form,
            first,
            second: None,
        }
    }

    /// The primary candidate: the only one, the Teredo client, or the /96 NAT64 layout.
    pub fn primary(&self) -> Candidate {
        self.first
    }

    /// The embedded IPv4 candidates, the primary one first.
    pub fn candidates(&self) -> impl Iterator<Item = Candidate> + '_ {
        std::iter::once(self.first).chain(self.second)
    }
}

/// Recognises `ip` as one of the embedding forms and extracts the IPv4 it carries.
pub fn find(ip: Ipv6Addr) -> Option<Embedded> {
    let s = ip.segments();
    let last32 = ipv4_at(&ip, 12);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(Embedded::one(Form::Mapped, last32)),
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(Embedded::one(Form::Translated, last32)),
        // `::` and `::1` have registry entries of their own, with better names.
        [0, 0, 0, 0, 0, 0, 0, 0..=1] => None,
        [0, 0, 0, 0, 0, 0, _, _] => Some(Embedded::one(Form::Compatible, last32)),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(Embedded::one(Form::Nat64, last32)),
        [0x64, 0xff9b, 1, ..] => Some(nat64_local(&ip)),
        [0x2002, ..] => Some(Embedded::one(Form::SixToFour, ipv4_at(&ip, 2))),
        [0x2001, 0, ..] => Some(teredo(&ip)),
        _ => None,
    }
}

/// The four octets of `ip` starting at octet `at`, as an IPv4 address.
fn ipv4_at(ip: &Ipv6Addr, at: usize) -> Ipv4Addr {
    let o = ip.octets();
    Ipv4Addr::new(o[at], o[at + 1], o[at + 2], o[at + 3])
}

fn nat64_local(ip: &Ipv6Addr) -> Embedded {
    let o = ip.octets();
    // RFC 6052 §2.2, /48 prefix: IPv4 octets 1–2 in bits 48–63, bits 64–71 ("u") zero,
    // octets 3–4 in bits 72–87.
    let layout48 = Ipv4Addr::new(o[6], o[7], o[9], o[10]);
    Embedded {
        form: Form::Nat64Local,
        first: Candidate {
            role: "",
            ipv4: ipv4_at(ip, 12),
        },
        second: Some(Candidate {
            role: "(/48 layout) ",
            ipv4: layout48,
        }),
    }
}

fn teredo(ip: &Ipv6Addr) -> Embedded {
    let client = Ipv4Addr::from(u32::from(ipv4_at(ip, 12)) ^ 0xffff_ffff);
    Embedded {
        form: Form::Teredo,
        first: Candidate {
            role: "client ",
            ipv4: client,
        },
        second: Some(Candidate {
            role: "server ",
            ipv4: ipv4_at(ip, 4),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(s: &str) -> Option<(Form, Vec<String>)> {
        let e = find(s.parse().unwrap())?;
        let c = e.candidates().map(|c| format!("{}{}", c.role, c.ipv4));
        Some((e.form, c.collect()))
    }

    fn one(form: Form, v4: &str) -> Option<(Form, Vec<String>)> {
        Some((form, vec![v4.to_string()]))
    }

    #[test]
    fn each_form_yields_its_ipv4() {
        assert_eq!(found("::ffff:127.0.0.1"), one(Form::Mapped, "127.0.0.1"));
        assert_eq!(found("::ffff:0:a00:1"), one(Form::Translated, "10.0.0.1"));
        assert_eq!(found("::127.0.0.1"), one(Form::Compatible, "127.0.0.1"));
        assert_eq!(found("::2"), one(Form::Compatible, "0.0.0.2"));
        assert_eq!(found("64:ff9b::127.0.0.1"), one(Form::Nat64, "127.0.0.1"));
        assert_eq!(found("2002:7f00:1::"), one(Form::SixToFour, "127.0.0.1"));
        assert_eq!(
            found("2002:c0a8:101:5::9"),
            one(Form::SixToFour, "192.168.1.1")
        );
    }

    #[test]
    fn loopback_and_unspecified_are_not_embeddings() {
        assert_eq!(found("::"), None);
        assert_eq!(found("::1"), None);
        assert_eq!(found("2001:4860:4860::8888"), None);
        assert_eq!(found("64:ff9b:0:1::7f00:1"), None); // outside both NAT64 prefixes
    }

    #[test]
    fn teredo_yields_client_and_server() {
        // RFC 4380 §4 example: server 65.54.227.120, client 192.0.2.45 (obfuscated).
        let (form, c) = found("2001:0:4136:e378:8000:63bf:3fff:fdd2").unwrap();
        assert_eq!(form, Form::Teredo);
        assert_eq!(c, ["client 192.0.2.45", "server 65.54.227.120"]);
    }

    #[test]
    fn local_use_nat64_yields_both_layouts() {
        let (form, c) = found("64:ff9b:1:a00:0:100:a00:1").unwrap();
        assert_eq!(form, Form::Nat64Local);
        assert_eq!(c, ["10.0.0.1", "(/48 layout) 10.0.0.1"]);
    }
}
