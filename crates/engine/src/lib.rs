//! The embedded engine: serves GGUF models with llama.cpp. The only crate that links it.
//!
//! Handlers render the prompt with the model's own chat template and tokenise it on their
//! own task; one OS thread per model (`engine-<name>`) owns the llama.cpp context and runs
//! the generation loop with continuous batching, fed by a bounded queue (full:
//! `QueueFull`, a 529). Each request
//! reads its events from its own channel; when that channel's receiver is dropped (the
//! client went away), the loop sees it at its next step and stops the generation.

mod constraint;
mod described_tools;
mod error;
mod model;
pub mod output;
mod placement;
mod prompt;
pub mod prompt_cache;
mod queue_wait;
mod scheduler;
mod special;
mod telemetry;
pub mod template;
mod token_offsets;

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use missive_backend::{Backend, BackendError, EventStream, GenerateRequest, ModelDescriptor};
use missive_protocol::models::{
    EffortCapability, ModelCapabilities, ServerToolsCapability, Supported,
};

pub use error::Error;
pub use model::{DraftModel, KvLayout, ModelConfig};
pub use placement::{FlashAttention, KvCacheFormat, Placement, PlacementError, Split};
pub use template::ToolFormat;

use crate::constraint::Grammars;
use crate::output::harmony::{self, HarmonyStream};
use crate::output::named_call;
use crate::prompt_cache::{Breakpoint, CacheLedger, Clock};
pub use crate::scheduler::{
    CacheStats, DiskCacheSettings, DiskCacheStats, DraftSettings, DraftStats,
};
use crate::scheduler::{CacheTouch, ContextSettings, Job, Reasoning, ToolParsing};
use crate::template::ChatTemplate;
use missive_backend::reasoning::ThinkSplitter;
use missive_protocol::models::ThinkingCapability;
use missive_protocol::tools::{Effort, ThinkingConfig};

/// A loaded GGUF model behind the [`Backend`] trait.
pub struct EngineBackend {
    model: Arc<LlamaModel>,
    template: ChatTemplate,
    grammars: Grammars,
    cache_ledger: Arc<CacheLedger>,
    /// The model id, shared with jobs for their metrics labels.
    name: Arc<str>,
    /// The tokens of the family's thought close (`</think>`, harmony's `<|end|>`), forced
    /// when a thinking budget is spent.
    think_close: Arc<[LlamaToken]>,
    cache_stats: Arc<CacheStats>,
    draft_stats: Arc<DraftStats>,
    disk_stats: Arc<DiskCacheStats>,
    descriptor: ModelDescriptor,
    jobs: SyncSender<Job>,
    add_bos: bool,
    piece_lengths: token_offsets::PieceLengths,
    /// The vocabulary's control-token texts, fenced in client text.
    special: special::SpecialTokens,
    queue_wait: Arc<queue_wait::QueueWait>,
    default_sampling: missive_backend::Sampling,
}

impl EngineBackend {
    /// Loads the model and starts its engine thread.
    pub fn load(config: &ModelConfig) -> Result<Self, Error> {
        Self::load_with_clock(config, Arc::new(prompt_cache::SystemClock))
    }

    /// Host-memory prefix cache counters (bytes, entries, spills, restores).
    pub fn cache_stats(&self) -> &CacheStats {
        &self.cache_stats
    }

    /// Disk prefix cache counters (entries, bytes, writes, hits, bytes read, damaged).
    pub fn disk_cache_stats(&self) -> &DiskCacheStats {
        &self.disk_stats
    }

    /// Prompt-lookup counters (tokens guessed, tokens kept).
    pub fn draft_stats(&self) -> &DraftStats {
        &self.draft_stats
    }

