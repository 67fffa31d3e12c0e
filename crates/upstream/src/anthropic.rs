//! The Claude API (or any Anthropic-compatible server, another Missive included) as a
//! `Backend`: the normalised request is sent back as a Messages request with the
//! operator's upstream key (the client's key never leaves), streamed, and its events are
//! turned into backend events one by one, so Missive's own keys, limits, ledger and policy
//! apply in front of it.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use missive_backend::{
    Backend, BackendError, BackendEvent, EventStream, FinishReason, GenerateRequest,
    ModelDescriptor, PromptUsage, ServerToolRun,
};
use missive_protocol::content::ContentBlock;
use missive_protocol::tools::OutputFormat;
use missive_protocol::usage::ServerToolUsage;

use crate::UpstreamConfig;
use serde_json::{json, Map, Value};

pub struct AnthropicBackend {
    config: UpstreamConfig,
    client: reqwest::Client,
    descriptor: ModelDescriptor,
}

impl AnthropicBackend {
    pub fn new(config: UpstreamConfig, descriptor: ModelDescriptor) -> Result<Self, BackendError> {
        Ok(Self {
            client: config.client()?,
            config,
            descriptor,
        })
    }

    fn post(&self, path: &str, body: &Value, betas: &[String]) -> reqwest::RequestBuilder {
        let mut call = self
            .client
            .post(self.config.url(path))
            .header("anthropic-version", "2023-06-01")
            .json(body);
        if !betas.is_empty() {
            call = call.header("anthropic-beta", betas.join(","));
        }
        if let Some(key) = &self.config.api_key {
            call = call.header("x-api-key", key);
        }
        call
    }
}

/// The normalised request as a Claude Messages body again.
fn messages_body(
    request: &GenerateRequest,
    model: &str,
    stream: bool,
) -> Result<Value, BackendError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("max_tokens".into(), json!(request.max_tokens));
    if !request.system.is_empty() {
        body.insert("system".into(), to_json(&request.system)?);
    }
    let turns: Vec<Value> = request
        .turns
        .iter()
        .map(|t| Ok(json!({"role": to_json(&t.role)?, "content": to_json(&t.blocks)?})))
        .collect::<Result<_, BackendError>>()?;
    body.insert("messages".into(), Value::Array(turns));
    if !request.tools.is_empty() {
        body.insert("tools".into(), to_json(&request.tools)?);
    }
    if let Some(choice) = &request.tool_choice {
        body.insert("tool_choice".into(), to_json(choice)?);
    }
    if !request.stop_sequences.is_empty() {
        body.insert("stop_sequences".into(), json!(request.stop_sequences));
    }
    crate::insert_sampling(&mut body, &request.sampling);
    if let Some(thinking) = &request.thinking {
        body.insert("thinking".into(), to_json(thinking)?);
    }
    if let Some(OutputFormat::JsonSchema { schema }) = &request.output_format {
        body.insert(
            "output_config".into(),
            json!({"format": {"type": "json_schema", "schema": schema}}),
        );
    }
    if let Some(cache) = &request.cache_control {
        body.insert("cache_control".into(), to_json(cache)?);
    }
    for (key, value) in &request.passthrough {
        body.insert(key.clone(), value.clone());
    }
    body.insert("stream".into(), json!(stream));
    Ok(Value::Object(body))
}

/// A server block the relay has no type for: said, never dropped.
fn unrelayable(err: &serde_json::Error) -> BackendError {
    BackendError::Generation(format!(
        "the upstream sent a server tool block this server cannot relay: {err}"
    ))
}

/// One of the protocol's types as JSON for the upstream body.
fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, BackendError> {
    serde_json::to_value(value).map_err(|e| BackendError::Generation(e.to_string()))
}

fn prompt_usage(usage: &Value) -> PromptUsage {
    let n = |key: &str| {
        usage
            .pointer(key)
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    };
    let creation = n("/cache_creation_input_tokens");
    let five = n("/cache_creation/ephemeral_5m_input_tokens");
    let hour = n("/cache_creation/ephemeral_1h_input_tokens");
    PromptUsage {
        input_tokens: n("/input_tokens"),
        cache_read_input_tokens: n("/cache_read_input_tokens"),
        // Servers that report no split get the whole write as 5-minute.
        cache_creation_5m_input_tokens: if five + hour == 0 { creation } else { five },
        cache_creation_1h_input_tokens: hour,
    }
}

