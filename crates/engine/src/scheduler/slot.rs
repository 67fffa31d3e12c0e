//! One sequence slot of the engine: the tokens its KV cells hold, and the job (if any)
//! running in it.

use std::collections::VecDeque;

use llama_cpp_2::context::session::SeqState;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::{BatchAddError, LlamaBatch};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;
use llama_cpp_2::LlamaStateSeqFlags;
use missive_backend::{BackendError, BackendEvent, FinishReason, Sampling};

use llguidance::Matcher;
use missive_backend::reasoning::{Segment, ThinkSplitter};

use super::host_cache::{HostCache, Spilled};
use super::Job;
use crate::constraint::Constraint;
use crate::output::harmony::HarmonyStream;
use crate::output::tool_calls::Markers;
use crate::output::{Piece, TextDecoder, ToolCallParser};

/// The first guess of a job is this long at most (see `Active::draft_cap`).
const FIRST_DRAFT_CAP: usize = 4;
/// Past any `draft_tokens` worth setting.
const MAX_DRAFT_CAP: usize = 64;

/// How many guesses a sequence may add after its pending token, by source.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct GuessBudget {
    /// Fewer guesses than this are none.
    pub fewest: usize,
    /// Tokens the grammar forces.
    pub forced: usize,
    /// Tokens prompt lookup or the draft model proposes.
    pub proposed: usize,
}

pub(super) enum StepOutcome {
    Running,
    Finished,
}

pub(super) struct Slot {
    seq: u32,
    /// The tokens whose KV cells this sequence holds, in position order.
    cached: Vec<LlamaToken>,
    /// The cache scope `cached` belongs to: a request of another scope reuses none of it.
    scope: u64,
    pub last_used: u64,
    active: Option<Active>,
}

struct Active {
    job: Job,
    /// Prompt tokens already in the KV cache.
    prefilled: usize,
    sampler: TokenSampler,
    /// The tool-call grammar, waiting for the model to open a call.
    lazy_grammar: Option<LazyGrammar>,
    decoder: TextDecoder,
    /// Present when tools may be called.
    tool_parser: Option<ToolCallParser>,
    /// Present for a reasoning model: splits its thought from its answer.
    think: Option<ThinkSplitter>,
    thinking_tokens: u32,
    /// Present for a harmony model: puts its channels in the forms the stages after it read.
    harmony: Option<HarmonyStream>,
    /// Tokens decided for the model (a spent thought's close), fed before sampling resumes.
    forced: VecDeque<LlamaToken>,
    /// The calls sent so far (also how many), to stop a model that repeats one.
    sent_calls: Vec<SentCall>,
    /// The call being decoded, when its input is streamed.
    open_call: Option<OpenCall>,
    emitted_text: bool,
    output_tokens: u32,
    /// Sampled and emitted, but not yet decoded.
    pending: Option<LlamaToken>,
    /// Guesses at the tokens after `pending`, decoded with it (see [`super::lookup`]).
    drafts: Vec<LlamaToken>,
    /// Guessed tokens decoded, and those the sampler confirmed, for metrics.
    drafted: u32,
    accepted: u32,
    /// How many tokens the next guess may be: doubled while guesses are all kept, halved
    /// (but not below what was kept) otherwise, so a sequence whose guesses miss pays for
    /// short ones.
    draft_cap: usize,
    /// Where this sequence's logits are in the batch just decoded (the first of them,
    /// when drafts follow).
    logits_at: Option<i32>,
    in_batch: bool,
    started: bool,
    /// The prefilled prompt was offered to the disk cache.
    offered: bool,
}

/// A prompt whose cells a slot has just computed, for the disk cache.
pub(super) struct FreshPrompt {
    pub scope: u64,
    /// The billing-ledger entries those cells back.
    pub ledger: Vec<super::LedgerKey>,
}

