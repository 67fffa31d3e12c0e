//! From a normalised request to the messages and tools a chat template renders.

use missive_backend::client_tools::{self, ToolKind};
use missive_backend::reasoning::SIGNATURE_PREFIX;
use missive_backend::{BackendError, GenerateRequest};
use missive_protocol::content::{
    CacheControl, ContentBlockParam, DocumentSource, ToolResultContent,
};
use missive_protocol::messages::Role;
use missive_protocol::tools::ToolChoice;
use serde_json::{json, Value};

use crate::output::xml_call::TextParams;
use crate::prompt_cache::Ttl;
use crate::scheduler::ToolParsing;
use crate::template::{TemplateMessage, ToolFormat};

/// The template's inputs for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptParts {
    pub messages: Vec<TemplateMessage>,
    pub tools: Vec<Value>,
    /// Text of a final assistant turn: appended after the generation prompt.
    pub prefill: Option<String>,
}

/// Builds template messages, refusing input this text-only engine cannot read.
/// Marks a system message folded into the next turn, for templates that take a system
/// message only first.
const SYSTEM_NOTE_OPEN: &str = "[System note]\n";
const SYSTEM_NOTE_CLOSE: &str = "\n[End of system note]\n\n";

pub fn prompt_parts(
    request: &GenerateRequest,
    system_anywhere: bool,
) -> Result<PromptParts, BackendError> {
    let mut messages = Vec::with_capacity(request.turns.len() + 1);
    let system = request.system_text();
    if !system.is_empty() {
        messages.push(plain("system", system));
    }
    let prefill = request.prefill();
    let history_len = request.turns.len() - usize::from(prefill.is_some());
    // System messages the template cannot place, waiting for the next user turn.
    let mut notes: Vec<String> = Vec::new();
    for (i, turn) in request.turns[..history_len].iter().enumerate() {
        match turn.role {
            Role::User => {
                let at = messages.len();
                user_messages(&request.model, i, &turn.blocks, &mut messages)?;
                if let Some(message) = messages.get_mut(at).filter(|_| !notes.is_empty()) {
                    message.content.insert_str(0, &fold(&notes));
                    notes.clear();
                }
            }
            Role::Assistant => messages.push(assistant_message(&turn.blocks)),
            // A leading system message is a system prompt to every template.
            Role::System if system_anywhere || messages.is_empty() => {
                messages.push(plain("system", turn.text()))
            }
            Role::System => notes.push(turn.text()),
        }
    }
    if !notes.is_empty() {
        messages.push(plain("user", fold(&notes).trim_end().to_owned()));
    }
    let tools = request
        .tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let ToolKind::Client(schema) = client_tools::kind(tool) else {
                let refused = client_tools::refusal(i, tool, "the embedded engine");
                return Err(BackendError::Unsupported(refused.unwrap_or_default()));
            };
            let mut function = json!({"name": tool.name});
            if let Some(description) = &tool.description {
                function["description"] = json!(description);
            }
            function["parameters"] = schema;
            Ok(json!({"type": "function", "function": function}))
        })
        .collect::<Result<_, _>>()?;
    Ok(PromptParts {
        messages,
        tools,
        prefill,
    })
}

/// How the reply is scanned for tool calls, and the prefill that forces one: for
/// `tool_choice` `any` or `tool` the prompt ends after the opening marker, and the grammar
/// constrains the call from the first token, so the model cannot answer without it.
pub(crate) fn tool_parsing(
    request: &GenerateRequest,
    parts: &PromptParts,
    format: ToolFormat,
) -> ToolParsing {
    if parts.tools.is_empty() {
        return ToolParsing::default();
    }
    let forced_partial = match &request.tool_choice {
        Some(ToolChoice::None) => return ToolParsing::default(),
        None | Some(ToolChoice::Auto { .. }) => None,
        Some(_) => Some(String::new()),
    };
    let single = format.one_call_per_turn()
        || request
            .tool_choice
            .as_ref()
            .is_some_and(ToolChoice::disables_parallel_tool_use);
    // Qwen2.5's slips are JSON, and a bare JSON object is Llama's own form; a model taught
    // XML calls or DeepSeek's markers does not write them.
    let slip_names = match (&forced_partial, format) {
        (None, ToolFormat::Hermes | ToolFormat::Described | ToolFormat::Llama3Json) => {
            request.tools.iter().map(|t| t.name.clone()).collect()
        }
        _ => Vec::new(),
    };
    ToolParsing {
        enabled: true,
        forced_partial,
        single,
        slip_names,
        markers: format.markers(),
        body: format.body(|| text_params(request)),
    }
}

