//! Per-workspace rate limits as the Claude API applies them: requests, input tokens and
//! output tokens per minute, each a token bucket that refills continuously. A request
//! reserves an estimate before it runs (its prompt's size, its `max_tokens`) and settles
//! the difference when its usage is known; cache reads do not count as input tokens.
//!
//! With Redis configured ([`Shared`]), the buckets live there and every replica takes from
//! the same ones; this replica keeps the levels Redis last reported, for the response
//! headers and as its own buckets should Redis become unreachable. A busy workspace's
//! requests are mostly admitted from a small stock the replica took ahead ([`lease`]).

mod lease;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use missive_protocol::ErrorType;
use missive_store::WorkspaceLimits;

use crate::error::ApiError;
use crate::shared::Shared;

/// The limit, remaining and reset headers of the requests, input-token, output-token and
/// (most restrictive) token buckets, in that order.
static RATE_LIMIT_HEADERS: [[HeaderName; 3]; 4] = [
    rate_limit_headers(
        "anthropic-ratelimit-requests-limit",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
    ),
    rate_limit_headers(
        "anthropic-ratelimit-input-tokens-limit",
        "anthropic-ratelimit-input-tokens-remaining",
        "anthropic-ratelimit-input-tokens-reset",
    ),
    rate_limit_headers(
        "anthropic-ratelimit-output-tokens-limit",
        "anthropic-ratelimit-output-tokens-remaining",
        "anthropic-ratelimit-output-tokens-reset",
    ),
    rate_limit_headers(
        "anthropic-ratelimit-tokens-limit",
        "anthropic-ratelimit-tokens-remaining",
        "anthropic-ratelimit-tokens-reset",
    ),
];

const fn rate_limit_headers(
    limit: &'static str,
    remaining: &'static str,
    reset: &'static str,
) -> [HeaderName; 3] {
    [
        HeaderName::from_static(limit),
        HeaderName::from_static(remaining),
        HeaderName::from_static(reset),
    ]
}

/// Per-minute limits of one workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: u32,
    pub input_tokens_per_minute: u32,
    pub output_tokens_per_minute: u32,
}

impl Default for Limits {
    /// Generous defaults (the Claude API's higher tiers), so a local server is not throttled
    /// until an operator says so.
    fn default() -> Self {
        Self {
            requests_per_minute: 4_000,
            input_tokens_per_minute: 2_000_000,
            output_tokens_per_minute: 400_000,
        }
    }
}

impl Limits {
    /// Per-minute capacities: requests, input tokens, output tokens.
    fn capacities(&self) -> [f64; 3] {
        [
            f64::from(self.requests_per_minute),
            f64::from(self.input_tokens_per_minute),
            f64::from(self.output_tokens_per_minute),
        ]
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    capacity: f64,
    level: f64,
    updated: Instant,
}

impl Bucket {
    fn new(capacity: u32, now: Instant) -> Self {
        Self {
            capacity: f64::from(capacity),
            level: f64::from(capacity),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + elapsed * self.capacity / 60.0).min(self.capacity);
        self.updated = now;
    }

    /// Time until `amount` would be available.
    fn wait_for(&self, amount: f64) -> Duration {
        let missing = (amount.min(self.capacity) - self.level).max(0.0);
        Duration::from_secs_f64(missing * 60.0 / self.capacity.max(1.0))
    }

    fn until_full(&self) -> Duration {
        self.wait_for(self.capacity)
    }
}

#[derive(Debug, Clone, Copy)]
struct Buckets {
    requests: Bucket,
    input: Bucket,
    output: Bucket,
    /// Taken from the shared buckets ahead of requests (with Redis only).
    lease: lease::Lease,
}

impl Buckets {
    /// In the order of [`Limits::capacities`].
    fn all_mut(&mut self) -> [&mut Bucket; 3] {
        [&mut self.requests, &mut self.input, &mut self.output]
    }

