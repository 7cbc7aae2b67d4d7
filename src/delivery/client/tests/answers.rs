//! What a receiver's answer makes of an attempt: delivered without waiting for the
//! body, a redirect not followed, a timeout, `Retry-After`, a refused connection, a TLS
//! failure.

use super::*;

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
