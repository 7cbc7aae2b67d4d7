//! What survives a crash, and how a shutdown drains (SPEC §3).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::both_backends;
use crate::helpers::receiver::{Receiver, Reply};
use crate::helpers::{Backend, TestApp, submit_async_spread, work};

/// Acknowledged work survives SIGKILL: with jobs pending, running and waiting for a
/// retry at the moment of the kill, a restart on the same database delivers every one.
async fn nothing_acknowledged_is_lost_when_the_process_is_killed(backend: Backend) {
    const N: usize = 240;
    // Every request's first attempt fails, so many wait for a retry at the kill; some
    // answers are slow, so deliveries are in flight too. The failure is a 404: an
    // answer, so the destination's circuit stays closed (SPEC §8) and every request
    // keeps being tried.
    let receiver = Receiver::scripted("127.0.0.1", |n| match n {
        0 => Reply::status(404),
        _ => Reply::status(200).after(Duration::from_millis(50)),
    })
    .await;
    let mut app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--work-delay-ms", 400)
        .arg("--workers", 40)
        .arg("--lease-secs", 3)
        .arg("--callback-base-delay-ms", 1500)
        .spawn()
        .await;
    let acknowledged = submit_async_spread(&[&app], N, &receiver.url("/cb")).await;
    assert_eq!(acknowledged.len(), N);
    // Kill once some callbacks failed (retries scheduled) while work is still queued.
    receiver.wait_for(30, Duration::from_secs(30)).await;
    app.kill().await;
    let before = receiver.hits().len();
    assert!(before < 2 * N, "the kill came mid-flight ({before} hits)");

    app.restart().await;
    for id in &acknowledged {
        let record = app.wait_terminal(id, Duration::from_secs(120)).await;
        assert_eq!(record["status"], "completed", "{id}");
        assert_eq!(record["callback_status"], "sent", "{id}");
    }
    // The receiver saw every request, each delivery under one webhook-id with one body.
    let mut by_id: HashMap<String, Vec<_>> = HashMap::new();
    for hit in receiver.hits() {
        by_id
            .entry(hit.header("webhook-id").to_owned())
            .or_default()
            .push(hit);
    }
    assert_eq!(by_id.keys().cloned().collect::<HashSet<_>>(), acknowledged);
    for (id, hits) in by_id {
        assert!(
            hits.iter()
                .all(|h| h.request_id() == id && h.body == hits[0].body),
            "{id}"
        );
    }
    assert_eq!(app.get_json("/requests?mode=async").await["total"], N);
}

/// SIGTERM: /readyz turns 503 and new work is refused at once, in-flight work finishes,
/// and the process exits 0.
async fn a_graceful_shutdown_drains_in_flight_work(backend: Backend) {
    let receiver = Receiver::ok().await;
    let mut app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--work-delay-ms", 1500)
        .spawn()
        .await;
    let id = app.submit_async("drain me", &receiver.url("/")).await;
    let (client, url) = (app.client.clone(), app.url("/sync"));
    let in_flight =
        tokio::spawn(async move { client.post(url).json(&work("inline", 1)).send().await });
    // Both works have started (the async one claimed, the sync one admitted): only then
    // is there anything in flight to drain.
    app.wait_json(
        "/requests?status=processing",
        "both works in flight",
        Duration::from_secs(30),
        |v| v["total"] == 2,
    )
    .await;
    let pid = nix::unistd::Pid::from_raw(app.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    // The server logs the signal once it has started draining (src/shutdown.rs).
    app.wait_log("SIGTERM handled", Duration::from_secs(30), |v| {
        v["message"] == "shutdown requested: draining"
    })
    .await;
    // A fresh client: the server closes idle keep-alive connections as it drains.
    let fresh = super::helpers::client();
    let readyz = fresh.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503, "not ready once draining");
    assert_eq!(
        fresh
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let refused = fresh
        .post(app.url("/sync"))
        .json(&work("late", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        in_flight.await.unwrap().unwrap().status(),
        200,
        "the in-flight request finished"
    );
    let status = app.terminate_wait().await;
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        receiver.hits_for(&id).len(),
        1,
        "the running job finished before the exit"
    );
}

both_backends!(
    nothing_acknowledged_is_lost_when_the_process_is_killed,
    a_graceful_shutdown_drains_in_flight_work
);
