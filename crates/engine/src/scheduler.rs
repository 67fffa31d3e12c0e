//! The engine thread: owns the llama.cpp context (which is not thread-safe) and runs
//! jobs with continuous batching. Each step decodes one batch holding the next token of
//! every running sequence plus a chunk of pending prefill, then samples per sequence; a
//! new job joins at the next step. Sequences share one unified KV pool; each slot keeps
//! its tokens after a job ends, so a later prompt with the same prefix only prefills what
//! is new.

mod disk_cache;
mod drafter;
mod host_cache;
mod lookup;
mod packing;
mod slot;
mod spec_gate;

pub(crate) use disk_cache::{fingerprint, DiskCache, LedgerKey, RestoredKey};
pub use disk_cache::{DiskCacheSettings, DiskCacheStats};
pub use drafter::DraftSettings;
pub use host_cache::HostCacheStats as CacheStats;
pub use lookup::DraftStats;

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use missive_backend::{BackendError, BackendEvent, PromptUsage, Sampling};
use tokio::sync::mpsc::UnboundedSender;

use crate::constraint::Constraint;
use crate::error::Error;
use crate::output::tool_calls::{self, Markers};
use crate::prompt_cache::{CacheLedger, Ttl};
use host_cache::{HostCache, HostCacheStats};
use slot::{GuessBudget, Slot, StepOutcome};

/// How long work starting from idle waits for another job to join it.
const GATHER_GAP: Duration = Duration::from_millis(5);
/// The longest it gathers a burst before the first prefill starts.
const GATHER_MAX: Duration = Duration::from_millis(25);
/// Guessed tokens are decoded only while at most this many sequences decode: a step of
/// few sequences reads the weights for one token each and has compute to spare, a full
/// one does not (bench/lookup measures both).
const DRAFT_MAX_STREAMS: usize = 2;

/// One generation, as the engine thread sees it: token ids, limits and where events go.
pub(crate) struct Job {
    pub tokens: Vec<LlamaToken>,
    pub max_tokens: u32,
    pub stop_sequences: Vec<String>,
    pub sampling: Sampling,
    pub tools: ToolParsing,
    /// Present for models whose template reasons (in `<think>` tags, or harmony's channel).
    pub reasoning: Option<Reasoning>,
    /// Present for harmony models: where the prompt left the reply.
    pub harmony: Option<crate::output::harmony::Start>,
    pub constraint: Constraint,
    /// What the prompt is billed, as the cache ledger decided.
    pub usage: PromptUsage,
    /// Cache entries to refresh once the prompt is in the KV cells.
    pub cache_touch: Option<CacheTouch>,
    /// The model id, for metrics labels.
    pub model: Arc<str>,
    pub enqueued: std::time::Instant,
    /// Batch work: runs only in what interactive jobs leave.
    pub background: bool,
    /// A hash of the request's cache scope: KV prefixes are reused only within it.
    pub scope: u64,
    /// Counts the job out of the queue-wait estimate when it is dropped.
    pub in_system: crate::queue_wait::InSystem,
    pub events: UnboundedSender<Result<BackendEvent, BackendError>>,
}

/// The prompt-cache entries a job's prefill makes real.
pub(crate) struct CacheTouch {
    pub ledger: Arc<CacheLedger>,
    pub keys: Vec<(u64, Ttl)>,
}

impl std::fmt::Debug for CacheTouch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheTouch")
            .field("keys", &self.keys)
            .finish()
    }
}

/// How a reasoning model's thought is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reasoning {
    /// The prompt already opened the thought.
    pub starts_inside: bool,
    /// Thinking was asked for: the thought is sent as thinking events (else dropped).
    pub show: bool,
    /// Thinking tokens allowed before the thought is closed.
    pub budget: Option<u32>,
    /// The tokens that close a thought, forced once the budget is spent.
    pub close: Arc<[LlamaToken]>,
}

/// How a job's output is scanned for tool calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolParsing {
    /// Tools were offered and may be called.
    pub enabled: bool,
    /// The prompt was prefilled into a call (forced tool choice); this is the call's text
    /// so far, after the opening marker.
    pub forced_partial: Option<String>,
    /// `disable_parallel_tool_use`: end the reply after the first call.
    pub single: bool,
    /// In `auto`, the tools a call the model slips into another form may name.
    pub slip_names: Vec<String>,
    /// The markers around calls, and how a call is written between them.
    pub markers: &'static Markers,
    pub body: crate::output::CallBody,
}

