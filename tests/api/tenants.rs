//! Tenancy on every read and write path (SPEC §10): two tenants cannot see or touch each
//! other's records through any route, an admin sees both, idempotency keys and backlog
//! quotas are per tenant, and each tenant's callbacks are signed with its own secret.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::receiver::{Receiver, Reply};
use crate::helpers::webhooks::verifies;
use crate::helpers::{Backend, TestApp, cli};

/// Sends `method path` with `key` and an optional JSON body.
async fn call(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut r = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        r = r.json(&body);
    }
    r.send().await.expect("request")
}

async fn json_of(r: reqwest::Response) -> Value {
    r.json().await.expect("JSON")
}

/// Two tenants and an admin, each with a request of its own.
async fn two_tenants_and_an_admin(
    backend: Backend,
    receiver: &Receiver,
    extra: &[(&str, &str)],
) -> (TestApp, [String; 3], [String; 2]) {
    let mut builder = TestApp::builder(backend).allow_loopback();
    for (flag, value) in extra {
        builder = builder.arg(flag, value);
    }
    let app = builder.spawn().await;
    let keys = [
        app.create_key("acme", false).await,
        app.create_key("globex", false).await,
        app.create_key("ops", true).await,
    ];
    app.wait_keys(&[&keys[0], &keys[1], &keys[2]]).await;
    let mut ids = Vec::new();
    for key in &keys[..2] {
        let body = json!({"text": "mine", "callback_url": receiver.url("/cb")});
        let r = call(&app, key, Method::POST, "/async", Some(body)).await;
        assert_eq!(r.status(), 202);
        ids.push(json_of(r).await["request_id"].as_str().unwrap().to_owned());
    }
    (app, keys, [ids[0].clone(), ids[1].clone()])
}