impl Slot {
    pub fn new(seq: u32) -> Self {
        Self {
            seq,
            cached: Vec::new(),
            scope: 0,
            last_used: 0,
            active: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    pub fn is_background(&self) -> bool {
        self.active.as_ref().is_some_and(|a| a.job.background)
    }

    pub fn is_decoding(&self) -> bool {
        self.active.as_ref().is_some_and(|a| a.pending.is_some())
    }

    pub fn in_batch(&self) -> bool {
        self.active.as_ref().is_some_and(|a| a.in_batch)
    }

    pub fn cached_len(&self) -> usize {
        self.cached.len()
    }

    /// Tokens the running job has emitted (0 when none runs).
    pub fn output_tokens(&self) -> u32 {
        self.active.as_ref().map_or(0, |a| a.output_tokens)
    }

    /// The tokens whose KV cells this slot holds.
    pub fn cached(&self) -> &[LlamaToken] {
        &self.cached
    }

    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// Once per job, right after its prompt is prefilled (the cells then hold exactly the
    /// prompt): what the disk cache needs to keep it.
    pub fn take_fresh_prompt(&mut self) -> Option<FreshPrompt> {
        let active = self.active.as_mut()?;
        if !active.started || active.offered {
            return None;
        }
        active.offered = true;
        let ledger = active
            .job
            .cache_touch
            .as_ref()
            .map_or_else(Vec::new, |touch| {
                touch
                    .keys
                    .iter()
                    .map(|&(key, ttl)| super::LedgerKey::new(key, ttl))
                    .collect()
            });
        Some(FreshPrompt {
            scope: self.scope,
            ledger,
        })
    }

    pub fn prefill_remaining(&self) -> usize {
        self.active
            .as_ref()
            .map_or(0, |a| a.job.tokens.len() - a.prefilled)
    }

    /// How much of `tokens` this slot's cache already holds. At least the last prompt
    /// token is always decoded again, since its logits start sampling.
    pub fn common_prefix(&self, scope: u64, tokens: &[LlamaToken]) -> usize {
        if scope != self.scope {
            return 0;
        }
        self.cached
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(tokens.len().saturating_sub(1))
    }

    pub fn start(&mut self, ctx: &mut LlamaContext<'_>, mut job: Job) -> Result<(), BackendError> {
        let common = self.common_prefix(job.scope, &job.tokens);
        crate::telemetry::kv_reuse(&job.model, common, job.tokens.len());
        tracing::debug!(
            reused = common,
            prompt = job.tokens.len(),
            "sequence started"
        );
        if common < self.cached.len() {
            let from = u32::try_from(common).unwrap_or(u32::MAX);
            ctx.clear_kv_cache_seq(Some(self.seq), Some(from), None)
                .map_err(|err| BackendError::Generation(err.to_string()))?;
            self.cached.truncate(common);
        }
        self.scope = job.scope;
        let tool_parser = match (&job.tools.enabled, &job.tools.forced_partial) {
            (_, Some(partial)) => Some(ToolCallParser::after_trigger(job.tools.markers, partial)),
            (true, None) if !job.tools.slip_names.is_empty() => Some(
                ToolCallParser::watching_slips(std::mem::take(&mut job.tools.slip_names)),
            ),
            (true, None) => Some(ToolCallParser::default()),
            (false, None) => None,
        }
        .map(|parser| {
            parser
                .with_markers(job.tools.markers)
                .with_body(job.tools.body.clone())
        });
        let (sampler, lazy_grammar) = match std::mem::take(&mut job.constraint) {
            Constraint::Free => (build_sampler(job.sampling, None), None),
            Constraint::FromStart(matcher) => (build_sampler(job.sampling, Some(matcher)), None),
            Constraint::AfterToolOpen { matcher, open } => (
                build_sampler(job.sampling, None),
                Some(LazyGrammar {
                    matcher,
                    open,
                    scan: MarkerScan::new(job.tools.markers.trigger()),
                }),
            ),
        };
        self.active = Some(Active {
            sampler,
            lazy_grammar,
            decoder: TextDecoder::new(job.stop_sequences.clone()),
            tool_parser,
            think: job
                .reasoning
                .as_ref()
                .map(|r| ThinkSplitter::new(r.starts_inside)),
            harmony: job.harmony.map(HarmonyStream::new),
            forced: VecDeque::new(),
            thinking_tokens: 0,
            sent_calls: Vec::new(),
            open_call: None,
            emitted_text: false,
            job,
            prefilled: common,
            output_tokens: 0,
            pending: None,
            drafts: Vec::new(),
            drafted: 0,
            accepted: 0,
            draft_cap: FIRST_DRAFT_CAP,
            logits_at: None,
            in_batch: false,
            started: false,
            offered: false,
        });
        Ok(())
    }

    /// Ends a job whose client went away. Its decoded tokens stay cached for reuse.
    pub fn drop_if_cancelled(&mut self, tick: u64) {
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.job.events.is_closed())
        {
            self.release(tick);
        }
    }

    pub fn release(&mut self, tick: u64) {
        // Counted once per job rather than per token: this runs on the engine loop.
        if let Some(active) = self.active.take() {
            crate::telemetry::output_tokens(&active.job.model, active.output_tokens);
            crate::telemetry::drafts(&active.job.model, active.drafted, active.accepted);
        }
        self.last_used = tick;
    }

    fn seq_ids(&self) -> [i32; 1] {
        [i32::try_from(self.seq).unwrap_or(0)]
    }

    /// Adds the last sampled token, with logits, followed by guesses at the tokens after
    /// it, each with logits to check it: first the tokens the grammar forces (up to
    /// `budget.forced`), then up to `budget.proposed` that `propose` guesses (given this
    /// sequence's tokens, the forced ones included, and how many it may guess). Under a
    /// grammar, guesses it would refuse are dropped. Returns how many tokens it added.
    pub fn add_pending(
        &mut self,
        batch: &mut LlamaBatch<'_>,
        vocab: &LlamaVocab<'_>,
        budget: GuessBudget,
        propose: impl FnOnce(u32, &[LlamaToken], usize) -> Vec<LlamaToken>,
    ) -> Result<usize, BatchAddError> {
        let seq = self.seq_ids();
        let Some(active) = self.active.as_mut() else {
            return Ok(0);
        };
        let Some(token) = active.pending else {
            return Ok(0);
        };
        let pos = self.cached.len();
        batch.add(token, position(pos), &seq, true)?;
        active.pending = None;
        active.logits_at = Some(batch.n_tokens() - 1);
        active.in_batch = true;
        self.cached.push(token);
        // A guess past `max_tokens` could never be kept.
        let left = active
            .job
            .max_tokens
            .saturating_sub(active.output_tokens.saturating_add(1)) as usize;
        let cap = left.min(active.draft_cap);
        let mut drafts = active.sampler.forced_tokens(vocab, budget.forced.min(cap));
        // Text the model has not seen it spells its own way (`_`, `ide`, `nt`, `ifier` for
        // `_identifier`), not as the tokenizer would: forced tokens are guessed up to the
        // first this sequence has never held. A tool's keys are in its prompt.
        let seen = drafts
            .iter()
            .take_while(|t| self.cached.contains(t))
            .count();
        drafts.truncate(seen);
        // Lookup reads the forced tokens as part of the sequence: it guesses what follows them.
        self.cached.extend_from_slice(&drafts);
        match budget.proposed.min(cap - drafts.len()) {
            0 => {}
            max => drafts.extend(propose(self.seq, &self.cached, max)),
        }
        self.cached.truncate(pos + 1);
        drafts.truncate(active.sampler.valid_prefix(&drafts));
        if drafts.len() < budget.fewest {
            drafts.clear();
        }
        for &draft in &drafts {
            if batch
                .add(draft, position(self.cached.len()), &seq, true)
                .is_err()
            {
                break;
            }
            self.cached.push(draft);
        }
        // Whatever did not fit in the batch is no guess.
        let added = self.cached.len() - pos - 1;
        drafts.truncate(added);
        active.drafts = drafts;
        Ok(1 + added)
    }

    /// Adds up to `want` prompt tokens; logits only for the prompt's last token.
    pub fn add_prefill(
        &mut self,
        batch: &mut LlamaBatch<'_>,
        want: usize,
    ) -> Result<usize, BatchAddError> {
        let seq = self.seq_ids();
        let Some(active) = self.active.as_mut() else {
            return Ok(0);
        };
        let start = active.prefilled;
        let end = (start + want).min(active.job.tokens.len());
        let total = active.job.tokens.len();
        for i in start..end {
            let token = active.job.tokens[i];
            let last = i + 1 == total;
            batch.add(token, position(self.cached.len()), &seq, last)?;
            self.cached.push(token);
            active.prefilled += 1;
            active.in_batch = true;
            if last {
                active.logits_at = Some(batch.n_tokens() - 1);
            }
        }
        Ok(end - start)
    }

    /// Samples this sequence's next token from the batch just decoded and emits it. When
    /// guessed tokens were decoded after it, each is kept while it is the token the
    /// sampler picks at its place (so the output is the same as without guessing), and
    /// the next is then sampled from the logits the guess already produced. The KV cells
    /// of guesses not kept are freed.
    pub fn sample(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        vocab: &LlamaVocab<'_>,
        stats: &super::DraftStats,
    ) -> StepOutcome {
        let Some(active) = self.active.as_mut() else {
            return StepOutcome::Running;
        };
        active.in_batch = false;
        let Some(index) = active.logits_at.take() else {
            return StepOutcome::Running;
        };
        let drafts = std::mem::take(&mut active.drafts);
        let mut outcome = sample_at(active, ctx, vocab, index);
        let mut accepted = 0;
        for (&draft, at) in drafts.iter().zip(index + 1..) {
            if !matches!(outcome, StepOutcome::Running) || active.pending != Some(draft) {
                break;
            }
            // Its KV cells are already computed: it is no longer pending.
            active.pending = None;
            accepted += 1;
            outcome = sample_at(active, ctx, vocab, at);
        }
        active.drafted += u32::try_from(drafts.len()).unwrap_or(u32::MAX);
        active.accepted += u32::try_from(accepted).unwrap_or(u32::MAX);
        stats.add(drafts.len(), accepted);
        if !drafts.is_empty() {
            active.draft_cap = match accepted == drafts.len() {
                true => active.draft_cap.saturating_mul(2).min(MAX_DRAFT_CAP),
                false => (active.draft_cap / 2).max(accepted + 1),
            };
        }
        let rejected = drafts.len() - accepted;
        active.drafts = drafts;
        if rejected > 0 {
            let keep = self.cached.len() - rejected;
            let from = u32::try_from(keep).unwrap_or(u32::MAX);
            if ctx
                .clear_kv_cache_seq(Some(self.seq), Some(from), None)
                .is_err()
            {
                self.fail(
                    ctx,
                    BackendError::Generation("freeing guessed tokens failed".into()),
                );
                return StepOutcome::Finished;
            }
            self.cached.truncate(keep);
        }
        outcome
    }

    /// Ends the job because the KV pool has no room for its next token.
    pub fn finish_context_full(&mut self, tick: u64) {
        if let Some(active) = self.active.as_mut() {
            finish(active, FinishReason::ContextWindowExceeded);
        }
        self.release(tick);
    }

    /// Ends the job with an error; its KV state is unknown, so the cache is dropped.
    pub fn fail(&mut self, ctx: &mut LlamaContext<'_>, err: BackendError) {
        if let Some(active) = self.active.take() {
            let _ = active.job.events.send(Err(err));
        }
        self.clear_cache(ctx);
    }

    /// Moves this idle slot's cache to host memory as a sequence state (when it is at
    /// least `min_tokens` long) and frees its KV cells; returns how many it held.
    pub fn spill(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        host: &mut HostCache,
        min_tokens: usize,
        tick: u64,
    ) -> usize {
        if self.active.is_none() && self.cached.len() >= min_tokens.max(1) {
            let seq = self.seq_ids()[0];
            match ctx.state_seq_get(seq, LlamaStateSeqFlags::empty()) {
                Ok(state) => host.save(self.scope, self.cached.clone(), state, tick),
                Err(err) => tracing::warn!(error = %err, "saving a prefix to host memory failed"),
            }
        }
        self.clear_cache(ctx)
    }

    /// Loads a spilled prefix into this idle slot's sequence.
    pub fn restore(&mut self, ctx: &mut LlamaContext<'_>, entry: Spilled) {
        self.clear_cache(ctx);
        let seq = self.seq_ids()[0];
        match ctx.state_seq_set(&entry.state, seq) {
            Ok(()) => {
                self.cached = entry.tokens;
                self.scope = entry.scope;
            }
            Err(err) => {
                tracing::warn!(error = %err, "restoring a prefix from host memory failed");
                self.clear_cache(ctx);
            }
        }
    }

    /// Loads a disk cache entry into this idle slot's sequence.
    pub fn restore_from_disk(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        disk: &super::DiskCache,
        scope: u64,
        id: &str,
    ) {
        self.clear_cache(ctx);
        if let Some(tokens) = disk.restore(ctx, self.seq, id) {
            self.cached = tokens;
            self.scope = scope;
        }
    }

    /// This slot's KV cells as a sequence state; None when it holds none.
    pub fn cells_state(&self, ctx: &LlamaContext<'_>) -> Result<Option<SeqState>, BackendError> {
        if self.cached.is_empty() {
            return Ok(None);
        }
        ctx.state_seq_get(self.seq_ids()[0], LlamaStateSeqFlags::empty())
            .map(Some)
            .map_err(|err| BackendError::Generation(err.to_string()))
    }

    /// Takes over another slot's place: its sequence id becomes `seq`, and its cells are
    /// loaded from `state` (saved from the old place) into the new one. The old place's
    /// cells must already be free. When loading fails, a running job fails and the cache
    /// is dropped.
    pub fn move_to(&mut self, ctx: &mut LlamaContext<'_>, seq: u32, state: Option<&SeqState>) {
        self.seq = seq;
        let loaded = match state {
            Some(state) => ctx.state_seq_set(state, self.seq_ids()[0]),
            None => Ok(()),
        };
        if let Err(err) = loaded {
            tracing::warn!(error = %err, "moving a sequence to another slot failed");
            self.fail(ctx, BackendError::Generation(err.to_string()));
        }
    }

    /// Frees this slot's KV cells; returns how many it held.
    pub fn clear_cache(&mut self, ctx: &mut LlamaContext<'_>) -> usize {
        let _ = ctx.clear_kv_cache_seq(Some(self.seq), None, None);
        let freed = self.cached.len();
        self.cached.clear();
        freed
    }
}

/// A KV position: the count of cells before it.
fn position(cells: usize) -> i32 {
    i32::try_from(cells).unwrap_or(i32::MAX)
}

/// Samples the token after batch position `index` for this sequence and emits it.
fn sample_at(
    active: &mut Active,
    ctx: &LlamaContext<'_>,
    vocab: &LlamaVocab<'_>,
    index: i32,
) -> StepOutcome {
    if !active.started {
        active.started = true;
        if let Some(touch) = &active.job.cache_touch {
            touch.ledger.touch(&touch.keys);
        }
        let _ = active.job.events.send(Ok(BackendEvent::Started {
            prompt: active.job.usage,
        }));
        if active.job.max_tokens == 0 {
            return finish(active, FinishReason::MaxTokens);
        }
    }
    let mut token = active.sampler.sample(ctx, index);
    if vocab.is_eog(token) {
        return finish(active, FinishReason::EndTurn);
    }
    if active.output_tokens == 0 {
        crate::telemetry::first_token(&active.job.model, active.job.enqueued.elapsed());
    }
    if active
        .think
        .as_ref()
        .is_some_and(ThinkSplitter::is_thinking)
    {
        active.thinking_tokens += 1;
        // At the budget, the thought is closed for the model: its next tokens are the
        // closing tag's, whatever it sampled.
        let spent = active
            .job
            .reasoning
            .as_ref()
            .and_then(|r| r.budget)
            .is_some_and(|budget| active.thinking_tokens > budget);
        if spent && active.forced.is_empty() {
            if let Some(r) = &active.job.reasoning {
                active.forced.extend(r.close.iter().copied());
            }
        }
    }
    if let Some(forced) = active.forced.pop_front() {
        token = forced;
    }
    active.output_tokens += 1;
    let markers = active.job.tools.markers;
    // Harmony's control tokens are its structure, read whether or not tools are offered.
    let shown_markers = match active.harmony.is_some() {
        true => Some(&crate::output::tool_calls::HARMONY),
        false => active.tool_parser.is_some().then_some(markers),
    };
    let mut piece = visible_piece(vocab, token, shown_markers);
    let thinking = active
        .think
        .as_ref()
        .is_some_and(ThinkSplitter::is_thinking);
    let opened = match active.lazy_grammar.as_mut() {
        Some(lazy) if lazy.open.is_none() && !thinking => lazy.scan.push(&piece),
        _ => None,
    };
    if let Some(tail) = opened {
        let matcher = active
            .lazy_grammar
            .take()
            .and_then(|lazy| lazy.after_marker(&tail, vocab));
        if let Some(matcher) = matcher {
            active.sampler = build_sampler(active.job.sampling, Some(matcher));
        }
    }
    if let Some(open) = active.lazy_grammar.as_ref().and_then(|l| l.open) {
        // Small models often write a call's JSON without the opening marker; a reply
        // that starts with `{` while tools are offered is taken as a call and gets one.
        // A fenced call the parser is holding is its to recognise: a marker forced into
        // the fence would hide the call from it. A family whose calls sit in a block of
        // markers (DeepSeek) or an array (Mistral) does not write bare JSON calls.
        let bare_call = markers.bare_json()
            && !active.emitted_text
            && active.sent_calls.is_empty()
            && !active
                .tool_parser
                .as_ref()
                .is_some_and(ToolCallParser::is_holding)
            && String::from_utf8_lossy(&piece)
                .trim_start()
                .starts_with('{');
        if token == open || bare_call {
            if let Some(lazy) = active.lazy_grammar.take() {
                active.sampler = build_sampler(active.job.sampling, Some(lazy.matcher));
            }
            token = open;
            piece = visible_piece(vocab, token, Some(markers));
        }
    }
    let step = active.decoder.push(&piece);
    match route(active, &step.text) {
        Emitted::Continue => {}
        Emitted::ClientGone => return StepOutcome::Finished,
        Emitted::ToolCallDone => return finish(active, FinishReason::ToolUse),
    }
    if let Some(stop) = step.stop {
        return finish(active, FinishReason::StopSequence(stop));
    }
    if active.output_tokens >= active.job.max_tokens {
        return finish(active, FinishReason::MaxTokens);
    }
    active.pending = Some(token);
    StepOutcome::Running
}

/// The token's text. Control tokens render as nothing, except the tool-call markers when
/// tools may be called: Qwen's `<tool_call>` is a control token, and without it a call
/// would be indistinguishable from JSON the model writes as text.
fn visible_piece(
    vocab: &LlamaVocab<'_>,
    token: LlamaToken,
    tool_markers: Option<&Markers>,
) -> Vec<u8> {
    let piece = vocab.token_to_piece(token, false, None);
    let Some(markers) = tool_markers.filter(|_| piece.is_empty()) else {
        return piece;
    };
    let special = vocab.token_to_piece(token, true, None);
    let is_marker = markers
        .tokens
        .iter()
        .any(|marker| special == marker.as_bytes());
    if is_marker {
        special
    } else {
        piece
    }
}

enum Emitted {
    Continue,
    ClientGone,
    /// A tool call completed and only one was allowed.
    ToolCallDone,
}

/// Sends decoded text on: a harmony model's channels rewritten first, then a reasoning
/// model's thought as thinking (or nowhere, when thinking was not asked for), the rest
/// through the tool-call parser.
fn route(active: &mut Active, text: &str) -> Emitted {
    let rewritten;
    let text = match active.harmony.as_mut() {
        Some(channels) => {
            rewritten = channels.push(text);
            rewritten.as_str()
        }
        None => text,
    };
    let Some(splitter) = active.think.as_mut() else {
        return emit(active, text);
    };
    let segments = splitter.push(text);
    send_segments(active, segments)
}

fn send_segments(active: &mut Active, segments: Vec<Segment>) -> Emitted {
    for segment in segments {
        let outcome = match segment {
            Segment::Thinking(thought) => {
                let show = active.job.reasoning.as_ref().is_some_and(|r| r.show);
                match show
                    && active
                        .job
                        .events
                        .send(Ok(BackendEvent::Thinking(thought)))
                        .is_err()
                {
                    true => Emitted::ClientGone,
                    false => Emitted::Continue,
                }
            }
            Segment::Text(text) => emit(active, &text),
        };
        if !matches!(outcome, Emitted::Continue) {
            return outcome;
        }
    }
    Emitted::Continue
}

/// Sends answer text on, through the tool-call parser when tools may be called.
fn emit(active: &mut Active, text: &str) -> Emitted {
    if text.is_empty() {
        return Emitted::Continue;
    }
    let pieces = match active.tool_parser.as_mut() {
        Some(parser) => parser.push(text),
        None => vec![Piece::Text(text.to_owned())],
    };
    send_pieces(active, pieces)
}

fn send_pieces(active: &mut Active, pieces: Vec<Piece>) -> Emitted {
    for piece in pieces {
        let events = match piece {
            // Whitespace before any text or around tool calls is layout, not content.
            Piece::Text(t)
                if t.trim().is_empty()
                    && (!active.emitted_text || !active.sent_calls.is_empty()) =>
            {
                continue
            }
            Piece::Text(t) => {
                active.emitted_text = true;
                vec![BackendEvent::Text(t)]
            }
            Piece::ToolStart { name } => {
                let mut call = OpenCall {
                    name,
                    json: String::new(),
                    shown: false,
                };
                let events = call.reveal(&active.sent_calls);
                active.open_call = Some(call);
                events
            }
            Piece::ToolInput(json) => match active.open_call.as_mut() {
                Some(call) if call.shown => {
                    call.json.push_str(&json);
                    vec![BackendEvent::ToolInput(json)]
                }
                Some(call) => {
                    call.json.push_str(&json);
                    call.reveal(&active.sent_calls)
                }
                None => Vec::new(),
            },
            Piece::ToolCall { name, input } => {
                let open = active.open_call.take();
                // Small models loop on a call; an identical second call is never useful,
                // so it ends the reply instead of being sent. A streamed call is held back
                // while it still reads like one already sent, so a repeat is never seen.
                if active
                    .sent_calls
                    .iter()
                    .any(|c| c.name == name && c.input == input)
                {
                    if let Some(call) = open.filter(|c| c.shown) {
                        let _ = active.job.events.send(Ok(BackendEvent::ToolUse {
                            name: call.name,
                            input,
                        }));
                    }
                    return Emitted::ToolCallDone;
                }
                let mut events = Vec::new();
                let json = match open {
                    Some(call) if call.shown => call.json,
                    Some(call) => {
                        events.push(BackendEvent::ToolUseStart {
                            name: call.name.clone(),
                        });
                        events.push(BackendEvent::ToolInput(call.json.clone()));
                        call.json
                    }
                    None => input.to_string(),
                };
                active.sent_calls.push(SentCall {
                    name: name.clone(),
                    input: input.clone(),
                    json,
                });
                events.push(BackendEvent::ToolUse { name, input });
                events
            }
        };
        for event in events {
            let is_call = matches!(event, BackendEvent::ToolUse { .. });
            if active.job.events.send(Ok(event)).is_err() {
                return Emitted::ClientGone;
            }
            if is_call && active.job.tools.single {
                return Emitted::ToolCallDone;
            }
        }
    }
    Emitted::Continue
}

/// The tool-call grammar, waiting for the model to open a call.
struct LazyGrammar {
    matcher: Matcher,
    /// The opening marker's token, where the vocabulary has one.
    open: Option<LlamaToken>,
    /// Without that token: where the marker's text is looked for.
    scan: MarkerScan,
}

impl LazyGrammar {
    /// The grammar, advanced past `tail` (what the model wrote after the marker in the
    /// same tokens). `None` when that text already left the grammar: the call is then
    /// parsed as written.
    fn after_marker(mut self, tail: &str, vocab: &LlamaVocab<'_>) -> Option<Matcher> {
        let tokens: Vec<u32> = vocab
            .tokenize(tail.as_bytes(), false, false)
            .iter()
            .filter_map(|t| u32::try_from(t.0).ok())
            .collect();
        match self.matcher.try_consume_tokens(&tokens) {
            Ok(n) if n == tokens.len() => Some(self.matcher),
            _ => None,
        }
    }
}

/// Finds the text that opens tool calls in decoded pieces, however it is split into tokens.
#[derive(Debug)]
struct MarkerScan {
    marker: &'static str,
    /// The reply's last bytes: never more than the marker's length without it.
    recent: String,
}

impl MarkerScan {
    fn new(marker: &'static str) -> Self {
        Self {
            marker,
            recent: String::new(),
        }
    }