/// Each tool's parameters that take raw text in the XML form: those of type `string`.
fn text_params(request: &GenerateRequest) -> TextParams {
    let tools = request
        .tools
        .iter()
        .filter_map(|tool| {
            let ToolKind::Client(schema) = client_tools::kind(tool) else {
                return None;
            };
            let strings = schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|properties| {
                    properties
                        .iter()
                        .filter(|(_, p)| p.get("type").and_then(Value::as_str) == Some("string"))
                        .map(|(key, _)| key.clone())
                        .collect()
                })
                .unwrap_or_default();
            Some((tool.name.clone(), strings))
        })
        .collect();
    TextParams::new(tools)
}

/// For templates that render one call per assistant turn (Llama 3): an assistant turn with
/// several calls becomes one turn per call, each followed by its result.
pub(crate) fn one_call_per_turn(messages: &mut Vec<TemplateMessage>) {
    if !messages.iter().any(|m| m.tool_calls.len() > 1) {
        return;
    }
    let mut out = Vec::with_capacity(messages.len() * 2);
    let mut rest = std::mem::take(messages).into_iter().peekable();
    while let Some(mut message) = rest.next() {
        if message.tool_calls.len() <= 1 {
            out.push(message);
            continue;
        }
        let calls = std::mem::take(&mut message.tool_calls);
        let mut results = Vec::new();
        while let Some(result) = rest.next_if(|m| m.role == "tool") {
            results.push(result);
        }
        let mut results = results.into_iter();
        for (i, call) in calls.into_iter().enumerate() {
            let first = i == 0;
            out.push(TemplateMessage {
                role: "assistant".to_owned(),
                content: match first {
                    true => std::mem::take(&mut message.content),
                    false => String::new(),
                },
                tool_calls: vec![call],
                reasoning_content: message.reasoning_content.take().filter(|_| first),
                thinking: message.thinking.take().filter(|_| first),
                ..TemplateMessage::default()
            });
            out.extend(results.next());
        }
        // Results beyond the calls stay, in order.
        out.extend(results);
    }
    *messages = out;
}

/// For Mistral's templates, which raise on shorter ones: call ids of nine alphanumeric
/// characters, derived from the Claude ids (the same for a call and its result).
pub(crate) fn mistral_ids(messages: &mut [TemplateMessage]) {
    for message in messages {
        for call in &mut message.tool_calls {
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                call["id"] = json!(nine_char_id(id));
            }
        }
        if let Some(id) = &mut message.tool_call_id {
            *id = nine_char_id(id);
        }
    }
}

/// For templates that require user and assistant turns to alternate around calls and
/// results (Mistral Small 3.2's raises on a user turn right after results): a user
/// message that follows tool results joins the last of them.
pub(crate) fn user_text_joins_results(messages: &mut Vec<TemplateMessage>) {
    let mut out: Vec<TemplateMessage> = Vec::with_capacity(messages.len());
    for message in std::mem::take(messages) {
        match out.last_mut() {
            Some(result) if result.role == "tool" && message.role == "user" => {
                result.content.push_str("\n\n");
                result.content.push_str(&message.content);
            }
            _ => out.push(message),
        }
    }
    *messages = out;
}

/// Nine base-62 digits of `id`'s SHA-256: stable across runs, so a conversation's cached
/// prefix stays the same.
fn nine_char_id(id: &str) -> String {
    use sha2::{Digest, Sha256};
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    Sha256::digest(id.as_bytes())
        .iter()
        .take(9)
        .map(|byte| char::from(DIGITS[usize::from(*byte) % DIGITS.len()]))
        .collect()
}

