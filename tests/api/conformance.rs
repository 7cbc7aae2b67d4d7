//! shared/conformance/work_vectors.json, checked through POST /sync over HTTP.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

fn vectors() -> Value {
    serde_json::from_str(include_str!("../data/work_vectors.json")).expect("vectors parse")
}

async fn every_work_vector_matches_over_http(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc = vectors();
    for v in doc["vectors"].as_array().unwrap() {
        let response = app.post_sync(v["input"].clone()).await;
        assert_eq!(response.status(), 200, "vector {}", v["name"]);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "completed");
        for (field, expected) in v["expected"].as_object().unwrap() {
            assert_eq!(
                &body["result"][field], expected,
                "vector {}, field {field}",
                v["name"]
            );
        }
        assert!(
            body["result"]["processing_time_ms"].is_f64()
                || body["result"]["processing_time_ms"].is_u64()
        );
    }
}

async fn every_invalid_input_gets_a_422_naming_its_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc = vectors();
    for case in doc["invalid"].as_array().unwrap() {
        let response = app.post_sync(case["body"].clone()).await;
        assert_eq!(response.status(), 422, "case {}", case["name"]);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        let errors = problem["errors"].as_array().expect("errors list");
        assert!(!errors.is_empty(), "case {}", case["name"]);
        for e in errors {
            assert!(
                matches!(e["field"].as_str(), Some("text" | "count")),
                "case {}: {e}",
                case["name"]
            );
        }
    }
}

both_backends!(
    every_work_vector_matches_over_http,
    every_invalid_input_gets_a_422_naming_its_field
);
