//! Every row of SPEC §2's error table, over real HTTP: status, problem+json, fields.

use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

/// Sends `body` as-is with `content_type` to `path`.
async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    req.send()
        .await
        .expect("the server answers instead of dropping the connection")
}

/// Asserts an RFC 9457 body with the given status, and returns it.
async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status);
    assert!(
        body["type"].as_str().unwrap().starts_with("/problems/"),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn a_body_that_is_not_a_json_object_is_a_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in ["/sync", "/async"] {
        for body in [
            "{not json",
            "",
            "[1,2]",
            "\"text\"",
            "42",
            "null",
            "{\"text\": \"a\"} trailing",
            "\u{feff}{}",
        ] {
            let p = problem(
                post_raw(&app, path, Some("application/json"), body).await,
                400,
            )
            .await;
            assert_eq!(p["type"], "/problems/malformed-body", "{path} {body:?}");
        }
        // Invalid UTF-8 and a lone surrogate are not JSON text either.
        problem(
            post_raw(&app, path, Some("application/json"), vec![b'{', 0xff, b'}']).await,
            400,
        )
        .await;
        problem(
            post_raw(&app, path, Some("application/json"), r#"{"text":"\ud800"}"#).await,
            400,
        )
        .await;
    }
}

async fn each_wrong_field_gets_its_own_422_entry(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        (json!({}), vec!["text"]),
        (json!({"text": 5}), vec!["text"]),
        (json!({"text": "a", "count": "3"}), vec!["count"]),
        (json!({"text": "a", "count": 3.5}), vec!["count"]),
        (json!({"text": "a", "count": 3.0}), vec!["count"]),
        (json!({"text": "a", "count": true}), vec!["count"]),
        (json!({"text": "a", "count": 0}), vec!["count"]),
        (json!({"text": "a", "count": 101}), vec!["count"]),
        (json!({"text": "", "count": 101}), vec!["text", "count"]),
        (json!({"text": null, "count": "x"}), vec!["text", "count"]),
        (json!({"text": "", "count": "3"}), vec!["text", "count"]),
    ];
    for (body, expected) in cases {
        let p = problem(app.post_sync(body.clone()).await, 422).await;
        assert_eq!(fields(&p), expected, "{body}");
        assert_eq!(p["type"], "/problems/validation-error");
    }
    // 1e1 is a float literal in JSON, however integral.
    let p = problem(
        post_raw(
            &app,
            "/sync",
            Some("application/json"),
            r#"{"text":"a","count":1e1}"#,
        )
        .await,
        422,
    )
    .await;
    assert_eq!(fields(&p), ["count"]);
}

async fn async_callback_url_missing_or_mistyped_is_a_422_and_unparsable_is_a_400(backend: Backend) {
    let app = TestApp::builder(backend).arg("--workers", 0).spawn().await;
    let p = problem(app.post_json("/async", &json!({"text": "a"})).await, 422).await;
    assert_eq!(fields(&p), ["callback_url"]);
    let p = problem(
        app.post_json("/async", &json!({"text": "a", "callback_url": 7}))
            .await,
        422,
    )
    .await;
    assert_eq!(fields(&p), ["callback_url"]);
    let p = problem(
        app.post_json("/async", &json!({"text": "", "callback_url": null}))
            .await,
        422,
    )
    .await;
    assert_eq!(fields(&p), ["text", "callback_url"]);
    let p = problem(
        app.post_json("/async", &json!({"text": "a", "callback_url": "not a url"}))
            .await,
        400,
    )
    .await;
    assert_eq!(p["type"], "/problems/callback-refused");
}