fn fold(notes: &[String]) -> String {
    notes
        .iter()
        .map(|note| format!("{SYSTEM_NOTE_OPEN}{note}{SYSTEM_NOTE_CLOSE}"))
        .collect()
}

fn plain(role: &str, content: String) -> TemplateMessage {
    TemplateMessage {
        role: role.to_owned(),
        content,
        ..TemplateMessage::default()
    }
}

fn user_messages(
    model: &str,
    turn: usize,
    blocks: &[ContentBlockParam],
    out: &mut Vec<TemplateMessage>,
) -> Result<(), BackendError> {
    let mut text = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = || format!("messages.{turn}.content.{j}");
        match block {
            ContentBlockParam::Text { .. }
            | ContentBlockParam::Image { .. }
            | ContentBlockParam::Document { .. }
            | ContentBlockParam::SearchResult { .. } => {
                text.extend(readable_text(block, model, &at())?);
            }
            ContentBlockParam::ToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } => {
                let mut result = match content {
                    None => String::new(),
                    Some(ToolResultContent::Text(t)) => t.clone(),
                    Some(ToolResultContent::Blocks(inner)) => {
                        let mut parts = Vec::new();
                        for b in inner {
                            match b {
                                ContentBlockParam::ToolReference { tool_name, .. } => {
                                    parts.push(format!("Tool `{tool_name}` is now available."))
                                }
                                // Read as the same blocks at the top of a turn are.
                                _ => parts.extend(readable_text(b, model, &at())?),
                            }
                        }
                        parts.join("\n")
                    }
                };
                if *is_error == Some(true) {
                    result = format!("Error: {result}");
                }
                out.push(TemplateMessage {
                    tool_call_id: Some(tool_use_id.clone()),
                    ..plain("tool", result)
                });
            }
            // Assistant-side blocks in a user turn carry nothing the model should read.
            // Compaction blocks became the summary turn when the request was normalised;
            // a tool reference outside a tool result was refused by validation; the
            // server turned server-tool blocks into tool calls and results before.
            ContentBlockParam::ToolUse { .. }
            | ContentBlockParam::Thinking { .. }
            | ContentBlockParam::RedactedThinking { .. }
            | ContentBlockParam::Compaction { .. }
            | ContentBlockParam::ToolReference { .. }
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
    if !text.is_empty() {
        out.push(plain("user", text.join("\n")));
    }
    Ok(())
}

/// The text of a block a model reads wherever it stands (text, documents, search
/// results); an image is refused, since this engine reads text only. Other blocks have no
/// text to read.
fn readable_text(
    block: &ContentBlockParam,
    model: &str,
    at: &str,
) -> Result<Option<String>, BackendError> {
    match block {
        ContentBlockParam::Text { text, .. } => Ok(Some(text.clone())),
        ContentBlockParam::Image { .. } => Err(BackendError::Unsupported(format!(
            "{at}: model `{model}` does not accept image input; it reads text only"
        ))),
        ContentBlockParam::Document {
            source,
            title,
            context,
            ..
        } => document_text(source, title.as_deref(), context.as_deref(), model, at).map(Some),
        ContentBlockParam::SearchResult { .. } => Ok(block.search_result_prompt_text()),
        _ => Ok(None),
    }
}

fn document_text(
    source: &DocumentSource,
    title: Option<&str>,
    context: Option<&str>,
    model: &str,
    at: &str,
) -> Result<String, BackendError> {
    source.prompt_text(title, context).ok_or_else(|| {
        BackendError::Unsupported(match source {
            DocumentSource::Base64 { media_type, .. } => format!(
                "{at}: model `{model}` cannot read `{media_type}` documents yet; send the text as a `text` document source"
            ),
            _ => format!("{at}: URL and file document sources are not supported by model `{model}` yet"),
        })
    })
}

