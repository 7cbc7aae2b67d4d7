//! GET /destinations, GET and PATCH /destinations/{id} (SPEC §14, §17): a destination (a
//! tenant and a callback origin) as a resource, scoped like GET /requests. Its `id` is
//! base64url of tenant and origin: stable, opaque, never reused. `concurrency_limit` and
//! `in_flight` are this instance's view; the rest is shared by every instance.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::SecondsFormat;
use serde::Serialize;
use serde_json::Value;

use super::error::{ApiError, FieldError, Problem, ServiceUnavailable};
use super::extract::JsonObject;
use super::scope::Scope;
use super::state::AppState;
use crate::store::{
    DestinationChange, DestinationInfo, DestinationQuery, DestinationState, PENDING_CAP,
};
use crate::telemetry::metrics as m;

/// The rate limit's range, per second.
const RATE_MIN: f64 = 0.01;
const RATE_MAX: f64 = 100_000.0;

/// The API id of the destination `(tenant, origin)`.
pub fn destination_id(tenant: &str, origin: &str) -> String {
    B64.encode(format!("{tenant}\n{origin}"))
}

/// The `(tenant, origin)` an API id stands for.
fn parse_id(id: &str) -> Option<(String, String)> {
    let text = String::from_utf8(B64.decode(id).ok()?).ok()?;
    let (tenant, origin) = text.split_once('\n')?;
    Some((tenant.to_owned(), origin.to_owned()))
}

/// One destination.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DestinationOut {
    /// Opaque and stable: base64url of the tenant and the origin.
    pub id: String,
    pub tenant: String,
    /// `scheme://host:port`.
    pub origin: String,
    /// Attempts this instance allows at once now (the adaptive limit).
    pub concurrency_limit: u32,
    /// Attempts running on this instance now.
    pub in_flight: u32,
    /// Deliveries not yet terminal, on every instance; exact up to 10,000.
    pub pending: u64,
    /// Present (`true`) when there are more than 10,000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_capped: Option<bool>,
    /// `closed` or `open`.
    #[schema(example = "closed")]
    pub circuit: &'static str,
    pub blocked_until: Option<String>,
    pub paused: bool,
    pub rate_limit_per_s: Option<f64>,
    /// While the circuit is open, why it opened; otherwise the most recent failed
    /// attempt's error (written at most once a second), kept after later successes;
    /// `null` when no attempt has failed.
    pub last_error: Option<String>,
}

/// A page of destinations, by tenant then origin.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DestinationList {
    pub destinations: Vec<DestinationOut>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

fn out(state: &AppState, d: DestinationInfo) -> DestinationOut {
    let (concurrency_limit, in_flight) = state
        .engine
        .as_ref()
        .map_or((0, 0), |e| e.destination_view(d.row));
    DestinationOut {
        id: destination_id(&d.tenant, &d.origin),
        concurrency_limit,
        in_flight,
        pending: d.pending.min(PENDING_CAP),
        pending_capped: (d.pending > PENDING_CAP).then_some(true),
        circuit: match d.blocked_until {
            Some(_) => "open",
            None => "closed",
        },
        blocked_until: d
            .blocked_until
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        paused: d.paused,
        rate_limit_per_s: d.rate_limit_per_s,
        last_error: d.last_error,
        tenant: d.tenant,
        origin: d.origin,
    }
}

