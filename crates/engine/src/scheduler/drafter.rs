//! Speculative decoding with a draft model: a smaller model sharing the target's tokenizer
//! proposes the next tokens, and the target checks them all in one decode (see
//! `Slot::sample`, the same check prompt lookup goes through).
//!
//! The draft proposes greedily, so each proposal is a single token with probability one.
//! For such a proposal the standard rejection rule (accept with probability
//! `min(1, p(d) / q(d))`, else sample from the normalised `max(0, p - q)`) comes down to:
//! sample from the target's own distribution and keep the proposal when the sample equals
//! it. That is what the check does, at any temperature and under any grammar, so the output
//! keeps the target's distribution exactly; greedy output is the target's greedy output.

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::error::Error;

/// A draft model's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DraftSettings {
    /// Tokens proposed per step, at most.
    pub tokens: usize,
    /// Proposing stops at a token the draft gives less probability than this.
    pub min_p: f32,
}

/// The draft model's context: one KV sequence per slot, kept in step with the slot's tokens
/// lazily (what the slot holds that the draft does not is decoded before proposing).
pub(super) struct Drafter<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    n_ctx: usize,
    /// The tokens each sequence's cells hold.
    cached: Vec<Vec<LlamaToken>>,
    settings: DraftSettings,
}

impl<'m> Drafter<'m> {
    pub fn new(
        model: &'m LlamaModel,
        params: LlamaContextParams,
        n_ctx: u32,
        slots: u32,
        settings: DraftSettings,
    ) -> Result<Self, Error> {
        let n_batch = 512;
        let params = params
            .with_n_ctx(std::num::NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_seq_max(slots)
            .with_kv_unified(true);
        let backend = crate::model::llama_backend()?;
        let ctx = model
            .new_context(backend, params)
            .map_err(|err| Error::Context(format!("the draft model: {err}")))?;
        Ok(Self {
            ctx,
            batch: LlamaBatch::new(n_batch as usize, 1),
            n_batch: n_batch as usize,
            n_ctx: n_ctx as usize,
            cached: vec![Vec::new(); slots as usize],
            settings,
        })
    }

    /// Up to `max` tokens the draft expects after `history` (the slot's tokens and the one
    /// just sampled), for sequence `seq`.
    pub fn propose(&mut self, seq: u32, history: &[LlamaToken], max: usize) -> Vec<LlamaToken> {
        let max = max.min(self.settings.tokens);
        if max == 0 || history.is_empty() {
            return Vec::new();
        }
        match self.try_propose(seq as usize, history, max) {
            Ok(drafts) => drafts,
            Err(err) => {
                tracing::debug!(error = %err, "the draft model proposed nothing");
                self.forget(seq as usize);
                Vec::new()
            }
        }
    }

    fn try_propose(
        &mut self,
        seq: usize,
        history: &[LlamaToken],
        max: usize,
    ) -> Result<Vec<LlamaToken>, String> {
        if seq >= self.cached.len() {
            return Err("no such sequence".into());
        }
        // Room for the history and the proposals: else the other sequences' cells go.
        let others: usize = (0..self.cached.len())
            .filter(|&s| s != seq)
            .map(|s| self.cached[s].len())
            .sum();
        if history.len() + max > self.n_ctx {
            return Err("the history is longer than the draft's context".into());
        }
        if others + history.len() + max > self.n_ctx {
            for other in (0..self.cached.len()).filter(|&s| s != seq) {
                self.forget(other);
            }
        }
        // Keep what the draft already holds of the history, minus the last token, whose
        // logits start the proposal.
        let keep = self.cached[seq]
            .iter()
            .zip(history)
            .take_while(|(a, b)| a == b)
            .count()
            .min(history.len() - 1);
        self.truncate(seq, keep)?;
        self.decode(seq, &history[keep..])?;
        let mut drafts = Vec::with_capacity(max);
        loop {
            let logits = self.ctx.get_logits_ith(self.batch.n_tokens() - 1);
            let (token, p) = most_likely_with_p(logits);
            if p < self.settings.min_p {
                break;
            }
            drafts.push(token);
            if drafts.len() == max {
                break;
            }
            self.decode(seq, &[token])?;
        }
        Ok(drafts)
    }

    /// Decodes `tokens` after what sequence `seq` holds, in batches; logits for the last.
    fn decode(&mut self, seq: usize, tokens: &[LlamaToken]) -> Result<(), String> {
        let ids = [i32::try_from(seq).map_err(|err| err.to_string())?];
        for chunk in tokens.chunks(self.n_batch) {
            self.batch.clear();
            for (i, &token) in chunk.iter().enumerate() {
                let pos = i32::try_from(self.cached[seq].len()).map_err(|err| err.to_string())?;
                self.batch
                    .add(token, pos, &ids, i + 1 == chunk.len())
                    .map_err(|err| err.to_string())?;
                self.cached[seq].push(token);
            }
            self.ctx
                .decode(&mut self.batch)
                .map_err(|err| err.to_string())?;
        }
        Ok(())
    }

    fn truncate(&mut self, seq: usize, keep: usize) -> Result<(), String> {
        if keep < self.cached[seq].len() {
            let from = u32::try_from(keep).map_err(|err| err.to_string())?;
            let id = u32::try_from(seq).map_err(|err| err.to_string())?;
            self.ctx
                .clear_kv_cache_seq(Some(id), Some(from), None)
                .map_err(|err| err.to_string())?;
            self.cached[seq].truncate(keep);
        }
        Ok(())
    }

    fn forget(&mut self, seq: usize) {
        if let Ok(id) = u32::try_from(seq) {
            let _ = self.ctx.clear_kv_cache_seq(Some(id), None, None);
        }
        if let Some(cached) = self.cached.get_mut(seq) {
            cached.clear();
        }
    }

    /// Sequences `a` and `b` swapped places in the target: their draft cells follow, or
    /// (simpler, and rare) are dropped, to be decoded again when next needed.
    pub fn swapped(&mut self, a: usize, b: usize) {
        self.forget(a);
        self.forget(b);
    }
}

/// The most likely token and its probability under the logits' softmax.
fn most_likely_with_p(logits: &[f32]) -> (LlamaToken, f32) {
    let (best, max) =
        logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| match v > bv {
                true => (i, v),
                false => (bi, bv),
            });
    let sum: f32 = logits.iter().map(|&v| (v - max).exp()).sum();
    let p = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    (LlamaToken(i32::try_from(best).unwrap_or(0)), p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_likely_token_comes_with_its_softmax_probability() {
        let (token, p) = most_likely_with_p(&[0.0, 2.0_f32.ln(), 0.0]);
        assert_eq!(token, LlamaToken(1));
        assert!((p - 0.5).abs() < 1e-6, "{p}");
        let (_, p) = most_likely_with_p(&[5.0]);
        assert!((p - 1.0).abs() < 1e-6);
    }
}
