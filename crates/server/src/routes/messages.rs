//! `POST /v1/messages` and `POST /v1/messages/count_tokens`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use missive_backend::GenerateRequest;
use missive_protocol::stream::StreamEvent;
use missive_protocol::tools::ThinkingConfig;
use missive_protocol::usage::CacheCreation;
use missive_protocol::{
    parse_count_tokens_request, parse_messages_request, CountTokensResponse, ErrorType,
};
use missive_store::{KeyKind, TokenCounts, UsageRecord};

use crate::access::AccessSlot;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::sse::{self, Assembler};
use crate::state::AppState;

/// Set when a request asked for thinking from a model that cannot reason.
pub const THINKING_HEADER: &str = "x-missive-thinking";
/// The upstream that served a request, for models served by upstreams.
pub const UPSTREAM_HEADER: &str = "x-missive-upstream";
/// Milliseconds Missive spent on a request before handing it to the model.
pub const OVERHEAD_HEADER: &str = "x-missive-overhead-ms";

/// Refuses traffic an operator switched off, for the model as asked or as resolved.
pub(crate) fn check_kill_switch(
    state: &AppState,
    workspace_id: &str,
    workspace: &str,
    models: [&str; 2],
) -> Result<(), ApiError> {
    let Some(controls) = state.auth.controls() else {
        return Ok(());
    };
    if controls.is_killed(workspace_id, &models)? {
        return Err(ApiError::new(
            ErrorType::PermissionError,
            format!(
                "Traffic to model `{}` from workspace `{}` is switched off by the operator (kill switch).",
                models[0], workspace
            ),
        ));
    }
    Ok(())
}

use crate::ids::now_ms;

