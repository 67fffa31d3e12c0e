//! Every content block of a conversation, those inside `tool_result` content included,
//! with where each stands: the one walk behind the checks and lookups that must see both
//! levels.

use std::fmt;

use crate::content::{ContentBlockParam, ToolResultContent};
use crate::messages::{MessageContent, MessageParam};

/// Where a block stands: `messages.{message}.content.{block}`, then `.content.{inner}` for
/// a block inside that `tool_result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPath {
    pub message: usize,
    pub block: usize,
    pub inner: Option<usize>,
}

impl fmt::Display for BlockPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "messages.{}.content.{}", self.message, self.block)?;
        if let Some(inner) = self.inner {
            write!(f, ".content.{inner}")?;
        }
        Ok(())
    }
}

/// Each block of `messages` in order, a `tool_result`'s own blocks right after it.
pub fn blocks(messages: &[MessageParam]) -> impl Iterator<Item = (BlockPath, &ContentBlockParam)> {
    messages.iter().enumerate().flat_map(|(message, m)| {
        let top: &[ContentBlockParam] = match &m.content {
            MessageContent::Blocks(blocks) => blocks,
            MessageContent::Text(_) => &[],
        };
        top.iter().enumerate().flat_map(move |(block, b)| {
            let inner: &[ContentBlockParam] = match b {
                ContentBlockParam::ToolResult {
                    content: Some(ToolResultContent::Blocks(inner)),
                    ..
                } => inner,
                _ => &[],
            };
            let at = move |inner| BlockPath {
                message,
                block,
                inner,
            };
            std::iter::once((at(None), b))
                .chain(inner.iter().enumerate().map(move |(k, b)| (at(Some(k)), b)))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_result_blocks_follow_their_result_with_their_path() {
        let messages: Vec<MessageParam> = serde_json::from_value(serde_json::json!([
            {"role": "user", "content": "plain text has no blocks"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            {"role": "user", "content": [
                {"type": "text", "text": "before"},
                {"type": "tool_result", "tool_use_id": "t", "content": [
                    {"type": "text", "text": "a"}, {"type": "tool_reference", "tool_name": "g"}]},
                {"type": "tool_result", "tool_use_id": "u", "content": "text content"}
            ]}
        ]))
        .unwrap();
        let paths: Vec<String> = blocks(&messages).map(|(at, _)| at.to_string()).collect();
        assert_eq!(
            paths,
            [
                "messages.1.content.0",
                "messages.2.content.0",
                "messages.2.content.1",
                "messages.2.content.1.content.0",
                "messages.2.content.1.content.1",
                "messages.2.content.2",
            ]
        );
    }
}
