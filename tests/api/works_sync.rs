//! `POST /sync/{work}` and `GET /works` (SPEC §13, §17) against a real upstream on
//! loopback: every row of the judging table, schemas, busy works, tenants.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::upstream::Upstream;
use crate::helpers::{Backend, TestApp};

/// A works file with one work per upstream path, plus `shapes` with a schema.
fn works_file(up: &Upstream, dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::new();
    for path in [
        "ok", "empty", "reject", "busy", "conflict", "html", "big", "hang", "redirect",
    ] {
        text.push_str(&format!(
            "[works.{path}]\nkind = \"http\"\nurl = \"{}\"\ntimeout = \"1s\"\nmax_response_bytes = 1024\nheaders = {{ authorization = \"Bearer ${{UPSTREAM_TOKEN}}\" }}\n\n",
            up.url(&format!("/{path}"))
        ));
    }
    text.push_str(&format!(
        "[works.gate]\nkind = \"http\"\nurl = \"{}\"\ntimeout = \"2s\"\nmax_in_flight = 1\n\n",
        up.url("/gate")
    ));
    text.push_str("[works.refused]\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\n\n");
    text.push_str(&format!(
        "[works.shapes]\nkind = \"http\"\nurl = \"{}\"\ntenants = [\"acme\"]\n[works.shapes.input_schema]\ntype = \"object\"\nrequired = [\"items\"]\n[works.shapes.input_schema.properties.items]\ntype = \"array\"\nitems = {{ type = \"object\", properties = {{ size = {{ type = \"integer\", maximum = 10 }} }} }}\n",
        up.url("/ok")
    ));
    let file = dir.join("works.toml");
    std::fs::write(&file, text).unwrap();
    file
}

