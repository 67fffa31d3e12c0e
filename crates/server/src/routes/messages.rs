//! `POST /v1/messages` and `POST /v1/messages/count_tokens`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use missive_protocol::context::CountTokensContext;
use missive_protocol::stream::StreamEvent;
use missive_protocol::{parse_count_tokens_request, parse_messages_request, CountTokensResponse};
use missive_store::{KeyKind, TokenCounts, UsageRecord};

use crate::access::AccessSlot;
use crate::admission::{self, Entry};
use crate::auth::Principal;
use crate::billing::{self, Tally};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::ids::now_ms;
use crate::sse::{self, Assembler};
use crate::state::AppState;

/// Set when a request asked for thinking from a model that cannot reason.
pub const THINKING_HEADER: &str = "x-missive-thinking";
/// The upstream that served a request, for models served by upstreams.
pub const UPSTREAM_HEADER: &str = "x-missive-upstream";
/// Set when images were replaced by text placeholders for a model that reads text only.
pub const IMAGES_HEADER: &str = "x-missive-images";
/// Milliseconds Missive spent on a request before handing it to the model.
pub const OVERHEAD_HEADER: &str = "x-missive-overhead-ms";

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
        prompt: prompt_header(&headers),
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

/// `x-missive-prompt`, when the request names a registry prompt that way.
fn prompt_header(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(crate::registry::PROMPT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

/// What a request's headers say about where and how it is sent on.
#[derive(Debug, Default)]
pub(crate) struct Dispatch {
    /// Claude Code's session, for upstream affinity.
    pub session: Option<String>,
    /// `anthropic-beta` values, passed on to Claude API upstreams.
    pub betas: Vec<String>,
    /// `x-missive-prompt: NAME@LABEL`: a registry prompt placed before the request's own
    /// system prompt, for clients that cannot change their `system`.
    pub prompt: Option<String>,
}

/// A Messages request under way: its Claude events, and the headers its response carries.
pub(crate) struct Run {
    pub events: futures::stream::BoxStream<'static, StreamEvent>,
    pub stream: bool,
    pub headers: axum::http::HeaderMap,
}

/// A Messages request through [`admission`] to the model's event stream, metered by
/// [`billing`]. The Claude and OpenAI endpoints share it.
pub(crate) async fn run(
    state: &AppState,
    principal: &Principal,
    access: AccessSlot,
    body: &[u8],
    dispatch: Dispatch,
) -> Result<Run, ApiError> {
    let started = std::time::Instant::now();
    let mut request = parse_messages_request(body)?;
    if let Some(reference) = dispatch.prompt.as_deref() {
        crate::registry::prepend_prompt(&mut request, reference);
    }
    let admitted = admission::admit(state, principal, request, body.len(), Entry::Messages).await?;
    access.model(&admitted.backend.descriptor().id);
    access.prompt_version(admitted.registry.prompt_version());
    let slot = access.clone();
    // Claude Code sends thinking to any model it takes for Claude; a model that cannot
    // reason answers anyway and says so in a header, rather than failing the request.
    let extra_headers = admitted.thinking_ignored.then(|| {
        (
            HeaderName::from_static(THINKING_HEADER),
            HeaderValue::from_static("ignored; the model cannot reason"),
        )
    });
    let billing = admitted.billing(state, access);
    let mut generate = admitted.generate;
    if dispatch.session.is_some() {
        generate.affinity = dispatch.session;
    }
    generate.betas = dispatch.betas;
    // What Missive spent before the model had the request: parsing, auth, limits, policy.
    let overhead = started.elapsed();
    let (dispatched, upstream) = missive_backend::served_by::capture(
        crate::context_window::generate(admitted.backend.as_ref(), generate, &admitted.context),
    )
    .await;
    let generation = match dispatched {
        Ok(generation) => generation,
        Err(err) => {
            billing.settle_holds(&Tally::default());
            return Err(err.into());
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
    let events = generation.events;
    let events = sse::events(events, assembler);
    let events =
        crate::documents::cite_stream(events, admitted.citable, admitted.cites_server_results);
    let events = billing::metered(events, billing);
    let events = match admitted.capture_content_days {
        Some(days) if state.request_log.is_some() => {
            crate::capture::tap(events, body, days, slot.clone())
        }
        _ => events,
    };
    let mut headers = axum::http::HeaderMap::new();
    headers.extend(extra_headers);
    for (name, used) in [
        (
            crate::registry::PROMPT_VERSION_HEADER,
            &admitted.registry.prompts,
        ),
        (
            crate::registry::SCHEMA_VERSION_HEADER,
            &admitted.registry.schemas,
        ),
    ] {
        if let Ok(value) = HeaderValue::from_str(&used.join(", ")) {
            if !used.is_empty() {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
    if admitted.images_replaced > 0 {
        let note = format!(
            "replaced {} with text placeholders; the model reads text only",
            admitted.images_replaced
        );
        if let Ok(value) = HeaderValue::from_str(&note) {
            headers.insert(HeaderName::from_static(IMAGES_HEADER), value);
        }
    }
    if let Some(upstream) = upstream {
        slot.upstream(&upstream);
        if let Ok(value) = HeaderValue::from_str(&upstream) {
            headers.insert(HeaderName::from_static(UPSTREAM_HEADER), value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&format!("{:.3}", overhead.as_secs_f64() * 1000.0)) {
        headers.insert(HeaderName::from_static(OVERHEAD_HEADER), value);
    }
    Ok(Run {
        events,
        stream: admitted.stream,
        headers,
    })
}

pub async fn count_tokens(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    access: Option<Extension<AccessSlot>>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let principal = principal.map_or_else(|| Principal::configured(KeyKind::Standard), |p| p.0);
    let mut request = parse_count_tokens_request(&body)?.into_messages_request();
    if let Some(reference) = prompt_header(&headers) {
        crate::registry::prepend_prompt(&mut request, &reference);
    }
    let admitted =
        admission::admit(&state, &principal, request, body.len(), Entry::CountTokens).await?;
    let id = admitted.backend.descriptor().id.clone();
    if let Some(access) = &access {
        access.model(&id);
    }
    let mut generate = admitted.generate;
    let original = match &admitted.context.management {
        Some(management) => {
            let applied =
                crate::context_window::apply(admitted.backend.as_ref(), &mut generate, management)
                    .await?;
            applied.original_input_tokens
        }
        None => None,
    };
    let input_tokens = admitted.backend.count_tokens(&generate).await?;
    let context_management = admitted
        .context
        .management
        .is_some()
        .then(|| CountTokensContext {
            original_input_tokens: original.unwrap_or(input_tokens),
        });
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
            prompt_version: admitted.registry.prompt_version(),
            schema_version: admitted.registry.schema_version(),
            tokens: TokenCounts {
                uncached_input: input_tokens.into(),
                ..TokenCounts::default()
            },
        })
        .await?;
    let mut response = Json(CountTokensResponse {
        input_tokens,
        context_management,
    })
    .into_response();
    let bucket = format!("{}/count_tokens", principal.workspace);
    response.headers_mut().extend(state.limits.headers(&bucket));
    Ok(response)
}
