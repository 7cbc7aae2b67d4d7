//! One scoping rule on every route (SPEC §10, §16): a non-admin key naming another
//! tenant matches nothing — lists, totals, single records, /stats/callbacks, bulk and
//! single redelivery — and an invalid tenant name is a 422 everywhere. An admin sees all,
//! or the tenant it names.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::receiver::{Receiver, Reply};
use crate::helpers::{Backend, TestApp};

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

async fn json(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let r = call(app, key, method, path, body).await;
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Failed callbacks in the chart: the sum of `failed` over the hour.
fn failed(stats: &Value) -> u64 {
    stats["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["failed"].as_u64().unwrap())
        .sum()
}

/// acme and globex each with one async request whose callback failed; an admin key.
async fn two_failed_tenants(backend: Backend) -> (TestApp, [String; 3], [String; 2]) {
    let receiver = Receiver::scripted("127.0.0.1", |_| Reply::status(500)).await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-max-attempts", 1)
        .spawn()
        .await;
    let keys = [
        app.create_key("acme", false).await,
        app.create_key("globex", false).await,
        app.create_key("ops", true).await,
    ];
    app.wait_keys(&[&keys[0], &keys[1], &keys[2]]).await;
    let mut ids = Vec::new();
    for key in &keys[..2] {
        let body = json!({"text": "mine", "callback_url": receiver.url("/cb")});
        let (status, v) = json(&app, key, Method::POST, "/async", Some(body)).await;
        assert_eq!(status, 202, "{v}");
        ids.push(v["request_id"].as_str().unwrap().to_owned());
    }
    for (key, id) in keys[..2].iter().zip(&ids) {
        let failed = |r: &Value| r["callback_status"] == "failed";
        app.wait_record_as(Some(key), id, "failed", Duration::from_secs(30), failed)
            .await;
    }
    (app, keys, [ids[0].clone(), ids[1].clone()])
}

async fn naming_another_tenant_matches_nothing_on_every_route(backend: Backend) {
    let (app, [acme, _globex, admin], [a, _g]) = two_failed_tenants(backend).await;
    // Its own scope first: the chart shows its failure.
    let (_, own) = json(&app, &acme, Method::GET, "/stats/callbacks", None).await;
    assert_eq!(failed(&own), 1, "{own}");
    let (_, own) = json(
        &app,
        &acme,
        Method::GET,
        "/stats/callbacks?tenant=acme",
        None,
    )
    .await;
    assert_eq!(failed(&own), 1, "{own}");
    // An admin: everybody's, or the named tenant's.
    let (_, all) = json(&app, &admin, Method::GET, "/stats/callbacks", None).await;
    assert_eq!(failed(&all), 2, "{all}");
    let (_, one) = json(
        &app,
        &admin,
        Method::GET,
        "/stats/callbacks?tenant=globex",
        None,
    )
    .await;
    assert_eq!(failed(&one), 1, "{one}");
    let (_, none) = json(
        &app,
        &admin,
        Method::GET,
        "/stats/callbacks?tenant=nobody",
        None,
    )
    .await;
    assert_eq!(failed(&none), 0, "{none}");

    // acme naming globex: nothing, on every route.
    let (status, list) = json(&app, &acme, Method::GET, "/requests?tenant=globex", None).await;
    assert_eq!((status, list["total"].as_u64()), (200, Some(0)), "{list}");
    assert_eq!(list["requests"].as_array().unwrap().len(), 0);
    let (status, stats) = json(
        &app,
        &acme,
        Method::GET,
        "/stats/callbacks?tenant=globex",
        None,
    )
    .await;
    assert_eq!((status, failed(&stats)), (200, 0), "{stats}");
    let (status, _) = json(
        &app,
        &acme,
        Method::GET,
        &format!("/requests/{a}?tenant=globex"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let path = format!("/requests/{a}/redeliver?tenant=globex");
    let (status, _) = json(&app, &acme, Method::POST, &path, None).await;
    assert_eq!(status, 404);
    let since = "2000-01-01T00:00:00Z";
    let bulk = json!({"callback_status": "failed", "since": since, "tenant": "globex"});
    let (status, v) = json(&app, &acme, Method::POST, "/requests/redeliver", Some(bulk)).await;
    assert_eq!((status, v["redelivered"].as_u64()), (202, Some(0)), "{v}");
    let bulk = json!({"callback_status": "failed", "since": since});
    let (status, v) = json(
        &app,
        &acme,
        Method::POST,
        "/requests/redeliver?tenant=globex",
        Some(bulk),
    )
    .await;
    assert_eq!((status, v["redelivered"].as_u64()), (202, Some(0)), "{v}");
    // Nothing was touched: both callbacks still failed.
    let (_, list) = json(
        &app,
        &admin,
        Method::GET,
        "/requests?callback_status=failed",
        None,
    )
    .await;
    assert_eq!(list["total"].as_u64(), Some(2), "{list}");
}

async fn an_invalid_tenant_name_is_a_422_on_every_route(backend: Backend) {
    let (app, [acme, _globex, admin], [a, _g]) = two_failed_tenants(backend).await;
    let bulk = json!({"callback_status": "failed", "since": "2000-01-01T00:00:00Z"});
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/requests?tenant=Bad!".into(), None),
        (Method::GET, format!("/requests/{a}?tenant=Bad!"), None),
        (Method::GET, "/stats/callbacks?tenant=Bad!".into(), None),
        (Method::GET, "/stats/callbacks?tenant=".into(), None),
        (
            Method::POST,
            format!("/requests/{a}/redeliver?tenant=Bad!"),
            None,
        ),
        (
            Method::POST,
            "/requests/redeliver?tenant=Bad!".into(),
            Some(bulk.clone()),
        ),
        (
            Method::POST,
            "/requests/redeliver".into(),
            Some(
                json!({"callback_status": "failed", "since": "2000-01-01T00:00:00Z", "tenant": "Bad!"}),
            ),
        ),
    ];
    for key in [&acme, &admin] {
        for (method, path, body) in &routes {
            let (status, p) = json(&app, key, method.clone(), path, body.clone()).await;
            assert_eq!(status, 422, "{method} {path}: {p}");
            let fields: Vec<&str> = p["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(fields.contains(&"tenant"), "{method} {path}: {p}");
        }
    }
    // The list still reports every bad parameter in one 422.
    let (_, p) = json(
        &app,
        &admin,
        Method::GET,
        "/requests?tenant=Bad!&limit=0",
        None,
    )
    .await;
    assert_eq!(p["errors"].as_array().unwrap().len(), 2, "{p}");
}

both_backends!(
    naming_another_tenant_matches_nothing_on_every_route,
    an_invalid_tenant_name_is_a_422_on_every_route,
);
