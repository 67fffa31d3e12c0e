//! What of a request's history and tools a model reads: a conversation restarts at its
//! latest `compaction` block, and deferred tools stay out of the prompt until a
//! `tool_reference` loads them. Every backend, and count_tokens, sees the same result.

use std::collections::HashSet;

use missive_protocol::content::{ContentBlockParam, ToolResultContent};
use missive_protocol::messages::{MessageContent, MessageParam, Role};
use missive_protocol::tools::{Tool, ToolChoice};

/// How a compaction summary opens when the model reads it, in place of the turns it
/// replaced.
pub const SUMMARY_PREAMBLE: &str =
    "This session continues an earlier conversation. Summary of everything before this point:\n\n";

/// The conversation from its latest compaction on: the summary as a user turn, then what
/// followed it. Compaction blocks with no content (failed compactions) are no-ops.
pub fn from_latest_compaction(messages: Vec<MessageParam>) -> Vec<MessageParam> {
    let latest = messages.iter().enumerate().rev().find_map(|(i, message)| {
        let MessageContent::Blocks(blocks) = &message.content else {
            return None;
        };
        blocks
            .iter()
            .rposition(|b| matches!(b, ContentBlockParam::Compaction { content: Some(c), .. } if !c.is_empty()))
            .map(|j| (i, j))
    });
    let mut messages = match latest {
        None => messages,
        Some((i, j)) => {
            let mut rest = messages.into_iter().skip(i);
            let (role, mut blocks) = rest
                .next()
                .map(|m| (m.role, m.content.into_blocks()))
                .unwrap_or((Role::User, Vec::new()));
            let after = blocks.split_off((j + 1).min(blocks.len()));
            let (summary, cache_control) = match blocks.pop() {
                Some(ContentBlockParam::Compaction {
                    content: Some(summary),
                    cache_control,
                    ..
                }) => (summary, cache_control),
                _ => (String::new(), None),
            };
            let mut restarted = vec![MessageParam {
                role: Role::User,
                content: MessageContent::Blocks(vec![ContentBlockParam::Text {
                    text: format!("{SUMMARY_PREAMBLE}{summary}"),
                    cache_control,
                    citations: None,
                }]),
            }];
            if !after.is_empty() {
                restarted.push(MessageParam {
                    role,
                    content: MessageContent::Blocks(after),
                });
            }
            restarted.extend(rest);
            restarted
        }
    };
    for message in &mut messages {
        if let MessageContent::Blocks(blocks) = &mut message.content {
            blocks.retain(|b| !matches!(b, ContentBlockParam::Compaction { .. }));
        }
    }
    messages.retain(|m| !matches!(&m.content, MessageContent::Blocks(b) if b.is_empty()));
    messages
}

/// The tools the model is shown: every tool not marked `defer_loading`, and each deferred
/// one that a `tool_reference` has loaded, the history calls, or `tool_choice` names.
pub fn loaded_tools(
    tools: Vec<Tool>,
    messages: &[MessageParam],
    tool_choice: Option<&ToolChoice>,
) -> Vec<Tool> {
    if !tools.iter().any(|t| t.defer_loading == Some(true)) {
        return tools;
    }
    let mut loaded: HashSet<&str> = HashSet::new();
    if let Some(ToolChoice::Tool { name, .. }) = tool_choice {
        loaded.insert(name);
    }
    for (_, block) in missive_protocol::walk::blocks(messages) {
        match block {
            ContentBlockParam::ToolUse { name, .. } => {
                loaded.insert(name);
            }
            ContentBlockParam::ToolReference { tool_name, .. } => {
                loaded.insert(tool_name);
            }
            _ => {}
        }
    }
    let loaded: HashSet<String> = loaded.into_iter().map(str::to_owned).collect();
    tools
        .into_iter()
        .filter(|t| t.defer_loading != Some(true) || loaded.contains(&t.name))
        .collect()
}

/// What a model that reads text only sees in place of an image.
pub const IMAGE_PLACEHOLDER: &str = "[An image was here; this model reads text only.]";

