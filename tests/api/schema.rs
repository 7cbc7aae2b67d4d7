//! The OpenAPI document against the service (SPEC §2 "Operations": "an OpenAPI 3.1
//! document that matches the real behaviour"). CI also runs schemathesis against it
//! (`.ci/schemathesis.sh`); these tests pin what schemathesis found, or could not reach.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, work};

/// The routes the router serves, apart from the Swagger UI under /docs.
const SERVED: [&str; 19] = [
    "/sync",
    "/async",
    "/requests",
    "/requests/{id}",
    "/requests/{id}/attempts",
    "/destinations",
    "/destinations/{id}",
    "/requests/{id}/redeliver",
    "/requests/redeliver",
    "/stats/callbacks",
    "/me",
    "/healthz",
    "/readyz",
    "/metrics",
    "/problems/{slug}",
    "/openapi.json",
    "/sync/{work}",
    "/async/{work}",
    "/works",
];

async fn a_redelivery_of_an_id_that_is_no_uuid_is_simply_unknown(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // `%FF` used to be the framework's path rejection, a 400 the document does not list.
    for id in ["%FF", "%C3%28", "%00", "not-a-uuid"] {
        let r = app
            .client
            .post(app.url(&format!("/requests/{id}/redeliver")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{id}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "/problems/not-found", "{id}");
    }
}

#[tokio::test]
async fn every_route_served_is_documented_and_every_documented_one_is_served() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = app.get_json("/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(documented, SERVED.into_iter().collect());
    let id = uuid::Uuid::nil().to_string();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            // OpenAPI 3.1 requires a description on every response.
            for (status, response) in operation["responses"].as_object().unwrap() {
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {status} has no description"
                );
            }
            let concrete = path.replace("{id}", &id).replace("{slug}", "not-found");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app
                .client
                .request(method.clone(), app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16().to_string();
            assert!(
                item[method.as_str().to_lowercase()]["responses"][&status].is_object(),
                "{method} {concrete} answered an undocumented {status}"
            );
            if status == "404" {
                let body: Value = r.json().await.unwrap();
                assert_ne!(body["detail"], "no such route", "{method} {concrete}");
            }
        }
    }
}

#[tokio::test]
async fn the_documented_inputs_are_the_accepted_ones() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = app.get_json("/openapi.json").await;
    let schemas = &doc["components"]["schemas"];

    // `count` may be left out, not sent as null.
    let count = &schemas["SyncRequest"]["properties"]["count"];
    assert_eq!(count["type"], "integer", "{count}");
    let r = app.post_sync(json!({"text": "a", "count": null})).await;
    assert_eq!(r.status(), 422);
    assert_eq!(app.post_sync(json!({"text": "a"})).await.status(), 200);

    // Idempotency-Key: 1 to 255 printable ASCII.
    let key = &doc["paths"]["/sync"]["post"]["parameters"][0];
    assert_eq!(key["name"], "Idempotency-Key");
    assert_eq!(key["schema"]["type"], "string", "{key}");
    assert_eq!(
        (&key["schema"]["minLength"], &key["schema"]["maxLength"]),
        (&json!(1), &json!(255))
    );
    for (value, status) in [
        ("", 400),
        (&*"k".repeat(256), 400),
        (&*"k".repeat(255), 200),
    ] {
        let r = app
            .client
            .post(app.url("/sync"))
            .header("idempotency-key", value)
            .json(&work("a", 1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "key of {} characters", value.len());
    }

    // Tenant names, in a query and in a body.
    let tenant = "^[a-z0-9_-]{1,64}$";
    let list = doc["paths"]["/requests"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = list.iter().find(|p| p["name"] == "tenant").unwrap();
    assert_eq!(param["schema"]["pattern"], tenant);
    assert_eq!(app.get("/requests?tenant=").await.status(), 422);
    let bulk = &schemas["BulkRedeliveryRequest"]["properties"];
    assert_eq!(bulk["tenant"]["pattern"], tenant);
    assert_eq!(bulk["since"]["format"], "date-time");
    assert_eq!(schemas["OnlyFailed"]["enum"], json!(["failed"]));
    let since = "2026-11-30T12:00:00Z";
    for (body, status) in [
        (
            json!({"callback_status": "failed", "since": since, "tenant": ""}),
            422,
        ),
        (json!({"callback_status": "sent", "since": since}), 422),
        (
            json!({"callback_status": "failed", "since": "yesterday"}),
            422,
        ),
        (
            json!({"callback_status": "failed", "since": since, "tenant": null}),
            202,
        ),
    ] {
        let r = app.post_json("/requests/redeliver", &body).await;
        assert_eq!(r.status(), status, "{body}");
    }

    // Exactly the documented problem types are served.
    let slugs = doc["paths"]["/problems/{slug}"]["get"]["parameters"][0]["schema"]["enum"]
        .as_array()
        .unwrap();
    assert!(slugs.len() > 10);
    for slug in slugs {
        let r = app
            .get(&format!("/problems/{}", slug.as_str().unwrap()))
            .await;
        assert_eq!(r.status(), 200, "{slug}");
    }
    assert_eq!(app.get("/problems/no-such-thing").await.status(), 404);
}

#[tokio::test]
async fn the_document_declares_the_405_of_get_requests_redeliver_and_every_retry_after() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = app.get_json("/openapi.json").await;
    // `redeliver` is a string but no id: GET /requests/{id} with it is SPEC §9's 405.
    let detail = &doc["paths"]["/requests/{id}"]["get"];
    assert_eq!(detail["parameters"][0]["schema"]["format"], "uuid");
    assert!(detail["responses"]["405"]["headers"]["Allow"].is_object());
    let r = app.get("/requests/redeliver").await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    // Every 503 (and the 409 and 429 of a submission) says when to come back.
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let submit = path == "/sync" || path == "/async";
                if status == "503" || (submit && (status == "409" || status == "429")) {
                    seen += 1;
                    assert!(
                        response["headers"]["Retry-After"].is_object(),
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    assert!(seen >= 8, "{seen}");
}

both_backends!(a_redelivery_of_an_id_that_is_no_uuid_is_simply_unknown);
