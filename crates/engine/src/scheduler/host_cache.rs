//! Prefixes evicted from the KV cells, kept in host RAM as llama.cpp sequence states up to
//! a byte budget (least recently used dropped first), and restored into a slot when a
//! request shares more of its prompt with one of them than with any slot.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use llama_cpp_2::context::session::SeqState;
use llama_cpp_2::token::LlamaToken;

/// Counters shared with the backend, for metrics and tests.
#[derive(Debug, Default)]
pub struct HostCacheStats {
    pub bytes: AtomicUsize,
    pub entries: AtomicUsize,
    pub spills: AtomicU64,
    pub restores: AtomicU64,
    /// Caches swapped between slots to keep running sequences adjacent (per-slot KV).
    pub moves: AtomicU64,
}

pub(crate) struct Spilled {
    /// Whose cache this is (a hash of the request's cache scope): only that scope reads it.
    pub scope: u64,
    pub tokens: Vec<LlamaToken>,
    pub state: SeqState,
    last_used: u64,
}

pub(crate) struct HostCache {
    entries: Vec<Spilled>,
    budget: usize,
    used: usize,
    stats: Arc<HostCacheStats>,
}

impl HostCache {
    pub fn new(budget: usize, stats: Arc<HostCacheStats>) -> Self {
        Self {
            entries: Vec::new(),
            budget,
            used: 0,
            stats,
        }
    }

    /// Keeps a prefix, dropping the least recently used ones until it fits. A state
    /// larger than the whole budget is not kept.
    pub fn save(&mut self, scope: u64, tokens: Vec<LlamaToken>, state: SeqState, tick: u64) {
        let size = state.byte_len();
        if size > self.budget {
            return;
        }
        // A prefix of the new entry adds nothing the new entry does not hold.
        self.entries.retain(|e| {
            !(e.scope == scope && e.tokens.len() <= tokens.len() && tokens.starts_with(&e.tokens))
        });
        self.used = self.entries.iter().map(|e| e.state.byte_len()).sum();
        while self.used + size > self.budget {
            let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i)
            else {
                break;
            };
            self.used -= self.entries.swap_remove(oldest).state.byte_len();
        }
        self.used += size;
        self.entries.push(Spilled {
            scope,
            tokens,
            state,
            last_used: tick,
        });
        self.stats.spills.fetch_add(1, Ordering::Relaxed);
        self.publish();
    }

    /// Counts two slots swapping their caches (they pass through host memory).
    pub fn count_move(&self) {
        self.stats.moves.fetch_add(1, Ordering::Relaxed);
    }

    /// The entry of `scope` sharing the longest prefix with `prompt`, and that length.
    pub fn best(&self, scope: u64, prompt: &[LlamaToken]) -> Option<(usize, usize)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.scope == scope)
            .map(|(i, e)| {
                let common = e
                    .tokens
                    .iter()
                    .zip(prompt)
                    .take_while(|(a, b)| a == b)
                    .count();
                (i, common)
            })
            .max_by_key(|(_, common)| *common)
    }

    /// Removes an entry to restore it into a slot (the slot then holds it).
    pub fn take(&mut self, index: usize) -> Option<Spilled> {
        if index >= self.entries.len() {
            return None;
        }
        let entry = self.entries.swap_remove(index);
        self.used -= entry.state.byte_len();
        self.stats.restores.fetch_add(1, Ordering::Relaxed);
        self.publish();
        Some(entry)
    }

    fn publish(&self) {
        self.stats.bytes.store(self.used, Ordering::Relaxed);
        self.stats
            .entries
            .store(self.entries.len(), Ordering::Relaxed);
    }
}