async fn a_body_over_the_limit_is_a_clean_413(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let big = json!({ "text": "a".repeat(256 * 1024) }).to_string();
    for path in ["/sync", "/async"] {
        let p = problem(
            post_raw(&app, path, Some("application/json"), big.clone()).await,
            413,
        )
        .await;
        assert_eq!(p["type"], "/problems/payload-too-large");
    }
    // Exactly at the limit is read (and then refused for its text, not its size).
    let text_len = 256 * 1024 - r#"{"text":""}"#.len();
    let at_limit = json!({ "text": "a".repeat(text_len) }).to_string();
    assert_eq!(at_limit.len(), 256 * 1024);
    problem(
        post_raw(&app, "/sync", Some("application/json"), at_limit).await,
        422,
    )
    .await;
    // A chunked body of unknown length is measured as it arrives.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b' '; 8 * 1024])).collect();
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    problem(
        post_raw(&app, "/sync", Some("application/json"), stream).await,
        413,
    )
    .await;
}

async fn a_wrong_or_missing_content_type_is_a_415_checked_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"text": "a"}).to_string();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        None,
    ] {
        let p = problem(post_raw(&app, "/sync", ct, body.clone()).await, 415).await;
        assert_eq!(p["type"], "/problems/unsupported-media-type");
    }
    // 415 comes before 413.
    problem(
        post_raw(&app, "/async", Some("text/plain"), "x".repeat(300 * 1024)).await,
        415,
    )
    .await;
    // Parameters and case do not matter.
    let ok = post_raw(&app, "/sync", Some("Application/JSON; charset=utf-8"), body).await;
    assert_eq!(ok.status(), 200);
}

async fn unknown_ids_and_routes_are_404_and_wrong_methods_405(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/requests/0190a0b2-0000-7000-8000-000000000000",
        "/requests/not-a-uuid",
        "/nope",
    ] {
        problem(app.get(path).await, 404).await;
    }
    let r = app.get("/sync").await;
    let allow = r.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("POST"), "{allow}");
    problem(r, 405).await;
    let r = app
        .client
        .delete(app.url("/requests"))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["allow"].to_str().unwrap().contains("GET"));
    problem(r, 405).await;
    problem(app.client.put(app.url("/async")).send().await.unwrap(), 405).await;
}

async fn a_malformed_idempotency_key_is_a_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let long = "k".repeat(256);
    for key in [
        long.as_bytes(),
        b"caf\xc3\xa9".as_slice(),
        b"tab\there".as_slice(),
    ] {
        let r = app
            .client
            .post(app.url("/sync"))
            .header(
                "idempotency-key",
                reqwest::header::HeaderValue::from_bytes(key).unwrap(),
            )
            .json(&json!({"text": "a"}))
            .send()
            .await
            .unwrap();
        let p = problem(r, 400).await;
        assert_eq!(p["type"], "/problems/invalid-idempotency-key");
    }
}

async fn no_input_produces_a_500_or_a_dropped_connection(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // A deterministic spread of odd bodies: every answer is a 2xx or a 4xx.
    let odd = [
        "{\"text\": \"\\u0000\"}",
        "{\"text\": \"a\", \"count\": 99999999999999999999999999}",
        "{\"text\": \"a\", \"count\": -0}",
        "{\"text\": \"a\", \"text\": 5}",
        &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        &format!("{{\"text\": \"{}\"}}", "\\u00e9".repeat(10_000)),
        "{\"text\": \"a\", \"callback_url\": \"http://[::1\"}",
        "{\"text\": {\"nested\": [1, {\"deep\": null}]}}",
    ];
    for path in ["/sync", "/async"] {
        for body in odd {
            let r = post_raw(&app, path, Some("application/json"), body.to_owned()).await;
            let s = r.status().as_u16();
            assert!((200..500).contains(&s), "{path} {body:.60}: {s}");
        }
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
}

both_backends!(
    a_body_that_is_not_a_json_object_is_a_400,
    each_wrong_field_gets_its_own_422_entry,
    async_callback_url_missing_or_mistyped_is_a_422_and_unparsable_is_a_400,
    a_body_over_the_limit_is_a_clean_413,
    a_wrong_or_missing_content_type_is_a_415_checked_first,
    unknown_ids_and_routes_are_404_and_wrong_methods_405,
    a_malformed_idempotency_key_is_a_400,
    no_input_produces_a_500_or_a_dropped_connection,
);
