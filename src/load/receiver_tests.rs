//! Tests of the callback book and the receiver over real loopback HTTP.

use super::*;
use crate::load::test_support::{KEY, http, sign, whsec};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_callback_after_its_ack_is_timed_from_the_send() {
    let book = CallbackBook::new(None);
    let sent = Instant::now();
    book.expect("a".into(), sent);
    book.arrive("a".into(), sent + ms(250), true);
    let c = book.counts();
    assert_eq!(
        (c.expected, c.received, c.duplicates, c.unmatched),
        (1, 1, 0, 0)
    );
    assert_eq!(c.latency.max() / 1000, 250);
}

#[test]
fn a_callback_before_its_ack_is_matched_when_the_ack_comes() {
    let book = CallbackBook::new(None);
    let sent = Instant::now();
    book.arrive("a".into(), sent + ms(40), false);
    assert_eq!(book.counts().unmatched, 1, "unmatched until acknowledged");
    book.expect("a".into(), sent);
    let c = book.counts();
    assert_eq!((c.received, c.unmatched, c.failed_status), (1, 0, 1));
    assert_eq!(c.latency.max() / 1000, 40);
}

#[test]
fn repeated_deliveries_are_duplicates_before_or_after_the_ack() {
    let book = CallbackBook::new(None);
    let t = Instant::now();
    book.arrive("early".into(), t, true);
    book.arrive("early".into(), t, true);
    book.expect("early".into(), t);
    book.expect("late".into(), t);
    for _ in 0..3 {
        book.arrive("late".into(), t, true);
    }
    let c = book.counts();
    assert_eq!((c.expected, c.received, c.duplicates), (2, 2, 3));
    assert_eq!(c.missing(), 0);
}

#[test]
fn callbacks_never_acknowledged_are_unmatched_and_missing_ones_counted() {
    let book = CallbackBook::new(None);
    let t = Instant::now();
    book.expect("acked".into(), t);
    book.arrive("stranger".into(), t, true);
    let c = book.counts();
    assert_eq!((c.received, c.missing(), c.unmatched), (0, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn waiting_ends_at_the_deadline_when_callbacks_are_missing() {
    let book = CallbackBook::new(None);
    let start = Instant::now();
    book.expect("a".into(), start);
    assert!(!book.wait_for_all(start + Duration::from_secs(30)).await);
    assert_eq!(start.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn waiting_ends_as_soon_as_the_last_callback_arrives() {
    let book = Arc::new(CallbackBook::new(None));
    let start = Instant::now();
    book.expect("a".into(), start);
    let b = book.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        b.arrive("a".into(), Instant::now(), true);
    });
    assert!(book.wait_for_all(start + Duration::from_secs(30)).await);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

fn callback_body(id: &str) -> String {
    serde_json::json!({"request_id": id, "status": "completed", "result": null,
        "error": null, "timestamp": "2025-01-01T00:00:00Z"})
    .to_string()
}

async fn post(url: &str, body: String, headers: &[(&str, String)]) -> u16 {
    let mut req = http().post(url).body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_receiver_matches_callbacks_over_http_and_refuses_malformed_ones() {
    let receiver = Receiver::start("127.0.0.1", 0, None).await.unwrap();
    assert!(receiver.url.starts_with("http://127.0.0.1:") && receiver.url.ends_with("/callback"));
    receiver.book().expect("r1".into(), Instant::now());
    assert_eq!(post(&receiver.url, callback_body("r1"), &[]).await, 200);
    assert_eq!(post(&receiver.url, callback_body("r1"), &[]).await, 200);
    assert_eq!(post(&receiver.url, "{}".into(), &[]).await, 400);
    let c = receiver.book().counts();
    assert_eq!(
        (c.received, c.duplicates, c.malformed, c.bad_signatures),
        (1, 1, 1, 0)
    );
    receiver.stop().await;
}

#[tokio::test]
async fn with_a_secret_every_delivery_is_verified_and_bad_ones_counted() {
    let secret = SigningSecret::parse(&whsec(KEY)).unwrap();
    let receiver = Receiver::start("127.0.0.1", 0, Some(secret)).await.unwrap();
    let ts = chrono::Utc::now().timestamp();
    let body = callback_body("r1");
    let good = sign(KEY, "r1", ts, &body);
    let forged = sign(b"another key, another signature!!", "r1", ts, &body);
    let headers = |sig: &str| {
        vec![
            ("webhook-id", "r1".to_string()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig.to_string()),
        ]
    };
    receiver.book().expect("r1".into(), Instant::now());
    assert_eq!(
        post(&receiver.url, body.clone(), &headers(&good)).await,
        200
    );
    assert_eq!(
        receiver.book().counts().bad_signatures,
        0,
        "a good signature was refused"
    );
    assert_eq!(
        post(&receiver.url, body.clone(), &headers(&forged)).await,
        200
    );
    assert_eq!(post(&receiver.url, body.clone(), &[]).await, 200);
    let c = receiver.book().counts();
    assert_eq!((c.received, c.duplicates, c.bad_signatures), (1, 2, 2));
    receiver.stop().await;
}

#[test]
fn ipv6_callback_hosts_are_bracketed() {
    let addr: SocketAddr = "[::1]:4000".parse().unwrap();
    assert_eq!(callback_url("::1", addr), "http://[::1]:4000/callback");
    assert_eq!(
        callback_url("receiver.test", addr),
        "http://receiver.test:4000/callback"
    );
}
