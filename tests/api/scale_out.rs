//! Scale-out (SPEC §3): several instances of the real binary on one PostgreSQL
//! database; losing one loses nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::receiver::{Receiver, Reply};
use crate::helpers::{Backend, TestApp, postgres_available, submit_async_spread};

/// `request_id`s of the "work done" lines in an instance's log: each is one recorded work.
fn works_recorded(app: &TestApp) -> Vec<String> {
    app.logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "work done")
        .filter_map(|l| l["span"]["request_id"].as_str().map(str::to_owned))
        .collect()
}

/// Three instances share the work; one is SIGKILLed mid-flight. Every acknowledged request
/// reaches its callback, no request is ever delivered by two instances at once, and each
/// work is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_work_and_losing_one_loses_nothing() {
    if !postgres_available().await {
        return;
    }
    const N: usize = 180;
    // Slow answers keep deliveries in flight when the kill comes.
    let receiver = Receiver::scripted("127.0.0.1", |_| {
        Reply::status(200).after(Duration::from_millis(150))
    })
    .await;
    let start = |app: crate::helpers::AppBuilder| {
        app.allow_loopback()
            .arg("--work-delay-ms", 300)
            .arg("--workers", 16)
            .arg("--lease-secs", 3)
    };
    let a = start(TestApp::builder(Backend::Postgres)).spawn().await;
    let mut b = start(TestApp::builder_on(a.db.clone())).spawn().await;
    let c = start(TestApp::builder_on(a.db.clone())).spawn().await;

    let acknowledged = submit_async_spread(&[&a, &b, &c], N, &receiver.url("/cb")).await;
    assert_eq!(acknowledged.len(), N);

    receiver.wait_for(N / 4, Duration::from_secs(60)).await;
    let b_worked = works_recorded(&b);
    b.kill().await;
    assert!(!b_worked.is_empty(), "the killed instance had taken part");

    for id in &acknowledged {
        let record = a.wait_terminal(id, Duration::from_secs(120)).await;
        assert_eq!(
            (
                record["status"].as_str(),
                record["callback_status"].as_str()
            ),
            (Some("completed"), Some("sent")),
            "{id}"
        );
    }
    let delivered: HashSet<String> = receiver
        .hits()
        .iter()
        .map(|h| h.header("webhook-id").to_owned())
        .collect();
    assert_eq!(
        delivered, acknowledged,
        "every acknowledged request was called back"
    );
    assert_eq!(
        receiver.max_overlap(),
        1,
        "no request was ever delivered by two instances at once"
    );

    let mut works: HashMap<String, usize> = HashMap::new();
    for id in works_recorded(&a)
        .into_iter()
        .chain(b_worked)
        .chain(works_recorded(&c))
    {
        *works.entry(id).or_default() += 1;
    }
    assert!(
        works.values().all(|n| *n == 1),
        "each work recorded once: {:?}",
        works.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let by_survivors = works_recorded(&a).len() + works_recorded(&c).len();
    assert!(by_survivors > 0 && works.len() <= N);
    assert_eq!(a.get_json("/requests?mode=async").await["total"], N);
}