/// Folds the upstream's Claude events into backend events.
#[derive(Default)]
struct Relay {
    started: bool,
    prompt: Option<PromptUsage>,
    /// Open tool_use blocks by index: name and input JSON so far.
    tools: HashMap<u64, (String, String)>,
    /// Open calls of tools the upstream runs (`server_tool_use`, `mcp_tool_use`) by index:
    /// the block as it started and its input JSON so far.
    server_calls: HashMap<u64, (Value, String)>,
    /// Closed server calls waiting for their result block.
    pending_calls: Vec<ContentBlock>,
    /// Open result blocks of server tools, by index.
    server_results: HashMap<u64, Value>,
    /// Indices of open text blocks.
    texts: HashSet<u64>,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
    output_tokens: u32,
}

/// A container the upstream named (`{id, expires_at}`), for the reply's own `container`.
fn relay_container(container: Option<&Value>, out: &mut Vec<Result<BackendEvent, BackendError>>) {
    if let Some(container) = container.filter(|c| c.is_object()) {
        out.push(Ok(BackendEvent::Container(container.clone())));
    }
}

impl Relay {
    fn event(&mut self, event: &Value, out: &mut Vec<Result<BackendEvent, BackendError>>) -> bool {
        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let prompt = prompt_usage(event.pointer("/message/usage").unwrap_or(&Value::Null));
                self.started = true;
                out.push(Ok(BackendEvent::Started { prompt }));
                relay_container(event.pointer("/message/container"), out);
            }
            Some("content_block_start") => {
                if let Some(block) = event.get("content_block") {
                    let kind = block
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if matches!(kind, "server_tool_use" | "mcp_tool_use") {
                        self.server_calls
                            .insert(index, (block.clone(), String::new()));
                    } else if kind.ends_with("_tool_result") && kind != "tool_result" {
                        self.server_results.insert(index, block.clone());
                    }
                    if kind == "text" {
                        self.texts.insert(index);
                    }
                    if kind == "tool_use" {
                        let name = block
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned();
                        out.push(Ok(BackendEvent::ToolUseStart { name: name.clone() }));
                        self.tools.insert(index, (name, String::new()));
                    }
                }
            }
            Some("content_block_delta") => {
                let delta = event.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        if let Some(text) = delta.get("text").and_then(Value::as_str) {
                            out.push(Ok(BackendEvent::Text(text.to_owned())));
                        }
                    }
                    Some("citations_delta") => {
                        if let Some(citation) = delta.get("citation") {
                            out.push(Ok(BackendEvent::Citation(citation.clone())));
                        }
                    }
                    Some("thinking_delta") => {
                        if let Some(text) = delta.get("thinking").and_then(Value::as_str) {
                            out.push(Ok(BackendEvent::Thinking(text.to_owned())));
                        }
                    }
                    Some("input_json_delta") if self.server_calls.contains_key(&index) => {
                        if let (Some(call), Some(part)) = (
                            self.server_calls.get_mut(&index),
                            delta.get("partial_json").and_then(Value::as_str),
                        ) {
                            call.1.push_str(part);
                        }
                    }
                    Some("input_json_delta") => {
                        if let (Some(tool), Some(part)) = (
                            self.tools.get_mut(&index),
                            delta.get("partial_json").and_then(Value::as_str),
                        ) {
                            tool.1.push_str(part);
                            if !part.is_empty() {
                                out.push(Ok(BackendEvent::ToolInput(part.to_owned())));
                            }
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_stop") if self.server_calls.contains_key(&index) => {
                if let Some((mut block, json)) = self.server_calls.remove(&index) {
                    if let Ok(input) = serde_json::from_str::<Value>(&json) {
                        block["input"] = input;
                    }
                    match serde_json::from_value::<ContentBlock>(block) {
                        Ok(call) => self.pending_calls.push(call),
                        Err(err) => out.push(Err(unrelayable(&err))),
                    }
                }
            }
            Some("content_block_stop") if self.server_results.contains_key(&index) => {
                if let Some(block) = self.server_results.remove(&index) {
                    let kind = block["type"].as_str().unwrap_or_default().to_owned();
                    match serde_json::from_value::<ContentBlock>(block) {
                        Ok(result) if !self.pending_calls.is_empty() => {
                            let call = self.pending_calls.remove(0);
                            out.push(Ok(BackendEvent::ServerTool(Box::new(ServerToolRun {
                                usage: ServerToolUsage::of_result(&result),
                                call,
                                result,
                                container: None,
                            }))));
                        }
                        Ok(_) => out.push(Err(BackendError::Generation(format!(
                            "the upstream sent a `{kind}` block without its call"
                        )))),
                        Err(_) => out.push(Err(BackendError::Generation(format!(
                            "the upstream sent a `{kind}` block, which this server cannot relay yet"
                        )))),
                    }
                }
            }
            Some("content_block_stop") if self.texts.remove(&index) => {
                out.push(Ok(BackendEvent::TextEnd));
            }
            Some("content_block_stop") => {
                // The client has seen the input streamed; a call cut short by `max_tokens`
                // keeps its partial JSON there, as the Claude API sends it.
                if let Some((name, json)) = self.tools.remove(&index) {
                    let input = serde_json::from_str(&json).unwrap_or_else(|_| json!({}));
                    out.push(Ok(BackendEvent::ToolUse { name, input }));
                }
            }
            Some("message_delta") => {
                relay_container(event.pointer("/delta/container"), out);
                if let Some(reason) = event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_owned());
                }
                self.stop_sequence = event
                    .pointer("/delta/stop_sequence")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if let Some(usage) = event.get("usage") {
                    self.output_tokens = usage
                        .get("output_tokens")
                        .and_then(Value::as_u64)
                        .and_then(|v| u32::try_from(v).ok())
                        .unwrap_or(self.output_tokens);
                    if usage.get("input_tokens").is_some() {
                        self.prompt = Some(prompt_usage(usage));
                    }
                }
            }
            Some("message_stop") => {
                let reason = match (self.stop_reason.as_deref(), self.stop_sequence.take()) {
                    (Some("max_tokens"), _) => FinishReason::MaxTokens,
                    (Some("tool_use"), _) => FinishReason::ToolUse,
                    (Some("pause_turn"), _) => FinishReason::PauseTurn,
                    (Some("stop_sequence"), Some(s)) => FinishReason::StopSequence(s),
                    (Some("model_context_window_exceeded"), _) => {
                        FinishReason::ContextWindowExceeded
                    }
                    _ => FinishReason::EndTurn,
                };
                out.push(Ok(BackendEvent::Finished {
                    reason,
                    output_tokens: self.output_tokens,
                    thinking_tokens: 0,
                    prompt: self.prompt.take(),
                }));
                return true;
            }
            Some("error") => {
                let message = event
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("the upstream failed")
                    .to_owned();
                out.push(Err(BackendError::Generation(message)));
                return true;
            }
            _ => {}
        }
        false
    }
}

