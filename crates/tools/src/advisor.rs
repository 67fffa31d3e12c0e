//! The advisor (`advisor_20260301`): mid-reply, the model asks a second model for advice.
//!
//! The advisor reads the conversation as the model has it (system prompt, tools, turns, and
//! what this reply has written so far) and writes guidance, which the model reads as the
//! tool's result. It runs on the model the tool names, within the tool's `max_tokens`. Its
//! tokens are its own: an `advisor_message` step of `usage.iterations`, billed at its
//! model's price ([`crate::Meter`]) and left out of the reply's top-level counts.

use missive_backend::answer::Answer;
use missive_backend::{Backend, BackendError, FinishReason, GenerateRequest, Turn};
use missive_protocol::content::{CacheControl, ContentBlock, ContentBlockParam};
use missive_protocol::context::{IterationKind, IterationUsage};
use missive_protocol::messages::Role;
use missive_protocol::tools::{Tool, ToolChoice};
use serde_json::{json, Value};

use crate::spec::{Domains, Kind, ServerTool};
use crate::Outcome;

pub const TYPE: &str = "advisor_20260301";
const NAME: &str = "advisor";

/// The advice's length when the tool sets none: enough for guidance, and a bound on a
/// small model that repeats itself.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// What the advisor is asked, after the conversation.
const ASK: &str = "You are the advisor. The assistant in the conversation above has paused \
its reply to ask for your advice. Read the conversation, then write brief, concrete guidance \
for the assistant's next step: what to do, what to check, what to avoid. Write to the \
assistant, not to the user. Do not write the assistant's reply and do not call tools.";

/// What the model reads after advice that reached its token limit.
const TRUNCATED: &str = "[The advice was cut off at its token limit.]";

/// The tool's settings, checked: named `advisor`, a `model`, and optionally `max_tokens`,
/// `max_uses` and `caching`.
pub fn parse(index: usize, tool: &Tool) -> Result<ServerTool, String> {
    let at = |field: &str| format!("tools.{index}.{field}");
    if tool.name != NAME {
        return Err(format!("{}: Input should be '{NAME}'", at("name")));
    }
    let settings = &tool.settings;
    if let Some(key) = settings
        .keys()
        .find(|k| !matches!(k.as_str(), "model" | "max_tokens" | "max_uses" | "caching"))
    {
        return Err(format!("{}: Extra inputs are not permitted", at(key)));
    }
    let model = match settings.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        None | Some(Value::Null) => return Err(format!("{}: Field required", at("model"))),
        Some(_) => return Err(format!("{}: Input should be a valid string", at("model"))),
    };
    let count = |key: &str| crate::spec::count(settings, index, key);
    let caching = match settings.get("caching") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            serde_json::from_value::<CacheControl>(value.clone())
                .ok()
                .filter(|c| c.kind == "ephemeral")
                .ok_or_else(|| {
                    format!(
                        "{}: Input should be a cache control ({{\"type\": \"ephemeral\"}}, with an optional `ttl`)",
                        at("caching")
                    )
                })?,
        ),
    };
    Ok(ServerTool {
        name: NAME.to_owned(),
        kind: Kind::Advisor {
            model,
            max_tokens: count("max_tokens")?,
            caching,
        },
        max_uses: count("max_uses")?,
        domains: Domains::default(),
    })
}

/// The client tool the model calls: no input, since the advisor reads the conversation.
pub fn definition() -> (&'static str, Value) {
    (
        "Ask the advisor, a second model, for advice on what to do next. It reads the whole conversation, so the call takes no input. Use it when the task is hard or you are unsure how to go on.",
        json!({"type": "object", "properties": {}, "additionalProperties": false}),
    )
}

/// The advisor's request: the conversation so far and what this reply has written, then
/// the ask. With `caching`, a breakpoint ends the conversation, so the next call of the
/// same conversation reads it from the cache.
pub fn request(
    conversation: &GenerateRequest,
    said: &str,
    advisor: &str,
    max_tokens: u32,
    budgeted: bool,
    caching: Option<&CacheControl>,
) -> GenerateRequest {
    let mut request = GenerateRequest {
        model: advisor.to_owned(),
        max_tokens,
        stop_sequences: Vec::new(),
        tool_choice: (!conversation.tools.is_empty()).then_some(ToolChoice::None),
        thinking: None,
        effort: None,
        output_format: None,
        cache_control: None,
        betas: Vec::new(),
        passthrough: serde_json::Map::new(),
        ..conversation.clone()
    };
    if !said.is_empty() {
        let said = ContentBlockParam::Text {
            text: said.to_owned(),
            cache_control: None,
            citations: None,
        };
        request.push_block(Role::Assistant, said);
    }
    if let Some(caching) = caching {
        mark_end(&mut request.turns, caching);
    }
    let mut ask = ASK.to_owned();
    // A model told not to call tools may not be shown them (the embedded engine hides
    // them): their names at least say what the assistant can do.
    let tools: Vec<&str> = conversation
        .tools
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| *name != NAME)
        .collect();
    if !tools.is_empty() {
        ask.push_str(&format!(" The assistant's tools: {}.", tools.join(", ")));
    }
    if budgeted {
        ask.push_str(&format!(" Keep your advice within {max_tokens} tokens."));
    }
    let ask = ContentBlockParam::Text {
        text: ask,
        cache_control: None,
        citations: None,
    };
    request.push_block(Role::User, ask);
    request
}

