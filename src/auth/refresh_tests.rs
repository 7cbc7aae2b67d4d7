//! The refresher on tokio's paused clock, reading an in-memory [`Source`]: what each tick
//! installs, what stays as it was across ticks, and which lines say so (once per change).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::HeaderValue;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::super::{ApiKey, Auth, Clock, Refusal};
use super::Source;
use crate::delivery::signing::SigningSecret;
use crate::store::{ApiKeyRow, KeyUse, SigningSecretRow, StoreError, StoreResult};

/// A store's keys and secrets in memory; it can be made to fail, and counts its reads.
#[derive(Default)]
struct Memory {
    keys: Mutex<Vec<ApiKeyRow>>,
    secrets: Mutex<Vec<SigningSecretRow>>,
    failing: AtomicBool,
    reads: AtomicUsize,
}

#[async_trait]
impl Source for Memory {
    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRow>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "the test's database is down".into(),
            ));
        }
        Ok(self.keys.lock().unwrap().clone())
    }

    /// As the stores answer: valid at `at`, each tenant's current secret first.
    async fn signing_secrets(&self, at: DateTime<Utc>) -> StoreResult<Vec<SigningSecretRow>> {
        let mut rows: Vec<SigningSecretRow> = self.secrets.lock().unwrap().clone();
        rows.retain(|r| r.valid_until.is_none_or(|end| end > at));
        rows.sort_by_key(|r| {
            (
                r.tenant.clone(),
                r.valid_until.is_some(),
                -r.created_at.timestamp_millis(),
            )
        });
        Ok(rows)
    }

    async fn record_key_uses(&self, _: &[KeyUse]) -> StoreResult<()> {
        Ok(())
    }
}

/// Wall-clock time that follows tokio's (paused) clock from `Utc::now()` at the start.
fn paused_clock() -> Clock {
    let (start, base) = (Instant::now(), Utc::now());
    Arc::new(move || base + chrono::Duration::from_std(start.elapsed()).unwrap())
}

/// The log lines (JSON) written on this thread while the guard lives.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = Self::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The lines whose message is `message`.
    fn lines(&self, message: &str) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["message"] == message)
            .collect()
    }
}

fn key_row(key: &ApiKey, at: DateTime<Utc>) -> ApiKeyRow {
    ApiKeyRow {
        prefix: key.prefix().to_owned(),
        hash: key.hash().to_hex(),
        tenant: "default".into(),
        admin: true,
        created_at: at,
        last_used_at: None,
        revoked_at: None,
    }
}

fn secret_row(s: &SigningSecret, at: DateTime<Utc>) -> SigningSecretRow {
    SigningSecretRow {
        tenant: "default".into(),
        secret: s.to_whsec(),
        created_at: at,
        valid_until: None,
    }
}

fn bearer(key: &ApiKey) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {}", key.reveal())).unwrap()
}

