//! Per-request cost of authentication (SPEC §10: the accept rate with a key must stay
//! within 10 % of the rate without one). Measures `KeyRing::caller`, which the layer calls
//! once per request: parsing `Authorization: Bearer`, SHA-256 of the key, one hash-map
//! lookup, the once-a-minute use check, and cloning the `Caller`; beside it the open
//! ring (no key in the database) and a refused unknown key.
//!
//! Run: `cargo bench --bench auth_check`.

use std::hint::black_box;

use axum::http::HeaderValue;
use chrono::Utc;
use consuma::auth::{ApiKey, KeyRing};
use consuma::store::ApiKeyRow;
use criterion::{Criterion, criterion_group, criterion_main};

/// A ring holding `n` keys; returns it with the first key.
fn ring_of(n: usize) -> (KeyRing, ApiKey) {
    let keys: Vec<ApiKey> = (0..n).map(|_| ApiKey::generate()).collect();
    let rows: Vec<ApiKeyRow> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| ApiKeyRow {
            prefix: k.prefix().to_owned(),
            hash: k.hash().to_hex(),
            tenant: format!("tenant-{}", i % 100),
            admin: false,
            created_at: Utc::now(),
            last_used_at: Some(Utc::now()),
            revoked_at: None,
        })
        .collect();
    let ring = KeyRing::new();
    ring.install(&rows);
    (ring, keys[0].clone())
}

fn caller(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_ring_caller");
    let open = KeyRing::new();
    group.bench_function("open", |b| b.iter(|| open.caller(black_box(None))));
    for n in [1, 10_000] {
        let (ring, key) = ring_of(n);
        let header = HeaderValue::from_str(&format!("Bearer {}", key.reveal())).unwrap();
        group.bench_function(format!("valid_key_of_{n}"), |b| {
            b.iter(|| ring.caller(black_box(Some(&header))))
        });
    }
    let (ring, _) = ring_of(10_000);
    let unknown =
        HeaderValue::from_str(&format!("Bearer {}", ApiKey::generate().reveal())).unwrap();
    group.bench_function("unknown_key_of_10000", |b| {
        b.iter(|| ring.caller(black_box(Some(&unknown))))
    });
    group.finish();
}

criterion_group!(benches, caller);
criterion_main!(benches);
