//! The normalised request every backend receives.

use missive_protocol::content::{CacheControl, ContentBlockParam};
use missive_protocol::messages::{
    MessagesRequest, Role, SystemBlock, SystemBlockType, SystemPrompt,
};
use missive_protocol::tools::{OutputFormat, ThinkingConfig, Tool, ToolChoice};

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
    pub output_format: Option<OutputFormat>,
    /// The automatic top-level `cache_control` breakpoint.
    pub cache_control: Option<CacheControl>,
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
        let mut turns: Vec<Turn> = Vec::with_capacity(request.messages.len());
        for message in request.messages {
            let blocks = message.content.into_blocks();
            match turns.last_mut() {
                Some(last) if last.role == message.role => last.blocks.extend(blocks),
                _ => turns.push(Turn {
                    role: message.role,
                    blocks,
                }),
            }
        }
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
            tools: request.tools.unwrap_or_default(),
            tool_choice: request.tool_choice,
            thinking: request.thinking,
            output_format,
            cache_control: request.cache_control,
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
}
