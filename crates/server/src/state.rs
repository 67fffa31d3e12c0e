use std::sync::Arc;

use missive_store::Store;

use crate::auth::Auth;
use crate::ledger::Ledger;
use crate::limits::{Limits, RateLimiter};
use crate::model_router::ModelRouter;
use crate::spend::{Prices, SpendLimits, SpendTracker};
use crate::thinking::ThinkingSigner;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub models: Arc<ModelRouter>,
    pub auth: Arc<Auth>,
    pub signer: ThinkingSigner,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub limits: Arc<RateLimiter>,
    /// Organization, workspaces, keys, ledger; `None` serves without an Admin API.
    pub store: Option<Arc<dyn Store>>,
    pub ledger: Ledger,
    pub spend: Arc<SpendTracker>,
    /// Where uploaded files live; `None`: no Files API.
    pub files: Option<Arc<FilesConfig>>,
    /// Wakes the batch worker when a batch is created or canceled.
    pub batches: Arc<tokio::sync::Notify>,
    pub policies: Arc<crate::policy::Policies>,
}

#[derive(Debug, Clone)]
pub struct FilesConfig {
    pub dir: std::path::PathBuf,
    /// The Claude API lets only files it created be downloaded; an operator may allow
    /// uploads too.
    pub downloadable_uploads: bool,
}

impl AppState {
    pub fn new(models: ModelRouter, auth: Auth) -> Self {
        Self {
            models: Arc::new(models),
            auth: Arc::new(auth),
            signer: ThinkingSigner::ephemeral(),
            metrics: crate::metrics::handle(),
            limits: Arc::new(RateLimiter::new(Limits::default(), Default::default())),
            store: None,
            ledger: Ledger::disabled(),
            spend: Arc::new(SpendTracker::new(Prices::default(), SpendLimits::default())),
            files: None,
            batches: Arc::new(tokio::sync::Notify::new()),
            policies: Arc::default(),
        }
    }

    pub fn with_policies(mut self, policies: crate::policy::Policies) -> Self {
        self.policies = Arc::new(policies);
        self
    }

    /// Holds `request` to its workspace's policy: redacts, or refuses; counts and audits
    /// what it did.
    pub fn guard(
        &self,
        workspace: &str,
        key_id: &str,
        request: &mut missive_protocol::MessagesRequest,
    ) -> Result<(), crate::error::ApiError> {
        let policy = self.policies.for_workspace(workspace);
        let outcome = crate::policy::apply(policy, request);
        let (action, detail) = match &outcome {
            Ok(a) if a.total() == 0 => return Ok(()),
            Ok(a) => (
                "policy.redact",
                serde_json::json!({"emails": a.emails, "phones": a.phones, "cards": a.cards, "ibans": a.ibans}),
            ),
            Err(e) => ("policy.refuse", serde_json::json!({"reason": e.message})),
        };
        metrics::counter!("missive_policy_actions_total", "workspace" => workspace.to_owned(), "action" => action)
            .increment(1);
        if let Some(store) = &self.store {
            let entry = missive_store::AuditEntry {
                at_ms: crate::ids::now_ms(),
                actor: key_id.to_owned(),
                action: action.to_owned(),
                target: crate::request_id::current().unwrap_or_default(),
                detail: detail.to_string(),
            };
            if let Err(err) = store.audit(&entry) {
                tracing::error!(error = %err, "writing the audit log");
            }
        }
        outcome.map(|_| ())
    }

    /// Serves the Files API from `dir`.
    pub fn with_files(mut self, files: FilesConfig) -> Self {
        self.files = Some(Arc::new(files));
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

    pub fn with_rate_limits(mut self, limits: RateLimiter) -> Self {
        self.limits = Arc::new(limits);
        self
    }

    /// Signs thinking blocks under a persistent key, so they verify after a restart.
    pub fn with_thinking_key(mut self, key: Vec<u8>) -> Self {
        self.signer = ThinkingSigner::new(key);
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
        let spend = SpendTracker::new(prices, spend_limits);
        spend.load(store.as_ref())?;
        self.spend = Arc::new(spend);
        self.ledger = Ledger::spawn(Arc::clone(&store));
        self.store = Some(store);
        Ok(self)
    }
}