    fn get(&self, k: usize) -> &Bucket {
        match k {
            0 => &self.requests,
            1 => &self.input,
            _ => &self.output,
        }
    }
}

/// The 429 for a request that `buckets[short]` cannot serve.
fn refusal(
    workspace: &str,
    limits: &Limits,
    buckets: &Buckets,
    short: usize,
    amounts: &[f64; 3],
) -> ApiError {
    let (name, limit) = match short {
        0 => ("requests per minute", limits.requests_per_minute),
        1 => ("input tokens per minute", limits.input_tokens_per_minute),
        _ => ("output tokens per minute", limits.output_tokens_per_minute),
    };
    let amount = amounts.get(short).copied().unwrap_or(1.0);
    let retry = buckets
        .get(short)
        .wait_for(amount)
        .as_secs_f64()
        .ceil()
        .max(1.0) as u64;
    ApiError {
        retry_after: Some(retry),
        ..ApiError::new(
            ErrorType::RateLimitError,
            format!(
                "This request would exceed the rate limit for workspace `{workspace}` of {limit} {name}. Retry after {retry} s, or ask the operator to raise the limit."
            ),
        )
    }
}

/// What a request holds until it settles.
#[derive(Debug, Clone)]
pub struct Reservation {
    workspace: Arc<str>,
    input: u32,
    output: u32,
    /// Taken from the shared buckets (else from this replica's own).
    shared: bool,
}

/// Where time comes from; tests inject their own.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

pub struct RateLimiter {
    defaults: Limits,
    overrides: HashMap<String, Limits>,
    /// Set at run time (the console), by workspace name: over the config's.
    runtime: RwLock<HashMap<String, WorkspaceLimits>>,
    buckets: Mutex<HashMap<String, Buckets>>,
    clock: Arc<dyn Clock>,
    /// Off only when governance is off: no buckets, no headers.
    enabled: bool,
    shared: Option<Shared>,
}

impl RateLimiter {
    pub fn new(defaults: Limits, overrides: HashMap<String, Limits>) -> Self {
        Self::with_clock(defaults, overrides, Arc::new(SystemClock))
    }

    pub fn with_clock(
        defaults: Limits,
        overrides: HashMap<String, Limits>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            defaults,
            overrides,
            runtime: RwLock::default(),
            buckets: Mutex::new(HashMap::new()),
            clock,
            enabled: true,
            shared: None,
        }
    }

    /// Takes from buckets every replica shares.
    pub fn shared(mut self, shared: Shared) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Limits nothing (governance off).
    pub fn unlimited() -> Self {
        Self {
            enabled: false,
            ..Self::new(Limits::default(), HashMap::new())
        }
    }

    /// Whether limits are configured for this workspace name.
    pub fn names(&self, workspace: &str) -> bool {
        self.overrides.contains_key(workspace)
    }

    fn limits(&self, workspace: &str) -> Limits {
        let configured = self
            .overrides
            .get(workspace)
            .copied()
            .unwrap_or(self.defaults);
        let runtime = match self.runtime.read() {
            Ok(runtime) => runtime.get(workspace).copied(),
            Err(poisoned) => poisoned.into_inner().get(workspace).copied(),
        };
        match runtime {
            None => configured,
            Some(set) => Limits {
                requests_per_minute: set
                    .requests_per_minute
                    .unwrap_or(configured.requests_per_minute),
                input_tokens_per_minute: set
                    .input_tokens_per_minute
                    .unwrap_or(configured.input_tokens_per_minute),
                output_tokens_per_minute: set
                    .output_tokens_per_minute
                    .unwrap_or(configured.output_tokens_per_minute),
            },
        }
    }

    /// Takes up the limits set for a workspace at run time; a cheap read when they are
    /// what this limiter already has.
    pub fn set_runtime(&self, workspace: &str, limits: WorkspaceLimits) {
        let current = match self.runtime.read() {
            Ok(runtime) => runtime.get(workspace).copied(),
            Err(poisoned) => poisoned.into_inner().get(workspace).copied(),
        };
        if current.unwrap_or_default() == limits {
            return;
        }
        let mut runtime = match self.runtime.write() {
            Ok(runtime) => runtime,
            Err(poisoned) => poisoned.into_inner(),
        };
        if limits.is_empty() {
            runtime.remove(workspace);
        } else {
            runtime.insert(workspace.to_owned(), limits);
        }
    }

    fn with_buckets<T>(&self, workspace: &str, f: impl FnOnce(&mut Buckets) -> T) -> T {
        let now = self.clock.now();
        let limits = self.limits(workspace);
        let mut all = match self.buckets.lock() {
            Ok(all) => all,
            Err(poisoned) => poisoned.into_inner(),
        };
        let buckets = all.entry(workspace.to_owned()).or_insert_with(|| Buckets {
            requests: Bucket::new(limits.requests_per_minute, now),
            input: Bucket::new(limits.input_tokens_per_minute, now),
            output: Bucket::new(limits.output_tokens_per_minute, now),
            lease: lease::Lease::default(),
        });
        for (bucket, capacity) in [
            &mut buckets.requests,
            &mut buckets.input,
            &mut buckets.output,
        ]
        .into_iter()
        .zip(limits.capacities())
        {
            bucket.refill(now);
            // A limit changed at run time: a raise adds its headroom at once, a cut leaves
            // no more than the new size.
            if bucket.capacity != capacity {
                bucket.level = (bucket.level + (capacity - bucket.capacity).max(0.0)).min(capacity);
                bucket.capacity = capacity;
            }
        }
        f(buckets)
    }

