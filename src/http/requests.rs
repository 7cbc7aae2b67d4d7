//! GET /requests and GET /requests/{id}: the records of accepted requests, scoped to the
//! caller's tenant (SPEC §10; an admin sees every tenant), paged by offset or by cursor
//! (SPEC §12).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::cursor;
use super::error::{ApiError, Problem, ServiceUnavailable};
use super::scope::Scope;
use super::state::AppState;
use crate::store::{
    AttemptRecord, CallbackStatus, Mode, RequestRecord, RequestStatus, RequestSummary, Trigger,
};

/// The query string of GET /requests, checked.
mod query;
use query::parse_listing;

/// The deepest `offset` accepted; beyond it, pages are reached with `cursor`.
pub const MAX_OFFSET: u64 = 10_000;

/// RFC 3339, UTC, milliseconds: `2026-01-31T12:00:00.123Z`.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One row of GET /requests.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestSummaryOut {
    pub id: Uuid,
    /// The tenant the request belongs to (`default` while the service is open).
    pub tenant: String,
    pub mode: Mode,
    pub status: RequestStatus,
    #[schema(example = "2026-01-31T12:00:00.123Z")]
    pub created_at: String,
    pub completed_at: Option<String>,
    /// `null` for sync requests.
    pub callback_status: Option<CallbackStatus>,
    /// The work the request named (SPEC §13): `text` or a configured work.
    #[schema(example = "text")]
    pub work: String,
}

impl From<RequestSummary> for RequestSummaryOut {
    fn from(s: RequestSummary) -> Self {
        Self {
            id: s.id,
            tenant: s.tenant,
            mode: s.mode,
            status: s.status,
            created_at: ts(s.created_at),
            completed_at: s.completed_at.map(ts),
            callback_status: s.callback_status,
            work: s
                .work
                .unwrap_or_else(|| crate::works::registry::TEXT.to_owned()),
        }
    }
}

/// A page of requests, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestList {
    pub requests: Vec<RequestSummaryOut>,
    /// Rows matching the filters, before paging (exact).
    pub total: u64,
    pub limit: u32,
    /// Rows skipped (0 when paging with `cursor`).
    pub offset: u64,
    /// Pass as `cursor` (with the same filters) for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One delivery attempt of a callback.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptOut {
    pub attempt: u32,
    pub started_at: String,
    pub duration_ms: f64,
    /// `null` when no response arrived (refused, timeout, connection error).
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// `manual` for the first attempt of a redelivery, `scheduled` for every other.
    pub trigger: Trigger,
}

impl From<AttemptRecord> for AttemptOut {
    fn from(a: AttemptRecord) -> Self {
        Self {
            attempt: a.attempt,
            started_at: ts(a.started_at),
            duration_ms: (a.duration_ms * 100.0).round() / 100.0,
            status_code: a.status_code,
            error: a.error,
            trigger: a.trigger,
        }
    }
}

/// The full record of a request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestDetail {
    pub id: Uuid,
    pub tenant: String,
    pub mode: Mode,
    /// The accepted input: `text`, `count` (default applied), and `callback_url` for async.
    #[schema(value_type = Object)]
    pub input_data: Value,
    /// The `WorkResult`, or `null` until done or when the work failed.
    #[schema(value_type = Option<crate::work::WorkResult>)]
    pub output_data: Option<Value>,
    pub status: RequestStatus,
    pub error: Option<String>,
    pub created_at: String,
    pub completed_at: Option<String>,
    pub callback_url: Option<String>,
    /// The id of the callback's destination (GET /destinations/{id}); `null` for sync.
    pub destination_id: Option<String>,
    pub callback_status: Option<CallbackStatus>,
    pub callback_attempts: u32,
    pub callback_last_error: Option<String>,
    pub callback_sent_at: Option<String>,
    /// For an async callback that is not terminal and has no attempt running: when the
    /// next attempt is planned (it may be past while the job waits for a worker or the
    /// destination's cap); otherwise `null`.
    pub callback_next_attempt_at: Option<String>,
    /// 32 hex digits; the callback's `traceparent` continues this trace.
    pub trace_id: String,
    /// The latest 100 attempts, oldest first (all of them: GET /requests/{id}/attempts).
    pub attempts: Vec<AttemptOut>,
    /// The work the request named (SPEC §13): `text` or a configured work.
    #[schema(example = "text")]
    pub work: String,
    /// Each upstream attempt of a named work: `{attempt, started_at, duration_ms,
    /// status_code|null, error|null}` (`text` has none).
    #[schema(value_type = Vec<Object>)]
    pub work_attempts: Value,
    /// How many attempts were made in all.
    pub attempts_total: u64,
}

impl TryFrom<RequestRecord> for RequestDetail {
    type Error = ApiError;