/// Sleeps until `at` after `start` on the paused clock.
async fn at(start: Instant, ms: u64) {
    sleep_until(start + Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn a_ring_whose_last_key_was_revoked_stays_closed_across_ticks() {
    let (logs, _guard) = Captured::start();
    let clock = paused_clock();
    let key = ApiKey::generate();
    let memory = Arc::new(Memory::default());
    memory.keys.lock().unwrap().push(key_row(&key, clock()));
    let auth = Arc::new(
        Auth::load_from(memory.clone(), None, clock.clone())
            .await
            .unwrap(),
    );
    assert_eq!(
        logs.lines("an API key exists: every route but the public ones now requires one")
            .len(),
        1
    );
    assert!(
        logs.lines("API keys changed").is_empty(),
        "a first load changes nothing"
    );
    let start = Instant::now();
    let stop = CancellationToken::new();
    let refresher = auth.spawn_refresher(stop.clone());
    assert!(auth.keys.caller(Some(&bearer(&key))).is_ok());

    // Revoked between the ticks at 1 s and 2 s: refused from the tick at 2 s on.
    at(start, 1500).await;
    memory.keys.lock().unwrap()[0].revoked_at = Some(clock());
    assert!(
        auth.keys.caller(Some(&bearer(&key))).is_ok(),
        "not before a tick"
    );
    at(start, 2500).await;
    assert_eq!(auth.keys.caller(Some(&bearer(&key))), Err(Refusal::Revoked));
    let changed = logs.lines("API keys changed");
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (changed[0]["revoked"].as_u64(), changed[0]["added"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(changed[0]["revoked_keys"], key.prefix());

    // Tick after tick, with the revoked key, without any key, and with every read
    // failing: the ring still requires a key.
    at(start, 4500).await;
    memory.keys.lock().unwrap().clear();
    at(start, 6500).await;
    memory.failing.store(true, Ordering::SeqCst);
    at(start, 9500).await;
    assert!(auth.keys.requires_key());
    assert_eq!(auth.keys.caller(None), Err(Refusal::Missing));
    assert_eq!(auth.keys.caller(Some(&bearer(&key))), Err(Refusal::Unknown));
    // One read at the load, then one per tick: at 0, 1, 2 … 9 s.
    assert_eq!(memory.reads.load(Ordering::SeqCst), 1 + 10);
    // One line per change, not per tick: the revocation, the removal, the failing streak.
    let changed = logs.lines("API keys changed");
    assert_eq!(changed.len(), 2, "{}", logs.text());
    assert_eq!(changed[1]["removed"].as_u64(), Some(1));
    let failing = "cannot reload API keys and signing secrets; keeping the last ones loaded";
    assert_eq!(logs.lines(failing).len(), 1);
    // Nothing secret: neither the key nor its hash.
    let text = logs.text();
    assert!(
        !text.contains(key.reveal()) && !text.contains(&key.hash().to_hex()),
        "{text}"
    );
    stop.cancel();
    refresher.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn after_a_rotation_both_secrets_sign_until_the_overlap_ends_then_the_new_one_alone() {
    const OVERLAP: Duration = Duration::from_secs(4);
    let (logs, _guard) = Captured::start();
    let clock = paused_clock();
    let (old, new) = (SigningSecret::generate(), SigningSecret::generate());
    let memory = Arc::new(Memory::default());
    memory
        .secrets
        .lock()
        .unwrap()
        .push(secret_row(&old, clock()));
    let auth = Arc::new(
        Auth::load_from(memory.clone(), None, clock.clone())
            .await
            .unwrap(),
    );
    let start = Instant::now();
    let stop = CancellationToken::new();
    let refresher = auth.spawn_refresher(stop.clone());
    let signing = || -> Vec<String> {
        let now = clock();
        auth.secrets
            .for_tenant_at("default", now)
            .iter()
            .map(SigningSecret::to_whsec)
            .collect()
    };
    assert_eq!(signing(), [old.to_whsec()]);

    // `consuma secret rotate --overlap-secs 4` at 1.5 s: the overlap ends at 5.5 s.
    at(start, 1500).await;
    let rotated = clock();
    {
        let mut secrets = memory.secrets.lock().unwrap();
        secrets[0].valid_until = Some(rotated + chrono::Duration::from_std(OVERLAP).unwrap());
        secrets.push(secret_row(&new, rotated));
    }
    assert_eq!(signing(), [old.to_whsec()], "not before the next tick");
    // From the tick at 2 s to the end of the overlap: both, newest first.
    for ms in [2100, 3000, 5499] {
        at(start, ms).await;
        assert_eq!(signing(), [new.to_whsec(), old.to_whsec()], "at {ms} ms");
    }
    // The end is exclusive and honoured on time, before the next tick reloads the book.
    at(start, 5500).await;
    assert_eq!(signing(), [new.to_whsec()], "at the end of the overlap");
    at(start, 9000).await;
    assert_eq!(signing(), [new.to_whsec()], "ticks later");

    // One line when the rotation began (at the tick at 2 s), one when the overlap ended
    // (at the tick at 6 s, when the store no longer returns the old secret).
    let began = logs.lines("signing secret rotation began");
    assert_eq!(began.len(), 1, "{}", logs.text());
    assert_eq!(
        (began[0]["tenant"].as_str(), began[0]["secrets"].as_u64()),
        (Some("default"), Some(2))
    );
    let ended = logs.lines("signing secret overlap ended");
    assert_eq!(ended.len(), 1, "{}", logs.text());
    assert_eq!(ended[0]["secrets"].as_u64(), Some(1));
    let text = logs.text();
    for s in [&old, &new] {
        let whsec = s.to_whsec();
        assert!(
            !text.contains(&whsec["whsec_".len()..]),
            "a secret in the logs: {text}"
        );
    }
    stop.cancel();
    refresher.await.unwrap();
}
