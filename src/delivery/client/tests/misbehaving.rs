//! Raw receivers that misbehave on purpose: headers or a TLS handshake that never end,
//! bodies that are huge, endless or stalled, and what reading a body costs a connection.

use super::*;

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
