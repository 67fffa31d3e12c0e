//! The Claude API's normalised request as an OpenAI chat-completions body. What the
//! upstream cannot express is refused here with the reason, never dropped.

use missive_backend::client_tools::{self, ToolKind};
use missive_backend::{BackendError, GenerateRequest};
use missive_protocol::content::{ContentBlockParam, DocumentSource, ToolResultContent};
use missive_protocol::messages::Role;
use missive_protocol::tools::{OutputFormat, ToolChoice};
use serde_json::{json, Map, Value};

fn unsupported(what: impl Into<String>) -> BackendError {
    BackendError::Unsupported(what.into())
}

fn image_part(source: &Value, at: &str) -> Result<Value, BackendError> {
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("image/png");
            let data = source.get("data").and_then(Value::as_str).unwrap_or("");
            Ok(
                json!({"type": "image_url", "image_url": {"url": format!("data:{media};base64,{data}")}}),
            )
        }
        Some("url") => {
            let url = source.get("url").and_then(Value::as_str).unwrap_or("");
            Ok(json!({"type": "image_url", "image_url": {"url": url}}))
        }
        other => Err(unsupported(format!(
            "{at}: image source `{}` cannot be sent to an OpenAI-compatible upstream",
            other.unwrap_or("?")
        ))),
    }
}

fn document_text(
    source: &DocumentSource,
    title: Option<&str>,
    at: &str,
) -> Result<String, BackendError> {
    source.prompt_text(title, None).ok_or_else(|| {
        unsupported(match source {
            DocumentSource::Base64 { media_type, .. } => format!(
                "{at}: `{media_type}` documents cannot be sent to an OpenAI-compatible upstream"
            ),
            _ => format!("{at}: URL documents cannot be sent to an OpenAI-compatible upstream"),
        })
    })
}

/// A tool result's content as the text of an OpenAI `tool` message, which holds text only:
/// documents and search results are read as at the top of a turn, a `tool_reference` says
/// the tool is now available (as the embedded engine renders it), an image is refused.
fn tool_result_text(content: Option<&ToolResultContent>, at: &str) -> Result<String, BackendError> {
    let blocks = match content {
        None => return Ok(String::new()),
        Some(ToolResultContent::Text(t)) => return Ok(t.clone()),
        Some(ToolResultContent::Blocks(blocks)) => blocks,
    };
    let mut parts = Vec::with_capacity(blocks.len());
    for (k, block) in blocks.iter().enumerate() {
        let at = format!("{at}.content.{k}");
        match block {
            ContentBlockParam::Text { text, .. } => parts.push(text.clone()),
            ContentBlockParam::Document { source, title, .. } => {
                parts.push(document_text(source, title.as_deref(), &at)?)
            }
            ContentBlockParam::SearchResult { .. } => {
                parts.extend(block.search_result_prompt_text())
            }
            ContentBlockParam::ToolReference { tool_name, .. } => {
                parts.push(format!("Tool `{tool_name}` is now available."))
            }
            ContentBlockParam::Image { .. } => {
                return Err(unsupported(format!(
                    "{at}: an image inside a tool_result cannot be sent to an OpenAI-compatible upstream"
                )))
            }
            _ => {}
        }
    }
    Ok(parts.join("\n"))
}

