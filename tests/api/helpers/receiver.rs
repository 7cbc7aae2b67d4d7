//! A real HTTP callback receiver on loopback that records every hit and answers as the
//! test scripts it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("callback body is JSON")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn request_id(&self) -> String {
        self.json()["request_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// How to answer the n-th hit (0-based) for one request_id.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Shared {
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Script,
    /// Per request_id: deliveries in progress now, and the most ever at once. The key ""
    /// counts every delivery, whatever its request.
    in_progress: Arc<Mutex<HashMap<String, (usize, usize)>>>,
    /// How many hits arrived: waiters wake on each one instead of polling.
    arrived: Arc<tokio::sync::watch::Sender<usize>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    arrived: Arc<tokio::sync::watch::Sender<usize>>,
    in_progress: Arc<Mutex<HashMap<String, (usize, usize)>>>,
    task: tokio::task::JoinHandle<()>,
}

/// A receiver that accepts connections and never answers (a "black hole"): it reads
/// what it is sent and holds the connection until the sender gives up.
pub struct BlackHole {
    pub addr: SocketAddr,
    open: Arc<Mutex<(usize, usize, usize)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BlackHole {
    pub async fn start(ip: &str) -> Self {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("bind black hole");
        let addr = listener.local_addr().unwrap();
        let open: Arc<Mutex<(usize, usize, usize)>> = Arc::default();
        let counts = open.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counts = counts.clone();
                tokio::spawn(async move {
                    {
                        let mut c = counts.lock().unwrap();
                        c.0 += 1;
                        c.1 = c.1.max(c.0);
                        c.2 += 1;
                    }
                    let mut buf = [0u8; 4096];
                    while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
                    counts.lock().unwrap().0 -= 1;
                });
            }
        });
        Self { addr, open, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The most connections ever open at once.
    pub fn max_open(&self) -> usize {
        self.open.lock().unwrap().1
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.open.lock().unwrap().2
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A receiver on 127.0.0.1 that answers 200 to everything.
    pub async fn ok() -> Self {
        Self::scripted("127.0.0.1", |_| Reply::status(200)).await
    }

    /// A receiver on `ip` (a loopback address) answering hit n of each request with `script(n)`.
    pub async fn scripted(
        ip: &str,
        script: impl Fn(usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let in_progress = Arc::new(Mutex::new(HashMap::new()));
        let arrived = Arc::new(tokio::sync::watch::Sender::new(0));
        let shared = Shared {
            hits: hits.clone(),
            script: Arc::new(script),
            in_progress: in_progress.clone(),
            arrived: arrived.clone(),
        };
        let app = axum::Router::new().fallback(record).with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            hits,
            arrived,
            in_progress,
            task,
        }
    }

    /// The most deliveries of one request that were ever in progress at the same time.
    pub fn max_overlap(&self) -> usize {
        self.in_progress
            .lock()
            .unwrap()
            .iter()
            .filter(|(key, _)| !key.is_empty())
            .map(|(_, (_, max))| *max)
            .max()
            .unwrap_or(0)
    }

    /// The most deliveries, of any requests, that were ever in progress at once.
    pub fn max_concurrent(&self) -> usize {
        self.in_progress
            .lock()
            .unwrap()
            .get("")
            .map_or(0, |(_, max)| *max)
    }

    /// Forgets the most deliveries seen at once so far: [`Self::max_concurrent`] counts
    /// from the deliveries in progress now.
    pub fn reset_max_concurrent(&self) {
        if let Some((now, max)) = self.in_progress.lock().unwrap().get_mut("") {
            *max = *now;
        }
    }

    /// The callback URL for this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    pub fn hits_for(&self, request_id: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.request_id() == request_id)
            .collect()
    }

    /// Waits until at least `n` hits arrived (woken by each arrival), or panics after
    /// `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Hit> {
        let mut arrivals = self.arrived.subscribe();
        let reached = tokio::time::timeout(within, arrivals.wait_for(|count| *count >= n)).await;
        let hits = self.hits();
        assert!(
            matches!(reached, Ok(Ok(_))),
            "expected {n} callbacks, got {}",
            hits.len()
        );
        hits
    }

    /// Waits until a callback of `request_id` arrived (woken by each arrival), or panics
    /// after `within`; its hits.
    pub async fn wait_for_request(&self, request_id: &str, within: Duration) -> Vec<Hit> {
        let mut arrivals = self.arrived.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let hits = self.hits_for(request_id);
            if !hits.is_empty() {
                return hits;
            }
            let woken = tokio::time::timeout_at(deadline, arrivals.changed()).await;
            assert!(
                matches!(woken, Ok(Ok(()))),
                "no callback of {request_id} within {within:?}"
            );
        }
    }
}

async fn record(
    State(s): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hit = Hit {
        at: Instant::now(),
        path: uri.path().to_owned(),
        headers,
        body,
    };
    let rid = serde_json::from_slice::<Value>(&hit.body)
        .ok()
        .and_then(|v| v["request_id"].as_str().map(str::to_owned));
    let nth = {
        let mut hits = s.hits.lock().unwrap();
        let nth = hits
            .iter()
            .filter(|h| rid.is_some() && h.request_id() == rid.clone().unwrap_or_default())
            .count();
        hits.push(hit);
        nth
    };
    s.arrived.send_modify(|count| *count += 1);
    let reply = (s.script)(nth);
    let _in_progress = InProgress::enter(&s.in_progress, rid.unwrap_or_default());
    let _any = InProgress::enter(&s.in_progress, String::new());
    tokio::time::sleep(reply.delay).await;
    let mut response = StatusCode::from_u16(reply.status).unwrap().into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// Counts a delivery as in progress until dropped — also when the sender disconnects and
/// the handler is cancelled.
struct InProgress {
    map: Arc<Mutex<HashMap<String, (usize, usize)>>>,
    key: String,
}

impl InProgress {
    fn enter(map: &Arc<Mutex<HashMap<String, (usize, usize)>>>, key: String) -> Self {
        let mut progress = map.lock().unwrap();
        let (now, max) = progress.entry(key.clone()).or_default();
        *now += 1;
        *max = (*max).max(*now);
        Self {
            map: map.clone(),
            key,
        }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        if let Some((now, _)) = self.map.lock().unwrap().get_mut(&self.key) {
            *now -= 1;
        }
    }
}
