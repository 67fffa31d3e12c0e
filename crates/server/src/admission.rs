//! The one path every model request takes before a backend sees it: `/v1/messages`,
//! `count_tokens`, `/v1/chat/completions` and the batch worker all call [`admit`], so a
//! request refused on one of them is refused on all of them, for the same reason.
//!
//! In order: the key and its workspace are still usable; the model resolves and is not
//! switched off; echoed thinking carries this server's signature for this workspace;
//! documents are read (bounded in bytes and time); the workspace's policy is applied to
//! every text a model reads and every URL source is checked; `max_tokens` fits the model;
//! rate limits and the spend cap are reserved. What comes out is a [`GenerateRequest`] and
//! the [`Hold`] that [`crate::billing`] settles when the generation ends, however it ends.

use std::sync::Arc;

use missive_backend::{Backend, GenerateRequest, Priority};
use missive_protocol::tools::ThinkingConfig;
use missive_protocol::{ErrorType, MessagesRequest};

use missive_store::{TokenCounts, UsageRecord};

use crate::access::AccessSlot;
use crate::auth::Principal;
use crate::billing::Billing;
use crate::context_window::ContextAsks;
use crate::documents::Citable;
use crate::error::ApiError;
use crate::limits::Reservation;
use crate::spend::SpendHold;
use crate::state::AppState;

/// Which door a request came in by: they differ only in what they reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `/v1/messages` and `/v1/chat/completions`.
    Messages,
    /// `/v1/messages/count_tokens`: its own request budget, nothing generated or spent.
    CountTokens,
    /// One request of a Message Batch, run in the background.
    Batch,
}

/// A request let through, with what it holds until it is settled.
pub struct Admitted {
    pub backend: Arc<dyn Backend>,
    pub generate: GenerateRequest,
    /// The model as the client named it (responses echo aliases).
    pub model_name: String,
    /// Documents the answer may cite.
    pub citable: Vec<Citable>,
    /// The model may search the web, or fetch with citations: what comes back is citable.
    pub cites_server_results: bool,
    /// Thinking was asked of a model that cannot reason.
    pub thinking_ignored: bool,
    /// Images replaced by text placeholders for a model that reads text only.
    pub images_replaced: usize,
    /// `thinking.display: "omitted"`.
    pub omit_thinking: bool,
    pub stream: bool,
    pub hold: Hold,
    /// Context management and compaction, applied when the reply starts.
    pub context: ContextAsks,
    /// Registry prompts and schemas the request named, for the response's headers.
    pub registry: crate::registry::Used,
    /// The workspace keeps its requests' content this many days (`crate::capture`).
    pub capture_content_days: Option<u32>,
    /// The ledger row the request will be recorded as, but for its time and tokens.
    pub record: UsageRecord,
}

impl Admitted {
    /// What this request owes once its usage is known: its hold, and the ledger row it
    /// will be recorded as.
    pub fn billing(&self, state: &AppState, access: AccessSlot) -> Billing {
        Billing {
            state: state.clone(),
            hold: self.hold.clone(),
            access,
            record: self.record.clone(),
        }
    }
}

/// Rate-limit and spend reservations a request holds until its usage is known.
#[derive(Debug, Clone)]
pub struct Hold {
    pub reservation: Reservation,
    pub spend: Option<SpendHold>,
}

