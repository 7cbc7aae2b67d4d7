//! The operator console (SPEC §11) at /ui: its files over HTTP, then the console itself
//! in headless Chromium on the running binary — the list, a filter, live updates, a
//! request's attempts, a redelivery, the chart, both screen sizes, nothing fetched from
//! another origin.
//!
//! The browser tests run on SQLite only: what they check is the page, and the JSON it
//! reads is tested on both backends elsewhere. Each waits for conditions by polling, with
//! [`PATIENCE`] as the bound, and never sleeps for a fixed time.

use std::time::Duration;

use fantoccini::Locator;
use fantoccini::key::Key;
use serde_json::{Value, json};

use crate::helpers::browser::{Browser, LAPTOP, PATIENCE, PHONE};
use crate::helpers::receiver::{Receiver, Reply};
use crate::helpers::{Backend, TestApp, work};

/// SPEC §11: a new request appears within 5 s.
const LIVE: Duration = Duration::from_secs(5);

const ATTEMPT_COLUMNS: [&str; 6] = [
    "Attempt",
    "Time",
    "Status code",
    "Duration",
    "Error",
    "Trigger",
];

async fn sync_request(app: &TestApp, text: &str) -> String {
    let body: Value = app.post_sync(work(text, 1)).await.json().await.unwrap();
    body["request_id"].as_str().unwrap().to_owned()
}

/// The XPath of the list's link to a request.
fn row_link(id: &str) -> String {
    format!("//table[contains(@class,'requests')]//a[@href='/ui/requests/{id}']")
}

/// The text of every cell of the attempts table, row by row.
async fn attempt_rows(b: &Browser) -> Vec<Vec<String>> {
    let rows = b
        .js(
            "return [...document.querySelectorAll('table.attempts tbody tr')]
                .map(tr => [...tr.cells].map(td => td.innerText.trim()))",
        )
        .await;
    serde_json::from_value(rows).unwrap()
}

/// Marks the document, so a later check can tell it was not reloaded.
async fn mark_document(b: &Browser) {
    b.js("window.__sameDocument = true").await;
}