    /// As [`EngineBackend::load`], with prompt-cache TTLs measured by `clock`.
    pub fn load_with_clock(config: &ModelConfig, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        config.placement.check()?;
        let model = Arc::new(model::load(&config.path, &config.placement)?);
        let layers = placement::layer_placement(&model, &config.placement);
        tracing::info!(
            model = %config.name,
            layers = layers.layers,
            on_gpu = layers.offloaded,
            gpus = ?layers.gpus,
            flash_attention = ?config.placement.flash_attention,
            kv_cache_type = config.placement.kv_cache_type.name(),
            "model placement"
        );
        telemetry::layers(&config.name, &layers);
        let mut template = model::chat_template(&model, config.chat_template.as_deref())?;
        if let Some(format) = config.tool_format {
            template = template.with_tool_format(format);
        }
        tracing::info!(model = %config.name, tool_format = ?template.tool_format(), "chat template");
        let grammars = Grammars::new(&model).map_err(Error::Grammar)?;
        let n_ctx = config.context_size.min(model.n_ctx_train()).max(256);
        let slots = config.parallel.max(1);
        let per_slot_kv = config.kv_layout == KvLayout::PerSlot;
        tracing::info!(
            model = %config.name,
            per_slot_kv,
            context = n_ctx,
            slots,
            "KV layout"
        );
        let settings = ContextSettings {
            n_ctx,
            per_slot_kv,
            n_batch: 2048,
            prefill_chunk: 256,
            threads: i32::try_from(config.threads.max(1)).unwrap_or(1),
            slots,
            host_cache_bytes: config.host_cache_bytes,
            // Worth a state save and restore from a few hundred tokens of prefill on.
            spill_min_tokens: config.cache_min_tokens.min(256),
            placement: config.placement,
            lookup_tokens: config.lookup_tokens,
            grammar_guesses: config.grammar_guesses,
            speculation_gate: config.speculation_gate,
            disk_min_tokens: config.cache_min_tokens,
        };
        let cache_ledger = Arc::new(CacheLedger::new(clock, config.cache_min_tokens));
        let disk_stats = Arc::new(DiskCacheStats::default());
        let disk = match &config.disk_cache {
            Some(disk) if disk.budget_bytes > 0 => {
                // Everything the layout of a sequence's cells depends on.
                let shape = format!(
                    "{}|ctx {n_ctx}|slots {slots}|per-slot {per_slot_kv}|{:?}",
                    env!("CARGO_PKG_VERSION"),
                    config.placement
                );
                let fingerprint = scheduler::fingerprint(&config.path, &shape)
                    .map_err(|err| Error::DiskCache(err.to_string()))?;
                let (disk, keys) = scheduler::DiskCache::open(
                    disk,
                    &config.name,
                    &fingerprint,
                    Arc::clone(&disk_stats),
                )
                .map_err(|err| Error::DiskCache(err.to_string()))?;
                tracing::info!(
                    model = %config.name,
                    entries = disk_stats.entries.load(std::sync::atomic::Ordering::Relaxed),
                    ledger_keys = keys.len(),
                    "disk prefix cache opened"
                );
                cache_ledger.restore(&keys);
                Some(disk)
            }
            _ => None,
        };
        let draft = match &config.draft {
            Some(draft) => Some((
                Arc::new(model::load_draft(&draft.path, &model, &config.placement)?),
                draft.settings,
            )),
            None => None,
        };
        let cache_stats = Arc::new(CacheStats::default());
        let draft_stats = Arc::new(DraftStats::default());
        let jobs = scheduler::spawn(
            &config.name,
            Arc::clone(&model),
            settings,
            config.queue_depth,
            scheduler::Parts {
                host_stats: Arc::clone(&cache_stats),
                draft_stats: Arc::clone(&draft_stats),
                disk,
                draft,
            },
        )?;
        let descriptor = ModelDescriptor {
            id: config.name.clone(),
            display_name: model::display_name(&model, &config.name),
            created_at: "2026-01-01T00:00:00Z".to_owned(),
            max_input_tokens: n_ctx,
            max_output_tokens: config.max_output_tokens.min(n_ctx),
            capabilities: ModelCapabilities {
                batch: Supported::from(false),
                citations: Supported::from(false),
                code_execution: Supported::from(false),
                image_input: Supported::from(false),
                pdf_input: Supported::from(false),
                structured_outputs: Supported::from(true),
                thinking: ThinkingCapability::all(template.reasons()),
                // The server applies context edits and compaction for every backend.
                context_management: Supported::from(true),
                effort: EffortCapability::all(template.reasons()),
                server_tools: ServerToolsCapability::default(),
            },
            runs_server_tools: false,
        };
        let add_bos = model.vocab().should_add_bos();
        let piece_lengths = token_offsets::PieceLengths::new(&model.vocab());
        let special = model::special_tokens(&model);
        let think_close = model
            .vocab()
            .tokenize(
                template.tool_format().thought_close().as_bytes(),
                false,
                true,
            )
            .into();
        Ok(Self {
            model,
            template,
            grammars,
            cache_ledger,
            name: Arc::from(config.name.as_str()),
            think_close,
            cache_stats,
            draft_stats,
            disk_stats,
            descriptor,
            jobs,
            add_bos,
            piece_lengths,
            special,
            queue_wait: Arc::new(queue_wait::QueueWait::new(
                slots as usize,
                config.max_queue_wait,
            )),
            default_sampling: config.default_sampling,
        })
    }

