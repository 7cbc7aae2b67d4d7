//! The deny tables: every entry of the IANA IPv4 and IPv6 Special-Purpose Address
//! Registries (RFC 6890 and its updates), plus the few ranges SPEC §4 names that live in
//! other registries (multicast), plus a short list of extras that are not special-purpose
//! but are never a legitimate callback receiver.
//!
//! Invariants (checked by the tests below):
//! - an entry never appears after a broader entry that contains it, so the first match is
//!   the most specific one and the refusal names the narrowest range;
//! - every entry is written in its truncated form (`10.0.0.0/8`, not `10.1.2.3/8`).
//!
//! This module only answers "which special-purpose range holds this address?". Whether an
//! address is refused (opened ranges, embedded IPv4) is decided in `super::check_ip`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// One special-purpose range: where it is, what IANA calls it, and which RFC defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Special<N> {
    /// The address block.
    pub net: N,
    /// The registry's name for it, in lower case.
    pub name: &'static str,
    /// The defining document, e.g. `RFC 1918`.
    pub rfc: &'static str,
}

impl<N: fmt::Display> fmt::Display for Special<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.name, self.net, self.rfc)
    }
}

const fn v4(a: [u8; 4], len: u8, name: &'static str, rfc: &'static str) -> Special<Ipv4Net> {
    let addr = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
    Special {
        net: Ipv4Net::new_assert(addr, len),
        name,
        rfc,
    }
}

const fn v6(s: [u16; 8], len: u8, name: &'static str, rfc: &'static str) -> Special<Ipv6Net> {
    let addr = Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
    Special {
        net: Ipv6Net::new_assert(addr, len),
        name,
        rfc,
    }
}

/// IPv4 deny table, most specific entries first.
#[rustfmt::skip]
pub const SPECIAL_V4: &[Special<Ipv4Net>] = &[
    // IANA IPv4 Special-Purpose Address Registry.
    v4([0, 0, 0, 0], 32, "\"this host on this network\"", "RFC 1122 §3.2.1.3"),
    v4([0, 0, 0, 0], 8, "\"this network\"", "RFC 791 §3.2"),
    v4([10, 0, 0, 0], 8, "private-use", "RFC 1918"),
    v4([100, 64, 0, 0], 10, "shared address space (CGNAT)", "RFC 6598"),
    v4([127, 0, 0, 0], 8, "loopback", "RFC 1122 §3.2.1.3"),
    v4([169, 254, 0, 0], 16, "link-local", "RFC 3927"),
    v4([172, 16, 0, 0], 12, "private-use", "RFC 1918"),
    v4([192, 0, 0, 0], 29, "IPv4 service continuity prefix (DS-Lite)", "RFC 7335"),
    v4([192, 0, 0, 8], 32, "IPv4 dummy address", "RFC 7600"),
    v4([192, 0, 0, 9], 32, "Port Control Protocol anycast", "RFC 7723"),
    v4([192, 0, 0, 10], 32, "TURN anycast", "RFC 8155"),
    v4([192, 0, 0, 170], 32, "NAT64/DNS64 discovery", "RFC 8880, RFC 7050"),
    v4([192, 0, 0, 171], 32, "NAT64/DNS64 discovery", "RFC 8880, RFC 7050"),
    v4([192, 0, 0, 0], 24, "IETF protocol assignments", "RFC 6890 §2.1"),
    v4([192, 0, 2, 0], 24, "documentation (TEST-NET-1)", "RFC 5737"),
    v4([192, 31, 196, 0], 24, "AS112-v4", "RFC 7535"),
    v4([192, 52, 193, 0], 24, "AMT", "RFC 7450"),
    v4([192, 88, 99, 0], 24, "deprecated 6to4 relay anycast", "RFC 7526"),
    v4([192, 168, 0, 0], 16, "private-use", "RFC 1918"),
    v4([192, 175, 48, 0], 24, "direct delegation AS112 service", "RFC 7534"),
    v4([198, 18, 0, 0], 15, "benchmarking", "RFC 2544"),
    v4([198, 51, 100, 0], 24, "documentation (TEST-NET-2)", "RFC 5737"),
    v4([203, 0, 113, 0], 24, "documentation (TEST-NET-3)", "RFC 5737"),
    v4([255, 255, 255, 255], 32, "limited broadcast", "RFC 8190, RFC 919 §7"),
    v4([240, 0, 0, 0], 4, "reserved", "RFC 1112 §4"),
    // IANA IPv4 Multicast Address Space Registry; SPEC §4 names multicast explicitly.
    v4([224, 0, 0, 0], 4, "multicast", "RFC 5771"),
    // Extra, not special-purpose: Azure's platform endpoint (WireServer, DNS, health
    // probes), reachable only from inside Azure and as sensitive as 169.254.169.254.
    v4([168, 63, 129, 16], 32, "Azure platform endpoint (WireServer)", "not IANA; cloud metadata"),
];