/// Runs every check, in the order the module documents, and builds the request.
/// `body_len` is the request's size in bytes, from which its input tokens are estimated.
pub async fn admit(
    state: &AppState,
    principal: &Principal,
    request: MessagesRequest,
    body_len: usize,
    entry: Entry,
) -> Result<Admitted, ApiError> {
    check_key(state, principal)?;
    let backend = state.models.resolve(&request.model)?;
    let descriptor = backend.descriptor();
    check_kill_switch(state, principal, [&request.model, &descriptor.id])?;
    let capture_content_days = take_up_workspace_limits(state, principal)?;
    state
        .signer
        .verify_history(&principal.workspace_id, &request)?;
    // Registry references first: every later check sees the text and schemas they stand for.
    let mut request = request;
    let registry = crate::registry::resolve(
        state.store.as_deref(),
        &principal.workspace_id,
        &mut request,
    )?;
    let (mut request, citable) = crate::documents::resolve(
        state,
        &principal.workspace_id,
        descriptor.runs_server_tools,
        request,
    )
    .await?;
    let policy = state.policies.for_workspace(&principal.workspace);
    let outcome = crate::policy::apply(policy, &mut request);
    crate::policy::record(
        state.store.as_ref(),
        &principal.workspace_id,
        &principal.key_id,
        &outcome,
    );
    outcome?;
    crate::policy::check_urls(&state.policies, policy, &request).await?;
    let files = crate::file_storage::WorkspaceFiles::of(state, &principal.workspace_id);
    let advisor_model = |name: &str| -> Result<Arc<dyn Backend>, String> {
        let advisor = state.models.resolve(name).map_err(|err| err.message)?;
        check_kill_switch(state, principal, [name, &advisor.descriptor().id])
            .map_err(|err| err.message)?;
        Ok(advisor)
    };
    let tenant = missive_tools::Tenant {
        workspace: &principal.workspace_id,
        allowlist: policy.url_allowlist.as_deref(),
        files: files.as_ref(),
        models: Some(&advisor_model),
    };
    // A Claude API upstream runs server tools itself: they, their blocks and `mcp_servers`
    // pass through unchanged.
    let server_tools = if descriptor.runs_server_tools {
        missive_tools::Prepared::default()
    } else {
        missive_tools::prepare(&mut request, &state.server_tools, tenant)
            .await
            .map_err(ApiError::invalid)?
    };

    // A session that once held a screenshot keeps working on a model that reads text.
    let images_replaced = if descriptor.capabilities.image_input.supported
        || state.models.rejects_images(&descriptor.id)
    {
        0
    } else {
        missive_backend::history::images_as_placeholders(&mut request.messages)
    };
    if entry != Entry::CountTokens && request.max_tokens > descriptor.max_output_tokens {
        return Err(ApiError::invalid(format!(
            "max_tokens: {} > {}, which is the maximum allowed number of output tokens for {}",
            request.max_tokens, descriptor.max_output_tokens, descriptor.id
        )));
    }
    let service_tier = match entry {
        Entry::Batch => "batch",
        Entry::Messages | Entry::CountTokens => "standard",
    };
    // About four bytes of JSON per token: a cheap estimate, settled against the usage.
    let estimate = u32::try_from(body_len / 4).unwrap_or(u32::MAX);
    let hold = match entry {
        // Token counting has its own request budget, apart from message creation, as on
        // the Claude API, and costs nothing.
        Entry::CountTokens => {
            state
                .spend
                .check(&principal.workspace_id, &principal.workspace)
                .await?;
            Hold {
                reservation: state
                    .limits
                    .reserve(&format!("{}/count_tokens", principal.workspace), 0, 0)
                    .await?,
                spend: None,
            }
        }
        Entry::Messages | Entry::Batch => {
            let reservation = state
                .limits
                .reserve(&principal.workspace, estimate, request.max_tokens)
                .await?;
            let spend = state
                .spend
                .reserve(
                    &principal.workspace_id,
                    &principal.workspace,
                    &descriptor.id,
                    service_tier,
                    estimate,
                    request.max_tokens,
                )
                .await;
            match spend {
                Ok(spend) => Hold {
                    reservation,
                    spend: Some(spend),
                },
                Err(err) => {
                    state.limits.settle(&reservation, 0, 0);
                    return Err(err);
                }
            }
        }
    };
    let reasons = descriptor.capabilities.thinking.supported;
    let effort = request.output_config.as_ref().and_then(|c| c.effort);
    // Effort sets the budget of thinking the request left open (adaptive, or unset).
    if let Some(effort) = effort.filter(|_| reasons) {
        if !matches!(
            request.thinking,
            Some(ThinkingConfig::Enabled { .. } | ThinkingConfig::Disabled)
        ) {
            let display = match &request.thinking {
                Some(ThinkingConfig::Adaptive { display }) => display.clone(),
                _ => None,
            };
            request.thinking = Some(ThinkingConfig::Enabled {
                budget_tokens: effort.thinking_budget(request.max_tokens),
                display,
            });
        }
    }
    let thinking_ignored = (request.thinking.as_ref().is_some_and(ThinkingConfig::is_on)
        || effort.is_some())
        && !reasons;
    let omit_thinking = request
        .thinking
        .as_ref()
        .is_some_and(ThinkingConfig::omits_text);
    let stream = request.stream.unwrap_or(false);
    let model_name = request.model.clone();
    let context = ContextAsks {
        management: request.context_management.take(),
        compaction: request.compaction.take(),
    };
    let mut generate = GenerateRequest::new(descriptor.id.clone(), request);
    if entry == Entry::Batch {
        generate.priority = Priority::Background;
    }
    if !state.share_cache_across_workspaces {
        generate.cache_scope.clone_from(&principal.workspace_id);
    }
    let cites_server_results = server_tools.tools.iter().any(|t| {
        matches!(
            t.kind,
            missive_tools::spec::Kind::WebSearch { .. }
                | missive_tools::spec::Kind::WebFetch {
                    citations: true,
                    ..
                }
        )
    });
    let record = UsageRecord {
        request_id: crate::request_id::current().unwrap_or_else(|| crate::ids::new_id("req")),
        at_ms: 0,
        endpoint: "messages".into(),
        api_key_id: principal.key_id.clone(),
        workspace_id: principal.workspace_id.clone(),
        model: descriptor.id.clone(),
        service_tier: service_tier.into(),
        prompt_version: registry.prompt_version(),
        schema_version: registry.schema_version(),
        tokens: TokenCounts::default(),
    };
    // The model calls the request's server tools; this server runs them between rounds.
    let backend: Arc<dyn Backend> = if server_tools.tools.is_empty() {
        backend
    } else {
        let meter = crate::billing::StepMeter {
            state: state.clone(),
            record: record.clone(),
            reservation: hold.reservation.clone(),
        };
        Arc::new(
            missive_tools::rounds::ToolRunner::new(
                backend,
                server_tools,
                state.server_tools.clone(),
                policy.url_allowlist.clone(),
                files,
            )
            .with_guard(crate::policy::guard(policy))
            .with_meter(Arc::new(meter)),
        )
    };
    Ok(Admitted {
        backend,
        generate,
        model_name,
        citable,
        cites_server_results,
        thinking_ignored,
        images_replaced,
        omit_thinking,
        stream,
        hold,
        context,
        registry,
        capture_content_days,
        record,
    })
}