    /// Adds a decoded piece; once the marker is complete, the text after it.
    fn push(&mut self, piece: &[u8]) -> Option<String> {
        self.recent.push_str(&String::from_utf8_lossy(piece));
        if let Some(at) = self.recent.find(self.marker) {
            return Some(self.recent[at + self.marker.len()..].to_owned());
        }
        let keep = self.marker.len();
        if self.recent.len() > keep {
            let mut cut = self.recent.len() - keep;
            while !self.recent.is_char_boundary(cut) {
                cut += 1;
            }
            self.recent.drain(..cut);
        }
        None
    }
}

/// A tool call being decoded. Its input goes out as it comes, except while it is still a
/// prefix of a call already sent: a model that loops on a call would otherwise show the
/// repeat before it could be stopped.
struct OpenCall {
    name: String,
    /// The input so far.
    json: String,
    shown: bool,
}

impl OpenCall {
    /// The events that open the call and send what was held, once it is no repeat.
    fn reveal(&mut self, sent: &[SentCall]) -> Vec<BackendEvent> {
        let repeat = sent
            .iter()
            .any(|c| c.name == self.name && c.json.starts_with(&self.json));
        if repeat {
            return Vec::new();
        }
        self.shown = true;
        let mut events = vec![BackendEvent::ToolUseStart {
            name: self.name.clone(),
        }];
        if !self.json.is_empty() {
            events.push(BackendEvent::ToolInput(self.json.clone()));
        }
        events
    }
}

/// A call already sent, with the input text it was streamed as.
struct SentCall {
    name: String,
    input: serde_json::Value,
    json: String,
}

fn finish(active: &mut Active, reason: FinishReason) -> StepOutcome {
    let mut pieces = Vec::new();
    let stopped = matches!(
        reason,
        FinishReason::StopSequence(_) | FinishReason::ToolUse
    );
    let truncated = matches!(
        reason,
        FinishReason::MaxTokens | FinishReason::ContextWindowExceeded
    );
    // Text held back for a possible stop sequence is released only if none matched.
    let mut rest = match stopped {
        true => String::new(),
        false => active.decoder.finish(),
    };
    if let Some(mut channels) = active.harmony.take() {
        rest = channels.push(&rest);
        rest.push_str(&channels.finish());
    }
    if let Some(mut splitter) = active.think.take() {
        // The thought's tail goes out as thinking; what follows it is answer text.
        let mut segments = splitter.push(&rest);
        segments.extend(splitter.finish());
        rest.clear();
        for segment in segments {
            match segment {
                Segment::Text(text) => rest.push_str(&text),
                thought => {
                    if let Emitted::ClientGone = send_segments(active, vec![thought]) {
                        return StepOutcome::Finished;
                    }
                }
            }
        }
    }
    if let Some(parser) = active.tool_parser.as_mut() {
        if !stopped {
            pieces.extend(parser.push(&rest));
        }
        // After the call that ended the reply, what the parser holds (the start of
        // another marker) was never meant to be seen.
        if reason != FinishReason::ToolUse {
            pieces.extend(parser.finish(truncated));
        }
    } else if !rest.is_empty() && !stopped {
        pieces.push(Piece::Text(rest));
    }
    if let Emitted::ClientGone = send_pieces(active, pieces) {
        return StepOutcome::Finished;
    }
    let reason = match reason {
        FinishReason::EndTurn if !active.sent_calls.is_empty() => FinishReason::ToolUse,
        other => other,
    };
    let _ = active.job.events.send(Ok(BackendEvent::Finished {
        reason,
        output_tokens: active.output_tokens,
        thinking_tokens: match &active.job.reasoning {
            Some(r) if r.show => active.thinking_tokens,
            _ => 0,
        },
        prompt: None,
    }));
    StepOutcome::Finished
}

/// How a sequence picks its next token.
enum TokenSampler {
    /// The most likely token, read straight from the logits: the same choice as llama.cpp's
    /// greedy sampler without copying the whole vocabulary into a candidate array first.
    Greedy,
    Chain {
        chain: LlamaSampler,
        /// A copy of the chain's grammar, kept in step with it (the one inside the chain
        /// cannot be read): it tells what the grammar forces next, and which guesses it
        /// would refuse.
        grammar: Option<Box<Matcher>>,
    },
}

impl TokenSampler {
    fn sample(&mut self, ctx: &LlamaContext<'_>, index: i32) -> LlamaToken {
        match self {
            TokenSampler::Greedy => most_likely(ctx.get_logits_ith(index)),
            TokenSampler::Chain { chain, grammar } => {
                let token = chain.sample(ctx, index);
                // As the chain's own grammar does: a stopped matcher takes no more tokens.
                if let Some(grammar) = grammar.as_mut().filter(|g| !g.is_stopped()) {
                    let _ = grammar.consume_token(token.0.cast_unsigned());
                }
                token
            }
        }
    }