/// IPv6 deny table, most specific entries first. The embedded-IPv4 forms (::ffff:0:0/96,
/// 64:ff9b::/96, 2002::/16, 2001::/32, ...) are listed too, although `super::embedded`
/// recognises them first, so that this table alone still covers the whole registry.
#[rustfmt::skip]
pub const SPECIAL_V6: &[Special<Ipv6Net>] = &[
    // IANA IPv6 Special-Purpose Address Registry.
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback", "RFC 4291"),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified", "RFC 4291"),
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped", "RFC 4291"),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "IPv4/IPv6 translation (NAT64)", "RFC 6052"),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use IPv4/IPv6 translation", "RFC 8215"),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only", "RFC 6666"),
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "dummy IPv6 prefix", "RFC 9780"),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128, "Port Control Protocol anycast", "RFC 7723"),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128, "TURN anycast", "RFC 8155"),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 3], 128, "DNS-SD service registration anycast", "RFC 9665"),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking", "RFC 5180"),
    v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48, "AS112-v6", "RFC 7535"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo", "RFC 4380, RFC 8190"),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT", "RFC 7450"),
    v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, "deprecated ORCHID", "RFC 4843"),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2", "RFC 7343"),
    v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28, "drone remote ID entity tags (DETs)", "RFC 9374"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "IETF protocol assignments", "RFC 2928"),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation", "RFC 3849"),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4", "RFC 3056"),
    v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48, "direct delegation AS112 service", "RFC 7534"),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation", "RFC 9637"),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing (SRv6) SIDs", "RFC 9602"),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local", "RFC 4193, RFC 8190"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local unicast", "RFC 4291"),
    // IANA IPv6 Multicast Address Space Registry; SPEC §4 names multicast explicitly.
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast", "RFC 4291 §2.7"),
    // Extra, conservative: everything outside global unicast 2000::/3 is unassigned or
    // "reserved by IETF" in the IANA IPv6 Address Space registry (this includes the
    // deprecated site-local fec0::/10, RFC 3879). No public receiver lives there.
    v6([0, 0, 0, 0, 0, 0, 0, 0], 3, "outside global unicast 2000::/3 (IETF reserved)", "RFC 4291 §2.4"),
    v6([0x4000, 0, 0, 0, 0, 0, 0, 0], 2, "outside global unicast 2000::/3 (IETF reserved)", "RFC 4291 §2.4"),
    v6([0x8000, 0, 0, 0, 0, 0, 0, 0], 1, "outside global unicast 2000::/3 (IETF reserved)", "RFC 4291 §2.4"),
];

/// The most specific IPv4 special-purpose range holding `ip`, if any.
pub fn special_v4(ip: Ipv4Addr) -> Option<&'static Special<Ipv4Net>> {
    SPECIAL_V4.iter().find(|s| s.net.contains(&ip))
}

