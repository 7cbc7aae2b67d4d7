//! The HTTP API (SPEC §2): routes, the layer stack, and the one error type.

/// GET /requests/{id}/attempts: every attempt of a request, page by page (SPEC §16).
pub mod attempts;
/// The authentication layer: a request's [`Caller`](crate::auth::Caller), or a 401.
pub mod authenticate;
pub mod capacity;
pub mod cursor;
pub mod destinations;
pub mod docs;
pub mod error;
pub mod extract;
pub mod guard;
pub mod observe;
pub mod ops;
pub mod redeliver;
pub mod request_id;
pub mod requests;
pub mod scope;
pub mod server;
pub mod state;
pub mod submit;
/// The operator console at /ui (SPEC §11): embedded files, a client of the routes above.
pub mod ui;
/// Work routes: POST /sync/{work}, GET /works (SPEC §13).
pub mod works;
/// POST /async/{work} (SPEC §13).
pub mod works_async;
/// Each configured work's own routes in the OpenAPI document.
pub mod works_docs;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

pub use state::AppState;

/// The OpenAPI document and the router it describes, built from the same annotations:
/// every route is documented by construction, except the Swagger UI under `/docs`.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .routes(routes!(submit::post_sync))
        .routes(routes!(submit::post_async))
        .routes(routes!(works::post_sync_work))
        .routes(routes!(works::list_works))
        .routes(routes!(works_async::post_async_work))
        .routes(routes!(requests::list_requests))
        .routes(routes!(requests::get_request))
        .routes(routes!(attempts::list_attempts))
        .routes(routes!(destinations::list_destinations))
        .routes(routes!(
            destinations::get_destination,
            destinations::patch_destination
        ))
        .routes(routes!(redeliver::redeliver_one))
        .routes(routes!(redeliver::redeliver_failed))
        .routes(routes!(redeliver::callback_stats))
        .routes(routes!(redeliver::me))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(docs::problem_type))
        .routes(routes!(docs::openapi_json))
        .split_for_parts();
    docs::declare_auth(&mut doc);
    (router, doc)
}

/// The OpenAPI document served at /openapi.json.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// The whole application: API routes, docs, and the layers every request goes through.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = api();
    let mut openapi = serde_json::to_value(&openapi).expect("the OpenAPI document serialises");
    works_docs::document_works(&mut openapi, &state.works);
    let openapi_json =
        serde_json::to_string_pretty(&openapi).expect("the OpenAPI document serialises");
    api.layer(axum::Extension(docs::OpenApiJson(openapi_json.into())))
        .merge(SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json")))
        .merge(ui::routes())
        .with_state(state.clone())
        // Before every handler and extractor: the caller, or 401 (SPEC Part two's check order).
        .layer(axum::middleware::from_fn_with_state(
            state.keys.clone(),
            authenticate::authenticate,
        ))
        // Open mode answers only IP literals, localhost and --allowed-host (SPEC §16).
        .layer(axum::middleware::from_fn_with_state(
            guard::HostRule {
                keys: state.keys.clone(),
                allowed: state.config.allowed_hosts.clone().into(),
            },
            guard::host_rule,
        ))
        // Request id, trace, span, metrics, problem bodies for router errors.
        .layer(axum::middleware::from_fn(observe::observe))
        // Outermost: nosniff on every response, /docs's own CSP.
        .layer(axum::middleware::from_fn(guard::edge_headers))
}
