//! One sequence slot of the engine: the tokens its KV cells hold, and the job (if any)
//! running in it.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::{BatchAddError, LlamaBatch};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;
use missive_backend::{BackendError, BackendEvent, FinishReason, PromptUsage, Sampling};

use super::Job;
use crate::output::TextDecoder;

pub(super) enum StepOutcome {
    Running,
    Finished,
}

pub(super) struct Slot {
    seq: u32,
    /// The tokens whose KV cells this sequence holds, in position order.
    cached: Vec<LlamaToken>,
    pub last_used: u64,
    active: Option<Active>,
}

struct Active {
    job: Job,
    /// Prompt tokens already in the KV cache.
    prefilled: usize,
    sampler: LlamaSampler,
    decoder: TextDecoder,
    output_tokens: u32,
    /// Sampled and emitted, but not yet decoded.
    pending: Option<LlamaToken>,
    /// Where this sequence's logits are in the batch just decoded.
    logits_at: Option<i32>,
    in_batch: bool,
    started: bool,
}

impl Slot {
    pub fn new(seq: u32) -> Self {
        Self {
            seq,
            cached: Vec::new(),
            last_used: 0,
            active: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
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

    pub fn prefill_remaining(&self) -> usize {
        self.active
            .as_ref()
            .map_or(0, |a| a.job.tokens.len() - a.prefilled)
    }

    /// How much of `tokens` this slot's cache already holds. At least the last prompt
    /// token is always decoded again, since its logits start sampling.
    pub fn common_prefix(&self, tokens: &[LlamaToken]) -> usize {
        self.cached
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(tokens.len().saturating_sub(1))
    }

    pub fn start(&mut self, ctx: &mut LlamaContext<'_>, job: Job) -> Result<(), BackendError> {
        let common = self.common_prefix(&job.tokens);
        if common < self.cached.len() {
            let from = u32::try_from(common).unwrap_or(u32::MAX);
            ctx.clear_kv_cache_seq(Some(self.seq), Some(from), None)
                .map_err(|err| BackendError::Generation(err.to_string()))?;
            self.cached.truncate(common);
        }
        self.active = Some(Active {
            sampler: build_sampler(job.sampling),
            decoder: TextDecoder::new(job.stop_sequences.clone()),
            job,
            prefilled: common,
            output_tokens: 0,
            pending: None,
            logits_at: None,
            in_batch: false,
            started: false,
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
        self.active = None;
        self.last_used = tick;
    }

    fn seq_ids(&self) -> [i32; 1] {
        [i32::try_from(self.seq).unwrap_or(0)]
    }

    /// Adds the last sampled token, with logits.
    pub fn add_pending(&mut self, batch: &mut LlamaBatch<'_>) -> Result<(), BatchAddError> {
        let seq = self.seq_ids();
        let pos = i32::try_from(self.cached.len()).unwrap_or(i32::MAX);
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        let Some(token) = active.pending else {
            return Ok(());
        };
        batch.add(token, pos, &seq, true)?;
        active.pending = None;
        active.logits_at = Some(batch.n_tokens() - 1);
        active.in_batch = true;
        self.cached.push(token);
        Ok(())
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
            let pos = i32::try_from(self.cached.len()).unwrap_or(i32::MAX);
            let last = i + 1 == total;
            batch.add(token, pos, &seq, last)?;
            self.cached.push(token);
            active.prefilled += 1;
            active.in_batch = true;
            if last {
                active.logits_at = Some(batch.n_tokens() - 1);
            }
        }
        Ok(end - start)
    }

    /// Samples this sequence's next token from the batch just decoded and emits it.
    pub fn sample(&mut self, ctx: &LlamaContext<'_>, vocab: &LlamaVocab<'_>) -> StepOutcome {
        let Some(active) = self.active.as_mut() else {
            return StepOutcome::Running;
        };
        active.in_batch = false;
        let Some(index) = active.logits_at.take() else {
            return StepOutcome::Running;
        };
        if !active.started {
            active.started = true;
            let prompt = u32::try_from(active.job.tokens.len()).unwrap_or(u32::MAX);
            let _ = active.job.events.send(Ok(BackendEvent::Started {
                prompt: PromptUsage::uncached(prompt),
            }));
            if active.job.max_tokens == 0 {
                return finish(active, FinishReason::MaxTokens);
            }
        }
        let token = active.sampler.sample(ctx, index);
        if vocab.is_eog(token) {
            return finish(active, FinishReason::EndTurn);
        }
        active.output_tokens += 1;
        let step = active
            .decoder
            .push(&vocab.token_to_piece(token, false, None));
        if !step.text.is_empty()
            && active
                .job
                .events
                .send(Ok(BackendEvent::Text(step.text)))
                .is_err()
        {
            return StepOutcome::Finished;
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

    /// Frees this slot's KV cells; returns how many it held.
    pub fn clear_cache(&mut self, ctx: &mut LlamaContext<'_>) -> usize {
        let _ = ctx.clear_kv_cache_seq(Some(self.seq), None, None);
        let freed = self.cached.len();
        self.cached.clear();
        freed
    }
}

fn finish(active: &mut Active, reason: FinishReason) -> StepOutcome {
    let rest = active.decoder.finish();
    if !rest.is_empty() && !matches!(reason, FinishReason::StopSequence(_)) {
        let _ = active.job.events.send(Ok(BackendEvent::Text(rest)));
    }
    let _ = active.job.events.send(Ok(BackendEvent::Finished {
        reason,
        output_tokens: active.output_tokens,
    }));
    StepOutcome::Finished
}

/// The llama.cpp sampler chain for a request. Temperature 0 is greedy; otherwise top-k,
/// top-p, temperature, then a random draw, as the Claude API documents these parameters.
/// Always a chain, even of one: only a chain keeps its full-vocabulary candidate buffer
/// between tokens; a bare sampler allocates it (1.8 MB here) on every call.
fn build_sampler(sampling: Sampling) -> LlamaSampler {
    let temperature = sampling.temperature.unwrap_or(1.0);
    if temperature <= 0.0 {
        return LlamaSampler::chain_simple([LlamaSampler::greedy()]);
    }
    let mut chain = Vec::with_capacity(4);
    if let Some(k) = sampling.top_k.filter(|k| *k > 0) {
        chain.push(LlamaSampler::top_k(i32::try_from(k).unwrap_or(i32::MAX)));
    }
    if let Some(p) = sampling.top_p.filter(|p| *p < 1.0) {
        chain.push(LlamaSampler::top_p(p, 1));
    }
    chain.push(LlamaSampler::temp(temperature));
    chain.push(LlamaSampler::dist(rand::random()));
    LlamaSampler::chain_simple(chain)
}