/// The most specific IPv6 special-purpose range holding `ip`, if any.
pub fn special_v6(ip: Ipv6Addr) -> Option<&'static Special<Ipv6Net>> {
    SPECIAL_V6.iter().find(|s| s.net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied_v4(s: &str) -> bool {
        special_v4(s.parse().unwrap()).is_some()
    }

    fn denied_v6(s: &str) -> bool {
        special_v6(s.parse().unwrap()).is_some()
    }

    #[test]
    fn no_entry_is_shadowed_by_an_earlier_broader_one() {
        for (j, later) in SPECIAL_V4.iter().enumerate() {
            for earlier in &SPECIAL_V4[..j] {
                assert!(
                    !earlier.net.contains(&later.net),
                    "{later} hidden by {earlier}"
                );
            }
        }
        for (j, later) in SPECIAL_V6.iter().enumerate() {
            for earlier in &SPECIAL_V6[..j] {
                assert!(
                    !earlier.net.contains(&later.net),
                    "{later} hidden by {earlier}"
                );
            }
        }
    }

    #[test]
    fn every_entry_is_written_truncated() {
        assert!(SPECIAL_V4.iter().all(|s| s.net == s.net.trunc()));
        assert!(SPECIAL_V6.iter().all(|s| s.net == s.net.trunc()));
    }

    /// (address, denied?) just inside and just outside each IPv4 range.
    #[rustfmt::skip]
    const V4_BOUNDARIES: &[(&str, bool)] = &[
        ("0.0.0.0", true), ("0.255.255.255", true), ("1.0.0.0", false),
        ("9.255.255.255", false), ("10.0.0.0", true), ("10.255.255.255", true), ("11.0.0.0", false),
        ("100.63.255.255", false), ("100.64.0.0", true), ("100.127.255.255", true), ("100.128.0.0", false),
        ("126.255.255.255", false), ("127.0.0.0", true), ("127.255.255.255", true), ("128.0.0.0", false),
        ("168.63.129.15", false), ("168.63.129.16", true), ("168.63.129.17", false),
        ("169.253.255.255", false), ("169.254.0.0", true), ("169.254.255.255", true), ("169.255.0.0", false),
        ("172.15.255.255", false), ("172.16.0.0", true), ("172.31.255.255", true), ("172.32.0.0", false),
        ("191.255.255.255", false), ("192.0.0.0", true), ("192.0.0.255", true), ("192.0.1.0", false),
        ("192.0.1.255", false), ("192.0.2.0", true), ("192.0.2.255", true), ("192.0.3.0", false),
        ("192.31.195.255", false), ("192.31.196.0", true), ("192.31.196.255", true), ("192.31.197.0", false),
        ("192.52.192.255", false), ("192.52.193.0", true), ("192.52.193.255", true), ("192.52.194.0", false),
        ("192.88.98.255", false), ("192.88.99.0", true), ("192.88.99.255", true), ("192.88.100.0", false),
        ("192.167.255.255", false), ("192.168.0.0", true), ("192.168.255.255", true), ("192.169.0.0", false),
        ("192.175.47.255", false), ("192.175.48.0", true), ("192.175.48.255", true), ("192.175.49.0", false),
        ("198.17.255.255", false), ("198.18.0.0", true), ("198.19.255.255", true), ("198.20.0.0", false),
        ("198.51.99.255", false), ("198.51.100.0", true), ("198.51.100.255", true), ("198.51.101.0", false),
        ("203.0.112.255", false), ("203.0.113.0", true), ("203.0.113.255", true), ("203.0.114.0", false),
        ("223.255.255.255", false), ("224.0.0.0", true), ("239.255.255.255", true),
        ("240.0.0.0", true), ("255.255.255.254", true), ("255.255.255.255", true),
        ("1.1.1.1", false), ("8.8.8.8", false),
    ];

    /// (address, denied?) just inside and just outside each IPv6 range.
    #[rustfmt::skip]
    const V6_BOUNDARIES: &[(&str, bool)] = &[
        ("::", true), ("::1", true), ("::2", true), ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
        ("2000::", false), ("2001::", true), ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", true),
        ("2001:200::", false), ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", false), ("2001:db8::", true),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true), ("2001:db9::", false),
        ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false), ("2002::", true),
        ("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true), ("2003::", false),
        ("2620:4f:7fff:ffff:ffff:ffff:ffff:ffff", false), ("2620:4f:8000::", true),
        ("2620:4f:8000:ffff:ffff:ffff:ffff:ffff", true), ("2620:4f:8001::", false),
        ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false), ("3fff::", true),
        ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", true), ("3fff:1000::", false),
        ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false), ("4000::", true), ("5f00::1", true),
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true), ("fc00::", true), ("fd00:ec2::254", true),
        ("fe80::1", true), ("fec0::1", true), ("ff02::1", true),
        ("2a00:1450:4001:82a::200e", false), ("2001:4860:4860::8888", false),
    ];

    #[test]
    fn ipv4_range_boundaries() {
        for &(addr, denied) in V4_BOUNDARIES {
            assert_eq!(denied_v4(addr), denied, "{addr}");
        }
    }

    #[test]
    fn ipv6_range_boundaries() {
        for &(addr, denied) in V6_BOUNDARIES {
            assert_eq!(denied_v6(addr), denied, "{addr}");
        }
    }

    #[test]
    fn the_most_specific_entry_names_the_address() {
        let named = |s: &str| special_v4(s.parse().unwrap()).unwrap().name;
        assert_eq!(named("192.0.0.9"), "Port Control Protocol anycast");
        assert_eq!(named("192.0.0.192"), "IETF protocol assignments");
        assert_eq!(named("255.255.255.255"), "limited broadcast");
        let named6 = |s: &str| special_v6(s.parse().unwrap()).unwrap().name;
        assert_eq!(named6("2001:0:4136:e378::1"), "Teredo");
        assert_eq!(named6("2001:1::2"), "TURN anycast");
        assert_eq!(named6("5f00::1"), "segment routing (SRv6) SIDs");
    }
}
