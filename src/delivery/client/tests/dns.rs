//! Names resolved through a DNS server of our own: an answer, no answer, no such name.

use super::*;

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