pub async fn create(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    access: Option<Extension<AccessSlot>>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let principal = principal.map_or_else(|| Principal::configured(KeyKind::Standard), |p| p.0);
    let access = access.map(|a| a.0).unwrap_or_default();
    let dispatch = Dispatch {
        session: headers
            .get("x-claude-code-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        // Repeated headers and comma-separated lists both occur.
        betas: headers
            .get_all("anthropic-beta")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|b| b.trim().to_owned())
            .filter(|b| !b.is_empty())
            .collect(),
    };
    let run = run(&state, &principal, access, &body, dispatch).await?;
    let mut response = if run.stream {
        let body = run
            .events
            .map(|event| Ok::<_, std::convert::Infallible>(Bytes::from(event.to_sse())));
        (
            [
                (CONTENT_TYPE, "text/event-stream; charset=utf-8"),
                (CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(body),
        )
            .into_response()
    } else {
        Json(sse::collect(run.events).await?).into_response()
    };
    response.headers_mut().extend(run.headers);
    // After a non-streaming reply the usage has settled, so the counts are the real ones.
    response
        .headers_mut()
        .extend(state.limits.headers(&principal.workspace));
    Ok(response)
}

/// What a request's headers say about where and how it is sent on.
#[derive(Debug, Default)]
pub(crate) struct Dispatch {
    /// Claude Code's session, for upstream affinity.
    pub session: Option<String>,
    /// `anthropic-beta` values, passed on to Claude API upstreams.
    pub betas: Vec<String>,
}

/// A Messages request under way: its Claude events, and the headers its response carries.
pub(crate) struct Run {
    pub events: futures::stream::BoxStream<'static, StreamEvent>,
    pub stream: bool,
    pub headers: axum::http::HeaderMap,
}

/// Everything a Messages request goes through — parsing, documents, policy, limits, spend,
/// the kill switch — up to the model's event stream, billed and ledgered at its end. The
/// Claude and OpenAI endpoints share it.
pub(crate) async fn run(
    state: &AppState,
    principal: &Principal,
    access: AccessSlot,
    body: &[u8],
    dispatch: Dispatch,
) -> Result<Run, ApiError> {
    let started = std::time::Instant::now();
    let state = state.clone();
    let request = parse_messages_request(body)?;
    state.signer.verify_history(&request)?;
    let (mut request, citable) =
        crate::documents::resolve_citable(&state, &principal.workspace_id, request)?;
    state.guard(&principal.workspace, &principal.key_id, &mut request)?;
    let backend = state.models.resolve(&request.model)?;
    let descriptor = backend.descriptor();
    access.model(&descriptor.id);
    if request.max_tokens > descriptor.max_output_tokens {
        return Err(ApiError::invalid(format!(
            "max_tokens: {} > {}, which is the maximum allowed number of output tokens for {}",
            request.max_tokens, descriptor.max_output_tokens, descriptor.id
        )));
    }
    check_kill_switch(
        &state,
        &principal.workspace_id,
        &principal.workspace,
        [&request.model, &descriptor.id],
    )?;
    state
        .spend
        .check(&principal.workspace_id, &principal.workspace)?;
    // Claude Code sends thinking to any model it takes for Claude; a model that cannot
    // reason answers anyway and says so in a header, rather than failing the request.
    let thinking_ignored = request.thinking.as_ref().is_some_and(ThinkingConfig::is_on)
        && !descriptor.capabilities.thinking.supported;
    let extra_headers = thinking_ignored.then(|| {
        (
            HeaderName::from_static(THINKING_HEADER),
            HeaderValue::from_static("ignored; the model cannot reason"),
        )
    });
    let omit_thinking = request
        .thinking
        .as_ref()
        .is_some_and(ThinkingConfig::omits_text);
    let stream = request.stream.unwrap_or(false);
    // About four bytes of JSON per token: a cheap estimate, settled against the usage.
    let estimate = u32::try_from(body.len() / 4).unwrap_or(u32::MAX);
    let reservation = state
        .limits
        .reserve(&principal.workspace, estimate, request.max_tokens)?;
    // Responses name the model as the client asked for it, as the Claude API echoes aliases.
    let model_name = request.model.clone();
    let model_id = descriptor.id.clone();
    let mut generate = GenerateRequest::new(descriptor.id.clone(), request);
    if dispatch.session.is_some() {
        generate.affinity = dispatch.session;
    }
    generate.betas = dispatch.betas;
    // What Missive spent before the model had the request: parsing, auth, limits, policy.
    let overhead = started.elapsed();
    let (dispatched, upstream) =
        missive_backend::served_by::capture(backend.generate(generate)).await;
    let events = match dispatched {
        Ok(events) => events,
        Err(err) => {
            state.limits.settle(&reservation, 0, 0);
            return Err(err.into());
        }
    };
    let assembler = Assembler::new(crate::ids::new_id("msg"), model_name)
        .with_thinking(state.signer.clone(), omit_thinking);
    // Streaming or not, the final `message_delta` carries the usage that the limits settle
    // on and the ledger records; it is sent only once the record is durable.
    let billing = Billing {
        state: state.clone(),
        reservation,
        access,
        record: UsageRecord {
            request_id: crate::request_id::current().unwrap_or_default(),
            at_ms: 0,
            endpoint: "messages".into(),
            api_key_id: principal.key_id.clone(),
            workspace_id: principal.workspace_id.clone(),
            model: model_id,
            service_tier: "standard".into(),
            tokens: TokenCounts::default(),
        },
    };
    let mut cache_split = CacheCreation::default();
    let events = sse::events(events, assembler);
    let events = crate::documents::cite_stream(events, citable).then(move |event| {
        if let StreamEvent::MessageStart { message } = &event {
            cache_split = message.usage.cache_creation.clone();
        }
        // Only the final delta bills; other events pass through untouched.
        let billing = matches!(event, StreamEvent::MessageDelta { .. })
            .then(|| (billing.clone(), cache_split.clone()));
        async move {
            match (event, billing) {
                (StreamEvent::MessageDelta { delta, usage }, Some((billing, split))) => {
                    match billing.settle(&usage, &split).await {
                        Ok(()) => StreamEvent::MessageDelta { delta, usage },
                        Err(err) => StreamEvent::Error {
                            error: err.body().error,
                        },
                    }
                }
                (other, _) => other,
            }
        }
    });
    let mut headers = axum::http::HeaderMap::new();
    headers.extend(extra_headers);
    if let Some(value) = upstream.and_then(|u| HeaderValue::from_str(&u).ok()) {
        headers.insert(HeaderName::from_static(UPSTREAM_HEADER), value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("{:.3}", overhead.as_secs_f64() * 1000.0)) {
        headers.insert(HeaderName::from_static(OVERHEAD_HEADER), value);
    }
    Ok(Run {
        events: events.boxed(),
        stream,
        headers,
    })
}

/// What a generation owes once its usage is known.
#[derive(Clone)]
struct Billing {
    state: AppState,
    reservation: crate::limits::Reservation,
    access: AccessSlot,
    record: UsageRecord,
}

impl Billing {
    async fn settle(
        self,
        usage: &missive_protocol::usage::MessageDeltaUsage,
        split: &CacheCreation,
    ) -> Result<(), ApiError> {
        let input = usage.input_tokens.unwrap_or(0);
        let cache_read = usage.cache_read_input_tokens.unwrap_or(0);
        let cache_creation = usage.cache_creation_input_tokens.unwrap_or(0);
        // Cache reads do not count against the input-token limit.
        self.state.limits.settle(
            &self.reservation,
            input + cache_creation,
            usage.output_tokens,
        );
        self.access
            .usage(input, usage.output_tokens, cache_read, cache_creation);
        let mut record = self.record;
        record.at_ms = now_ms();
        record.tokens = TokenCounts {
            uncached_input: input.into(),
            cache_creation_5m: split.ephemeral_5m_input_tokens.into(),
            cache_creation_1h: split.ephemeral_1h_input_tokens.into(),
            cache_read: cache_read.into(),
            output: usage.output_tokens.into(),
        };
        self.state.spend.add(
            &record.workspace_id,
            &record.model,
            &record.service_tier,
            &record.tokens,
        );
        self.state.ledger.record(record).await
    }
}

pub async fn count_tokens(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    access: Option<Extension<AccessSlot>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let principal = principal.map_or_else(|| Principal::configured(KeyKind::Standard), |p| p.0);
    let request = parse_count_tokens_request(&body)?;
    let backend = state.models.resolve(&request.model)?;
    let id = backend.descriptor().id.clone();
    if let Some(access) = &access {
        access.model(&id);
    }
    check_kill_switch(
        &state,
        &principal.workspace_id,
        &principal.workspace,
        [&request.model, &id],
    )?;
    // Token counting has its own request budget, apart from message creation, as on the
    // Claude API.
    let bucket = format!("{}/count_tokens", principal.workspace);
    state.limits.reserve(&bucket, 0, 0)?;
    let generate = GenerateRequest::new(id.clone(), request.into_messages_request());
    let input_tokens = backend.count_tokens(&generate).await?;
    // Counted calls are in the ledger (who called what) but never billed.
    state
        .ledger
        .record(UsageRecord {
            request_id: crate::request_id::current().unwrap_or_default(),
            at_ms: now_ms(),
            endpoint: "count_tokens".into(),
            api_key_id: principal.key_id,
            workspace_id: principal.workspace_id,
            model: id,
            service_tier: "standard".into(),
            tokens: TokenCounts {
                uncached_input: input_tokens.into(),
                ..TokenCounts::default()
            },
        })
        .await?;
    let mut response = Json(CountTokensResponse { input_tokens }).into_response();
    response.headers_mut().extend(state.limits.headers(&bucket));
    Ok(response)
}
