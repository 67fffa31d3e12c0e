//! `POST /v1/chat/completions`: OpenAI's shape on every model, so OpenAI SDK users reach the
//! same backends and the same governance. The request becomes a Claude Messages request and
//! runs the same path ([`super::messages::run`]); the Claude events become a chat completion
//! or its chunks. Errors use OpenAI's envelope.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use missive_protocol::stream::StreamEvent;
use missive_protocol::{ContentBlock, ContentBlockDelta, Message, StopReason};
use missive_store::KeyKind;
use serde_json::{json, Map, Value};

use crate::access::AccessSlot;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::sse;
use crate::state::AppState;

/// `max_tokens` when the request names none (OpenAI makes it optional; Claude does not).
const DEFAULT_MAX_TOKENS: u64 = 4096;

fn openai_error(err: &ApiError) -> Response {
    let status =
        StatusCode::from_u16(err.error_type.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let param = err
        .message
        .split(':')
        .next()
        .filter(|p| !p.contains(' '))
        .map(str::to_owned);
    (
        status,
        Json(json!({"error": {"message": err.message, "type": err.error_type.as_str(), "param": param, "code": null}})),
    )
        .into_response()
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn image_block(url: &str) -> Value {
    match url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
    {
        Some((media, data)) => {
            json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
        }
        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
    }
}

/// The OpenAI request as a Claude Messages body.
fn to_claude(request: &Value) -> Result<(Value, bool), ApiError> {
    let object = request
        .as_object()
        .ok_or_else(|| ApiError::invalid("the body must be a JSON object"))?;
    if object
        .get("n")
        .and_then(Value::as_u64)
        .is_some_and(|n| n != 1)
    {
        return Err(ApiError::invalid(
            "n: only one choice per request is supported",
        ));
    }
    let messages = object
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("messages: is required"))?;
    let mut system = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            // Leading system messages are the system prompt; later ones stay where they
            // stand, as Claude system messages.
            "system" | "developer" if turns.is_empty() => system.push(text_of(content)),
            "system" | "developer" => {
                turns.push(json!({"role": "system", "content": text_of(content)}))
            }
            "user" => {
                let blocks: Vec<Value> = match content {
                    Value::String(s) => vec![json!({"type": "text", "text": s})],
                    Value::Array(parts) => parts
                        .iter()
                        .map(|p| match p.get("type").and_then(Value::as_str) {
                            Some("image_url") => image_block(
                                p.pointer("/image_url/url").and_then(Value::as_str).unwrap_or(""),
                            ),
                            _ => json!({"type": "text", "text": p.get("text").and_then(Value::as_str).unwrap_or("")}),
                        })
                        .collect(),
                    _ => return Err(ApiError::invalid(format!("messages.{i}.content: must be a string or parts"))),
                };
                turns.push(json!({"role": "user", "content": blocks}));
            }
            "assistant" => {
                let mut blocks = Vec::new();
                let text = text_of(content);
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let args = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    let input: Value = serde_json::from_str(args).map_err(|_| {
                        ApiError::invalid(format!(
                            "messages.{i}.tool_calls: arguments are not JSON"
                        ))
                    })?;
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
                        "name": call.pointer("/function/name").and_then(Value::as_str).unwrap_or(""),
                        "input": input,
                    }));
                }
                turns.push(json!({"role": "assistant", "content": blocks}));
            }
            "tool" => turns.push(json!({"role": "user", "content": [{
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id").and_then(Value::as_str).unwrap_or(""),
                "content": text_of(content),
            }]})),
            other => {
                return Err(ApiError::invalid(format!(
                    "messages.{i}.role: `{other}` is not a chat role"
                )))
            }
        }
    }
    let mut body = Map::new();
    body.insert(
        "model".into(),
        object.get("model").cloned().unwrap_or(Value::Null),
    );
    body.insert("messages".into(), Value::Array(turns));
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n")));
    }
    let max = object
        .get("max_completion_tokens")
        .or_else(|| object.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    body.insert("max_tokens".into(), json!(max));
    if let Some(user) = object.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    for key in ["temperature", "top_p", "top_k", "metadata"] {
        if let Some(v) = object.get(key).filter(|v| !v.is_null()) {
            body.insert(key.into(), v.clone());
        }
    }
    match object.get("stop") {
        Some(Value::String(s)) => {
            body.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            body.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(tools) = object.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let f = t.get("function").unwrap_or(t);
                let mut tool = json!({
                    "name": f.get("name").cloned().unwrap_or(Value::Null),
                    "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"})),
                });
                if let Some(d) = f.get("description") {
                    tool["description"] = d.clone();
                }
                if f.get("strict").and_then(Value::as_bool) == Some(true) {
                    tool["strict"] = json!(true);
                }
                tool
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    let parallel_off = object.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false);
    let choice = match object.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "auto" => Some(json!({"type": "auto"})),
        Some(Value::String(s)) if s == "required" => Some(json!({"type": "any"})),
        Some(Value::String(s)) if s == "none" => Some(json!({"type": "none"})),
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Some(json!({"type": "tool", "name": name})),
            None => {
                return Err(ApiError::invalid(
                    "tool_choice: must be auto, required, none or a function",
                ))
            }
        },
    };
    if let Some(mut choice) = choice.or_else(|| parallel_off.then(|| json!({"type": "auto"}))) {
        if parallel_off && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        body.insert("tool_choice".into(), choice);
    }
    match object.get("response_format") {
        Some(f) if f.get("type").and_then(Value::as_str) == Some("json_schema") => {
            let schema = f
                .pointer("/json_schema/schema")
                .cloned()
                .unwrap_or(Value::Null);
            body.insert(
                "output_config".into(),
                json!({"format": {"type": "json_schema", "schema": schema}}),
            );
        }
        Some(f) if f.get("type").and_then(Value::as_str) == Some("json_object") => {
            body.insert(
                "output_config".into(),
                json!({"format": {"type": "json_schema", "schema": {"type": "object"}}}),
            );
        }
        _ => {}
    }
    let stream = object
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    body.insert("stream".into(), json!(stream));
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((Value::Object(body), include_usage))
}

