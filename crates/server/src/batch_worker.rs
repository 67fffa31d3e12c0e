//! Runs Message Batch requests in the background. Requests are read from the store, run at
//! background priority (the engine keeps a slot for interactive requests and pauses batch
//! sequences while one runs), and each result is written together with its usage row, once.
//! After a crash the requests that had not finished are simply pending again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use missive_backend::{BackendError, GenerateRequest, Priority};
use missive_protocol::usage::ServiceTier;
use missive_store::{PendingRequest, Store, TokenCounts, UsageRecord};
use tokio::task::JoinSet;

use crate::error::ApiError;
use crate::routes::batches::errored;
use crate::sse::{self, Assembler};
use crate::state::AppState;

/// How often canceled and expired batches are settled when nothing else wakes the worker.
const TICK: Duration = Duration::from_millis(250);
/// The same with no batch work at all: creating or canceling a batch wakes the worker, so
/// this only bounds how late an expiry (or a batch another node created) is seen. Waking
/// four times a second would preempt the engine's threads for nothing.
const IDLE_TICK: Duration = Duration::from_secs(5);

/// What running a request came to.
enum Outcome {
    Done {
        result_type: &'static str,
        result: String,
        usage: Option<Box<UsageRecord>>,
    },
    /// The model's queue was full: leave it pending and try again.
    Later,
}

pub fn spawn(state: AppState, store: Arc<dyn Store>, concurrency: usize) {
    tokio::spawn(run(state, store, concurrency.max(1)));
}

async fn run(state: AppState, store: Arc<dyn Store>, concurrency: usize) {
    let running: Arc<Mutex<HashSet<(String, i64)>>> = Arc::default();
    let mut tasks = JoinSet::new();
    loop {
        let in_flight: Vec<(String, i64)> = match running.lock() {
            Ok(r) => r.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        };
        let batch_ids: Vec<String> = in_flight.iter().map(|(b, _)| b.clone()).collect();
        if let Err(err) = store.settle_batches(&batch_ids) {
            tracing::error!(error = %err, "settling batches");
        }
        let free = concurrency.saturating_sub(in_flight.len());
        let mut backoff = false;
        let mut idle = in_flight.is_empty();
        if free > 0 {
            match store.pending_batch_requests(free, &in_flight) {
                Ok(pending) => {
                    idle &= pending.is_empty();
                    for request in pending {
                        let key = (request.batch_id.clone(), request.idx);
                        if let Ok(mut r) = running.lock() {
                            r.insert(key.clone());
                        }
                        let (state, store, running) =
                            (state.clone(), Arc::clone(&store), Arc::clone(&running));
                        tasks.spawn(async move {
                            let later = run_one(&state, store.as_ref(), request).await;
                            if let Ok(mut r) = running.lock() {
                                r.remove(&key);
                            }
                            later
                        });
                    }
                }
                Err(err) => tracing::error!(error = %err, "reading pending batch requests"),
            }
        }
        tokio::select! {
            Some(done) = tasks.join_next() => backoff = matches!(done, Ok(true)),
            () = state.batches.notified() => {}
            () = tokio::time::sleep(if idle { IDLE_TICK } else { TICK }) => {}
        }
        if backoff {
            tokio::time::sleep(TICK).await;
        }
    }
}

/// Runs one request and stores its result. Returns true when it must be retried later.
async fn run_one(state: &AppState, store: &dyn Store, request: PendingRequest) -> bool {
    let outcome = execute(state, &request).await;
    let Outcome::Done {
        result_type,
        result,
        usage,
    } = outcome
    else {
        return true;
    };
    match store.complete_batch_request(
        &request.batch_id,
        request.idx,
        result_type,
        &result,
        usage.as_deref(),
    ) {
        Ok(true) => {
            if let Some(u) = &usage {
                state
                    .spend
                    .add(&u.workspace_id, &u.model, &u.service_tier, &u.tokens);
            }
        }
        Ok(false) => {}
        Err(err) => {
            tracing::error!(error = %err, batch = %request.batch_id, "storing a batch result")
        }
    }
    false
}

async fn execute(state: &AppState, request: &PendingRequest) -> Outcome {
    match generate(state, request).await {
        Ok(outcome) => outcome,
        Err(err) => Outcome::Done {
            result_type: "errored",
            result: errored(err.error_type, &err.message),
            usage: None,
        },
    }
}

async fn generate(state: &AppState, pending: &PendingRequest) -> Result<Outcome, ApiError> {
    let request = missive_protocol::parse_messages_request(pending.params.as_bytes())?;
    let backend = state.models.resolve(&request.model)?;
    let descriptor = backend.descriptor();
    if request.max_tokens > descriptor.max_output_tokens {
        return Err(ApiError::invalid(format!(
            "max_tokens: {} > {}, which is the maximum allowed number of output tokens for {}",
            request.max_tokens, descriptor.max_output_tokens, descriptor.id
        )));
    }
    let workspace_name = match &state.store {
        Some(store) => store
            .workspace(&pending.workspace_id)?
            .map(|w| w.name)
            .unwrap_or_default(),
        None => String::new(),
    };
    crate::routes::messages::check_kill_switch(
        state,
        &pending.workspace_id,
        &workspace_name,
        [&request.model, &descriptor.id],
    )?;
    state.spend.check(&pending.workspace_id, &workspace_name)?;
    let mut request = crate::documents::resolve(state, &pending.workspace_id, request)?;
    state.guard(&workspace_name, &pending.api_key_id, &mut request)?;
    let model_name = request.model.clone();
    let model_id = descriptor.id.clone();
    let mut generate = GenerateRequest::new(descriptor.id.clone(), request);
    generate.priority = Priority::Background;
    let events = match backend.generate(generate).await {
        Ok(events) => events,
        Err(BackendError::QueueFull) => return Ok(Outcome::Later),
        Err(err) => return Err(err.into()),
    };
    let assembler = Assembler::new(crate::ids::new_id("msg"), model_name);
    let mut message = sse::collect(sse::events(events, assembler)).await?;
    message.usage.service_tier = ServiceTier::Batch;
    let u = &message.usage;
    let usage = UsageRecord {
        request_id: crate::ids::new_id("req"),
        at_ms: crate::ids::now_ms(),
        endpoint: "messages".into(),
        api_key_id: pending.api_key_id.clone(),
        workspace_id: pending.workspace_id.clone(),
        model: model_id,
        service_tier: "batch".into(),
        tokens: TokenCounts {
            uncached_input: u.input_tokens.into(),
            cache_creation_5m: u.cache_creation.ephemeral_5m_input_tokens.into(),
            cache_creation_1h: u.cache_creation.ephemeral_1h_input_tokens.into(),
            cache_read: u.cache_read_input_tokens.into(),
            output: u.output_tokens.into(),
        },
    };
    let result = serde_json::json!({"type": "succeeded", "message": message}).to_string();
    Ok(Outcome::Done {
        result_type: "succeeded",
        result,
        usage: Some(Box::new(usage)),
    })
}
