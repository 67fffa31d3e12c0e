//! Server-tool blocks in a conversation, as a model that has never seen them reads them: a
//! `server_tool_use` becomes a tool call, its `web_fetch_tool_result`,
//! `web_search_tool_result` or other result the tool's result in a user turn after it (a
//! tool search's as the `tool_reference` blocks that load what it found). Every backend
//! renders tool calls and results, so none of them needs to know these blocks.

use std::collections::HashMap;

use base64::Engine;
use missive_protocol::content::{ContentBlockParam, ToolResultContent};
use missive_protocol::messages::{MessageContent, MessageParam, Role};
use serde_json::Value;

use crate::web_search::Hit;

/// Whether any message holds a server-tool block.
pub fn has_server_blocks(messages: &[MessageParam]) -> bool {
    messages.iter().any(|m| match &m.content {
        MessageContent::Text(_) => false,
        MessageContent::Blocks(blocks) => blocks.iter().any(is_server_block),
    })
}

fn is_server_block(block: &ContentBlockParam) -> bool {
    matches!(
        block,
        ContentBlockParam::ServerToolUse { .. }
            | ContentBlockParam::WebFetchToolResult { .. }
            | ContentBlockParam::WebSearchToolResult { .. }
            | ContentBlockParam::McpToolUse { .. }
            | ContentBlockParam::McpToolResult { .. }
            | ContentBlockParam::BashCodeExecutionToolResult { .. }
            | ContentBlockParam::TextEditorCodeExecutionToolResult { .. }
            | ContentBlockParam::ToolSearchToolResult { .. }
            | ContentBlockParam::AdvisorToolResult { .. }
            | ContentBlockParam::CodeExecutionToolResult { .. }
    )
}

/// The conversation with server-tool blocks as tool calls and results. An assistant
/// message is split at each result: the calls before it, the result in a user turn, the
/// rest of the message after.
pub fn lower(messages: Vec<MessageParam>) -> Vec<MessageParam> {
    let mut queries: HashMap<String, String> = HashMap::new();
    let mut out: Vec<MessageParam> = Vec::with_capacity(messages.len());
    for message in messages {
        let MessageContent::Blocks(blocks) = message.content else {
            push(&mut out, message.role, message.content.into_blocks());
            continue;
        };
        if !blocks.iter().any(is_server_block) {
            push(&mut out, message.role, blocks);
            continue;
        }
        let mut run = Vec::new();
        for block in blocks {
            match block {
                ContentBlockParam::ServerToolUse {
                    id,
                    name,
                    input,
                    cache_control,
                    ..
                } => {
                    if let Some(query) = input.get("query").and_then(Value::as_str) {
                        queries.insert(id.clone(), query.to_owned());
                    }
                    run.push(ContentBlockParam::ToolUse {
                        id,
                        name,
                        input,
                        cache_control,
                    });
                }
                ContentBlockParam::McpToolUse {
                    id,
                    name,
                    input,
                    cache_control,
                    ..
                } => run.push(ContentBlockParam::ToolUse {
                    id,
                    name,
                    input,
                    cache_control,
                }),
                ContentBlockParam::McpToolResult {
                    tool_use_id,
                    content,
                    is_error,
                    cache_control,
                } => {
                    let text = mcp_text(content.as_ref());
                    let answer = result(tool_use_id, text, is_error == Some(true), cache_control);
                    answer_after(&mut out, message.role, &mut run, answer);
                }
                ContentBlockParam::BashCodeExecutionToolResult {
                    tool_use_id,
                    content,
                    cache_control,
                }
                | ContentBlockParam::TextEditorCodeExecutionToolResult {
                    tool_use_id,
                    content,
                    cache_control,
                } => {
                    let (text, is_error) = code_text(&content);
                    let answer = result(tool_use_id, text, is_error, cache_control);
                    answer_after(&mut out, message.role, &mut run, answer);
                }
                // The tools a search found stay loaded, as `tool_reference` blocks keep them.
                ContentBlockParam::ToolSearchToolResult {
                    tool_use_id,
                    content,
                    cache_control,
                } if !crate::tool_search::references(&content).is_empty() => {
                    let references = crate::tool_search::references(&content)
                        .into_iter()
                        .map(|tool_name| ContentBlockParam::ToolReference {
                            tool_name,
                            cache_control: None,
                        })
                        .collect();
                    let answer = ContentBlockParam::ToolResult {
                        tool_use_id,
                        content: Some(ToolResultContent::Blocks(references)),
                        is_error: None,
                        cache_control,
                    };
                    answer_after(&mut out, message.role, &mut run, answer);
                }
                // The model reads advice as it read it when it was given.
                ContentBlockParam::AdvisorToolResult {
                    tool_use_id,
                    content,
                    cache_control,
                } => {
                    let (text, is_error) = crate::advisor::as_read(&content);
                    let answer = result(tool_use_id, text, is_error, cache_control);
                    answer_after(&mut out, message.role, &mut run, answer);
                }
                // Tools an upstream ran: the model reads what they returned, as JSON.
                ContentBlockParam::ToolSearchToolResult {
                    tool_use_id,
                    content,
                    cache_control,
                }
                | ContentBlockParam::CodeExecutionToolResult {
                    tool_use_id,
                    content,
                    cache_control,
                } => {
                    let is_error = content["type"]
                        .as_str()
                        .is_some_and(|t| t.ends_with("_error"));
                    let answer = result(tool_use_id, content.to_string(), is_error, cache_control);
                    answer_after(&mut out, message.role, &mut run, answer);
                }
                ContentBlockParam::WebFetchToolResult {
                    tool_use_id,
                    content,
                    cache_control,
                    ..
                } => {
                    let (text, is_error) = fetch_text(&content);
                    let answer = result(tool_use_id, text, is_error, cache_control);
                    answer_after(&mut out, message.role, &mut run, answer);
                }
                ContentBlockParam::WebSearchToolResult {
                    tool_use_id,
                    content,
                    cache_control,
                    ..
                } => {
                    let query = queries.get(&tool_use_id).cloned().unwrap_or_default();
                    let (text, is_error) = search_text(&query, &content);
                    let answer = result(tool_use_id, text, is_error, cache_control);
                    answer_after(&mut out, message.role, &mut run, answer);
                }
                other => run.push(other),
            }
        }
        push(&mut out, message.role, run);
    }
    out
}

