//! Builds the application from a [`Config`] and runs it until shutdown. `main` and
//! nothing else calls this; the binary is what the integration tests start.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::delivery::CallbackClient;
use crate::delivery::signing::SigningSecret;
use crate::engine::{Engine, EngineConfig};
use crate::http::{self, AppState};
use crate::intake::Intake;
use crate::ssrf::CallbackPolicy;
use crate::store::{self, Store};
use crate::telemetry::metrics;

/// The name the generated signing secret is stored under.
pub const SIGNING_SECRET_SETTING: &str = "callback_signing_secret";

pub struct Application {
    listener: TcpListener,
    state: AppState,
    engine: Option<Arc<Engine>>,
}

impl Application {
    /// Opens the store, settles the signing secret, binds the listener.
    pub async fn build(mut config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let options = store::StoreOptions {
            sqlite_synchronous: config.sqlite_synchronous,
            pg_max_connections: config.database_max_connections,
        };
        let store = store::connect(&config.database_url, options)
            .await
            .with_context(|| format!("cannot open the database {}", config.database_url))?;
        tracing::info!(backend = store.backend(), url = %config.database_url, "database ready");
        let secret = signing_secret(&config, store.as_ref()).await?;
        if !config.allow_callback_cidrs.is_empty() {
            let opened: Vec<String> = config
                .allow_callback_cidrs
                .iter()
                .map(ToString::to_string)
                .collect();
            tracing::warn!(ranges = %opened.join(","), "callback policy: ranges opened by --allow-callback-cidr; callbacks may reach them");
        }
        let policy = Arc::new(CallbackPolicy::new(
            config.allow_callback_cidrs.clone(),
            config.callback_resolve.clone(),
        ));
        let engine = match config.workers {
            0 => None,
            workers => {
                let client = CallbackClient::new(policy.clone(), secret, config.callback_timeout)?;
                Some(Engine::new(
                    store.clone(),
                    client,
                    EngineConfig {
                        workers,
                        lease: config.lease,
                        work_delay: config.work_delay,
                        max_attempts: config.callback_max_attempts,
                        base_delay: config.callback_base_delay,
                        shutdown_grace: config.shutdown_grace,
                        poll: config.job_poll,
                        max_in_flight_per_destination: config
                            .callback_max_in_flight_per_destination,
                        breaker_cooldown: config.callback_breaker_cooldown,
                        expire_after: config.callback_expire_after,
                    },
                ))
            }
        };
        config.http.max_connections = http::capacity::connection_cap(&config);
        let listener = crate::listen::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let intake = Intake {
            store: store.clone(),
            work_delay: config.work_delay,
            limits: store::AdmissionLimits {
                max_pending: config.max_pending_jobs,
                max_pending_per_tenant: config.max_pending_jobs_per_tenant,
            },
            async_ack_status: config.async_ack_status,
        };
        let state = AppState {
            config: Arc::new(config),
            store,
            intake,
            policy,
            metrics: metrics::install(),
            shutdown,
        };
        Ok(Self {
            listener,
            state,
            engine,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the shutdown token is cancelled, then drains (SPEC §3): the listener
    /// stays open while running jobs finish (or are released), so that /readyz answers 503
    /// and new work is refused meanwhile; then the HTTP server stops accepting and lets
    /// in-flight requests finish. One deadline, the grace counted from the signal, bounds
    /// both (SPEC §9 "Shutdown").
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let shutdown = self.state.shutdown.clone();
        let grace = self.state.config.shutdown_grace;
        let engine = self.engine.map(|e| tokio::spawn(e.run(shutdown.clone())));
        let housekeeping = tokio::spawn(crate::housekeeping::run(
            self.state.store.clone(),
            self.state.config.retention,
            self.state.config.callback_expire_after,
            shutdown.clone(),
        ));
        let stop_http = CancellationToken::new();
        let limits = self.state.config.http;
        let app = http::router(self.state.clone());
        let server = http::server::serve(self.listener, app, limits, stop_http.clone());
        let mut server = tokio::spawn(server);
        tokio::select! {
            _ = shutdown.cancelled() => {}
            // The server ends only when told to; ending before means it panicked.
            result = &mut server => {
                shutdown.cancel();
                result.context("the HTTP server failed")?;
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        if let Some(engine) = engine {
            let _ = engine.await;
        }
        housekeeping.abort();
        stop_http.cancel();
        if !server.is_finished() && tokio::time::timeout_at(deadline, server).await.is_err() {
            tracing::warn!("HTTP requests still open at the end of the grace period; closing them");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The flag's secret, or the one stored in the database (generated at first start).
pub async fn signing_secret(config: &Config, store: &dyn Store) -> anyhow::Result<SigningSecret> {
    if let Some(secret) = &config.signing_secret {
        return Ok(secret.clone());
    }
    stored_signing_secret(store).await
}

/// The secret every instance sharing `store` signs with, generated and stored if absent.
pub async fn stored_signing_secret(store: &dyn Store) -> anyhow::Result<SigningSecret> {
    let candidate = SigningSecret::generate().to_whsec();
    let stored = store
        .get_or_insert_setting(SIGNING_SECRET_SETTING, &candidate)
        .await?;
    SigningSecret::parse(&stored)
        .map_err(|e| anyhow::anyhow!("the stored signing secret is unusable: {e}"))
}

/// `consuma serve`: logs, signals, build, run. Returns the exit status.
pub async fn serve(config: Config) -> anyhow::Result<u8> {
    let _telemetry = crate::telemetry::init(config.log_format);
    let shutdown = CancellationToken::new();
    crate::shutdown::cancel_on_signals(shutdown.clone());
    let app = Application::build(config, shutdown).await?;
    let addr = app.local_addr()?;
    tracing::info!(addr = %addr, version = env!("CARGO_PKG_VERSION"), "listening");
    app.run_until_stopped().await?;
    Ok(0)
}

/// `consuma secret`: prints the signing secret in use.
pub async fn print_secret(args: crate::cli::SecretArgs) -> anyhow::Result<u8> {
    if let Some(raw) = args.signing_secret {
        if let Err(e) = SigningSecret::parse(&raw) {
            eprintln!("consuma: error: --signing-secret: {e}");
            return Ok(2);
        }
        println!("{raw}");
        return Ok(0);
    }
    let url = match crate::config::DatabaseUrl::from_flag_or_env(args.database_url.as_deref()) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("consuma: error: {e}");
            return Ok(2);
        }
    };
    let store = store::connect(&url, store::StoreOptions::default())
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    println!(
        "{}",
        stored_signing_secret(store.as_ref()).await?.to_whsec()
    );
    Ok(0)
}
