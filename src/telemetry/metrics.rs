//! Every metric the service exports, by name, in one place (SPEC §2 "Operations").
//!
//! The `metrics` facade has one recorder per process; [`install`] sets it up once and
//! returns the handle that `GET /metrics` renders.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests by `route`, `method` and `status`.
pub const HTTP_REQUESTS: &str = "consuma_http_requests_total";
/// HTTP latency in seconds, by `route`, `method` and `status`.
pub const HTTP_DURATION: &str = "consuma_http_request_duration_seconds";
/// Duration of the work itself (delay included), by `mode` and `outcome`.
pub const WORK_DURATION: &str = "consuma_work_duration_seconds";
/// Works running right now, by `mode`.
pub const WORK_IN_FLIGHT: &str = "consuma_work_in_flight";
/// Jobs by `state`: `pending` = async requests whose callback is not terminal (kept
/// counts, the same on every instance sharing the database), `processing` = jobs this
/// instance is running.
pub const JOBS: &str = "consuma_jobs";
/// Callback attempts by `outcome` (delivered, retry, failed).
pub const CALLBACK_ATTEMPTS: &str = "consuma_callback_attempts_total";
/// Deliveries postponed by an open circuit (SPEC §8); waits for the cap are not counted.
pub const CALLBACK_DEFERRED: &str = "consuma_callback_deferred_total";
/// Destinations whose circuit is open (or being probed), read from the database.
pub const CIRCUITS_OPEN: &str = "consuma_callback_circuits_open";
/// Terminal records removed by retention (SPEC §12).
pub const PRUNED: &str = "consuma_pruned_total";
/// Seconds from accepting an async request to its callback being delivered.
pub const DELIVERY_LATENCY: &str = "consuma_callback_delivery_seconds";
/// Database errors, by `op`.
pub const DB_ERRORS: &str = "consuma_db_errors_total";
/// Idempotent replays answered, by `route`.
/// Counter: PATCH /destinations/{id} that changed a destination (SPEC §14).
pub const DESTINATION_CHANGES: &str = "consuma_destination_changes_total";
pub const IDEMPOTENT_REPLAYS: &str = "consuma_idempotent_replays_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Installs the process-wide recorder (once) and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder was installed first; then keep ours unused.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            at_zero();
            handle
        })
        .clone()
}

/// Every documented series exists from the start, at zero (SPEC §2 "Operations"): an
/// alert on `consuma_db_errors_total` must not wait for the first error. Labelled series
/// start with the label values they can take; HTTP series with the scrape's own.
fn at_zero() {
    use metrics::{counter, gauge, histogram};
    counter!(CALLBACK_DEFERRED).increment(0);
    counter!(PRUNED).increment(0);
    counter!(DESTINATION_CHANGES).increment(0);
    gauge!(CIRCUITS_OPEN).set(0.0);
    let scrape = [("route", "/metrics"), ("method", "GET"), ("status", "200")];
    counter!(HTTP_REQUESTS, &scrape).increment(0);
    let _ = histogram!(HTTP_DURATION, &scrape);
    for mode in ["sync", "async"] {
        gauge!(WORK_IN_FLIGHT, "mode" => mode).increment(0.0);
        for outcome in ["completed", "failed"] {
            let _ = histogram!(WORK_DURATION, "mode" => mode, "outcome" => outcome);
        }
    }
    for state in ["pending", "processing"] {
        gauge!(JOBS, "state" => state).increment(0.0);
    }
    for outcome in ["delivered", "retry", "failed", "expired"] {
        counter!(CALLBACK_ATTEMPTS, "outcome" => outcome).increment(0);
    }
    let _ = histogram!(DELIVERY_LATENCY);
    for op in DB_OPS {
        counter!(DB_ERRORS, "op" => *op).increment(0);
    }
    for route in ["/sync", "/async"] {
        counter!(IDEMPOTENT_REPLAYS, "route" => route).increment(0);
    }
    // Per-work series exist from the start for the built-in work.
    for outcome in [
        "completed",
        "rejected",
        "bad_answer",
        "unavailable",
        "timeout",
        "failed",
    ] {
        counter!(crate::works::run::WORK_ATTEMPTS, "work" => "text", "outcome" => outcome)
            .increment(0);
    }
    let _ = histogram!(crate::works::run::WORK_ATTEMPT_DURATION, "work" => "text");
}

/// The `op` labels of [`DB_ERRORS`].
pub const DB_OPS: &[&str] = &["claim", "expire", "job_counts", "ready", "record"];

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route, method and status");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency");
    describe_histogram!(
        WORK_DURATION,
        Unit::Seconds,
        "Duration of the work, simulated delay included"
    );
    describe_gauge!(WORK_IN_FLIGHT, "Works running now");
    describe_gauge!(
        JOBS,
        "Async jobs: pending = callbacks not yet terminal (all instances), processing = running here"
    );
    describe_counter!(CALLBACK_ATTEMPTS, "Callback delivery attempts by outcome");
    describe_counter!(
        DESTINATION_CHANGES,
        "Destinations paused, resumed or given a rate limit (PATCH /destinations/{id})"
    );
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "Time from accepting an async request to its delivered callback"
    );
    describe_counter!(DB_ERRORS, "Database errors by operation");
    describe_counter!(
        CALLBACK_DEFERRED,
        "Deliveries postponed by an open circuit (waits for the per-destination cap are not counted)"
    );
    describe_gauge!(
        CIRCUITS_OPEN,
        "Destinations whose circuit is open or being probed"
    );
    describe_counter!(PRUNED, "Terminal records deleted by retention");
    describe_counter!(IDEMPOTENT_REPLAYS, "Idempotent replays answered, by route");
}