fn finish_reason(reason: Option<StopReason>) -> &'static str {
    match reason {
        Some(StopReason::MaxTokens) | Some(StopReason::ModelContextWindowExceeded) => "length",
        Some(StopReason::ToolUse) => "tool_calls",
        _ => "stop",
    }
}

fn usage_json(u: &missive_protocol::Usage) -> Value {
    let prompt = u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_input_tokens},
    })
}

fn completion(message: &Message, created: u64) -> Value {
    let text: String = message
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let calls: Vec<Value> = message
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolUse { id, name, input, .. } => Some(json!({
                "id": id, "type": "function", "function": {"name": name, "arguments": input.to_string()},
            })),
            _ => None,
        })
        .collect();
    let mut msg = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": message.id.replacen("msg_", "chatcmpl-", 1),
        "object": "chat.completion",
        "created": created,
        "model": message.model,
        "choices": [{"index": 0, "message": msg, "finish_reason": finish_reason(message.stop_reason)}],
        "usage": usage_json(&message.usage),
    })
}

pub async fn create(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    access: Option<Extension<AccessSlot>>,
    JsonBody(raw): JsonBody,
) -> Response {
    match handle(state, principal, access, raw).await {
        Ok(response) => response,
        Err(err) => openai_error(&err),
    }
}

async fn handle(
    state: AppState,
    principal: Option<Extension<Principal>>,
    access: Option<Extension<AccessSlot>>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let principal = principal.map_or_else(|| Principal::configured(KeyKind::Standard), |p| p.0);
    let request: Value = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?;
    let (claude, include_usage) = to_claude(&request)?;
    let body = serde_json::to_vec(&claude).map_err(ApiError::internal)?;
    let run = super::messages::run(
        &state,
        &principal,
        access.map(|a| a.0).unwrap_or_default(),
        &body,
        super::messages::Dispatch::default(),
    )
    .await?;
    let created = u64::try_from(crate::ids::now_ms() / 1000).unwrap_or(0);
    let mut response = if run.stream {
        (
            [
                (CONTENT_TYPE, "text/event-stream; charset=utf-8"),
                (CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(chunks(run.events, created, include_usage)),
        )
            .into_response()
    } else {
        Json(completion(&sse::collect(run.events).await?, created)).into_response()
    };
    response.headers_mut().extend(run.headers);
    response
        .headers_mut()
        .extend(state.limits.headers(&principal.workspace));
    Ok(response)
}

/// Claude events as chat-completion chunks, ending with `[DONE]`.
fn chunks(
    events: futures::stream::BoxStream<'static, StreamEvent>,
    created: u64,
    include_usage: bool,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    let mut id = String::new();
    let mut model = String::new();
    let mut usage_so_far = missive_protocol::Usage::default();
    // Claude block index → OpenAI tool-call index.
    let mut calls: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    events.flat_map(move |event| {
        let mut out: Vec<Value> = Vec::new();
        let chunk = |id: &str, model: &str, delta: Value, finish: Value| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let mut done = false;
        match event {
            StreamEvent::MessageStart { message } => {
                id = message.id.replacen("msg_", "chatcmpl-", 1);
                model = message.model.clone();
                usage_so_far = message.usage.clone();
                out.push(chunk(&id, &model, json!({"role": "assistant", "content": ""}), Value::Null));
            }
            StreamEvent::ContentBlockStart { index, content_block: ContentBlock::ToolUse { id: call_id, name, .. } } => {
                let n = calls.len();
                calls.insert(index, n);
                out.push(chunk(&id, &model, json!({"tool_calls": [{"index": n, "id": call_id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}), Value::Null));
            }
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                ContentBlockDelta::TextDelta { text } => out.push(chunk(&id, &model, json!({"content": text}), Value::Null)),
                ContentBlockDelta::InputJsonDelta { partial_json } => {
                    if let Some(n) = calls.get(&index) {
                        out.push(chunk(&id, &model, json!({"tool_calls": [{"index": n, "function": {"arguments": partial_json}}]}), Value::Null));
                    }
                }
                _ => {}
            },
            StreamEvent::MessageDelta { delta, usage, .. } => {
                usage_so_far.output_tokens = usage.output_tokens;
                if let Some(n) = usage.input_tokens {
                    usage_so_far.input_tokens = n;
                }
                if let Some(n) = usage.cache_read_input_tokens {
                    usage_so_far.cache_read_input_tokens = n;
                }
                if let Some(n) = usage.cache_creation_input_tokens {
                    usage_so_far.cache_creation_input_tokens = n;
                }
                out.push(chunk(&id, &model, json!({}), json!(finish_reason(delta.stop_reason))));
                if include_usage {
                    out.push(json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                                    "choices": [], "usage": usage_json(&usage_so_far)}));
                }
            }
            StreamEvent::MessageStop => done = true,
            StreamEvent::Error { error } => {
                out.push(json!({"error": {"message": error.message, "type": error.error_type.as_str()}}));
                done = true;
            }
            _ => {}
        }
        let mut frames: Vec<Result<Bytes, std::convert::Infallible>> =
            out.into_iter().map(|v| Ok(Bytes::from(format!("data: {v}\n\n")))).collect();
        if done {
            frames.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
        }
        futures::stream::iter(frames)
    })
}
