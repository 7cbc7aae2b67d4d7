//! GET /requests and GET /requests/{id}: the records of accepted requests.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::error::{ApiError, FieldError, Problem};
use super::state::AppState;
use crate::store::{
    AttemptRecord, CallbackStatus, ListFilter, Mode, RequestRecord, RequestStatus, RequestSummary,
};

/// RFC 3339, UTC, milliseconds: `2026-01-31T12:00:00.123Z`.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One row of GET /requests.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestSummaryOut {
    pub id: Uuid,
    pub mode: Mode,
    pub status: RequestStatus,
    #[schema(example = "2026-01-31T12:00:00.123Z")]
    pub created_at: String,
    pub completed_at: Option<String>,
    /// `null` for sync requests.
    pub callback_status: Option<CallbackStatus>,
}

impl From<RequestSummary> for RequestSummaryOut {
    fn from(s: RequestSummary) -> Self {
        Self {
            id: s.id,
            mode: s.mode,
            status: s.status,
            created_at: ts(s.created_at),
            completed_at: s.completed_at.map(ts),
            callback_status: s.callback_status,
        }
    }
}

/// A page of requests, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestList {
    pub requests: Vec<RequestSummaryOut>,
    /// Rows matching the filters, before paging.
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
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
}

impl From<AttemptRecord> for AttemptOut {
    fn from(a: AttemptRecord) -> Self {
        Self {
            attempt: a.attempt,
            started_at: ts(a.started_at),
            duration_ms: (a.duration_ms * 100.0).round() / 100.0,
            status_code: a.status_code,
            error: a.error,
        }
    }
}

/// The full record of a request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestDetail {
    pub id: Uuid,
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
    pub callback_status: Option<CallbackStatus>,
    pub callback_attempts: u32,
    pub callback_last_error: Option<String>,
    pub callback_sent_at: Option<String>,
    /// 32 hex digits; the callback's `traceparent` continues this trace.
    pub trace_id: String,
    pub attempts: Vec<AttemptOut>,
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
            mode: r.mode,
            input_data: parse(&r.input_data)?,
            output_data: r.output_data.as_deref().map(parse).transpose()?,
            status: r.status,
            error: r.error,
            created_at: ts(r.created_at),
            completed_at: r.completed_at.map(ts),
            callback_url: r.callback_url,
            callback_status: r.callback_status,
            callback_attempts: r.callback_attempts,
            callback_last_error: r.callback_last_error,
            callback_sent_at: r.callback_sent_at.map(ts),
            trace_id: r.trace_id,
            attempts: r.attempts.into_iter().map(AttemptOut::from).collect(),
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
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50", minimum = 1, maximum = 100),
        ("offset" = Option<u64>, Query, description = "Rows to skip, default 0", minimum = 0),
    ),
    responses(
        (status = 200, description = "A page of requests", body = RequestList),
        (status = 422, description = "A query parameter is not acceptable", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_requests(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<RequestList>, ApiError> {
    let filter = parse_filter(query.as_deref().unwrap_or_default())?;
    let page = state.store.list_requests(&filter).await?;
    Ok(Json(RequestList {
        requests: page.requests.into_iter().map(Into::into).collect(),
        total: page.total,
        limit: filter.limit,
        offset: filter.offset,
    }))
}

/// Parses the query string; every bad parameter gets its own entry. Unknown parameters
/// are ignored; a repeated one counts with its last value.
fn parse_filter(query: &str) -> Result<ListFilter, ApiError> {
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let mut errors = Vec::new();
    let mode = param(
        &params,
        "mode",
        &mut errors,
        Mode::parse,
        "must be one of: sync, async",
    );
    let status = param(
        &params,
        "status",
        &mut errors,
        RequestStatus::parse,
        "must be one of: pending, processing, completed, failed",
    );
    let callback_status = param(
        &params,
        "callback_status",
        &mut errors,
        CallbackStatus::parse,
        "must be one of: pending, sent, failed",
    );
    let limit = param(
        &params,
        "limit",
        &mut errors,
        |v| v.parse::<u32>().ok().filter(|n| (1..=100).contains(n)),
        "must be an integer from 1 to 100",
    );
    let offset = param(
        &params,
        "offset",
        &mut errors,
        |v| v.parse::<u64>().ok().filter(|n| *n <= i64::MAX as u64),
        "must be a non-negative integer",
    );
    if !errors.is_empty() {
        return Err(ApiError::InvalidQuery(errors));
    }
    Ok(ListFilter {
        mode,
        status,
        callback_status,
        limit: limit.unwrap_or(50),
        offset: offset.unwrap_or(0),
    })
}

/// The parameter `name` parsed, or `None` when absent or (with an error noted) invalid.
fn param<T>(
    params: &BTreeMap<String, String>,
    name: &str,
    errors: &mut Vec<FieldError>,
    parse: impl Fn(&str) -> Option<T>,
    message: &str,
) -> Option<T> {
    let value = params.get(name)?;
    let parsed = parse(value);
    if parsed.is_none() {
        errors.push(FieldError::new(name, message));
    }
    parsed
}

/// One request, with its delivery attempts.
#[utoipa::path(
    get, path = "/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "The request_id (a UUID; anything else is simply unknown)")),
    responses(
        (status = 200, description = "The record", body = RequestDetail),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_request(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<RequestDetail>, ApiError> {
    // An id that does not even decode (`%FF`) is no UUID either: simply unknown (SPEC §2).
    let id = id.map_or_else(|_| "(undecodable)".to_owned(), |Path(id)| id);
    let unknown = || ApiError::NotFound(format!("no request with id {id:?}"));
    let uuid = Uuid::parse_str(&id).map_err(|_| unknown())?;
    let record = state.store.get_request(uuid).await?.ok_or_else(unknown)?;
    Ok(Json(record.try_into()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_parameter_is_reported_once() {
        let Err(ApiError::InvalidQuery(errors)) =
            parse_filter("limit=5&limit=500&mode=x&offset=-1&foo=bar")
        else {
            panic!("expected a 422");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["mode", "limit", "offset"]);
    }

    #[test]
    fn defaults_apply_when_the_query_is_empty() {
        let f = parse_filter("").unwrap();
        assert_eq!((f.limit, f.offset, f.mode), (50, 0, None));
    }
}