fn assistant_message(blocks: &[ContentBlockParam]) -> TemplateMessage {
    let mut text = Vec::new();
    let mut thoughts = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block {
            ContentBlockParam::Text { text: t, .. } => text.push(t.clone()),
            // Only a thought this server wrote (its signature was verified) is the model's
            // own; one from elsewhere is left out of the prompt.
            ContentBlockParam::Thinking {
                thinking,
                signature,
            } if signature.starts_with(SIGNATURE_PREFIX) && !thinking.is_empty() => {
                thoughts.push(thinking.clone())
            }
            ContentBlockParam::ToolUse {
                id, name, input, ..
            } => tool_calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": input},
            })),
            _ => {}
        }
    }
    let thought = (!thoughts.is_empty()).then(|| thoughts.join("\n\n"));
    TemplateMessage {
        role: "assistant".to_owned(),
        content: text.join("\n"),
        tool_calls,
        reasoning_content: thought.clone(),
        thinking: thought,
        ..TemplateMessage::default()
    }
}

/// For gpt-oss's template, which renders a call turn's text as its thought and raises when
/// a call turn has both: such a turn's text joins its thought.
pub(crate) fn harmony_call_turns(messages: &mut [TemplateMessage]) {
    for message in messages.iter_mut().filter(|m| !m.tool_calls.is_empty()) {
        if let (Some(thought), false) = (&mut message.thinking, message.content.is_empty()) {
            thought.push_str("\n\n");
            thought.push_str(&std::mem::take(&mut message.content));
        }
    }
}

/// Where a content block ends in the rendered prompt: just after `text` (through the end
/// of its line for a tool or tool call, which templates render as one JSON line), searched
/// among the messages or in the system/tools preamble. Blocks with `cache_control` carry
/// the breakpoint's TTL; the others are where a breakpoint looks back for earlier hits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BlockNeedle {
    pub text: String,
    pub to_line_end: bool,
    pub in_messages: bool,
    pub breakpoint: Option<Ttl>,
}

/// Every content block's needle in prompt order: tools, system blocks, then messages. The
/// automatic top-level `cache_control` marks the last block of the conversation before any
/// prefill.
pub(crate) fn block_needles(request: &GenerateRequest) -> Vec<BlockNeedle> {
    let ttl = |control: Option<&CacheControl>| control.map(|c| Ttl::parse(c.ttl.as_deref()));
    let mut needles = Vec::new();
    for tool in &request.tools {
        needles.push(BlockNeedle {
            text: format!("\"name\": {}", Value::from(tool.name.as_str())),
            to_line_end: true,
            in_messages: false,
            breakpoint: ttl(tool.cache_control.as_ref()),
        });
    }
    for block in &request.system {
        needles.push(BlockNeedle {
            text: block.text.clone(),
            to_line_end: false,
            in_messages: false,
            breakpoint: ttl(block.cache_control.as_ref()),
        });
    }
    let history = request.turns.len() - usize::from(request.prefill().is_some());
    for turn in &request.turns[..history] {
        for block in &turn.blocks {
            if let Some((text, to_line_end)) = block_needle(block) {
                needles.push(BlockNeedle {
                    text,
                    to_line_end,
                    in_messages: true,
                    breakpoint: ttl(block.cache_control()),
                });
            }
        }
    }
    if let Some(control) = &request.cache_control {
        if let Some(last) = needles.iter_mut().rev().find(|n| n.in_messages) {
            last.breakpoint = last.breakpoint.or(ttl(Some(control)));
        }
    }
    needles
}

fn block_needle(block: &ContentBlockParam) -> Option<(String, bool)> {
    match block {
        ContentBlockParam::Text { text, .. } => Some((text.clone(), false)),
        ContentBlockParam::ToolUse { name, .. } => {
            Some((format!("\"name\": {}", Value::from(name.as_str())), true))
        }
        ContentBlockParam::ToolResult {
            content: Some(ToolResultContent::Text(text)),
            ..
        } => Some((text.clone(), false)),
        ContentBlockParam::ToolResult {
            content: Some(ToolResultContent::Blocks(blocks)),
            ..
        } => blocks.iter().rev().find_map(block_needle),
        ContentBlockParam::Document {
            source: DocumentSource::Text { data, .. },
            ..
        } => Some((data.clone(), false)),
        ContentBlockParam::SearchResult { .. } => block
            .search_result_texts()
            .and_then(|texts| texts.last().map(|t| (t.to_string(), false))),
        _ => None,
    }
}

