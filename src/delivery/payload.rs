//! The callback body (SPEC §2 "The callback").
//!
//! `{"request_id", "status", "result", "error", "timestamp"}`, made from what the record
//! keeps of the finished work: the stored `output_data` JSON is embedded as it is, and the
//! timestamp is the stored `completed_at` (whole milliseconds), so every attempt
//! (including one repeated after a crash, or a redelivery) sends the same bytes without
//! the body being stored twice; only `webhook-timestamp` and the signature change between
//! attempts. `timestamp` is when the result was finalised, in RFC 3339 UTC
//! with milliseconds and a `Z`, like every other timestamp of the API.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::work::WorkResult;

/// The body's shape; the field order is the serialisation order.
#[derive(Serialize)]
struct CallbackBody<'a> {
    request_id: uuid::Uuid,
    status: &'static str,
    result: Option<&'a RawValue>,
    error: Option<&'a str>,
    timestamp: String,
    /// The work's name (SPEC §13, `text` included); absent for records that name none
    /// (every record made before works), so their bytes stay what they were (§17).
    #[serde(skip_serializing_if = "Option::is_none")]
    work: Option<&'a str>,
}

/// The callback body for a finished request: `status` is `completed` with the result and a
/// null `error`, or `failed` with a null `result` and the error text.
pub fn callback_body(
    request_id: uuid::Uuid,
    result: Result<&WorkResult, &str>,
    finalised_at: DateTime<Utc>,
) -> String {
    match result {
        Ok(r) => stored_callback_body(request_id, Ok(&result_json(r)), finalised_at),
        Err(e) => stored_callback_body(request_id, Err(e), finalised_at),
    }
}

/// The `WorkResult` as the record keeps it (`output_data`).
pub fn result_json(r: &WorkResult) -> String {
    // Strings, integers, floats: serde_json cannot fail on these (a non-finite float
    // would become `null`, not an error).
    serde_json::to_string(r).expect("a work result always serialises")
}

/// The callback body from what the record keeps: the `output_data` JSON of a completed
/// work, or the error of a failed one, and when it was finalised. (A stored output that is
/// not JSON, which only a foreign write could make, is sent as a `null` result.)
pub fn stored_callback_body(
    request_id: uuid::Uuid,
    result: Result<&str, &str>,
    finalised_at: DateTime<Utc>,
) -> String {
    work_callback_body(request_id, result, finalised_at, None)
}

/// [`stored_callback_body`] of a request naming `work`: the same members and `"work"`.
pub fn work_callback_body(
    request_id: uuid::Uuid,
    result: Result<&str, &str>,
    finalised_at: DateTime<Utc>,
    work: Option<&str>,
) -> String {
    let raw = match result {
        Ok(json) => RawValue::from_string(json.to_owned()).ok(),
        Err(_) => None,
    };
    let (status, error) = match result {
        Ok(_) => ("completed", None),
        Err(e) => ("failed", Some(e)),
    };
    let body = CallbackBody {
        request_id,
        status,
        result: raw.as_deref(),
        error,
        // Truncated to milliseconds, as the record keeps it.
        timestamp: finalised_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        work,
    };
    serde_json::to_string(&body).expect("a callback body always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;
    use serde_json::{Value, json};

    fn result() -> WorkResult {
        WorkResult {
            input_hash: "0123456789abcdef".into(),
            word_count: 2,
            character_count: 11,
            processed_text: "HELLO WORLD".into(),
            iterations: 1,
            processing_time_ms: 200.57,
        }
    }

    fn id() -> uuid::Uuid {
        "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b".parse().unwrap()
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 14, 15, 9, 26).unwrap()
            + chrono::Duration::microseconds(535_897)
    }

    #[test]
    fn a_completed_body_has_exactly_the_specified_fields() {
        let body = callback_body(id(), Ok(&result()), at());
        assert_eq!(
            body,
            concat!(
                r#"{"request_id":"0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b","status":"completed","#,
                r#""result":{"input_hash":"0123456789abcdef","word_count":2,"character_count":11,"#,
                r#""processed_text":"HELLO WORLD","iterations":1,"processing_time_ms":200.57},"#,
                r#""error":null,"timestamp":"2025-03-14T15:09:26.535Z"}"#
            )
        );
    }

    #[test]
    fn a_failed_body_has_a_null_result_and_the_error() {
        let body: Value =
            serde_json::from_str(&callback_body(id(), Err("the work panicked"), at())).unwrap();
        assert_eq!(
            body,
            json!({
                "request_id": "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b",
                "status": "failed",
                "result": null,
                "error": "the work panicked",
                "timestamp": "2025-03-14T15:09:26.535Z",
            })
        );
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let r = result();
        let first = callback_body(id(), Ok(&r), at());
        for _ in 0..3 {
            assert_eq!(callback_body(id(), Ok(&r), at()), first);
        }
        assert_eq!(
            callback_body(id(), Err("x \"quoted\"\n"), at()),
            callback_body(id(), Err("x \"quoted\"\n"), at())
        );
    }

    #[test]
    fn the_timestamp_keeps_milliseconds_even_when_they_are_zero() {
        let whole = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        let body: Value = serde_json::from_str(&callback_body(id(), Err("e"), whole)).unwrap();
        assert_eq!(body["timestamp"], "2025-01-02T03:04:05.000Z");
    }

    #[test]
    fn the_body_made_from_the_stored_outcome_is_the_same_bytes() {
        let r = result();
        let fresh = callback_body(id(), Ok(&r), at());
        let stored = stored_callback_body(id(), Ok(&result_json(&r)), at());
        assert_eq!(fresh, stored);
        assert_eq!(
            callback_body(id(), Err("boom"), at()),
            stored_callback_body(id(), Err("boom"), at())
        );
    }

    #[test]
    fn a_work_is_named_last_and_records_without_one_keep_the_old_shape() {
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 5, 0, 0).unwrap();
        let id = uuid::Uuid::nil();
        let old = stored_callback_body(id, Ok("{}"), at);
        assert_eq!(old, work_callback_body(id, Ok("{}"), at, None));
        assert!(!old.contains("\"work\""), "{old}");
        let named = work_callback_body(id, Err("boom"), at, Some("pdf"));
        assert!(named.ends_with(r#","work":"pdf"}"#), "{named}");
        let v: Value = serde_json::from_str(&named).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["error"].as_str()),
            (Some("failed"), Some("boom"))
        );
    }
}