impl Default for ToolParsing {
    fn default() -> Self {
        Self {
            enabled: false,
            forced_partial: None,
            single: false,
            slip_names: Vec::new(),
            markers: &tool_calls::HERMES,
            body: Default::default(),
        }
    }
}

impl ContextSettings {
    pub fn total_cells(&self) -> u32 {
        match self.per_slot_kv {
            true => self.n_ctx.saturating_mul(self.slots),
            false => self.n_ctx,
        }
    }
}

/// Context settings for the engine thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContextSettings {
    /// The longest one sequence (prompt and reply) may be.
    pub n_ctx: u32,
    /// Each sequence has its own KV stream of `n_ctx` cells (llama.cpp's non-unified
    /// cache), rather than all sharing one pool of `n_ctx` cells. Attention then spans
    /// only a sequence's own cells, which is what makes batched decoding fast; it costs
    /// `slots` times the KV memory.
    pub per_slot_kv: bool,
    /// Tokens per decode call.
    pub n_batch: u32,
    /// Prefill tokens per step while other sequences are decoding, so they keep flowing.
    pub prefill_chunk: u32,
    pub threads: i32,
    /// Sequences decoded together.
    pub slots: u32,
    /// Host memory for prefixes evicted from the KV cells, in bytes.
    pub host_cache_bytes: usize,
    /// Shorter prefixes are not worth keeping in host memory.
    pub spill_min_tokens: usize,
    pub placement: crate::placement::Placement,
    /// Prompt-lookup guesses decoded after each sampled token, at most (0: none).
    pub lookup_tokens: usize,
    /// The tokens a grammar forces are guessed (see `Slot::add_pending`).
    pub grammar_guesses: bool,
    /// Guessing pauses while it measures slower than plain decoding (`spec_gate`).
    pub speculation_gate: bool,
    /// A prompt is written to the disk cache when that adds at least this many tokens to
    /// what it holds of it.
    pub disk_min_tokens: usize,
}

/// What the engine thread shares with the backend, beside the model and its settings.
pub(crate) struct Parts {
    pub host_stats: Arc<HostCacheStats>,
    pub draft_stats: Arc<DraftStats>,
    pub disk: Option<DiskCache>,
    /// A draft model for speculative decoding.
    pub draft: Option<(Arc<LlamaModel>, DraftSettings)>,
}

/// Starts the engine thread for `model` and returns its job queue.
pub(crate) fn spawn(
    name: &str,
    model: Arc<LlamaModel>,
    settings: ContextSettings,
    queue_depth: usize,
    parts: Parts,
) -> Result<SyncSender<Job>, Error> {
    let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel::<Job>(queue_depth);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), Error>>();
    std::thread::Builder::new()
        .name(format!("engine-{name}"))
        .spawn({
            let name: Arc<str> = Arc::from(name);
            move || run(name, model, settings, parts, jobs_rx, ready_tx)
        })
        .map_err(|err| Error::Thread(err.to_string()))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(jobs_tx),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(Error::Thread(
            "the engine thread exited during start-up".into(),
        )),
    }
}

