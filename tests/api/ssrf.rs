//! The callback policy over HTTP (SPEC §4): submit-time refusals, and delivery-time
//! vetting of resolved addresses. Nothing here is ever delivered outside loopback: the
//! `accept` cases run against an instance with `--workers 0`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::dns::DnsServer;
use crate::helpers::receiver::{Receiver, Reply};
use crate::helpers::{Backend, TestApp};

fn cases() -> Value {
    serde_json::from_str(include_str!("../data/ssrf_cases.json")).unwrap()
}

async fn every_reject_case_is_a_400_naming_the_reason(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for case in cases()["reject"].as_array().unwrap() {
        let url = case["url"].as_str().unwrap();
        let r = app
            .post_json("/async", &json!({"text": "x", "callback_url": url}))
            .await;
        assert_eq!(r.status(), 400, "{url} ({})", case["why"]);
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "/problems/callback-refused", "{url}");
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.len() > "callback_url refused: ".len(),
            "{url}: {detail}"
        );
    }
    // An embedded IPv4 is named.
    let r = app
        .post_json(
            "/async",
            &json!({"text": "x", "callback_url": "http://[64:ff9b::127.0.0.1]/"}),
        )
        .await;
    assert!(
        r.json::<Value>().await.unwrap()["detail"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1")
    );
    assert_eq!(
        app.get_json("/requests").await["total"],
        0,
        "refused requests are not records"
    );
}

async fn every_accept_case_is_acknowledged_by_an_accept_only_instance(backend: Backend) {
    let app = TestApp::builder(backend).arg("--workers", 0).spawn().await;
    for case in cases()["accept"].as_array().unwrap() {
        let url = case["url"].as_str().unwrap();
        let r = app
            .post_json("/async", &json!({"text": "x", "callback_url": url}))
            .await;
        assert_eq!(r.status(), 202, "{url} ({})", case["why"]);
    }
    let n = cases()["accept"].as_array().unwrap().len();
    assert_eq!(
        app.get_json("/requests?callback_status=pending").await["total"],
        n
    );
}

/// A TCP listener that only counts the connections it accepts.
async fn connection_counter(ip: &str) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, count)
}

async fn names_resolving_to_denied_addresses_are_refused_at_delivery(backend: Backend) {
    // Receivers live on 127.0.0.2, the only opened address; 127.0.0.1 stays denied. Names
    // are pinned, or answered by a DNS server of the test's own on loopback.
    let good = Receiver::scripted("127.0.0.2", |_| Reply::status(200)).await;
    let (port, connections) = connection_counter("127.0.0.1").await;
    let dns = DnsServer::start(
        "127.0.0.1",
        &[
            ("rebind.dns.test", &["127.0.0.1"]),
            ("mixed.dns.test", &["127.0.0.2", "127.0.0.1"]),
            ("dual.dns.test", &["127.0.0.2", "::1"]),
            ("good.dns.test", &["127.0.0.2"]),
        ],
    )
    .await;
    let app = TestApp::builder(backend)
        .arg("--allow-callback-cidr", "127.0.0.2/32")
        .arg("--callback-resolve", "rebind.test=127.0.0.1")
        .arg("--callback-resolve", "good.test=127.0.0.2")
        .arg("--callback-dns-server", dns.addr)
        .spawn()
        .await;
    // The reason names the refused range, never the address the name resolved to.
    for (host, denied) in [
        ("rebind.test", "loopback 127.0.0.0/8"),
        ("rebind.dns.test", "loopback 127.0.0.0/8"),
        ("mixed.dns.test", "loopback 127.0.0.0/8"),
        ("dual.dns.test", "loopback ::1/128"),
    ] {
        let url = format!("http://{host}:{port}/hook");
        let id = app.submit_async("x", &url).await;
        let record = app.wait_terminal(&id, Duration::from_secs(20)).await;
        assert_eq!(record["callback_status"], "failed", "{url}");
        assert_eq!(
            record["callback_attempts"], 1,
            "a refusal is permanent: {url}"
        );
        let reason = record["callback_last_error"].as_str().unwrap();
        assert!(
            reason.contains("refused") && reason.contains(denied),
            "{url}: {reason}"
        );
        assert!(!reason.contains("127.0.0.1"), "{url}: {reason}");
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no connection to a denied address"
    );
    for host in ["good.test", "good.dns.test"] {
        let url = format!("http://{host}:{}/hook", good.addr.port());
        let id = app.submit_async("x", &url).await;
        let record = app.wait_terminal(&id, Duration::from_secs(20)).await;
        assert_eq!(record["callback_status"], "sent", "{url}: {record}");
    }
    assert_eq!(good.hits().len(), 2);
    // A literal denied address is refused before it is even accepted.
    let r = app
        .post_json(
            "/async",
            &json!({"text": "x", "callback_url": format!("http://127.0.0.1:{port}/")}),
        )
        .await;
    assert_eq!(r.status(), 400);
}

async fn a_dns_server_that_never_answers_costs_one_attempt_each_time(backend: Backend) {
    let dns = DnsServer::silent("127.0.0.1").await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-dns-server", dns.addr)
        .arg("--callback-timeout-ms", 500)
        .arg("--callback-max-attempts", 2)
        .arg("--callback-base-delay-ms", 20)
        .spawn()
        .await;
    let id = app.submit_async("x", "http://silent.dns.test:9/hook").await;
    let record = app.wait_terminal(&id, Duration::from_secs(20)).await;
    assert_eq!(record["callback_status"], "failed");
    let attempts = record["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "a lookup failure is retried: {record}");
    for attempt in attempts {
        assert_eq!(attempt["error"], "timeout after 500 ms", "{attempt}");
        assert!(attempt["status_code"].is_null());
        let ms = attempt["duration_ms"].as_f64().unwrap();
        assert!((500.0..1500.0).contains(&ms), "{attempt}");
    }
    assert!(dns.questions() > 0);
    assert_eq!(app.get("/healthz").await.status(), 200);
}

async fn reserved_names_stay_refused_even_with_loopback_opened(backend: Backend) {
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--workers", 0)
        .spawn()
        .await;
    for url in [
        "http://localhost:8080/",
        "http://localhost.:8080/",
        "http://api.localhost/",
        "http://metadata/",
    ] {
        let r = app
            .post_json("/async", &json!({"text": "x", "callback_url": url}))
            .await;
        assert_eq!(r.status(), 400, "{url}");
    }
}

both_backends!(
    every_reject_case_is_a_400_naming_the_reason,
    every_accept_case_is_acknowledged_by_an_accept_only_instance,
    names_resolving_to_denied_addresses_are_refused_at_delivery,
    a_dns_server_that_never_answers_costs_one_attempt_each_time,
    reserved_names_stay_refused_even_with_loopback_opened,
);