/// List destinations, by tenant then origin.
#[utoipa::path(
    get, path = "/destinations", tag = "destinations",
    params(
        ("tenant" = Option<String>, Query, description = "An admin key: only this tenant's. Another key: its own (another tenant's name gives an empty list)", pattern = "^[a-z0-9_-]{1,64}$"),
        ("state" = Option<String>, Query, description = "open (circuit open), paused, or limited (a rate limit set)"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "The next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of destinations", body = DestinationList),
        (status = 422, description = "A query parameter is not acceptable", body = Problem, content_type = "application/problem+json"),
        ServiceUnavailable,
    )
)]
pub async fn list_destinations(
    scope: Scope,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<DestinationList>, ApiError> {
    let params: BTreeMap<String, String> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut errors = Vec::new();
    let state_filter = params.get("state").and_then(|s| {
        let parsed = DestinationState::parse(s);
        if parsed.is_none() {
            errors.push(FieldError::new(
                "state",
                "must be one of: open, paused, limited",
            ));
        }
        parsed
    });
    let limit = params.get("limit").map_or(Some(50), |v| {
        let n = v.parse::<u32>().ok().filter(|n| (1..=100).contains(n));
        if n.is_none() {
            errors.push(FieldError::new("limit", "must be an integer from 1 to 100"));
        }
        n
    });
    let after = params.get("cursor").and_then(|c| {
        let pair = parse_id(c);
        if pair.is_none() {
            errors.push(FieldError::new(
                "cursor",
                "is not a cursor returned by GET /destinations",
            ));
        }
        pair
    });
    if !errors.is_empty() {
        return Err(ApiError::InvalidQuery(errors));
    }
    let Some(scope) = scope.store() else {
        return Ok(Json(DestinationList {
            destinations: Vec::new(),
            next_cursor: None,
        }));
    };
    let limit = limit.unwrap_or(50);
    let q = DestinationQuery {
        scope,
        state: state_filter,
        after,
        limit: limit + 1,
    };
    let mut rows = state.store.list_destinations(&q).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|d| destination_id(&d.tenant, &d.origin)))
        .flatten();
    Ok(Json(DestinationList {
        destinations: rows.into_iter().map(|d| out(&state, d)).collect(),
        next_cursor,
    }))
}

/// The destination `id` within `scope`, or the 404.
fn find(scope: &Scope, id: &str) -> Result<(String, String), ApiError> {
    let unknown = || ApiError::NotFound(format!("no destination with id {id:?}"));
    let (tenant, origin) = parse_id(id).ok_or_else(unknown)?;
    let visible = match scope {
        Scope::All => true,
        Scope::Tenant(t) => *t == tenant,
        Scope::Nothing => false,
    };
    if !visible {
        return Err(unknown());
    }
    Ok((tenant, origin))
}

