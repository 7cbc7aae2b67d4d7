//! A tiny DNS server on loopback UDP for delivery tests (`--callback-dns-server`): it
//! answers A and AAAA questions for the names a test gives it, NXDOMAIN for the rest, and
//! counts the questions it got. [`DnsServer::silent`] never answers at all.
//!
//! Enough of RFC 1035 for a stub resolver: one question per query, answers with a
//! compression pointer to the question's name, no EDNS in the reply. Also compiled into
//! the library's unit tests (`src/ssrf/resolver_tests.rs`), so it depends on tokio only.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const NXDOMAIN: u8 = 3;
const NOTIMP: u8 = 4;

/// Names (lower case, no trailing dot) and their addresses.
type Zone = Arc<Mutex<HashMap<String, Vec<IpAddr>>>>;

/// A DNS server on a loopback UDP port; it stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Zone,
    questions: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsServer {
    /// A server on `ip` (a loopback address), port 0, answering for `names`.
    pub async fn start(ip: &str, names: &[(&str, &[&str])]) -> Self {
        let socket = UdpSocket::bind((ip, 0)).await.expect("bind DNS server");
        let addr = socket.local_addr().unwrap();
        let zone: Zone = Arc::default();
        let questions = Arc::new(AtomicUsize::new(0));
        let server = Self {
            addr,
            zone: zone.clone(),
            questions: questions.clone(),
            task: tokio::spawn(serve(socket, zone, questions)),
        };
        for (name, ips) in names {
            server.set(name, ips);
        }
        server
    }

    /// A server that reads every query and never answers.
    pub async fn silent(ip: &str) -> Self {
        let socket = UdpSocket::bind((ip, 0)).await.expect("bind DNS server");
        let addr = socket.local_addr().unwrap();
        let questions = Arc::new(AtomicUsize::new(0));
        let counted = questions.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while socket.recv_from(&mut buf).await.is_ok() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self {
            addr,
            zone: Arc::default(),
            questions,
            task,
        }
    }

    /// Makes `name` resolve to `ips` (A for IPv4, AAAA for IPv6) from now on.
    pub fn set(&self, name: &str, ips: &[&str]) {
        let ips = ips.iter().map(|ip| ip.parse().expect("an IP")).collect();
        self.zone
            .lock()
            .unwrap()
            .insert(name.trim_end_matches('.').to_ascii_lowercase(), ips);
    }

    /// How many queries arrived so far.
    pub fn questions(&self) -> usize {
        self.questions.load(Ordering::SeqCst)
    }
}

async fn serve(socket: UdpSocket, zone: Zone, questions: Arc<AtomicUsize>) {
    let mut buf = [0u8; 1500];
    while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
        questions.fetch_add(1, Ordering::SeqCst);
        let reply = answer(&buf[..n], &zone.lock().unwrap());
        if let Some(reply) = reply {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

/// The reply to one query, or `None` for a packet too broken to answer.
fn answer(query: &[u8], zone: &HashMap<String, Vec<IpAddr>>) -> Option<Vec<u8>> {
    let (name, qtype, question_end) = question(query)?;
    let ips: Vec<&IpAddr> = match zone.get(&name) {
        Some(ips) => ips
            .iter()
            .filter(|ip| match qtype {
                TYPE_A => ip.is_ipv4(),
                TYPE_AAAA => ip.is_ipv6(),
                _ => false,
            })
            .collect(),
        None => Vec::new(),
    };
    let rcode = match (zone.contains_key(&name), qtype) {
        (false, _) => NXDOMAIN,
        (true, TYPE_A | TYPE_AAAA) => 0,
        (true, _) => NOTIMP,
    };
    let mut reply = Vec::with_capacity(512);
    reply.extend_from_slice(&query[..2]); // id
    reply.push(0x80 | (query[2] & 0x01)); // QR, opcode 0, RD copied
    reply.push(0x80 | rcode); // RA
    reply.extend_from_slice(&[0, 1]); // QDCOUNT
    reply.extend_from_slice(&(ips.len() as u16).to_be_bytes()); // ANCOUNT
    reply.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    reply.extend_from_slice(&query[12..question_end]);
    for ip in ips {
        reply.extend_from_slice(&[0xC0, 12]); // the question's name
        reply.extend_from_slice(&qtype.to_be_bytes());
        reply.extend_from_slice(&[0, 1, 0, 0, 0, 0]); // class IN, TTL 0
        match ip {
            IpAddr::V4(v4) => {
                reply.extend_from_slice(&[0, 4]);
                reply.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                reply.extend_from_slice(&[0, 16]);
                reply.extend_from_slice(&v6.octets());
            }
        }
    }
    Some(reply)
}

/// The first question: its name (lower case, dotted), type, and where it ends.
fn question(query: &[u8]) -> Option<(String, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        let label = query.get(at..at + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    query.get(at + 3)?; // QCLASS
    Some((labels.join("."), qtype, at + 4))
}
