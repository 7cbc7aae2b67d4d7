//! Submit-time cost of the callback policy (SPEC §4 says "microseconds"; the target is
//! ≤ 5 µs per URL). Measures `CallbackPolicy::check_url` over the shared conformance cases:
//! the whole mix (per-URL time = reported time / number of URLs, or read the elements/s
//! throughput), accept and reject halves apart, and a few single URLs that take the
//! expensive paths (IDNA, numeric IPv4 forms, IPv6 embeddings).
//!
//! Run: `cargo bench --bench ssrf_check`.

use std::hint::black_box;

use consuma::ssrf::CallbackPolicy;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CASES: &str = include_str!("../tests/data/ssrf_cases.json");

fn urls(kind: &str) -> Vec<String> {
    let cases: serde_json::Value = serde_json::from_str(CASES).expect("valid cases file");
    let list = cases[kind].as_array().expect("a list of cases");
    list.iter()
        .map(|c| c["url"].as_str().expect("a url").to_owned())
        .collect()
}

/// Checks every URL once; returns how many were accepted so nothing is optimised away.
fn check_all(policy: &CallbackPolicy, urls: &[String]) -> usize {
    urls.iter()
        .filter(|u| policy.check_url(black_box(u)).is_ok())
        .count()
}

fn mixes(c: &mut Criterion) {
    let policy = CallbackPolicy::new(vec![], vec![]);
    let (accept, reject) = (urls("accept"), urls("reject"));
    let mix: Vec<String> = accept.iter().chain(&reject).cloned().collect();
    let mut group = c.benchmark_group("check_url");
    for (name, list) in [("mix", &mix), ("accept", &accept), ("reject", &reject)] {
        group.throughput(Throughput::Elements(list.len() as u64));
        group.bench_function(name, |b| b.iter(|| check_all(&policy, list)));
    }
    group.finish();
}

fn singles(c: &mut Criterion) {
    let policy = CallbackPolicy::new(vec![], vec![]);
    let mut group = c.benchmark_group("check_url_single");
    for (name, url) in [
        (
            "plain_host",
            "https://hooks.example.com:8443/cb?job=42&sig=abc",
        ),
        ("idn_host", "https://пример.рф/callback"),
        ("enclosed_digits_ipv4", "http://①②⑦.⓪.⓪.①/"),
        ("dotless_hex_ipv4", "http://0xA9FEA9FE/"),
        (
            "teredo_ipv6",
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
        ),
        ("metadata_name", "http://Metadata.Google.Internal./"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| policy.check_url(black_box(url)).is_ok())
        });
    }
    group.finish();
}

criterion_group!(benches, mixes, singles);
criterion_main!(benches);