/// One destination.
#[utoipa::path(
    get, path = "/destinations/{id}", tag = "destinations",
    params(("id" = String, Path, description = "The destination's id (another tenant's: 404)")),
    responses(
        (status = 200, description = "The destination", body = DestinationOut),
        (status = 404, description = "No such destination (or another tenant's)", body = Problem, content_type = "application/problem+json"),
        ServiceUnavailable,
    )
)]
pub async fn get_destination(
    scope: Scope,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DestinationOut>, ApiError> {
    let (tenant, origin) = find(&scope, &id)?;
    let d = state.store.find_destination(&tenant, &origin).await?;
    let d = d.ok_or_else(|| ApiError::NotFound(format!("no destination with id {id:?}")))?;
    Ok(Json(out(&state, d)))
}

/// The settings a PATCH body asks for: every member checked, each fault reported.
fn parse_change(body: &serde_json::Map<String, Value>) -> Result<DestinationChange, ApiError> {
    let mut change = DestinationChange::default();
    let mut errors = Vec::new();
    if body.is_empty() {
        errors.push(FieldError::new(
            "paused",
            "give paused and/or rate_limit_per_s",
        ));
    }
    for (name, value) in body {
        match (name.as_str(), value) {
            ("paused", Value::Bool(b)) => change.paused = Some(*b),
            ("paused", _) => errors.push(FieldError::new("paused", "must be true or false")),
            ("rate_limit_per_s", Value::Null) => change.rate_limit_per_s = Some(None),
            ("rate_limit_per_s", v) => {
                match v.as_f64().filter(|r| (RATE_MIN..=RATE_MAX).contains(r)) {
                    Some(r) => change.rate_limit_per_s = Some(Some(r)),
                    None => errors.push(FieldError::new(
                        "rate_limit_per_s",
                        "must be a number from 0.01 to 100000, or null to remove the limit",
                    )),
                }
            }
            (other, _) => errors.push(FieldError::new(
                other,
                "is not a setting of a destination (paused, rate_limit_per_s)",
            )),
        }
    }
    match errors.is_empty() {
        true => Ok(change),
        false => Err(ApiError::Validation(errors)),
    }
}

/// The display prefix of the caller's key, for the log (never the key).
fn key_prefix(headers: &HeaderMap) -> String {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    token
        .chars()
        .take(crate::auth::keys::DISPLAY_PREFIX_CHARS)
        .collect()
}

/// The body of PATCH /destinations/{id}, as documented: at least one member (SPEC §17:
/// `{}` is a 422), nothing else. The handler reads the raw object to name every bad field.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
#[allow(dead_code)] // a document of the body, not a value the handler builds
pub struct DestinationPatch {
    /// Hold (`true`) or release (`false`) every attempt to the destination.
    #[schema(value_type = bool, required = false)]
    paused: Option<bool>,
    /// Attempts per second across every instance, 0.01 to 100,000; `null` removes it.
    #[schema(minimum = 0.01, maximum = 100_000.0)]
    rate_limit_per_s: Option<f64>,
}

/// Pause, resume, or set the rate limit of a destination.
#[utoipa::path(
    patch, path = "/destinations/{id}", tag = "destinations",
    params(("id" = String, Path, description = "The destination's id (another tenant's: 404)")),
    request_body(content = DestinationPatch, description = "`paused` (bool) and/or `rate_limit_per_s` (0.01 to 100000, or null to remove); `{}` is a 422"),
    responses(
        (status = 200, description = "The destination, changed", body = DestinationOut),
        (status = 400, description = "The body is not JSON, or not an object", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such destination (or another tenant's)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An empty body, an unknown member, or a value out of range", body = Problem, content_type = "application/problem+json"),
        ServiceUnavailable,
    )
)]
pub async fn patch_destination(
    scope: Scope,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Json<DestinationOut>, ApiError> {
    let (tenant, origin) = find(&scope, &id)?;
    let change = parse_change(&body)?;
    let d = state
        .store
        .change_destination(&tenant, &origin, change)
        .await?;
    let d = d.ok_or_else(|| ApiError::NotFound(format!("no destination with id {id:?}")))?;
    metrics::counter!(m::DESTINATION_CHANGES).increment(1);
    tracing::info!(
        key = %key_prefix(&headers),
        tenant = %d.tenant,
        origin = %d.origin,
        paused = d.paused,
        rate_limit_per_s = ?d.rate_limit_per_s,
        "destination changed"
    );
    Ok(Json(out(&state, d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_junk_is_no_id() {
        let id = destination_id("acme", "https://hooks.example.com:443");
        assert_eq!(
            parse_id(&id),
            Some(("acme".into(), "https://hooks.example.com:443".into()))
        );
        assert_eq!(parse_id("!!"), None);
        assert_eq!(parse_id(&B64.encode("no newline")), None);
    }

    #[test]
    fn a_patch_body_is_checked_member_by_member() {
        let body = |v: Value| v.as_object().unwrap().clone();
        let ok = parse_change(&body(
            serde_json::json!({"paused": true, "rate_limit_per_s": null}),
        ));
        assert_eq!(
            ok.unwrap(),
            DestinationChange {
                paused: Some(true),
                rate_limit_per_s: Some(None)
            }
        );
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"paused": "yes"}),
            serde_json::json!({"rate_limit_per_s": 0.001}),
            serde_json::json!({"rate_limit_per_s": 100001}),
            serde_json::json!({"paused": true, "colour": 1}),
        ] {
            assert!(
                matches!(
                    parse_change(&body(bad.clone())),
                    Err(ApiError::Validation(_))
                ),
                "{bad}"
            );
        }
    }
}
