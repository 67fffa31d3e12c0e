//! Token accounting as the Claude API reports it.

use serde::{Deserialize, Serialize};

use crate::context::IterationUsage;

/// `usage` on a `Message`. Every field is always written: SDK types mark them required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    #[serde(default)]
    pub cache_creation_input_tokens: u32,
    #[serde(default)]
    pub cache_read_input_tokens: u32,
    #[serde(default)]
    pub cache_creation: CacheCreation,
    #[serde(default)]
    pub service_tier: ServiceTier,
    /// Present when the reply thought (extended thinking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<OutputTokensDetails>,
    /// Present when the reply was preceded by a compaction, or its request has an advisor:
    /// each step's own counts. A compaction's and an advisor's are not in the top-level
    /// fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<Vec<IterationUsage>>,
    /// Present when the server ran tools for the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_tool_use: Option<ServerToolUsage>,
}

/// `usage.server_tool_use`: the server's tool calls a reply made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerToolUsage {
    pub web_fetch_requests: u32,
    pub web_search_requests: u32,
    /// Milliseconds commands ran in code execution containers: billed (per hour) but not a
    /// field of the API's usage, so never written or read on the wire.
    #[serde(skip)]
    pub code_execution_ms: u64,
}

impl ServerToolUsage {
    /// What one server tool result counts for: a search or a fetch that brought something
    /// back (errors count nothing, as on the Claude API).
    pub fn of_result(result: &crate::content::ContentBlock) -> Self {
        use crate::content::ContentBlock;
        match result {
            ContentBlock::WebSearchToolResult { content, .. } if content.is_array() => Self {
                web_search_requests: 1,
                ..Self::default()
            },
            ContentBlock::WebFetchToolResult { content, .. }
                if content["type"] == "web_fetch_result" =>
            {
                Self {
                    web_fetch_requests: 1,
                    ..Self::default()
                }
            }
            _ => Self::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    pub thinking_tokens: u32,
}

/// The split of cache writes by TTL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheCreation {
    pub ephemeral_5m_input_tokens: u32,
    pub ephemeral_1h_input_tokens: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceTier {
    #[default]
    Standard,
    Priority,
    Batch,
}

/// `usage` on `message_delta`: cumulative totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageDeltaUsage {
    pub output_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<OutputTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<Vec<IterationUsage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_tool_use: Option<ServerToolUsage>,
}

impl From<&Usage> for MessageDeltaUsage {
    fn from(u: &Usage) -> Self {
        Self {
            output_tokens: u.output_tokens,
            input_tokens: Some(u.input_tokens),
            cache_creation_input_tokens: Some(u.cache_creation_input_tokens),
            cache_read_input_tokens: Some(u.cache_read_input_tokens),
            output_tokens_details: u.output_tokens_details,
            iterations: u.iterations.clone(),
            server_tool_use: u.server_tool_use,
        }
    }
}
