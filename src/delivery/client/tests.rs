//! The client against real axum receivers, raw hostile receivers and a DNS server of our
//! own, all on loopback, with the callback policy on and only loopback ranges opened: no
//! test sends a packet beyond 127.0.0.0/8.

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

#[tokio::test]
async fn a_delivery_with_several_secrets_carries_a_signature_for_each_newest_first() {
    let receiver = Receiver::start(Behaviour::Reply(200, vec![])).await;
    let (client, _) = client(loopback_policy(), Duration::from_secs(5));
    let (new, old) = (SigningSecret::generate(), SigningSecret::generate());
    let secrets = [new.clone(), old.clone()];
    let url = receiver.url("/");
    let outcome = client
        .attempt(Delivery {
            secrets: &secrets,
            ..delivery(&url)
        })
        .await;
    assert_eq!(outcome.verdict, Verdict::Delivered);
    let hits = receiver.hits.lock().unwrap();
    let signature = header(&hits[0], "webhook-signature");
    let timestamp: i64 = header(&hits[0], "webhook-timestamp").parse().unwrap();
    let entries: Vec<&str> = signature.split(' ').collect();
    assert_eq!(entries.len(), 2, "{signature}");
    assert!(new.verify(ID, timestamp, BODY.as_bytes(), entries[0]));
    assert!(old.verify(ID, timestamp, BODY.as_bytes(), entries[1]));
}

#[tokio::test]
async fn a_delivery_without_a_secret_fails_without_sending() {
    let receiver = Receiver::start(Behaviour::Reply(200, vec![])).await;
    let (client, _) = client(loopback_policy(), Duration::from_secs(5));
    let url = receiver.url("/");
    let outcome = client
        .attempt(Delivery {
            secrets: &[],
            ..delivery(&url)
        })
        .await;
    assert!(
        matches!(outcome.verdict, Verdict::Retry { .. }),
        "{outcome:?}"
    );
    assert!(receiver.hits.lock().unwrap().is_empty());
}