    /// Takes one request and the estimated tokens, or refuses with a 429 that names the
    /// limit and says when to retry.
    pub async fn reserve(
        &self,
        workspace: &str,
        input_estimate: u32,
        max_tokens: u32,
    ) -> Result<Reservation, ApiError> {
        let amounts = [1.0, f64::from(input_estimate), f64::from(max_tokens)];
        let reservation = |shared| Reservation {
            workspace: Arc::from(workspace),
            input: input_estimate,
            output: max_tokens,
            shared,
        };
        if !self.enabled {
            return Ok(Reservation {
                input: 0,
                output: 0,
                ..reservation(false)
            });
        }
        let limits = self.limits(workspace);
        if let Some(shared) = &self.shared {
            let now = self.clock.now();
            let mut top_up = [0.0; 3];
            if let Some(size) = lease::size(limits.capacities()) {
                let (taken, wanted) = self.with_buckets(workspace, |b| {
                    if b.lease.take(now, &amounts) {
                        for (bucket, amount) in b.all_mut().into_iter().zip(amounts) {
                            bucket.level -= amount;
                        }
                        return (true, b.lease.top_up_if_low(now, &size));
                    }
                    (false, b.lease.top_up(now, &size))
                });
                if taken {
                    // Topped up while half the stock remains, so that a busy workspace's
                    // connections do not all find it empty and queue on Redis. This
                    // request is admitted already: a failed top-up only leaves the stock
                    // to run down.
                    if wanted.iter().any(|t| *t > 0.0) {
                        let topped = self
                            .take_shared(shared, workspace, &limits, &[0.0; 3], wanted, now)
                            .await;
                        if let Err(err) = topped {
                            tracing::debug!(error = %err, "rate-limit stock not topped up");
                        }
                    }
                    return Ok(reservation(true));
                }
                top_up = wanted;
            }
            match self
                .take_shared(shared, workspace, &limits, &amounts, top_up, now)
                .await
            {
                Ok(None) => return Ok(reservation(true)),
                Ok(Some(refused)) => return Err(refused),
                Err(err) => shared.unreachable(&err)?,
            }
        }
        self.with_buckets(workspace, |b| {
            let levels = b.all_mut();
            if let Some(short) =
                (0..3).find(|&k| levels[k].level < amounts[k].min(levels[k].capacity))
            {
                return Err(refusal(workspace, &limits, b, short, &amounts));
            }
            for (bucket, amount) in levels.into_iter().zip(amounts) {
                bucket.level -= amount;
            }
            Ok(reservation(false))
        })
    }

    /// Takes `amounts` from the shared buckets, and `top_up` for this replica's stock when
    /// there is room for it; the refusal when a bucket is short. Redis decides; this
    /// replica only mirrors the levels it reported, plus the stock it holds.
    async fn take_shared(
        &self,
        shared: &Shared,
        workspace: &str,
        limits: &Limits,
        amounts: &[f64; 3],
        top_up: [f64; 3],
        now: Instant,
    ) -> Result<Option<ApiError>, missive_coordination::Error> {
        let asked = top_up.iter().any(|t| *t > 0.0);
        let take = shared
            .redis
            .take(workspace, &limits.capacities(), amounts, &top_up)
            .await;
        self.with_buckets(workspace, |b| {
            if asked {
                let granted = take.as_ref().is_ok_and(|t| t.leased);
                b.lease.add(now, granted.then_some(&top_up));
            }
            let take = take?;
            let stock = b.lease.stock(now);
            for ((bucket, level), held) in b.all_mut().into_iter().zip(&take.levels).zip(stock) {
                bucket.level = *level + held;
            }
            Ok(take
                .short
                .map(|short| refusal(workspace, limits, b, short, amounts)))
        })
    }

    /// Takes tokens spent beyond `reservation` (an advisor's answer) from the buckets it
    /// drew on, after the fact: they may go into debt, and later requests wait for them
    /// to refill.
    pub fn charge_beyond(&self, reservation: &Reservation, uncached_input: u32, output: u32) {
        let nothing = Reservation {
            input: 0,
            output: 0,
            ..reservation.clone()
        };
        self.settle(&nothing, uncached_input, output);
    }

