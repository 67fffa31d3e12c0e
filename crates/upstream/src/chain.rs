//! Several upstreams of one model behind one `Backend`. Without weights, upstreams are a
//! fallback order; with weights, a request starts at an upstream drawn by weight — or, when
//! it carries a session (Claude Code's session id, `metadata.user_id`), at the upstream its
//! session hashes to, so a conversation keeps that upstream's prefix cache — and falls back
//! to the others in order. An upstream is skipped while its breaker is open or it is at its
//! concurrency cap; a failure before the first byte (connection refused, timeout, 429, 5xx,
//! 529) moves the request to the next. When all have failed, the chain waits (jittered
//! exponential backoff, or the upstream's `retry-after` when shorter than the cap) and goes
//! round again, up to `rounds` times. A 4xx other than 429 is the request's fault and is
//! returned at once.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use missive_backend::{Backend, BackendError, EventStream, GenerateRequest, ModelDescriptor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::breaker::{Breaker, State};

pub struct Member {
    pub name: String,
    pub backend: Arc<dyn Backend>,
    pub breaker: Breaker,
    /// Share of first choices; `None` for every member makes the chain a fallback order.
    pub weight: Option<u32>,
    /// Requests in flight to this upstream at most.
    pub limit: Option<Arc<Semaphore>>,
}

impl Member {
    pub fn new(name: &str, backend: Arc<dyn Backend>, breaker: Breaker) -> Self {
        Self {
            name: name.to_owned(),
            backend,
            breaker,
            weight: None,
            limit: None,
        }
    }
}

pub struct Chain {
    descriptor: ModelDescriptor,
    members: Vec<Member>,
    rounds: u32,
    backoff: Duration,
}

/// The longest a chain waits between rounds.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

impl Chain {
    pub fn new(
        descriptor: ModelDescriptor,
        members: Vec<Member>,
        rounds: u32,
        backoff: Duration,
    ) -> Self {
        Self {
            descriptor,
            members,
            rounds,
            backoff,
        }
    }

    /// Each upstream's breaker state, for metrics and tests.
    pub fn states(&self) -> Vec<(String, State)> {
        self.members
            .iter()
            .map(|m| (m.name.clone(), m.breaker.state()))
            .collect()
    }

    /// The member a request starts at.
    fn first(&self, affinity: Option<&str>) -> usize {
        let weights: Vec<u64> = self
            .members
            .iter()
            .map(|m| u64::from(m.weight.unwrap_or(0)))
            .collect();
        let total: u64 = weights.iter().sum();
        if total == 0 {
            return 0;
        }
        let point = match affinity {
            Some(key) => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut hasher);
                hasher.finish() % total
            }
            None => rand::random::<u64>() % total,
        };
        let mut acc = 0;
        for (i, w) in weights.iter().enumerate() {
            acc += w;
            if point < acc {
                return i;
            }
        }
        0
    }

    fn wait(&self, round: u32, retry_after: Option<u64>) -> Duration {
        let exponential = self
            .backoff
            .saturating_mul(1 << round.min(10))
            .min(MAX_BACKOFF);
        let jittered = exponential.mul_f64(1.0 - 0.25 * rand::random::<f64>());
        match retry_after.map(Duration::from_secs) {
            Some(asked) if asked <= MAX_BACKOFF => asked.max(jittered),
            _ => jittered,
        }
    }
}

/// Why a member did not serve a request.
enum Failure {
    /// The request itself was refused: no other upstream would do better.
    Fatal(BackendError),
    /// The upstream failed: try the next.
    Retry(BackendError),
}

impl Chain {
    async fn dispatch(
        &self,
        member: &Member,
        request: &GenerateRequest,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<EventStream, Failure> {
        match member.backend.generate(request.clone()).await {
            Ok(stream) => {
                missive_backend::served_by::record(&member.name);
                member.breaker.success();
                report(&member.name, &member.breaker, "ok");
                Ok(match permit {
                    // The cap counts the request until its stream ends or is dropped.
                    Some(permit) => Box::pin(stream.map(move |event| {
                        let _held = &permit;
                        event
                    })),
                    None => stream,
                })
            }
            Err(err) if err.is_retryable() => {
                tracing::warn!(upstream = %member.name, error = %err, "upstream failed; trying the next");
                member.breaker.failure();
                report(&member.name, &member.breaker, "failed");
                Err(Failure::Retry(err))
            }
            Err(err) => {
                // The upstream answered: the request itself was refused.
                member.breaker.success();
                report(&member.name, &member.breaker, "refused");
                Err(Failure::Fatal(err))
            }
        }
    }
}

fn report(name: &str, breaker: &Breaker, outcome: &'static str) {
    metrics::counter!("missive_upstream_requests_total", "upstream" => name.to_owned(), "outcome" => outcome)
        .increment(1);
    let open = if breaker.state() == State::Open {
        1.0
    } else {
        0.0
    };
    metrics::gauge!("missive_upstream_breaker_open", "upstream" => name.to_owned()).set(open);
}

#[async_trait::async_trait]
impl Backend for Chain {
    fn descriptor(&self) -> &ModelDescriptor {
        &self.descriptor
    }

