//! From backend events to the Claude API's stream events, and from those to one `Message`.
//! Non-streaming responses are built by folding the same events a stream would send, so
//! the two can never disagree.

use futures::{Stream, StreamExt};
use missive_backend::{
    BackendError, BackendEvent, EventStream, FinishReason, PromptUsage, ServerToolRun,
};
use missive_protocol::content::ContentBlock;
use missive_protocol::context::{
    AppliedEdit, ContextManagementResponse, IterationKind, IterationUsage,
};
use missive_protocol::stream::{ContentBlockDelta, MessageDelta, StreamEvent};
use missive_protocol::usage::OutputTokensDetails;
use missive_protocol::{ErrorDetail, Message, StopReason, Usage};

use crate::context_window::Summary;
use crate::error::ApiError;
use crate::thinking::ThinkingSigner;

/// Turns backend events into Claude stream events, tracking block indices and usage.
pub struct Assembler {
    id: String,
    model: String,
    usage: Usage,
    started: bool,
    open_block: Option<usize>,
    next_index: usize,
    /// Signs thinking blocks, for the workspace the answer is for.
    signer: Option<(ThinkingSigner, String)>,
    /// The open thinking block's text, signed when the block closes.
    thought: Option<String>,
    /// The open block is a tool call whose input is being streamed.
    tool_open: bool,
    /// `thinking.display: "omitted"`: thinking blocks carry no text, only a signature.
    omit_thinking: bool,
    /// A compaction that preceded this reply: its block comes first, its usage is one of
    /// the reply's iterations.
    compaction: Option<Summary>,
    /// `context_management` was asked for: the edits that applied.
    applied_edits: Option<Vec<AppliedEdit>>,
    /// The code execution container the reply's calls ran in.
    container: Option<serde_json::Value>,
    /// The steps a tool loop reported, in order, for `usage.iterations`.
    steps: Vec<IterationUsage>,
}

impl Assembler {
    pub fn new(id: String, model: String) -> Self {
        Self {
            id,
            model,
            usage: Usage::default(),
            started: false,
            open_block: None,
            next_index: 0,
            signer: None,
            thought: None,
            tool_open: false,
            omit_thinking: false,
            compaction: None,
            applied_edits: None,
            container: None,
            steps: Vec::new(),
        }
    }

    /// The reply follows a compaction (`summary`) and context edits (`applied_edits`, when
    /// the request asked for context management).
    pub fn with_context(
        mut self,
        summary: Option<Summary>,
        applied_edits: Option<Vec<AppliedEdit>>,
    ) -> Self {
        self.compaction = summary;
        self.applied_edits = applied_edits;
        self
    }

    /// Thinking blocks get signatures from `signer`; `omit` leaves their text out.
    pub fn with_thinking(mut self, signer: ThinkingSigner, workspace: &str, omit: bool) -> Self {
        self.signer = Some((signer, workspace.to_owned()));
        self.omit_thinking = omit;
        self
    }

    /// Opens a block at the next index.
    fn open(&mut self, content_block: ContentBlock, out: &mut Vec<StreamEvent>) -> usize {
        let index = self.next_index;
        self.next_index += 1;
        self.open_block = Some(index);
        out.push(StreamEvent::ContentBlockStart {
            index,
            content_block,
        });
        if index == 0 {
            out.push(StreamEvent::Ping);
        }
        index
    }

