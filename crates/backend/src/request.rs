//! The normalised request every backend receives.

use missive_protocol::content::{CacheControl, ContentBlockParam};
use missive_protocol::messages::{
    MessagesRequest, Role, SystemBlock, SystemBlockType, SystemPrompt,
};
use missive_protocol::tools::{Effort, OutputFormat, ThinkingConfig, Tool, ToolChoice};

/// One conversation turn. Consecutive same-role messages of the request are merged into
/// one turn, as the Claude API does.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub blocks: Vec<ContentBlockParam>,
}

impl Turn {
    /// The turn's text blocks, one per line.
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self
            .blocks
            .iter()
            .filter_map(|block| match block {
                ContentBlockParam::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        texts.join("\n")
    }
}

/// Sampling parameters. `None` means the model's default.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
}

/// A Messages request with aliases resolved and turns merged: the Claude API's shape,
/// never an OpenAI one.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The resolved model id (never an alias).
    pub model: String,
    pub system: Vec<SystemBlock>,
    /// Alternating turns. A final assistant turn is a prefill the reply continues.
    pub turns: Vec<Turn>,
    pub max_tokens: u32,
    pub stop_sequences: Vec<String>,
    pub sampling: Sampling,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub thinking: Option<ThinkingConfig>,
    /// `output_config.effort`: also a thinking budget (set at admission), and the reasoning
    /// level of templates that take one (gpt-oss's `reasoning_effort`).
    pub effort: Option<Effort>,
    pub output_format: Option<OutputFormat>,
    /// The automatic top-level `cache_control` breakpoint.
    pub cache_control: Option<CacheControl>,
    pub priority: Priority,
    /// What keeps a conversation on one upstream (and its prefix cache): Claude Code's
    /// session id, else `metadata.user_id`.
    pub affinity: Option<String>,
    /// The client's `anthropic-beta` values, for upstreams that speak the Claude API.
    pub betas: Vec<String>,
    /// Whose prompt cache this request may read and write: the workspace id, so that one
    /// tenant's cache hits never reveal another's prompts. Empty: the shared cache.
    pub cache_scope: String,
    /// Fields only a Claude API upstream reads (`mcp_servers`, `container`), sent on as they
    /// came when that upstream runs the server tools itself.
    pub passthrough: serde_json::Map<String, serde_json::Value>,
}

/// Who waits for a generation. Background work (Message Batches) runs in what interactive
/// requests leave: an engine keeps a slot free for them and pauses background sequences
/// while one runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Priority {
    #[default]
    Interactive,
    Background,
}

impl GenerateRequest {
    /// Normalises a validated Messages request for the model `model`.
    pub fn new(model: String, request: MessagesRequest) -> Self {
        let system = match request.system {
            None => Vec::new(),
            Some(SystemPrompt::Text(text)) if text.is_empty() => Vec::new(),
            Some(SystemPrompt::Text(text)) => vec![SystemBlock {
                kind: SystemBlockType::Text,
                text,
                cache_control: None,
            }],
            Some(SystemPrompt::Blocks(blocks)) => blocks,
        };
        let system = system.into_iter().map(without_billing_nonce).collect();
        let messages = crate::history::from_latest_compaction(request.messages);
        let tools = crate::history::loaded_tools(
            request.tools.unwrap_or_default(),
            &messages,
            request.tool_choice.as_ref(),
        );
        let mut turns: Vec<Turn> = Vec::with_capacity(messages.len());
        for message in messages {
            let blocks = message.content.into_blocks();
            match turns.last_mut() {
                Some(last) if last.role == message.role => last.blocks.extend(blocks),
                _ => turns.push(Turn {
                    role: message.role,
                    blocks,
                }),
            }
        }
        let affinity = request.metadata.as_ref().and_then(|m| m.user_id.clone());
        let mut passthrough = serde_json::Map::new();
        for (key, value) in [
            ("mcp_servers", request.mcp_servers),
            ("container", request.container),
        ] {
            if let Some(value) = value.filter(|v| !v.is_null()) {
                passthrough.insert(key.to_owned(), value);
            }
        }
        let effort = request.output_config.as_ref().and_then(|c| c.effort);
        let output_format = request
            .output_config
            .and_then(|config| config.format)
            .or(request.output_format);
        Self {
            model,
            system,
            turns,
            max_tokens: request.max_tokens,
            stop_sequences: request.stop_sequences.unwrap_or_default(),
            sampling: Sampling {
                temperature: request.temperature.map(|t| t as f32),
                top_p: request.top_p.map(|p| p as f32),
                top_k: request.top_k,
            },
            tools,
            tool_choice: request.tool_choice,
            thinking: request.thinking,
            effort,
            output_format,
            cache_control: request.cache_control,
            priority: Priority::Interactive,
            affinity,
            betas: Vec::new(),
            cache_scope: String::new(),
            passthrough,
        }
    }

