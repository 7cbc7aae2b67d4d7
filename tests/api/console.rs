//! The operator console (SPEC §11) at /ui: its files over HTTP.

use crate::helpers::{Backend, TestApp};

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_content_types_and_validators() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let html = "text/html; charset=utf-8";
    for (path, content_type) in [
        ("/ui", html),
        ("/ui/", html),
        ("/ui/requests/0190d5a6-0000-7000-8000-000000000000", html),
        ("/ui/assets/console.js", "text/javascript; charset=utf-8"),
        ("/ui/assets/console.css", "text/css; charset=utf-8"),
        ("/ui/assets/icon.svg", "image/svg+xml"),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let header = |name: &str| r.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), content_type, "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        assert!(header("content-security-policy").contains("connect-src 'self'"));
        let etag = header("etag");
        let again = app
            .client
            .get(app.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path} revalidated with {etag}");
    }
    let missing = app.get("/ui/assets/nothing.js").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"consuma_http_requests_total{route="/ui",method="GET",status="200"}"#),
        "the console's requests are counted under one label"
    );
    let openapi = app.get_json("/openapi.json").await;
    let paths = openapi["paths"].as_object().unwrap();
    assert!(
        paths.keys().all(|p| !p.starts_with("/ui")),
        "HTML pages are not API"
    );
}
