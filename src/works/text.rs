//! The built-in `text` work (SPEC §1) behind the [`Work`] trait: the same function
//! `/sync` and the engine run, reached through the one code path every work shares.

use std::time::Duration;

use futures::FutureExt;
use serde::Deserialize;
use serde_json::Value;

use super::work::{Work, WorkCall, WorkError};
use crate::work::{self, WorkInput};

/// `text` with its simulated delay (`--work-delay-ms`).
#[derive(Debug, Clone)]
pub struct TextWork {
    pub delay: Duration,
}

#[derive(Deserialize)]
struct TextInput {
    text: String,
    #[serde(default = "one")]
    count: i64,
}

fn one() -> i64 {
    1
}

#[async_trait::async_trait]
impl Work for TextWork {
    fn kind(&self) -> &str {
        "text"
    }

    async fn perform(&self, call: &WorkCall) -> Result<Value, WorkError> {
        let raw: TextInput = call.parse()?;
        let input = WorkInput::new(raw.text, raw.count).map_err(|errors| {
            let fields: Vec<String> = errors
                .iter()
                .map(|e| match e {
                    work::InputError::Text(m) => format!("text {m}"),
                    work::InputError::Count(m) => format!("count {m}"),
                })
                .collect();
            WorkError::rejected(fields.join("; "))
        })?;
        let outcome = std::panic::AssertUnwindSafe(work::perform(&input, self.delay))
            .catch_unwind()
            .await;
        match outcome {
            Ok(Ok(result)) => Ok(serde_json::to_value(result).expect("plain struct")),
            Ok(Err(failed)) => Err(WorkError::failed(failed.to_string())),
            Err(_) => Err(WorkError::failed("the work panicked")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::works::WorkErrorKind;

    #[tokio::test]
    async fn text_through_the_trait_gives_the_work_result() {
        let w = TextWork {
            delay: Duration::ZERO,
        };
        let out = w
            .perform(&WorkCall::new(
                r#"{"text": "hello world", "count": 1}"#,
                "default",
            ))
            .await
            .unwrap();
        assert_eq!(out["input_hash"], "7d1990953f6a1b91");
        assert_eq!(out["processed_text"], "HELLO WORLD");
        let defaulted = w
            .perform(&WorkCall::new(r#"{"text": "a"}"#, "t"))
            .await
            .unwrap();
        assert_eq!(defaulted["iterations"], 1);
    }

    #[tokio::test]
    async fn bad_input_is_rejected_not_retried() {
        let w = TextWork {
            delay: Duration::ZERO,
        };
        for input in [
            r#"{"text": ""}"#,
            r#"{"count": 1}"#,
            r#"{"text": "a", "count": 0}"#,
        ] {
            let e = w.perform(&WorkCall::new(input, "t")).await.unwrap_err();
            assert_eq!(e.kind, WorkErrorKind::Rejected, "{input}");
            assert!(!e.is_retryable());
        }
    }
}
