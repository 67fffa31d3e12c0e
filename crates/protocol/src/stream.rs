//! Server-sent events of a streamed message, and their SSE framing.

use serde::{Deserialize, Serialize};

use crate::content::ContentBlock;
use crate::context::ContextManagementResponse;
use crate::error::ErrorDetail;
use crate::messages::{Message, StopReason};
use crate::usage::MessageDeltaUsage;

/// One streamed event. The serde tag is also the SSE `event:` name, so the two never differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart {
        message: Message,
    },
    ContentBlockStart {
        index: usize,
        content_block: ContentBlock,
    },
    Ping,
    ContentBlockDelta {
        index: usize,
        delta: ContentBlockDelta,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: MessageDelta,
        usage: MessageDeltaUsage,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context_management: Option<ContextManagementResponse>,
    },
    MessageStop,
    Error {
        error: ErrorDetail,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    CitationsDelta {
        citation: serde_json::Value,
    },
    /// The whole summary of a `compaction` block, in one delta, as the Claude API sends it.
    CompactionDelta {
        content: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDelta {
    pub stop_reason: Option<StopReason>,
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub stop_details: Option<serde_json::Value>,
    /// The code execution container the reply used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<serde_json::Value>,
}

impl StreamEvent {
    /// The SSE `event:` name: the same string as the payload's `"type"`.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::Ping => "ping",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Error { .. } => "error",
        }
    }

    /// The event framed for the wire: `event: <name>\ndata: <json>\n\n`.
    pub fn to_sse(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys, no foreign
        // Serialize impls. An empty object keeps the frame well-formed if it ever did.
        let data = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        format!("event: {}\ndata: {}\n\n", self.name(), data)
    }
}
