//! The loop inside one API call: the model answers; when it calls a server tool, the
//! server runs it, streams the call and its result as `server_tool_use` and
//! `*_tool_result` blocks, adds both to the conversation and lets the model go on. It ends
//! when a round calls no server tool, calls a client tool (the client runs those), runs out
//! of `max_tokens`, or reaches the round cap, where it pauses (`pause_turn`) for the client
//! to send the conversation back.
//!
//! [`ToolRunner`] is a [`Backend`] around the model's backend, so every path that admits a
//! request (messages, batches, chat completions, compaction) runs the loop the same way.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use missive_backend::{
    Backend, BackendError, BackendEvent, EventStream, FinishReason, GenerateRequest,
    ModelDescriptor, PromptUsage, ServerToolRun, Turn,
};
use missive_protocol::content::{ContentBlock, ContentBlockParam, ToolResultContent};
use missive_protocol::context::{IterationKind, IterationUsage};
use missive_protocol::messages::Role;
use missive_protocol::tools::ToolChoice;
use serde_json::Value;

use crate::code_execution::Container;
use crate::mcp::Session;
use crate::spec::{Kind, ServerTool};
use crate::{Files, Meter, Toolbox};

/// What a workspace's policy does to a text before a model reads it (redaction).
pub type Guard = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A backend whose model may call the request's server tools. Cloning shares them.
#[derive(Clone)]
pub struct ToolRunner {
    inner: Arc<dyn Backend>,
    tools: Arc<Vec<ServerTool>>,
    sessions: Arc<Vec<Session>>,
    container: Option<Arc<Container>>,
    files: Option<Arc<dyn Files>>,
    toolbox: Arc<Toolbox>,
    /// The workspace's URL allowlist, on top of the tools' own domain filters.
    allowlist: Option<Arc<[String]>>,
    /// Applied to every result before the model reads it.
    guard: Option<Guard>,
    /// The advisor's model, when the request has an advisor.
    advisor: Option<Arc<dyn Backend>>,
    /// Where the advisor's tokens are billed.
    meter: Option<Arc<dyn Meter>>,
}

impl ToolRunner {
    pub fn new(
        inner: Arc<dyn Backend>,
        prepared: crate::Prepared,
        toolbox: Arc<Toolbox>,
        allowlist: Option<Vec<String>>,
        files: Option<Arc<dyn Files>>,
    ) -> Self {
        Self {
            inner,
            tools: Arc::new(prepared.tools),
            sessions: Arc::new(prepared.sessions),
            container: prepared.container.map(Arc::new),
            files,
            toolbox,
            allowlist: allowlist.map(Into::into),
            guard: None,
            advisor: prepared.advisor,
            meter: None,
        }
    }

    /// The advisor's tokens are billed through `meter` as each call ends.
    pub fn with_meter(mut self, meter: Arc<dyn Meter>) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Results pass through `guard` (the workspace's redaction) before the model reads them.
    pub fn with_guard(mut self, guard: Option<Guard>) -> Self {
        self.guard = guard;
        self
    }
}

#[async_trait::async_trait]
impl Backend for ToolRunner {
    fn descriptor(&self) -> &ModelDescriptor {
        self.inner.descriptor()
    }

    async fn count_tokens(&self, request: &GenerateRequest) -> Result<u32, BackendError> {
        self.inner.count_tokens(request).await
    }

