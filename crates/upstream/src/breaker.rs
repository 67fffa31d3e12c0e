//! A circuit breaker per upstream: after `threshold` failures in a row it opens and the
//! upstream is skipped; after `cooldown` one request probes it (half-open): success closes
//! the breaker, failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            inner: Mutex::new(Inner {
                failures: 0,
                opened_at: None,
                probing: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn state(&self) -> State {
        let inner = self.lock();
        match inner.opened_at {
            None => State::Closed,
            Some(_) if inner.probing => State::HalfOpen,
            Some(at) if at.elapsed() >= self.cooldown => State::HalfOpen,
            Some(_) => State::Open,
        }
    }

    /// Whether a request may go to the upstream now; in half-open, only the first.
    pub fn allow(&self) -> bool {
        let mut inner = self.lock();
        match inner.opened_at {
            None => true,
            Some(at) if at.elapsed() >= self.cooldown && !inner.probing => {
                inner.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    pub fn success(&self) {
        let mut inner = self.lock();
        inner.failures = 0;
        inner.opened_at = None;
        inner.probing = false;
    }

    pub fn failure(&self) {
        let mut inner = self.lock();
        inner.failures += 1;
        if inner.probing || inner.failures >= self.threshold {
            inner.opened_at = Some(Instant::now());
            inner.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_repeated_failures_and_closes_after_a_good_probe() {
        let breaker = Breaker::new(2, Duration::from_millis(30));
        assert!(breaker.allow());
        breaker.failure();
        assert_eq!(breaker.state(), State::Closed);
        breaker.failure();
        assert_eq!(breaker.state(), State::Open);
        assert!(!breaker.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.allow(), "one probe after the cooldown");
        assert!(!breaker.allow(), "only one");
        breaker.failure();
        assert_eq!(
            breaker.state(),
            State::Open,
            "a failed probe opens it again"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.allow());
        breaker.success();
        assert_eq!(breaker.state(), State::Closed);
        assert!(breaker.allow());
    }
}