/// Puts a cache breakpoint on the conversation's last block, where that block can carry
/// one (text, a tool result, a document, an image).
fn mark_end(turns: &mut [Turn], caching: &CacheControl) {
    let Some(block) = turns.last_mut().and_then(|t| t.blocks.last_mut()) else {
        return;
    };
    match block {
        ContentBlockParam::Text { cache_control, .. }
        | ContentBlockParam::ToolResult { cache_control, .. }
        | ContentBlockParam::Document { cache_control, .. }
        | ContentBlockParam::Image { cache_control, .. } => {
            *cache_control = Some(caching.clone());
        }
        _ => {}
    }
}

/// Asks `advisor` and turns its answer into the tool's result, and its usage into an
/// `advisor_message` step.
pub async fn run(
    advisor: &dyn Backend,
    conversation: &GenerateRequest,
    said: &str,
    max_tokens: Option<u32>,
    caching: Option<&CacheControl>,
    id: &str,
) -> (Outcome, Option<IterationUsage>) {
    let descriptor = advisor.descriptor();
    let cap = max_tokens
        .unwrap_or(DEFAULT_MAX_TOKENS)
        .min(descriptor.max_output_tokens);
    let request = request(
        conversation,
        said,
        &descriptor.id,
        cap,
        max_tokens.is_some(),
        caching,
    );
    let answer = match advisor.generate(request).await {
        Ok(events) => missive_backend::answer::read(events).await,
        Err(err) => Err(err),
    };
    match answer {
        Ok(answer) => {
            let mut step = answer
                .prompt
                .step(IterationKind::AdvisorMessage, answer.output_tokens);
            step.model = Some(descriptor.id.clone());
            (advice(&answer, id), Some(step))
        }
        Err(err) => {
            tracing::warn!(error = %err, model = %descriptor.id, "the advisor failed");
            (error(id, error_code(&err)), None)
        }
    }
}

/// The result of an answer: the advice as written, and what the model reads.
fn advice(answer: &Answer, id: &str) -> Outcome {
    let stop_reason = match &answer.reason {
        FinishReason::MaxTokens | FinishReason::ContextWindowExceeded => "max_tokens",
        FinishReason::StopSequence(_) => "stop_sequence",
        FinishReason::ToolUse => "tool_use",
        _ => "end_turn",
    };
    let content = json!({
        "type": "advisor_result",
        "text": answer.text.trim(),
        "stop_reason": stop_reason,
    });
    let (for_model, _) = as_read(&content);
    Outcome {
        result: ContentBlock::AdvisorToolResult {
            tool_use_id: id.to_owned(),
            content,
        },
        for_model,
        is_error: false,
        usage: Default::default(),
    }
}

/// What the model reads of an `advisor_tool_result`'s content, and whether it is an error:
/// the advice, with a note when it was cut short. Redacted advice was encrypted by the
/// server that gave it, and cannot be read here.
pub fn as_read(content: &Value) -> (String, bool) {
    match content["type"].as_str() {
        Some("advisor_result") => {
            let mut text = content["text"].as_str().unwrap_or_default().to_owned();
            if content["stop_reason"] == "max_tokens" {
                text.push_str("\n\n");
                text.push_str(TRUNCATED);
            }
            (text, false)
        }
        Some("advisor_redacted_result") => (
            "[The advice was redacted by the server that gave it.]".to_owned(),
            false,
        ),
        _ => (
            format!(
                "The advisor could not answer: {}",
                content["error_code"].as_str().unwrap_or("unavailable")
            ),
            true,
        ),
    }
}

fn error_code(err: &BackendError) -> &'static str {
    match err {
        BackendError::PromptTooLong { .. } => "prompt_too_long",
        BackendError::QueueFull { .. } | BackendError::ShuttingDown => "overloaded",
        BackendError::Upstream { status: 429, .. } => "too_many_requests",
        BackendError::Upstream { status: 529, .. } => "overloaded",
        _ => "unavailable",
    }
}

