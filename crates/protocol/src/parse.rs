//! Parsing and validating request bodies, with messages that name the offending field the
//! way the Claude API does (`max_tokens: Field required`, `messages.0.role: …`).

use serde::de::DeserializeOwned;

use crate::content::CacheControl;
use crate::content::ContentBlockParam;
use crate::messages::{CountTokensRequest, MessageContent, MessagesRequest, Role, SystemPrompt};
use crate::tools::{OutputFormat, ThinkingConfig, ToolChoice};

/// A request body that cannot be served as written. Always a client error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

/// Parses and validates a `POST /v1/messages` body.
pub fn parse_messages_request(body: &[u8]) -> Result<MessagesRequest, RequestError> {
    let request: MessagesRequest = parse_json(body)?;
    validate_messages(&request)?;
    Ok(request)
}

/// Parses and validates a `POST /v1/messages/count_tokens` body.
pub fn parse_count_tokens_request(body: &[u8]) -> Result<CountTokensRequest, RequestError> {
    let request: CountTokensRequest = parse_json(body)?;
    validate_messages(&request.clone().into_messages_request())?;
    Ok(request)
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError(
            "request body is empty: expected a JSON object".into(),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return RequestError(format!("invalid JSON in request body: {inner}"));
        }
        let message = inner.to_string();
        if message.contains("untagged enum MessageContent") {
            if let Some(named) = content_error(body, &path) {
                return RequestError(named);
            }
        }
        RequestError(describe(&path, &message))
    })
}

/// Which block of a message's content failed, and why: serde only says that the content
/// matched neither a string nor a list of blocks. Runs on the error path only.
fn content_error(body: &[u8], path: &str) -> Option<String> {
    let index: usize = path
        .strip_prefix("messages[")?
        .strip_suffix("].content")?
        .parse()
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let blocks = value
        .get("messages")?
        .get(index)?
        .get("content")?
        .as_array()?;
    block_error(blocks, &format!("messages.{index}.content"))
}

/// The first block of `blocks` that does not parse, named by `at` and its index; inside a
/// `tool_result`, the block of its content that does not.
fn block_error(blocks: &[serde_json::Value], at: &str) -> Option<String> {
    blocks.iter().enumerate().find_map(|(j, block)| {
        let err = serde_json::from_value::<ContentBlockParam>(block.clone()).err()?;
        let at = format!("{at}.{j}");
        let kind = block.get("type").and_then(serde_json::Value::as_str);
        if kind == Some("tool_result") {
            if let Some(inner) = block
                .get("content")
                .and_then(serde_json::Value::as_array)
                .and_then(|inner| block_error(inner, &format!("{at}.content")))
            {
                return Some(inner);
            }
        }
        Some(match kind {
            Some(kind) if err.to_string().starts_with("unknown variant") => format!(
                "{at}.type: unknown content block type `{kind}`; this server takes text, image, document, tool_use, tool_result (with tool_reference), thinking, redacted_thinking, compaction, server_tool_use, web_fetch_tool_result and web_search_tool_result blocks (docs/compatibility.md)"
            ),
            None => format!("{at}.type: Field required"),
            Some(kind) => format!("{at}: invalid `{kind}` block: {}", describe(".", &err.to_string())),
        })
    })
}

/// Turns serde's wording into the Claude API's `path: problem` form.
fn describe(path: &str, serde_message: &str) -> String {
    // serde appends " at line L column C"; the path already says where.
    let message = serde_message
        .rsplit_once(" at line ")
        .map_or(serde_message, |(head, _)| head);
    let field = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'));
    let prefix = if path == "." {
        String::new()
    } else {
        path.to_owned()
    };
    // serde's path for an unknown field is the field itself; the message names it too.
    if let Some(extra) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
    {
        return format!(
            "{path}: Extra inputs are not permitted",
            path = if prefix.is_empty() { extra } else { &prefix }
        );
    }
    match field {
        Some(field) if prefix.is_empty() => format!("{field}: Field required"),
        Some(field) => format!("{prefix}.{field}: Field required"),
        None if prefix.is_empty() => message.to_owned(),
        None => format!("{prefix}: {message}"),
    }
}