fn run(
    name: Arc<str>,
    model: Arc<LlamaModel>,
    settings: ContextSettings,
    parts: Parts,
    jobs: Receiver<Job>,
    ready: std::sync::mpsc::Sender<Result<(), Error>>,
) {
    let backend = match crate::model::llama_backend() {
        Ok(backend) => backend,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let params = settings
        .placement
        .context_params(LlamaContextParams::default())
        .with_n_threads(settings.threads)
        .with_n_threads_batch(settings.threads);
    let target_params = params
        .clone()
        .with_n_ctx(std::num::NonZeroU32::new(settings.total_cells()))
        .with_n_batch(settings.n_batch)
        .with_n_ubatch(settings.n_batch.min(512))
        .with_n_seq_max(settings.slots)
        .with_kv_unified(!settings.per_slot_kv);
    let mut ctx = match model.new_context(backend, target_params) {
        Ok(ctx) => ctx,
        Err(err) => {
            let _ = ready.send(Err(Error::Context(err.to_string())));
            return;
        }
    };
    let drafter = match &parts.draft {
        Some((draft_model, draft_settings)) => {
            match drafter::Drafter::new(
                draft_model,
                params,
                settings.total_cells(),
                settings.slots,
                *draft_settings,
            ) {
                Ok(drafter) => Some(drafter),
                Err(err) => {
                    let _ = ready.send(Err(err));
                    return;
                }
            }
        }
        None => None,
    };
    let _ = ready.send(Ok(()));
    let mut scheduler = Scheduler {
        name,
        model: &model,
        batch: LlamaBatch::new(settings.n_batch as usize, 1),
        settings,
        slots: (0..settings.slots).map(Slot::new).collect(),
        host: HostCache::new(settings.host_cache_bytes, parts.host_stats),
        drafts: parts.draft_stats,
        disk: parts.disk,
        drafter,
        spec_gates: spec_gate::SpecGates::default(),
        step_guessed: 0,
        step_decode_only: false,
        tick: 0,
        deferred: std::collections::VecDeque::new(),
    };
    scheduler.run(&mut ctx, &jobs);
}

struct Scheduler<'m> {
    name: Arc<str>,
    model: &'m LlamaModel,
    batch: LlamaBatch<'static>,
    settings: ContextSettings,
    slots: Vec<Slot>,
    host: HostCache,
    drafts: Arc<DraftStats>,
    disk: Option<DiskCache>,
    /// The draft model, when one proposes tokens (else prompt lookup does, if on).
    drafter: Option<drafter::Drafter<'m>>,
    spec_gates: spec_gate::SpecGates,
    /// The guessed tokens in the batch being decoded, and whether it only decodes.
    step_guessed: usize,
    step_decode_only: bool,
    /// Steps taken; orders slots by last use for eviction.
    tick: u64,
    /// Background jobs taken from the queue that may not start yet.
    deferred: std::collections::VecDeque<Job>,
}

