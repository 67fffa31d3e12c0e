//! Prompt-cache accounting as the Claude API defines it for `cache_control`.
//!
//! The KV reuse itself is the scheduler's (every slot keeps its prefix; any request
//! reuses the longest one). This ledger decides what a request is *billed*: a prefix up
//! to a breakpoint is written once (`cache_creation_input_tokens`, split by TTL), read
//! while it lives (`cache_read_input_tokens`, each hit refreshing its TTL), and
//! `input_tokens` is the rest, so the three always sum to the prompt's tokens.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use missive_backend::PromptUsage;

/// Prefixes shorter than this are not cached (the Claude API's smallest minimum).
pub const DEFAULT_MIN_TOKENS: usize = 1024;

/// Where time comes from; tests inject their own to expire entries.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The two TTLs the Claude API offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    FiveMinutes,
    OneHour,
}

impl Ttl {
    pub fn parse(ttl: Option<&str>) -> Self {
        match ttl {
            Some("1h") => Ttl::OneHour,
            _ => Ttl::FiveMinutes,
        }
    }

    fn duration(self) -> Duration {
        match self {
            Ttl::FiveMinutes => Duration::from_secs(5 * 60),
            Ttl::OneHour => Duration::from_secs(60 * 60),
        }
    }
}

/// A `cache_control` breakpoint: the prompt's first `tokens` tokens, kept for `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breakpoint {
    pub tokens: usize,
    pub ttl: Ttl,
}

struct Entry {
    expires: Instant,
    ttl: Ttl,
}

pub struct CacheLedger {
    entries: Mutex<HashMap<u64, Entry>>,
    clock: Arc<dyn Clock>,
    min_tokens: usize,
}