    async fn generate(&self, request: GenerateRequest) -> Result<EventStream, BackendError> {
        // The first round's errors (prompt too long, overload) keep their HTTP status.
        let first = self.inner.generate(request.clone()).await?;
        let round = Rounds {
            runner: self.clone(),
            request,
        };
        Ok(Box::pin(round.run(first)))
    }
}

/// One generation's loop: the runner's tools, and the conversation as it grows.
struct Rounds {
    runner: ToolRunner,
    request: GenerateRequest,
}

/// What the model did in one round, besides what was streamed.
#[derive(Default)]
struct Round {
    text: String,
    server_calls: Vec<(String, Value)>,
    client_calls: bool,
    finish: Option<(FinishReason, u32, u32, PromptUsage)>,
}

impl Rounds {
    fn run(
        mut self,
        first: EventStream,
    ) -> impl futures::Stream<Item = Result<BackendEvent, BackendError>> + Send {
        async_stream::stream! {
            let mut events = first;
            let mut prompt_total = PromptUsage::default();
            let mut output_total = 0u32;
            let mut thinking_total = 0u32;
            let mut uses: HashMap<String, u32> = HashMap::new();
            for round_no in 1.. {
                let mut round = Round::default();
                let mut started = PromptUsage::default();
                let mut hiding = false;
                while let Some(event) = events.next().await {
                    match event {
                        Err(err) => {
                            yield Err(err);
                            return;
                        }
                        Ok(BackendEvent::Started { prompt }) => {
                            started = prompt;
                            if round_no == 1 {
                                yield Ok(BackendEvent::Started { prompt });
                            }
                        }
                        Ok(BackendEvent::Text(text)) => {
                            round.text.push_str(&text);
                            yield Ok(BackendEvent::Text(text));
                        }
                        Ok(BackendEvent::ToolUseStart { name }) if self.is_server(&name) => {
                            hiding = true;
                        }
                        Ok(BackendEvent::ToolInput(_)) if hiding => {}
                        Ok(BackendEvent::ToolUse { name, input }) if self.is_server(&name) => {
                            hiding = false;
                            round.server_calls.push((name, input));
                        }
                        Ok(event @ BackendEvent::ToolUse { .. }) => {
                            round.client_calls = true;
                            yield Ok(event);
                        }
                        Ok(BackendEvent::Finished { reason, output_tokens, thinking_tokens, prompt }) => {
                            round.finish = Some((reason, output_tokens, thinking_tokens, prompt.unwrap_or(started)));
                            break;
                        }
                        Ok(other) => yield Ok(other),
                    }
                }
                let Some((reason, output, thinking, prompt)) = round.finish.take() else {
                    yield Err(BackendError::Generation("the model's stream ended before it finished".into()));
                    return;
                };
                add(&mut prompt_total, &prompt);
                output_total = output_total.saturating_add(output);
                // With an advisor the reply reports its steps: this round, then each advice.
                if self.runner.advisor.is_some() {
                    yield Ok(BackendEvent::Step(prompt.step(IterationKind::Message, output)));
                }
                thinking_total = thinking_total.saturating_add(thinking);
                let finished = |reason| Ok(BackendEvent::Finished {
                    reason,
                    output_tokens: output_total,
                    thinking_tokens: thinking_total,
                    prompt: Some(prompt_total),
                });
                if round.server_calls.is_empty() {
                    yield finished(reason);
                    return;
                }
                let mut calls = Vec::new();
                let mut results = Vec::new();
                for (name, input) in std::mem::take(&mut round.server_calls) {
                    let Some(tool) = self.runner.tools.iter().find(|t| t.name == name).cloned() else {
                        continue;
                    };
                    let mcp_server = match &tool.kind {
                        Kind::Mcp { server } => Some(server.clone()),
                        _ => None,
                    };
                    let id = missive_protocol::ids::new_id(if mcp_server.is_some() { "mcptoolu" } else { "srvtoolu" });
                    let (outcome, advice) = self.call(&tool, &input, &id, &round.text, &mut uses).await;
                    if let Some(advice) = advice {
                        if let Some(meter) = &self.runner.meter {
                            if let Err(why) = meter.charge(&advice).await {
                                yield Err(BackendError::Generation(format!("recording the advisor's usage failed: {why}")));
                                return;
                            }
                        }
                        yield Ok(BackendEvent::Step(advice));
                    }
                    calls.push(ContentBlockParam::ToolUse {
                        id: id.clone(),
                        name: name.clone(),
                        input: input.clone(),
                        cache_control: None,
                    });
                    let for_model = match &self.runner.guard {
                        Some(guard) => guard(&outcome.for_model),
                        None => outcome.for_model,
                    };
                    // Tools a search found load as a `tool_reference` loads them: the model
                    // reads the references, and the definitions join the next round's tools.
                    let loaded = self.load(&tool, crate::tool_search::found(&outcome.result));
                    let content = if loaded.is_empty() {
                        ToolResultContent::Text(for_model)
                    } else {
                        ToolResultContent::Blocks(loaded)
                    };
                    results.push(ContentBlockParam::ToolResult {
                        tool_use_id: id.clone(),
                        content: Some(content),
                        is_error: outcome.is_error.then_some(true),
                        cache_control: None,
                    });
                    let call = match mcp_server {
                        Some(server_name) => ContentBlock::McpToolUse { id, name, server_name, input },
                        None => ContentBlock::ServerToolUse { id, name, input },
                    };
                    yield Ok(BackendEvent::ServerTool(Box::new(ServerToolRun {
                        call,
                        result: outcome.result,
                        usage: outcome.usage,
                        container: self.runner.container.as_ref().map(|c| c.wire()),
                    })));
                }
                if round.client_calls {
                    yield finished(FinishReason::ToolUse);
                    return;
                }
                if round_no >= self.runner.toolbox.max_rounds {
                    yield finished(FinishReason::PauseTurn);
                    return;
                }
                let left = self.request.max_tokens.saturating_sub(output_total);
                if left == 0 {
                    yield finished(FinishReason::MaxTokens);
                    return;
                }
                self.continue_with(round.text, calls, results, left, &uses);
                events = match self.runner.inner.generate(self.request.clone()).await {
                    Ok(events) => events,
                    Err(err) => {
                        yield Err(err);
                        return;
                    }
                };
            }
        }
    }

