//! A deterministic backend for tests of our own code (HTTP, SSE, errors, cancellation).
//! It never stands in for a model in a test about model behaviour.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use missive_protocol::models::{ModelCapabilities, ThinkingCapability};
use missive_protocol::tools::ThinkingConfig;

use crate::reasoning::{Segment, ThinkSplitter};

use crate::{
    Backend, BackendError, BackendEvent, EventStream, FinishReason, GenerateRequest,
    ModelDescriptor, PromptUsage,
};

/// Replies with a fixed list of pieces, one piece per output token.
#[derive(Debug, Clone)]
pub struct ScriptedBackend {
    descriptor: ModelDescriptor,
    pieces: Vec<String>,
    delay: Duration,
    fail_after: Option<usize>,
    tool_call: Option<(String, serde_json::Value)>,
    /// The call is made only while the conversation holds no tool result yet.
    call_once: bool,
    /// The pieces hold a `<think>…</think>` thought, as a reasoning model writes one.
    reasoning: bool,
    /// Generations that may run at once; past it, `QueueFull`.
    capacity: Option<usize>,
    /// Generations whose stream is still alive; tests watch it fall on disconnect.
    live: Arc<AtomicUsize>,
}

impl ScriptedBackend {
    pub fn new(id: &str, pieces: &[&str]) -> Self {
        Self {
            descriptor: ModelDescriptor {
                id: id.to_owned(),
                display_name: format!("Scripted {id}"),
                created_at: "2026-01-01T00:00:00Z".to_owned(),
                max_input_tokens: 1000,
                max_output_tokens: 4096,
                capabilities: ModelCapabilities::default(),
                runs_server_tools: false,
            },
            pieces: pieces.iter().map(|p| (*p).to_owned()).collect(),
            delay: Duration::ZERO,
            fail_after: None,
            tool_call: None,
            call_once: false,
            reasoning: false,
            capacity: None,
            live: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Waits this long before each piece, so a test can disconnect mid-stream.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Fails with a generation error after this many pieces.
    pub fn failing_after(mut self, pieces: usize) -> Self {
        self.fail_after = Some(pieces);
        self
    }

    /// A reasoning model: its pieces open with a `<think>` thought, split into thinking
    /// events when thinking is asked for (and cut at the budget), dropped otherwise.
    pub fn reasoning(mut self) -> Self {
        self.reasoning = true;
        self.descriptor.capabilities.thinking = ThinkingCapability::all(true);
        self
    }

    /// At most `generations` run at once; another is refused as a full queue.
    pub fn with_capacity(mut self, generations: usize) -> Self {
        self.capacity = Some(generations);
        self
    }

    /// Ends the reply with this tool call (`stop_reason: tool_use`).
    pub fn calling_tool(mut self, name: &str, input: serde_json::Value) -> Self {
        self.tool_call = Some((name.to_owned(), input));
        self
    }

    /// As [`Self::calling_tool`], but only while no tool result is in the conversation: a
    /// model that calls, reads the result, and answers.
    pub fn calling_tool_once(mut self, name: &str, input: serde_json::Value) -> Self {
        self.call_once = true;
        self.calling_tool(name, input)
    }

    pub fn with_context_window(mut self, tokens: u32) -> Self {
        self.descriptor.max_input_tokens = tokens;
        self
    }

    /// How many generations are still running.
    pub fn live_generations(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.live)
    }

    /// One token per whitespace-separated word of the prompt (text, tool results and tool
    /// descriptions), plus one per turn.
    fn prompt_tokens(request: &GenerateRequest) -> u32 {
        use missive_protocol::content::{ContentBlockParam, ToolResultContent};
        let words = |text: &str| text.split_whitespace().count();
        let block_words = |block: &ContentBlockParam| match block {
            ContentBlockParam::Text { text, .. } => words(text),
            ContentBlockParam::Thinking { thinking, .. } => words(thinking),
            ContentBlockParam::ToolResult {
                content: Some(ToolResultContent::Text(text)),
                ..
            } => words(text),
            _ => 0,
        };
        let total = words(&request.system_text())
            + request
                .tools
                .iter()
                .map(|t| words(t.description.as_deref().unwrap_or_default()))
                .sum::<usize>()
            + request
                .turns
                .iter()
                .map(|turn| turn.blocks.iter().map(block_words).sum::<usize>() + 1)
                .sum::<usize>();
        u32::try_from(total).unwrap_or(u32::MAX)
    }
}

/// Decrements the live count when the generation's stream is dropped.
struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Backend for ScriptedBackend {
    fn descriptor(&self) -> &ModelDescriptor {
        &self.descriptor
    }

    async fn count_tokens(&self, request: &GenerateRequest) -> Result<u32, BackendError> {
        Ok(Self::prompt_tokens(request))
    }

    async fn generate(&self, request: GenerateRequest) -> Result<EventStream, BackendError> {
        let tokens = Self::prompt_tokens(&request);
        if tokens > self.descriptor.max_input_tokens {
            return Err(BackendError::PromptTooLong {
                tokens,
                max: self.descriptor.max_input_tokens,
            });
        }
        let running = self.live.fetch_add(1, Ordering::SeqCst);
        if self.capacity.is_some_and(|cap| running >= cap) {
            self.live.fetch_sub(1, Ordering::SeqCst);
            return Err(BackendError::QueueFull { retry_after_s: 1 });
        }
        let guard = LiveGuard(Arc::clone(&self.live));
        let this = self.clone();
        let stream = async_stream_events(this, request, tokens, guard);
        Ok(stream)
    }
}

fn async_stream_events(
    backend: ScriptedBackend,
    request: GenerateRequest,
    prompt_tokens: u32,
    guard: LiveGuard,
) -> EventStream {
    let limit = request.max_tokens as usize;
    let mut events: Vec<Result<BackendEvent, BackendError>> = vec![Ok(BackendEvent::Started {
        prompt: PromptUsage::uncached(prompt_tokens),
    })];
    let mut text = String::new();
    let mut reason = FinishReason::EndTurn;
    let mut produced = 0u32;
    let mut thinking_tokens = 0u32;
    let show_thinking = request.thinking.as_ref().is_some_and(ThinkingConfig::is_on);
    let budget = request
        .thinking
        .as_ref()
        .and_then(ThinkingConfig::budget_tokens);
    let mut splitter = backend.reasoning.then(|| ThinkSplitter::new(false));
    // Once the budget closes the thought, the rest of the scripted thought is never written.
    let mut cut = false;
    for (i, piece) in backend.pieces.iter().enumerate() {
        if backend.fail_after == Some(i) {
            events.push(Err(BackendError::Generation("scripted failure".into())));
            break;
        }
        if produced as usize >= limit {
            reason = FinishReason::MaxTokens;
            break;
        }
        let segments = match splitter.as_mut() {
            Some(splitter) => splitter.push(piece),
            None => vec![Segment::Text(piece.clone())],
        };
        let mut answer = String::new();
        for segment in segments {
            match segment {
                Segment::Thinking(_) if cut || !show_thinking => {}
                Segment::Thinking(thought) => {
                    thinking_tokens += 1;
                    produced += 1;
                    events.push(Ok(BackendEvent::Thinking(thought)));
                    if budget.is_some_and(|b| thinking_tokens >= b) {
                        cut = true;
                    }
                }
                Segment::Text(t) => answer.push_str(&t),
            }
        }
        if answer.is_empty() {
            continue;
        }
        text.push_str(&answer);
        produced += 1;
        if let Some(stop) = request
            .stop_sequences
            .iter()
            .find(|s| text.contains(s.as_str()))
        {
            let visible = answer.split(stop.as_str()).next().unwrap_or_default();
            if !visible.is_empty() {
                events.push(Ok(BackendEvent::Text(visible.to_owned())));
            }
            reason = FinishReason::StopSequence(stop.clone());
            break;
        }
        events.push(Ok(BackendEvent::Text(answer)));
    }
    let answered = request.turns.iter().flat_map(|t| &t.blocks).any(|b| {
        matches!(
            b,
            missive_protocol::content::ContentBlockParam::ToolResult { .. }
        )
    });
    let call = backend
        .tool_call
        .as_ref()
        .filter(|_| !(backend.call_once && answered));
    if let (FinishReason::EndTurn, Some((name, input))) = (&reason, call) {
        // Streamed as the engine streams a call: its input in pieces, then the whole call.
        events.push(Ok(BackendEvent::ToolUseStart { name: name.clone() }));
        let json = input.to_string();
        let half = json
            .char_indices()
            .nth(json.chars().count() / 2)
            .map_or(0, |(i, _)| i);
        events.push(Ok(BackendEvent::ToolInput(json[..half].to_owned())));
        events.push(Ok(BackendEvent::ToolInput(json[half..].to_owned())));
        events.push(Ok(BackendEvent::ToolUse {
            name: name.clone(),
            input: input.clone(),
        }));
        produced += 1;
        reason = FinishReason::ToolUse;
    }
    if !matches!(events.last(), Some(Err(_))) {
        events.push(Ok(BackendEvent::Finished {
            reason,
            output_tokens: produced,
            thinking_tokens,
            prompt: None,
        }));
    }
    let delay = backend.delay;
    let stream = futures::stream::iter(events).then(move |event| {
        let _keep = &guard;
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            event
        }
    });
    Box::pin(stream)
}
