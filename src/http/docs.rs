//! API documentation: `/openapi.json` (OpenAPI 3.1, generated from the handlers'
//! annotations, so it describes what is implemented), `/docs` (Swagger UI, its assets
//! compiled into the binary: nothing is fetched from a CDN), and `/problems/{slug}` (the
//! documented meaning of each problem `type`).

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::header;
use axum::response::IntoResponse;

use super::error::{ApiError, problem_description};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "consuma",
        description = "The same work inline (POST /sync) and as a durable, signed callback (POST /async), with every request recorded.",
    ),
    tags(
        (name = "work", description = "Submit work"),
        (name = "requests", description = "Recorded requests"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

/// What a problem `type` means.
#[utoipa::path(get, path = "/problems/{slug}", tag = "operations",
    params(("slug" = String, Path, description = "The last segment of a problem's `type`")),
    responses(
        (status = 200, description = "A short description", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown problem type", body = super::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn problem_type(
    slug: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    // A slug that does not decode (`%FF`) is unknown like any other.
    let slug = slug.map_or_else(|_| String::new(), |Path(slug)| slug);
    let text = problem_description(&slug)
        .ok_or_else(|| ApiError::NotFound(format!("no problem type {slug:?}")))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}