    /// Renders and tokenises the request's prompt exactly as generation feeds it, and
    /// says how its output is to be scanned for tool calls and where its cache
    /// breakpoints fall (when `breakpoints` is asked for).
    fn prompt_tokens(
        &self,
        request: &GenerateRequest,
        breakpoints: bool,
    ) -> Result<PromptTokens, BackendError> {
        let mut parts = prompt::prompt_parts(request, self.template.system_anywhere())?;
        let tools = prompt::tool_parsing(request, &parts, self.template.tool_format());
        if !tools.enabled {
            // `tool_choice: none`, or no tools: the model is not told about them.
            parts.tools.clear();
        }
        // Everything the client wrote is fenced, so only the template's own text can hold
        // control tokens (see `special`).
        for message in &mut parts.messages {
            self.special.fence_in_place(&mut message.content);
            for thought in [&mut message.reasoning_content, &mut message.thinking]
                .into_iter()
                .flatten()
            {
                self.special.fence_in_place(thought);
            }
            message
                .tool_calls
                .iter_mut()
                .for_each(|call| self.special.fence_json(call));
        }
        parts
            .tools
            .iter_mut()
            .for_each(|tool| self.special.fence_json(tool));
        match self.template.tool_format() {
            ToolFormat::Described => described_tools::describe(&mut parts),
            ToolFormat::DeepSeek => described_tools::deepseek(&mut parts, &named_call::V3_1),
            ToolFormat::DeepSeekR1 => described_tools::deepseek(&mut parts, &named_call::R1),
            ToolFormat::Llama3Json => prompt::one_call_per_turn(&mut parts.messages),
            ToolFormat::Harmony => {
                prompt::one_call_per_turn(&mut parts.messages);
                prompt::harmony_call_turns(&mut parts.messages);
            }
            ToolFormat::Mistral => prompt::mistral_ids(&mut parts.messages),
            ToolFormat::MistralArgs => {
                prompt::mistral_ids(&mut parts.messages);
                prompt::user_text_joins_results(&mut parts.messages);
            }
            ToolFormat::Hermes | ToolFormat::QwenXml | ToolFormat::GlmXml => {}
        }
        let thinking = request.thinking.as_ref().is_some_and(ThinkingConfig::is_on);
        let rendered = self
            .template
            .render_with_effort(
                &parts.messages,
                &parts.tools,
                true,
                thinking,
                reasoning_effort(request.effort, thinking),
            )
            .map_err(|err| BackendError::InvalidRequest(err.to_string()))?;
        // What the template rendered, before the prefill and a forced call's opening.
        let rendered_len = special::unfenced_len(&rendered);
        let opens_thought =
            self.template.reasons() && rendered.trim_end().ends_with(ThinkSplitter::OPEN);
        let mut fenced = rendered;
        // Harmony's reply opens a channel: a forced call's (below), the answer's for a
        // prefill or a structured output, the thought's when thinking was asked for.
        let harmony = (self.template.tool_format() == ToolFormat::Harmony).then(|| {
            let (start, open) = if tools.forced_partial.is_some() {
                (harmony::Start::Call, "")
            } else if parts.prefill.is_some() || request.output_format.is_some() {
                (harmony::Start::Final, harmony::FINAL_OPEN)
            } else if thinking {
                (harmony::Start::Analysis, harmony::ANALYSIS_OPEN)
            } else {
                (harmony::Start::Header, "")
            };
            fenced.push_str(open);
            start
        });
        if let Some(prefill) = &parts.prefill {
            fenced.push_str(&self.special.fence(prefill));
        }
        if let Some(partial) = &tools.forced_partial {
            // A forced call is the answer, not a thought: a template that always opens one
            // (DeepSeek R1's) has it closed first.
            if opens_thought {
                fenced.push_str(&format!("\n{}\n\n", ThinkSplitter::CLOSE));
            }
            fenced.push_str(tools.markers.trigger());
            fenced.push_str(partial);
        }
        let (text, segments) = special::unfence(&fenced);
        let template_text = &text[..rendered_len];
        let needles = match breakpoints {
            true => prompt::block_needles(request),
            false => Vec::new(),
        };
        let block_ends = match needles.iter().any(|n| n.breakpoint.is_some()) {
            true => prompt::block_ends(template_text, &request.system_text(), &needles),
            false => Vec::new(),
        };
        let starts_inside = match harmony {
            Some(start) => HarmonyStream::starts_inside_thought(start),
            None => opens_thought && tools.forced_partial.is_none(),
        };
        let reasoning = self.template.reasons().then(|| Reasoning {
            starts_inside,
            show: thinking,
            budget: request.thinking.as_ref().and_then(|t| t.budget_tokens()),
            close: Arc::clone(&self.think_close),
        });
        // Prompt content is never logged, at any level: logs outlive tenants' data.
        tracing::trace!(bytes = text.len(), "rendered prompt");
        let vocab = self.model.vocab();
        let mut tokens = Vec::with_capacity(text.len() / 3 + 1);
        let bos = vocab.bos();
        let mut rendered = Vec::with_capacity(text.len() / 3 + 1);
        for segment in &segments {
            rendered.extend(vocab.tokenize(segment.text.as_bytes(), false, segment.parse_special));
        }
        if self.add_bos && rendered.first() != Some(&bos) {
            tokens.push(bos);
        }
        let token_ends = match block_ends.is_empty() {
            true => None,
            false => self.piece_lengths.token_ends(&rendered, text.len()),
        };
        tokens.extend(rendered);
        let mut prompt = PromptTokens {
            tokens,
            text,
            token_ends,
            tools,
            breakpoints: Vec::new(),
            boundaries: block_ends.iter().map(|end| end.at).collect(),
            reasoning,
            harmony,
        };
        prompt.breakpoints = block_ends
            .iter()
            .filter_map(|end| {
                Some(Breakpoint {
                    at: end.at,
                    tokens: self.tokens_before(&prompt, end.at),
                    ttl: end.breakpoint?,
                })
            })
            .collect();
        Ok(prompt)
    }

