//! The operator console (SPEC §11) at `/ui`: an HTML shell, a few small JavaScript
//! modules and one stylesheet from the `ui/` folder, compiled into the binary, so the
//! console works with no network and fetches nothing from another origin.
//!
//! The console is a client of the public API: these routes serve files only, take no
//! [`Caller`](crate::auth::Caller), and are public (SPEC §10); the data comes from the
//! JSON routes, with the key the browser keeps. They are HTML, not API, so they are not
//! in the OpenAPI document.
//!
//! Caching: every response carries an `ETag` (a hash of the file) and `Cache-Control:
//! no-cache`, so a browser revalidates and gets a 304 until the binary changes — a new
//! build can never be paired with a stale script. The `Content-Security-Policy` lets the
//! page load and fetch from its own origin only.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// One embedded file and its validator.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Self {
        let digest = hex::encode(Sha256::digest(body.as_bytes()));
        let etag = HeaderValue::from_str(&format!("\"{}\"", &digest[..20])).expect("hex is ASCII");
        Self {
            body: body.as_bytes(),
            content_type,
            etag,
        }
    }

    /// 200 with the file, or 304 when the browser's copy is current.
    fn respond(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|t| t.trim() == self.etag));
        let headers = [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::ETAG, self.etag.clone()),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ];
        match fresh {
            true => (StatusCode::NOT_MODIFIED, headers).into_response(),
            false => (headers, self.body).into_response(),
        }
    }
}

/// Same origin only, for everything; no inline script or style; no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The page every console URL loads; the script draws the view its path names.
static SHELL: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("../../ui/index.html"),
        "text/html; charset=utf-8",
    )
});

/// The files under `/ui/assets/`, by name.
static ASSETS: LazyLock<[(&str, Asset); 7]> = LazyLock::new(|| {
    const JS: &str = "text/javascript; charset=utf-8";
    [
        (
            "console.js",
            Asset::new(include_str!("../../ui/console.js"), JS),
        ),
        ("dom.js", Asset::new(include_str!("../../ui/dom.js"), JS)),
        ("api.js", Asset::new(include_str!("../../ui/api.js"), JS)),
        (
            "destinations.js",
            Asset::new(include_str!("../../ui/destinations.js"), JS),
        ),
        (
            "chart.js",
            Asset::new(include_str!("../../ui/chart.js"), JS),
        ),
        (
            "console.css",
            Asset::new(
                include_str!("../../ui/console.css"),
                "text/css; charset=utf-8",
            ),
        ),
        (
            "icon.svg",
            Asset::new(include_str!("../../ui/icon.svg"), "image/svg+xml"),
        ),
    ]
});

/// `/ui`, `/ui/requests/{id}` (the same shell: the view is drawn in the browser, so each
/// is a real URL that loads directly) and `/ui/assets/{name}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(shell))
        .route("/ui/", get(shell))
        .route("/ui/requests/{id}", get(shell))
        .route("/ui/destinations", get(shell))
        .route("/ui/destinations/{id}", get(shell))
        .route("/ui/assets/{name}", get(asset))
}

async fn shell(request: HeaderMap) -> Response {
    SHELL.respond(&request)
}

async fn asset(Path(name): Path<String>, request: HeaderMap) -> Result<Response, ApiError> {
    let (_, asset) = ASSETS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| ApiError::NotFound(format!("no console asset {name:?}")))?;
    Ok(asset.respond(&request))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file the shell names (`/ui/assets/…`) or a module imports (`'./….js'`) is
    /// served, so a renamed file cannot leave the page without its script or style.
    #[test]
    fn every_file_named_is_served() {
        let text = |a: &Asset| std::str::from_utf8(a.body).unwrap().to_owned();
        let names = |text: &str, marker: &str, end: char| -> Vec<String> {
            text.split(marker)
                .skip(1)
                .map(|rest| rest[..rest.find(end).unwrap()].to_owned())
                .collect()
        };
        let shell = names(&text(&SHELL), "/ui/assets/", '"');
        assert_eq!(
            shell,
            [
                "icon.svg",
                "console.css",
                "dom.js",
                "api.js",
                "chart.js",
                "destinations.js",
                "console.js"
            ]
        );
        let imports = ASSETS
            .iter()
            .flat_map(|(_, a)| names(&text(a), "from './", '\''));
        for name in shell.into_iter().chain(imports) {
            assert!(
                ASSETS.iter().any(|(n, _)| *n == name),
                "{name} is not served"
            );
        }
    }

    #[test]
    fn a_matching_etag_gets_a_304_and_another_the_file() {
        let mut request = HeaderMap::new();
        request.insert(header::IF_NONE_MATCH, SHELL.etag.clone());
        assert_eq!(SHELL.respond(&request).status(), StatusCode::NOT_MODIFIED);
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"old\""));
        assert_eq!(SHELL.respond(&request).status(), StatusCode::OK);
    }

    /// Nothing in the console names another origin: no CDN, no font service.
    #[test]
    fn no_asset_names_another_origin() {
        let files = std::iter::once(&*SHELL).chain(ASSETS.iter().map(|(_, a)| a));
        for asset in files {
            let text = std::str::from_utf8(asset.body).unwrap();
            for scheme in ["http://", "https://", "//cdn", "@import"] {
                let hits: Vec<_> = text.match_indices(scheme).collect();
                // The one allowed: the SVG namespace, which is a name, not a fetch.
                let allowed = |i: usize| text[i..].starts_with("http://www.w3.org/2000/svg");
                assert!(
                    hits.iter().all(|(i, _)| allowed(*i)),
                    "{scheme} in {}",
                    asset.content_type
                );
            }
        }
    }
}