#[async_trait::async_trait]
impl Backend for AnthropicBackend {
    fn descriptor(&self) -> &ModelDescriptor {
        &self.descriptor
    }

    async fn count_tokens(&self, request: &GenerateRequest) -> Result<u32, BackendError> {
        let mut body = messages_body(request, &self.config.model, false)?;
        if let Some(map) = body.as_object_mut() {
            for key in [
                "max_tokens",
                "stream",
                "stop_sequences",
                "temperature",
                "top_p",
                "top_k",
            ] {
                map.remove(key);
            }
        }
        let response = self
            .config
            .send(self.post("/v1/messages/count_tokens", &body, &request.betas))
            .await?;
        let counted: Value = response
            .json()
            .await
            .map_err(|e| BackendError::Generation(e.to_string()))?;
        counted
            .get("input_tokens")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                BackendError::Generation("the upstream's count has no input_tokens".into())
            })
    }

    async fn generate(&self, request: GenerateRequest) -> Result<EventStream, BackendError> {
        let body = messages_body(&request, &self.config.model, true)?;
        let response = self
            .config
            .send(self.post("/v1/messages", &body, &request.betas))
            .await?;
        let name = self.config.name.clone();
        let events = crate::sse::data_events(Box::pin(response.bytes_stream()));
        let relayed = futures::stream::unfold(
            (Box::pin(events), Relay::default(), false),
            move |(mut events, mut relay, done)| {
                let name = name.clone();
                async move {
                    if done {
                        return None;
                    }
                    let mut out = Vec::new();
                    let finished = match events.next().await {
                        Some(Ok(data)) => match serde_json::from_str::<Value>(&data) {
                            Ok(event) => relay.event(&event, &mut out),
                            Err(err) => {
                                out.push(Err(BackendError::Generation(format!(
                                    "upstream `{name}` sent an event that is not JSON: {err}"
                                ))));
                                true
                            }
                        },
                        Some(Err(err)) => {
                            out.push(Err(BackendError::Generation(format!(
                                "upstream `{name}` broke off: {err}"
                            ))));
                            true
                        }
                        None => {
                            if !relay.started || relay.stop_reason.is_none() {
                                out.push(Err(BackendError::Generation(format!(
                                    "upstream `{name}` ended the stream before message_stop"
                                ))));
                            }
                            true
                        }
                    };
                    Some((futures::stream::iter(out), (events, relay, finished)))
                }
            },
        )
        .flatten();
        Ok(Box::pin(relayed))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// A Claude API stand-in that records the headers it was sent.
    async fn upstream(seen: Arc<Mutex<Vec<(String, String)>>>) -> String {
        let app = axum::Router::new().route(
            "/v1/messages",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let seen = Arc::clone(&seen);
                async move {
                    for name in ["x-api-key", "anthropic-beta", "anthropic-version"] {
                        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                            seen.lock().unwrap().push((name.to_owned(), v.to_owned()));
                        }
                    }
                    let events = [
                        json!({"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 0}}}),
                        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}}),
                        json!({"type": "content_block_stop", "index": 0}),
                        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}),
                        json!({"type": "message_stop"}),
                    ];
                    let body: String = events.iter().map(|e| format!("event: x\ndata: {e}\n\n")).collect();
                    ([("content-type", "text/event-stream")], body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    /// The Claude API at `url`, with the operator's key `sk-operator`.
    fn backend_at(url: String) -> AnthropicBackend {
        let descriptor = missive_backend::Backend::descriptor(
            &missive_backend::scripted::ScriptedBackend::new("m", &["x"]),
        )
        .clone();
        AnthropicBackend::new(
            UpstreamConfig {
                name: "claude".into(),
                base_url: url,
                model: "claude-sonnet-4-5".into(),
                api_key: Some("sk-operator".into()),
                connect_timeout: Duration::from_secs(1),
                first_byte_timeout: Some(Duration::from_secs(5)),
            },
            descriptor,
        )
        .unwrap()
    }

    fn hello() -> GenerateRequest {
        let body =
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        let parsed = missive_protocol::parse_messages_request(body.to_string().as_bytes()).unwrap();
        GenerateRequest::new("m".into(), parsed)
    }

    #[tokio::test]
    async fn the_operators_key_and_the_clients_betas_go_upstream() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let backend = backend_at(upstream(Arc::clone(&seen)).await);
        let mut request = hello();
        request.betas = vec![
            "interleaved-thinking-2025-05-14".into(),
            "context-1m-2025-08-07".into(),
        ];
        let events: Vec<BackendEvent> = backend
            .generate(request)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(events[1], BackendEvent::Text("ok".into()));
        let seen = seen.lock().unwrap().clone();
        assert!(seen.contains(&("x-api-key".into(), "sk-operator".into())));
        assert!(seen.contains(&("anthropic-version".into(), "2023-06-01".into())));
        assert!(seen.contains(&(
            "anthropic-beta".into(),
            "interleaved-thinking-2025-05-14,context-1m-2025-08-07".into()
        )));
    }

    /// A redirect from an upstream is answered as an error, not followed: reqwest strips only
    /// `authorization` and cookies across hosts, so following would hand the operator's
    /// `x-api-key` to wherever the redirect points.
    #[tokio::test]
    async fn a_redirecting_upstream_never_passes_the_operators_key_on() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let elsewhere = upstream(Arc::clone(&seen)).await;
        let target = format!("{elsewhere}/v1/messages");
        let app = axum::Router::new().route(
            "/v1/messages",
            axum::routing::post(move || {
                let target = target.clone();
                async move {
                    (
                        axum::http::StatusCode::TEMPORARY_REDIRECT,
                        [("location", target)],
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let answer = backend_at(format!("http://{addr}")).generate(hello()).await;
        match answer {
            Err(BackendError::Upstream { status, .. }) => assert_eq!(status, 307),
            Err(other) => panic!("expected the upstream's 307 as an error, got {other}"),
            Ok(_) => panic!("a redirect was followed"),
        }
        assert!(
            seen.lock().unwrap().is_empty(),
            "the redirect target was called"
        );
    }

    #[test]
    fn server_tool_blocks_of_the_upstream_are_relayed_whole() {
        let mut relay = Relay::default();
        let mut out = Vec::new();
        for event in [
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 10, "output_tokens": 0}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"query\": \"otters\"}"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [{"type": "web_search_result", "url": "https://o.example", "title": "O", "encrypted_content": "x", "page_age": null}]}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "server_tool_use", "id": "srvtoolu_2", "name": "tool_search_tool_regex", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"pattern\": \"weather\"}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_search_tool_result", "tool_use_id": "srvtoolu_2", "content": {"type": "tool_search_tool_search_result", "tool_references": [{"type": "tool_reference", "tool_name": "get_weather"}]}}}),
            json!({"type": "content_block_stop", "index": 3}),
            json!({"type": "content_block_start", "index": 4, "content_block": {"type": "oracle_tool_result", "tool_use_id": "srvtoolu_3", "content": {}}}),
            json!({"type": "content_block_stop", "index": 4}),
            json!({"type": "message_delta", "delta": {"stop_reason": "pause_turn", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ] {
            relay.event(&event, &mut out);
        }
        let Some(Ok(BackendEvent::ServerTool(run))) = out.get(1) else {
            panic!("{out:?}")
        };
        assert_eq!(
            run.call,
            ContentBlock::ServerToolUse {
                id: "srvtoolu_1".into(),
                name: "web_search".into(),
                input: json!({"query": "otters"})
            }
        );
        assert!(
            matches!(&run.result, ContentBlock::WebSearchToolResult { tool_use_id, .. } if tool_use_id == "srvtoolu_1")
        );
        assert_eq!(run.usage.web_search_requests, 1);
        // The upstream's tool search is relayed as it came.
        let Some(Ok(BackendEvent::ServerTool(search))) = out.get(2) else {
            panic!("{out:?}")
        };
        assert!(
            matches!(&search.result, ContentBlock::ToolSearchToolResult { content, .. }
            if content["tool_references"][0]["tool_name"] == "get_weather")
        );
        // A block with no type here is an error in the stream, never dropped.
        assert!(
            matches!(&out[3], Err(BackendError::Generation(m)) if m.contains("oracle_tool_result"))
        );
        assert!(matches!(
            out.last(),
            Some(Ok(BackendEvent::Finished {
                reason: FinishReason::PauseTurn,
                ..
            }))
        ));
    }

    #[test]
    fn the_container_the_upstream_names_is_relayed_before_the_end() {
        let mut relay = Relay::default();
        let mut out = Vec::new();
        let container = json!({"id": "container_1", "expires_at": "2026-12-30T00:00:00Z"});
        for event in [
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 1}, "container": null}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "container": container}, "usage": {"output_tokens": 1}}),
            json!({"type": "message_stop"}),
        ] {
            relay.event(&event, &mut out);
        }
        let events: Vec<BackendEvent> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(events[1], BackendEvent::Container(container));
        assert!(matches!(events[2], BackendEvent::Finished { .. }));
        assert_eq!(events.len(), 3, "a null container is no event");
    }

    #[test]
    fn claude_events_become_backend_events() {
        let mut relay = Relay::default();
        let mut out = Vec::new();
        for event in [
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 0, "output_tokens": 0}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Oslo\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 21}}),
            json!({"type": "message_stop"}),
        ] {
            relay.event(&event, &mut out);
        }
        let events: Vec<BackendEvent> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            events,
            vec![
                BackendEvent::Started {
                    prompt: PromptUsage {
                        input_tokens: 10,
                        cache_read_input_tokens: 90,
                        ..PromptUsage::default()
                    }
                },
                BackendEvent::Text("Let me check.".into()),
                BackendEvent::TextEnd,
                BackendEvent::ToolUseStart {
                    name: "get_weather".into()
                },
                BackendEvent::ToolInput("{\"city\": ".into()),
                BackendEvent::ToolInput("\"Oslo\"}".into()),
                BackendEvent::ToolUse {
                    name: "get_weather".into(),
                    input: json!({"city": "Oslo"})
                },
                BackendEvent::Finished {
                    reason: FinishReason::ToolUse,
                    output_tokens: 21,
                    thinking_tokens: 0,
                    prompt: None
                },
            ]
        );
    }

    #[test]
    fn cited_text_blocks_keep_their_bounds_and_citations() {
        let citation = json!({"type": "search_result_location", "cited_text": "Flush it every 300 hours.",
            "search_result_index": 0, "source": "https://kb.example/pumps", "title": "Pumps",
            "start_block_index": 0, "end_block_index": 1});
        let mut relay = Relay::default();
        let mut out = Vec::new();
        for event in [
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "It says: "}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": "", "citations": []}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "citations_delta", "citation": citation}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "every 300 hours"}}),
            json!({"type": "content_block_stop", "index": 1}),
        ] {
            relay.event(&event, &mut out);
        }
        let events: Vec<BackendEvent> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            events,
            vec![
                BackendEvent::Text("It says: ".into()),
                BackendEvent::TextEnd,
                BackendEvent::Citation(citation),
                BackendEvent::Text("every 300 hours".into()),
                BackendEvent::TextEnd,
            ]
        );
    }
}
