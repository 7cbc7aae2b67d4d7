//! Redelivery (SPEC §11): send a callback again, one request or every failed one since a
//! time; the chart data of delivered and failed callbacks; and who the caller is.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::error::{ApiError, Problem, ServiceUnavailable};
use super::extract::{Fields, JsonObject};
use super::scope::{Scope, check_tenant};
use super::state::AppState;
use crate::auth::Caller;
use crate::store::{
    AdmissionLimits, BulkRedelivery, CallbackStatus, MinuteStats, Redelivery, RedeliveryLimits,
};

/// What a redelivery may not exceed (SPEC §16): the backlog limits of POST /async and
/// `--max-redeliveries`.
fn redelivery_limits(config: &crate::config::Config) -> RedeliveryLimits {
    RedeliveryLimits {
        backlog: AdmissionLimits {
            max_pending: config.max_pending_jobs,
            max_pending_per_tenant: config.max_pending_jobs_per_tenant,
        },
        max_redeliveries: config.max_redeliveries,
    }
}

/// The body of a 202 from POST /requests/{id}/redeliver.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedeliveryQueued {
    pub request_id: Uuid,
    /// Always `pending`.
    #[schema(example = "pending")]
    pub callback_status: CallbackStatus,
}

/// Send an async request's callback again.
///
/// The callback (failed, or sent — a receiver may ask for it again) goes back to
/// `pending`, and a new delivery runs with the same `webhook-id`, `X-Request-Id`, trace
/// and body bytes, signed with the tenant's current secret, with a fresh attempt budget;
/// its attempts continue the numbering, the first marked `trigger: manual`.
#[utoipa::path(
    post, path = "/requests/{id}/redeliver", tag = "requests",
    params(
        ("id" = String, Path, format = Uuid, description = "The request_id (anything else is simply unknown: 404)"),
        ("tenant" = Option<String>, Query, description = "Scopes the lookup like GET /requests (another tenant's name, for a non-admin key: 404)", pattern = "^[a-z0-9_-]{1,64}$"),
    ),
    responses(
        (status = 202, description = "A new delivery is queued", body = RedeliveryQueued,
            headers(("Location" = String, description = "/requests/{id}"))),
        (status = 404, description = "No such request (or another tenant's)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A delivery of this request is pending or running", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A sync request has no callback, or tenant is not a tenant name", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's backlog is at --max-pending-jobs-per-tenant, or the request was redelivered --max-redeliveries times (no Retry-After)", body = Problem, content_type = "application/problem+json"),
        ServiceUnavailable,
    )
)]
pub async fn redeliver_one(
    scope: Scope,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    // An id that does not even decode (`%FF`) is no UUID either: simply unknown (SPEC §2),
    // not the framework's 400.
    let id = id.map_or_else(|_| "(undecodable)".to_owned(), |Path(id)| id);
    let unknown = || ApiError::NotFound(format!("no request with id {id:?}"));
    let uuid = Uuid::parse_str(&id).map_err(|_| unknown())?;
    let config = &state.config;
    let expire = config.callback_expire_after;
    let limits = redelivery_limits(config);
    let scope = scope.store().ok_or_else(unknown)?;
    match state.store.redeliver(uuid, &scope, expire, limits).await? {
        Redelivery::Queued => {}
        Redelivery::NotFound => return Err(unknown()),
        Redelivery::NotAsync => return Err(ApiError::NotAsync),
        Redelivery::InProgress => return Err(ApiError::DeliveryInProgress),
        Redelivery::Overloaded => return Err(ApiError::Overloaded(config.max_pending_jobs)),
        Redelivery::QuotaExceeded => {
            return Err(ApiError::RedeliveryRefused(format!(
                "this tenant has {} callbacks waiting to be delivered (--max-pending-jobs-per-tenant); nothing was queued",
                config.max_pending_jobs_per_tenant
            )));
        }
        Redelivery::TooManyRedeliveries => {
            return Err(ApiError::RedeliveryRefused(format!(
                "this request was redelivered {} times, the most --max-redeliveries allows; nothing was queued",
                config.max_redeliveries
            )));
        }
    }
    tracing::info!(request_id = %uuid, "redelivery queued");
    let body = RedeliveryQueued {
        request_id: uuid,
        callback_status: CallbackStatus::Pending,
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/requests/{uuid}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Body of POST /requests/redeliver.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // Documents the body; the handler reads it field by field.
pub struct BulkRedeliveryRequest {
    /// Only `failed` callbacks are redelivered in bulk.
    callback_status: OnlyFailed,
    /// Requests created at or after this time (RFC 3339).
    #[schema(example = "2026-11-30T12:00:00Z", format = DateTime)]
    since: String,
    /// An admin key: only this tenant's (default: every tenant's). Another key: its own
    /// tenant only (another name matches nothing).
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    tenant: Option<String>,
}

/// The one `callback_status` that bulk redelivery takes.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // Documents the body; the handler reads it field by field.
enum OnlyFailed {
    Failed,
}

/// The body of a 202 from POST /requests/redeliver.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkRedeliveryQueued {
    /// Failed callbacks queued again by this call (at most 500, within the backlog's
    /// headroom).
    pub redelivered: u64,
    /// Matching failed callbacks remain (beyond 500, or over a backlog limit): call again.
    pub more: bool,
}

/// Send every failed callback again, since a time.
#[utoipa::path(
    post, path = "/requests/redeliver", tag = "requests",
    params(("tenant" = Option<String>, Query, description = "Scopes like GET /requests; the body's tenant narrows it further", pattern = "^[a-z0-9_-]{1,64}$")),
    request_body(content = BulkRedeliveryRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Up to 500 matching failed callbacks were queued again, within --max-pending-jobs(-per-tenant); `more`: call again", body = BulkRedeliveryQueued),
        (status = 400, description = "The body is not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within --http-body-timeout-ms of the headers; the connection is closed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "callback_status, since or tenant missing or invalid", body = Problem, content_type = "application/problem+json"),
        ServiceUnavailable,
    )
)]
pub async fn redeliver_failed(
    caller: Caller,
    scope: Scope,
    State(state): State<AppState>,
    body: Result<JsonObject, ApiError>,
) -> Result<Response, ApiError> {
    let JsonObject(map) = body?;
    let mut fields = Fields::new(&map);
    let status = fields.string("callback_status");
    let status = status.and_then(|s| {
        fields.check(
            "callback_status",
            (s == "failed").then_some(()).ok_or_else(|| {
                "must be \"failed\" (only failed callbacks are redelivered in bulk)".to_owned()
            }),
        )
    });
    let since = fields.string("since").and_then(|s| {
        fields.check(
            "since",
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| "must be an RFC 3339 time, e.g. 2026-11-30T12:00:00Z".to_owned()),
        )
    });
    let tenant = fields.optional_string("tenant").and_then(|t| {
        let checked = check_tenant("tenant", t).map_err(|e| e.message);
        fields.check("tenant", checked)
    });
    fields.finish()?;
    let (Some(()), Some(since)) = (status, since) else {
        unreachable!("no field errors means both were read");
    };
    // The body's tenant narrows the request's scope by the same rule.
    let scope = scope.and(Scope::of(&caller, tenant)).tenant();
    let config = &state.config;
    let limits = redelivery_limits(config);
    let expire = config.callback_expire_after;
    let done = match scope {
        Some(tenant) => {
            state
                .store
                .bulk_redeliver(tenant, since, expire, limits)
                .await?
        }
        None => BulkRedelivery::default(),
    };
    tracing::info!(redelivered = done.redelivered, more = done.more, since = %since, "bulk redelivery queued");
    let body = BulkRedeliveryQueued {
        redelivered: done.redelivered,
        more: done.more,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// One minute of the chart.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MinuteOut {
    /// The minute's start, RFC 3339 UTC.
    #[schema(example = "2026-11-30T12:00:00Z")]
    pub minute: String,
    /// Callbacks that ended `sent` in that minute.
    pub delivered: u64,
    /// Callbacks that ended `failed` in that minute.
    pub failed: u64,
}

