//! API documentation: `/openapi.json` (OpenAPI 3.1, generated from the handlers'
//! annotations, so it describes what is implemented), `/docs` (Swagger UI, its assets
//! compiled into the binary: nothing is fetched from a CDN), and `/problems/{slug}` (the
//! documented meaning of each problem `type`).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use super::error::{ApiError, PROBLEMS, WORK_PROBLEMS, problem_description};

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

/// The serialised OpenAPI document, handed to [`openapi_json`] as a request extension
/// (the document describes the router, so it exists only once the router is built).
#[derive(Clone)]
pub struct OpenApiJson(pub Bytes);

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses(
    (status = 200, description = "The OpenAPI 3.1 document of this service", body = Object, content_type = "application/json"),
))]
pub async fn openapi_json(
    Extension(OpenApiJson(json)): Extension<OpenApiJson>,
) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json)
}

/// The `slug` of GET /problems/{slug}: one of [`PROBLEMS`], as an enum in the document.
pub struct ProblemSlug;

impl utoipa::PartialSchema for ProblemSlug {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(
                PROBLEMS.iter().chain(WORK_PROBLEMS).map(|(slug, _)| *slug),
            ))
            .into()
    }
}

/// What a problem `type` means.
#[utoipa::path(get, path = "/problems/{slug}", tag = "operations",
    params(("slug" = inline(ProblemSlug), Path, description = "The last segment of a problem's `type`")),
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

/// Declares the API keys of SPEC §10 in `doc`: a `bearer` security scheme, applied
/// optionally (`security: [{}, {"bearer": []}]`: keys are needed only once one exists);
/// public routes without security; every other operation with its 401; every operation
/// but the probes and /metrics with the Host rule's 421 (SPEC §16).
pub fn declare_auth(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    use utoipa::openapi::{Content, Header, Object, Ref, ResponseBuilder, Type};

    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.description = Some(
        "An API key from `consuma keys create` (csk_…), required on every route but the public ones once the database holds a key.".into(),
    );
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme("bearer", SecurityScheme::Http(bearer));
    doc.security = Some(vec![
        SecurityRequirement::default(),
        SecurityRequirement::new("bearer", Vec::<String>::new()),
    ]);
    let unauthorized = ResponseBuilder::new()
        .description(
            "An API key is required and none, a malformed, an unknown or a revoked one was sent",
        )
        .header(
            "WWW-Authenticate",
            Header::new(Object::with_type(Type::String)),
        )
        .content(
            super::error::PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build();
    let misdirected = ResponseBuilder::new()
        .description(
            "Open mode (no API key exists) and a Host that is a DNS name other than localhost or *.localhost, not listed by --allowed-host",
        )
        .content(
            super::error::PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build();
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = super::authenticate::is_public(path);
        let host_checked = !matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            if host_checked {
                operation
                    .responses
                    .responses
                    .insert("421".into(), misdirected.clone().into());
            }
            if public {
                operation.security = Some(Vec::new());
            } else {
                operation
                    .responses
                    .responses
                    .insert("401".into(), unauthorized.clone().into());
            }
        }
    }
}