    /// Closes the open block; a thinking block first gets its signature.
    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        self.tool_open = false;
        let Some(index) = self.open_block.take() else {
            return;
        };
        if let Some(thought) = self.thought.take() {
            let signature = self
                .signer
                .as_ref()
                .map(|(s, workspace)| s.sign(workspace, &thought, self.omit_thinking))
                .unwrap_or_default();
            out.push(StreamEvent::ContentBlockDelta {
                index,
                delta: ContentBlockDelta::SignatureDelta { signature },
            });
        }
        out.push(StreamEvent::ContentBlockStop { index });
    }

    /// The open text block's index, after closing a thought or call and opening one if
    /// none is open.
    fn text_block(&mut self, out: &mut Vec<StreamEvent>) -> usize {
        self.start(out);
        if self.thought.is_some() || self.tool_open {
            self.close(out);
        }
        match self.open_block {
            Some(index) => index,
            None => self.open(ContentBlock::text(""), out),
        }
    }

    fn start(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::MessageStart {
                message: Message::started(self.id.clone(), self.model.clone(), self.usage.clone()),
            });
            if let Some(summary) = self.compaction.as_ref().map(|c| c.text.clone()) {
                let index = self.open(ContentBlock::Compaction { content: None }, out);
                out.push(StreamEvent::ContentBlockDelta {
                    index,
                    delta: ContentBlockDelta::CompactionDelta { content: summary },
                });
                self.open_block = None;
                out.push(StreamEvent::ContentBlockStop { index });
            }
        }
    }

    fn set_prompt(&mut self, prompt: &PromptUsage) {
        self.usage.input_tokens = prompt.input_tokens;
        self.usage.cache_read_input_tokens = prompt.cache_read_input_tokens;
        self.usage.cache_creation.ephemeral_5m_input_tokens = prompt.cache_creation_5m_input_tokens;
        self.usage.cache_creation.ephemeral_1h_input_tokens = prompt.cache_creation_1h_input_tokens;
        self.usage.cache_creation_input_tokens = prompt
            .cache_creation_5m_input_tokens
            .saturating_add(prompt.cache_creation_1h_input_tokens);
    }

    /// The stream events one backend event produces.
    pub fn push(&mut self, event: Result<BackendEvent, BackendError>) -> Vec<StreamEvent> {
        let mut out = Vec::with_capacity(2);
        match event {
            Ok(BackendEvent::Started { prompt }) => {
                self.set_prompt(&prompt);
                self.start(&mut out);
            }
            Ok(BackendEvent::Text(text)) => {
                let index = self.text_block(&mut out);
                out.push(StreamEvent::ContentBlockDelta {
                    index,
                    delta: ContentBlockDelta::TextDelta { text },
                });
            }
            Ok(BackendEvent::Citation(citation)) => {
                let index = self.text_block(&mut out);
                out.push(StreamEvent::ContentBlockDelta {
                    index,
                    delta: ContentBlockDelta::CitationsDelta { citation },
                });
            }
            Ok(BackendEvent::TextEnd) => {
                if self.thought.is_none() && !self.tool_open {
                    self.close(&mut out);
                }
            }
            Ok(BackendEvent::Thinking(thinking)) => {
                self.start(&mut out);
                if self.thought.is_none() {
                    self.close(&mut out);
                    self.open(
                        ContentBlock::Thinking {
                            thinking: String::new(),
                            signature: String::new(),
                        },
                        &mut out,
                    );
                    self.thought = Some(String::new());
                }
                if let (Some(index), Some(thought)) = (self.open_block, self.thought.as_mut()) {
                    thought.push_str(&thinking);
                    if !self.omit_thinking {
                        out.push(StreamEvent::ContentBlockDelta {
                            index,
                            delta: ContentBlockDelta::ThinkingDelta { thinking },
                        });
                    }
                }
            }
            Ok(BackendEvent::ToolUseStart { name }) => {
                self.start(&mut out);
                self.close(&mut out);
                let index = self.open(tool_use_block(name), &mut out);
                self.tool_open = true;
                out.push(StreamEvent::ContentBlockDelta {
                    index,
                    delta: ContentBlockDelta::InputJsonDelta {
                        partial_json: String::new(),
                    },
                });
            }
            Ok(BackendEvent::ToolInput(partial_json)) => {
                if let (true, Some(index)) = (self.tool_open, self.open_block) {
                    out.push(StreamEvent::ContentBlockDelta {
                        index,
                        delta: ContentBlockDelta::InputJsonDelta { partial_json },
                    });
                }
            }
            // The streamed call is complete; its pieces already carried the input.
            Ok(BackendEvent::ToolUse { .. }) if self.tool_open => self.close(&mut out),
            Ok(BackendEvent::ToolUse { name, input }) => {
                self.start(&mut out);
                self.close(&mut out);
                let index = self.open(tool_use_block(name), &mut out);
                self.open_block = None;
                for partial_json in json_chunks(&input) {
                    out.push(StreamEvent::ContentBlockDelta {
                        index,
                        delta: ContentBlockDelta::InputJsonDelta { partial_json },
                    });
                }
                out.push(StreamEvent::ContentBlockStop { index });
            }
            Ok(BackendEvent::Container(container)) => {
                self.container = Some(container);
            }
            Ok(BackendEvent::Step(step)) => self.steps.push(step),
            Ok(BackendEvent::ServerTool(run)) => {
                let ServerToolRun {
                    call,
                    result,
                    usage,
                    container,
                } = *run;
                if container.is_some() {
                    self.container = container;
                }
                self.start(&mut out);
                self.close(&mut out);
                // The call streams as a client call does: its input in deltas.
                let (opened, input) = match call {
                    ContentBlock::ServerToolUse { id, name, input } => (
                        ContentBlock::ServerToolUse {
                            id,
                            name,
                            input: serde_json::json!({}),
                        },
                        input,
                    ),
                    ContentBlock::McpToolUse {
                        id,
                        name,
                        server_name,
                        input,
                    } => (
                        ContentBlock::McpToolUse {
                            id,
                            name,
                            server_name,
                            input: serde_json::json!({}),
                        },
                        input,
                    ),
                    other => (other, serde_json::Value::Null),
                };
                let index = self.open(opened, &mut out);
                self.open_block = None;
                if !input.is_null() {
                    for partial_json in json_chunks(&input) {
                        out.push(StreamEvent::ContentBlockDelta {
                            index,
                            delta: ContentBlockDelta::InputJsonDelta { partial_json },
                        });
                    }
                }
                out.push(StreamEvent::ContentBlockStop { index });
                let index = self.open(result, &mut out);
                self.open_block = None;
                out.push(StreamEvent::ContentBlockStop { index });
                let counts = self
                    .usage
                    .server_tool_use
                    .get_or_insert_with(Default::default);
                counts.web_fetch_requests += usage.web_fetch_requests;
                counts.web_search_requests += usage.web_search_requests;
                counts.code_execution_ms += usage.code_execution_ms;
            }
            Ok(BackendEvent::Finished {
                reason,
                output_tokens,
                thinking_tokens,
                prompt,
            }) => {
                if let Some(prompt) = prompt {
                    self.set_prompt(&prompt);
                }
                self.start(&mut out);
                self.close(&mut out);
                self.usage.output_tokens = output_tokens;
                if thinking_tokens > 0 {
                    self.usage.output_tokens_details =
                        Some(OutputTokensDetails { thinking_tokens });
                }
                let (stop_reason, stop_sequence) = match reason {
                    FinishReason::EndTurn => (StopReason::EndTurn, None),
                    FinishReason::MaxTokens => (StopReason::MaxTokens, None),
                    FinishReason::StopSequence(s) => (StopReason::StopSequence, Some(s)),
                    FinishReason::ContextWindowExceeded => {
                        (StopReason::ModelContextWindowExceeded, None)
                    }
                    FinishReason::ToolUse => (StopReason::ToolUse, None),
                    FinishReason::Compaction => (StopReason::Compaction, None),
                    FinishReason::PauseTurn => (StopReason::PauseTurn, None),
                };
                if self.compaction.is_some() || !self.steps.is_empty() {
                    let mut iterations: Vec<IterationUsage> =
                        self.compaction.iter().map(|c| c.usage.clone()).collect();
                    if !self.steps.is_empty() {
                        iterations.append(&mut self.steps);
                    } else if stop_reason != StopReason::Compaction {
                        iterations.push(IterationUsage {
                            kind: IterationKind::Message,
                            input_tokens: self.usage.input_tokens,
                            output_tokens: self.usage.output_tokens,
                            cache_creation_input_tokens: self.usage.cache_creation_input_tokens,
                            cache_read_input_tokens: self.usage.cache_read_input_tokens,
                            cache_creation: self.usage.cache_creation.clone(),
                            model: None,
                        });
                    }
                    self.usage.iterations = Some(iterations);
                }
                out.push(StreamEvent::MessageDelta {
                    delta: MessageDelta {
                        stop_reason: Some(stop_reason),
                        stop_sequence,
                        stop_details: None,
                        container: self.container.clone(),
                    },
                    usage: (&self.usage).into(),
                    context_management: self
                        .applied_edits
                        .clone()
                        .map(|applied_edits| ContextManagementResponse { applied_edits }),
                });
                out.push(StreamEvent::MessageStop);
            }
            Err(err) => {
                let api = ApiError::from(err);
                out.push(StreamEvent::Error {
                    error: ErrorDetail {
                        error_type: api.error_type,
                        message: api.message,
                    },
                });
            }
        }
        out
    }
}

