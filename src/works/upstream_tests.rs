//! The judging table against real upstreams on loopback (raw TCP, so an upstream can
//! also hang, reset or answer garbage).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;
use crate::works::file;

/// What the upstream does with each connection.
#[derive(Clone)]
enum Behaviour {
    Answer(Vec<u8>),
    Hang,
    Reset,
}

fn answer(status: &str, headers: &str, body: &str) -> Behaviour {
    Behaviour::Answer(
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// An upstream on loopback; each request it receives (head and body) is sent on the channel.
async fn upstream(b: Behaviour) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let request = read_request(&mut conn).await;
            let _ = tx.send(request);
            match &b {
                Behaviour::Answer(bytes) => {
                    let _ = conn.write_all(bytes).await;
                    let _ = conn.shutdown().await;
                }
                Behaviour::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Behaviour::Reset => {
                    #[allow(deprecated)] // a reset is the point here
                    let _ = conn.set_linger(Some(Duration::ZERO));
                    drop(conn);
                }
            }
        }
    });
    (addr, rx)
}

async fn read_request(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&buf).to_string(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn work_at(addr: SocketAddr, extra: &str) -> HttpWork {
    let text = format!(
        "[works.up]\nkind = \"http\"\nurl = \"http://{addr}/run?x=1\"\ntimeout = \"300ms\"\nmax_response_bytes = 64\nheaders = {{ authorization = \"Bearer t0k\" }}\n{extra}"
    );
    let spec = file::parse(std::path::Path::new("works.toml"), &text, |_| None).unwrap();
    HttpWork::new(spec.into_iter().next().unwrap()).unwrap()
}

fn call() -> WorkCall {
    let mut c = WorkCall::new(r#"{"b":  1, "a": [2.50]}"#, "acme");
    c.idempotency_key = "key-1".into();
    c.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    c
}

async fn outcome(b: Behaviour) -> Result<Value, WorkError> {
    let (addr, _rx) = upstream(b).await;
    let result = work_at(addr, "").perform(&call()).await;
    if let Err(e) = &result {
        assert!(
            !e.message.contains("127.0.0.1") && !e.message.contains(&addr.port().to_string()),
            "{e:?}"
        );
    }
    result
}

#[tokio::test]
async fn the_upstream_request_carries_the_exact_body_and_headers() {
    let (addr, mut rx) = upstream(answer(
        "200 OK",
        "content-type: application/json\r\n",
        r#"{"ok":true}"#,
    ))
    .await;
    let c = call();
    let out = work_at(addr, "").perform(&c).await.unwrap();
    assert_eq!(out, serde_json::json!({"ok": true}));
    let seen = rx.recv().await.unwrap();
    let lower = seen.to_ascii_lowercase();
    assert!(seen.starts_with("POST /run?x=1 HTTP/1.1\r\n"), "{seen}");
    for header in [
        "content-type: application/json".to_owned(),
        format!("user-agent: consuma/{}", env!("CARGO_PKG_VERSION")),
        format!("x-request-id: {}", c.request_id),
        "idempotency-key: key-1".into(),
        "x-consuma-tenant: acme".into(),
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        "authorization: bearer t0k".into(),
    ] {
        assert!(
            lower.contains(&format!("\r\n{header}\r\n")),
            "missing {header:?} in {seen}"
        );
    }
    assert!(
        seen.ends_with("\r\n\r\n{\"b\":  1, \"a\": [2.50]}"),
        "{seen}"
    );
}

#[tokio::test]
async fn a_2xx_with_json_completes_and_an_empty_one_is_null() {
    assert_eq!(
        outcome(answer("201 Created", "", "[1, \"two\"]")).await,
        Ok(serde_json::json!([1, "two"]))
    );
    assert_eq!(outcome(answer("200 OK", "", "")).await, Ok(Value::Null));
    assert_eq!(
        outcome(answer("204 No Content", "", "")).await,
        Ok(Value::Null)
    );
}

#[tokio::test]
async fn a_non_json_or_oversized_2xx_is_a_bad_answer() {
    let e = outcome(answer("200 OK", "", "<html>")).await.unwrap_err();
    assert_eq!(
        (e.kind, e.status_code),
        (WorkErrorKind::BadAnswer, Some(200))
    );
    assert_eq!(
        e.message,
        "upstream answered 200 with a body that is not JSON"
    );
    let big = format!("\"{}\"", "x".repeat(100));
    let e = outcome(answer("200 OK", "", &big)).await.unwrap_err();
    assert_eq!(e.kind, WorkErrorKind::BadAnswer);
    assert!(
        e.message.contains("over max_response_bytes (64)"),
        "{}",
        e.message
    );
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn a_4xx_is_rejected_with_an_excerpt_of_its_body() {
    let e = outcome(answer(
        "422 Unprocessable Entity",
        "",
        "{\"why\":\"no pages\"}",
    ))
    .await
    .unwrap_err();
    assert_eq!(
        (e.kind, e.status_code),
        (WorkErrorKind::Rejected, Some(422))
    );
    assert_eq!(e.message, "upstream answered 422: {\"why\":\"no pages\"}");
    let long = "é".repeat(400);
    let e = outcome(answer("400 Bad Request", "", &long))
        .await
        .unwrap_err();
    let quoted = e.message.strip_prefix("upstream answered 400: ").unwrap();
    assert!(
        quoted.len() <= EXCERPT_BYTES && quoted.len() >= EXCERPT_BYTES - 1,
        "{}",
        quoted.len()
    );
    assert!(quoted.chars().all(|c| c == 'é'));
}

#[tokio::test]
async fn busy_and_failing_statuses_are_retryable_with_retry_after() {
    for status in [
        "408 Request Timeout",
        "409 Conflict",
        "425 Too Early",
        "429 Too Many Requests",
        "500 Internal Server Error",
        "503 Service Unavailable",
    ] {
        let e = outcome(answer(
            status,
            "retry-after: 7\r\n",
            "secret upstream detail",
        ))
        .await
        .unwrap_err();
        let code = &status[..3];
        assert_eq!(e.kind, WorkErrorKind::Unavailable, "{status}");
        assert_eq!(e.message, format!("upstream answered {code}"));
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        assert!(e.is_retryable());
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let e = outcome(answer(
        "302 Found",
        "location: http://127.0.0.1:1/elsewhere\r\n",
        "",
    ))
    .await
    .unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (WorkErrorKind::BadAnswer, "upstream answered 302")
    );
}

#[tokio::test]
async fn a_hung_upstream_times_out() {
    let e = outcome(Behaviour::Hang).await.unwrap_err();
    assert_eq!(e.kind, WorkErrorKind::Timeout);
    assert_eq!(e.message, "upstream timed out after 300 ms");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn transport_failures_are_fixed_words() {
    let e = outcome(Behaviour::Reset).await.unwrap_err();
    assert_eq!(e.kind, WorkErrorKind::Unavailable);
    assert!(e.message.starts_with("upstream "), "{}", e.message);
    let e = outcome(Behaviour::Answer(b"garbage\r\n\r\n".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, WorkErrorKind::Unavailable, "{e:?}");
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let e = work_at(closed, "").perform(&call()).await.unwrap_err();
    assert_eq!(e.message, "upstream connection refused");
}

#[test]
fn durations_read_as_people_write_them() {
    assert_eq!(human(Duration::from_secs(30)), "30 s");
    assert_eq!(human(Duration::from_millis(250)), "250 ms");
    assert_eq!(human(Duration::from_secs(900)), "15 min");
}
