//! Signatures and headers: every secret signs, every attempt is signed afresh, and a
//! 2xx carries every header the receiver is promised.

use super::*;

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
