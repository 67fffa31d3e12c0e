use std::sync::Arc;

use missive_store::Store;

use crate::auth::Auth;
use crate::file_storage::FilesConfig;
use crate::ledger::Ledger;
use crate::limits::{Limits, RateLimiter};
use crate::model_router::ModelRouter;
use crate::spend::{Prices, SpendLimits, SpendTracker};
use crate::thinking::ThinkingSigner;

/// What every handler can reach: a handle to the [`Services`], which axum clones for every
/// extractor and middleware of every request, so a clone is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The server's parts (models, keys, limits, the store and the rest), built once at start.
#[derive(Clone)]
pub struct Services {
    pub models: Arc<ModelRouter>,
    pub auth: Arc<Auth>,
    pub signer: ThinkingSigner,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub limits: Arc<RateLimiter>,
    /// Organization, workspaces, keys, ledger; `None` serves without an Admin API.
    pub store: Option<Arc<dyn Store>>,
    pub ledger: Ledger,
    pub spend: Arc<SpendTracker>,
    /// Limits and spend shared with other replicas through Redis.
    pub shared: Option<crate::shared::Shared>,
    /// Where uploaded files live; `None`: no Files API.
    pub files: Option<Arc<FilesConfig>>,
    /// Wakes the batch worker when a batch is created or canceled.
    pub batches: Arc<tokio::sync::Notify>,
    pub policies: Arc<crate::policy::Policies>,
    /// `[cache] share_across_workspaces`: one prompt cache for all workspaces, so that one
    /// can read what another cached (and learn from its hits what the other sent).
    pub share_cache_across_workspaces: bool,
    /// `[server] public_url`: where clients reach this server, for links in responses.
    pub public_url: Option<String>,
    /// `[server_tools]`: what `web_fetch` and `web_search` run with.
    pub server_tools: Arc<missive_tools::Toolbox>,
    /// `[console]`: signs console sessions; `None` serves no console.
    pub console: Option<Arc<crate::console_session::Sessions>>,
    /// The console's request log, kept with the console.
    pub request_log: Option<crate::request_log::RequestLog>,
    /// `[console.oidc]`: single sign-on for the console.
    pub console_oidc: Option<Arc<crate::console_oidc::Oidc>>,
}

impl AppState {
    pub fn new(models: ModelRouter, auth: Auth) -> Self {
        Self(Arc::new(Services {
            models: Arc::new(models),
            auth: Arc::new(auth),
            signer: ThinkingSigner::ephemeral(),
            metrics: crate::metrics::handle(),
            limits: Arc::new(RateLimiter::new(Limits::default(), Default::default())),
            store: None,
            ledger: Ledger::disabled(),
            spend: Arc::new(SpendTracker::new(Prices::default(), SpendLimits::default())),
            shared: None,
            files: None,
            batches: Arc::new(tokio::sync::Notify::new()),
            policies: Arc::default(),
            share_cache_across_workspaces: false,
            public_url: None,
            server_tools: Arc::default(),
            console: None,
            request_log: None,
            console_oidc: None,
        }))
    }

    /// The services to set up, while the state is built. A clone taken earlier (the batch
    /// worker's) keeps what it saw, as a copy would.
    pub fn services_mut(&mut self) -> &mut Services {
        Arc::make_mut(&mut self.0)
    }

    /// Lets the console's users sign in with OpenID Connect.
    pub fn with_console_oidc(mut self, config: crate::console_oidc::OidcConfig) -> Self {
        self.services_mut().console_oidc = Some(crate::console_oidc::Oidc::new(config));
        self
    }

    /// Serves the console at `/console`, with sessions signed by `sessions`, and keeps its
    /// request log for `retention`. Call after [`AppState::with_store`]; a tokio runtime
    /// must be running.
    pub fn with_console(
        mut self,
        sessions: crate::console_session::Sessions,
        retention: std::time::Duration,
    ) -> Self {
        let services = self.services_mut();
        services.console = Some(Arc::new(sessions));
        if let Some(store) = &services.store {
            services.request_log = Some(crate::request_log::RequestLog::spawn(
                Arc::clone(store),
                retention,
            ));
        }
        self
    }

    /// `[server_tools]`.
    pub fn with_server_tools(mut self, toolbox: missive_tools::Toolbox) -> Self {
        self.services_mut().server_tools = Arc::new(toolbox);
        self
    }

    pub fn with_public_url(mut self, url: Option<String>) -> Self {
        self.services_mut().public_url = url.map(|u| u.trim_end_matches('/').to_owned());
        self
    }

    /// `[cache] share_across_workspaces`.
    pub fn with_cache_shared_across_workspaces(mut self, shared: bool) -> Self {
        self.services_mut().share_cache_across_workspaces = shared;
        self
    }

    /// Whether the server's configuration refers to a workspace by this name.
    pub fn names_in_config(&self, name: &str) -> bool {
        self.policies.workspaces.contains_key(name)
            || self.limits.names(name)
            || self.spend.names(name)
    }

    pub fn with_policies(mut self, policies: crate::policy::Policies) -> Self {
        self.services_mut().policies = Arc::new(policies);
        self
    }

    /// Serves the Files API from `dir`.
    pub fn with_files(mut self, files: FilesConfig) -> Self {
        self.services_mut().files = Some(Arc::new(files));
        self
    }

    /// Runs Message Batches from the store, `concurrency` requests at a time (at background
    /// priority). Call after [`AppState::with_store`]; a tokio runtime must be running.
    pub fn with_batch_worker(self, concurrency: usize) -> Self {
        if let Some(store) = &self.store {
            crate::batch_worker::spawn(self.clone(), Arc::clone(store), concurrency);
        }
        self
    }

    /// Shares rate limits and spend with other replicas through Redis. Call before
    /// [`AppState::with_rate_limits`] and [`AppState::with_store`], which take it up.
    pub fn with_coordination(mut self, shared: crate::shared::Shared) -> Self {
        self.services_mut().shared = Some(shared);
        self
    }

    pub fn with_rate_limits(mut self, limits: RateLimiter) -> Self {
        let services = self.services_mut();
        services.limits = Arc::new(match &services.shared {
            Some(shared) => limits.shared(shared.clone()),
            None => limits,
        });
        self
    }

    /// Signs thinking blocks under a persistent key, so they verify after a restart.
    pub fn with_thinking_key(mut self, key: Vec<u8>) -> Self {
        self.services_mut().signer = ThinkingSigner::new(key);
        self
    }

    /// Serves the Admin API from `store`, records usage there (durably, before each
    /// response completes) and enforces spend caps seeded from it.
    pub fn with_store(
        mut self,
        store: Arc<dyn Store>,
        prices: Prices,
        spend_limits: SpendLimits,
    ) -> Result<Self, missive_store::Error> {
        let mut spend = SpendTracker::new(prices, spend_limits);
        if let Some(shared) = &self.shared {
            spend = spend.shared(shared.clone(), Arc::clone(&store));
        }
        spend.load(store.as_ref())?;
        self.services_mut().spend = Arc::new(spend);
        self.services_mut().ledger = Ledger::spawn(Arc::clone(&store));
        self.services_mut().store = Some(store);
        Ok(self)
    }
}