/// The key is active and unexpired, and its workspace not archived (archiving a workspace
/// archives its keys). The HTTP middleware checked this when the request arrived; a batch
/// request runs later, when the key may have been revoked since.
fn check_key(state: &AppState, principal: &Principal) -> Result<(), ApiError> {
    let Some(controls) = state.auth.controls() else {
        return Ok(());
    };
    if principal.is_configured() || principal.is_console() {
        return Ok(());
    }
    match controls.key_by_id(&principal.key_id)? {
        Some(key) if key.usable() => Ok(()),
        Some(key) => Err(ApiError::unauthenticated(format!(
            "API key {} is {}",
            key.id,
            key.status.as_str()
        ))),
        None => Err(ApiError::unauthenticated("invalid x-api-key")),
    }
}

/// Limits and the spend cap an operator set for the workspace at run time (the console)
/// apply from the next request, on every replica. Answers whether (for how many days) the
/// workspace keeps its requests' content.
fn take_up_workspace_limits(
    state: &AppState,
    principal: &Principal,
) -> Result<Option<u32>, ApiError> {
    let Some(controls) = state.auth.controls() else {
        return Ok(None);
    };
    let set = controls.workspace_limits(&principal.workspace_id)?;
    state.limits.set_runtime(&principal.workspace, set);
    state
        .spend
        .set_runtime_cap(&principal.workspace, set.spend_cap_usd);
    Ok(set.capture_content_days)
}

/// Refuses traffic an operator switched off, for the model as asked or as resolved.
fn check_kill_switch(
    state: &AppState,
    principal: &Principal,
    models: [&str; 2],
) -> Result<(), ApiError> {
    let Some(controls) = state.auth.controls() else {
        return Ok(());
    };
    if controls.is_killed(&principal.workspace_id, &models)? {
        return Err(ApiError::new(
            ErrorType::PermissionError,
            format!(
                "Traffic to model `{}` from workspace `{}` is switched off by the operator (kill switch).",
                models[0], principal.workspace
            ),
        ));
    }
    Ok(())
}