    /// Up to `max` tokens the grammar allows alone after the last sampled one: its forced
    /// text (a key, a separator, a forced tool's name), in the model's own tokenization.
    fn forced_tokens(&mut self, vocab: &LlamaVocab<'_>, max: usize) -> Vec<LlamaToken> {
        let TokenSampler::Chain {
            grammar: Some(grammar),
            ..
        } = self
        else {
            return Vec::new();
        };
        if max == 0 || grammar.is_stopped() {
            return Vec::new();
        }
        // llguidance tokenizes forced text only for a canonical tokenizer, which the
        // vocabulary it was given does not claim to be; llama.cpp's tokenizer is. A
        // control token (marked 0xFF) is left to the model.
        let bytes = grammar.compute_ff_bytes();
        let text = bytes.split(|&b| b == 0xFF).next().unwrap_or_default();
        if text.is_empty() {
            return Vec::new();
        }
        let mut tokens = vocab.tokenize(text, false, false);
        tokens.truncate(max);
        tokens
    }

    /// How many of `tokens`, in order, the grammar would take (all, without one).
    fn valid_prefix(&mut self, tokens: &[LlamaToken]) -> usize {
        let TokenSampler::Chain {
            grammar: Some(grammar),
            ..
        } = self
        else {
            return tokens.len();
        };
        if tokens.is_empty() {
            return 0;
        }
        let ids: Vec<u32> = tokens.iter().map(|t| t.0.cast_unsigned()).collect();
        grammar.validate_tokens(&ids).unwrap_or(0)
    }
}

/// The first token with the highest logit (as llama.cpp's greedy sampler breaks ties).
fn most_likely(logits: &[f32]) -> LlamaToken {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &logit) in logits.iter().enumerate() {
        if logit > best.1 {
            best = (i, logit);
        }
    }
    LlamaToken(i32::try_from(best.0).unwrap_or(0))
}