fn validate_messages(request: &MessagesRequest) -> Result<(), RequestError> {
    if request.model.trim().is_empty() {
        return Err(RequestError(
            "model: String should have at least 1 character".into(),
        ));
    }
    if request.messages.is_empty() {
        return Err(RequestError(
            "messages: at least one message is required".into(),
        ));
    }
    if let Some(t) = request.temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(RequestError(format!(
                "temperature: Input should be less than or equal to 1 and greater than or equal to 0 (got {t})"
            )));
        }
    }
    if let Some(p) = request.top_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(RequestError(format!(
                "top_p: Input should be less than or equal to 1 and greater than or equal to 0 (got {p})"
            )));
        }
    }
    if let Some(stops) = &request.stop_sequences {
        if stops.len() > MAX_STOP_SEQUENCES {
            return Err(RequestError(format!(
                "stop_sequences: at most {MAX_STOP_SEQUENCES} stop sequences are allowed (got {})",
                stops.len()
            )));
        }
        if let Some(i) = stops.iter().position(String::is_empty) {
            return Err(RequestError(format!(
                "stop_sequences.{i}: stop sequences must be non-empty"
            )));
        }
        if let Some(i) = stops.iter().position(|s| s.len() > MAX_STOP_SEQUENCE_BYTES) {
            return Err(RequestError(format!(
                "stop_sequences.{i}: a stop sequence may be at most {MAX_STOP_SEQUENCE_BYTES} bytes"
            )));
        }
    }
    let blocks_total: usize = request
        .messages
        .iter()
        .map(|m| blocks(&m.content).len().max(1))
        .sum();
    if blocks_total > MAX_CONTENT_BLOCKS {
        return Err(RequestError(format!(
            "messages: a request may hold at most {MAX_CONTENT_BLOCKS} content blocks (got {blocks_total})"
        )));
    }
    for (i, message) in request.messages.iter().enumerate() {
        if message.role == Role::System {
            if let Some(j) = blocks(&message.content)
                .iter()
                .position(|b| !matches!(b, ContentBlockParam::Text { .. }))
            {
                return Err(RequestError(format!(
                    "messages.{i}.content.{j}: a system message holds text blocks only"
                )));
            }
        }
        if let MessageContent::Blocks(blocks) = &message.content {
            if blocks.is_empty() && i + 1 < request.messages.len() {
                return Err(RequestError(format!(
                    "messages.{i}.content: all messages must have non-empty content except for the optional final assistant message"
                )));
            }
            for (j, block) in blocks.iter().enumerate() {
                if let ContentBlockParam::Text { text, .. } = block {
                    if text.is_empty() {
                        return Err(RequestError(format!(
                            "messages.{i}.content.{j}.text: text content blocks must be non-empty"
                        )));
                    }
                }
            }
        }
    }
    validate_tools(request)?;
    validate_tool_references(request)?;
    validate_search_results(request)?;
    validate_tool_pairs(request)?;
    check_unsupported(request)?;
    validate_context_management(request)?;
    validate_thinking(request)?;
    validate_cache_control(request)?;
    if let Some(last) = request.messages.last() {
        if last.role == Role::Assistant && final_text(&last.content).ends_with(char::is_whitespace)
        {
            return Err(RequestError(
                "final assistant content cannot end with trailing whitespace".into(),
            ));
        }
    }
    Ok(())
}

/// Fields of the SDKs' request types that this server serves in part or not at all: each
/// is accepted where its value asks for nothing this server lacks, and refused by name
/// otherwise. `docs/compatibility.md` lists them.
fn check_unsupported(request: &MessagesRequest) -> Result<(), RequestError> {
    use serde_json::Value;
    let refuse = |field: &str, why: &str| Err(RequestError(format!("{field}: {why}")));
    let given = |value: &Option<Value>| value.as_ref().is_some_and(|v| !v.is_null());
    validate_mcp_servers(request.mcp_servers.as_ref())?;
    if given(&request.thread) {
        return refuse(
            "thread",
            "this server holds no conversation state; send the whole conversation in `messages`",
        );
    }
    if given(&request.fallback_credit_token) {
        return refuse(
            "fallback_credit_token",
            "this server issues no fallback credit tokens",
        );
    }
    match &request.fallbacks {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "default" => {}
        Some(_) => {
            return refuse("fallbacks", "fallback models are not supported on this server; `\"default\"` runs the requested model alone")
        }
    }
    match &request.billing_policy {
        None | Some(Value::Null) => {}
        Some(policy)
            if policy
                .get("bill_to")
                .and_then(Value::as_str)
                .is_none_or(|b| b == "self") => {}
        Some(_) => {
            return refuse(
                "billing_policy.bill_to",
                "only `self` is supported: this server has no user profiles to bill",
            )
        }
    }
    match &request.speed {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "standard" || s == "fast" => {}
        Some(other) => {
            return refuse(
                "speed",
                &format!("Input should be 'standard' or 'fast' (got {other})"),
            )
        }
    }
    if let Some(tier) = request
        .service_tier
        .as_deref()
        .filter(|t| !matches!(*t, "auto" | "standard_only"))
    {
        return refuse(
            "service_tier",
            &format!("Input should be 'auto' or 'standard_only' (got '{tier}')"),
        );
    }
    if request
        .inference_geo
        .as_ref()
        .is_some_and(|v| !v.is_null() && !v.is_string())
    {
        return refuse("inference_geo", "Input should be a valid string");
    }
    if request
        .diagnostics
        .as_ref()
        .is_some_and(|v| !v.is_null() && !v.is_object())
    {
        return refuse("diagnostics", "Input should be a valid dictionary");
    }
    for (i, tool) in request.tools.iter().flatten().enumerate() {
        if let Some(callers) = &tool.allowed_callers {
            if let Some(caller) = callers.iter().find(|c| *c != "direct") {
                return refuse(&format!("tools.{i}.allowed_callers"), &format!("caller `{caller}` needs programmatic tool calling, which this server does not run; only `direct` is served"));
            }
        }
    }
    Ok(())
}

