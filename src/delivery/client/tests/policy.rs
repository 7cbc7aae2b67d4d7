//! The callback policy at connect time: a pinned name, a literal address or a DNS
//! answer reaching a denied address is refused before any connection is made.

use super::*;

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