impl Scheduler<'_> {
    fn run(&mut self, ctx: &mut LlamaContext<'_>, jobs: &Receiver<Job>) {
        loop {
            if !self.admit(ctx, jobs) {
                return;
            }
            self.tick += 1;
            for slot in &mut self.slots {
                slot.drop_if_cancelled(self.tick);
            }
            let step_started = Instant::now();
            if !self.fill_batch(ctx) {
                continue;
            }
            let decode_started = Instant::now();
            if let Err(err) = ctx.decode(&mut self.batch) {
                self.fail_batch(ctx, &BackendError::Generation(err.to_string()));
                continue;
            }
            tracing::debug!(
                tokens = self.batch.n_tokens(),
                ms = decode_started.elapsed().as_secs_f64() * 1e3,
                "decoded a batch"
            );
            let vocab = self.model.vocab();
            let mut emitted = 0;
            for slot in &mut self.slots {
                let before = slot.output_tokens();
                let outcome = slot.sample(ctx, &vocab, &self.drafts);
                emitted += slot.output_tokens().saturating_sub(before) as usize;
                // A prompt just prefilled is exactly what the slot's cells hold now.
                if let (Some(disk), Some(fresh)) = (self.disk.as_mut(), slot.take_fresh_prompt()) {
                    if disk.worth_saving(fresh.scope, slot.cached(), self.settings.disk_min_tokens)
                    {
                        disk.save(ctx, slot.seq(), fresh.scope, slot.cached(), fresh.ledger);
                    }
                }
                if let StepOutcome::Finished = outcome {
                    slot.release(self.tick);
                }
            }
            if self.step_decode_only {
                self.spec_gates.record(
                    self.tick,
                    step_started.elapsed().as_secs_f64(),
                    emitted,
                    self.step_guessed,
                );
            }
            if self.settings.per_slot_kv {
                self.compact(ctx);
            }
            let running = self.slots.iter().filter(|s| s.is_active()).count();
            crate::telemetry::running_sequences(&self.name, running);
        }
    }

    /// Takes new jobs into free slots: blocks while nothing runs or waits, else only takes
    /// what is waiting. Interactive jobs take any free slot; background jobs leave one free
    /// for them, and start only while no interactive job runs. Returns false when the queue
    /// is closed and nothing runs.
    ///
    /// Work that starts from idle first gathers the jobs that arrive right behind the first
    /// ([`GATHER_GAP`] apart, for at most [`GATHER_MAX`]): a burst of requests then shares
    /// one prefill instead of the first decoding alone while the rest wait out its prefill.
    fn admit(&mut self, ctx: &mut LlamaContext<'_>, jobs: &Receiver<Job>) -> bool {
        let mut gather_until: Option<Instant> = None;
        loop {
            if self.background_may_start() {
                if let Some(job) = self.deferred.pop_front() {
                    self.start_job(ctx, job);
                    continue;
                }
            }
            if self.slots.iter().all(Slot::is_active) || self.deferred.len() >= self.slots.len() {
                return true;
            }
            let busy = self.slots.iter().any(Slot::is_active) || !self.deferred.is_empty();
            let job = match (busy, gather_until) {
                (true, None) => match jobs.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => return true,
                },
                (true, Some(until)) => {
                    let left = until.saturating_duration_since(Instant::now());
                    match jobs.recv_timeout(left.min(GATHER_GAP)) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                            return true
                        }
                    }
                }
                (false, _) => match jobs.recv() {
                    Ok(job) => {
                        if self.slots.len() > 1 {
                            gather_until = Some(Instant::now() + GATHER_MAX);
                        }
                        job
                    }
                    Err(_) => return false,
                },
            };
            crate::telemetry::job_dequeued(&job.model);
            if job.events.is_closed() {
                continue;
            }
            if job.background && !self.background_may_start() {
                self.deferred.push_back(job);
                continue;
            }
            self.start_job(ctx, job);
        }
    }

    fn interactive_running(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.is_active() && !s.is_background())
    }

    fn background_may_start(&self) -> bool {
        let free = self.slots.iter().filter(|s| !s.is_active()).count();
        let reserve = usize::from(self.slots.len() > 1);
        free > reserve && !self.interactive_running()
    }

    fn start_job(&mut self, ctx: &mut LlamaContext<'_>, mut job: Job) {
        let started = Instant::now();
        job.in_system.started(started);
        // The free slot whose cache shares the longest prefix with the prompt; among equals,
        // the least recently used.
        let mut best = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_active())
            .max_by_key(|(_, s)| {
                (
                    s.common_prefix(job.scope, &job.tokens),
                    std::cmp::Reverse(s.last_used),
                )
            })
            .map(|(i, _)| i);
        if let (true, Some(b)) = (self.settings.per_slot_kv, best) {
            best = Some(self.packed_slot_for(ctx, b, job.scope, &job.tokens));
        }
        if let Some(i) = best {
            self.prepare_slot(ctx, i, job.scope, &job.tokens);
            if let Err(err) = self.slots[i].start(ctx, job) {
                tracing::error!(error = %err, "starting a sequence failed");
            }
            tracing::debug!(
                slot = i,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "placed a sequence (slot choice, moves, spill and restore)"
            );
        }
    }

    /// With a KV stream per slot: the slot a new sequence takes so the running ones stay in
    /// one run (see [`packing`]), given `reuse`, the free slot holding the longest prefix
    /// of `prompt`. When that prefix is worth more than a re-prefill, it is moved into the
    /// chosen slot (the slot's own cache goes where the prefix was).
    fn packed_slot_for(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        reuse: usize,
        scope: u64,
        prompt: &[LlamaToken],
    ) -> usize {
        let running: Vec<bool> = self.slots.iter().map(Slot::is_active).collect();
        let packed = packing::packed_slots(&running);
        if packed.contains(&reuse) {
            return reuse;
        }
        let Some(target) = packed.into_iter().max_by_key(|&i| {
            (
                self.slots[i].common_prefix(scope, prompt),
                std::cmp::Reverse(self.slots[i].last_used),
            )
        }) else {
            return reuse;
        };
        let gain = self.slots[reuse]
            .common_prefix(scope, prompt)
            .saturating_sub(self.slots[target].common_prefix(scope, prompt));
        if gain >= self.settings.spill_min_tokens.max(1) {
            self.swap_slots(ctx, reuse, target);
        }
        target
    }

    /// With a KV stream per slot: moves running sequences out of the last slots into
    /// holes until they form one run, so a step stays one forward pass.
    fn compact(&mut self, ctx: &mut LlamaContext<'_>) {
        loop {
            let running: Vec<bool> = self.slots.iter().map(Slot::is_active).collect();
            let Some((from, to)) = packing::compaction(&running) else {
                return;
            };
            if !self.swap_slots(ctx, from, to) {
                return;
            }
        }
    }

    /// Swaps everything slots `a` and `b` hold, KV cells and job alike, through sequence
    /// states in host memory. Returns false, changing nothing, when a state cannot be
    /// saved.
    fn swap_slots(&mut self, ctx: &mut LlamaContext<'_>, a: usize, b: usize) -> bool {
        let saved = self.slots[a]
            .cells_state(ctx)
            .and_then(|sa| Ok((sa, self.slots[b].cells_state(ctx)?)));
        let (state_a, state_b) = match saved {
            Ok(states) => states,
            Err(err) => {
                tracing::warn!(error = %err, "saving a sequence to move it failed");
                return false;
            }
        };
        let (seq_a, seq_b) = (
            u32::try_from(a).unwrap_or(u32::MAX),
            u32::try_from(b).unwrap_or(u32::MAX),
        );
        for seq in [seq_a, seq_b] {
            let _ = ctx.clear_kv_cache_seq(Some(seq), None, None);
        }
        self.slots.swap(a, b);
        if let Some(drafter) = self.drafter.as_mut() {
            drafter.swapped(a, b);
        }
        self.slots[a].move_to(ctx, seq_a, state_b.as_ref());
        self.slots[b].move_to(ctx, seq_b, state_a.as_ref());
        self.host.count_move();
        tracing::debug!(a, b, "two slots swapped their sequences");
        true
    }

    /// Fills the batch: one token per decoding sequence, then prefill chunks. Returns false
    /// when there is nothing to decode.
    fn fill_batch(&mut self, ctx: &mut LlamaContext<'_>) -> bool {
        self.batch.clear();
        // Background work sits the step out (keeping its KV cells) while an interactive job
        // runs, so the interactive job decodes as on an idle engine.
        let pause_background = self.interactive_running();
        let n_ctx = self.settings.n_ctx as usize;
        let mut used: usize = self.slots.iter().map(Slot::cached_len).sum();
        let decoding = self.slots.iter().filter(|s| s.is_decoding()).count();
        let (fewest, most) = match (
            decoding <= DRAFT_MAX_STREAMS,
            self.settings.speculation_gate,
        ) {
            (false, _) => (0, 0),
            (true, false) => (1, usize::MAX),
            (true, true) => self.spec_gates.lengths(self.tick),
        };
        let speculate = GuessBudget {
            fewest,
            forced: match self.settings.grammar_guesses {
                true => most,
                false => 0,
            },
            proposed: match self.drafter {
                Some(_) => most,
                None => self.settings.lookup_tokens.min(most),
            },
        };
        let model = self.model;
        let vocab = model.vocab();
        let n_batch = self.settings.n_batch as usize;
        self.step_guessed = 0;
        for i in 0..self.slots.len() {
            if !self.slots[i].is_decoding() || (pause_background && self.slots[i].is_background()) {
                continue;
            }
            let full = match self.settings.per_slot_kv {
                true => self.slots[i].cached_len() + 1 > n_ctx,
                false => used + 1 > n_ctx && !self.evict(ctx, &mut used, 1),
            };
            if full {
                self.slots[i].finish_context_full(self.tick);
                continue;
            }
            // Guesses only use free cells and batch room, leaving one per decoding sequence.
            let free_cells = match self.settings.per_slot_kv {
                true => n_ctx - self.slots[i].cached_len() - 1,
                false => n_ctx - used - 1,
            };
            let batch_room = n_batch.saturating_sub(self.batch.n_tokens() as usize + decoding);
            let room = free_cells.min(batch_room);
            let budget = GuessBudget {
                forced: speculate.forced.min(room),
                proposed: speculate.proposed.min(room),
                ..speculate
            };
            let drafter = &mut self.drafter;
            let propose = |seq: u32, history: &[LlamaToken], max: usize| match drafter {
                Some(drafter) => drafter.propose(seq, history, max),
                None => lookup::draft(history, max).to_vec(),
            };
            if let Ok(added) = self.slots[i].add_pending(&mut self.batch, &vocab, budget, propose) {
                used += added;
                self.step_guessed += added.saturating_sub(1);
            }
        }
        let decode_tokens = self.batch.n_tokens();
        let mut budget = if decoding > 0 {
            self.settings.prefill_chunk as usize
        } else {
            self.settings.n_batch as usize
        }
        .min(self.settings.n_batch as usize - self.batch.n_tokens() as usize);
        for i in 0..self.slots.len() {
            if budget == 0 {
                break;
            }
            let want = self.slots[i].prefill_remaining().min(budget);
            if want == 0 || (pause_background && self.slots[i].is_background()) {
                continue;
            }
            let full = match self.settings.per_slot_kv {
                true => self.slots[i].cached_len() + want > n_ctx,
                false => used + want > n_ctx && !self.evict(ctx, &mut used, want),
            };
            if full {
                self.slots[i].fail(ctx, BackendError::Generation("the KV cache is full".into()));
                continue;
            }
            if let Ok(added) = self.slots[i].add_prefill(&mut self.batch, want) {
                used += added;
                budget -= added;
            }
        }
        self.step_decode_only = decoding > 0 && self.batch.n_tokens() == decode_tokens;
        self.batch.n_tokens() > 0
    }

    /// Before slot `i` takes a prompt: a host-memory prefix that covers more of it than
    /// the slot does is restored into the slot; a slot cache the prompt would mostly
    /// overwrite is first kept in host memory.
    fn prepare_slot(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        i: usize,
        scope: u64,
        prompt: &[LlamaToken],
    ) {
        let min = self.settings.spill_min_tokens;
        let in_slot = self.slots[i].common_prefix(scope, prompt);
        let in_host = self.host.best(scope, prompt);
        // Disk comes last: it is the slowest to restore from.
        let from_disk = self
            .disk
            .as_ref()
            .and_then(|disk| disk.best(scope, prompt))
            .filter(|(_, common)| {
                *common >= in_slot.max(in_host.map_or(0, |(_, c)| c)) + min.max(1)
            });
        // Taken out first: keeping the slot's cache may evict host entries.
        let restore = in_host
            .filter(|(_, common)| from_disk.is_none() && *common >= in_slot + min.max(1))
            .and_then(|(index, _)| self.host.take(index));
        let replaced = in_slot < min && self.slots[i].cached_len() >= min;
        if restore.is_some() || from_disk.is_some() || replaced {
            self.slots[i].spill(ctx, &mut self.host, min, self.tick);
        }
        if let Some(entry) = restore {
            self.slots[i].restore(ctx, entry);
        }
        if let (Some((id, _)), Some(disk)) = (from_disk, self.disk.as_ref()) {
            let tokens = disk.tokens_of(&id);
            let mut used: usize = self.slots.iter().map(Slot::cached_len).sum();
            let fits = self.settings.per_slot_kv || self.evict(ctx, &mut used, tokens);
            if let (true, Some(disk)) = (fits, self.disk.as_ref()) {
                self.slots[i].restore_from_disk(ctx, disk, scope, &id);
            }
        }
    }

    /// Frees KV cells held by idle slots' caches, least recently used first, until `need`
    /// more cells fit (the caches go to host memory). Returns whether they do.
    fn evict(&mut self, ctx: &mut LlamaContext<'_>, used: &mut usize, need: usize) -> bool {
        let n_ctx = self.settings.n_ctx as usize;
        while *used + need > n_ctx {
            let victim = self
                .slots
                .iter_mut()
                .filter(|s| !s.is_active() && s.cached_len() > 0)
                .min_by_key(|s| s.last_used);
            match victim {
                Some(slot) => {
                    *used -= slot.spill(
                        ctx,
                        &mut self.host,
                        self.settings.spill_min_tokens,
                        self.tick,
                    )
                }
                None => return false,
            }
        }
        true
    }

    fn fail_batch(&mut self, ctx: &mut LlamaContext<'_>, err: &BackendError) {
        tracing::error!(error = %err, "decode failed");
        for slot in &mut self.slots {
            if slot.in_batch() {
                slot.fail(ctx, err.clone());
            }
        }
    }
}
