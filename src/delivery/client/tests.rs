//! The client against real axum receivers, raw hostile receivers and a DNS server of our
//! own, all on loopback, with the callback policy on and only loopback ranges opened: no
//! test sends a packet beyond 127.0.0.0/8. The receivers, clients and deliveries they
//! share are here; the tests themselves are in `tests/`, one file per topic.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;

use super::*;
use crate::delivery::Verdict;

use crate::ssrf::test_dns::DnsServer;

/// The integration suite's hostile receivers, shared source.
#[path = "../../../tests/api/helpers/hostile.rs"]
mod hostile;
use hostile::{HostileReceiver, Misbehaviour};

/// What a receiver's answer, or its absence, makes of an attempt.
mod answers;
/// Names resolved through DNS.
mod dns;
/// Receivers that misbehave on purpose: endless headers, stalled handshakes, huge bodies.
mod misbehaving;
/// The callback policy at connect time.
mod policy;
/// Signatures and headers of a delivery.
mod signing;

const BODY: &str = r#"{"request_id":"r-1","status":"completed"}"#;
const ID: &str = "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// What a test receiver answers.
#[derive(Clone)]
enum Behaviour {
    /// This status, with these headers.
    Reply(u16, Vec<(&'static str, String)>),
    /// 200, after sleeping this long.
    Sleep(Duration),
    /// 200 and the first byte of the body at once; the rest five seconds later.
    StallBody,
}

/// One request a receiver got.
struct Hit {
    headers: HeaderMap,
    body: Bytes,
}

/// An axum receiver on 127.0.0.1, port 0, recording every request.
struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    async fn start(behaviour: Behaviour) -> Self {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let recorded = hits.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            recorded.lock().unwrap().push(Hit { headers, body });
            respond(behaviour.clone())
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hit_count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}

async fn respond(behaviour: Behaviour) -> Response {
    match behaviour {
        Behaviour::Reply(code, headers) => {
            let mut response = StatusCode::from_u16(code).unwrap().into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Behaviour::Sleep(pause) => {
            tokio::time::sleep(pause).await;
            StatusCode::OK.into_response()
        }
        Behaviour::StallBody => {
            let first = futures::stream::once(async { Ok::<_, Infallible>(Bytes::from("{")) });
            let rest = futures::stream::once(async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(Bytes::from("}"))
            });
            Response::new(Body::from_stream(first.chain(rest)))
        }
    }
}

/// A bare TCP listener on 127.0.0.1 that only counts the connections it accepts.
async fn connection_counter() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, count)
}

fn loopback_policy() -> Arc<CallbackPolicy> {
    Arc::new(CallbackPolicy::new(
        vec!["127.0.0.0/8".parse().unwrap()],
        vec![],
    ))
}

/// The secret [`delivery`] signs with.
static SECRET: std::sync::LazyLock<SigningSecret> =
    std::sync::LazyLock::new(SigningSecret::generate);

/// A client whose DNS lookups go to port 9 of loopback, where nothing answers: the tests
/// that use it name their receivers by address or by pin.
fn client(policy: Arc<CallbackPolicy>, timeout: Duration) -> (CallbackClient, SigningSecret) {
    client_with_dns(policy, timeout, "127.0.0.1:9".parse().unwrap())
}

fn client_with_dns(
    policy: Arc<CallbackPolicy>,
    timeout: Duration,
    dns: SocketAddr,
) -> (CallbackClient, SigningSecret) {
    let dns = DnsServers::At(dns);
    let client = CallbackClient::new(policy, timeout, dns).unwrap();
    (client, SECRET.clone())
}

fn delivery(url: &str) -> Delivery<'_> {
    Delivery {
        url,
        webhook_id: ID,
        body: BODY,
        traceparent: TRACEPARENT,
        secrets: std::slice::from_ref(&*SECRET),
    }
}

/// The header `name` of a request a receiver got; the test fails if it is missing.
fn header<'a>(hit: &'a Hit, name: &str) -> &'a str {
    hit.headers
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

/// The timeout of the tests that wait for an attempt to run out of time.
const SHORT: Duration = Duration::from_millis(400);
/// Scheduling slack on a shared 2-core machine.
const SLACK: Duration = Duration::from_millis(600);

/// The attempt failed by running out of its `SHORT` timeout, and took about that long.
fn assert_timed_out(outcome: &AttemptOutcome) {
    assert_eq!(outcome.verdict, Verdict::Retry { retry_after: None });
    assert_eq!(outcome.status_code, None, "{outcome:?}");
    assert_eq!(outcome.error.as_deref(), Some("timeout after 400 ms"));
    assert!(outcome.duration >= SHORT, "{outcome:?}");
    assert!(outcome.duration < SHORT + SLACK, "{outcome:?}");
}