/// The last hour of callback endings.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallbackStats {
    /// The last 60 minutes, oldest first (the current minute last).
    pub minutes: Vec<MinuteOut>,
}

/// Callbacks delivered and failed per minute over the last hour.
///
/// Counts endings (a callback that became `sent` or `failed`), not attempts, scoped like
/// GET /requests; kept apart from the records, so retention does not change it.
#[utoipa::path(
    get, path = "/stats/callbacks", tag = "requests",
    params(("tenant" = Option<String>, Query, description = "An admin key: only this tenant's. Another key: its own tenant (another tenant's name gives all zeros)", pattern = "^[a-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "Per-minute counts", body = CallbackStats),
        (status = 422, description = "tenant is not a tenant name", body = Problem, content_type = "application/problem+json"),
        ServiceUnavailable,
    )
)]
pub async fn callback_stats(
    scope: Scope,
    State(state): State<AppState>,
) -> Result<Json<CallbackStats>, ApiError> {
    let now_minute = Utc::now().timestamp().div_euclid(60);
    let first = now_minute - 59;
    let stored = match scope.store() {
        Some(scope) => state.store.callback_stats(&scope, first).await?,
        None => Vec::new(),
    };
    Ok(Json(CallbackStats {
        minutes: last_hour(first, &stored),
    }))
}

/// Sixty minutes from `first`, with the stored figures where there are some.
fn last_hour(first: i64, stored: &[MinuteStats]) -> Vec<MinuteOut> {
    (first..first + 60)
        .map(|minute| {
            let found = stored.iter().find(|s| s.minute == minute);
            let start = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::minutes(minute);
            MinuteOut {
                minute: start.to_rfc3339_opts(SecondsFormat::Secs, true),
                delivered: found.map_or(0, |s| s.delivered),
                failed: found.map_or(0, |s| s.failed),
            }
        })
        .collect()
}

/// Who the caller is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    /// The tenant of the key (`default` while the service is open).
    pub tenant: String,
    /// Whether the key sees every tenant.
    pub admin: bool,
    /// Whether requests need an API key (false while no key exists).
    pub auth_required: bool,
}

/// The caller's tenant and rights (the console uses it to show the tenant filter).
#[utoipa::path(
    get, path = "/me", tag = "requests",
    responses((status = 200, description = "The caller", body = Me))
)]
pub async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        auth_required: caller.authenticated,
        tenant: caller.tenant,
        admin: caller.admin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hour_has_sixty_minutes_oldest_first_with_gaps_as_zero() {
        let first = 29_400_000;
        let stored = [MinuteStats {
            minute: first + 59,
            delivered: 3,
            failed: 1,
        }];
        let hour = last_hour(first, &stored);
        assert_eq!(hour.len(), 60);
        assert_eq!((hour[0].delivered, hour[0].failed), (0, 0));
        assert_eq!((hour[59].delivered, hour[59].failed), (3, 1));
        assert!(hour[0].minute < hour[59].minute);
        assert!(hour[0].minute.ends_with(":00Z"));
    }
}
