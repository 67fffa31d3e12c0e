//! The context-management edits that cut a conversation without a model: clearing old
//! tool results (and inputs) and old thinking. They change only what the model reads;
//! when an edit applies, and what it saved, is decided by whoever can count tokens.

use missive_protocol::content::{ContentBlockParam, ToolResultContent};
use missive_protocol::context::ClearToolInputs;
use missive_protocol::messages::Role;

use crate::request::Turn;

/// What a cleared tool result reads as.
pub const CLEARED_RESULT: &str = "[This tool result was cleared to save context.]";

/// Tool uses kept when `keep` is not given.
pub const DEFAULT_KEEP_TOOL_USES: u32 = 3;
/// Assistant turns whose thinking is kept when `keep` is not given.
pub const DEFAULT_KEEP_THINKING_TURNS: u32 = 1;

/// How `clear_tool_uses` cuts.
#[derive(Debug, Clone, Default)]
pub struct ClearToolUses<'a> {
    pub keep: u32,
    pub exclude_tools: &'a [String],
    pub clear_inputs: Option<&'a ClearToolInputs>,
    /// The cut advances this many tool uses at a time (from `clear_at_least`), so it stays
    /// put, and the cached prefix with it, between steps.
    pub step_uses: Option<usize>,
}

/// Tool calls in the history, in order.
pub fn tool_use_count(turns: &[Turn]) -> u32 {
    let n = turns
        .iter()
        .filter(|t| t.role == Role::Assistant)
        .flat_map(|t| &t.blocks)
        .filter(|b| matches!(b, ContentBlockParam::ToolUse { .. }))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Replaces the results of all but the latest `keep` tool calls (those of excluded tools
/// are never touched) with [`CLEARED_RESULT`], and their inputs with `{}` where asked.
/// Returns how many calls were cleared that were not already.
pub fn clear_tool_uses(turns: &mut [Turn], how: &ClearToolUses<'_>) -> u32 {
    let calls: Vec<(String, String)> = turns
        .iter()
        .filter(|t| t.role == Role::Assistant)
        .flat_map(|t| &t.blocks)
        .filter_map(|b| match b {
            ContentBlockParam::ToolUse { id, name, .. } => Some((id.clone(), name.clone())),
            _ => None,
        })
        .collect();
    let keep = usize::try_from(how.keep).unwrap_or(usize::MAX);
    let mut clear_until = calls.len().saturating_sub(keep);
    if let Some(step) = how.step_uses.filter(|s| *s > 1) {
        clear_until = stepped_cut(&calls[..clear_until], how.exclude_tools, step);
    }
    let doomed: std::collections::HashMap<String, String> = calls
        .into_iter()
        .take(clear_until)
        .filter(|(_, name)| !how.exclude_tools.contains(name))
        .collect();
    let mut cleared = 0;
    for turn in turns.iter_mut() {
        for block in &mut turn.blocks {
            match block {
                ContentBlockParam::ToolResult {
                    tool_use_id,
                    content,
                    ..
                } if doomed.contains_key(tool_use_id.as_str()) => {
                    let placeholder = ToolResultContent::Text(CLEARED_RESULT.to_owned());
                    if content.as_ref() != Some(&placeholder) {
                        *content = Some(placeholder);
                        cleared += 1;
                    }
                }
                ContentBlockParam::ToolUse {
                    id, name, input, ..
                } if doomed.contains_key(id.as_str())
                    && how.clear_inputs.is_some_and(|c| c.clears(name)) =>
                {
                    *input = serde_json::json!({});
                }
                _ => {}
            }
        }
    }
    cleared
}

/// How many of `candidates` (the calls that may be cleared, oldest first) to clear so that
/// the cut moves only in steps of `step` clearable calls. The server is stateless: the cut
/// follows from the history alone, and stays where it was until a step fills.
fn stepped_cut(candidates: &[(String, String)], exclude: &[String], step: usize) -> usize {
    let mut clearable = 0;
    let mut cut = 0;
    for (i, (_, name)) in candidates.iter().enumerate() {
        if exclude.contains(name) {
            continue;
        }
        clearable += 1;
        if clearable % step == 0 {
            cut = i + 1;
        }
    }
    cut
}

/// Drops thinking from all but the latest `keep` assistant turns (`None`: keep all).
/// Returns how many turns lost thinking.
pub fn clear_thinking(turns: &mut [Turn], keep: Option<u32>) -> u32 {
    let Some(keep) = keep else {
        return 0;
    };
    let is_thinking = |b: &ContentBlockParam| {
        matches!(
            b,
            ContentBlockParam::Thinking { .. } | ContentBlockParam::RedactedThinking { .. }
        )
    };
    let assistant: Vec<usize> = turns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.role == Role::Assistant && t.blocks.iter().any(is_thinking))
        .map(|(i, _)| i)
        .collect();
    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
    let clear = assistant.len().saturating_sub(keep);
    for &i in &assistant[..clear] {
        turns[i].blocks.retain(|b| !is_thinking(b));
    }
    u32::try_from(clear).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GenerateRequest;
    use missive_protocol::parse_messages_request;

    fn agent_turns(calls: usize) -> Vec<Turn> {
        let mut messages = vec![serde_json::json!({"role":"user","content":"go"})];
        for i in 0..calls {
            let name = if i % 2 == 0 { "Read" } else { "Bash" };
            messages.push(serde_json::json!({"role":"assistant","content":[
                {"type":"thinking","thinking":format!("step {i}"),"signature":"sig"},
                {"type":"tool_use","id":format!("toolu_{i}"),"name":name,"input":{"arg":i}}]}));
            messages.push(serde_json::json!({"role":"user","content":[
                {"type":"tool_result","tool_use_id":format!("toolu_{i}"),"content":format!("result {i}")}]}));
        }
        let body = serde_json::json!({"model":"m","max_tokens":5,"messages":messages});
        let request = parse_messages_request(body.to_string().as_bytes()).unwrap();
        GenerateRequest::new("m".into(), request).turns
    }

    fn results(turns: &[Turn]) -> Vec<String> {
        turns
            .iter()
            .flat_map(|t| &t.blocks)
            .filter_map(|b| match b {
                ContentBlockParam::ToolResult {
                    content: Some(ToolResultContent::Text(t)),
                    ..
                } => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn all_but_the_latest_tool_results_are_cleared_and_excluded_tools_kept() {
        let mut turns = agent_turns(6);
        let exclude = vec!["Bash".to_owned()];
        let inputs = ClearToolInputs::All(true);
        let how = ClearToolUses {
            keep: 2,
            exclude_tools: &exclude,
            clear_inputs: Some(&inputs),
            step_uses: None,
        };
        assert_eq!(clear_tool_uses(&mut turns, &how), 2);
        let got = results(&turns);
        assert_eq!(
            got,
            [
                CLEARED_RESULT,
                "result 1",
                CLEARED_RESULT,
                "result 3",
                "result 4",
                "result 5"
            ]
        );
        // Clearing again clears nothing new: the prompt's prefix stays the same.
        assert_eq!(clear_tool_uses(&mut turns, &how), 0);
        assert_eq!(tool_use_count(&turns), 6);
        let first_input = turns[1].blocks.iter().find_map(|b| match b {
            ContentBlockParam::ToolUse { input, .. } => Some(input.clone()),
            _ => None,
        });
        assert_eq!(first_input, Some(serde_json::json!({})));
    }

    #[test]
    fn with_clear_at_least_the_cut_moves_in_steps_so_the_prefix_holds_between_them() {
        // Steps of two calls: the cut moves every second call, never past the one kept.
        let cut_after = |calls: usize| {
            let mut turns = agent_turns(calls);
            let how = ClearToolUses {
                keep: 1,
                step_uses: Some(2),
                ..ClearToolUses::default()
            };
            clear_tool_uses(&mut turns, &how);
            results(&turns)
                .iter()
                .filter(|r| *r == CLEARED_RESULT)
                .count()
        };
        let cuts: Vec<usize> = (1..=8).map(cut_after).collect();
        assert_eq!(cuts, [0, 0, 2, 2, 4, 4, 6, 6]);
    }

    #[test]
    fn thinking_is_kept_only_in_the_latest_turns() {
        let mut turns = agent_turns(4);
        assert_eq!(clear_thinking(&mut turns, None), 0);
        assert_eq!(clear_thinking(&mut turns, Some(1)), 3);
        let thinking_turns = turns
            .iter()
            .filter(|t| {
                t.blocks
                    .iter()
                    .any(|b| matches!(b, ContentBlockParam::Thinking { .. }))
            })
            .count();
        assert_eq!(thinking_turns, 1);
    }
}
