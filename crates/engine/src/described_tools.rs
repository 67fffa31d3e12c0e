//! Tools for chat templates that do not render the tool list themselves.
//!
//! - Templates with no tool format at all (Gemma 3, base models, plain chat templates):
//!   Missive describes the tools in the system turn and teaches the same `<tool_call>` form
//!   its parser and grammar know for Hermes models, then renders earlier calls and results
//!   in that form as ordinary turns. Templates that insist on alternating roles get one
//!   turn per role change ([`describe`]).
//! - DeepSeek V3.1, whose template renders calls and results but leaves the tool list to
//!   the caller: the list goes into the system prompt in the layout DeepSeek documents
//!   for the model, and each call's arguments become the JSON text the template joins in
//!   ([`deepseek`]).

use serde_json::{json, Value};

use crate::output::named_call::{NamedForm, FENCE_CLOSE, FENCE_OPEN};
use crate::output::tool_calls::{CLOSE, DEEPSEEK, OPEN};
use crate::prompt::PromptParts;
use crate::template::{python_json, TemplateMessage};

/// Wraps a tool's result in the user turn that carries it back.
pub const RESULT_OPEN: &str = "<tool_response>";
pub const RESULT_CLOSE: &str = "</tool_response>";

/// Rewrites `parts` for a template without tools: the tool list becomes part of the system
/// turn, calls become assistant text, results become user text.
pub(crate) fn describe(parts: &mut PromptParts) {
    let tools = std::mem::take(&mut parts.tools);
    if !tools.is_empty() {
        system_prompt_add(&mut parts.messages, preamble(&tools));
    }
    let mut messages: Vec<TemplateMessage> = Vec::with_capacity(parts.messages.len());
    for mut message in parts.messages.drain(..) {
        if message.role == "tool" {
            message.role = "user".to_owned();
            message.content = format!("{RESULT_OPEN}\n{}\n{RESULT_CLOSE}", message.content);
        }
        for call in std::mem::take(&mut message.tool_calls) {
            let function = call.get("function").unwrap_or(&Value::Null);
            let call = json!({
                "name": function.get("name").unwrap_or(&Value::Null),
                "arguments": function.get("arguments").unwrap_or(&json!({})),
            });
            if !message.content.is_empty() {
                message.content.push('\n');
            }
            message
                .content
                .push_str(&format!("{OPEN}\n{}\n{CLOSE}", python_json(&call)));
        }
        match messages.last_mut() {
            Some(last) if last.role == message.role && message.role != "system" => {
                last.content.push_str("\n\n");
                last.content.push_str(&message.content);
            }
            _ => messages.push(message),
        }
    }
    parts.messages = messages;
}

/// The system text that teaches the call format. One JSON line per tool, in the layout
/// Hermes templates use, so cache breakpoints on tools find them the same way.
fn preamble(tools: &[Value]) -> String {
    let lines: Vec<String> = tools.iter().map(python_json).collect();
    format!(
        "# Tools\n\nYou can call the tools listed below, one JSON line each:\n<tools>\n{}\n</tools>\n\n\
To call a tool, reply with the call alone, in this exact form (one block per call):\n\
{OPEN}\n{{\"name\": \"<tool name>\", \"arguments\": {{<the arguments as a JSON object>}}}}\n{CLOSE}\n\n\
Each result comes back to you in a user turn inside {RESULT_OPEN}{RESULT_CLOSE}.",
        lines.join("\n")
    )
}

/// Rewrites `parts` for DeepSeek's templates (V3.1's or R1's `form`): the tools join the
/// system prompt, and each earlier call's arguments become text (the template
/// concatenates them).
pub(crate) fn deepseek(parts: &mut PromptParts, form: &NamedForm) {
    let tools = std::mem::take(&mut parts.tools);
    if !tools.is_empty() {
        system_prompt_add(&mut parts.messages, deepseek_preamble(&tools, form));
    }
    for message in &mut parts.messages {
        for call in &mut message.tool_calls {
            if let Some(arguments) = call.pointer_mut("/function/arguments") {
                if !arguments.is_string() {
                    *arguments = Value::String(python_json(arguments));
                }
            }
        }
    }
}

/// Adds `text` to the leading system message, or puts one first.
fn system_prompt_add(messages: &mut Vec<TemplateMessage>, text: String) {
    match messages.first_mut().filter(|m| m.role == "system") {
        Some(system) => system.content = format!("{}\n\n{text}", system.content),
        None => messages.insert(
            0,
            TemplateMessage {
                role: "system".to_owned(),
                content: text,
                ..TemplateMessage::default()
            },
        ),
    }
}

/// DeepSeek's documented tool layout: a `### NAME` section per tool with its description
/// and parameter schema, then the call format in the model's own markers.
fn deepseek_preamble(tools: &[Value], form: &NamedForm) -> String {
    let mut text = String::from("## Tools\nYou have access to the following tools:\n");
    for tool in tools {
        let function = tool.get("function").unwrap_or(tool);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let description = function
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let parameters = function.get("parameters").unwrap_or(&Value::Null);
        text.push_str(&format!(
            "\n### {name}\nDescription: {description}\n\nParameters: {}\n",
            python_json(parameters)
        ));
    }
    let (begin, end) = DEEPSEEK.block.unwrap_or_default();
    let (open, close, sep) = (DEEPSEEK.open, DEEPSEEK.close, form.sep);
    let call = match form.fenced {
        true => format!("function{sep}tool_call_name{FENCE_OPEN}tool_call_arguments{FENCE_CLOSE}"),
        false => format!("tool_call_name{sep}tool_call_arguments"),
    };
    text.push_str(&format!(
        "\nIMPORTANT: to use tools, always write exactly this:\n\
{begin}{open}{call}{close}{{additional_tool_calls}}{end}\n\n\
Where:\n\
- `tool_call_name` is the exact name of one of the tools above\n\
- `tool_call_arguments` is a JSON object that follows that tool's Parameters schema\n\
- several calls follow one another directly, with nothing between them"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: &str, content: &str) -> TemplateMessage {
        TemplateMessage {
            role: role.to_owned(),
            content: content.to_owned(),
            ..TemplateMessage::default()
        }
    }

    #[test]
    fn tools_join_the_system_turn_and_calls_and_results_become_alternating_text() {
        let mut call = message("assistant", "Checking.");
        call.tool_calls = vec![json!({"type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}})];
        let mut parts = PromptParts {
            messages: vec![
                message("system", "Be brief."),
                message("user", "Weather in Oslo?"),
                call,
                message("tool", "4 degrees"),
                message("user", "And tomorrow?"),
            ],
            tools: vec![
                json!({"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object"}}}),
            ],
            prefill: None,
        };
        describe(&mut parts);
        assert!(parts.tools.is_empty());
        let roles: Vec<&str> = parts.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        let system = &parts.messages[0].content;
        assert!(system.starts_with("Be brief.\n\n# Tools"));
        assert!(system.contains(
            "\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}}\n"
        ));
        assert_eq!(
            parts.messages[2].content,
            "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"
        );
        assert_eq!(
            parts.messages[3].content,
            "<tool_response>\n4 degrees\n</tool_response>\n\nAnd tomorrow?"
        );
    }

    #[test]
    fn without_tools_only_the_history_is_rewritten() {
        let mut parts = PromptParts {
            messages: vec![message("user", "a"), message("tool", "b")],
            tools: Vec::new(),
            prefill: None,
        };
        describe(&mut parts);
        assert_eq!(parts.messages.len(), 1);
        assert_eq!(parts.messages[0].role, "user");
    }
}
