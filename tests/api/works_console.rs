//! The console (SPEC §13): a work's request page shows its work, its attempts and its
//! input and result as pretty-printed JSON; the list has a work column and a work filter
//! whose choices come from GET /works.

use serde_json::json;

use crate::helpers::browser::{Browser, LAPTOP, PATIENCE};
use crate::helpers::upstream::Upstream;
use crate::helpers::{Backend, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_request_page_shows_its_work_attempts_and_pretty_json() {
    let Some(b) = Browser::start(LAPTOP).await else {
        return;
    };
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("works.toml");
    let text = format!(
        "[works.pdf-render]\nkind = \"http\"\nurl = \"{}\"\n",
        up.url("/ok")
    );
    std::fs::write(&file, text).unwrap();
    let app = TestApp::builder(Backend::Sqlite)
        .arg("--works", file.display())
        .spawn()
        .await;
    let r = app
        .post_json("/sync/pdf-render", &json!({"pages": 2}))
        .await;
    let id = r.json::<serde_json::Value>().await.unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    b.goto(&app.url(&format!("/ui/requests/{id}"))).await;
    b.wait_for_text("Work attempts").await;
    let shown = b
        .js(
            "const f = (n) => document.querySelector(`[data-field=${n}]`).innerText;
             return [f('work'), f('input_data'), f('output_data'), f('work_attempts')]",
        )
        .await;
    let shown: Vec<&str> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(shown[0], "pdf-render");
    assert_eq!(shown[1], "{\n  \"pages\": 2\n}");
    assert_eq!(shown[2], "{\n  \"echo\": {\n    \"pages\": 2\n  }\n}");
    assert!(shown[3].contains("\"attempt\": 1"), "{}", shown[3]);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_shows_each_work_and_filters_by_one() {
    let Some(b) = Browser::start(LAPTOP).await else {
        return;
    };
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("works.toml");
    let text = format!(
        "[works.pdf-render]\nkind = \"http\"\nurl = \"{}\"\n",
        up.url("/ok")
    );
    std::fs::write(&file, text).unwrap();
    let app = TestApp::builder(Backend::Sqlite)
        .arg("--works", file.display())
        .spawn()
        .await;
    let id = |r: serde_json::Value| r["request_id"].as_str().unwrap().to_owned();
    let pdf = id(app
        .post_json("/sync/pdf-render", &json!({"pages": 2}))
        .await
        .json()
        .await
        .unwrap());
    let text = id(app
        .post_sync(json!({"text": "a b"}))
        .await
        .json()
        .await
        .unwrap());
    b.goto(&app.url("/ui")).await;
    b.wait_for_text("2 requests").await;
    let work_of = |id: &str| {
        format!(
            "return [...document.querySelectorAll('tr[data-id=\"{id}\"] td')]
               .filter((td) => td.dataset.label === 'Work').map((td) => td.innerText)"
        )
    };
    assert_eq!(b.js(&work_of(&pdf)).await, json!(["pdf-render"]));
    assert_eq!(b.js(&work_of(&text)).await, json!(["text"]));
    // The filter offers the works GET /works lists.
    let filter = b.field("Work").await;
    b.eventually("the works as choices", PATIENCE, || async {
        let values = b
            .js("return [...document.querySelectorAll('#filter-work option')].map((o) => o.value)")
            .await;
        (values == json!(["", "pdf-render", "text"])).then_some(())
    })
    .await;
    filter.select_by_value("pdf-render").await.unwrap();
    b.wait_for_text("1 request").await;
    let url = b.client.current_url().await.unwrap();
    assert_eq!(url.query(), Some("work=pdf-render"));
    assert!(b.js(&work_of(&text)).await.as_array().unwrap().is_empty());
    b.close().await;
}
