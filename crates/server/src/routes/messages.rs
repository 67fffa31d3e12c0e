//! `POST /v1/messages` and `POST /v1/messages/count_tokens`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use missive_backend::GenerateRequest;
use missive_protocol::tools::ThinkingConfig;
use missive_protocol::{parse_count_tokens_request, parse_messages_request, CountTokensResponse};

use std::sync::Arc;

use missive_protocol::stream::StreamEvent;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::sse::{self, Assembler};
use crate::state::AppState;

/// Set when a request asked for thinking from a model that cannot reason.
pub const THINKING_HEADER: &str = "x-missive-thinking";

pub async fn create(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request = parse_messages_request(&body)?;
    state.signer.verify_history(&request)?;
    let backend = state.models.resolve(&request.model)?;
    let descriptor = backend.descriptor();
    if request.max_tokens > descriptor.max_output_tokens {
        return Err(ApiError::invalid(format!(
            "max_tokens: {} > {}, which is the maximum allowed number of output tokens for {}",
            request.max_tokens, descriptor.max_output_tokens, descriptor.id
        )));
    }
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
    let workspace = principal.map_or_else(|| "default".to_owned(), |p| p.0.workspace);
    // About four bytes of JSON per token: a cheap estimate, settled against the usage.
    let estimate = u32::try_from(body.len() / 4).unwrap_or(u32::MAX);
    let reservation = state
        .limits
        .reserve(&workspace, estimate, request.max_tokens)?;
    // Responses name the model as the client asked for it, as the Claude API echoes aliases.
    let model_name = request.model.clone();
    let generate = GenerateRequest::new(descriptor.id.clone(), request);
    let events = match backend.generate(generate).await {
        Ok(events) => events,
        Err(err) => {
            state.limits.settle(&reservation, 0, 0);
            return Err(err.into());
        }
    };
    let assembler = Assembler::new(crate::ids::new_id("msg"), model_name)
        .with_thinking(state.signer.clone(), omit_thinking);
    // Streaming or not, the final `message_delta` carries the usage the limits settle on.
    let limiter = Arc::clone(&state.limits);
    let events = sse::events(events, assembler).inspect(move |event| {
        if let StreamEvent::MessageDelta { usage, .. } = event {
            let uncached =
                usage.input_tokens.unwrap_or(0) + usage.cache_creation_input_tokens.unwrap_or(0);
            limiter.settle(&reservation, uncached, usage.output_tokens);
        }
    });
    let mut response = if stream {
        let body =
            events.map(|event| Ok::<_, std::convert::Infallible>(Bytes::from(event.to_sse())));
        (
            [
                (CONTENT_TYPE, "text/event-stream; charset=utf-8"),
                (CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(body),
        )
            .into_response()
    } else {
        Json(sse::collect(events).await?).into_response()
    };
    response.headers_mut().extend(extra_headers);
    response
        .headers_mut()
        .extend(state.limits.headers(&workspace));
    Ok(response)
}

pub async fn count_tokens(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<CountTokensResponse>, ApiError> {
    let request = parse_count_tokens_request(&body)?;
    let backend = state.models.resolve(&request.model)?;
    let id = backend.descriptor().id.clone();
    let generate = GenerateRequest::new(id, request.into_messages_request());
    let input_tokens = backend.count_tokens(&generate).await?;
    Ok(Json(CountTokensResponse { input_tokens }))
}