async fn start(backend: Backend) -> (TestApp, Upstream, tempfile::TempDir) {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = works_file(&up, dir.path());
    let app = TestApp::builder(backend)
        .arg("--works", file.display())
        .env("UPSTREAM_TOKEN", "s3cret")
        .spawn()
        .await;
    (app, up, dir)
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = app
        .request(Method::POST, path)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn a_completed_work_returns_the_upstream_json_and_records_it(backend: Backend) {
    let (app, up, _dir) = start(backend).await;
    let body = r#"{"b":  1, "a": [2.50], "text": "é"}"#;
    let (status, headers, answer) = post_raw(&app, "/sync/ok", body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["request_id"].as_str().unwrap().to_owned();
    assert_eq!(answer["status"], "completed");
    assert_eq!(
        answer["result"],
        json!({"echo": {"b": 1, "a": [2.5], "text": "é"}})
    );
    assert_eq!(headers["x-request-id"], id.as_str());
    let seen = &up.seen()[0];
    assert_eq!(&seen.body[..], body.as_bytes(), "the body passes whole");
    let h = |n: &str| seen.headers[n].to_str().unwrap().to_owned();
    assert_eq!(h("idempotency-key"), id);
    assert_eq!(h("x-request-id"), id);
    assert_eq!(h("x-consuma-tenant"), "default");
    assert_eq!(h("content-type"), "application/json");
    assert_eq!(h("authorization"), "Bearer s3cret");
    assert!(h("user-agent").starts_with("consuma/"));
    assert!(h("traceparent").starts_with("00-"));
    let record = app.record(&id).await;
    assert_eq!(record["work"], "ok");
    assert_eq!(record["status"], "completed");
    assert_eq!(record["output_data"], answer["result"]);
    let text: Value = app
        .post_sync(json!({"text": "a"}))
        .await
        .json()
        .await
        .unwrap();
    let text = app.record(text["request_id"].as_str().unwrap()).await;
    assert_eq!(
        (&text["work"], &text["work_attempts"]),
        (&json!("text"), &json!([]))
    );
    assert!(
        app.logs()
            .iter()
            .all(|l| !l.contains("s3cret") && !l.contains("2.50"))
    );
}

/// (work, status, problem type, error)
const FAILURES: &[(&str, u16, &str, &str)] = &[
    (
        "reject",
        422,
        "work-rejected",
        "upstream answered 422: {\"why\":\"no pages\"}",
    ),
    ("busy", 502, "upstream-failed", "upstream answered 503"),
    ("conflict", 502, "upstream-failed", "upstream answered 409"),
    (
        "html",
        502,
        "upstream-failed",
        "upstream answered 200 with a body that is not JSON",
    ),
    (
        "big",
        502,
        "upstream-failed",
        "upstream answered 200 with a body over max_response_bytes (1024)",
    ),
    ("redirect", 502, "upstream-failed", "upstream answered 302"),
    (
        "hang",
        504,
        "upstream-timeout",
        "upstream timed out after 1 s",
    ),
    (
        "refused",
        502,
        "upstream-failed",
        "upstream connection refused",
    ),
];

async fn every_failing_row_of_the_judging_table_is_answered_and_recorded(backend: Backend) {
    let (app, up, _dir) = start(backend).await;
    for (work, status, slug, error) in FAILURES {
        let (got, headers, problem) = post_raw(&app, &format!("/sync/{work}"), "{}").await;
        assert_eq!(got, *status, "{work}: {problem}");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!(problem["type"], format!("/problems/{slug}"), "{work}");
        assert_eq!(problem["detail"], *error, "{work}");
        let text = problem.to_string();
        assert!(
            !text.contains("127.0.0.1") && !text.contains(&up.addr.port().to_string()),
            "{text}"
        );
        let explained = app.get(&format!("/problems/{slug}")).await;
        assert_eq!(explained.status(), 200, "{slug}");
        let record = app.record(problem["request_id"].as_str().unwrap()).await;
        assert_eq!(
            (record["status"].as_str(), record["error"].as_str()),
            (Some("failed"), Some(*error)),
            "{work}"
        );
        assert_eq!(record["work"], *work);
        let attempts = record["work_attempts"].as_array().unwrap();
        assert_eq!(
            (attempts.len(), &attempts[0]["error"]),
            (1, &json!(error)),
            "{work}"
        );
    }
    let (status, _, answer) = post_raw(&app, "/sync/empty", "{}").await;
    assert_eq!((status, &answer["result"]), (200, &Value::Null));
    assert!(
        app.logs().iter().all(|l| !l.contains("no pages")),
        "no upstream body in the logs"
    );
    let rejected = r#"consuma_work_attempts_total{work="reject",outcome="rejected"}"#;
    assert_eq!(app.metric(rejected).await, Some(1.0));
    let timeouts = r#"consuma_work_attempts_total{work="hang",outcome="timeout"}"#;
    assert_eq!(app.metric(timeouts).await, Some(1.0));
    let (status, _, _) = post_raw(&app, "/sync/no-such-work", "{}").await;
    assert_eq!(status, 404);
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("consuma_work_attempt_duration_seconds_count{work=\"empty\"}"),
        "per-work histogram"
    );
    assert!(
        !text.contains("no-such-work"),
        "labels from configured names only"
    );
}

async fn a_caller_key_reaches_the_upstream_as_a_digest_and_replays(backend: Backend) {
    let (app, up, _dir) = start(backend).await;
    let send = || {
        app.request(Method::POST, "/sync/ok")
            .header("idempotency-key", "order-7")
            .json(&json!({"n": 1}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(up.seen().len(), 1, "a replay does no work");
    let key = up.seen()[0].headers["idempotency-key"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(key.len(), 64, "a hex SHA-256: {key}");
    assert_ne!(key, first["request_id"].as_str().unwrap());
    // /sync and /sync/text share keys.
    let text = |path: &'static str| {
        app.request(Method::POST, path)
            .header("idempotency-key", "shared")
            .json(&json!({"text": "hi"}))
            .send()
    };
    let plain: Value = text("/sync").await.unwrap().json().await.unwrap();
    let named = text("/sync/text").await.unwrap();
    assert_eq!(named.headers()["idempotent-replayed"], "true");
    assert_eq!(named.json::<Value>().await.unwrap(), plain);
}

async fn schemas_names_and_tenants_refuse_before_anything_is_stored(backend: Backend) {
    let (mut app, up, _dir) = start(backend).await;
    let doc = app.get_json("/openapi.json").await;
    let shapes = &doc["paths"]["/sync/shapes"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(
        shapes["required"][0], "items",
        "the schema'd work's own route"
    );
    assert!(doc["paths"]["/async/shapes"].is_object() && doc["paths"]["/sync/{work}"].is_object());
    assert!(
        doc["paths"]["/sync/ok"].is_null(),
        "a work without a schema has only the generic route"
    );
    let acme = app.create_key("acme", false).await;
    let beta = app.create_key("beta", false).await;
    app.wait_keys(&[&acme, &beta]).await;
    app.api_key = Some(acme);
    let (status, _, problem) = post_raw(
        &app,
        "/sync/shapes",
        r#"{"items": [{"size": 11}, {"size": "x"}]}"#,
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["/items/0/size", "/items/1/size"]);
    let (status, _, problem) = post_raw(&app, "/sync/shapes", "{}").await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some(""))
    );
    assert_eq!(
        post_raw(&app, "/sync/shapes", r#"{"items": []}"#).await.0,
        200
    );
    for path in ["/sync/nope", "/sync/Bad_Name", "/sync/a%2Fb"] {
        let (status, _, problem) = post_raw(&app, path, "{}").await;
        assert_eq!(
            (status, problem["type"].as_str()),
            (404, Some("/problems/unknown-work")),
            "{path}"
        );
    }
    let (status, _, _) = post_raw(&app, "/sync/ok", "[1]").await;
    assert_eq!(status, 400);
    let works = app.get_json("/works").await;
    let names: Vec<&str> = works["works"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"shapes") && names.contains(&"text"),
        "{names:?}"
    );
    assert!(!works.to_string().contains("127.0.0.1") && !works.to_string().contains("s3cret"));
    let shapes = works["works"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "shapes")
        .unwrap();
    assert_eq!(
        (
            shapes["kind"].as_str(),
            shapes["input_schema"]["required"][0].as_str()
        ),
        (Some("http"), Some("items"))
    );
    app.api_key = Some(beta);
    let (status, _, problem) = post_raw(&app, "/sync/shapes", r#"{"items": []}"#).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (404, Some("/problems/unknown-work"))
    );
    let works = app.get_json("/works").await;
    assert!(!works.to_string().contains("shapes"), "{works}");
    assert_eq!(
        app.get_json("/requests").await["total"],
        0,
        "beta stored nothing"
    );
    assert_eq!(up.seen().len(), 1, "only the valid body went upstream");
}

both_backends!(
    a_completed_work_returns_the_upstream_json_and_records_it,
    every_failing_row_of_the_judging_table_is_answered_and_recorded,
    a_caller_key_reaches_the_upstream_as_a_digest_and_replays,
    schemas_names_and_tenants_refuse_before_anything_is_stored,
);
