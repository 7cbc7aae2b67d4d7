//! Operations endpoints: liveness, readiness and Prometheus metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use super::error::{ApiError, ServiceUnavailable};
use super::state::AppState;
use crate::telemetry::metrics as m;

/// How long /readyz and /metrics wait for the database.
const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(example = "healthy")]
    pub status: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process runs", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "healthy" })
}

/// Readiness: 200 when the database answers reads and writes and migrations are applied;
/// 503 otherwise, and from the first moment of a shutdown.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready to accept requests", body = Readiness),
    ServiceUnavailable,
))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    state.refuse_when_draining()?;
    match tokio::time::timeout(DB_PROBE_TIMEOUT, state.store.ready()).await {
        Ok(Ok(())) => Ok(Json(Readiness {
            status: "ready",
            database: state.store.backend(),
        })),
        Ok(Err(e)) => {
            metrics::counter!(m::DB_ERRORS, "op" => "ready").increment(1);
            tracing::warn!(error = %e, "readiness probe failed");
            Err(ApiError::Unavailable("the database does not answer"))
        }
        Err(_) => Err(ApiError::Unavailable(
            "the database does not answer in time",
        )),
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match tokio::time::timeout(DB_PROBE_TIMEOUT, state.store.job_counts()).await {
        Ok(Ok(c)) => {
            metrics::gauge!(m::JOBS, "state" => "pending").set(c.pending as f64);
            metrics::gauge!(m::CIRCUITS_OPEN).set(c.circuits_open as f64);
        }
        _ => metrics::counter!(m::DB_ERRORS, "op" => "job_counts").increment(1),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