fn header<'a>(hit: &'a Hit, name: &str) -> &'a str {
    hit.headers
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn a_2xx_is_delivered_signed_with_every_header() {
    let receiver = Receiver::start(Behaviour::Reply(204, vec![])).await;
    let (client, secret) = client(loopback_policy(), Duration::from_secs(5));
    let url = receiver.url("/hook?token=abc");
    let outcome = client.attempt(delivery(&url)).await;

    assert_eq!(outcome.verdict, Verdict::Delivered);
    assert_eq!((outcome.status_code, outcome.error), (Some(204), None));
    let hits = receiver.hits.lock().unwrap();
    let [hit] = hits.as_slice() else {
        panic!("expected one hit, got {}", hits.len())
    };
    assert_eq!(hit.body, BODY.as_bytes());
    assert_eq!(header(hit, "content-type"), "application/json");
    assert_eq!(
        header(hit, "user-agent"),
        concat!("consuma/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(header(hit, "webhook-id"), ID);
    assert_eq!(header(hit, "x-request-id"), ID);
    assert_eq!(header(hit, "traceparent"), TRACEPARENT);
    let timestamp: i64 = header(hit, "webhook-timestamp").parse().unwrap();
    assert_eq!(timestamp, outcome.started_at.timestamp());
    let signature = header(hit, "webhook-signature");
    assert!(secret.verify(ID, timestamp, BODY.as_bytes(), signature));
}

#[tokio::test]
async fn a_delivery_does_not_wait_for_the_response_body() {
    let receiver = Receiver::start(Behaviour::StallBody).await;
    let (client, _) = client(loopback_policy(), Duration::from_millis(500));
    let outcome = client.attempt(delivery(&receiver.url("/"))).await;
    assert_eq!(outcome.verdict, Verdict::Delivered);
    assert!(outcome.duration < Duration::from_millis(500), "{outcome:?}");
}

#[tokio::test]
async fn a_redirect_is_a_failed_attempt_and_is_not_followed() {
    let target = Receiver::start(Behaviour::Reply(200, vec![])).await;
    let location = vec![("location", target.url("/elsewhere"))];
    let redirector = Receiver::start(Behaviour::Reply(302, location)).await;
    let (client, _) = client(loopback_policy(), Duration::from_secs(5));
    let outcome = client.attempt(delivery(&redirector.url("/"))).await;

    assert_eq!(outcome.verdict, Verdict::Retry { retry_after: None });
    assert_eq!(outcome.status_code, Some(302));
    assert_eq!(outcome.error.as_deref(), Some("redirect 302 not followed"));
    assert_eq!(redirector.hit_count(), 1);
    assert_eq!(
        target.hit_count(),
        0,
        "the redirect target was never called"
    );
}

#[tokio::test]
async fn a_slow_receiver_times_out_and_is_retried() {
    let receiver = Receiver::start(Behaviour::Sleep(Duration::from_secs(3))).await;
    let (client, _) = client(loopback_policy(), Duration::from_millis(200));
    let outcome = client.attempt(delivery(&receiver.url("/"))).await;

    assert_eq!(outcome.verdict, Verdict::Retry { retry_after: None });
    assert_eq!(outcome.status_code, None);
    assert_eq!(outcome.error.as_deref(), Some("timeout after 200 ms"));
    assert!(
        outcome.duration >= Duration::from_millis(200),
        "{outcome:?}"
    );
    assert!(outcome.duration < Duration::from_secs(2), "{outcome:?}");
}

#[tokio::test]
async fn a_503_with_retry_after_asks_for_that_delay() {
    let headers = vec![("retry-after", "7".to_owned())];
    let receiver = Receiver::start(Behaviour::Reply(503, headers)).await;
    let (client, _) = client(loopback_policy(), Duration::from_secs(5));
    let outcome = client.attempt(delivery(&receiver.url("/"))).await;

    let seven = Some(Duration::from_secs(7));
    assert_eq!(outcome.verdict, Verdict::Retry { retry_after: seven });
    assert_eq!(outcome.status_code, Some(503));
    assert_eq!(outcome.error.as_deref(), Some("HTTP 503"));
}

#[tokio::test]
async fn a_retry_after_on_another_status_is_ignored() {
    let headers = vec![("retry-after", "7".to_owned())];
    let receiver = Receiver::start(Behaviour::Reply(500, headers)).await;
    let (client, _) = client(loopback_policy(), Duration::from_secs(5));
    let outcome = client.attempt(delivery(&receiver.url("/"))).await;
    assert_eq!(outcome.verdict, Verdict::Retry { retry_after: None });
    assert_eq!(outcome.error.as_deref(), Some("HTTP 500"));
}

#[tokio::test]
async fn a_name_pinned_to_a_denied_address_is_refused_without_connecting() {
    let (addr, connections) = connection_counter().await;
    let policy = CallbackPolicy::new(
        vec!["127.0.0.2/32".parse().unwrap()],
        vec![("pinned.test".to_owned(), addr.ip())],
    );
    let (client, _) = client(Arc::new(policy), Duration::from_secs(5));
    let url = format!("http://pinned.test:{}/hook", addr.port());
    let outcome = client.attempt(delivery(&url)).await;

    assert_eq!(outcome.verdict, Verdict::Permanent, "{outcome:?}");
    assert_eq!(outcome.status_code, None);
    let error = outcome.error.unwrap();
    assert!(error.starts_with("refused by callback policy: "), "{error}");
    // The range, never the address the name resolved to (SPEC §16).
    assert!(error.contains("loopback 127.0.0.0/8"), "{error}");
    assert!(!error.contains("127.0.0.1"), "{error}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no connection was made"
    );
}

#[tokio::test]
async fn a_literal_address_outside_the_opened_ranges_is_refused_without_connecting() {
    let (addr, connections) = connection_counter().await;
    let policy = CallbackPolicy::new(vec!["127.0.0.2/32".parse().unwrap()], vec![]);
    let (client, _) = client(Arc::new(policy), Duration::from_secs(5));
    let url = format!("http://{addr}/hook");
    let outcome = client.attempt(delivery(&url)).await;

    assert_eq!(outcome.verdict, Verdict::Permanent, "{outcome:?}");
    let error = outcome.error.unwrap();
    assert!(error.starts_with("refused by callback policy: "), "{error}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no connection was made"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_with_a_readable_error() {
    // Bind, note the port, close: nothing listens there any more.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (client, _) = client(loopback_policy(), Duration::from_secs(5));
    let url = format!("http://{addr}/hook?token=secret");
    let outcome = client.attempt(delivery(&url)).await;

    assert_eq!(outcome.verdict, Verdict::Retry { retry_after: None });
    assert_eq!(outcome.status_code, None);
    let error = outcome.error.unwrap();
    assert!(error.starts_with("connect error: "), "{error}");
    assert!(
        !error.contains("token"),
        "the URL stays out of the error: {error}"
    );
}

#[tokio::test]
async fn every_attempt_has_a_fresh_timestamp_and_signature_for_the_same_body() {
    let receiver = Receiver::start(Behaviour::Reply(200, vec![])).await;
    let (client, secret) = client(loopback_policy(), Duration::from_secs(5));
    let url = receiver.url("/");
    client.attempt(delivery(&url)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.attempt(delivery(&url)).await;

    let hits = receiver.hits.lock().unwrap();
    assert_eq!(hits.len(), 2);
    let stamps: Vec<&str> = hits
        .iter()
        .map(|h| header(h, "webhook-timestamp"))
        .collect();
    assert_ne!(stamps[0], stamps[1]);
    assert_ne!(
        header(&hits[0], "webhook-signature"),
        header(&hits[1], "webhook-signature")
    );
    for hit in hits.iter() {
        assert_eq!(hit.body, hits[0].body);
        assert_eq!(header(hit, "webhook-id"), ID);
        let ts = header(hit, "webhook-timestamp").parse().unwrap();
        assert!(secret.verify(ID, ts, &hit.body, header(hit, "webhook-signature")));
    }
}

#[tokio::test]
async fn a_tls_failure_is_retried_not_a_panic() {
    // A plain-HTTP receiver spoken to over https: the rustls handshake (ring provider)
    // runs and fails.
    let receiver = Receiver::start(Behaviour::Reply(200, vec![])).await;
    let (client, _) = client(loopback_policy(), Duration::from_secs(5));
    let url = format!("https://{}/hook", receiver.addr);
    let outcome = client.attempt(delivery(&url)).await;

    assert_eq!(outcome.verdict, Verdict::Retry { retry_after: None });
    assert_eq!(outcome.status_code, None);
    let error = outcome.error.unwrap();
    assert!(error.starts_with("connect error: "), "{error}");
}

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

#[tokio::test]
async fn a_name_resolved_through_dns_is_delivered_to_its_address() {
    let receiver = Receiver::start(Behaviour::Reply(204, vec![])).await;
    let dns = DnsServer::start("127.0.0.1", &[("hooks.dns.test", &["127.0.0.1"])]).await;
    let (client, _) = client_with_dns(loopback_policy(), SHORT, dns.addr);
    let url = format!("http://hooks.dns.test:{}/hook", receiver.addr.port());
    let outcome = client.attempt(delivery(&url)).await;
    assert_eq!(outcome.verdict, Verdict::Delivered, "{outcome:?}");
    assert_eq!(receiver.hit_count(), 1);
}

#[tokio::test]
async fn a_dns_server_that_never_answers_costs_one_attempt_ending_at_the_timeout() {
    let dns = DnsServer::silent("127.0.0.1").await;
    let (client, _) = client_with_dns(loopback_policy(), SHORT, dns.addr);
    let outcome = client
        .attempt(delivery("http://never.dns.test:9/hook"))
        .await;
    assert_timed_out(&outcome);
    assert!(dns.questions() > 0, "the lookup went to the silent server");
}

#[tokio::test]
async fn an_unknown_name_is_a_dns_error_to_retry_not_a_refusal() {
    let dns = DnsServer::start("127.0.0.1", &[]).await;
    let (client, _) = client_with_dns(loopback_policy(), Duration::from_secs(5), dns.addr);
    let outcome = client
        .attempt(delivery("http://nowhere.dns.test:9/hook?token=secret"))
        .await;
    assert_eq!(outcome.verdict, Verdict::Retry { retry_after: None });
    let error = outcome.error.unwrap();
    assert!(error.starts_with("dns error: "), "{error}");
    assert_eq!(
        error,
        r#"dns error: looking up "nowhere.dns.test" failed: no such name (NXDOMAIN)"#
    );
    assert!(!error.contains("token"), "{error}");
}

#[tokio::test]
async fn a_dns_answer_with_one_denied_address_is_refused_without_connecting() {
    let (addr, connections) = connection_counter().await;
    let dns = DnsServer::start(
        "127.0.0.1",
        &[("mixed.dns.test", &["127.0.0.2", "127.0.0.1"])],
    )
    .await;
    let policy = CallbackPolicy::new(vec!["127.0.0.2/32".parse().unwrap()], vec![]);
    let (client, _) = client_with_dns(Arc::new(policy), Duration::from_secs(5), dns.addr);
    let url = format!("http://mixed.dns.test:{}/hook", addr.port());
    let outcome = client.attempt(delivery(&url)).await;
    assert_eq!(outcome.verdict, Verdict::Permanent, "{outcome:?}");
    let error = outcome.error.unwrap();
    assert!(
        error.contains("loopback 127.0.0.0/8") && !error.contains("127.0.0.1"),
        "{error}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn headers_that_never_end_time_out() {
    let receiver = HostileReceiver::start("127.0.0.1", Misbehaviour::EndlessHeaders).await;
    let (client, _) = client(loopback_policy(), SHORT);
    let outcome = client.attempt(delivery(&receiver.url("http", "/"))).await;
    assert_timed_out(&outcome);
    receiver.wait_closed(1, SLACK).await;
}

#[tokio::test]
async fn a_tls_handshake_that_never_ends_times_out() {
    let receiver = HostileReceiver::start("127.0.0.1", Misbehaviour::Silent).await;
    let (client, _) = client(loopback_policy(), SHORT);
    let outcome = client.attempt(delivery(&receiver.url("https", "/"))).await;
    assert_timed_out(&outcome);
    receiver.wait_closed(1, SLACK).await;
}

#[tokio::test]
async fn a_huge_body_is_not_read_past_its_first_64_kib() {
    let receiver = HostileReceiver::start("127.0.0.1", Misbehaviour::HugeBody).await;
    let (client, _) = client(loopback_policy(), Duration::from_secs(30));
    let outcome = client.attempt(delivery(&receiver.url("http", "/"))).await;
    assert_eq!(outcome.verdict, Verdict::Delivered, "{outcome:?}");
    // Dropped after 64 KiB, long before the 30 s deadline (or the 1 GiB end).
    let lived = receiver.wait_closed(1, Duration::from_secs(5)).await;
    assert!(lived[0] < Duration::from_secs(5), "{lived:?}");
}

#[tokio::test]
async fn a_body_that_never_ends_is_not_waited_for() {
    let receiver = HostileReceiver::start("127.0.0.1", Misbehaviour::EndlessBody).await;
    let (client, _) = client(loopback_policy(), Duration::from_secs(30));
    let outcome = client.attempt(delivery(&receiver.url("http", "/"))).await;
    assert_eq!(outcome.verdict, Verdict::Delivered, "{outcome:?}");
    assert!(outcome.duration < Duration::from_secs(1), "{outcome:?}");
    // 64 KiB at 1 KiB per 5 ms: dropped after about a third of a second.
    let lived = receiver.wait_closed(1, Duration::from_secs(5)).await;
    assert!(lived[0] < Duration::from_secs(5), "{lived:?}");
}

#[tokio::test]
async fn a_stalled_body_is_dropped_at_the_attempts_deadline() {
    let receiver = HostileReceiver::start("127.0.0.1", Misbehaviour::StalledBody).await;
    let (client, _) = client(loopback_policy(), SHORT);
    let outcome = client.attempt(delivery(&receiver.url("http", "/"))).await;
    assert_eq!(outcome.verdict, Verdict::Delivered, "{outcome:?}");
    assert!(outcome.duration < SHORT, "{outcome:?}");
    let lived = receiver.wait_closed(1, SHORT + SLACK).await;
    assert!(lived[0] >= SHORT - Duration::from_millis(50), "{lived:?}");
}

#[tokio::test]
async fn a_small_body_is_read_so_the_connection_is_reused() {
    let receiver = HostileReceiver::start("127.0.0.1", Misbehaviour::BodyAfterHead(60_000)).await;
    let (client, _) = client(loopback_policy(), Duration::from_secs(5));
    let url = receiver.url("http", "/");
    for _ in 0..3 {
        let outcome = client.attempt(delivery(&url)).await;
        assert_eq!(outcome.verdict, Verdict::Delivered, "{outcome:?}");
        // The body comes 50 ms after the head: let the reading task finish it.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(receiver.requests(), 3);
    assert_eq!(receiver.connections(), 1, "one keep-alive connection");
}

#[tokio::test]
async fn a_body_over_64_kib_costs_the_connection() {
    let receiver =
        HostileReceiver::start("127.0.0.1", Misbehaviour::BodyAfterHead(1_000_000)).await;
    let (client, _) = client(loopback_policy(), Duration::from_secs(5));
    let url = receiver.url("http", "/");
    for _ in 0..2 {
        let outcome = client.attempt(delivery(&url)).await;
        assert_eq!(outcome.verdict, Verdict::Delivered, "{outcome:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        receiver.connections(),
        2,
        "the first was dropped, not reused"
    );
}