/// The sampler for a request. Temperature 0 is greedy; otherwise top-k, top-p,
/// temperature, then a random draw, as the Claude API documents these parameters.
/// Always a chain, even of one: only a chain keeps its full-vocabulary candidate buffer
/// between tokens; a bare sampler allocates it (1.8 MB here) on every call.
/// A grammar, when given, masks the candidates first.
fn build_sampler(sampling: Sampling, grammar: Option<Matcher>) -> TokenSampler {
    let temperature = sampling.temperature.unwrap_or(1.0);
    if temperature <= 0.0 && grammar.is_none() {
        return TokenSampler::Greedy;
    }
    let mut chain = Vec::with_capacity(5);
    let shadow = grammar.as_ref().map(|g| Box::new(g.deep_clone()));
    chain.extend(grammar.map(LlamaSampler::from));
    if temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
        return TokenSampler::Chain {
            chain: LlamaSampler::chain_simple(chain),
            grammar: shadow,
        };
    }
    if let Some(k) = sampling.top_k.filter(|k| *k > 0) {
        chain.push(LlamaSampler::top_k(i32::try_from(k).unwrap_or(i32::MAX)));
    }
    if let Some(p) = sampling.top_p.filter(|p| *p < 1.0) {
        chain.push(LlamaSampler::top_p(p, 1));
    }
    chain.push(LlamaSampler::temp(temperature));
    chain.push(LlamaSampler::dist(rand::random()));
    TokenSampler::Chain {
        chain: LlamaSampler::chain_simple(chain),
        grammar: shadow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tool_calls;

    #[test]
    fn the_markers_text_is_found_however_it_is_split() {
        let mut scan = MarkerScan::new(tool_calls::OPEN);
        for piece in ["Let me check. ", "<", "tool", "_", "call"] {
            assert_eq!(scan.push(piece.as_bytes()), None);
        }
        assert_eq!(scan.push(b">\n{"), Some("\n{".to_owned()));
        // Only the marker's length is kept while it has not appeared.
        let mut scan = MarkerScan::new(tool_calls::OPEN);
        scan.push("é".repeat(100).as_bytes());
        assert!(scan.recent.len() <= tool_calls::OPEN.len() + 1);
        assert_eq!(scan.push(b"<tool_call>"), Some(String::new()));
    }

    #[test]
    fn greedy_takes_the_highest_logit_and_the_first_of_equals() {
        assert_eq!(most_likely(&[0.5, 2.0, -1.0, 1.9]), LlamaToken(1));
        assert_eq!(most_likely(&[3.0, 1.0, 3.0]), LlamaToken(0));
        assert_eq!(most_likely(&[f32::NAN, -5.0, -4.0]), LlamaToken(2));
    }
}