    /// Replaces the estimate with what the request used: uncached input (cache reads do
    /// not count) and output tokens. Unused reservation flows back.
    pub fn settle(&self, reservation: &Reservation, uncached_input: u32, output: u32) {
        if !self.enabled {
            return;
        }
        let back = [
            0.0,
            f64::from(reservation.input) - f64::from(uncached_input),
            f64::from(reservation.output) - f64::from(output),
        ];
        if let (true, Some(shared)) = (reservation.shared, &self.shared) {
            let limits = self.limits(&reservation.workspace);
            let back = match lease::size(limits.capacities()) {
                Some(size) => {
                    let now = self.clock.now();
                    self.with_buckets(&reservation.workspace, |b| {
                        b.lease.give_back(now, &size, back)
                    })
                }
                None => back,
            };
            // Nothing to settle (a token count, an estimate that was exact, what the
            // stock kept): no Redis call.
            if back.iter().any(|b| *b != 0.0) {
                shared
                    .redis
                    .give_back(&reservation.workspace, &limits.capacities(), &back);
            }
        }
        self.with_buckets(&reservation.workspace, |b| {
            b.input.level = (b.input.level + f64::from(reservation.input)
                - f64::from(uncached_input))
            .min(b.input.capacity);
            b.output.level = (b.output.level + f64::from(reservation.output) - f64::from(output))
                .min(b.output.capacity);
        });
    }

