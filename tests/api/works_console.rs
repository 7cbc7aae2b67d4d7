//! The console (SPEC §13): a work's request page shows its work, its attempts and its
//! input and result as pretty-printed JSON.

use serde_json::json;

use crate::helpers::browser::{Browser, LAPTOP};
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