/// A tool call's block as it opens: a new id, its input still to come.
fn tool_use_block(name: String) -> ContentBlock {
    ContentBlock::ToolUse {
        id: crate::ids::new_id("toolu"),
        name,
        input: serde_json::json!({}),
        caller: None,
    }
}

/// A tool input as `input_json_delta` pieces: an empty first piece, as the Claude API
/// sends, then the serialised JSON in short runs split at character boundaries, so every
/// concatenated prefix is a valid JSON prefix.
fn json_chunks(input: &serde_json::Value) -> Vec<String> {
    const RUN: usize = 24;
    let text = input.to_string();
    let mut chunks = vec![String::new()];
    let mut current = String::new();
    for ch in text.chars() {
        current.push(ch);
        if current.len() >= RUN {
            chunks.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// A streamed tool input, read as the SDKs read it: a call cut short (by `max_tokens` or
/// a stop sequence) keeps its complete values, as the SDKs' stream accumulators do.
fn partial_json(json: &str) -> Result<serde_json::Value, ApiError> {
    use jiter::{JsonValue, PartialMode};
    fn convert(value: JsonValue<'_>) -> serde_json::Value {
        use serde_json::Value;
        match value {
            JsonValue::Null => Value::Null,
            JsonValue::Bool(b) => Value::Bool(b),
            JsonValue::Int(i) => i.into(),
            JsonValue::Float(f) => f.into(),
            JsonValue::Str(s) => Value::String(s.into_owned()),
            JsonValue::Array(items) => Value::Array(items.iter().cloned().map(convert).collect()),
            JsonValue::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), convert(v.clone())))
                    .collect(),
            ),
        }
    }
    if let Ok(whole) = serde_json::from_str(json) {
        return Ok(whole);
    }
    JsonValue::parse_with_config(json.as_bytes(), false, PartialMode::On)
        .map(convert)
        .map_err(|err| ApiError::internal(format!("{err:?}")))
}

