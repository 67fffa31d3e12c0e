//! Tool definitions, `tool_choice`, `thinking` and `output_config`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::content::CacheControl;

/// A tool definition. Client tools carry `input_schema`; built-in tools (`bash_20250124`…)
/// carry a versioned `type` instead, so both are optional here and checked where used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Empty only for an `mcp_toolset`, which names its server instead.
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    /// Kept out of the prompt until a `tool_reference` block names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defer_loading: Option<bool>,
    /// Example inputs, shown to the model with the tool's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_examples: Option<Vec<Value>>,
    /// Who may call the tool: only `["direct"]` (the model itself) is served here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_callers: Option<Vec<String>>,
    /// Streams the tool's input as it is decoded; every tool does here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eager_input_streaming: Option<bool>,
    /// Fields of Anthropic-defined tool types (`display_width_px`, `max_uses`…), kept as
    /// sent: a tool's `type` says which apply.
    #[serde(flatten)]
    pub settings: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    Auto {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

impl ToolChoice {
    /// `disable_parallel_tool_use: true`: at most one tool call per reply.
    pub fn disables_parallel_tool_use(&self) -> bool {
        match self {
            Self::Auto {
                disable_parallel_tool_use,
            }
            | Self::Any {
                disable_parallel_tool_use,
            }
            | Self::Tool {
                disable_parallel_tool_use,
                ..
            } => *disable_parallel_tool_use == Some(true),
            Self::None => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingConfig {
    Enabled {
        budget_tokens: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display: Option<String>,
    },
    Adaptive {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display: Option<String>,
    },
    Disabled,
}

impl ThinkingConfig {
    /// Thinking was asked for (`enabled` or `adaptive`).
    pub fn is_on(&self) -> bool {
        !matches!(self, Self::Disabled)
    }

    /// The `enabled` form's budget; `adaptive` has none.
    pub fn budget_tokens(&self) -> Option<u32> {
        match self {
            Self::Enabled { budget_tokens, .. } => Some(*budget_tokens),
            _ => None,
        }
    }

    /// `display: "omitted"`: thinking blocks carry a signature but no text.
    pub fn omits_text(&self) -> bool {
        match self {
            Self::Enabled { display, .. } | Self::Adaptive { display } => {
                display.as_deref() == Some("omitted")
            }
            Self::Disabled => false,
        }
    }
}

/// `output_config`: effort and the structured-output format.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<Effort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat>,
}

/// `output_config.effort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effort {
    Low,
    Medium,
    High,
    Xhigh,
    Max,
}

impl Effort {
    /// The thinking budget an effort level stands for on a model that reasons: `max`
    /// leaves the whole reply to thinking.
    pub fn thinking_budget(self, max_tokens: u32) -> u32 {
        let budget = match self {
            Self::Low => 1_024,
            Self::Medium => 4_096,
            Self::High => 16_384,
            Self::Xhigh => 32_768,
            Self::Max => max_tokens,
        };
        budget.min(max_tokens)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputFormat {
    JsonSchema { schema: Value },
}