async fn assert_same_document(b: &Browser) {
    assert_eq!(
        b.js("return window.__sameDocument === true").await,
        true,
        "the page was reloaded"
    );
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_content_types_and_validators() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let html = "text/html; charset=utf-8";
    for (path, content_type) in [
        ("/ui", html),
        ("/ui/", html),
        ("/ui/requests/0190d5a6-0000-7000-8000-000000000000", html),
        ("/ui/assets/console.js", "text/javascript; charset=utf-8"),
        ("/ui/assets/chart.js", "text/javascript; charset=utf-8"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_shows_requests_and_a_new_one_appears_without_a_reload() {
    let Some(b) = Browser::start(LAPTOP).await else {
        return;
    };
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(Backend::Sqlite)
        .allow_loopback()
        .spawn()
        .await;
    let first = sync_request(&app, "first").await;
    let second = app.submit_async("second", &receiver.url("/hook")).await;
    app.wait_terminal(&second, PATIENCE).await;

    b.goto(&app.url("/ui")).await;
    for id in [&first, &second] {
        b.eventually("a row of each request", PATIENCE, || async {
            b.client.find(Locator::XPath(&row_link(id))).await.ok()
        })
        .await;
    }
    mark_document(&b).await;
    let third = sync_request(&app, "third").await;
    b.eventually("the new request, without a reload", LIVE, || async {
        b.client.find(Locator::XPath(&row_link(&third))).await.ok()
    })
    .await;
    assert_same_document(&b).await;
    b.wait_for_text("3 requests").await;
    // The open service's caller is an admin, so the tenant filter is offered.
    for label in ["Mode", "Status", "Callback status", "Tenant", "Request id"] {
        b.field(label).await;
    }
    b.button("Search").await;
    b.wait_for_text("Last hour: 1 delivered, 0 failed").await;
    b.assert_fits(LAPTOP, "the list").await;
    b.assert_same_origin(&app.base).await;
    b.screenshot("list").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_narrows_the_list_and_search_opens_a_request() {
    let Some(b) = Browser::start(LAPTOP).await else {
        return;
    };
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(Backend::Sqlite)
        .allow_loopback()
        .spawn()
        .await;
    let sync = sync_request(&app, "inline").await;
    let async_ = app.submit_async("later", &receiver.url("/hook")).await;
    app.wait_terminal(&async_, PATIENCE).await;
    b.goto(&app.url("/ui")).await;
    b.wait_for_text("2 requests").await;

    b.field("Mode")
        .await
        .select_by_value("async")
        .await
        .unwrap();
    b.eventually("only the async request", PATIENCE, || async {
        let gone = !b.shown(&row_link(&sync)).await;
        (gone && b.shown(&row_link(&async_)).await).then_some(())
    })
    .await;
    let url = b.client.current_url().await.unwrap();
    assert_eq!(
        url.query(),
        Some("mode=async"),
        "the filter is kept in the URL"
    );
    b.field("Callback status")
        .await
        .select_by_value("failed")
        .await
        .unwrap();
    b.wait_for_text("No requests match.").await;
    b.field("Status")
        .await
        .select_by_value("completed")
        .await
        .unwrap();
    b.field("Callback status")
        .await
        .select_by_value("")
        .await
        .unwrap();
    b.wait_for_text("1 request").await;

    // Search, from the keyboard: type the id, press Enter.
    let search = b.field("Request id").await;
    search.send_keys("no-such-request").await.unwrap();
    b.button("Search").await.click().await.unwrap();
    b.wait_for_text("No request with id no-such-request.").await;
    search.clear().await.unwrap();
    search
        .send_keys(&format!("{sync}{}", char::from(Key::Enter)))
        .await
        .unwrap();
    b.eventually("the request's page", PATIENCE, || async {
        let url = b.client.current_url().await.ok()?;
        (url.path() == format!("/ui/requests/{sync}")).then_some(())
    })
    .await;
    b.wait_for_text("A sync request has no callback.").await;
    b.assert_same_origin(&app.base).await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_callback_is_redelivered_from_its_page_and_the_new_attempt_appears() {
    let Some(b) = Browser::start(LAPTOP).await else {
        return;
    };
    // The first delivery fails (one attempt allowed); the redelivery is accepted.
    let receiver = Receiver::scripted("127.0.0.1", |n| {
        Reply::status(if n == 0 { 500 } else { 200 })
    })
    .await;
    let app = TestApp::builder(Backend::Sqlite)
        .allow_loopback()
        .arg("--callback-max-attempts", 1)
        .spawn()
        .await;
    let id = app
        .submit_async("redeliver me", &receiver.url("/hook"))
        .await;
    let record = app.wait_terminal(&id, PATIENCE).await;
    assert_eq!(record["callback_status"], "failed");

    b.goto(&app.url(&format!("/ui/requests/{id}"))).await;
    b.wait_for_text("Delivery attempts").await;
    let headers = b
        .js("return [...document.querySelectorAll('table.attempts thead th')].map(th => th.innerText.trim())")
        .await;
    assert_eq!(headers, json!(ATTEMPT_COLUMNS));
    let rows = b
        .eventually("the failed attempt", PATIENCE, || async {
            let rows = attempt_rows(&b).await;
            (rows.len() == 1).then_some(rows)
        })
        .await;
    assert_eq!((rows[0][0].as_str(), rows[0][2].as_str()), ("1", "500"));
    assert_eq!(rows[0][5], "scheduled");
    let (trace_id, hash) = (&record["trace_id"], &record["output_data"]["input_hash"]);
    for fact in [
        "default",
        trace_id.as_str().unwrap(),
        "redeliver me",
        hash.as_str().unwrap(),
    ] {
        b.wait_for_text(fact).await; // tenant, trace id, input, output
    }

    mark_document(&b).await;
    b.button("Redeliver").await.click().await.unwrap();
    receiver.wait_for(2, PATIENCE).await;
    let rows = b
        .eventually("the manual attempt", PATIENCE, || async {
            let rows = attempt_rows(&b).await;
            (rows.len() == 2).then_some(rows)
        })
        .await;
    assert_eq!((rows[1][0].as_str(), rows[1][2].as_str()), ("2", "200"));
    assert_eq!(rows[1][5], "manual");
    assert_same_document(&b).await;
    b.wait_for_text("Delivered again.").await;
    b.assert_fits(LAPTOP, "a request").await;
    b.assert_same_origin(&app.base).await;
    b.screenshot("request").await;

    // The chart counts both endings: one failed, then one delivered.
    b.goto(&app.url("/ui")).await;
    b.wait_for_text("Last hour: 1 delivered, 1 failed").await;
    let label = b
        .js(
            "const svg = document.querySelector('figure.chart svg[role=img]');
             return svg.getAttribute('aria-labelledby').split(' ')
                 .map(id => document.getElementById(id).textContent).join(' ')",
        )
        .await;
    assert!(
        label.as_str().unwrap().contains("1 delivered, 1 failed"),
        "{label}"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_fits_a_phone_and_a_laptop_without_horizontal_scrolling() {
    let Some(b) = Browser::start(PHONE).await else {
        return;
    };
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(Backend::Sqlite)
        .allow_loopback()
        .spawn()
        .await;
    sync_request(&app, "a rather long text to see how the phone wraps it").await;
    let id = app
        .submit_async("phone", &receiver.url("/a/long/callback/path"))
        .await;
    app.wait_terminal(&id, PATIENCE).await;

    for size in [PHONE, LAPTOP] {
        b.resize(size).await;
        b.goto(&app.url("/ui")).await;
        b.wait_for_text("2 requests").await;
        b.wait_for_text("Last hour").await;
        b.assert_fits(size, "the list").await;
        if size == PHONE {
            b.screenshot("phone-list").await;
        }
        b.goto(&app.url(&format!("/ui/requests/{id}"))).await;
        b.eventually("the attempt", PATIENCE, || async {
            (attempt_rows(&b).await.len() == 1).then_some(())
        })
        .await;
        b.assert_fits(size, "a request").await;
        if size == PHONE {
            b.js("document.querySelector('#callback-heading').scrollIntoView()")
                .await;
            b.screenshot("phone-request").await;
        }
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_control_is_labelled_and_reached_from_the_keyboard() {
    let Some(b) = Browser::start(LAPTOP).await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = sync_request(&app, "keyboard").await;
    b.goto(&app.url("/ui")).await;
    b.eventually("the row", PATIENCE, || async {
        b.client.find(Locator::XPath(&row_link(&id))).await.ok()
    })
    .await;
    let unlabelled = b
        .js(
            "return [...document.querySelectorAll('input, select, textarea')]
                .filter(f => f.labels.length === 0).map(f => f.outerHTML)",
        )
        .await;
    assert_eq!(unlabelled, json!([]), "every field has a <label>");

    // Tab from the top of the page and note where focus goes.
    let mut reached = Vec::new();
    for _ in 0..20 {
        let focused = b.client.active_element().await.unwrap();
        focused
            .send_keys(&char::from(Key::Tab).to_string())
            .await
            .unwrap();
        let name = b
            .js("const e = document.activeElement;
                 return (e.labels && e.labels[0] ? e.labels[0].innerText : e.innerText).trim()")
            .await;
        reached.push(name.as_str().unwrap().to_owned());
    }
    for control in [
        "Mode",
        "Status",
        "Callback status",
        "Tenant",
        "Request id",
        "Search",
        &id,
    ] {
        assert!(
            reached.iter().any(|r| r == control),
            "{control} not reached: {reached:?}"
        );
    }
    // Enter on a focused row link opens the request.
    let link = b.client.find(Locator::XPath(&row_link(&id))).await.unwrap();
    link.send_keys(&char::from(Key::Enter).to_string())
        .await
        .unwrap();
    b.wait_for_text("A sync request has no callback.").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_shown_as_text_never_as_markup() {
    let Some(b) = Browser::start(LAPTOP).await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await;
    let markup = r#"<img src=x onerror="window.__injected=1"><b>bold</b>"#;
    let id = sync_request(&app, markup).await;
    b.goto(&app.url(&format!("/ui/requests/{id}"))).await;
    b.wait_for_text(r#"<img src=x onerror=\"window.__injected=1\"><b>bold</b>"#)
        .await;
    let injected = b
        .js("return [window.__injected === undefined, document.querySelectorAll('main img, main b').length]")
        .await;
    assert_eq!(injected, json!([true, 0]), "the text was parsed as HTML");
    b.close().await;
}

/// POST /sync with a key; returns the request id.
async fn sync_request_as(app: &TestApp, key: &str, text: &str) -> String {
    let r = app
        .client
        .post(app.url("/sync"))
        .bearer_auth(key)
        .json(&work(text, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_with_a_key_shows_its_tenant_and_a_wrong_key_is_refused() {
    let Some(b) = Browser::start(LAPTOP).await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await;
    let acme = app.create_key("acme", false).await;
    let admin = app.create_key("ops", true).await;
    app.wait_keys(&[&acme, &admin]).await;
    let mine = sync_request_as(&app, &acme, "acme's").await;
    let theirs = sync_request_as(&app, &admin, "ops'").await;

    b.goto(&app.url("/ui")).await;
    let key_field = b.field("API key").await;
    b.assert_fits(LAPTOP, "the sign-in form").await;
    b.screenshot("sign-in").await;
    key_field
        .send_keys("csk_notakeynotakeynotakeynotakeynotakey")
        .await
        .unwrap();
    b.button("Sign in").await.click().await.unwrap();
    let alert = "//*[@role='alert'][normalize-space()='Invalid API key']";
    b.eventually("the alert", PATIENCE, || async {
        b.shown(alert).await.then_some(())
    })
    .await;

    key_field.clear().await.unwrap();
    key_field.send_keys(&acme).await.unwrap();
    b.button("Sign in").await.click().await.unwrap();
    b.wait_for_text("Tenant acme").await;
    b.eventually("acme's request", PATIENCE, || async {
        b.shown(&row_link(&mine)).await.then_some(())
    })
    .await;
    assert!(
        !b.shown(&row_link(&theirs)).await,
        "another tenant's request is listed"
    );
    assert!(
        !b.shown("//label[normalize-space()='Tenant']").await,
        "not an admin key"
    );
    let kept = b
        .js("return sessionStorage.getItem('consuma.apiKey')")
        .await;
    assert_eq!(kept, json!(acme), "the key is kept in sessionStorage");
    // A reload keeps the session (the tab's storage); Sign out forgets it.
    b.goto(&app.url(&format!("/ui/requests/{mine}"))).await;
    b.wait_for_text("acme's").await;
    b.button("Sign out").await.click().await.unwrap();
    b.field("API key").await;
    assert_eq!(b.js("return sessionStorage.length").await, json!(0));

    // An admin key sees every tenant, and may narrow the list to one.
    b.field("API key").await.send_keys(&admin).await.unwrap();
    b.button("Sign in").await.click().await.unwrap();
    b.wait_for_text("Tenant ops (admin)").await;
    // Signing in again keeps the page it was on (acme's request); the list is a link away.
    b.goto(&app.url("/ui")).await;
    b.wait_for_text("2 requests").await;
    let tenant = b.field("Tenant").await;
    tenant
        .send_keys(&format!("acme{}", char::from(Key::Enter)))
        .await
        .unwrap();
    b.eventually("only acme's request", PATIENCE, || async {
        let gone = !b.shown(&row_link(&theirs)).await;
        (gone && b.shown(&row_link(&mine)).await).then_some(())
    })
    .await;
    b.assert_same_origin(&app.base).await;
    b.close().await;
}

/// SPEC §14: a request's page links to its destination; the Destinations page pauses,
/// sets a rate and resumes it, each through the API, and lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destinations_page_pauses_limits_and_resumes_a_destination() {
    let Some(b) = Browser::start(LAPTOP).await else {
        return;
    };
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(Backend::Sqlite)
        .allow_loopback()
        .spawn()
        .await;
    let id = app.submit_async("hello", &receiver.url("/hook")).await;
    app.wait_terminal(&id, PATIENCE).await;
    let destination = app.record(&id).await["destination_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let origin = format!("http://{}", receiver.addr);
    let api = format!("/destinations/{destination}");

    b.goto(&app.url(&format!("/ui/requests/{id}"))).await;
    let link = format!("//a[@href='/ui/destinations/{destination}']");
    b.eventually(
        "the request's link to its destination",
        PATIENCE,
        || async { b.client.find(Locator::XPath(&link)).await.ok() },
    )
    .await
    .click()
    .await
    .unwrap();
    b.wait_for_text("1 destination").await;
    b.wait_for_text(&origin).await;

    b.button("Pause").await.click().await.unwrap();
    b.button("Resume").await;
    assert_eq!(app.get_json(&api).await["paused"], true);
    b.wait_for_text("paused").await;

    let rate = b
        .field(&format!("Rate limit of {origin} (per second)"))
        .await;
    rate.send_keys("5").await.unwrap();
    b.button("Set rate").await.click().await.unwrap();
    b.eventually("the rate stored", PATIENCE, || async {
        (app.get_json(&api).await["rate_limit_per_s"] == 5.0).then_some(())
    })
    .await;

    b.button("Resume").await.click().await.unwrap();
    b.wait_for_text("limited to 5/s").await;
    assert_eq!(app.get_json(&api).await["paused"], false);

    b.goto(&app.url("/ui/destinations")).await;
    b.wait_for_text("limited to 5/s").await;
    b.assert_fits(LAPTOP, "the destinations page").await;
    b.assert_same_origin(&app.base).await;
    b.resize(PHONE).await;
    b.assert_fits(PHONE, "the destinations page on a phone")
        .await;
    b.close().await;
}
