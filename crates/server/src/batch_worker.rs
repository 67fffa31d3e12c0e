//! Runs Message Batch requests in the background. Requests are read from the store, run at
//! background priority (the engine keeps a slot for interactive requests and pauses batch
//! sequences while one runs), and each result is written together with its usage row, once.
//! After a crash the requests that had not finished are simply pending again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use missive_backend::BackendError;
use missive_protocol::usage::ServiceTier;
use missive_protocol::ErrorType;
use missive_store::{KeyKind, PendingRequest, Store};
use tokio::task::JoinSet;

use crate::access::AccessSlot;
use crate::admission::{self, Entry};
use crate::auth::Principal;
use crate::batch_results::{errored, succeeded};
use crate::billing::{Billing, Tally};
use crate::error::ApiError;
use crate::sse::{self, Assembler};
use crate::state::AppState;

/// How often canceled and expired batches are settled when nothing else wakes the worker.
const TICK: Duration = Duration::from_millis(250);
/// The same with no batch work at all: creating or canceling a batch wakes the worker, so
/// this only bounds how late an expiry (or a batch another node created) is seen. Waking
/// four times a second would preempt the engine's threads for nothing.
const IDLE_TICK: Duration = Duration::from_secs(5);

/// How long a replica's claim on a request lasts without renewal: when a replica dies, its
/// requests go back to the others after this.
const LEASE: Duration = Duration::from_secs(30);
/// How often a replica renews the leases of what it runs.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// What running a request came to.
enum Outcome {
    Done {
        result_type: &'static str,
        result: String,
        /// What to bill once the result is stored.
        billed: Option<Box<(Billing, Tally)>>,
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
    let owner = crate::metrics::replica();
    let lease_ms = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
    let mut renewed = tokio::time::Instant::now();
    loop {
        let in_flight: Vec<(String, i64)> = match running.lock() {
            Ok(r) => r.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        };
        let batch_ids: Vec<String> = in_flight.iter().map(|(b, _)| b.clone()).collect();
        if let Err(err) = store.settle_batches(&batch_ids) {
            tracing::error!(error = %err, "settling batches");
        }
        if !in_flight.is_empty() && renewed.elapsed() >= RENEW_EVERY {
            renewed = tokio::time::Instant::now();
            if let Err(err) = store.renew_batch_leases(&owner, lease_ms) {
                tracing::error!(error = %err, "renewing batch leases");
            }
        }
        let free = concurrency.saturating_sub(in_flight.len());
        let mut backoff = false;
        let mut idle = in_flight.is_empty();
        if free > 0 {
            match store.claim_batch_requests(&owner, free, lease_ms, &in_flight) {
                Ok(pending) => {
                    idle &= pending.is_empty();
                    for request in pending {
                        let key = (request.batch_id.clone(), request.idx);
                        if let Ok(mut r) = running.lock() {
                            r.insert(key.clone());
                        }
                        let (state, store, running, owner) = (
                            state.clone(),
                            Arc::clone(&store),
                            Arc::clone(&running),
                            owner.clone(),
                        );
                        tasks.spawn(async move {
                            let (batch_id, idx) = (request.batch_id.clone(), request.idx);
                            let later = run_one(&state, store.as_ref(), request).await;
                            if later {
                                if let Err(err) =
                                    store.release_batch_request(&owner, &batch_id, idx)
                                {
                                    tracing::error!(error = %err, "releasing a batch lease");
                                }
                            }
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
    let (result_type, result, billed) = match generate(state, &request).await {
        Ok(Outcome::Later) => return true,
        Ok(Outcome::Done {
            result_type,
            result,
            billed,
        }) => (result_type, result, billed),
        Err(err) => ("errored", errored(err.error_type, &err.message), None),
    };
    let usage = billed
        .as_deref()
        .map(|(billing, tally)| billing.record(tally));
    let stored = store.complete_batch_request(
        &request.batch_id,
        request.idx,
        result_type,
        &result,
        usage.as_ref(),
    );
    if let Err(err) = &stored {
        tracing::error!(error = %err, batch = %request.batch_id, "storing a batch result");
    }
    // Only a result that was stored (once) is billed; otherwise the holds are released.
    if let Some((billing, tally)) = billed.map(|b| *b) {
        let charged = match stored {
            Ok(true) => tally,
            _ => Tally::default(),
        };
        billing.settle_holds(&charged);
    }
    false
}

/// The key and workspace a batch was created under, as they stand now.
fn principal(state: &AppState, pending: &PendingRequest) -> Result<Principal, ApiError> {
    let workspace = match &state.store {
        Some(store) => store
            .workspace(&pending.workspace_id)?
            .map(|w| w.name)
            .unwrap_or_default(),
        None => String::new(),
    };
    Ok(Principal {
        key_id: pending.api_key_id.clone(),
        kind: KeyKind::Standard,
        workspace_id: pending.workspace_id.clone(),
        workspace,
    })
}

async fn generate(state: &AppState, pending: &PendingRequest) -> Result<Outcome, ApiError> {
    let request = missive_protocol::parse_messages_request(pending.params.as_bytes())?;
    let principal = principal(state, pending)?;
    let admitted = match admission::admit(
        state,
        &principal,
        request,
        pending.params.len(),
        Entry::Batch,
    )
    .await
    {
        // A batch waits for its workspace's rate limit rather than failing.
        Err(err) if err.error_type == ErrorType::RateLimitError => return Ok(Outcome::Later),
        other => other?,
    };
    let billing = admitted.billing(state, AccessSlot::default());
    let generation = match crate::context_window::generate(
        admitted.backend.as_ref(),
        admitted.generate,
        &admitted.context,
    )
    .await
    {
        Ok(generation) => generation,
        Err(err) => {
            billing.settle_holds(&Tally::default());
            return match err {
                BackendError::QueueFull { .. } => Ok(Outcome::Later),
                err => Err(err.into()),
            };
        }
    };
    billing
        .charge(generation.summary.as_ref().map(|s| &s.usage))
        .await?;
    let assembler = Assembler::new(crate::ids::new_id("msg"), admitted.model_name)
        .with_thinking(
            state.signer.clone(),
            &principal.workspace_id,
            admitted.omit_thinking,
        )
        .with_context(generation.summary, generation.applied_edits);
    let events = crate::documents::cite_stream(
        sse::events(generation.events, assembler),
        admitted.citable,
        admitted.cites_server_results,
    );
    let mut message = match sse::collect(events).await {
        Ok(message) => message,
        Err(err) => {
            billing.settle_holds(&Tally::default());
            return Err(err);
        }
    };
    message.usage.service_tier = ServiceTier::Batch;
    let tally = Tally::of_usage(&message.usage);
    Ok(Outcome::Done {
        result_type: "succeeded",
        result: succeeded(&message),
        billed: Some(Box::new((billing, tally))),
    })
}
