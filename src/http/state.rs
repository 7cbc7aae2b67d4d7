//! What every handler can reach.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use crate::config::Config;
use crate::intake::Intake;
use crate::ssrf::CallbackPolicy;
use crate::store::Store;

/// Cloned by every middleware and extractor of every request: one reference count, not
/// one per part (the parts' clones and drops were 2.5 % of the accept path's CPU).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub intake: Intake,
    pub policy: Arc<CallbackPolicy>,
    /// Every API key, by hash: the authentication layer's one lookup per request.
    pub keys: Arc<crate::auth::KeyRing>,
    pub metrics: PrometheusHandle,
    /// Cancelled when shutdown begins: /readyz turns 503 and new work is refused.
    pub shutdown: CancellationToken,
    /// The works this instance serves (SPEC §13): `text` and the configured ones.
    pub works: Arc<crate::works::Registry>,
    /// This instance's job engine (none on an accept-only node): its view of each
    /// destination's limit and attempts in flight.
    pub engine: Option<std::sync::Arc<crate::engine::Engine>>,
}

impl Shared {
    /// 503 once shutdown has begun (SPEC §3: the load balancer drains this instance).
    pub fn refuse_when_draining(&self) -> Result<(), ApiError> {
        match self.shutdown.is_cancelled() {
            true => Err(ApiError::Unavailable("the service is shutting down")),
            false => Ok(()),
        }
    }
}
