//! The work (SPEC §1): one deterministic function shared by `/sync` and the async engine.
//!
//! Pure apart from the simulated delay, which is a Tokio timer and never blocks a thread:
//! thousands of requests may sleep here at once. The Unicode rules follow CPython 3.11,
//! against which `shared/conformance/work_vectors.json` was produced:
//! - whitespace is what `str.isspace()` accepts, which adds U+001C..U+001F to the Unicode
//!   `White_Space` set that Rust's `char::is_whitespace` implements;
//! - case mapping is the full mapping (`ß` → `SS`, final sigma), which Rust's
//!   `str::to_uppercase`/`to_lowercase` implement as Python's `upper`/`lower` do.

use std::borrow::Cow;
use std::time::Duration;

use tokio::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most Unicode scalar values a `text` may hold.
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Accepted range of `count`.
pub const COUNT_RANGE: std::ops::RangeInclusive<i64> = 1..=100;

/// A validated work input: `text` holds 1..=10,000 scalar values, `count` is in 1..=100.
///
/// Built only by [`WorkInput::new`], so holding one proves the input was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkInput {
    text: String,
    count: u32,
}

/// Why a `text` or `count` is not acceptable; the message is written for the API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    Text(String),
    Count(String),
}

impl WorkInput {
    /// Checks both fields, reporting every field that is wrong.
    pub fn new(text: String, count: i64) -> Result<Self, Vec<InputError>> {
        let mut errors = Vec::new();
        if let Err(e) = check_text(&text) {
            errors.push(InputError::Text(e));
        }
        if !COUNT_RANGE.contains(&count) {
            errors.push(InputError::Count(count_range_message()));
        }
        match errors.is_empty() {
            true => Ok(Self {
                text,
                count: count as u32,
            }),
            false => Err(errors),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn count(&self) -> u32 {
        self.count
    }
}

/// The accepted input as stored with its request and fingerprinted for its idempotency
/// key: defaults applied, keys in a fixed order, `callback_url` only for async. The
/// intake writes it borrowing the request ([`StoredInput::of`]); the engine reads it
/// back, owned, and checks it again ([`StoredInput::into_input`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredInput<'a> {
    pub text: Cow<'a, str>,
    pub count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<Cow<'a, str>>,
}

impl<'a> StoredInput<'a> {
    /// The stored form of a checked input, with the callback of an async request.
    pub fn of(input: &'a WorkInput, callback_url: Option<&'a str>) -> Self {
        Self {
            text: Cow::Borrowed(input.text()),
            count: i64::from(input.count()),
            callback_url: callback_url.map(Cow::Borrowed),
        }
    }

    /// The JSON written to the request's `input_data`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain structs serialise")
    }

    /// The work's input again, checked as at submission.
    pub fn into_input(self) -> Result<WorkInput, Vec<InputError>> {
        WorkInput::new(self.text.into_owned(), self.count)
    }
}

/// `Ok` when `count` is in range.
pub fn check_count(count: i64) -> Result<i64, String> {
    match COUNT_RANGE.contains(&count) {
        true => Ok(count),
        false => Err(count_range_message()),
    }
}

/// The message for a `count` that is not an integer in range.
pub fn count_range_message() -> String {
    format!(
        "must be an integer from {} to {}",
        COUNT_RANGE.start(),
        COUNT_RANGE.end()
    )
}

/// `Ok` when `text` holds 1 to 10,000 Unicode scalar values.
pub fn check_text(text: &str) -> Result<(), String> {
    let n = text.chars().count();
    if n == 0 {
        return Err("must not be empty".into());
    }
    if n > MAX_TEXT_CHARS {
        return Err(format!(
            "must hold at most {MAX_TEXT_CHARS} characters (Unicode scalar values), got {n}"
        ));
    }
    Ok(())
}

/// The output of the work (SPEC §1 `WorkResult`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkResult {
    /// First 16 lowercase hex digits of SHA-256 over `text + ":" + count`.
    pub input_hash: String,
    /// Words when split on runs of Python `str.isspace()` whitespace.
    pub word_count: u64,
    /// Unicode scalar values in `text`.
    pub character_count: u64,
    /// `text` after `count` alternating full upper/lower case passes.
    pub processed_text: String,
    /// Equal to `count`.
    pub iterations: u32,
    /// Wall time including the simulated delay, rounded to 2 decimals.
    pub processing_time_ms: f64,
}

/// Why the work did not produce a result. Only reachable through a panic inside the work
/// or, in builds with the `fault-injection` feature, on purpose.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WorkFailed(pub String);

/// Performs the work: the non-blocking delay, then the computation.
pub async fn perform(input: &WorkInput, delay: Duration) -> Result<WorkResult, WorkFailed> {
    let started = Instant::now();
    tokio::time::sleep(delay).await;
    inject_fault(input)?;
    let mut result = compute(input);
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    result.processing_time_ms = (elapsed_ms * 100.0).round() / 100.0;
    Ok(result)
}