    /// How many of the prompt's tokens its rendered text up to byte `at` makes.
    fn tokens_before(&self, prompt: &PromptTokens, at: usize) -> usize {
        let vocab = self.model.vocab();
        let bos = usize::from(self.add_bos && prompt.tokens.first() == Some(&vocab.bos()));
        let before = match &prompt.token_ends {
            Some(ends) => ends.tokens_before(at) + bos,
            None => {
                let text = &prompt.text.as_bytes()[..at.min(prompt.text.len())];
                let prefix = vocab.tokenize(text, false, true);
                prefix.len() + usize::from(self.add_bos && prefix.first() != Some(&vocab.bos()))
            }
        };
        before.min(prompt.tokens.len())
    }
}

#[async_trait::async_trait]
impl Backend for EngineBackend {
    fn descriptor(&self) -> &ModelDescriptor {
        &self.descriptor
    }

    async fn count_tokens(&self, request: &GenerateRequest) -> Result<u32, BackendError> {
        let tokens = self.prompt_tokens(request, false)?.tokens;
        Ok(u32::try_from(tokens.len()).unwrap_or(u32::MAX))
    }

    async fn generate(&self, request: GenerateRequest) -> Result<EventStream, BackendError> {
        let started = std::time::Instant::now();
        let prompt = self.prompt_tokens(&request, true)?;
        if prompt.tokens.is_empty() {
            return Err(BackendError::InvalidRequest(
                "the prompt renders to no tokens".into(),
            ));
        }
        let count = u32::try_from(prompt.tokens.len()).unwrap_or(u32::MAX);
        let max = self.descriptor.max_input_tokens;
        if count >= max {
            return Err(BackendError::PromptTooLong { tokens: count, max });
        }
        let constraint = self.grammars.for_request(
            &request,
            prompt.tools.enabled,
            self.template.tool_format(),
        )?;
        // Prefixes are matched on the rendered text: the same text is the same tokens.
        let (usage, cache_keys) = self.cache_ledger.account_scoped(
            &request.cache_scope,
            prompt.text.as_bytes(),
            prompt.tokens.len(),
            &prompt.breakpoints,
            &prompt.boundaries,
            |at| self.tokens_before(&prompt, at),
        );
        let PromptTokens {
            tokens,
            tools,
            reasoning,
            harmony,
            ..
        } = prompt;
        tracing::debug!(
            tokens = tokens.len(),
            elapsed_us = started.elapsed().as_micros(),
            "prompt rendered, tokenised and billed"
        );
        let cache_touch = (!cache_keys.is_empty()).then(|| CacheTouch {
            ledger: Arc::clone(&self.cache_ledger),
            keys: cache_keys,
        });
        telemetry::prompt_billed(&self.descriptor.id, &usage, self.cache_ledger.len());
        telemetry::host_cache(&self.descriptor.id, &self.cache_stats);
        let in_system = match self.queue_wait.admit(std::time::Instant::now()) {
            Ok(()) => queue_wait::InSystem::new(Arc::clone(&self.queue_wait)),
            Err(refused) => {
                telemetry::queue_wait_refused(&self.descriptor.id);
                return Err(BackendError::QueueFull {
                    retry_after_s: refused.retry_after.as_secs_f64().ceil() as u64,
                });
            }
        };
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        let job = Job {
            in_system,
            tokens,
            max_tokens: request.max_tokens,
            stop_sequences: request.stop_sequences,
            sampling: missive_backend::Sampling {
                temperature: request
                    .sampling
                    .temperature
                    .or(self.default_sampling.temperature),
                top_p: request.sampling.top_p.or(self.default_sampling.top_p),
                top_k: request.sampling.top_k.or(self.default_sampling.top_k),
            },
            tools,
            reasoning,
            harmony,
            constraint,
            usage,
            cache_touch,
            model: Arc::clone(&self.name),
            enqueued: std::time::Instant::now(),
            background: request.priority == missive_backend::Priority::Background,
            scope: scope_hash(&request.cache_scope),
            events,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {
                telemetry::job_queued(&self.descriptor.id);
                Ok(Box::pin(
                    tokio_stream::wrappers::UnboundedReceiverStream::new(receiver),
                ))
            }
            Err(TrySendError::Full(mut job)) => {
                job.in_system.withdraw();
                let wait = self
                    .queue_wait
                    .retry_after_when_full(std::time::Instant::now());
                Err(BackendError::QueueFull {
                    retry_after_s: wait.as_secs_f64().ceil() as u64,
                })
            }
            Err(TrySendError::Disconnected(_)) => Err(BackendError::ShuttingDown),
        }
    }
}