/// A call that could not be answered, as an `advisor_tool_result_error` with its code.
pub fn error(tool_use_id: &str, code: &str) -> Outcome {
    Outcome {
        result: ContentBlock::AdvisorToolResult {
            tool_use_id: tool_use_id.to_owned(),
            content: json!({"type": "advisor_tool_result_error", "error_code": code}),
        },
        for_model: format!("The advisor could not answer: {code}"),
        is_error: true,
        usage: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use missive_protocol::MessagesRequest;

    fn conversation() -> GenerateRequest {
        let request: MessagesRequest = serde_json::from_value(json!({
            "model": "m", "max_tokens": 100, "stop_sequences": ["STOP"],
            "messages": [{"role": "user", "content": "Convert 3 miles."}],
            "tools": [{"name": "advisor", "input_schema": {"type": "object"}},
                      {"name": "get_weather", "input_schema": {"type": "object"}}],
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        }))
        .unwrap();
        GenerateRequest::new("m".into(), request)
    }

    fn text(block: &ContentBlockParam) -> &str {
        match block {
            ContentBlockParam::Text { text, .. } => text,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_advisor_reads_the_conversation_what_was_said_then_the_ask() {
        let caching = CacheControl {
            kind: "ephemeral".into(),
            ttl: None,
        };
        let asked = request(
            &conversation(),
            "Let me ask.",
            "adv",
            40,
            true,
            Some(&caching),
        );
        assert_eq!(asked.model, "adv");
        assert_eq!(asked.max_tokens, 40);
        assert!(asked.stop_sequences.is_empty() && asked.output_format.is_none());
        assert_eq!(asked.tool_choice, Some(ToolChoice::None));
        let roles: Vec<Role> = asked.turns.iter().map(|t| t.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::User]);
        let said = &asked.turns[1].blocks[0];
        assert_eq!(text(said), "Let me ask.");
        // The breakpoint ends the conversation, before the ask.
        assert_eq!(said.cache_control(), Some(&caching));
        let ask = text(&asked.turns[2].blocks[0]);
        assert!(ask.starts_with("You are the advisor."), "{ask}");
        assert!(
            ask.ends_with(
                " The assistant's tools: get_weather. Keep your advice within 40 tokens."
            ),
            "{ask}"
        );
        assert_eq!(asked.turns[2].blocks[0].cache_control(), None);

        // Nothing said: the ask follows the user's turn, in it; no budget unless set.
        let asked = request(&conversation(), "", "adv", 40, false, None);
        assert_eq!(asked.turns.len(), 1);
        assert_eq!(text(&asked.turns[0].blocks[0]), "Convert 3 miles.");
        assert_eq!(
            text(&asked.turns[0].blocks[1]),
            format!("{ASK} The assistant's tools: get_weather.")
        );
    }

    #[test]
    fn settings_are_checked_and_named() {
        let parse = |tool: Value| parse(2, &serde_json::from_value(tool).unwrap());
        let tool = parse(json!({"type": TYPE, "name": "advisor", "model": "big",
            "max_tokens": 300, "max_uses": 2, "caching": {"type": "ephemeral", "ttl": "1h"}}))
        .unwrap();
        assert_eq!(tool.max_uses, Some(2));
        let Kind::Advisor {
            model,
            max_tokens,
            caching,
        } = tool.kind
        else {
            panic!("{:?}", tool.kind)
        };
        assert_eq!((model.as_str(), max_tokens), ("big", Some(300)));
        assert_eq!(caching.unwrap().ttl.as_deref(), Some("1h"));
        for (tool, refusal) in [
            (
                json!({"type": TYPE, "name": "advisor"}),
                "tools.2.model: Field required",
            ),
            (
                json!({"type": TYPE, "name": "advisor", "model": 7}),
                "tools.2.model: Input should be a valid string",
            ),
            (
                json!({"type": TYPE, "name": "advise", "model": "big"}),
                "tools.2.name: Input should be 'advisor'",
            ),
            (
                json!({"type": TYPE, "name": "advisor", "model": "big", "max_uses": 0}),
                "tools.2.max_uses: Input should be greater than or equal to 1",
            ),
            (
                json!({"type": TYPE, "name": "advisor", "model": "big", "effort": "high"}),
                "tools.2.effort: Extra inputs are not permitted",
            ),
        ] {
            assert_eq!(parse(tool).unwrap_err(), refusal);
        }
        let bad_caching = parse(
            json!({"type": TYPE, "name": "advisor", "model": "big", "caching": {"type": "always"}}),
        );
        assert!(bad_caching.unwrap_err().starts_with("tools.2.caching: "));
    }

    #[test]
    fn the_model_reads_advice_with_a_note_when_cut_and_errors_by_code() {
        let cut = json!({"type": "advisor_result", "text": "Check", "stop_reason": "max_tokens"});
        assert_eq!(as_read(&cut), (format!("Check\n\n{TRUNCATED}"), false));
        let whole = json!({"type": "advisor_result", "text": "Check.", "stop_reason": "end_turn"});
        assert_eq!(as_read(&whole), ("Check.".to_owned(), false));
        let failed = json!({"type": "advisor_tool_result_error", "error_code": "overloaded"});
        assert_eq!(
            as_read(&failed),
            ("The advisor could not answer: overloaded".to_owned(), true)
        );
    }
}