/// The deterministic part of the work; `processing_time_ms` is left at zero.
pub fn compute(input: &WorkInput) -> WorkResult {
    let text = input.text();
    WorkResult {
        input_hash: input_hash(text, input.count),
        word_count: text
            .split(is_python_space)
            .filter(|w| !w.is_empty())
            .count() as u64,
        character_count: text.chars().count() as u64,
        processed_text: alternate_case(text, input.count),
        iterations: input.count,
        processing_time_ms: 0.0,
    }
}

fn input_hash(text: &str, count: u32) -> String {
    let digest = Sha256::new()
        .chain_update(text.as_bytes())
        .chain_update(b":")
        .chain_update(count.to_string().as_bytes())
        .finalize();
    hex::encode(&digest[..8])
}

/// Python's `str.isspace()`: Unicode `White_Space` plus the information separators
/// U+001C..U+001F (bidirectional class B or S), which Rust does not count as whitespace.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn alternate_case(text: &str, count: u32) -> String {
    let mut out = text.to_owned();
    for pass in 0..count {
        out = match pass % 2 {
            0 => out.to_uppercase(),
            _ => out.to_lowercase(),
        };
    }
    out
}

/// Text that makes the work fail, so tests can see a work failure end to end.
#[cfg(feature = "fault-injection")]
pub const FAULT_MARKER: &str = "consuma-fault:";

#[cfg(feature = "fault-injection")]
fn inject_fault(input: &WorkInput) -> Result<(), WorkFailed> {
    match input.text().strip_prefix(FAULT_MARKER) {
        Some("panic") => panic!("injected panic in the work"),
        Some(reason) => Err(WorkFailed(format!("injected failure: {reason}"))),
        None => Ok(()),
    }
}

#[cfg(not(feature = "fault-injection"))]
fn inject_fault(_: &WorkInput) -> Result<(), WorkFailed> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_input_keeps_its_bytes_and_reads_back() {
        let input = WorkInput::new("a \"b\"".into(), 3).unwrap();
        let sync = StoredInput::of(&input, None).to_json();
        assert_eq!(sync, r#"{"text":"a \"b\"","count":3}"#);
        let async_ = StoredInput::of(&input, Some("https://x.test/h")).to_json();
        assert_eq!(
            async_,
            r#"{"text":"a \"b\"","count":3,"callback_url":"https://x.test/h"}"#
        );
        for stored in [sync, async_] {
            let back: StoredInput = serde_json::from_str(&stored).unwrap();
            assert_eq!(back.into_input(), Ok(input.clone()));
        }
        let out_of_range: StoredInput = serde_json::from_str(r#"{"text":"a","count":0}"#).unwrap();
        assert!(out_of_range.into_input().is_err());
    }

    fn input(text: &str, count: i64) -> WorkInput {
        WorkInput::new(text.into(), count).expect("valid input")
    }

    #[test]
    fn sharp_s_does_not_simply_cancel() {
        assert_eq!(compute(&input("ẞ", 1)).processed_text, "ẞ");
        assert_eq!(compute(&input("ẞ", 2)).processed_text, "ß");
        assert_eq!(compute(&input("ẞ", 3)).processed_text, "SS");
    }

    #[test]
    fn information_separators_split_words_as_in_python() {
        assert_eq!(compute(&input("a\u{1c}b\u{1f}c", 1)).word_count, 3);
        assert_eq!(compute(&input(" \t\u{3000} ", 1)).word_count, 0);
        // U+200B ZERO WIDTH SPACE is not whitespace in Python either.
        assert_eq!(compute(&input("a\u{200b}b", 1)).word_count, 1);
    }

    #[test]
    fn characters_are_scalar_values_not_bytes() {
        let r = compute(&input("héllo 😀", 1));
        assert_eq!(r.character_count, 7);
    }

    #[test]
    fn hash_covers_text_colon_count() {
        // sha256("hello world:1"), as in the conformance vectors.
        assert_eq!(
            compute(&input("hello world", 1)).input_hash,
            "7d1990953f6a1b91"
        );
    }

    #[test]
    fn out_of_range_inputs_name_each_field() {
        let errs = WorkInput::new(String::new(), 0).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(WorkInput::new("x".repeat(MAX_TEXT_CHARS + 1), 1).is_err());
        assert!(WorkInput::new("é".repeat(MAX_TEXT_CHARS), 100).is_ok());
    }

    #[test]
    fn every_conformance_vector_matches() {
        let raw = include_str!("../tests/data/work_vectors.json");
        let doc: serde_json::Value = serde_json::from_str(raw).unwrap();
        for v in doc["vectors"].as_array().unwrap() {
            let text = v["input"]["text"].as_str().unwrap().to_owned();
            let count = v["input"]["count"].as_i64().unwrap_or(1);
            let got = serde_json::to_value(compute(&WorkInput::new(text, count).unwrap())).unwrap();
            for (k, want) in v["expected"].as_object().unwrap() {
                assert_eq!(&got[k], want, "vector {:?}, field {k}", v["name"]);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_delay_is_part_of_the_processing_time() {
        let r = perform(&input("a", 1), Duration::from_millis(200))
            .await
            .unwrap();
        assert!(r.processing_time_ms >= 200.0, "{}", r.processing_time_ms);
    }
}
