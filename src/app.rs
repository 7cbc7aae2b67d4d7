//! Builds the application from a [`Config`] and runs it until shutdown. `main` and
//! nothing else calls this; the binary is what the integration tests start.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::config::{Config, ConfigError};
use crate::delivery::CallbackClient;
use crate::engine::{Engine, EngineConfig};
use crate::http::{self, AppState};
use crate::intake::Intake;
use crate::ssrf::CallbackPolicy;
use crate::store;
use crate::telemetry::metrics;

pub struct Application {
    listener: TcpListener,
    state: AppState,
    engine: Option<Arc<Engine>>,
    auth: Arc<Auth>,
}

impl Application {
    /// Opens the store, loads API keys and signing secrets (generating `default`'s at
    /// first start), binds the listener. With `--require-auth` and no key in the database
    /// it fails with a [`ConfigError`] (exit status 2).
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        Self::build_with(config, shutdown, crate::works::WorksBuilder::new()).await
    }

    /// [`Application::build`] serving `works` (an embedder's own works) besides `text`
    /// and the works file's.
    pub async fn build_with(
        mut config: Config,
        shutdown: CancellationToken,
        works: crate::works::WorksBuilder,
    ) -> anyhow::Result<Self> {
        let works = Arc::new(build_works(&config, works)?);
        let (store, auth) = open_store(&config).await?;
        let policy = callback_policy(&config);
        let engine = match config.workers {
            0 => None,
            workers => {
                let client = CallbackClient::new(
                    policy.clone(),
                    config.callback_timeout,
                    config.callback_dns_server,
                )?;
                let engine_config = engine_config(&config, workers, works.clone());
                Some(Engine::new(
                    store.clone(),
                    client,
                    auth.secrets.clone(),
                    engine_config,
                ))
            }
        };
        if engine.is_some() {
            count_foreign_jobs(store.as_ref(), &works).await;
        }
        let listener = bind_listener(&mut config, &auth).await?;
        let intake = new_intake(&config, store.clone());
        let state = AppState::new(http::state::Shared {
            config: Arc::new(config),
            store,
            intake,
            policy,
            keys: auth.keys.clone(),
            metrics: metrics::install(),
            shutdown,
            works,
            engine: engine.clone(),
        });
        Ok(Self {
            listener,
            state,
            engine,
            auth: Arc::new(auth),
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
        let refresher = self.auth.spawn_refresher(shutdown.clone());
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
        refresher.abort();
        stop_http.cancel();
        if !server.is_finished() && tokio::time::timeout_at(deadline, server).await.is_err() {
            tracing::warn!("HTTP requests still open at the end of the grace period; closing them");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The works this instance serves: `text`, the works file's and an embedder's. A bad
/// works file is a [`ConfigError`].
fn build_works(
    config: &Config,
    works: crate::works::WorksBuilder,
) -> anyhow::Result<crate::works::Registry> {
    let works = works
        .text_delay(config.work_delay)
        .work_workers(config.work_workers)
        .specs(config.works.clone())
        .build()
        .map_err(|e| ConfigError(format!("{e:#}")))?;
    Ok(works)
}

/// Opens the store and loads API keys and signing secrets; refuses `--require-auth`
/// without a key; fails the /sync records an earlier process left processing.
async fn open_store(config: &Config) -> anyhow::Result<(Arc<dyn store::Store>, Auth)> {
    let options = store::StoreOptions {
        sqlite_synchronous: config.sqlite_synchronous,
        pg_max_connections: config.database_max_connections,
    };
    let store = store::connect(&config.database_url, options)
        .await
        .with_context(|| format!("cannot open the database {}", config.database_url))?;
    let auth = Auth::load(store.clone(), config.signing_secret.clone())
        .await
        .context("cannot load API keys and signing secrets")?;
    if config.require_auth && !auth.keys.requires_key() {
        return Err(ConfigError(
            "--require-auth: the database holds no API key; create one with `consuma keys create --tenant NAME`".into(),
        )
        .into());
    }
    tracing::info!(backend = store.backend(), url = %config.database_url, "database ready");
    fail_interrupted_sync(store.as_ref()).await?;
    Ok((store, auth))
}

/// The callback policy, with a warning for each range `--allow-callback-cidr` opened.
fn callback_policy(config: &Config) -> Arc<CallbackPolicy> {
    if !config.allow_callback_cidrs.is_empty() {
        let opened: Vec<String> = config
            .allow_callback_cidrs
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::warn!(ranges = %opened.join(","), "callback policy: ranges opened by --allow-callback-cidr; callbacks may reach them");
    }
    Arc::new(CallbackPolicy::new(
        config.allow_callback_cidrs.clone(),
        config.callback_resolve.clone(),
    ))
}

/// The engine's settings, from the flags.
fn engine_config(
    config: &Config,
    workers: usize,
    works: Arc<crate::works::Registry>,
) -> EngineConfig {
    EngineConfig {
        workers,
        lease: config.lease,
        work_delay: config.work_delay,
        max_attempts: config.callback_max_attempts,
        base_delay: config.callback_base_delay,
        shutdown_grace: config.shutdown_grace,
        poll: config.job_poll,
        min_in_flight_per_destination: config.callback_min_in_flight_per_destination,
        max_in_flight_per_destination: config.callback_max_in_flight_per_destination,
        breaker_cooldown: config.callback_breaker_cooldown,
        expire_after: config.callback_expire_after,
        works,
        work_workers: config.work_workers,
    }
}

/// Sets the connection cap and binds the listener; warns when an instance without an API
/// key listens beyond loopback.
async fn bind_listener(config: &mut Config, auth: &Auth) -> anyhow::Result<TcpListener> {
    config.http.max_connections = http::capacity::connection_cap(config);
    let listener = crate::listen::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    if !auth.keys.requires_key() && !config.bind.ip().is_loopback() {
        tracing::warn!(
            bind = %config.bind,
            "no API key exists: the service is open to anyone who can reach this address; create a key with `consuma keys create`"
        );
    }
    Ok(listener)
}

/// What submissions need: the store, the work's delay, the backlog limits, the status of
/// an async acknowledgement.
fn new_intake(config: &Config, store: Arc<dyn store::Store>) -> Intake {
    Intake {
        store,
        work_delay: config.work_delay,
        limits: store::AdmissionLimits {
            max_pending: config.max_pending_jobs,
            max_pending_per_tenant: config.max_pending_jobs_per_tenant,
        },
        async_ack_status: config.async_ack_status,
    }
}

/// SPEC §17: logs how many pending jobs name a work this instance does not serve (it
/// never claims them: they wait for an instance that has the work, or expire).
async fn count_foreign_jobs(store: &dyn store::Store, works: &crate::works::Registry) {
    match store.pending_works().await {
        Ok(pending) => {
            let foreign: Vec<String> = pending
                .iter()
                .filter(|(name, _)| works.named(name).is_none())
                .map(|(name, n)| format!("{name}={n}"))
                .collect();
            let n: u64 = pending
                .iter()
                .filter(|(name, _)| works.named(name).is_none())
                .map(|(_, n)| n)
                .sum();
            if n > 0 {
                tracing::warn!(jobs = n, works = %foreign.join(","), "pending jobs name a work this instance does not serve");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not count the pending jobs of each work"),
    }
}

/// `consuma serve`: logs, signals, build, run. Returns the exit status.
pub async fn serve(config: Config) -> anyhow::Result<u8> {
    serve_with(config, crate::works::WorksBuilder::new()).await
}

/// [`serve`] with an embedder's own works (SPEC §13 "Embedding"): what a binary built on
/// this library calls from `main`.
pub async fn serve_with(config: Config, works: crate::works::WorksBuilder) -> anyhow::Result<u8> {
    let _telemetry = crate::telemetry::init(config.log_format);
    let shutdown = CancellationToken::new();
    crate::shutdown::cancel_on_signals(shutdown.clone());
    let app = match Application::build_with(config, shutdown, works).await {
        Ok(app) => app,
        Err(e) => match e.downcast_ref::<ConfigError>() {
            Some(bad) => {
                eprintln!("consuma: error: {bad}");
                return Ok(2);
            }
            None => return Err(e),
        },
    };
    let addr = app.local_addr()?;
    tracing::info!(addr = %addr, version = env!("CARGO_PKG_VERSION"), "listening");
    app.run_until_stopped().await?;
    Ok(0)
}

/// Before serving: fails the /sync records whose work died with an earlier process
/// (SPEC §16 "No record stays `processing`"), batch after batch.
async fn fail_interrupted_sync(store: &dyn store::Store) -> anyhow::Result<()> {
    let mut failed = 0;
    loop {
        match store
            .fail_interrupted_sync(true)
            .await
            .context("cannot fail the /sync records an earlier process left processing")?
        {
            0 => break,
            n => failed += n,
        }
    }
    if failed > 0 {
        tracing::warn!(
            records = failed,
            "/sync records left processing by a stopped process set failed (interrupted)"
        );
    }
    Ok(())
}