async fn no_route_shows_or_touches_another_tenants_records(backend: Backend) {
    let receiver = Receiver::scripted("127.0.0.1", |_| Reply::status(500)).await;
    let extra = [("--callback-max-attempts", "1")];
    let (app, [acme, globex, admin], [a, g]) =
        two_tenants_and_an_admin(backend, &receiver, &extra).await;
    for (key, tenant, id) in [(&acme, "acme", &a), (&globex, "globex", &g)] {
        let failed = |r: &Value| r["callback_status"] == "failed";
        let r = app
            .wait_record_as(Some(key), id, "failed", Duration::from_secs(30), failed)
            .await;
        assert_eq!(r["tenant"], tenant);
    }
    // Reading: the list, the record (a guessed id is simply unknown), the chart.
    let list = json_of(call(&app, &acme, Method::GET, "/requests", None).await).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["requests"][0]["id"], a.as_str());
    let foreign = call(&app, &acme, Method::GET, &format!("/requests/{g}"), None).await;
    assert_eq!(foreign.status(), 404);
    let named =
        json_of(call(&app, &acme, Method::GET, "/requests?tenant=globex", None).await).await;
    assert_eq!(
        (named["total"].clone(), named["requests"].clone()),
        (json!(0), json!([]))
    );
    let stats = json_of(call(&app, &acme, Method::GET, "/stats/callbacks", None).await).await;
    let failed: u64 = stats["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["failed"].as_u64().unwrap())
        .sum();
    assert_eq!(failed, 1, "only its own callbacks in the chart");
    let me = json_of(call(&app, &acme, Method::GET, "/me", None).await).await;
    assert_eq!(
        me,
        json!({"tenant": "acme", "admin": false, "auth_required": true})
    );

    // Writing: redelivery of another tenant's request is a 404; bulk only touches its own.
    let r = call(
        &app,
        &acme,
        Method::POST,
        &format!("/requests/{g}/redeliver"),
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
    let since = (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    let bulk = json!({"callback_status": "failed", "since": since});
    let r = call(
        &app,
        &acme,
        Method::POST,
        "/requests/redeliver",
        Some(bulk.clone()),
    )
    .await;
    assert_eq!(json_of(r).await["redelivered"], 1);
    let mut other = bulk.clone();
    other["tenant"] = json!("globex");
    let r = call(
        &app,
        &acme,
        Method::POST,
        "/requests/redeliver",
        Some(other),
    )
    .await;
    assert_eq!(
        json_of(r).await["redelivered"],
        0,
        "another tenant's name matches nothing"
    );
    // Acme's own redelivery is made (its receiver fails it again); then two more passes
    // of the bulk redeliveries' batches (every 500 ms) — a lower bound — and globex's is
    // still untouched.
    app.wait_record_as(
        Some(&acme),
        &a,
        "redelivered",
        Duration::from_secs(30),
        |r| r["callback_attempts"] == 2 && r["callback_status"] == "failed",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let g_record =
        json_of(call(&app, &globex, Method::GET, &format!("/requests/{g}"), None).await).await;
    assert_eq!(
        g_record["callback_attempts"], 1,
        "globex's callback was not redelivered"
    );

    // An admin sees both, and narrows to one with tenant=.
    let all = json_of(call(&app, &admin, Method::GET, "/requests", None).await).await;
    assert_eq!(all["total"], 2);
    let one = json_of(call(&app, &admin, Method::GET, "/requests?tenant=globex", None).await).await;
    assert_eq!(one["total"], 1);
    assert_eq!(one["requests"][0]["id"], g.as_str());
    let r = call(&app, &admin, Method::GET, &format!("/requests/{a}"), None).await;
    assert_eq!(r.status(), 200);
}

async fn the_same_idempotency_key_from_two_tenants_makes_two_requests(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let acme = app.create_key("acme", false).await;
    let globex = app.create_key("globex", false).await;
    app.wait_keys(&[&acme, &globex]).await;
    let mut ids = Vec::new();
    for key in [&acme, &globex, &acme] {
        let r = app
            .client
            .post(app.url("/sync"))
            .bearer_auth(key)
            .header("idempotency-key", "order-1")
            .json(&json!({"text": "same"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        ids.push(json_of(r).await["request_id"].as_str().unwrap().to_owned());
    }
    assert_ne!(ids[0], ids[1], "two tenants, two requests");
    assert_eq!(ids[0], ids[2], "the same tenant replays");
}

async fn one_tenant_at_its_quota_does_not_stop_another(backend: Backend) {
    let app = TestApp::builder(backend)
        .arg("--workers", 0)
        .arg("--max-pending-jobs-per-tenant", 2)
        .spawn()
        .await;
    let acme = app.create_key("acme", false).await;
    let globex = app.create_key("globex", false).await;
    app.wait_keys(&[&acme, &globex]).await;
    let body = || Some(json!({"text": "x", "callback_url": "https://example.com/hook"}));
    for _ in 0..2 {
        assert_eq!(
            call(&app, &acme, Method::POST, "/async", body())
                .await
                .status(),
            202
        );
    }
    let refused = call(&app, &acme, Method::POST, "/async", body()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(json_of(refused).await["type"], "/problems/quota-exceeded");
    assert_eq!(
        call(&app, &globex, Method::POST, "/async", body())
            .await
            .status(),
        202
    );
}

/// Each tenant's callbacks verify with its own secret, and not with another's.
async fn callbacks_are_signed_with_their_tenants_secret(backend: Backend) {
    let receiver = Receiver::ok().await;
    let (app, [_, _, admin], _) = two_tenants_and_an_admin(backend, &receiver, &[]).await;
    receiver.wait_for(2, Duration::from_secs(30)).await;
    let secret = |tenant: &'static str| {
        let db = app.db.clone();
        async move {
            let out = cli(&db, &["secret", "--tenant", tenant]).await;
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        }
    };
    let (acme_secret, globex_secret) = (secret("acme").await, secret("globex").await);
    assert_ne!(acme_secret, globex_secret);
    for hit in receiver.hits() {
        let id = hit.request_id();
        let record = call(&app, &admin, Method::GET, &format!("/requests/{id}"), None).await;
        let tenant = json_of(record).await["tenant"].as_str().unwrap().to_owned();
        let (own, other) = match tenant.as_str() {
            "acme" => (&acme_secret, &globex_secret),
            _ => (&globex_secret, &acme_secret),
        };
        assert!(
            verifies(own, &hit),
            "{tenant}'s callback verifies with its secret"
        );
        assert!(!verifies(other, &hit), "and not with another tenant's");
    }
}

both_backends!(
    no_route_shows_or_touches_another_tenants_records,
    the_same_idempotency_key_from_two_tenants_makes_two_requests,
    one_tenant_at_its_quota_does_not_stop_another,
    callbacks_are_signed_with_their_tenants_secret,
);
