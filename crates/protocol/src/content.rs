//! Content blocks: what a request may carry (`ContentBlockParam`) and what a response
//! holds (`ContentBlock`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `cache_control` on a block, tool or the request: `{"type":"ephemeral","ttl"?:"5m"|"1h"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheControl {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// A request-side content block. Unknown block types fail to parse with a message naming
/// the type, since silently dropping content would change what the model sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlockParam {
    Text {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Value>,
    },
    Image {
        source: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    Document {
        source: DocumentSource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    /// A result the caller's own search found (retrieval): the model reads its text, and
    /// with `citations.enabled` the answer cites it by `search_result_location`.
    SearchResult {
        source: String,
        title: String,
        /// `text` blocks only (checked when the request is parsed).
        content: Vec<ContentBlockParam>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<ToolResultContent>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    /// A summary of the turns before it, from an earlier compaction: the conversation
    /// restarts from here. `content: null` marks a failed compaction, a no-op.
    Compaction {
        #[serde(default)]
        content: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_changes: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    /// A call of a tool the server ran (`web_fetch`, `web_search`), echoed back in the
    /// assistant turn it came in.
    ServerToolUse {
        id: String,
        name: String,
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<Value>,
    },
    /// What a `web_fetch` call brought back: a `web_fetch_result` or an error.
    WebFetchToolResult {
        tool_use_id: String,
        content: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<Value>,
    },
    /// What a `web_search` call brought back: a list of results or an error.
    WebSearchToolResult {
        tool_use_id: String,
        content: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<Value>,
    },
    /// A call of an MCP server's tool, run by the server (the MCP connector).
    McpToolUse {
        id: String,
        name: String,
        server_name: String,
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    /// What a `bash_code_execution` call did.
    BashCodeExecutionToolResult {
        tool_use_id: String,
        content: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    /// What a `text_editor_code_execution` call did.
    TextEditorCodeExecutionToolResult {
        tool_use_id: String,
        content: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    /// A tool search's result. It and the two after it (the advisor's, and the Python-only
    /// code execution of 20250522, which only an `anthropic` upstream runs) are relayed as
    /// they came from such an upstream; elsewhere they are read as tool results.
    ToolSearchToolResult {
        tool_use_id: String,
        content: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    AdvisorToolResult {
        tool_use_id: String,
        content: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    CodeExecutionToolResult {
        tool_use_id: String,
        content: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    /// A Files API file put into the code execution container before the model runs.
    ContainerUpload {
        file_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    /// What an MCP tool call returned: a string or text blocks.
    McpToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    /// Inside a `tool_result` only: loads a deferred tool (`defer_loading: true`) from
    /// this point of the conversation on.
    ToolReference {
        tool_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
}

impl ContentBlockParam {
    /// The texts of a `search_result`'s blocks, in order; `None` for other blocks.
    pub fn search_result_texts(&self) -> Option<Vec<&str>> {
        let Self::SearchResult { content, .. } = self else {
            return None;
        };
        Some(
            content
                .iter()
                .filter_map(|block| match block {
                    Self::Text { text, .. } => Some(text.as_str()),
                    _ => None,
                })
                .collect(),
        )
    }

    /// A `search_result` as a text-only model reads it: its title and source, each on a
    /// line before its text; `None` for other blocks.
    pub fn search_result_prompt_text(&self) -> Option<String> {
        let Self::SearchResult { source, title, .. } = self else {
            return None;
        };
        let texts = self.search_result_texts()?;
        Some(format!(
            "Search result: {title}\nSource: {source}\n{}",
            texts.join("\n")
        ))
    }

    /// The block's cache breakpoint, if it sets one.
    pub fn cache_control(&self) -> Option<&CacheControl> {
        match self {
            Self::Text { cache_control, .. }
            | Self::Image { cache_control, .. }
            | Self::Document { cache_control, .. }
            | Self::SearchResult { cache_control, .. }
            | Self::ToolUse { cache_control, .. }
            | Self::ToolResult { cache_control, .. }
            | Self::Compaction { cache_control, .. }
            | Self::ServerToolUse { cache_control, .. }
            | Self::WebFetchToolResult { cache_control, .. }
            | Self::WebSearchToolResult { cache_control, .. }
            | Self::McpToolUse { cache_control, .. }
            | Self::BashCodeExecutionToolResult { cache_control, .. }
            | Self::TextEditorCodeExecutionToolResult { cache_control, .. }
            | Self::ToolSearchToolResult { cache_control, .. }
            | Self::AdvisorToolResult { cache_control, .. }
            | Self::CodeExecutionToolResult { cache_control, .. }
            | Self::ContainerUpload { cache_control, .. }
            | Self::McpToolResult { cache_control, .. }
            | Self::ToolReference { cache_control, .. } => cache_control.as_ref(),
            Self::Thinking { .. } | Self::RedactedThinking { .. } => None,
        }
    }
}

/// `tool_result.content`: a string or a list of blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolResultContent {
    Text(String),
    Blocks(Vec<ContentBlockParam>),
}

/// `document.source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocumentSource {
    Text {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_type: Option<String>,
        data: String,
    },
    Base64 {
        media_type: String,
        data: String,
    },
    Content {
        content: Value,
    },
    Url {
        url: String,
    },
    File {
        file_id: String,
    },
}

impl DocumentSource {
    /// The text of a `text` or `content` source; `None` for sources that must be read
    /// first (base64, URL, file).
    pub fn text(&self) -> Option<String> {
        match self {
            DocumentSource::Text { data, .. } => Some(data.clone()),
            DocumentSource::Content { content } => Some(match content {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(|item| item.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            }),
            DocumentSource::Base64 { .. }
            | DocumentSource::Url { .. }
            | DocumentSource::File { .. } => None,
        }
    }

    /// The document as a text-only model reads it: its title and context, when given,
    /// each on a line before the text; `None` for sources that must be read first.
    pub fn prompt_text(&self, title: Option<&str>, context: Option<&str>) -> Option<String> {
        let body = self.text()?;
        let mut parts = Vec::with_capacity(3);
        if let Some(title) = title {
            parts.push(format!("Document: {title}"));
        }
        parts.extend(context.map(str::to_owned));
        parts.push(body);
        Some(parts.join("\n"))
    }
}

/// A response content block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
        /// Always written (as `null` when absent): the SDKs' types require the key.
        #[serde(default)]
        citations: Option<Vec<Value>>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<Value>,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    /// The summary that replaced the conversation before it; sent back as it came.
    Compaction {
        content: Option<String>,
    },
    /// A call of a tool the server runs itself (`web_fetch`, `web_search`).
    ServerToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// The outcome of a `web_fetch` call: `web_fetch_result` or `web_fetch_tool_result_error`.
    WebFetchToolResult {
        tool_use_id: String,
        content: Value,
    },
    /// The outcome of a `web_search` call: a list of `web_search_result` or an error.
    WebSearchToolResult {
        tool_use_id: String,
        content: Value,
    },
    /// A call of an MCP server's tool.
    McpToolUse {
        id: String,
        name: String,
        server_name: String,
        input: Value,
    },
    /// What the MCP tool returned, as text blocks.
    McpToolResult {
        tool_use_id: String,
        is_error: bool,
        content: Value,
    },
    /// What a command run in the container did.
    BashCodeExecutionToolResult {
        tool_use_id: String,
        content: Value,
    },
    /// What a file edit in the container did.
    TextEditorCodeExecutionToolResult {
        tool_use_id: String,
        content: Value,
    },
    /// What a tool search found (`tool_search_tool_search_result`) or its error; relayed
    /// as it came from an `anthropic` upstream that ran the search.
    ToolSearchToolResult {
        tool_use_id: String,
        content: Value,
    },
    /// Relayed from an `anthropic` upstream, which ran the tool.
    AdvisorToolResult {
        tool_use_id: String,
        content: Value,
    },
    /// Relayed from an `anthropic` upstream, which ran the tool (`code_execution_20250522`).
    CodeExecutionToolResult {
        tool_use_id: String,
        content: Value,
    },
}

impl ContentBlock {
    /// A text block with no citations.
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text {
            text: text.into(),
            citations: None,
        }
    }
}
