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
    /// `clear_at_least`, in tokens: the cut advances in steps of about this many tokens of
    /// results, so it stays put (and the cached prefix with it) between steps.
    pub step_tokens: Option<u32>,
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
    if let Some(step) = how.step_tokens.filter(|s| *s > 0) {
        clear_until = stepped_cut(turns, &calls[..clear_until], how.exclude_tools, step);
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

/// How many of `candidates` (the calls that may be cleared, oldest first) to clear so the
/// cut only moves in steps: after the last call whose result brings the running total of
/// result tokens across a multiple of `step`. The total is estimated at four bytes a token;
/// the server is stateless, so the cut must follow from the history alone.
fn stepped_cut(
    turns: &[Turn],
    candidates: &[(String, String)],
    exclude: &[String],
    step: u32,
) -> usize {
    let sizes: std::collections::HashMap<&str, usize> = turns
        .iter()
        .flat_map(|t| &t.blocks)
        .filter_map(|b| match b {
            ContentBlockParam::ToolResult {
                tool_use_id,
                content,
                ..
            } => Some((tool_use_id.as_str(), result_len(content.as_ref()))),
            _ => None,
        })
        .collect();
    let step = usize::try_from(step)
        .unwrap_or(usize::MAX)
        .saturating_mul(4);
    let mut total = 0usize;
    let mut cut = 0;
    for (i, (id, name)) in candidates.iter().enumerate() {
        if exclude.contains(name) {
            continue;
        }
        let before = total / step;
        total += sizes.get(id.as_str()).copied().unwrap_or(0);
        if total / step > before {
            cut = i + 1;
        }
    }
    cut
}

fn result_len(content: Option<&ToolResultContent>) -> usize {
    match content {
        None => 0,
        Some(ToolResultContent::Text(text)) => text.len(),
        Some(ToolResultContent::Blocks(blocks)) => blocks
            .iter()
            .map(|b| match b {
                ContentBlockParam::Text { text, .. } => text.len(),
                _ => 0,
            })
            .sum(),
    }
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
            step_tokens: None,
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
        // Each result ("result N") is 8 bytes, two tokens by the estimate; steps of four
        // tokens move the cut every second call, and never past the one call kept.
        let cut_after = |calls: usize| {
            let mut turns = agent_turns(calls);
            let how = ClearToolUses {
                keep: 1,
                step_tokens: Some(4),
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
