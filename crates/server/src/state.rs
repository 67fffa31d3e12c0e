use std::sync::Arc;

use crate::auth::Auth;
use crate::limits::{Limits, RateLimiter};
use crate::model_router::ModelRouter;
use crate::thinking::ThinkingSigner;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub models: Arc<ModelRouter>,
    pub auth: Arc<Auth>,
    pub signer: ThinkingSigner,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub limits: Arc<RateLimiter>,
}

impl AppState {
    pub fn new(models: ModelRouter, auth: Auth) -> Self {
        Self {
            models: Arc::new(models),
            auth: Arc::new(auth),
            signer: ThinkingSigner::ephemeral(),
            metrics: crate::metrics::handle(),
            limits: Arc::new(RateLimiter::new(Limits::default(), Default::default())),
        }
    }

    pub fn with_rate_limits(mut self, limits: RateLimiter) -> Self {
        self.limits = Arc::new(limits);
        self
    }

    /// Signs thinking blocks under a persistent key, so they verify after a restart.
    pub fn with_thinking_key(mut self, key: Vec<u8>) -> Self {
        self.signer = ThinkingSigner::new(key);
        self
    }
}
