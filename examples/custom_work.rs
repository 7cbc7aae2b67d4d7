//! Embedding consuma with a work of your own (SPEC §13 "Embedding").
//!
//! `shout` upper-cases `word`; it is served at `POST /sync/shout` (and listed by `GET
//! /works`) beside the built-in `text` and any `--works` file, with every flag of
//! `consuma serve`:
//!
//! ```sh
//! cargo run --example custom_work -- --bind 127.0.0.1:8000
//! curl -s localhost:8000/sync/shout -H 'content-type: application/json' -d '{"word":"hi"}'
//! ```

use clap::Parser;
use consuma::config::Config;
use consuma::works::registry::WorkSettings;
use consuma::works::{Work, WorkCall, WorkError, WorksBuilder};
use serde_json::{Value, json};

/// The custom work: an async function from the input JSON to a result JSON.
struct Shout;

#[async_trait::async_trait]
impl Work for Shout {
    async fn perform(&self, call: &WorkCall) -> Result<Value, WorkError> {
        let input: Value = call.parse()?;
        match input["word"].as_str() {
            Some(word) => Ok(json!({ "shout": word.to_uppercase() })),
            // Not retryable: the same input would fail the same way (sync: 422).
            None => Err(WorkError::rejected("`word` must be a string")),
        }
    }
}

/// The built-in works plus `shout`.
fn works() -> WorksBuilder {
    WorksBuilder::new().work("shout", Shout, WorkSettings::default())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = consuma::cli::Cli::parse();
    let config = match Config::from_args(cli.serve) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("custom_work: error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match consuma::app::serve_with(config, works()).await {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("custom_work: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consuma::app::Application;
    use tokio_util::sync::CancellationToken;

    /// The example served in-process on a free port, spoken to over HTTP.
    #[tokio::test]
    async fn the_custom_work_is_served_beside_text() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let args = ["consuma", "--bind", "127.0.0.1:0", "--database-url", &url];
        let cli = consuma::cli::Cli::try_parse_from(args).unwrap();
        let config = Config::from_args(cli.serve).unwrap();
        let stop = CancellationToken::new();
        let app = Application::build_with(config, stop.clone(), works())
            .await
            .unwrap();
        let base = format!("http://{}", app.local_addr().unwrap());
        let server = tokio::spawn(app.run_until_stopped());
        let client = reqwest::Client::new();
        let post =
            |path: &str, body: Value| client.post(format!("{base}{path}")).json(&body).send();

        let done: Value = post("/sync/shout", json!({"word": "hi"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(done["status"], "completed");
        assert_eq!(done["result"], json!({"shout": "HI"}));
        let record: Value = client
            .get(format!(
                "{base}/requests/{}",
                done["request_id"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (record["work"].as_str(), record["status"].as_str()),
            (Some("shout"), Some("completed"))
        );

        let refused = post("/sync/shout", json!({"word": 5})).await.unwrap();
        assert_eq!(refused.status(), 422);
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/work-rejected");

        let works: Value = client
            .get(format!("{base}/works"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = works["works"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["shout", "text"]);
        let text = post("/sync/text", json!({"text": "a", "count": 1}))
            .await
            .unwrap();
        assert_eq!(text.status(), 200);

        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
