//! Limits and spend shared by several replicas through Redis, and what a replica does when
//! Redis cannot be reached.

use std::sync::Arc;

use missive_coordination::Coordination;
use missive_protocol::ErrorType;

use crate::error::ApiError;

/// `[coordination] when_unreachable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnreachable {
    /// Refuse requests (529 `overloaded_error`, retryable) until Redis answers again: no
    /// limit or cap can be exceeded across replicas, at the cost of availability.
    Refuse,
    /// Keep serving on this replica's own buckets and spend counts: limits then hold per
    /// replica, and caps count what this replica saw since it started plus the ledger then.
    LocalLimits,
}

/// Redis, and the rule for when it is gone.
#[derive(Clone)]
pub struct Shared {
    pub redis: Arc<Coordination>,
    pub when_unreachable: WhenUnreachable,
}

impl Shared {
    /// What to do with a failed call: fall back (`Ok`), or the refusal to send.
    pub fn unreachable(&self, err: &missive_coordination::Error) -> Result<(), ApiError> {
        tracing::warn!(error = %err, "rate limits and spend: redis unreachable");
        metrics::counter!("missive_coordination_unreachable_total").increment(1);
        match self.when_unreachable {
            WhenUnreachable::LocalLimits => Ok(()),
            WhenUnreachable::Refuse => Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    ErrorType::OverloadedError,
                    "Rate limits and spend caps cannot be checked right now (the coordination store is unreachable). Retry shortly.",
                )
            }),
        }
    }
}

/// A replica's view of the Redis `MISSIVE_TEST_REDIS` names (`scripts/test` starts one),
/// with its keys under `prefix`: replicas opened on one prefix share their buckets and
/// spend.
#[cfg(test)]
pub(crate) fn on_test_redis(prefix: &str) -> Shared {
    let url = std::env::var("MISSIVE_TEST_REDIS").expect(
        "MISSIVE_TEST_REDIS must name a Redis server for the tests (scripts/test starts one)",
    );
    let redis = Coordination::open(&url, prefix, std::time::Duration::from_millis(500))
        .expect("opening the test Redis");
    Shared {
        redis: Arc::new(redis),
        when_unreachable: WhenUnreachable::Refuse,
    }
}
