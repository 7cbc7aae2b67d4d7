//! Helpers for the load generator's tests: Standard Webhooks signing computed
//! independently of the service's code, and a stand-in service on loopback port 0.

use axum::Router;
use base64::Engine as _;
use clap::Parser;
use hmac::{KeyInit, Mac};
use tokio::net::TcpListener;

use super::LoadArgs;

/// The signing key the stand-in service signs with.
pub const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// `whsec_<base64 key>`.
pub fn whsec(key: &[u8]) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// `v1,<base64 HMAC-SHA256 over "id.timestamp.body">`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let sig = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(sig)
    )
}

/// Serves `app` on 127.0.0.1 port 0; returns its base URL. The server lives as long as
/// the test's runtime.
pub async fn spawn_service(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Parses `consuma load` options, with `--callback-port 0` unless a port is given.
pub fn load_args(argv: &[&str]) -> LoadArgs {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadArgs,
    }
    let port: &[&str] = match argv.contains(&"--callback-port") {
        true => &[],
        false => &["--callback-port", "0"],
    };
    let argv = ["load"].iter().chain(port).chain(argv).copied();
    Cli::try_parse_from(argv).expect("valid test options").args
}

/// A reqwest client (with the TLS provider reqwest needs installed).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
