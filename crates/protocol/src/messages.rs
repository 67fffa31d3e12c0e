//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: request and response bodies.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::content::{CacheControl, ContentBlock, ContentBlockParam};
use crate::context::{
    CompactionConfig, ContextManagement, ContextManagementResponse, CountTokensContext,
};
use crate::tools::{OutputConfig, OutputFormat, ThinkingConfig, Tool, ToolChoice};
use crate::usage::Usage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
    /// A system message inside the conversation (GA in SDK 2.12's `MessageParam`): text an
    /// operator or harness adds between turns.
    System,
}

/// `content` of a message: a string is shorthand for one text block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Blocks(Vec<ContentBlockParam>),
}

impl MessageContent {
    /// The content as blocks, expanding the string shorthand.
    pub fn into_blocks(self) -> Vec<ContentBlockParam> {
        match self {
            MessageContent::Text(text) => vec![ContentBlockParam::Text {
                text,
                cache_control: None,
                citations: None,
            }],
            MessageContent::Blocks(blocks) => blocks,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageParam {
    pub role: Role,
    pub content: MessageContent,
}

/// `system`: a string or a list of text blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SystemPrompt {
    Text(String),
    Blocks(Vec<SystemBlock>),
}

/// A system text block (`TextBlockParam`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemBlock {
    #[serde(rename = "type")]
    pub kind: SystemBlockType,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemBlockType {
    Text,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// The body of `POST /v1/messages`: every field of SDK 2.14's `MessageCreateParams`, GA
/// and beta. Any other field is refused by name, as the Claude API refuses it. Fields this
/// server degrades or refuses are checked in [`crate::parse`]; `docs/compatibility.md`
/// says what each one does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    pub messages: Vec<MessageParam>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemPrompt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// Deprecated beta spelling of `output_config.format`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<OutputFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_management: Option<ContextManagement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction: Option<CompactionConfig>,
    // Degraded or refused by `parse::check_unsupported`, kept as sent so errors name them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_geo: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallbacks: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_credit_token: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<Value>,
}

/// The body of `POST /v1/messages/count_tokens`: the prompt-shaping fields of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountTokensRequest {
    pub model: String,
    pub messages: Vec<MessageParam>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemPrompt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<OutputFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_management: Option<ContextManagement>,
    /// Accepted and ignored, as the Claude API does: the count is of `messages` as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction: Option<CompactionConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_policy: Option<Value>,
}

impl CountTokensRequest {
    /// The equivalent Messages request, so counting renders exactly what generation would.
    pub fn into_messages_request(self) -> MessagesRequest {
        MessagesRequest {
            model: self.model,
            max_tokens: 1,
            messages: self.messages,
            system: self.system,
            metadata: None,
            stop_sequences: None,
            stream: None,
            temperature: None,
            top_p: None,
            top_k: None,
            tools: self.tools,
            tool_choice: self.tool_choice,
            thinking: self.thinking,
            output_config: self.output_config,
            output_format: self.output_format,
            cache_control: self.cache_control,
            service_tier: None,
            context_management: self.context_management,
            compaction: None,
            container: None,
            mcp_servers: self.mcp_servers,
            diagnostics: None,
            inference_geo: None,
            speed: self.speed,
            billing_policy: self.billing_policy,
            fallbacks: None,
            fallback_credit_token: None,
            thread: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountTokensResponse {
    pub input_tokens: u32,
    /// The count before `context_management` edits, when the request had any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_management: Option<CountTokensContext>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    PauseTurn,
    /// A compaction request, or a compaction that paused the reply.
    Compaction,
    Refusal,
    ModelContextWindowExceeded,
}

/// The constant tags of a `Message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageTag {
    #[default]
    Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssistantRole {
    #[default]
    Assistant,
}

/// The response `Message`. Nullable fields are always written, as the SDK types require.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: MessageTag,
    pub role: AssistantRole,
    pub model: String,
    pub content: Vec<ContentBlock>,
    pub stop_reason: Option<StopReason>,
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub stop_details: Option<serde_json::Value>,
    #[serde(default)]
    pub container: Option<serde_json::Value>,
    pub usage: Usage,
    /// The context-management edits that changed the prompt, when the request asked for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_management: Option<ContextManagementResponse>,
}

impl Message {
    /// A message with no content yet, as `message_start` carries it.
    pub fn started(id: String, model: String, usage: Usage) -> Self {
        Self {
            id,
            kind: MessageTag::Message,
            role: AssistantRole::Assistant,
            model,
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            stop_details: None,
            container: None,
            usage,
            context_management: None,
        }
    }
}
