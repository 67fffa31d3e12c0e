//! Context management (`context_management.edits`) and compaction: what a request asks to
//! have cut from its history before the model reads it, and what the response reports.

use serde::{Deserialize, Serialize};

/// `context_management`: edits applied, in order, before the prompt is rendered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextManagement {
    #[serde(default)]
    pub edits: Vec<ContextEdit>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ContextEdit {
    /// Replaces the results (and optionally inputs) of older tool calls with a placeholder.
    #[serde(rename = "clear_tool_uses_20250919")]
    ClearToolUses {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trigger: Option<Trigger>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep: Option<Count>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clear_at_least: Option<Count>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exclude_tools: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clear_tool_inputs: Option<ClearToolInputs>,
    },
    /// Drops thinking blocks from all but the latest assistant turns.
    #[serde(rename = "clear_thinking_20251015")]
    ClearThinking {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep: Option<ThinkingKeep>,
    },
    /// Past its trigger, summarises the conversation into a `compaction` block.
    #[serde(rename = "compact_20260112")]
    Compact {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instructions: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pause_after_compaction: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trigger: Option<Trigger>,
    },
}

impl ContextEdit {
    /// The edit's `type` as the wire spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ClearToolUses { .. } => "clear_tool_uses_20250919",
            Self::ClearThinking { .. } => "clear_thinking_20251015",
            Self::Compact { .. } => "compact_20260112",
        }
    }
}

/// `{"type": "input_tokens" | "tool_uses", "value": N}`: when an edit applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Trigger {
    InputTokens(u32),
    ToolUses(u32),
}

/// `keep` and `clear_at_least`: `{"type": "tool_uses" | "input_tokens", "value": N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Count {
    ToolUses(u32),
    InputTokens(u32),
}

impl Count {
    pub fn value(self) -> u32 {
        match self {
            Self::ToolUses(n) | Self::InputTokens(n) => n,
        }
    }
}

/// `clear_tool_inputs`: all inputs, none, or those of the named tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClearToolInputs {
    All(bool),
    Tools(Vec<String>),
}

impl ClearToolInputs {
    pub fn clears(&self, tool: &str) -> bool {
        match self {
            Self::All(all) => *all,
            Self::Tools(names) => names.iter().any(|n| n == tool),
        }
    }
}

/// `clear_thinking`'s `keep`: `"all"`, `{"type": "all"}` or `{"type": "thinking_turns", "value": N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ThinkingKeep {
    Word(AllWord),
    Turns(ThinkingTurns),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllWord {
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum ThinkingTurns {
    All,
    ThinkingTurns(u32),
}

impl ThinkingKeep {
    /// How many of the latest assistant turns keep their thinking; `None`: all of them.
    pub fn turns(self) -> Option<u32> {
        match self {
            Self::Word(AllWord::All) | Self::Turns(ThinkingTurns::All) => None,
            Self::Turns(ThinkingTurns::ThinkingTurns(n)) => Some(n),
        }
    }
}

/// The top-level `compaction` parameter: the request is a compaction request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CompactionConfig {
    Summarize {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instructions: Option<String>,
    },
}

impl CompactionConfig {
    /// The instructions, when they say anything (blank counts as absent).
    pub fn instructions(&self) -> Option<&str> {
        let Self::Summarize { instructions } = self;
        instructions.as_deref().filter(|s| !s.trim().is_empty())
    }
}

/// `context_management` on a response: the edits that changed the prompt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextManagementResponse {
    pub applied_edits: Vec<AppliedEdit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AppliedEdit {
    #[serde(rename = "clear_tool_uses_20250919")]
    ClearToolUses {
        cleared_input_tokens: u32,
        cleared_tool_uses: u32,
    },
    #[serde(rename = "clear_thinking_20251015")]
    ClearThinking {
        cleared_input_tokens: u32,
        cleared_thinking_turns: u32,
    },
}

/// `context_management` on a count_tokens response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountTokensContext {
    pub original_input_tokens: u32,
}

/// One entry of `usage.iterations`: a sampling step of the reply, the compaction that
/// preceded it, or an advisor's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IterationUsage {
    #[serde(rename = "type")]
    pub kind: IterationKind,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cache_creation_input_tokens: u32,
    pub cache_read_input_tokens: u32,
    /// The cache writes by TTL.
    #[serde(default)]
    pub cache_creation: crate::usage::CacheCreation,
    /// The model that sampled, where it is not the reply's (an advisor's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IterationKind {
    Message,
    Compaction,
    /// The advisor tool's sub-inference, on its own model: not in the top-level counts.
    AdvisorMessage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_codes_edits_parse() {
        let config: ContextManagement = serde_json::from_str(
            r#"{"edits":[{"type":"clear_thinking_20251015","keep":"all"},
            {"type":"clear_tool_uses_20250919","trigger":{"type":"input_tokens","value":30000},
             "keep":{"type":"tool_uses","value":3},"clear_at_least":{"type":"input_tokens","value":5000},
             "exclude_tools":["Read"],"clear_tool_inputs":["Bash"]},
            {"type":"compact_20260112","trigger":{"type":"input_tokens","value":50000},"instructions":"Keep the code word."}]}"#,
        )
        .unwrap();
        assert_eq!(config.edits.len(), 3);
        let ContextEdit::ClearThinking { keep: Some(keep) } = config.edits[0] else {
            panic!("{:?}", config.edits[0])
        };
        assert_eq!(keep.turns(), None);
        let ContextEdit::ClearToolUses {
            trigger,
            clear_tool_inputs: Some(inputs),
            ..
        } = &config.edits[1]
        else {
            panic!("{:?}", config.edits[1])
        };
        assert_eq!(*trigger, Some(Trigger::InputTokens(30_000)));
        assert!(inputs.clears("Bash") && !inputs.clears("Read"));
        let keep: ThinkingKeep =
            serde_json::from_str(r#"{"type":"thinking_turns","value":2}"#).unwrap();
        assert_eq!(keep.turns(), Some(2));
    }

    #[test]
    fn an_unknown_edit_type_is_an_error() {
        let err = serde_json::from_str::<ContextManagement>(
            r#"{"edits":[{"type":"clear_everything_20990101"}]}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("clear_everything_20990101"),
            "{err}"
        );
    }
}