    async fn count_tokens(&self, request: &GenerateRequest) -> Result<u32, BackendError> {
        let mut last = None;
        for member in &self.members {
            match member.backend.count_tokens(request).await {
                Ok(n) => return Ok(n),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| BackendError::Unsupported("no upstream is configured".into())))
    }

    async fn generate(&self, request: GenerateRequest) -> Result<EventStream, BackendError> {
        let start = self.first(request.affinity.as_deref());
        let n = self.members.len();
        let mut last: Option<BackendError> = None;
        for round in 0..=self.rounds {
            let mut busy: Option<usize> = None;
            for k in 0..n {
                let i = (start + k) % n;
                let member = &self.members[i];
                let permit = match &member.limit {
                    Some(limit) => match Arc::clone(limit).try_acquire_owned() {
                        Ok(permit) => Some(permit),
                        Err(_) => {
                            busy.get_or_insert(i);
                            continue;
                        }
                    },
                    None => None,
                };
                if !member.breaker.allow() {
                    continue;
                }
                match self.dispatch(member, &request, permit).await {
                    Ok(stream) => return Ok(stream),
                    Err(Failure::Fatal(err)) => return Err(err),
                    Err(Failure::Retry(err)) => last = Some(err),
                }
            }
            // Every reachable upstream is at its cap: wait for the first of them.
            if let Some(i) = busy {
                let member = &self.members[i];
                if let Some(limit) = &member.limit {
                    let permit = Arc::clone(limit).acquire_owned().await.ok();
                    if member.breaker.allow() {
                        match self.dispatch(member, &request, permit).await {
                            Ok(stream) => return Ok(stream),
                            Err(Failure::Fatal(err)) => return Err(err),
                            Err(Failure::Retry(err)) => last = Some(err),
                        }
                    }
                }
            }
            if round < self.rounds {
                let retry_after = match &last {
                    Some(BackendError::Upstream { retry_after, .. }) => *retry_after,
                    _ => None,
                };
                tokio::time::sleep(self.wait(round, retry_after)).await;
            }
        }
        Err(last.unwrap_or_else(|| BackendError::Upstream {
            upstream: self.descriptor.id.clone(),
            status: 503,
            message: "every upstream of this model is unavailable (circuit open)".into(),
            retry_after: Some(1),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use missive_backend::scripted::ScriptedBackend;
    use missive_backend::served_by;

    use super::*;

    fn member(name: &str) -> Member {
        Member::new(
            name,
            Arc::new(ScriptedBackend::new("m", &["hi"])),
            Breaker::new(3, Duration::from_secs(10)),
        )
    }

    fn chain(members: Vec<Member>) -> Chain {
        let descriptor = Backend::descriptor(&ScriptedBackend::new("m", &["hi"])).clone();
        Chain::new(descriptor, members, 0, Duration::from_millis(1))
    }

    fn request(affinity: Option<&str>) -> GenerateRequest {
        let body = serde_json::json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        let parsed = missive_protocol::parse_messages_request(body.to_string().as_bytes()).unwrap();
        let mut request = GenerateRequest::new("m".into(), parsed);
        request.affinity = affinity.map(str::to_owned);
        request
    }

    async fn served(chain: &Chain, affinity: Option<&str>) -> (EventStream, String) {
        let (stream, name) = served_by::capture(chain.generate(request(affinity))).await;
        (stream.unwrap(), name.unwrap())
    }

    #[tokio::test]
    async fn without_weights_the_first_upstream_always_serves() {
        let chain = chain(vec![member("a"), member("b")]);
        for key in ["x", "y", "z"] {
            assert_eq!(served(&chain, Some(key)).await.1, "a");
        }
    }

    #[tokio::test]
    async fn with_weights_a_session_sticks_and_sessions_spread() {
        let weighted = |name| Member {
            weight: Some(1),
            ..member(name)
        };
        let chain = chain(vec![weighted("a"), weighted("b")]);
        let first = served(&chain, Some("session-1")).await.1;
        for _ in 0..5 {
            assert_eq!(served(&chain, Some("session-1")).await.1, first);
        }
        let mut seen = HashSet::new();
        for i in 0..40 {
            seen.insert(served(&chain, Some(&format!("session-{i}"))).await.1);
        }
        assert_eq!(seen.len(), 2, "forty sessions all went to one upstream");
    }

    #[tokio::test]
    async fn an_upstream_at_its_cap_passes_requests_on_until_a_stream_ends() {
        let capped = Member {
            limit: Some(Arc::new(Semaphore::new(1))),
            ..member("a")
        };
        let chain = chain(vec![capped, member("b")]);
        let (held, first) = served(&chain, None).await;
        assert_eq!(first, "a");
        assert_eq!(served(&chain, None).await.1, "b", "a is at its cap");
        drop(held);
        assert_eq!(served(&chain, None).await.1, "a");
    }
}