    /// The `anthropic-ratelimit-*` headers for a workspace as of now.
    pub fn headers(&self, workspace: &str) -> HeaderMap {
        if !self.enabled {
            return HeaderMap::new();
        }
        let limits = self.limits(workspace);
        let now = SystemTime::now();
        let snapshot = self.with_buckets(workspace, |b| *b);
        // `tokens-*` is the most restrictive of the token limits in effect.
        let (tight, tight_limit) = if snapshot.input.level / snapshot.input.capacity.max(1.0)
            <= snapshot.output.level / snapshot.output.capacity.max(1.0)
        {
            (&snapshot.input, limits.input_tokens_per_minute)
        } else {
            (&snapshot.output, limits.output_tokens_per_minute)
        };
        let mut headers = HeaderMap::with_capacity(RATE_LIMIT_HEADERS.len() * 3);
        let buckets = [
            (&snapshot.requests, limits.requests_per_minute),
            (&snapshot.input, limits.input_tokens_per_minute),
            (&snapshot.output, limits.output_tokens_per_minute),
            (tight, tight_limit),
        ];
        for ([limit, remaining, reset], (bucket, per_minute)) in
            RATE_LIMIT_HEADERS.iter().zip(buckets)
        {
            let until_full = humantime::format_rfc3339_seconds(now + bucket.until_full());
            headers.insert(limit.clone(), HeaderValue::from(per_minute));
            headers.insert(
                remaining.clone(),
                HeaderValue::from(bucket.level.max(0.0).floor() as u64),
            );
            if let Ok(value) = HeaderValue::try_from(until_full.to_string()) {
                headers.insert(reset.clone(), value);
            }
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeClock(Mutex<Instant>);

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn limiter(rpm: u32, itpm: u32, otpm: u32) -> (Arc<FakeClock>, RateLimiter) {
        let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
        let limits = Limits {
            requests_per_minute: rpm,
            input_tokens_per_minute: itpm,
            output_tokens_per_minute: otpm,
        };
        let limiter = RateLimiter::with_clock(limits, HashMap::new(), clock.clone());
        (clock, limiter)
    }

    #[tokio::test]
    async fn a_limit_set_at_run_time_applies_next_and_a_raise_adds_its_headroom_at_once() {
        let limiter = RateLimiter::new(Limits::default(), HashMap::new());
        let one = WorkspaceLimits {
            requests_per_minute: Some(1),
            ..WorkspaceLimits::default()
        };
        limiter.set_runtime("w", one);
        assert!(limiter.reserve("w", 0, 0).await.is_ok());
        let refused = limiter.reserve("w", 0, 0).await.unwrap_err();
        assert!(
            refused.message.contains("1 requests per minute"),
            "{}",
            refused.message
        );
        assert!(
            limiter.reserve("other", 0, 0).await.is_ok(),
            "per workspace"
        );
        limiter.set_runtime("w", WorkspaceLimits::default());
        assert!(limiter.reserve("w", 0, 0).await.is_ok());
    }

    #[tokio::test]
    async fn requests_past_the_limit_wait_for_the_refill() {
        let (clock, limiter) = limiter(2, 1000, 1000);
        limiter.reserve("w", 1, 1).await.unwrap();
        limiter.reserve("w", 1, 1).await.unwrap();
        let refused = limiter.reserve("w", 1, 1).await.unwrap_err();
        assert_eq!(refused.retry_after, Some(30));
        assert!(
            refused.message.contains("2 requests per minute"),
            "{}",
            refused.message
        );
        *clock.0.lock().unwrap() += Duration::from_secs(30);
        assert!(limiter.reserve("w", 1, 1).await.is_ok());
        // Another workspace has its own buckets.
        assert!(limiter.reserve("other", 1, 1).await.is_ok());
    }

    #[tokio::test]
    async fn settling_returns_unused_output_and_ignores_cache_reads() {
        let (_, limiter) = limiter(100, 1000, 1000);
        let held = limiter.reserve("w", 600, 800).await.unwrap();
        assert!(
            limiter.reserve("w", 600, 1).await.is_err(),
            "input estimate not held"
        );
        // The prompt was mostly read from cache: 100 uncached tokens, 50 output.
        limiter.settle(&held, 100, 50);
        let headers = limiter.headers("w");
        assert_eq!(headers["anthropic-ratelimit-input-tokens-remaining"], "900");
        assert_eq!(
            headers["anthropic-ratelimit-output-tokens-remaining"],
            "950"
        );
        assert_eq!(headers["anthropic-ratelimit-requests-remaining"], "99");
        assert!(limiter.reserve("w", 600, 1).await.is_ok());
    }

    /// Two replicas over the test Redis, on a prefix of their own.
    fn replicas(limits: Limits) -> [Arc<RateLimiter>; 2] {
        let prefix = format!("limits-{}-{:?}", std::process::id(), Instant::now());
        std::array::from_fn(|_| {
            let shared = crate::shared::on_test_redis(&prefix);
            Arc::new(RateLimiter::new(limits, HashMap::new()).shared(shared))
        })
    }

    fn calls(limiter: &RateLimiter) -> u64 {
        limiter.shared.as_ref().unwrap().redis.calls()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_busy_workspace_is_admitted_from_a_lease_without_a_round_trip_each() {
        let [a, b] = replicas(Limits {
            requests_per_minute: 1_000_000,
            input_tokens_per_minute: 100_000_000,
            output_tokens_per_minute: 10_000_000,
        });
        // Eight connections at once, as a busy replica has them.
        let connections: Vec<_> = (0..8)
            .map(|_| {
                let a = Arc::clone(&a);
                tokio::spawn(async move {
                    for _ in 0..250 {
                        // A prompt larger than its estimate: the overrun comes out of the
                        // stock too.
                        let held = a.reserve("w", 20, 16).await.unwrap();
                        a.settle(&held, 25, 5);
                    }
                })
            })
            .collect();
        for connection in connections {
            connection.await.unwrap();
        }
        // A stock of 1,000 requests, topped up when half is spent. The calls are those of
        // the start, while the first top-up is on its way and the connections take (and
        // give back) alone, then one every 500 requests: a few dozen for 2,000 requests.
        assert!(calls(&a) <= 60, "{} calls to Redis", calls(&a));
        // The other replica takes a stock of its own from the same buckets.
        for _ in 0..1_000 {
            let held = b.reserve("w", 20, 16).await.unwrap();
            b.settle(&held, 20, 5);
        }
        // The first take; the first request's unused output, which came from Redis and
        // found the stock full, going back there; and a top-up each time half the stock
        // of requests is spent.
        assert!(calls(&b) <= 4, "{} calls to Redis", calls(&b));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn leases_never_let_replicas_together_pass_a_limit() {
        // 2,000 a minute: each replica may hold 2 requests ahead.
        let replicas = replicas(Limits {
            requests_per_minute: 2_000,
            input_tokens_per_minute: 100_000_000,
            output_tokens_per_minute: 10_000_000,
        });
        let bursts: Vec<_> = (0..8)
            .map(|i| {
                let limiter = Arc::clone(&replicas[i % 2]);
                tokio::spawn(async move {
                    let mut admitted = 0;
                    for _ in 0..300 {
                        admitted += usize::from(limiter.reserve("w", 10, 10).await.is_ok());
                    }
                    admitted
                })
            })
            .collect();
        let mut admitted = 0;
        for burst in bursts {
            admitted += burst.await.unwrap();
        }
        // The bucket, plus what it refills while the burst runs (33 a second); less at
        // most the two stocks left unspent.
        assert!(
            (1_996..=2_040).contains(&admitted),
            "admitted {admitted} of 2,400"
        );
        let with_lease = calls(&replicas[0]) + calls(&replicas[1]);
        assert!(with_lease < 2_400, "{with_lease} calls for 2,400 requests");
    }
}
