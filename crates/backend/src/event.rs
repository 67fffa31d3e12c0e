/// How the prompt's tokens were served: the three parts always sum to the prompt length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromptUsage {
    pub input_tokens: u32,
    pub cache_read_input_tokens: u32,
    pub cache_creation_5m_input_tokens: u32,
    pub cache_creation_1h_input_tokens: u32,
}

impl PromptUsage {
    /// A prompt served with no cache involvement.
    pub fn uncached(tokens: u32) -> Self {
        Self {
            input_tokens: tokens,
            ..Self::default()
        }
    }

    /// One sampling step of this prompt and `output_tokens`, as an entry of
    /// `usage.iterations`.
    pub fn step(
        &self,
        kind: missive_protocol::context::IterationKind,
        output_tokens: u32,
    ) -> missive_protocol::context::IterationUsage {
        missive_protocol::context::IterationUsage {
            kind,
            input_tokens: self.input_tokens,
            output_tokens,
            cache_creation_input_tokens: self
                .cache_creation_5m_input_tokens
                .saturating_add(self.cache_creation_1h_input_tokens),
            cache_read_input_tokens: self.cache_read_input_tokens,
            cache_creation: missive_protocol::usage::CacheCreation {
                ephemeral_5m_input_tokens: self.cache_creation_5m_input_tokens,
                ephemeral_1h_input_tokens: self.cache_creation_1h_input_tokens,
            },
            model: None,
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    EndTurn,
    MaxTokens,
    StopSequence(String),
    /// The context window filled before the reply ended.
    ContextWindowExceeded,
    /// The reply ended with tool calls for the client to run.
    ToolUse,
    /// The conversation was compacted and the reply paused there.
    Compaction,
    /// The server ran as many rounds of its own tools as one request may; the client
    /// resumes by sending the conversation back.
    PauseTurn,
}

/// A server tool's call and result, each one whole content block, and what the call
/// counts for in `usage.server_tool_use`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerToolRun {
    pub call: missive_protocol::content::ContentBlock,
    pub result: missive_protocol::content::ContentBlock,
    pub usage: missive_protocol::usage::ServerToolUsage,
    /// The code execution container the call ran in (`{id, expires_at}`).
    pub container: Option<serde_json::Value>,
}

/// One step of a generation, in order: `Started`, then output, then `Finished`.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendEvent {
    /// The prompt has been processed; output follows.
    Started { prompt: PromptUsage },
    /// Visible text. Always whole UTF-8 characters; never part of a stop sequence.
    Text(String),
    /// Part of the model's thought, before its answer (extended thinking).
    Thinking(String),
    /// A citation of the text being written (a Claude API upstream's `citations_delta`).
    Citation(serde_json::Value),
    /// The text being written ends its block: text after it starts a new one, so a Claude
    /// API upstream's text blocks keep their bounds and each its own citations.
    TextEnd,
    /// A tool call has begun and its input is streamed: [`BackendEvent::ToolInput`] pieces
    /// follow, then the call's `ToolUse`, which closes it. A backend that learns a call
    /// whole sends only `ToolUse`.
    ToolUseStart { name: String },
    /// The next piece of the open call's input, as JSON text: the pieces concatenated are
    /// always a prefix of the input's JSON.
    ToolInput(String),
    /// One complete tool call; the server gives it its `toolu_` id.
    ToolUse {
        name: String,
        input: serde_json::Value,
    },
    /// A tool the server ran for the model.
    ServerTool(Box<ServerToolRun>),
    /// One step of a reply that reports its steps (`usage.iterations`): a round of a tool
    /// loop, or an advisor's answer, each with its own counts. Only a tool loop with an
    /// advisor sends them.
    Step(missive_protocol::context::IterationUsage),
    /// The code execution container the reply used, learned apart from any tool run (a
    /// Claude API upstream names it in its last delta).
    Container(serde_json::Value),
    Finished {
        reason: FinishReason,
        output_tokens: u32,
        /// Of `output_tokens`, those spent thinking.
        thinking_tokens: u32,
        /// The prompt's accounting, when the backend learns it only at the end (upstream
        /// servers report usage with their last chunk); replaces `Started`'s.
        prompt: Option<PromptUsage>,
    },
}
