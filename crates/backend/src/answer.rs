//! A generation read to its end for its text alone, where nothing streams to a client: a
//! compaction's summary, an advisor's advice.

use futures::StreamExt;

use crate::{BackendError, BackendEvent, EventStream, FinishReason, PromptUsage};

/// What a generation wrote and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub text: String,
    pub reason: FinishReason,
    pub output_tokens: u32,
    pub prompt: PromptUsage,
}

/// Reads `events` to their end. Thoughts and tool calls are not part of the text.
pub async fn read(mut events: EventStream) -> Result<Answer, BackendError> {
    let mut text = String::new();
    let mut prompt = PromptUsage::default();
    while let Some(event) = events.next().await {
        match event? {
            BackendEvent::Started { prompt: p } => prompt = p,
            BackendEvent::Text(piece) => text.push_str(&piece),
            BackendEvent::Finished {
                reason,
                output_tokens,
                prompt: last,
                ..
            } => {
                return Ok(Answer {
                    text,
                    reason,
                    output_tokens,
                    prompt: last.unwrap_or(prompt),
                })
            }
            _ => {}
        }
    }
    Err(BackendError::Generation(
        "the model's stream ended before it finished".into(),
    ))
}
