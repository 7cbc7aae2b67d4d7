//! /healthz, /readyz, /metrics, /openapi.json, /docs, X-Request-Id.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, work};

async fn health_and_readiness_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(
        app.get_json("/healthz").await,
        serde_json::json!({"status": "healthy"})
    );
    let ready = app.get_json("/readyz").await;
    assert_eq!(ready["status"], "ready");
}

async fn metrics_count_requests_per_route_with_latency_histograms(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.post_sync(work("a", 1)).await.status(), 200);
    assert_eq!(app.post_sync(serde_json::json!({})).await.status(), 422);
    let r = app.get("/metrics").await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    for needle in [
        r#"consuma_http_requests_total{route="/sync",method="POST",status="200"} 1"#,
        r#"consuma_http_requests_total{route="/sync",method="POST",status="422"} 1"#,
        r#"consuma_http_request_duration_seconds_bucket{route="/sync",method="POST",status="200",le="0.005"}"#,
        "consuma_work_duration_seconds_bucket",
        r#"consuma_jobs{state="pending"} 0"#,
        "# TYPE consuma_http_requests_total counter",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

async fn openapi_describes_every_route_and_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc: Value = app.get_json("/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/sync",
        "/async",
        "/requests",
        "/requests/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} documented");
    }
    for (path, statuses) in [
        (
            "/sync",
            vec!["200", "400", "409", "413", "415", "422", "503"],
        ),
        (
            "/async",
            vec!["202", "400", "409", "413", "415", "422", "503"],
        ),
    ] {
        let responses = doc["paths"][path]["post"]["responses"].as_object().unwrap();
        for s in statuses {
            assert!(responses.contains_key(s), "{path} documents {s}");
        }
    }
    assert!(
        doc["paths"]["/requests"]["get"]["responses"]
            .as_object()
            .unwrap()
            .contains_key("422")
    );
    assert!(
        doc["paths"]["/requests/{id}"]["get"]["responses"]
            .as_object()
            .unwrap()
            .contains_key("404")
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

async fn docs_work_offline_with_every_asset_served_locally(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app.get("/docs/").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"), "{html}");
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            assets.push(part.split('"').next().unwrap().to_owned());
        }
    }
    assert!(!assets.is_empty());
    for asset in assets {
        assert!(!asset.starts_with("http"), "asset from elsewhere: {asset}");
        let url = if asset.starts_with('/') {
            app.url(&asset)
        } else {
            app.url(&format!("/docs/{}", asset.trim_start_matches("./")))
        };
        assert_eq!(
            app.client.get(&url).send().await.unwrap().status(),
            200,
            "{url}"
        );
    }
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
}

async fn every_response_carries_an_x_request_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "client-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-abc-123");
    let r = app.get("/healthz").await;
    let generated = r.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
    // On POST /sync the header is the record's id, whatever the client sent.
    let r = app
        .client
        .post(app.url("/sync"))
        .header("x-request-id", "mine")
        .json(&work("a", 1))
        .send()
        .await
        .unwrap();
    let header = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(r.json::<Value>().await.unwrap()["request_id"], header);
    assert!(
        app.get("/nope")
            .await
            .headers()
            .contains_key("x-request-id")
    );
}

async fn problem_types_are_documented(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let p: Value = app
        .post_sync(serde_json::json!({}))
        .await
        .json()
        .await
        .unwrap();
    let r = app.get(p["type"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().starts_with("422"));
}

both_backends!(
    health_and_readiness_answer,
    metrics_count_requests_per_route_with_latency_histograms,
    openapi_describes_every_route_and_error,
    docs_work_offline_with_every_asset_served_locally,
    every_response_carries_an_x_request_id,
    problem_types_are_documented,
);