fn messages(request: &GenerateRequest) -> Result<Vec<Value>, BackendError> {
    let mut out = Vec::new();
    let system: Vec<&str> = request.system.iter().map(|b| b.text.as_str()).collect();
    if !system.is_empty() {
        out.push(json!({"role": "system", "content": system.join("\n")}));
    }
    for (turn_no, turn) in request.turns.iter().enumerate() {
        match turn.role {
            Role::User => {
                let mut parts = Vec::new();
                let mut has_image = false;
                for (j, block) in turn.blocks.iter().enumerate() {
                    let at = format!("messages.{turn_no}.content.{j}");
                    match block {
                        ContentBlockParam::Text { text, .. } => parts.push(json!({"type": "text", "text": text})),
                        ContentBlockParam::Image { source, .. } => {
                            has_image = true;
                            parts.push(image_part(source, &at)?);
                        }
                        ContentBlockParam::Document { source, title, .. } => parts.push(
                            json!({"type": "text", "text": document_text(source, title.as_deref(), &at)?}),
                        ),
                        ContentBlockParam::SearchResult { .. } => parts.extend(
                            block.search_result_prompt_text().map(|text| json!({"type": "text", "text": text})),
                        ),
                        ContentBlockParam::ToolResult {
                            tool_use_id,
                            content,
                            is_error,
                            ..
                        } => {
                            let mut text = tool_result_text(content.as_ref(), &at)?;
                            if *is_error == Some(true) {
                                text = format!("Error: {text}");
                            }
                            out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": text}));
                        }
                        // Compaction blocks became the summary turn at normalisation; tool
                        // references stand only inside tool results.
                        ContentBlockParam::ToolUse { .. }
                        | ContentBlockParam::Thinking { .. }
                        | ContentBlockParam::RedactedThinking { .. }
                        | ContentBlockParam::Compaction { .. }
                        | ContentBlockParam::ToolReference { .. }
                        // The server turned these into tool calls and results before.
                        | ContentBlockParam::ServerToolUse { .. }
                        | ContentBlockParam::WebFetchToolResult { .. }
                        | ContentBlockParam::WebSearchToolResult { .. }
            | ContentBlockParam::McpToolUse { .. }
            | ContentBlockParam::McpToolResult { .. }
            | ContentBlockParam::BashCodeExecutionToolResult { .. }
            | ContentBlockParam::TextEditorCodeExecutionToolResult { .. }
            | ContentBlockParam::ToolSearchToolResult { .. }
            | ContentBlockParam::AdvisorToolResult { .. }
            | ContentBlockParam::CodeExecutionToolResult { .. }
            | ContentBlockParam::ContainerUpload { .. } => {}
                    }
                }
                if parts.is_empty() {
                    continue;
                }
                // Plain text as a string: every OpenAI-compatible server takes that form.
                let content = if has_image {
                    Value::Array(parts)
                } else {
                    Value::String(
                        parts
                            .iter()
                            .filter_map(|p| p.get("text").and_then(Value::as_str))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    )
                };
                out.push(json!({"role": "user", "content": content}));
            }
            Role::System => out.push(json!({"role": "system", "content": turn.text()})),
            Role::Assistant => {
                let mut text = Vec::new();
                let mut calls = Vec::new();
                for block in &turn.blocks {
                    match block {
                        ContentBlockParam::Text { text: t, .. } => text.push(t.as_str()),
                        ContentBlockParam::ToolUse {
                            id, name, input, ..
                        } => calls.push(json!({
                            "id": id,
                            "type": "function",
                            "function": {"name": name, "arguments": input.to_string()},
                        })),
                        _ => {}
                    }
                }
                let mut message = Map::new();
                message.insert("role".into(), json!("assistant"));
                message.insert("content".into(), json!(text.join("\n")));
                if !calls.is_empty() {
                    message.insert("tool_calls".into(), Value::Array(calls));
                }
                out.push(Value::Object(message));
            }
        }
    }
    Ok(out)
}

/// The chat-completions body for `request`, streaming, naming the upstream's model.
pub fn chat_body(request: &GenerateRequest, upstream_model: &str) -> Result<Value, BackendError> {
    if request
        .turns
        .last()
        .is_some_and(|t| t.role == Role::Assistant)
    {
        return Err(unsupported(
            "messages: a final assistant turn (prefill) cannot be continued by an OpenAI-compatible upstream",
        ));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(upstream_model));
    body.insert("messages".into(), Value::Array(messages(request)?));
    body.insert("max_tokens".into(), json!(request.max_tokens));
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
    crate::insert_sampling(&mut body, &request.sampling);
    if !request.stop_sequences.is_empty() {
        body.insert("stop".into(), json!(request.stop_sequences));
    }
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let ToolKind::Client(schema) = client_tools::kind(t) else {
                    let refused = client_tools::refusal(i, t, "an OpenAI-compatible upstream");
                    return Err(unsupported(refused.unwrap_or_default()));
                };
                let mut function = json!({
                    "name": t.name,
                    "parameters": schema,
                });
                if let Some(d) = &t.description {
                    function["description"] = json!(d);
                }
                if t.strict == Some(true) {
                    function["strict"] = json!(true);
                }
                Ok(json!({"type": "function", "function": function}))
            })
            .collect::<Result<_, _>>()?;
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &request.tool_choice {
        let (value, parallel) = match choice {
            ToolChoice::Auto {
                disable_parallel_tool_use,
            } => (json!("auto"), disable_parallel_tool_use),
            ToolChoice::Any {
                disable_parallel_tool_use,
            } => (json!("required"), disable_parallel_tool_use),
            ToolChoice::Tool {
                name,
                disable_parallel_tool_use,
            } => (
                json!({"type": "function", "function": {"name": name}}),
                disable_parallel_tool_use,
            ),
            ToolChoice::None => (json!("none"), &None),
        };
        body.insert("tool_choice".into(), value);
        if *parallel == Some(true) {
            body.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    if let Some(OutputFormat::JsonSchema { schema }) = &request.output_format {
        body.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": true}}),
        );
    }
    Ok(Value::Object(body))
}
