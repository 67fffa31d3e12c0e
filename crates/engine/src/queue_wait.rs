//! Admission by expected wait. A request is queued when the time it would wait for a slot
//! (the jobs ahead of it, over the rate at which jobs have been finishing) is under
//! `max_queue_wait`; past that it is refused with the time until it would fit, which
//! becomes the 529's `retry-after`. The queue's count bound stays, as a memory guard.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Completions remembered for the rate.
const WINDOW: usize = 32;
/// Completions older than this say nothing about the rate now.
const STALE: Duration = Duration::from_secs(120);

/// What the handlers and the engine thread share about the queue.
#[derive(Debug)]
pub struct QueueWait {
    slots: usize,
    max_wait: Duration,
    /// Jobs sent to the engine and not yet finished (queued or running).
    in_system: AtomicUsize,
    finished: Mutex<VecDeque<Instant>>,
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTooLong {
    /// The expected wait.
    pub expected: Duration,
    /// Until the expected wait would be under the bound.
    pub retry_after: Duration,
}

impl QueueWait {
    pub fn new(slots: usize, max_wait: Duration) -> Self {
        Self {
            slots: slots.max(1),
            max_wait,
            in_system: AtomicUsize::new(0),
            finished: Mutex::new(VecDeque::with_capacity(WINDOW)),
        }
    }

    /// Jobs finished per second recently, if enough finished recently to tell.
    fn rate(&self, now: Instant) -> Option<f64> {
        let finished = self.finished.lock().ok()?;
        let first = finished.iter().find(|t| now.duration_since(**t) < STALE)?;
        let recent = finished.iter().filter(|t| *t >= first).count();
        let span = now.duration_since(*first).as_secs_f64();
        // n finishes make n - 1 intervals.
        (recent >= 2 && span > 0.0).then(|| (recent - 1) as f64 / span)
    }

    /// The wait a job arriving now can expect before a slot takes it.
    pub fn expected_wait(&self, now: Instant) -> Duration {
        let ahead = (self.in_system.load(Ordering::Relaxed) + 1).saturating_sub(self.slots);
        match (ahead, self.rate(now)) {
            (0, _) | (_, None) => Duration::ZERO,
            (ahead, Some(rate)) => Duration::from_secs_f64(ahead as f64 / rate),
        }
    }

    /// Admits a job (counting it in), or says how long until one would be admitted.
    pub fn admit(&self, now: Instant) -> Result<(), WaitTooLong> {
        let expected = self.expected_wait(now);
        if expected > self.max_wait {
            return Err(WaitTooLong {
                expected,
                retry_after: expected - self.max_wait,
            });
        }
        self.in_system.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// What a refusal by the count bound should tell the client: the wait until the jobs
    /// beyond the bound have drained, or a second when the rate is not known yet.
    pub fn retry_after_when_full(&self, now: Instant) -> Duration {
        match self.expected_wait(now) {
            Duration::ZERO => Duration::from_secs(1),
            expected => expected,
        }
    }

    /// A job counted in by [`QueueWait::admit`] never reached the engine.
    pub fn withdrawn(&self) {
        let _ = self
            .in_system
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// A job left the engine (finished, failed or was dropped).
    pub fn finished(&self, now: Instant) {
        self.withdrawn();
        if let Ok(mut finished) = self.finished.lock() {
            if finished.len() == WINDOW {
                finished.pop_front();
            }
            finished.push_back(now);
        }
    }
}

/// Counts a job out of [`QueueWait`] when the engine lets go of it, however it ends.
#[derive(Debug)]
pub struct InSystem {
    queue: std::sync::Arc<QueueWait>,
    armed: bool,
}

impl InSystem {
    /// A job [`QueueWait::admit`] counted in.
    pub fn new(queue: std::sync::Arc<QueueWait>) -> Self {
        Self { queue, armed: true }
    }

    /// The job never reached the engine: counted out, but not as a finish.
    pub fn withdraw(&mut self) {
        if std::mem::take(&mut self.armed) {
            self.queue.withdrawn();
        }
    }
}

impl Drop for InSystem {
    fn drop(&mut self) {
        if self.armed {
            self.queue.finished(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_the_jobs_ahead_over_the_finishing_rate() {
        let queue = QueueWait::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        // Unknown rate: admitted, the count bound guards.
        for _ in 0..10 {
            queue.admit(t0).unwrap();
        }
        // Four jobs finish, one a second: a rate of about one per second.
        for i in 1..=4 {
            queue.finished(t0 + Duration::from_secs(i));
        }
        let now = t0 + Duration::from_secs(4);
        // 6 in the system, 2 slots: a new job has 5 ahead of it, about 5 s at 1/s.
        let wait = queue.expected_wait(now).as_secs_f64();
        assert!((4.0..=6.0).contains(&wait), "{wait}");
        // Waits of 5 to 10 s are admitted; the next would wait 11 s.
        for _ in 0..6 {
            queue.admit(now).unwrap();
        }
        let refused = queue.admit(now).unwrap_err();
        assert!(refused.expected > Duration::from_secs(10));
        let retry = refused.retry_after.as_secs_f64();
        assert!((0.5..=1.5).contains(&retry), "{retry}");
    }

    #[test]
    fn free_slots_mean_no_wait() {
        let queue = QueueWait::new(4, Duration::ZERO);
        let t0 = Instant::now();
        queue.finished(t0);
        queue.finished(t0 + Duration::from_secs(1));
        for _ in 0..4 {
            queue.admit(t0 + Duration::from_secs(1)).unwrap();
        }
        assert!(queue.admit(t0 + Duration::from_secs(1)).is_err());
    }
}