/// The stream of Claude events for a generation; ends after `message_stop` or `error`.
pub fn events(
    events: EventStream,
    mut assembler: Assembler,
) -> impl Stream<Item = StreamEvent> + Send {
    events
        .flat_map(move |event| futures::stream::iter(assembler.push(event)))
        .scan(false, |done, event| {
            if *done {
                return futures::future::ready(None);
            }
            *done = matches!(event, StreamEvent::MessageStop | StreamEvent::Error { .. });
            futures::future::ready(Some(event))
        })
}

/// Folds stream events into the final `Message`, as the SDKs' accumulators do.
pub async fn collect(stream: impl Stream<Item = StreamEvent>) -> Result<Message, ApiError> {
    futures::pin_mut!(stream);
    let mut message: Option<Message> = None;
    let mut tool_json: Vec<String> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            StreamEvent::MessageStart { message: start } => message = Some(start),
            StreamEvent::ContentBlockStart { content_block, .. } => {
                if let Some(m) = message.as_mut() {
                    m.content.push(content_block);
                    tool_json.push(String::new());
                }
            }
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                ContentBlockDelta::TextDelta { text: piece } => {
                    if let Some(ContentBlock::Text { text, .. }) =
                        message.as_mut().and_then(|m| m.content.get_mut(index))
                    {
                        text.push_str(&piece);
                    }
                }
                ContentBlockDelta::InputJsonDelta { partial_json } => {
                    if let Some(buffer) = tool_json.get_mut(index) {
                        buffer.push_str(&partial_json);
                    }
                }
                ContentBlockDelta::ThinkingDelta { thinking: piece } => {
                    if let Some(ContentBlock::Thinking { thinking, .. }) =
                        message.as_mut().and_then(|m| m.content.get_mut(index))
                    {
                        thinking.push_str(&piece);
                    }
                }
                ContentBlockDelta::SignatureDelta { signature: value } => {
                    if let Some(ContentBlock::Thinking { signature, .. }) =
                        message.as_mut().and_then(|m| m.content.get_mut(index))
                    {
                        *signature = value;
                    }
                }
                ContentBlockDelta::CitationsDelta { citation } => {
                    if let Some(ContentBlock::Text { citations, .. }) =
                        message.as_mut().and_then(|m| m.content.get_mut(index))
                    {
                        citations.get_or_insert_with(Vec::new).push(citation);
                    }
                }
                ContentBlockDelta::CompactionDelta { content: summary } => {
                    if let Some(ContentBlock::Compaction { content }) =
                        message.as_mut().and_then(|m| m.content.get_mut(index))
                    {
                        *content = summary;
                    }
                }
            },
            StreamEvent::ContentBlockStop { index } => {
                if let Some(
                    ContentBlock::ToolUse { input, .. }
                    | ContentBlock::ServerToolUse { input, .. }
                    | ContentBlock::McpToolUse { input, .. },
                ) = message.as_mut().and_then(|m| m.content.get_mut(index))
                {
                    let json = tool_json.get(index).map_or("", String::as_str);
                    if !json.is_empty() {
                        *input = partial_json(json)?;
                    }
                }
            }
            StreamEvent::MessageDelta {
                delta,
                usage,
                context_management,
            } => {
                if let Some(m) = message.as_mut() {
                    m.context_management = context_management;
                    m.usage.iterations = usage.iterations;
                    m.stop_reason = delta.stop_reason;
                    m.container = delta.container;
                    m.stop_sequence = delta.stop_sequence;
                    m.usage.output_tokens = usage.output_tokens;
                    m.usage.output_tokens_details = usage.output_tokens_details;
                    m.usage.server_tool_use = usage.server_tool_use;
                    // Cumulative, as the SDKs' accumulators read it: an upstream learns the
                    // prompt's size only at the end.
                    if let Some(n) = usage.input_tokens {
                        m.usage.input_tokens = n;
                    }
                    if let Some(n) = usage.cache_read_input_tokens {
                        m.usage.cache_read_input_tokens = n;
                    }
                    if let Some(n) = usage.cache_creation_input_tokens {
                        m.usage.cache_creation_input_tokens = n;
                    }
                }
            }
            StreamEvent::Error { error } => {
                return Err(ApiError::new(error.error_type, error.message))
            }
            StreamEvent::MessageStop => break,
            StreamEvent::Ping => {}
        }
    }
    match message {
        Some(m) if m.stop_reason.is_some() => Ok(m),
        _ => Err(ApiError::internal(
            "the backend ended without finishing the message",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(events: Vec<BackendEvent>) -> Message {
        let mut assembler = Assembler::new("msg_1".into(), "m".into());
        let stream: Vec<StreamEvent> = events
            .into_iter()
            .flat_map(|event| assembler.push(Ok(event)))
            .collect();
        futures::executor::block_on(collect(futures::stream::iter(stream))).unwrap()
    }

    fn finished(reason: FinishReason) -> BackendEvent {
        BackendEvent::Finished {
            reason,
            output_tokens: 5,
            thinking_tokens: 0,
            prompt: None,
        }
    }

    #[test]
    fn a_streamed_call_cut_by_max_tokens_keeps_the_input_it_had() {
        let message = reply(vec![
            BackendEvent::Started {
                prompt: PromptUsage::default(),
            },
            BackendEvent::ToolUseStart {
                name: "Write".into(),
            },
            BackendEvent::ToolInput(r#"{"path": "a.txt", "content": "hel"#.into()),
            finished(FinishReason::MaxTokens),
        ]);
        assert_eq!(message.stop_reason, Some(StopReason::MaxTokens));
        let [ContentBlock::ToolUse { name, input, .. }] = message.content.as_slice() else {
            panic!("{:?}", message.content);
        };
        assert_eq!(name, "Write");
        // The unfinished string is left out, as the SDKs' stream accumulators leave it.
        assert_eq!(input, &json!({"path": "a.txt"}));
    }

    #[test]
    fn text_after_a_streamed_call_opens_its_own_block() {
        let message = reply(vec![
            BackendEvent::ToolUseStart { name: "f".into() },
            BackendEvent::ToolInput("{\"a\": 1}".into()),
            BackendEvent::ToolUse {
                name: "f".into(),
                input: json!({"a": 1}),
            },
            BackendEvent::Text("done".into()),
            finished(FinishReason::EndTurn),
        ]);
        assert!(
            matches!(&message.content[0], ContentBlock::ToolUse { input, .. } if input == &json!({"a": 1}))
        );
        assert_eq!(message.content[1], ContentBlock::text("done"));
    }

    #[test]
    fn an_upstreams_cited_blocks_stay_apart_with_their_citations() {
        let citation = json!({"type": "search_result_location", "cited_text": "Every 300 hours."});
        let message = reply(vec![
            BackendEvent::Text("It says: ".into()),
            BackendEvent::TextEnd,
            BackendEvent::Citation(citation.clone()),
            BackendEvent::Text("every 300 hours".into()),
            BackendEvent::TextEnd,
            finished(FinishReason::EndTurn),
        ]);
        assert_eq!(message.content.len(), 2, "{:?}", message.content);
        assert_eq!(message.content[0], ContentBlock::text("It says: "));
        let ContentBlock::Text { text, citations } = &message.content[1] else {
            panic!("{:?}", message.content);
        };
        assert_eq!(text, "every 300 hours");
        assert_eq!(citations.as_deref(), Some(&[citation][..]));
    }
}