    /// The system prompt's text blocks joined as the Claude API joins them.
    pub fn system_text(&self) -> String {
        let parts: Vec<&str> = self.system.iter().map(|b| b.text.as_str()).collect();
        parts.join("\n")
    }

    /// The text of a final assistant turn, which the reply continues.
    pub fn prefill(&self) -> Option<String> {
        self.turns
            .last()
            .filter(|turn| turn.role == Role::Assistant)
            .map(Turn::text)
    }

    /// Adds `block` at the conversation's end: to the last turn when it is `role`'s, else
    /// in a new turn of its own.
    pub fn push_block(&mut self, role: Role, block: ContentBlockParam) {
        match self.turns.last_mut() {
            Some(last) if last.role == role => last.blocks.push(block),
            _ => self.turns.push(Turn {
                role,
                blocks: vec![block],
            }),
        }
    }
}

/// Claude Code starts its system prompt with `x-anthropic-billing-header: …; cch=<nonce>;`,
/// a value that changes on every request. Left in, it would make every prompt's prefix
/// unique and defeat the prefix cache; it means nothing to a model, so it is dropped.
fn without_billing_nonce(mut block: SystemBlock) -> SystemBlock {
    if !block.text.starts_with("x-anthropic-billing-header") {
        return block;
    }
    if let Some(start) = block.text.find("cch=") {
        let end = block.text[start..]
            .find(';')
            .map_or(block.text.len(), |i| start + i + 1);
        block.text.replace_range(start..end, "");
        let trimmed = block.text.trim_end().len();
        block.text.truncate(trimmed);
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use missive_protocol::parse_messages_request;

    #[test]
    fn consecutive_same_role_turns_are_merged_and_prefill_found() {
        let request = parse_messages_request(
            br#"{"model":"m","max_tokens":5,"messages":[
                {"role":"user","content":"a"},{"role":"user","content":[{"type":"text","text":"b"}]},
                {"role":"assistant","content":"Sure"}]}"#,
        )
        .unwrap();
        let normalised = GenerateRequest::new("m".into(), request);
        assert_eq!(normalised.turns.len(), 2);
        assert_eq!(normalised.turns[0].text(), "a\nb");
        assert_eq!(normalised.prefill().as_deref(), Some("Sure"));
    }

    #[test]
    fn claude_code_billing_nonce_is_dropped_so_prefixes_match() {
        let block = |text: &str| SystemBlock {
            kind: SystemBlockType::Text,
            text: text.to_owned(),
            cache_control: None,
        };
        let a = without_billing_nonce(block(
            "x-anthropic-billing-header: cc_version=2.1.3; cc_entrypoint=cli; cch=1a2b3;",
        ));
        let b = without_billing_nonce(block(
            "x-anthropic-billing-header: cc_version=2.1.3; cc_entrypoint=cli; cch=9f8e7;",
        ));
        assert_eq!(
            a.text,
            "x-anthropic-billing-header: cc_version=2.1.3; cc_entrypoint=cli;"
        );
        assert_eq!(a, b);
        let other = block("You are helpful. cch=keep;");
        assert_eq!(without_billing_nonce(other.clone()), other);
    }
}