/// Ends the message so far (the calls) and puts the tool's result in a user turn after it.
fn answer_after(
    out: &mut Vec<MessageParam>,
    role: Role,
    run: &mut Vec<ContentBlockParam>,
    answer: ContentBlockParam,
) {
    push(out, role, std::mem::take(run));
    push(out, Role::User, vec![answer]);
}

/// Appends `blocks` as a `role` message, merged into the last message when it has that
/// role; nothing for no blocks.
fn push(out: &mut Vec<MessageParam>, role: Role, blocks: Vec<ContentBlockParam>) {
    if blocks.is_empty() {
        return;
    }
    match out.last_mut() {
        Some(last) if last.role == role => {
            let content = std::mem::replace(&mut last.content, MessageContent::Blocks(Vec::new()));
            let mut merged = content.into_blocks();
            merged.extend(blocks);
            last.content = MessageContent::Blocks(merged);
        }
        _ => out.push(MessageParam {
            role,
            content: MessageContent::Blocks(blocks),
        }),
    }
}

fn result(
    tool_use_id: String,
    text: String,
    is_error: bool,
    cache_control: Option<missive_protocol::content::CacheControl>,
) -> ContentBlockParam {
    ContentBlockParam::ToolResult {
        tool_use_id,
        content: Some(ToolResultContent::Text(text)),
        is_error: is_error.then_some(true),
        cache_control,
    }
}

/// A code execution result as the model read it: the command's output, the file's text,
/// or the error code.
fn code_text(content: &Value) -> (String, bool) {
    let kind = content["type"].as_str().unwrap_or_default();
    if kind.ends_with("_tool_result_error") {
        let code = content["error_code"].as_str().unwrap_or("unavailable");
        return (format!("The tool call failed: {code}"), true);
    }
    match kind {
        "bash_code_execution_result" => {
            let code = content["return_code"].as_i64().unwrap_or(0);
            (
                format!(
                    "exit code {code}\nstdout:\n{}\nstderr:\n{}",
                    content["stdout"].as_str().unwrap_or_default(),
                    content["stderr"].as_str().unwrap_or_default()
                ),
                code != 0,
            )
        }
        "text_editor_code_execution_view_result" => (
            content["content"].as_str().unwrap_or_default().to_owned(),
            false,
        ),
        _ => (content.to_string(), false),
    }
}

/// An `mcp_tool_result`'s content: a string, or text blocks.
fn mcp_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A `web_fetch_tool_result`'s content as the model read it when it was fetched.
fn fetch_text(content: &Value) -> (String, bool) {
    if content.get("type").and_then(Value::as_str) != Some("web_fetch_result") {
        let code = content
            .get("error_code")
            .and_then(Value::as_str)
            .unwrap_or("unavailable");
        return (format!("The fetch failed: {code}"), true);
    }
    let url = content
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let document = &content["content"];
    let text = match document["source"]["type"].as_str() {
        Some("text") => document["source"]["data"].as_str().unwrap_or_default(),
        _ => "[binary content, not shown]",
    };
    let text = match document.get("title").and_then(Value::as_str) {
        Some(title) => format!("Fetched {url}\nTitle: {title}\n\n{text}"),
        None => format!("Fetched {url}\n\n{text}"),
    };
    (text, false)
}