    fn try_from(r: RequestRecord) -> Result<Self, ApiError> {
        let parse = |s: &str| {
            serde_json::from_str::<Value>(s)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored JSON of {}: {e}", r.id)))
        };
        Ok(Self {
            id: r.id,
            tenant: r.tenant.clone(),
            mode: r.mode,
            input_data: parse(&r.input_data)?,
            output_data: r.output_data.as_deref().map(parse).transpose()?,
            status: r.status,
            error: r.error,
            created_at: ts(r.created_at),
            completed_at: r.completed_at.map(ts),
            destination_id: r
                .callback_url
                .as_deref()
                .and_then(crate::store::origin_of_str)
                .map(|origin| super::destinations::destination_id(&r.tenant, &origin)),
            callback_url: r.callback_url,
            callback_status: r.callback_status,
            callback_attempts: r.callback_attempts,
            callback_last_error: r.callback_last_error,
            callback_sent_at: r.callback_sent_at.map(ts),
            callback_next_attempt_at: r.callback_next_attempt_at.map(ts),
            trace_id: r.trace_id,
            attempts: r.attempts.into_iter().map(AttemptOut::from).collect(),
            work: r
                .work
                .unwrap_or_else(|| crate::works::registry::TEXT.to_owned()),
            work_attempts: match r.work_attempts.as_deref() {
                Some(json) => parse(json)?,
                None => Value::Array(Vec::new()),
            },
            attempts_total: r.attempts_total,
        })
    }
}

/// List recorded requests, newest first.
#[utoipa::path(
    get, path = "/requests", tag = "requests",
    params(
        ("mode" = Option<Mode>, Query, description = "sync or async"),
        ("status" = Option<RequestStatus>, Query, description = "pending, processing, completed or failed"),
        ("callback_status" = Option<CallbackStatus>, Query, description = "pending, sent or failed"),
        ("work" = Option<String>, Query, description = "One work's records (`text` or a name from GET /works)", pattern = "^[a-z][a-z0-9-]{0,62}$"),
        ("tenant" = Option<String>, Query, description = "An admin key: only this tenant's records. Another key: narrows its own scope (another tenant's name gives an empty list)", pattern = "^[a-z0-9_-]{1,64}$"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50", minimum = 1, maximum = 100),
        ("offset" = Option<u64>, Query, description = "Rows to skip, default 0, at most 10,000 (use cursor beyond)", minimum = 0, maximum = 10000),
        ("cursor" = Option<String>, Query, description = "The next_cursor of the previous page, with the same filters; not with offset"),
    ),
    responses(
        (status = 200, description = "A page of requests", body = RequestList),
        (status = 422, description = "A query parameter is not acceptable", body = Problem, content_type = "application/problem+json"),
        ServiceUnavailable,
    )
)]
pub async fn list_requests(
    scope: Result<Scope, ApiError>,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<RequestList>, ApiError> {
    let query = query.as_deref().unwrap_or_default();
    let is_work = &|w: &str| state.works.named(w).is_some();
    // A bad tenant= is reported beside every other bad parameter, in one 422.
    let scope = match scope {
        Ok(scope) => scope,
        Err(e) => {
            return Err(parse_listing(query, &Scope::Nothing, is_work)
                .err()
                .unwrap_or(e));
        }
    };
    let listing = parse_listing(query, &scope, is_work)?;
    let filter = &listing.filter;
    let empty = RequestList {
        requests: Vec::new(),
        total: 0,
        limit: filter.limit,
        offset: listing.offset,
        next_cursor: None,
    };
    if listing.nothing {
        return Ok(Json(empty));
    }
    let page = state.store.list_requests(filter).await?;
    Ok(Json(RequestList {
        requests: page.requests.into_iter().map(Into::into).collect(),
        total: page.total,
        next_cursor: page.next.map(|k| cursor::encode(k, &listing.filters)),
        ..empty
    }))
}

/// One request, with its delivery attempts.
#[utoipa::path(
    get, path = "/requests/{id}", tag = "requests",
    params(
        ("id" = String, Path, format = Uuid, description = "The request_id (anything else is simply unknown: 404)"),
        ("tenant" = Option<String>, Query, description = "Scopes the lookup like GET /requests (another tenant's name, for a non-admin key: 404)", pattern = "^[a-z0-9_-]{1,64}$"),
    ),
    responses(
        (status = 200, description = "The record", body = RequestDetail),
        (status = 422, description = "tenant is not a tenant name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request (or another tenant's)", body = Problem, content_type = "application/problem+json"),
        (status = 405, description = "`redeliver` is no id: /requests/redeliver is the bulk redelivery route, POST only", body = Problem, content_type = "application/problem+json",
            headers(("Allow" = String, description = "POST"))),
        ServiceUnavailable,
    )
)]
pub async fn get_request(
    scope: Scope,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<RequestDetail>, ApiError> {
    // An id that does not even decode (`%FF`) is no UUID either: simply unknown (SPEC §2).
    let id = id.map_or_else(|_| "(undecodable)".to_owned(), |Path(id)| id);
    let unknown = || ApiError::NotFound(format!("no request with id {id:?}"));
    let uuid = Uuid::parse_str(&id).map_err(|_| unknown())?;
    let scope = scope.store().ok_or_else(unknown)?;
    let record = state
        .store
        .get_request(uuid, &scope)
        .await?
        .ok_or_else(unknown)?;
    Ok(Json(record.try_into()?))
}