    /// Adds the deferred tools a search of `tool` found to the tools of later rounds; the
    /// `tool_reference` blocks that say so to the model.
    fn load(&mut self, tool: &ServerTool, names: Vec<String>) -> Vec<ContentBlockParam> {
        let Kind::ToolSearch { catalog, .. } = &tool.kind else {
            return Vec::new();
        };
        let mut references = Vec::with_capacity(names.len());
        for name in names {
            let Some(definition) = catalog.tool(&name) else {
                continue;
            };
            if !self.request.tools.iter().any(|t| t.name == name) {
                self.request.tools.push(definition.clone());
            }
            references.push(ContentBlockParam::ToolReference {
                tool_name: name,
                cache_control: None,
            });
        }
        references
    }

    fn is_server(&self, name: &str) -> bool {
        self.runner.tools.iter().any(|t| t.name == name)
    }

    /// Runs one call, within the per-call time limit and the tool's `max_uses`; with an
    /// advisor's answer, its usage. `said` is what the model wrote this round before it.
    async fn call(
        &self,
        tool: &ServerTool,
        input: &Value,
        id: &str,
        said: &str,
        uses: &mut HashMap<String, u32>,
    ) -> (crate::Outcome, Option<IterationUsage>) {
        let used = uses.entry(tool.name.clone()).or_default();
        if tool.max_uses.is_some_and(|max| *used >= max) {
            return (
                crate::Outcome::error_for(tool, id, "max_uses_exceeded"),
                None,
            );
        }
        *used += 1;
        let running = async {
            let outcome = match &tool.kind {
                Kind::WebFetch {
                    max_content_tokens, ..
                } => {
                    crate::web_fetch::run(
                        &self.runner.toolbox,
                        tool,
                        input,
                        &self.conversation(),
                        self.runner.allowlist.as_deref(),
                        *max_content_tokens,
                        id,
                    )
                    .await
                }
                Kind::WebSearch { .. } => {
                    crate::web_search::run(&self.runner.toolbox, tool, input, id).await
                }
                Kind::Mcp { server } => self.call_mcp(server, tool, input, id).await,
                Kind::Bash | Kind::TextEditor => self.call_code(tool, input, id).await,
                Kind::ToolSearch { mode, catalog } => {
                    crate::tool_search::run(*mode, catalog, input, id)
                }
                Kind::Advisor {
                    max_tokens,
                    caching,
                    ..
                } => {
                    return match &self.runner.advisor {
                        Some(advisor) => {
                            crate::advisor::run(
                                advisor.as_ref(),
                                &self.request,
                                said,
                                *max_tokens,
                                caching.as_ref(),
                                id,
                            )
                            .await
                        }
                        None => (crate::Outcome::error_for(tool, id, "unavailable"), None),
                    };
                }
            };
            (outcome, None)
        };
        // An MCP session keeps its own limit and says so in the result; an outer
        // deadline of the same length would race it and win with a vaguer message.
        if matches!(tool.kind, Kind::Mcp { .. }) {
            return running.await;
        }
        let late = match tool.kind {
            Kind::Advisor { .. } => "execution_time_exceeded",
            _ => "unavailable",
        };
        match tokio::time::timeout(self.runner.toolbox.call_timeout, running).await {
            Ok(ran) => ran,
            Err(_) => (crate::Outcome::error_for(tool, id, late), None),
        }
    }