impl CacheLedger {
    pub fn new(clock: Arc<dyn Clock>, min_tokens: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            clock,
            min_tokens,
        }
    }

    /// Bills one prompt and records its breakpoints. The returned keys are to be
    /// [`touch`](Self::touch)ed when the prefix is actually in the cache (after prefill), so
    /// a long prefill does not eat into the TTL.
    pub fn account<T: Hash>(
        &self,
        prompt: &[T],
        breakpoints: &[Breakpoint],
    ) -> (PromptUsage, Vec<(u64, Ttl)>) {
        let total = prompt.len();
        let mut points: Vec<Breakpoint> = breakpoints
            .iter()
            .copied()
            .filter(|b| b.tokens >= self.min_tokens && b.tokens <= total)
            .collect();
        points.sort_by_key(|b| b.tokens);
        points.dedup_by_key(|b| b.tokens);
        let Ok(mut entries) = self.entries.lock() else {
            return (PromptUsage::uncached(count(total)), Vec::new());
        };
        let now = self.clock.now();
        entries.retain(|_, entry| entry.expires > now);
        let keys: Vec<u64> = points
            .iter()
            .map(|b| prefix_key(&prompt[..b.tokens]))
            .collect();
        // The longest breakpoint prefix still alive is read; every hit refreshes its TTL.
        let mut read = 0;
        for (point, key) in points.iter().zip(&keys) {
            if let Some(entry) = entries.get_mut(key) {
                entry.expires = now + entry.ttl.duration();
                read = point.tokens;
            }
        }
        // Everything past the read prefix up to the last breakpoint is written, each
        // segment at the TTL of the breakpoint that ends it.
        let (mut written_5m, mut written_1h) = (0, 0);
        let mut from = read;
        for (point, key) in points.iter().zip(&keys) {
            if point.tokens <= read {
                continue;
            }
            let segment = point.tokens - from;
            match point.ttl {
                Ttl::FiveMinutes => written_5m += segment,
                Ttl::OneHour => written_1h += segment,
            }
            from = point.tokens;
            entries.insert(
                *key,
                Entry {
                    expires: now + point.ttl.duration(),
                    ttl: point.ttl,
                },
            );
        }
        let usage = PromptUsage {
            input_tokens: count(total - from.max(read)),
            cache_read_input_tokens: count(read),
            cache_creation_5m_input_tokens: count(written_5m),
            cache_creation_1h_input_tokens: count(written_1h),
        };
        let touched = keys.into_iter().zip(points.iter().map(|p| p.ttl)).collect();
        (usage, touched)
    }

    /// Restarts the TTL of these entries from now.
    pub fn touch(&self, keys: &[(u64, Ttl)]) {
        let now = self.clock.now();
        if let Ok(mut entries) = self.entries.lock() {
            for (key, ttl) in keys {
                if let Some(entry) = entries.get_mut(key) {
                    entry.expires = now + ttl.duration();
                }
            }
        }
    }

    /// Live entries (for metrics and tests).
    pub fn len(&self) -> usize {
        let now = self.clock.now();
        self.entries
            .lock()
            .map(|entries| entries.values().filter(|e| e.expires > now).count())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn prefix_key<T: Hash>(prefix: &[T]) -> u64 {
    let mut hasher = DefaultHasher::new();
    prefix.hash(&mut hasher);
    hasher.finish()
}

fn count(tokens: usize) -> u32 {
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeClock(Mutex<Instant>);

    impl FakeClock {
        fn advance(&self, by: Duration) {
            let mut now = self.0.lock().unwrap();
            *now += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn ledger() -> (Arc<FakeClock>, CacheLedger) {
        let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
        (clock.clone(), CacheLedger::new(clock, 10))
    }

    fn sum(u: &PromptUsage) -> u32 {
        u.input_tokens
            + u.cache_read_input_tokens
            + u.cache_creation_5m_input_tokens
            + u.cache_creation_1h_input_tokens
    }

    const AT_60: Breakpoint = Breakpoint {
        tokens: 60,
        ttl: Ttl::FiveMinutes,
    };

    #[test]
    fn first_call_writes_second_reads_and_the_parts_sum_to_the_prompt() {
        let (_, ledger) = ledger();
        let prompt: Vec<u32> = (0..100).collect();
        let first = ledger.account(&prompt, &[AT_60]).0;
        assert_eq!(
            (
                first.cache_creation_5m_input_tokens,
                first.cache_read_input_tokens,
                first.input_tokens
            ),
            (60, 0, 40)
        );
        let second = ledger.account(&prompt, &[AT_60]).0;
        assert_eq!(
            (
                second.cache_creation_5m_input_tokens,
                second.cache_read_input_tokens,
                second.input_tokens
            ),
            (0, 60, 40)
        );
        assert_eq!((sum(&first), sum(&second)), (100, 100));
    }

    #[test]
    fn a_changed_prefix_misses_and_a_later_breakpoint_extends_the_cache() {
        let (_, ledger) = ledger();
        let prompt: Vec<u32> = (0..100).collect();
        ledger.account(&prompt, &[AT_60]);
        let mut edited = prompt.clone();
        edited[3] = 999;
        assert_eq!(
            ledger.account(&edited, &[AT_60]).0.cache_read_input_tokens,
            0
        );
        let two = [
            AT_60,
            Breakpoint {
                tokens: 90,
                ttl: Ttl::OneHour,
            },
        ];
        let usage = ledger.account(&prompt, &two).0;
        assert_eq!(
            (
                usage.cache_read_input_tokens,
                usage.cache_creation_1h_input_tokens,
                usage.input_tokens
            ),
            (60, 30, 10)
        );
    }

    #[test]
    fn entries_expire_after_their_ttl_and_hits_refresh_it() {
        let (clock, ledger) = ledger();
        let prompt: Vec<u32> = (0..100).collect();
        ledger.account(&prompt, &[AT_60]);
        clock.advance(Duration::from_secs(4 * 60));
        assert_eq!(
            ledger.account(&prompt, &[AT_60]).0.cache_read_input_tokens,
            60
        );
        // The hit refreshed the TTL: four more minutes is still within it.
        clock.advance(Duration::from_secs(4 * 60));
        assert_eq!(
            ledger.account(&prompt, &[AT_60]).0.cache_read_input_tokens,
            60
        );
        clock.advance(Duration::from_secs(5 * 60 + 1));
        let expired = ledger.account(&prompt, &[AT_60]).0;
        assert_eq!(
            (
                expired.cache_read_input_tokens,
                expired.cache_creation_5m_input_tokens
            ),
            (0, 60)
        );
        let hour = Breakpoint {
            tokens: 60,
            ttl: Ttl::OneHour,
        };
        let fresh: Vec<u32> = (1000..1100).collect();
        ledger.account(&fresh, &[hour]);
        clock.advance(Duration::from_secs(30 * 60));
        assert_eq!(
            ledger.account(&fresh, &[hour]).0.cache_read_input_tokens,
            60
        );
    }

    #[test]
    fn prefixes_under_the_minimum_are_not_cached() {
        let (_, ledger) = ledger();
        let prompt: Vec<u32> = (0..100).collect();
        let short = Breakpoint {
            tokens: 5,
            ttl: Ttl::FiveMinutes,
        };
        assert_eq!(
            ledger.account(&prompt, &[short]).0,
            PromptUsage::uncached(100)
        );
        assert!(ledger.is_empty());
    }

    #[test]
    fn the_ttl_runs_from_when_the_prefix_was_computed() {
        let (clock, ledger) = ledger();
        let prompt: Vec<u32> = (0..100).collect();
        let (_, keys) = ledger.account(&prompt, &[AT_60]);
        // A prefill longer than the TTL: the entry is touched when it ends.
        clock.advance(Duration::from_secs(6 * 60));
        ledger.touch(&keys);
        clock.advance(Duration::from_secs(4 * 60));
        assert_eq!(
            ledger.account(&prompt, &[AT_60]).0.cache_read_input_tokens,
            60
        );
    }
}
