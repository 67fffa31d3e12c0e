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

    pub(crate) fn duration(self) -> Duration {
        match self {
            Ttl::FiveMinutes => Duration::from_secs(5 * 60),
            Ttl::OneHour => Duration::from_secs(60 * 60),
        }
    }

    pub(crate) fn from_secs(secs: u64) -> Option<Self> {
        [Ttl::FiveMinutes, Ttl::OneHour]
            .into_iter()
            .find(|ttl| ttl.duration().as_secs() == secs)
    }
}

/// Earlier block boundaries a breakpoint checks for a cached prefix, as the Claude API
/// looks back about 20 blocks from each breakpoint.
pub const LOOKBACK_BLOCKS: usize = 20;

/// A `cache_control` breakpoint: the prompt up to `at` (in the units the prompt is given
/// in), which is `tokens` tokens, kept for `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breakpoint {
    pub at: usize,
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

    /// Bills one prompt of `total` tokens and records its breakpoints. `prompt` is what
    /// prefixes are matched on (the rendered text, or tokens), `boundaries` the positions
    /// in it where content blocks end (sorted), and `tokens_at` counts the tokens before a
    /// position. The longest prefix cached at a breakpoint, or at one of the
    /// [`LOOKBACK_BLOCKS`] boundaries before one, is read; what lies past it up to the last
    /// breakpoint is written. The returned keys are to be [`touch`](Self::touch)ed when
    /// the prefix is actually in the cache (after prefill), so a long prefill does not eat
    /// into the TTL.
    pub fn account<T: Hash>(
        &self,
        prompt: &[T],
        total: usize,
        breakpoints: &[Breakpoint],
        boundaries: &[usize],
        tokens_at: impl Fn(usize) -> usize,
    ) -> (PromptUsage, Vec<(u64, Ttl)>) {
        self.account_scoped("", prompt, total, breakpoints, boundaries, tokens_at)
    }

    /// [`CacheLedger::account`] within `scope`: prefixes cached in one scope are never
    /// read in another (each workspace has its own cache unless the operator shares it).
    pub fn account_scoped<T: Hash>(
        &self,
        scope: &str,
        prompt: &[T],
        total: usize,
        breakpoints: &[Breakpoint],
        boundaries: &[usize],
        tokens_at: impl Fn(usize) -> usize,
    ) -> (PromptUsage, Vec<(u64, Ttl)>) {
        let mut points: Vec<Breakpoint> = breakpoints
            .iter()
            .copied()
            .filter(|b| b.tokens >= self.min_tokens && b.tokens <= total && b.at <= prompt.len())
            .collect();
        points.sort_by_key(|b| b.at);
        points.dedup_by_key(|b| b.at);
        let candidates = lookback_candidates(&points, boundaries);
        let keys = prefix_keys(scope, prompt, &candidates);
        let Ok(mut entries) = self.entries.lock() else {
            return (PromptUsage::uncached(count(total)), Vec::new());
        };
        let now = self.clock.now();
        entries.retain(|_, entry| entry.expires > now);
        // Every hit refreshes its TTL; the longest is what is read.
        let mut read = None;
        for (&at, key) in candidates.iter().zip(&keys) {
            if let Some(entry) = entries.get_mut(key) {
                entry.expires = now + entry.ttl.duration();
                read = Some(at);
            }
        }
        let read_at = read.unwrap_or(0);
        let read_tokens = match read {
            None => 0,
            Some(at) => points
                .iter()
                .find(|b| b.at == at)
                .map_or_else(|| tokens_at(at), |b| b.tokens),
        };
        // Everything past the read prefix up to the last breakpoint is written, each
        // segment at the TTL of the breakpoint that ends it.
        let (mut written_5m, mut written_1h) = (0, 0);
        let mut from = read_tokens;
        for point in points.iter().filter(|p| p.at > read_at) {
            let segment = point.tokens.saturating_sub(from);
            match point.ttl {
                Ttl::FiveMinutes => written_5m += segment,
                Ttl::OneHour => written_1h += segment,
            }
            from = from.max(point.tokens);
            entries.insert(
                keys[candidates.partition_point(|&at| at < point.at)],
                Entry {
                    expires: now + point.ttl.duration(),
                    ttl: point.ttl,
                },
            );
        }
        // This prompt's prefixes now in the cache, to be refreshed once prefilled.
        let touched = keys
            .iter()
            .filter_map(|key| entries.get(key).map(|entry| (*key, entry.ttl)))
            .collect();
        let usage = PromptUsage {
            input_tokens: count(total.saturating_sub(from)),
            cache_read_input_tokens: count(read_tokens),
            cache_creation_5m_input_tokens: count(written_5m),
            cache_creation_1h_input_tokens: count(written_1h),
        };
        (usage, touched)
    }

    /// Takes back entries a disk cache holds the cells of, from before a restart, each for
    /// what is left of its TTL.
    pub(crate) fn restore(&self, keys: &[crate::scheduler::RestoredKey]) {
        let now = self.clock.now();
        if let Ok(mut entries) = self.entries.lock() {
            for key in keys {
                let expires = now + key.left;
                let entry = entries.entry(key.key).or_insert(Entry {
                    expires,
                    ttl: key.ttl,
                });
                entry.expires = entry.expires.max(expires);
            }
        }
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

/// The positions a prompt is matched at: every breakpoint, and the block boundaries just
/// before each, sorted and unique.
fn lookback_candidates(points: &[Breakpoint], boundaries: &[usize]) -> Vec<usize> {
    let mut candidates = Vec::new();
    for point in points {
        let before = boundaries.partition_point(|&at| at < point.at);
        candidates.extend_from_slice(&boundaries[before.saturating_sub(LOOKBACK_BLOCKS)..before]);
        candidates.push(point.at);
    }
    candidates.sort_unstable();
    candidates.dedup();
    candidates
}

/// One key per position: a hash of the scope and the prompt up to it, computed in one pass.
fn prefix_keys<T: Hash>(scope: &str, prompt: &[T], positions: &[usize]) -> Vec<u64> {
    let mut hasher = DefaultHasher::new();
    scope.hash(&mut hasher);
    let mut done = 0;
    positions
        .iter()
        .map(|&at| {
            let at = at.min(prompt.len());
            if at > done {
                T::hash_slice(&prompt[done..at], &mut hasher);
                done = at;
            }
            hasher.clone().finish()
        })
        .collect()
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

    /// Bills a token prompt with no block boundaries but the breakpoints.
    fn bill(ledger: &CacheLedger, prompt: &[u32], points: &[Breakpoint]) -> PromptUsage {
        ledger.account(prompt, prompt.len(), points, &[], |at| at).0
    }

    const AT_60: Breakpoint = Breakpoint {
        at: 60,
        tokens: 60,
        ttl: Ttl::FiveMinutes,
    };

    #[test]
    fn first_call_writes_second_reads_and_the_parts_sum_to_the_prompt() {
        let (_, ledger) = ledger();
        let prompt: Vec<u32> = (0..100).collect();
        let first = bill(&ledger, &prompt, &[AT_60]);
        assert_eq!(
            (
                first.cache_creation_5m_input_tokens,
                first.cache_read_input_tokens,
                first.input_tokens
            ),
            (60, 0, 40)
        );
        let second = bill(&ledger, &prompt, &[AT_60]);
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
        bill(&ledger, &prompt, &[AT_60]);
        let mut edited = prompt.clone();
        edited[3] = 999;
        assert_eq!(bill(&ledger, &edited, &[AT_60]).cache_read_input_tokens, 0);
        let two = [
            AT_60,
            Breakpoint {
                at: 90,
                tokens: 90,
                ttl: Ttl::OneHour,
            },
        ];
        let usage = bill(&ledger, &prompt, &two);
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
        bill(&ledger, &prompt, &[AT_60]);
        clock.advance(Duration::from_secs(4 * 60));
        assert_eq!(bill(&ledger, &prompt, &[AT_60]).cache_read_input_tokens, 60);
        // The hit refreshed the TTL: four more minutes is still within it.
        clock.advance(Duration::from_secs(4 * 60));
        assert_eq!(bill(&ledger, &prompt, &[AT_60]).cache_read_input_tokens, 60);
        clock.advance(Duration::from_secs(5 * 60 + 1));
        let expired = bill(&ledger, &prompt, &[AT_60]);
        assert_eq!(
            (
                expired.cache_read_input_tokens,
                expired.cache_creation_5m_input_tokens
            ),
            (0, 60)
        );
        let hour = Breakpoint {
            at: 60,
            tokens: 60,
            ttl: Ttl::OneHour,
        };
        let fresh: Vec<u32> = (1000..1100).collect();
        bill(&ledger, &fresh, &[hour]);
        clock.advance(Duration::from_secs(30 * 60));
        assert_eq!(bill(&ledger, &fresh, &[hour]).cache_read_input_tokens, 60);
    }

    #[test]
    fn prefixes_under_the_minimum_are_not_cached() {
        let (_, ledger) = ledger();
        let prompt: Vec<u32> = (0..100).collect();
        let short = Breakpoint {
            at: 5,
            tokens: 5,
            ttl: Ttl::FiveMinutes,
        };
        assert_eq!(bill(&ledger, &prompt, &[short]), PromptUsage::uncached(100));
        assert!(ledger.is_empty());
    }

    #[test]
    fn the_ttl_runs_from_when_the_prefix_was_computed() {
        let (clock, ledger) = ledger();
        let prompt: Vec<u32> = (0..100).collect();
        let (_, keys) = ledger.account(&prompt, prompt.len(), &[AT_60], &[], |at| at);
        // A prefill longer than the TTL: the entry is touched when it ends.
        clock.advance(Duration::from_secs(6 * 60));
        ledger.touch(&keys);
        clock.advance(Duration::from_secs(4 * 60));
        assert_eq!(bill(&ledger, &prompt, &[AT_60]).cache_read_input_tokens, 60);
    }

    #[test]
    fn a_moved_breakpoint_reads_what_an_earlier_turn_wrote_at_a_block_boundary() {
        // Turn one: blocks end at 50 and 70; the automatic breakpoint is on the last (70).
        let (_, ledger) = ledger();
        let turn_one: Vec<u32> = (0..80).collect();
        let at = |at| Breakpoint {
            at,
            tokens: at,
            ttl: Ttl::FiveMinutes,
        };
        let first = ledger.account(&turn_one, 80, &[at(70)], &[50, 70], |p| p).0;
        assert_eq!(first.cache_creation_5m_input_tokens, 70);
        // Turn two appends a reply and a question (blocks ending at 85 and 95) and moves
        // the breakpoint to 95: the prefix written at 70 is found by looking back.
        let turn_two: Vec<u32> = (0..70).chain(1000..1030).collect();
        let second = ledger
            .account(&turn_two, 100, &[at(95)], &[50, 70, 85, 95], |p| p)
            .0;
        assert_eq!(
            (
                second.cache_read_input_tokens,
                second.cache_creation_5m_input_tokens,
                second.input_tokens
            ),
            (70, 25, 5)
        );
        // A boundary more than LOOKBACK_BLOCKS blocks before the breakpoint is not checked.
        let read_after_turn_one = |boundaries: &[usize]| {
            let (_, ledger) = self::ledger();
            ledger.account(&turn_one, 80, &[at(70)], &[70], |p| p);
            let usage = ledger
                .account(&turn_two, 100, &[at(95)], boundaries, |p| p)
                .0;
            usage.cache_read_input_tokens
        };
        let far: Vec<usize> = std::iter::once(70)
            .chain(71..71 + LOOKBACK_BLOCKS)
            .collect();
        assert_eq!(read_after_turn_one(&far), 0);
        let near: Vec<usize> = std::iter::once(70)
            .chain(72..71 + LOOKBACK_BLOCKS)
            .collect();
        assert_eq!(read_after_turn_one(&near), 70);
    }

    #[test]
    fn a_prefix_cached_in_one_scope_is_not_read_in_another() {
        let (_, ledger) = ledger();
        let prompt: Vec<u32> = (0..100).collect();
        let at = Breakpoint {
            at: 80,
            tokens: 80,
            ttl: Ttl::FiveMinutes,
        };
        let (_, keys) = ledger.account_scoped("wrkspc_a", &prompt, 100, &[at], &[], |p| p);
        ledger.touch(&keys);
        let other = ledger
            .account_scoped("wrkspc_b", &prompt, 100, &[at], &[], |p| p)
            .0;
        assert_eq!(other.cache_read_input_tokens, 0);
        let same = ledger
            .account_scoped("wrkspc_a", &prompt, 100, &[at], &[], |p| p)
            .0;
        assert_eq!(same.cache_read_input_tokens, 80);
    }
}
