//! Logs, traces and metrics (SPEC §5).
//!
//! One subscriber for the process: human-readable or JSON lines on stderr, plus an OTLP
//! span exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Every line about a request
//! is written inside a span that carries its `request_id` and `trace_id`. Neither the
//! request's text nor a callback URL's query string is ever logged (see
//! [`redact_url`]).

pub mod metrics;
pub mod trace_context;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the span exporter alive; flushes it on drop.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown_with_timeout(std::time::Duration::from_secs(2));
        }
    }
}

/// The filter when `RUST_LOG` is not set: our own events, and warnings from libraries.
const DEFAULT_FILTER: &str = "info,sqlx=warn,hyper=warn,h2=warn,reqwest=warn,tower_http=warn";

/// `--log-format`: how log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Caps the libraries that log URLs with their paths and queries.
const NO_URLS: &str = "reqwest=warn";

/// Installs the process-wide subscriber. Call once, from `main`.
pub fn init(format: LogFormat) -> TelemetryGuard {
    // reqwest names whole URLs in its debug events; they never pass, whatever RUST_LOG says
    // (SPEC §16: logs name origins only).
    let filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
            .add_directive(NO_URLS.parse().expect("a valid directive"))
    };
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
    };
    let (otel, provider) = match otlp_provider() {
        Some(provider) => {
            let tracer = provider.tracer("consuma");
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(filter())
                .boxed();
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(fmt).with(otel).init();
    if provider.is_some() {
        tracing::info!("exporting spans over OTLP");
    }
    TelemetryGuard { provider }
}

/// An OTLP/HTTP span exporter, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-specific
/// variable) is set; the exporter reads the endpoint itself.
fn otlp_provider() -> Option<SdkTracerProvider> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty()));
    if !configured {
        return None;
    }
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_timeout(std::time::Duration::from_secs(3))
        .build();
    match exporter {
        Ok(exporter) => Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name("consuma")
                        .build(),
                )
                .build(),
        ),
        Err(e) => {
            eprintln!("consuma: OTLP exporter disabled: {e}");
            None
        }
    }
}

/// A URL fit for logs and spans (SPEC §16): its origin as `scheme://host:port`, never a
/// user, path or query (Slack-style URLs carry their token in the path, others in the
/// query). The port is always written, the scheme's default included.
pub fn redact_url(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}