/// A `web_search_tool_result`'s content as the model read it.
fn search_text(query: &str, content: &Value) -> (String, bool) {
    let Some(results) = content.as_array() else {
        let code = content
            .get("error_code")
            .and_then(Value::as_str)
            .unwrap_or("unavailable");
        return (format!("The search failed: {code}"), true);
    };
    let hits: Vec<Hit> = results
        .iter()
        .map(|r| Hit {
            url: r["url"].as_str().unwrap_or_default().to_owned(),
            title: r["title"].as_str().unwrap_or_default().to_owned(),
            snippet: r["encrypted_content"]
                .as_str()
                .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default(),
            page_age: None,
        })
        .collect();
    (crate::web_search::for_model(query, &hits), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assistant_turn_is_split_at_each_result() {
        let messages: Vec<MessageParam> = serde_json::from_value(serde_json::json!([
            {"role": "user", "content": "Read https://a.example/"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Fetching."},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_fetch", "input": {"url": "https://a.example/"}},
                {"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_1", "content": {
                    "type": "web_fetch_result", "url": "https://a.example/",
                    "content": {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Hello page"}}}},
                {"type": "text", "text": "It says hello."}
            ]},
            {"role": "user", "content": "Thanks"}
        ]))
        .unwrap();
        assert!(has_server_blocks(&messages));
        let lowered = lower(messages);
        let roles: Vec<Role> = lowered.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::User,
                Role::Assistant,
                Role::User,
                Role::Assistant,
                Role::User
            ]
        );
        let blocks = lowered[2].content.clone().into_blocks();
        let ContentBlockParam::ToolResult {
            tool_use_id,
            content: Some(ToolResultContent::Text(text)),
            ..
        } = &blocks[0]
        else {
            panic!("{blocks:?}")
        };
        assert_eq!(tool_use_id, "srvtoolu_1");
        assert!(text.ends_with("Hello page"), "{text}");
        assert!(!has_server_blocks(&lowered));
    }

    #[test]
    fn a_tool_search_loads_what_it_found_and_advice_is_read_as_its_text() {
        let messages: Vec<MessageParam> = serde_json::from_value(serde_json::json!([
            {"role": "user", "content": "Find the weather tool."},
            {"role": "assistant", "content": [
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "tool_search_tool_regex", "input": {"pattern": "weather"}},
                {"type": "tool_search_tool_result", "tool_use_id": "srvtoolu_1", "content": {
                    "type": "tool_search_tool_search_result",
                    "tool_references": [{"type": "tool_reference", "tool_name": "get_weather"}]}},
                {"type": "server_tool_use", "id": "srvtoolu_2", "name": "advisor", "input": {}},
                {"type": "advisor_tool_result", "tool_use_id": "srvtoolu_2", "content": {
                    "type": "advisor_result", "text": "Use get_weather.", "stop_reason": "max_tokens"}},
                {"type": "server_tool_use", "id": "srvtoolu_3", "name": "advisor", "input": {}},
                {"type": "advisor_tool_result", "tool_use_id": "srvtoolu_3", "content": {
                    "type": "advisor_tool_result_error", "error_code": "overloaded"}}
            ]}
        ]))
        .unwrap();
        let lowered = lower(messages);
        assert!(!has_server_blocks(&lowered));
        let blocks = lowered[2].content.clone().into_blocks();
        let ContentBlockParam::ToolResult {
            content: Some(ToolResultContent::Blocks(references)),
            ..
        } = &blocks[0]
        else {
            panic!("{blocks:?}")
        };
        assert_eq!(
            references,
            &[ContentBlockParam::ToolReference {
                tool_name: "get_weather".into(),
                cache_control: None
            }]
        );
        let blocks = lowered[4].content.clone().into_blocks();
        let ContentBlockParam::ToolResult {
            content: Some(ToolResultContent::Text(text)),
            is_error,
            ..
        } = &blocks[0]
        else {
            panic!("{blocks:?}")
        };
        assert_eq!(
            text,
            "Use get_weather.\n\n[The advice was cut off at its token limit.]"
        );
        assert_ne!(*is_error, Some(true));
        let blocks = lowered[6].content.clone().into_blocks();
        let ContentBlockParam::ToolResult {
            content: Some(ToolResultContent::Text(text)),
            is_error: Some(true),
            ..
        } = &blocks[0]
        else {
            panic!("{blocks:?}")
        };
        assert_eq!(text, "The advisor could not answer: overloaded");
    }
}