/// The reasoning level for templates that take one: the request's effort (`xhigh` and
/// `max` are the template's `high`); with thinking off and no effort, `low`, the least a
/// model that always reasons (gpt-oss) can be asked for.
fn reasoning_effort(effort: Option<Effort>, thinking: bool) -> Option<&'static str> {
    match effort {
        Some(Effort::Low) => Some("low"),
        Some(Effort::Medium) => Some("medium"),
        Some(Effort::High | Effort::Xhigh | Effort::Max) => Some("high"),
        None if !thinking => Some("low"),
        None => None,
    }
}

/// The KV-reuse scope of a cache scope: equal scopes reuse each other's prefixes.
fn scope_hash(scope: &str) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    scope.hash(&mut hasher);
    hasher.finish()
}

/// A rendered, tokenised prompt and how its output is to be read.
struct PromptTokens {
    tokens: Vec<LlamaToken>,
    /// The rendered prompt the tokens come from.
    text: String,
    /// Where each token ends in `text`, when there are breakpoints to place and the
    /// vocabulary spells its text back exactly.
    token_ends: Option<token_offsets::TokenEnds>,
    tools: ToolParsing,
    breakpoints: Vec<Breakpoint>,
    /// Where content blocks end in `text`, sorted: where breakpoints look back.
    boundaries: Vec<usize>,
    reasoning: Option<Reasoning>,
    harmony: Option<harmony::Start>,
}