/// Replaces every image in `messages` (tool results included) with
/// [`IMAGE_PLACEHOLDER`]; returns how many there were.
pub fn images_as_placeholders(messages: &mut [MessageParam]) -> usize {
    fn replace(blocks: &mut [ContentBlockParam]) -> usize {
        let mut replaced = 0;
        for block in blocks {
            match block {
                ContentBlockParam::Image { cache_control, .. } => {
                    *block = ContentBlockParam::Text {
                        text: IMAGE_PLACEHOLDER.to_owned(),
                        cache_control: cache_control.take(),
                        citations: None,
                    };
                    replaced += 1;
                }
                ContentBlockParam::ToolResult {
                    content: Some(ToolResultContent::Blocks(inner)),
                    ..
                } => replaced += replace(inner),
                _ => {}
            }
        }
        replaced
    }
    messages
        .iter_mut()
        .map(|m| match &mut m.content {
            MessageContent::Blocks(blocks) => replace(blocks),
            MessageContent::Text(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use missive_protocol::parse_messages_request;

    fn messages(json: &str) -> Vec<MessageParam> {
        let tools = r#"[{"name":"search","input_schema":{"type":"object"}},{"name":"weather","input_schema":{"type":"object"}}]"#;
        let body = format!(r#"{{"model":"m","max_tokens":5,"tools":{tools},"messages":{json}}}"#);
        parse_messages_request(body.as_bytes()).unwrap().messages
    }

    #[test]
    fn the_conversation_restarts_at_the_latest_compaction() {
        let restarted = from_latest_compaction(messages(
            r#"[{"role":"user","content":"old"},
                {"role":"assistant","content":[{"type":"compaction","content":"first summary"},{"type":"text","text":"a"}]},
                {"role":"user","content":"more"},
                {"role":"assistant","content":[{"type":"compaction","content":"second summary"},{"type":"text","text":"b"}]},
                {"role":"user","content":"now"}]"#,
        ));
        assert_eq!(restarted.len(), 3);
        assert_eq!(restarted[0].role, Role::User);
        let MessageContent::Blocks(first) = &restarted[0].content else {
            panic!()
        };
        assert_eq!(
            first[0],
            ContentBlockParam::Text {
                text: format!("{SUMMARY_PREAMBLE}second summary"),
                cache_control: None,
                citations: None
            }
        );
        assert_eq!(restarted[1].role, Role::Assistant);
        assert_eq!(restarted[2].content, MessageContent::Text("now".into()));
    }

    #[test]
    fn a_failed_compaction_is_a_no_op() {
        let kept = from_latest_compaction(messages(
            r#"[{"role":"user","content":"q"},
                {"role":"assistant","content":[{"type":"compaction","content":null},{"type":"text","text":"a"}]},
                {"role":"user","content":"r"}]"#,
        ));
        assert_eq!(kept.len(), 3);
        let MessageContent::Blocks(reply) = &kept[1].content else {
            panic!()
        };
        assert_eq!(reply.len(), 1);
    }

    #[test]
    fn images_become_placeholders_wherever_they_stand() {
        let png = r#"{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}"#;
        let mut history = messages(&format!(
            r#"[{{"role":"user","content":[{{"type":"text","text":"look"}},{png}]}},
                {{"role":"assistant","content":[{{"type":"tool_use","id":"toolu_1","name":"search","input":{{}}}}]}},
                {{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_1","content":[{png}]}}]}}]"#
        ));
        assert_eq!(images_as_placeholders(&mut history), 2);
        let text = serde_json::to_string(&history).unwrap();
        assert!(!text.contains("\"image\""), "{text}");
        assert_eq!(text.matches(IMAGE_PLACEHOLDER).count(), 2);
    }

    #[test]
    fn deferred_tools_load_when_referenced() {
        let tool = |name: &str, deferred: bool| {
            serde_json::from_value::<Tool>(serde_json::json!({
                "name": name, "input_schema": {"type": "object"}, "defer_loading": deferred
            }))
            .unwrap()
        };
        let tools = vec![
            tool("search", false),
            tool("weather", true),
            tool("stocks", true),
        ];
        let before = messages(r#"[{"role":"user","content":"hi"}]"#);
        let names = |tools: Vec<Tool>| tools.into_iter().map(|t| t.name).collect::<Vec<_>>();
        assert_eq!(
            names(loaded_tools(tools.clone(), &before, None)),
            ["search"]
        );
        let after = messages(
            r#"[{"role":"user","content":"hi"},
                {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"search","input":{}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"tool_reference","tool_name":"weather"}]}]}]"#,
        );
        assert_eq!(
            names(loaded_tools(tools, &after, None)),
            ["search", "weather"]
        );
    }
}
