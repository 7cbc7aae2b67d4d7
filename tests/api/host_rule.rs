//! The Host rule and the edge headers (SPEC §16–§17): an open instance answers only IP
//! literals, `localhost`, `*.localhost` and `--allowed-host` names (so a web page cannot
//! read it through a rebound DNS name); every response says `nosniff`; /docs carries a
//! CSP of its own. Raw requests: a browser-like client cannot choose its Host.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp};

/// Status, headers (lower-case names) and body of one raw HTTP/1.1 request.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

async fn raw(
    app: &TestApp,
    method: &str,
    path: &str,
    host: Option<&str>,
    key: Option<&str>,
) -> Raw {
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if let Some(host) = host {
        request.push_str(&format!("Host: {host}\r\n"));
    }
    if let Some(key) = key {
        request.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    if method == "POST" {
        let body = r#"{"text":"hi","count":1}"#;
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Raw {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

#[tokio::test]
async fn an_open_instance_answers_only_ips_localhost_and_allowed_names() {
    let app = TestApp::builder(Backend::Sqlite)
        .arg("--allowed-host", "consuma.internal")
        .env("CONSUMA_ALLOWED_HOST", "ignored.example,*.example.com")
        .spawn()
        .await;
    let port = app.addr.port();
    let ip = format!("127.0.0.1:{port}");
    for host in [
        ip.as_str(),
        "10.0.0.1",
        "[::1]:8000",
        "localhost",
        "LOCALHOST.:8000",
        "app.localhost",
        "consuma.internal",
        "Consuma.Internal.:443",
    ] {
        let r = raw(&app, "GET", "/requests", Some(host), None).await;
        assert_eq!(r.status, 200, "{host}: {}", r.body);
    }
    for host in [
        "rebound.evil.test",
        "localhost.evil.test",
        "example.com",
        "a.example.com",
    ] {
        for (method, path) in [
            ("GET", "/requests"),
            ("POST", "/sync"),
            ("GET", "/ui/"),
            ("GET", "/openapi.json"),
        ] {
            let r = raw(&app, method, path, Some(host), None).await;
            assert_eq!(r.status, 421, "{host} {method} {path}: {}", r.body);
            assert!(
                r.body.contains("/problems/misdirected-request"),
                "{}",
                r.body
            );
            assert!(r.head.contains("application/problem+json"), "{}", r.head);
        }
    }
    // Probes and the scraper reach the instance by whatever name.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = raw(&app, "GET", path, Some("rebound.evil.test"), None).await;
        assert_eq!(r.status, 200, "{path}");
    }
    let r = raw(&app, "GET", "/requests", None, None).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("/problems/missing-host"), "{}", r.body);
}

#[tokio::test]
async fn wildcards_come_from_the_environment_too() {
    let app = TestApp::builder(Backend::Sqlite)
        .env("CONSUMA_ALLOWED_HOST", "*.example.com,other.example")
        .spawn()
        .await;
    for (host, status) in [
        ("api.example.com", 200),
        ("a.b.example.com.:8000", 200),
        ("other.example", 200),
        ("example.com", 421),
        ("notexample.com", 421),
    ] {
        assert_eq!(
            raw(&app, "GET", "/requests", Some(host), None).await.status,
            status,
            "{host}"
        );
    }
}

#[tokio::test]
async fn once_a_key_exists_host_is_not_checked() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    assert_eq!(
        raw(&app, "GET", "/requests", Some("svc.evil.test"), None)
            .await
            .status,
        421
    );
    let key = app.create_key("acme", false).await;
    app.wait_keys(&[&key]).await;
    let r = raw(&app, "GET", "/requests", Some("svc.evil.test"), None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = raw(&app, "GET", "/requests", Some("svc.evil.test"), Some(&key)).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn a_bad_allowed_host_is_a_start_error() {
    let out = tokio::process::Command::new(crate::helpers::BIN)
        .args(["serve", "--allowed-host", "exa mple.com"])
        .env_clear()
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--allowed-host"), "{stderr}");
}

/// `nosniff` on every response — JSON, problems, probes, the console, the docs — and on
/// /docs a CSP that allows its own assets only and no framing.
#[tokio::test]
async fn every_response_says_nosniff_and_docs_has_its_own_csp() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let host = app.addr.to_string();
    for (method, path) in [
        ("GET", "/requests"),
        ("GET", "/requests/nope"),
        ("GET", "/no-such-route"),
        ("POST", "/sync"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/ui/"),
        ("GET", "/docs/"),
    ] {
        let r = raw(&app, method, path, Some(&host), None).await;
        assert!(
            r.head.contains("x-content-type-options: nosniff"),
            "{path}: {}",
            r.head
        );
    }
    for path in [
        "/docs/",
        "/docs/swagger-ui.css",
        "/docs/swagger-initializer.js",
    ] {
        let r = raw(&app, "GET", path, Some(&host), None).await;
        assert_eq!(r.status, 200, "{path}");
        let csp = r
            .head
            .lines()
            .find_map(|l| l.strip_prefix("content-security-policy: "))
            .unwrap_or_else(|| panic!("{path}: no CSP\n{}", r.head));
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("script-src 'self' 'unsafe"),
            "{csp}"
        );
    }
    // The page loads nothing from elsewhere and runs no inline script the CSP would block.
    let page = raw(&app, "GET", "/docs/", Some(&host), None).await.body;
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "an inline script: {page}");
}

/// The Swagger UI still works under its CSP: a real browser renders the operations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_render_in_a_browser_under_their_csp() {
    use crate::helpers::browser::{Browser, LAPTOP};
    let Some(b) = Browser::start(LAPTOP).await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await;
    b.goto(&app.url("/docs/")).await;
    b.wait_for_text("/requests/{id}").await;
    b.wait_for_text("/stats/callbacks").await;
}