    /// Runs a command or an edit in the request's container.
    async fn call_code(&self, tool: &ServerTool, input: &Value, id: &str) -> crate::Outcome {
        let (Some(container), Some(containers)) =
            (&self.runner.container, &self.runner.toolbox.containers)
        else {
            return crate::Outcome::error_for(tool, id, "unavailable");
        };
        match tool.kind {
            Kind::TextEditor => crate::code_execution::text_editor(container, input, id).await,
            _ => {
                crate::code_execution::bash(
                    container,
                    &containers.limits,
                    self.runner.files.as_ref(),
                    input,
                    id,
                )
                .await
            }
        }
    }

    /// Runs an MCP tool on the server that listed it; its own time limit applies.
    async fn call_mcp(
        &self,
        server: &str,
        tool: &ServerTool,
        input: &Value,
        id: &str,
    ) -> crate::Outcome {
        let Some(session) = self.runner.sessions.iter().find(|s| s.name == server) else {
            return crate::Outcome::error_for(tool, id, "unavailable");
        };
        let (texts, is_error) = session.call(&tool.name, input).await;
        crate::Outcome {
            result: ContentBlock::McpToolResult {
                tool_use_id: id.to_owned(),
                is_error,
                content: crate::mcp::result_content(&texts),
            },
            for_model: texts.join("\n"),
            is_error,
            usage: Default::default(),
        }
    }

    /// Every text the model has been given: the system prompt and the user turns, which
    /// hold the results of earlier calls. A URL the model may fetch must appear here.
    fn conversation(&self) -> String {
        let mut text = self.request.system_text();
        for turn in self
            .request
            .turns
            .iter()
            .filter(|t| t.role != Role::Assistant)
        {
            text.push('\n');
            text.push_str(&serde_json::to_string(&turn.blocks).unwrap_or_default());
        }
        text
    }

    /// The conversation after this round: the model's text and calls, then the results.
    /// Later rounds choose freely: a forced call was made, and forcing it again would
    /// only repeat it. When no tool is left to call (every server tool has spent its
    /// `max_uses` and the request has no client tools), they call none: a call could only
    /// be refused, and a small model would spend its rounds repeating it.
    fn continue_with(
        &mut self,
        text: String,
        calls: Vec<ContentBlockParam>,
        results: Vec<ContentBlockParam>,
        max_tokens: u32,
        uses: &HashMap<String, u32>,
    ) {
        let mut blocks = Vec::with_capacity(calls.len() + 1);
        if !text.is_empty() {
            blocks.push(ContentBlockParam::Text {
                text,
                cache_control: None,
                citations: None,
            });
        }
        blocks.extend(calls);
        let turns = &mut self.request.turns;
        match turns.last_mut() {
            // The reply continued a prefill: the round's text follows it.
            Some(last) if last.role == Role::Assistant => last.blocks.extend(blocks),
            _ => turns.push(Turn {
                role: Role::Assistant,
                blocks,
            }),
        }
        turns.push(Turn {
            role: Role::User,
            blocks: results,
        });
        self.request.max_tokens = max_tokens;
        self.request.tool_choice = match self.request.tool_choice.take() {
            Some(
                ToolChoice::Any {
                    disable_parallel_tool_use,
                }
                | ToolChoice::Tool {
                    disable_parallel_tool_use,
                    ..
                },
            ) => Some(ToolChoice::Auto {
                disable_parallel_tool_use,
            }),
            other => other,
        };
        let spent = self.runner.tools.iter().all(|tool| {
            tool.max_uses
                .is_some_and(|max| uses.get(&tool.name).is_some_and(|used| *used >= max))
        });
        if spent && self.request.tools.len() == self.runner.tools.len() {
            self.request.tool_choice = Some(ToolChoice::None);
        }
    }
}

fn add(total: &mut PromptUsage, round: &PromptUsage) {
    total.input_tokens = total.input_tokens.saturating_add(round.input_tokens);
    total.cache_read_input_tokens = total
        .cache_read_input_tokens
        .saturating_add(round.cache_read_input_tokens);
    total.cache_creation_5m_input_tokens = total
        .cache_creation_5m_input_tokens
        .saturating_add(round.cache_creation_5m_input_tokens);
    total.cache_creation_1h_input_tokens = total
        .cache_creation_1h_input_tokens
        .saturating_add(round.cache_creation_1h_input_tokens);
}
