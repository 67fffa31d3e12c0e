//! The engine thread: owns the llama.cpp context (which is not thread-safe) and runs jobs
//! sent over a bounded queue. Prompts that share a prefix with the previous one reuse its
//! KV cells, so a conversation's next turn only prefills what is new.

use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use missive_backend::{BackendError, BackendEvent, FinishReason, PromptUsage, Sampling};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::Error;
use crate::output::TextDecoder;

/// One generation, as the engine thread sees it: token ids, limits and where events go.
pub(crate) struct Job {
    pub tokens: Vec<LlamaToken>,
    pub max_tokens: u32,
    pub stop_sequences: Vec<String>,
    pub sampling: Sampling,
    pub events: UnboundedSender<Result<BackendEvent, BackendError>>,
}

/// Context settings for the engine thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContextSettings {
    pub n_ctx: u32,
    pub n_batch: u32,
    pub threads: i32,
}

/// Starts the engine thread for `model` and returns its job queue.
pub(crate) fn spawn(
    name: &str,
    model: Arc<LlamaModel>,
    settings: ContextSettings,
    queue_depth: usize,
) -> Result<SyncSender<Job>, Error> {
    let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel::<Job>(queue_depth);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), Error>>();
    std::thread::Builder::new()
        .name(format!("engine-{name}"))
        .spawn(move || run(model, settings, jobs_rx, ready_tx))
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
    model: Arc<LlamaModel>,
    settings: ContextSettings,
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
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(settings.n_ctx))
        .with_n_batch(settings.n_batch)
        .with_n_ubatch(settings.n_batch.min(512))
        .with_n_threads(settings.threads)
        .with_n_threads_batch(settings.threads);
    let mut ctx = match model.new_context(backend, params) {
        Ok(ctx) => ctx,
        Err(err) => {
            let _ = ready.send(Err(Error::Context(err.to_string())));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut engine = Engine {
        model: &model,
        batch: LlamaBatch::new(settings.n_batch as usize, 1),
        n_batch: settings.n_batch as usize,
        cached: Vec::new(),
    };
    // The loop ends when every sender is gone: the backend was dropped.
    while let Ok(job) = jobs.recv() {
        if job.events.is_closed() {
            continue;
        }
        let events = job.events.clone();
        if let Err(err) = engine.generate(&mut ctx, job) {
            tracing::error!(error = %err, "generation failed");
            // The KV state is unknown after a failed decode: start clean.
            let _ = ctx.clear_kv_cache_seq(None, None, None);
            engine.cached.clear();
            let _ = events.send(Err(err));
        }
    }
}

/// Per-thread state: the KV cache's token contents and a reusable batch.
struct Engine<'m> {
    model: &'m LlamaModel,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    /// The tokens whose KV cells sequence 0 holds, in position order.
    cached: Vec<LlamaToken>,
}

enum Outcome {
    Finished,
    Cancelled,
}

impl Engine<'_> {
    fn generate(&mut self, ctx: &mut LlamaContext<'_>, job: Job) -> Result<(), BackendError> {
        let Outcome::Finished = self.prefill(ctx, &job)? else {
            return Ok(());
        };
        let prompt_tokens = u32::try_from(job.tokens.len()).unwrap_or(u32::MAX);
        let _ = job.events.send(Ok(BackendEvent::Started {
            prompt: PromptUsage::uncached(prompt_tokens),
        }));
        if job.max_tokens == 0 {
            let _ = job.events.send(Ok(BackendEvent::Finished {
                reason: FinishReason::MaxTokens,
                output_tokens: 0,
            }));
            return Ok(());
        }
        let mut sampler = build_sampler(job.sampling);
        let mut decoder = TextDecoder::new(job.stop_sequences.clone());
        let vocab = self.model.vocab();
        let n_ctx = ctx.n_ctx() as usize;
        let mut output_tokens = 0u32;
        let reason = loop {
            let token = sampler.sample(ctx, self.batch.n_tokens() - 1);
            if vocab.is_eog(token) {
                break FinishReason::EndTurn;
            }
            output_tokens += 1;
            let step = decoder.push(&vocab.token_to_piece(token, false, None));
            if !step.text.is_empty() && job.events.send(Ok(BackendEvent::Text(step.text))).is_err()
            {
                return Ok(());
            }
            if let Some(stop) = step.stop {
                break FinishReason::StopSequence(stop);
            }
            if output_tokens >= job.max_tokens {
                break FinishReason::MaxTokens;
            }
            if self.cached.len() + 1 >= n_ctx {
                break FinishReason::ContextWindowExceeded;
            }
            self.decode(ctx, &[token], true)?;
            if job.events.is_closed() {
                return Ok(());
            }
        };
        let rest = decoder.finish();
        if !rest.is_empty() && !matches!(reason, FinishReason::StopSequence(_)) {
            let _ = job.events.send(Ok(BackendEvent::Text(rest)));
        }
        let _ = job.events.send(Ok(BackendEvent::Finished {
            reason,
            output_tokens,
        }));
        Ok(())
    }

    /// Brings the KV cache to `job.tokens`, reusing the longest cached prefix. At least the
    /// last prompt token is always decoded, since its logits start sampling.
    fn prefill(&mut self, ctx: &mut LlamaContext<'_>, job: &Job) -> Result<Outcome, BackendError> {
        let common = self
            .cached
            .iter()
            .zip(&job.tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(job.tokens.len().saturating_sub(1));
        if common < self.cached.len() {
            let from = u32::try_from(common).unwrap_or(u32::MAX);
            ctx.clear_kv_cache_seq(Some(0), Some(from), None)
                .map_err(|err| BackendError::Generation(err.to_string()))?;
            self.cached.truncate(common);
        }
        let pending = &job.tokens[common..];
        let chunks = pending.len().div_ceil(self.n_batch);
        for (i, chunk) in pending.chunks(self.n_batch).enumerate() {
            if job.events.is_closed() {
                return Ok(Outcome::Cancelled);
            }
            self.decode(ctx, chunk, i + 1 == chunks)?;
        }
        Ok(Outcome::Finished)
    }

    /// Decodes `tokens` at the end of the cache; logits only for the last when asked.
    fn decode(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        tokens: &[LlamaToken],
        last_logits: bool,
    ) -> Result<(), BackendError> {
        self.batch.clear();
        let start = self.cached.len();
        for (i, token) in tokens.iter().enumerate() {
            let pos = i32::try_from(start + i).unwrap_or(i32::MAX);
            let logits = last_logits && i + 1 == tokens.len();
            self.batch
                .add(*token, pos, &[0], logits)
                .map_err(|err| BackendError::Generation(err.to_string()))?;
        }
        ctx.decode(&mut self.batch)
            .map_err(|err| BackendError::Generation(err.to_string()))?;
        self.cached.extend_from_slice(tokens);
        Ok(())
    }
}

/// The llama.cpp sampler chain for a request. Temperature 0 is greedy; otherwise top-k,
/// top-p, temperature, then a random draw, as the Claude API documents these parameters.
fn build_sampler(sampling: Sampling) -> LlamaSampler {
    let temperature = sampling.temperature.unwrap_or(1.0);
    if temperature <= 0.0 {
        return LlamaSampler::greedy();
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