/// A block's end in the rendered prompt (a byte offset), and its breakpoint if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockEnd {
    pub at: usize,
    pub breakpoint: Option<Ttl>,
}

/// The byte offsets in `rendered` where each block ends, in order; blocks not found (a
/// template that rewrites the text) are left out.
pub(crate) fn block_ends(rendered: &str, system: &str, needles: &[BlockNeedle]) -> Vec<BlockEnd> {
    // Messages come after the system prompt; searching past it keeps a message needle
    // from matching the same words in the system text.
    let mut cursor = match system.is_empty() {
        true => 0,
        false => rendered.find(system).map_or(0, |at| at + system.len()),
    };
    let mut ends = Vec::with_capacity(needles.len());
    for needle in needles {
        let from = if needle.in_messages { cursor } else { 0 };
        let Some(at) = rendered[from..].find(&needle.text).map(|i| from + i) else {
            continue;
        };
        let mut end = at + needle.text.len();
        if needle.to_line_end {
            end = rendered[end..]
                .find('\n')
                .map_or(rendered.len(), |i| end + i);
        }
        if needle.in_messages {
            cursor = end;
        }
        ends.push(BlockEnd {
            at: end,
            breakpoint: needle.breakpoint,
        });
    }
    // Tools and system text may render in another order than the Claude API's; the
    // prompt's prefixes are what count.
    ends.sort_by_key(|end| end.at);
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: serde_json::Value) -> GenerateRequest {
        let parsed = missive_protocol::parse_messages_request(body.to_string().as_bytes()).unwrap();
        GenerateRequest::new("m".into(), parsed)
    }

    fn conversation() -> GenerateRequest {
        request(
            json!({"model": "m", "max_tokens": 5, "system": "Be kind.", "messages": [
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": "Hello!"},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Name a colour."}]}),
        )
    }

    fn roles(parts: &PromptParts) -> Vec<&str> {
        parts.messages.iter().map(|m| m.role.as_str()).collect()
    }

    #[test]
    fn a_system_message_renders_where_it_stands_when_the_template_takes_one() {
        let parts = prompt_parts(&conversation(), true).unwrap();
        assert_eq!(
            roles(&parts),
            ["system", "user", "assistant", "system", "user"]
        );
        assert_eq!(parts.messages[3].content, "Answer in French.");
    }

    #[test]
    fn otherwise_it_is_folded_into_the_next_turn_as_a_marked_note() {
        let parts = prompt_parts(&conversation(), false).unwrap();
        assert_eq!(roles(&parts), ["system", "user", "assistant", "user"]);
        assert_eq!(
            parts.messages[3].content,
            "[System note]\nAnswer in French.\n[End of system note]\n\nName a colour."
        );
        // The turns before it render exactly as without it: the cached prefix holds.
        let before = prompt_parts(
            &request(
                json!({"model": "m", "max_tokens": 5, "system": "Be kind.", "messages": [
                {"role": "user", "content": "Hi."},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Name a colour."}]}),
            ),
            false,
        )
        .unwrap();
        assert_eq!(parts.messages[..3], before.messages[..3]);
    }

    #[test]
    fn a_document_in_a_tool_result_reads_as_it_does_at_the_top_of_a_turn() {
        let document = json!({"type": "document", "title": "Notes", "context": "From the wiki",
                              "source": {"type": "text", "media_type": "text/plain", "data": "The sky is green."}});
        let top = prompt_parts(
            &request(json!({"model": "m", "max_tokens": 5, "messages": [
                {"role": "user", "content": [document.clone()]}]})),
            false,
        )
        .unwrap();
        let inside = prompt_parts(
            &request(json!({"model": "m", "max_tokens": 5, "messages": [
                {"role": "user", "content": "Read the notes."},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                              "content": [document]}]}]})),
            false,
        )
        .unwrap();
        let result = inside.messages.last().unwrap();
        assert_eq!(result.role, "tool");
        assert_eq!(result.content, top.messages.last().unwrap().content);
        assert!(
            result.content.contains("The sky is green."),
            "{}",
            result.content
        );
        assert!(result.content.contains("Notes"), "{}", result.content);
    }
}
