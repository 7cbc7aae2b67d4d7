//! Leases are never lost by a healthy owner (SPEC §16; issue 19, item 1): with short
//! leases, callbacks that take two seconds each, and POST /async flooding beside them,
//! every callback is delivered once and no "lease lost" is logged. (The full-size
//! scenario is `bench/leases.sh`.)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::both_backends;
use crate::helpers::receiver::{Receiver, Reply};
use crate::helpers::{Backend, TestApp, submit_async_spread};

const N: usize = 24;

/// Posts /async to `callback` from `senders` loops until `stop`; returns how many were sent.
fn flood(
    app: &TestApp,
    callback: String,
    senders: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..senders)
        .map(|_| {
            let (client, url, callback, stop) = (
                app.client.clone(),
                app.url("/async"),
                callback.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = serde_json::json!({"text": "flood", "callback_url": callback});
                    if client.post(&url).json(&body).send().await.is_ok() {
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect()
}

async fn slow_callbacks_beside_a_flood_keep_their_leases(backend: Backend) {
    let slow = Receiver::scripted("127.0.0.1", |_| {
        Reply::status(200).after(Duration::from_secs(2))
    })
    .await;
    let fast = Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--lease-secs", 3)
        .arg("--work-delay-ms", 20)
        .arg("--callback-max-in-flight-per-destination", 8)
        .spawn()
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let flooders = flood(&app, fast.url("/flood"), 8, stop.clone());
    let ids = submit_async_spread(&[&app], N, &slow.url("/slow")).await;
    for id in &ids {
        let record = app.wait_terminal(id, Duration::from_secs(90)).await;
        assert_eq!(record["callback_status"], "sent", "{record:#}");
    }
    stop.store(true, Ordering::Relaxed);
    let mut flooded = 0;
    for f in flooders {
        flooded += f.await.unwrap();
    }
    assert!(flooded > 0, "the flood ran beside the slow callbacks");
    // A job whose lease was lost would be claimed again once it expired (3 s) and sent
    // a second time: give it that time (a lower bound).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut per_request: HashMap<String, usize> = HashMap::new();
    for hit in slow.hits() {
        *per_request.entry(hit.request_id()).or_default() += 1;
    }
    assert_eq!(per_request.len(), N, "every slow callback arrived");
    let twice: Vec<_> = per_request.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let lost = app.logs_containing("lease lost");
    assert!(lost.is_empty(), "leases lost by a healthy owner: {lost:#?}");
}

both_backends!(slow_callbacks_beside_a_flood_keep_their_leases);
