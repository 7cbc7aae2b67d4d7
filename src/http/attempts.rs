//! GET /requests/{id}/attempts (SPEC §16): every delivery attempt of a request, oldest
//! first, page by page; GET /requests/{id} carries only the latest 100.
//!
//! The `cursor` is opaque: base64url (no padding) of a small JSON object naming the
//! request and the last attempt of the page before; it is valid for that request only.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::{ApiError, FieldError, Problem, ServiceUnavailable};
use super::requests::AttemptOut;
use super::scope::Scope;
use super::state::AppState;

/// Attempts per page unless `limit` says otherwise (1–100).
const PAGE: usize = 100;

/// One page of a request's attempts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptPage {
    /// Oldest first.
    pub attempts: Vec<AttemptOut>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Position {
    /// The request.
    r: Uuid,
    /// The last attempt of the page before.
    a: u32,
}

/// Every delivery attempt of a request, oldest first, page by page.
#[utoipa::path(
    get, path = "/requests/{id}/attempts", tag = "requests",
    params(
        ("id" = String, Path, format = Uuid, description = "The request_id (anything else is simply unknown: 404)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the page before"),
        ("limit" = Option<u32>, Query, description = "Attempts per page, 1–100 (default 100)"),
        ("tenant" = Option<String>, Query, description = "Scopes the lookup like GET /requests (another tenant's name, for a non-admin key: 404)", pattern = "^[a-z0-9_-]{1,64}$"),
    ),
    responses(
        (status = 200, description = "A page of attempts", body = AttemptPage),
        (status = 404, description = "No such request (or another tenant's)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A cursor that is not one of this request's, or a bad limit", body = Problem, content_type = "application/problem+json"),
        ServiceUnavailable,
    )
)]
pub async fn list_attempts(
    scope: Scope,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<AttemptPage>, ApiError> {
    let id = id.map_or_else(|_| "(undecodable)".to_owned(), |Path(id)| id);
    let unknown = || ApiError::NotFound(format!("no request with id {id:?}"));
    let uuid = Uuid::parse_str(&id).map_err(|_| unknown())?;
    let (after, limit) = parse_query(query.as_deref().unwrap_or_default(), uuid)?;
    let scope = scope.store().ok_or_else(unknown)?;
    let mut attempts = state
        .store
        .attempts_after(uuid, &scope, after, limit + 1)
        .await?
        .ok_or_else(unknown)?;
    let next_cursor = (attempts.len() > limit).then(|| {
        attempts.truncate(limit);
        let last = attempts.last().map_or(after, |a| a.attempt);
        let json = serde_json::to_vec(&Position { r: uuid, a: last }).expect("serialisable");
        B64.encode(json)
    });
    Ok(Json(AttemptPage {
        attempts: attempts.into_iter().map(AttemptOut::from).collect(),
        next_cursor,
    }))
}

/// `(after, limit)` from the query; every bad parameter is reported.
fn parse_query(query: &str, request: Uuid) -> Result<(u32, usize), ApiError> {
    let (mut after, mut limit, mut errors) = (0, PAGE, Vec::new());
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "cursor" => match decode(&value).filter(|p| p.r == request) {
                Some(p) => after = p.a,
                None => errors.push(FieldError {
                    field: "cursor".into(),
                    message:
                        "not a cursor of this request's attempts (pass next_cursor as it came)"
                            .into(),
                }),
            },
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=PAGE).contains(&n) => limit = n,
                _ => errors.push(FieldError {
                    field: "limit".into(),
                    message: format!("must be an integer from 1 to {PAGE}"),
                }),
            },
            // Read by the scope (crate::http::scope).
            "tenant" => {}
            other => errors.push(FieldError {
                field: other.to_owned(),
                message: "unknown parameter (cursor, limit and tenant are)".into(),
            }),
        }
    }
    match errors.is_empty() {
        true => Ok((after, limit)),
        false => Err(ApiError::InvalidQuery(errors)),
    }
}

fn decode(cursor: &str) -> Option<Position> {
    serde_json::from_slice(&B64.decode(cursor).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_valid_for_its_own_request_only() {
        let (mine, other) = (Uuid::new_v4(), Uuid::new_v4());
        let cursor = B64.encode(serde_json::to_vec(&Position { r: mine, a: 7 }).unwrap());
        assert_eq!(
            parse_query(&format!("cursor={cursor}"), mine).unwrap(),
            (7, PAGE)
        );
        assert!(parse_query(&format!("cursor={cursor}"), other).is_err());
        assert!(parse_query("cursor=nonsense", mine).is_err());
        assert!(parse_query("limit=0", mine).is_err());
        assert_eq!(parse_query("limit=5", mine).unwrap(), (0, 5));
    }
}
