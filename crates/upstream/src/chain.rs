//! Several upstreams of one model behind one `Backend`: each request goes to the first
//! upstream whose breaker lets it through; a failure before the first byte (connection
//! refused, 429, 5xx, 529) moves it to the next. When all have failed, the chain waits
//! (jittered exponential backoff, or the upstream's `retry-after` when shorter than the
//! cap) and goes round again, up to `rounds` times. A 4xx other than 429 is the request's
//! fault and is returned at once.

use std::sync::Arc;
use std::time::Duration;

use missive_backend::{Backend, BackendError, EventStream, GenerateRequest, ModelDescriptor};

use crate::breaker::{Breaker, State};

pub struct Member {
    pub name: String,
    pub backend: Arc<dyn Backend>,
    pub breaker: Breaker,
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
        let mut last: Option<BackendError> = None;
        for round in 0..=self.rounds {
            for member in &self.members {
                if !member.breaker.allow() {
                    continue;
                }
                match member.backend.generate(request.clone()).await {
                    Ok(stream) => {
                        missive_backend::served_by::record(&member.name);
                        member.breaker.success();
                        report(&member.name, &member.breaker, "ok");
                        return Ok(stream);
                    }
                    Err(err) if err.is_retryable() => {
                        tracing::warn!(upstream = %member.name, error = %err, "upstream failed; trying the next");
                        member.breaker.failure();
                        report(&member.name, &member.breaker, "failed");
                        last = Some(err);
                    }
                    Err(err) => {
                        // The upstream answered: the request itself was refused.
                        member.breaker.success();
                        report(&member.name, &member.breaker, "refused");
                        return Err(err);
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