/// `context_management` is well formed: each edit type at most once, triggers and counts
/// of the kinds each edit takes, and never beside the `compaction` parameter.
fn validate_context_management(request: &MessagesRequest) -> Result<(), RequestError> {
    use crate::context::{ContextEdit, Trigger};
    let Some(config) = &request.context_management else {
        return Ok(());
    };
    if request.compaction.is_some() {
        return Err(RequestError(
            "compaction: cannot be combined with `context_management`".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, edit) in config.edits.iter().enumerate() {
        if !seen.insert(edit.kind()) {
            return Err(RequestError(format!(
                "context_management.edits.{i}.type: `{}` appears more than once",
                edit.kind()
            )));
        }
        if let ContextEdit::Compact {
            trigger: Some(Trigger::ToolUses(_)),
            ..
        } = edit
        {
            return Err(RequestError(format!(
                "context_management.edits.{i}.trigger.type: Input should be 'input_tokens'"
            )));
        }
    }
    Ok(())
}

/// `tool_reference` blocks stand inside `tool_result` content, and name a request tool.
fn validate_tool_references(request: &MessagesRequest) -> Result<(), RequestError> {
    let tools = request.tools.as_deref().unwrap_or_default();
    for (at, block) in crate::walk::blocks(&request.messages) {
        let ContentBlockParam::ToolReference { tool_name, .. } = block else {
            continue;
        };
        if at.inner.is_none() {
            return Err(RequestError(format!(
                "{at}: a `tool_reference` block may only stand inside a `tool_result`"
            )));
        }
        if !tools.iter().any(|t| &t.name == tool_name) {
            return Err(RequestError(format!(
                "{at}.tool_name: tool `{tool_name}` is not among the request's tools"
            )));
        }
    }
    Ok(())
}

/// A `search_result`, at the top of a turn or inside a `tool_result`, holds non-empty
/// `text` blocks and nothing else, as the Claude API requires.
fn validate_search_results(request: &MessagesRequest) -> Result<(), RequestError> {
    for (at, block) in crate::walk::blocks(&request.messages) {
        let ContentBlockParam::SearchResult { content, .. } = block else {
            continue;
        };
        if content.is_empty() {
            return Err(RequestError(format!(
                "{at}.content: a search result needs at least one `text` block"
            )));
        }
        for (k, inner) in content.iter().enumerate() {
            match inner {
                ContentBlockParam::Text { text, .. } if text.is_empty() => {
                    return Err(RequestError(format!(
                        "{at}.content.{k}.text: text content blocks must be non-empty"
                    )))
                }
                ContentBlockParam::Text { .. } => {}
                _ => {
                    return Err(RequestError(format!(
                        "{at}.content.{k}: a search result holds `text` blocks only"
                    )))
                }
            }
        }
    }
    Ok(())
}

/// Content blocks one request may hold, over all its messages: past this, rendering and
/// tokenising the prompt would cost more than any context window could use.
pub const MAX_CONTENT_BLOCKS: usize = 100_000;

/// Stop sequences one request may set: each is checked after every generated token.
pub const MAX_STOP_SEQUENCES: usize = 64;
/// Bytes one stop sequence may have.
pub const MAX_STOP_SEQUENCE_BYTES: usize = 256;

/// `^[a-zA-Z0-9_-]{1,128}$`, as the Claude API requires of tool names.
/// `mcp_servers`: URL servers with unique names.
fn validate_mcp_servers(servers: Option<&serde_json::Value>) -> Result<(), RequestError> {
    use serde_json::Value;
    let servers = match servers {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(RequestError(
                "mcp_servers: Input should be a valid list".into(),
            ))
        }
    };
    let mut names = std::collections::HashSet::new();
    for (i, server) in servers.iter().enumerate() {
        let field = |key: &str| server.get(key).and_then(Value::as_str);
        if field("type") != Some("url") {
            return Err(RequestError(format!(
                "mcp_servers.{i}.type: Input should be 'url'"
            )));
        }
        if field("url").is_none() {
            return Err(RequestError(format!("mcp_servers.{i}.url: Field required")));
        }
        match field("name") {
            None | Some("") => {
                return Err(RequestError(format!("mcp_servers.{i}.name: Field required")))
            }
            Some(name) if !names.insert(name) => {
                return Err(RequestError(format!(
                    "mcp_servers.{i}.name: server names must be unique (`{name}` appears more than once)"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validate_tools(request: &MessagesRequest) -> Result<(), RequestError> {
    let tools = request.tools.as_deref().unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let servers: Vec<&str> = request
        .mcp_servers
        .as_ref()
        .and_then(serde_json::Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|s| s.get("name").and_then(serde_json::Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    for (i, tool) in tools.iter().enumerate() {
        // A toolset names its server, not itself; its tools are named by the server.
        if tool.kind.as_deref() == Some("mcp_toolset") {
            match tool
                .settings
                .get("mcp_server_name")
                .and_then(serde_json::Value::as_str)
            {
                Some(name) if servers.contains(&name) => continue,
                Some(name) => {
                    return Err(RequestError(format!(
                    "tools.{i}.mcp_server_name: `{name}` is not among the request's `mcp_servers`"
                )))
                }
                None => {
                    return Err(RequestError(format!(
                        "tools.{i}.mcp_server_name: Field required"
                    )))
                }
            }
        }
        if !valid_tool_name(&tool.name) {
            return Err(RequestError(format!(
                "tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$' (got `{}`)",
                tool.name.chars().take(140).collect::<String>()
            )));
        }
        if !seen.insert(tool.name.as_str()) {
            return Err(RequestError(format!(
                "tools.{i}.name: tool names must be unique (`{}` appears more than once)",
                tool.name
            )));
        }
        let custom = tool.kind.as_deref().is_none_or(|k| k == "custom");
        // Settings belong to Anthropic-defined tool types; on a custom tool a key nobody
        // reads is a mistake (`input_shema`), refused as the Claude API refuses it.
        if let Some(key) = tool.settings.keys().next().filter(|_| custom) {
            return Err(RequestError(format!(
                "tools.{i}.{key}: Extra inputs are not permitted"
            )));
        }
        match &tool.input_schema {
            None if custom => {
                return Err(RequestError(format!(
                    "tools.{i}.input_schema: Field required"
                )))
            }
            Some(schema) if !schema.is_object() => {
                return Err(RequestError(format!(
                    "tools.{i}.input_schema: must be a JSON Schema object"
                )))
            }
            Some(schema) => check_schema(schema, &format!("tools.{i}.input_schema"))?,
            None => {}
        }
    }
    let format = request
        .output_config
        .as_ref()
        .and_then(|config| config.format.as_ref())
        .map(|format| ("output_config.format.schema", format))
        .or(request
            .output_format
            .as_ref()
            .map(|format| ("output_format.schema", format)));
    if let Some((path, OutputFormat::JsonSchema { schema })) = format {
        check_schema(schema, path)?;
    }
    match &request.tool_choice {
        // An MCP server's tools are known once it is reached; the server checks then.
        Some(ToolChoice::Tool { .. }) if !servers.is_empty() => Ok(()),
        Some(ToolChoice::Tool { name, .. }) if !tools.iter().any(|t| &t.name == name) => Err(RequestError(format!(
            "tool_choice.name: tool `{name}` is not among the request's tools"
        ))),
        Some(ToolChoice::Any { .. } | ToolChoice::Tool { .. }) if tools.is_empty() => Err(RequestError(
            "tool_choice: a tool must be provided in `tools` when `tool_choice` is `any` or `tool`".into(),
        )),
        _ => Ok(()),
    }
}

/// `cache_control` as the Claude API accepts it: `ephemeral`, a `5m` or `1h` TTL, and at
/// most four breakpoints in all (the automatic top-level form counts as one).
fn validate_cache_control(request: &MessagesRequest) -> Result<(), RequestError> {
    let mut found: Vec<(String, &CacheControl)> = Vec::new();
    if let Some(c) = &request.cache_control {
        found.push(("cache_control".into(), c));
    }
    for (i, tool) in request.tools.iter().flatten().enumerate() {
        if let Some(c) = &tool.cache_control {
            found.push((format!("tools.{i}.cache_control"), c));
        }
    }
    if let Some(SystemPrompt::Blocks(blocks)) = &request.system {
        for (i, block) in blocks.iter().enumerate() {
            if let Some(c) = &block.cache_control {
                found.push((format!("system.{i}.cache_control"), c));
            }
        }
    }
    for (i, message) in request.messages.iter().enumerate() {
        for (j, block) in blocks(&message.content).iter().enumerate() {
            if let Some(c) = block.cache_control() {
                found.push((format!("messages.{i}.content.{j}.cache_control"), c));
            }
        }
    }
    for (path, control) in &found {
        if control.kind != "ephemeral" {
            return Err(RequestError(format!(
                "{path}.type: Input should be 'ephemeral'"
            )));
        }
        if let Some(ttl) = control
            .ttl
            .as_deref()
            .filter(|t| !matches!(*t, "5m" | "1h"))
        {
            return Err(RequestError(format!(
                "{path}.ttl: Input should be '5m' or '1h' (got '{ttl}')"
            )));
        }
    }
    if found.len() > 4 {
        return Err(RequestError(format!(
            "A maximum of 4 blocks with cache_control may be provided. Found {}.",
            found.len()
        )));
    }
    Ok(())
}

/// The Claude API's floor on a thinking budget. (Its `budget_tokens < max_tokens` rule is
/// lifted by the interleaved-thinking beta, so it is not enforced here.)
fn validate_thinking(request: &MessagesRequest) -> Result<(), RequestError> {
    if let Some(ThinkingConfig::Enabled { budget_tokens, .. }) = &request.thinking {
        if *budget_tokens < 1024 {
            return Err(RequestError(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// A schema the client sends must itself be valid JSON Schema (checked against the
/// draft it declares, 2020-12 when it declares none).
pub fn check_schema(schema: &serde_json::Value, path: &str) -> Result<(), RequestError> {
    if !schema.is_object() {
        return Err(RequestError(format!(
            "{path}: must be a JSON Schema object"
        )));
    }
    jsonschema::meta::validate(schema)
        .map_err(|err| RequestError(format!("{path}: invalid JSON Schema: {err}")))
}

fn blocks(content: &MessageContent) -> &[ContentBlockParam] {
    match content {
        MessageContent::Text(_) => &[],
        MessageContent::Blocks(blocks) => blocks,
    }
}

/// Every `tool_result` answers a `tool_use` of the message just before it, and every
/// `tool_use` followed by a message is answered there, as the Claude API requires.
fn validate_tool_pairs(request: &MessagesRequest) -> Result<(), RequestError> {
    let messages = &request.messages;
    for (i, message) in messages.iter().enumerate() {
        // Sets, not lists: an agent's history can hold many thousands of calls per turn.
        let uses: Vec<&str> = blocks(&message.content)
            .iter()
            .filter_map(|b| match b {
                ContentBlockParam::ToolUse { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let answered: Vec<&str> = messages
            .get(i + 1)
            .map(|next| blocks(&next.content))
            .unwrap_or_default()
            .iter()
            .filter_map(|b| match b {
                ContentBlockParam::ToolResult { tool_use_id, .. } => Some(tool_use_id.as_str()),
                _ => None,
            })
            .collect();
        let answered_set: std::collections::HashSet<&str> = answered.iter().copied().collect();
        let uses_set: std::collections::HashSet<&str> = uses.iter().copied().collect();
        if i + 1 < messages.len() {
            let missing: Vec<&str> = uses
                .iter()
                .copied()
                .filter(|id| !answered_set.contains(id))
                .collect();
            if !missing.is_empty() {
                return Err(RequestError(format!(
                    "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                    i + 1,
                    missing.join(", ")
                )));
            }
        }
        if i + 1 < messages.len() {
            for (j, id) in answered.iter().enumerate() {
                if !uses_set.contains(id) {
                    let at = blocks(&messages[i + 1].content)
                        .iter()
                        .enumerate()
                        .filter(|(_, b)| matches!(b, ContentBlockParam::ToolResult { .. }))
                        .nth(j)
                        .map_or(0, |(k, _)| k);
                    return Err(RequestError(format!(
                        "messages.{}.content.{at}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
                        i + 1
                    )));
                }
            }
        }
    }
    if let Some(first) = messages.first() {
        if let Some(j) = blocks(&first.content)
            .iter()
            .position(|b| matches!(b, ContentBlockParam::ToolResult { .. }))
        {
            return Err(RequestError(format!(
                "messages.0.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
            )));
        }
    }
    Ok(())
}

fn final_text(content: &MessageContent) -> &str {
    match content {
        MessageContent::Text(text) => text,
        MessageContent::Blocks(blocks) => match blocks.last() {
            Some(ContentBlockParam::Text { text, .. }) => text,
            _ => "",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        parse_messages_request(body.as_bytes()).unwrap_err().0
    }

    #[test]
    fn missing_max_tokens_is_named() {
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#),
            "max_tokens: Field required"
        );
    }

    #[test]
    fn bad_role_names_the_path() {
        let e = err(r#"{"model":"m","max_tokens":5,"messages":[{"role":"bot","content":"hi"}]}"#);
        assert!(
            e.starts_with("messages[0].role: unknown variant `bot`"),
            "{e}"
        );
    }

    #[test]
    fn empty_messages_rejected() {
        assert_eq!(
            err(r#"{"model":"m","max_tokens":5,"messages":[]}"#),
            "messages: at least one message is required"
        );
    }

    #[test]
    fn temperature_out_of_range_rejected() {
        let e = err(
            r#"{"model":"m","max_tokens":5,"temperature":1.5,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert!(e.starts_with("temperature:"), "{e}");
    }

    #[test]
    fn malformed_json_says_so() {
        assert!(err("{\"model\":").starts_with("invalid JSON"));
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"extra_thing":{"a":1}}"#
            ),
            "extra_thing: Extra inputs are not permitted"
        );
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"context_management":{"edits":[],"bogus":1}}"#
            ),
            "context_management.bogus: Extra inputs are not permitted"
        );
    }

    #[test]
    fn mcp_servers_and_toolsets_are_checked_by_name() {
        let body = |servers: &str, tools: &str| {
            format!(
                r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}],"mcp_servers":{servers},"tools":{tools}}}"#
            )
        };
        let server = r#"[{"type":"url","url":"https://mcp.example.com/mcp","name":"crm"}]"#;
        let toolset = r#"[{"type":"mcp_toolset","mcp_server_name":"crm"}]"#;
        assert!(parse_messages_request(body(server, toolset).as_bytes()).is_ok());
        let other = r#"[{"type":"mcp_toolset","mcp_server_name":"erp"}]"#;
        assert_eq!(
            err(&body(server, other)),
            "tools.0.mcp_server_name: `erp` is not among the request's `mcp_servers`"
        );
        let twice = r#"[{"type":"url","url":"https://a.example/mcp","name":"crm"},{"type":"url","url":"https://b.example/mcp","name":"crm"}]"#;
        assert!(
            err(&body(twice, "[]")).starts_with("mcp_servers.1.name: server names must be unique")
        );
    }

    #[test]
    fn sdk_fields_this_server_lacks_are_refused_by_name() {
        let base = r#""model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]"#;
        for (field, value) in [
            (
                "mcp_servers",
                r#"[{"type":"url","url":"https://mcp.example.com"}]"#,
            ),
            ("thread", r#"{"type":"create"}"#),
            ("fallback_credit_token", r#""fct_1""#),
            ("fallbacks", r#"["claude-x"]"#),
            (
                "billing_policy",
                r#"{"type":"billing_policy","bill_to":"user_profile"}"#,
            ),
        ] {
            let e = err(&format!("{{{base},\"{field}\":{value}}}"));
            assert!(e.starts_with(field), "{field}: {e}");
        }
        for (field, value) in [
            ("container", "null"),
            ("mcp_servers", "[]"),
            ("fallbacks", r#""default""#),
            (
                "billing_policy",
                r#"{"type":"billing_policy","bill_to":"self"}"#,
            ),
            ("speed", r#""fast""#),
            ("inference_geo", r#""us""#),
            ("diagnostics", r#"{"previous_message_id":"msg_1"}"#),
            ("service_tier", r#""standard_only""#),
        ] {
            let body = format!("{{{base},\"{field}\":{value}}}");
            assert!(
                parse_messages_request(body.as_bytes()).is_ok(),
                "{field}: {}",
                err(&body)
            );
        }
    }

    #[test]
    fn tool_references_stand_in_tool_results_and_name_a_tool() {
        let tools = r#""tools":[{"name":"find","input_schema":{"type":"object"}},{"name":"late","defer_loading":true,"input_schema":{"type":"object"}}]"#;
        let turns = |reference: &str| {
            format!(
                r#"{{"model":"m","max_tokens":5,{tools},"messages":[{{"role":"user","content":"x"}},{{"role":"assistant","content":[{{"type":"tool_use","id":"toolu_1","name":"find","input":{{}}}}]}},{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_1","content":[{{"type":"tool_reference","tool_name":"{reference}"}}]}}]}}]}}"#
            )
        };
        assert!(parse_messages_request(turns("late").as_bytes()).is_ok());
        assert!(err(&turns("nope")).starts_with("messages.2.content.0.content.0.tool_name"));
        let bare = format!(
            r#"{{"model":"m","max_tokens":5,{tools},"messages":[{{"role":"user","content":[{{"type":"tool_reference","tool_name":"late"}}]}}]}}"#
        );
        assert!(err(&bare).starts_with("messages.0.content.0: a `tool_reference` block"));
    }

    #[test]
    fn search_results_hold_text_blocks_at_the_top_and_inside_tool_results() {
        let request = |result: serde_json::Value| {
            serde_json::json!({"model": "m", "max_tokens": 5,
                "tools": [{"name": "find", "input_schema": {"type": "object"}}],
                "messages": [
                    {"role": "user", "content": [result.clone(), {"type": "text", "text": "x"}]},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "find", "input": {}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [result]}]},
                ]})
            .to_string()
        };
        let result = |content: serde_json::Value| {
            serde_json::json!({"type": "search_result", "source": "https://kb.example/a", "title": "A",
                "content": content, "citations": {"enabled": true}})
        };
        let good = request(result(
            serde_json::json!([{"type": "text", "text": "Pumps."}]),
        ));
        let parsed = parse_messages_request(good.as_bytes()).unwrap();
        let ContentBlockParam::SearchResult { source, title, .. } =
            &super::blocks(&parsed.messages[0].content)[0]
        else {
            panic!("not a search result");
        };
        assert_eq!(
            (source.as_str(), title.as_str()),
            ("https://kb.example/a", "A")
        );
        assert_eq!(
            super::blocks(&parsed.messages[0].content)[0]
                .search_result_prompt_text()
                .unwrap(),
            "Search result: A\nSource: https://kb.example/a\nPumps."
        );
        let image = serde_json::json!([{"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}}]);
        assert_eq!(
            err(&request(result(image))),
            "messages.0.content.0.content.0: a search result holds `text` blocks only"
        );
        assert!(err(&request(result(serde_json::json!([]))))
            .starts_with("messages.0.content.0.content: a search result needs"));
        assert!(err(&request(result(
            serde_json::json!([{"type": "text", "text": ""}])
        )))
        .starts_with("messages.0.content.0.content.0.text: text content blocks must be non-empty"));
        // Inside a tool result, the same rules name the block where it stands.
        let inner_only = serde_json::json!({"model": "m", "max_tokens": 5,
        "tools": [{"name": "find", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "find", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": [result(serde_json::json!([{"type": "document", "source": {"type": "text", "data": "d"}}]))]}]},
        ]});
        assert_eq!(
            err(&inner_only.to_string()),
            "messages.2.content.0.content.0.content.0: a search result holds `text` blocks only"
        );
    }

    #[test]
    fn tool_names_must_match_the_claude_api_pattern() {
        for bad in ["a b!", "", "ünïcode"] {
            let body = format!(
                r#"{{"model":"m","max_tokens":5,"tools":[{{"name":"{bad}","input_schema":{{"type":"object"}}}}],"messages":[{{"role":"user","content":"x"}}]}}"#
            );
            assert!(
                err(&body).starts_with("tools.0.name: String should match pattern"),
                "{bad}"
            );
        }
        let long = "a".repeat(129);
        let body = format!(
            r#"{{"model":"m","max_tokens":5,"tools":[{{"name":"{long}","input_schema":{{"type":"object"}}}}],"messages":[{{"role":"user","content":"x"}}]}}"#
        );
        assert!(err(&body).starts_with("tools.0.name"));
    }

    #[test]
    fn stop_sequences_are_bounded_in_number_and_size() {
        let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        let body = serde_json::json!({"model":"m","max_tokens":5,"stop_sequences":many,"messages":[{"role":"user","content":"x"}]}).to_string();
        assert!(err(&body).starts_with("stop_sequences: at most 64"));
        let body = serde_json::json!({"model":"m","max_tokens":5,"stop_sequences":["x".repeat(257)],"messages":[{"role":"user","content":"x"}]}).to_string();
        assert!(err(&body).starts_with("stop_sequences.0: a stop sequence may be at most 256"));
    }

    #[test]
    fn issue_18_many_tool_pairs_are_checked_in_linear_time() {
        let n = 49_000;
        let uses: Vec<serde_json::Value> = (0..n)
            .map(|i| serde_json::json!({"type":"tool_use","id":format!("toolu_{i}"),"name":"w","input":{}}))
            .collect();
        let results: Vec<serde_json::Value> = (0..n)
            .map(|i| serde_json::json!({"type":"tool_result","tool_use_id":format!("toolu_{i}"),"content":"r"}))
            .collect();
        let body = serde_json::json!({"model":"m","max_tokens":5,"messages":[
            {"role":"user","content":"x"},{"role":"assistant","content":uses},{"role":"user","content":results}]})
        .to_string();
        let started = std::time::Instant::now();
        parse_messages_request(body.as_bytes()).unwrap();
        // Quadratic took minutes at this size; linear takes well under a second.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_request_may_hold_at_most_100k_content_blocks() {
        let blocks: Vec<serde_json::Value> = (0..100_001)
            .map(|_| serde_json::json!({"type":"text","text":"x"}))
            .collect();
        let body = serde_json::json!({"model":"m","max_tokens":5,"messages":[{"role":"user","content":blocks}]}).to_string();
        assert!(
            err(&body).starts_with("messages: a request may hold at most 100000 content blocks")
        );
    }

    #[test]
    fn system_messages_may_stand_in_the_conversation_and_hold_only_text() {
        let ok = r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"system","content":[{"type":"text","text":"Be brief."}]},{"role":"user","content":"c"}]}"#;
        let request = parse_messages_request(ok.as_bytes()).unwrap();
        assert_eq!(request.messages[2].role, Role::System);
        let image = r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"},{"role":"system","content":[{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}}]}]}"#;
        assert_eq!(
            err(image),
            "messages.1.content.0: a system message holds text blocks only"
        );
    }

    #[test]
    fn an_unknown_content_block_is_named_by_type_and_index() {
        let body = r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"text","text":"b"},{"type":"oracle_tool_result","tool_use_id":"srvtoolu_1","content":{}}]}]}"#;
        assert!(
            err(body).starts_with(
                "messages.1.content.1.type: unknown content block type `oracle_tool_result`"
            ),
            "{}",
            err(body)
        );
        let untyped =
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"text":"a"}]}]}"#;
        assert_eq!(err(untyped), "messages.0.content.0.type: Field required");
        let bad = r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text"}]}]}"#;
        assert!(
            err(bad)
                .starts_with("messages.0.content.0: invalid `text` block: text: Field required"),
            "{}",
            err(bad)
        );
    }

    #[test]
    fn an_unknown_key_on_a_custom_tool_is_refused() {
        let body = r#"{"model":"m","max_tokens":5,"tools":[{"name":"w","input_schema":{"type":"object"},"input_shema":{}}],"messages":[{"role":"user","content":"x"}]}"#;
        assert_eq!(
            err(body),
            "tools.0.input_shema: Extra inputs are not permitted"
        );
        let defined = r#"{"model":"m","max_tokens":5,"tools":[{"type":"computer_20250124","name":"computer","display_width_px":1024,"display_height_px":768}],"messages":[{"role":"user","content":"x"}]}"#;
        assert!(parse_messages_request(defined.as_bytes()).is_ok());
    }

    #[test]
    fn tool_mistakes_are_named() {
        let tool = r#"{"name":"w","input_schema":{"type":"object"}}"#;
        let dup = format!(
            r#"{{"model":"m","max_tokens":5,"tools":[{tool},{tool}],"messages":[{{"role":"user","content":"x"}}]}}"#
        );
        assert!(err(&dup).starts_with("tools.1.name: tool names must be unique"));
        let unknown = format!(
            r#"{{"model":"m","max_tokens":5,"tools":[{tool}],"tool_choice":{{"type":"tool","name":"nope"}},"messages":[{{"role":"user","content":"x"}}]}}"#
        );
        assert!(err(&unknown).starts_with("tool_choice.name: tool `nope`"));
        let orphan = r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"w","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_2","content":"r"}]}]}"#;
        assert!(
            err(orphan).starts_with("messages.2: `tool_use` ids were found without `tool_result`"),
            "{}",
            err(orphan)
        );
        let paired = r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"w","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"r"}]}]}"#;
        assert!(parse_messages_request(paired.as_bytes()).is_ok());
    }

    #[test]
    fn trailing_whitespace_in_prefill_rejected() {
        let e = err(
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Sure "}]}"#,
        );
        assert_eq!(
            e,
            "final assistant content cannot end with trailing whitespace"
        );
    }

    #[test]
    fn at_most_four_cache_breakpoints_with_known_ttls() {
        let cc = r#"{"type":"ephemeral"}"#;
        let block = format!(r#"{{"type":"text","text":"x","cache_control":{cc}}}"#);
        let four = format!(
            r#"{{"model":"m","max_tokens":1,"cache_control":{cc},"system":[{block},{block}],"messages":[{{"role":"user","content":[{block}]}}]}}"#
        );
        assert!(parse_messages_request(four.as_bytes()).is_ok());
        let five = four.replacen(r#""content":["#, &format!(r#""content":[{block},"#), 1);
        assert_eq!(
            err(&five),
            "A maximum of 4 blocks with cache_control may be provided. Found 5."
        );
        let bad_ttl = four.replacen(
            r#""cache_control":{"type":"ephemeral"}"#,
            r#""cache_control":{"type":"ephemeral","ttl":"2h"}"#,
            1,
        );
        assert!(err(&bad_ttl).contains("ttl"), "{}", err(&bad_ttl));
    }
}
