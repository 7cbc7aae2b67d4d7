//! Callback receivers that misbehave on purpose (SPEC §9 "Faults"), on raw TCP so that
//! they can break HTTP in ways a framework would not allow: a huge body, a body that never
//! ends, headers that never end, a TLS handshake that never starts. Each records how long
//! its connections lived, so a test can tell when the sender dropped them.
//!
//! Also compiled into the library's unit tests (`src/delivery/client/tests.rs`), so it
//! depends on tokio only.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a [`HostileReceiver`] does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// `200 OK` announcing a 1 GiB body, then zeros as fast as the peer takes them.
    HugeBody,
    /// `200 OK`, chunked, then a 1 KiB chunk every 5 ms, forever.
    EndlessBody,
    /// `200 OK` and the first bytes of a 1 KiB body, then nothing, forever.
    StalledBody,
    /// A status line, then one more header line every 20 ms, forever.
    EndlessHeaders,
    /// Accepts the connection and never sends a byte: on an `https://` URL, the TLS
    /// handshake never ends.
    Silent,
    /// `200 OK` with a body of this many bytes, sent 50 ms after the head, and ready for
    /// the next request on the same connection (a well-behaved keep-alive receiver).
    BodyAfterHead(usize),
}

/// A receiver on a loopback address; stops accepting when dropped.
pub struct HostileReceiver {
    pub addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    lifetimes: Arc<Mutex<Vec<Duration>>>,
    closed: Arc<tokio::sync::watch::Sender<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What every connection task shares with the receiver.
#[derive(Clone)]
struct Counters {
    requests: Arc<AtomicUsize>,
    lifetimes: Arc<Mutex<Vec<Duration>>>,
    /// How many connections the peer closed: waiters wake on each one.
    closed: Arc<tokio::sync::watch::Sender<usize>>,
}

impl HostileReceiver {
    /// A receiver on `ip` (a loopback address), port 0.
    pub async fn start(ip: &str, how: Misbehaviour) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counters = Counters {
            requests: Arc::default(),
            lifetimes: Arc::default(),
            closed: Arc::new(tokio::sync::watch::Sender::new(0)),
        };
        let (accepted, shared) = (connections.clone(), counters.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handle(stream, how, shared.clone()));
            }
        });
        Self {
            addr,
            connections,
            requests: counters.requests,
            lifetimes: counters.lifetimes,
            closed: counters.closed,
            task,
        }
    }

    /// `scheme://addr/path`.
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Request heads read so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// How long each connection that the peer closed lived, from accept to close.
    pub fn lifetimes(&self) -> Vec<Duration> {
        self.lifetimes.lock().unwrap().clone()
    }

    /// Waits until `n` connections were closed by the peer (woken by each close), or
    /// panics after `within`.
    pub async fn wait_closed(&self, n: usize, within: Duration) -> Vec<Duration> {
        let mut closes = self.closed.subscribe();
        let reached = tokio::time::timeout(within, closes.wait_for(|count| *count >= n)).await;
        let lifetimes = self.lifetimes();
        assert!(
            matches!(reached, Ok(Ok(_))),
            "{n} connections should have been closed, {} were ({} accepted)",
            lifetimes.len(),
            self.connections()
        );
        lifetimes
    }
}

async fn handle(mut stream: TcpStream, how: Misbehaviour, counters: Counters) {
    let accepted = Instant::now();
    let _ = misbehave(&mut stream, how, &counters.requests).await;
    // Every way out of `misbehave` is the peer going away (or breaking the protocol).
    counters.lifetimes.lock().unwrap().push(accepted.elapsed());
    counters.closed.send_modify(|count| *count += 1);
}

async fn misbehave(
    stream: &mut TcpStream,
    how: Misbehaviour,
    requests: &AtomicUsize,
) -> std::io::Result<()> {
    if how == Misbehaviour::Silent {
        return drain_until_closed(stream).await;
    }
    loop {
        read_request(stream).await?;
        requests.fetch_add(1, Ordering::SeqCst);
        match how {
            Misbehaviour::HugeBody => {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
                    .await?;
                let zeros = [0u8; 16 * 1024];
                loop {
                    stream.write_all(&zeros).await?;
                }
            }
            Misbehaviour::EndlessBody => {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await?;
                let chunk = [b"400\r\n".as_slice(), &[b'x'; 1024], b"\r\n"].concat();
                loop {
                    stream.write_all(&chunk).await?;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Misbehaviour::StalledBody => {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n{\"ok\"")
                    .await?;
                return drain_until_closed(stream).await;
            }
            Misbehaviour::EndlessHeaders => {
                stream.write_all(b"HTTP/1.1 200 OK\r\n").await?;
                for n in 0u64.. {
                    let line = format!("x-pad-{n}: {}\r\n", "y".repeat(32));
                    stream.write_all(line.as_bytes()).await?;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Misbehaviour::BodyAfterHead(len) => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
                stream.write_all(head.as_bytes()).await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
                stream.write_all(&vec![b'x'; len]).await?;
            }
            Misbehaviour::Silent => unreachable!("handled above"),
        }
    }
}

/// Reads one request: its head, then as many body bytes as its `Content-Length` says.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Ok(())
}

/// Reads and discards until the peer closes the connection.
async fn drain_until_closed(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    while stream.read(&mut buf).await? > 0 {}
    Ok(())
}
