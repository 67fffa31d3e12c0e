//! Admission by expected wait. A request is queued when the time it would wait for a slot
//! (the jobs ahead of it, over the rate the slots get through jobs) is under
//! `max_queue_wait`; past that it is refused with the time until it would fit, which
//! becomes the 529's `retry-after`. The queue's count bound stays, as a memory guard.
//!
//! The rate is the slots over the mean time recent jobs held a slot. Counting finishes
//! per second instead misleads: jobs started together finish together, so finishes come
//! in clumps, and an idle server finishes nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Slot times remembered for the rate.
const WINDOW: usize = 32;
/// Refused requests remembered as coming back (a flood past this is told the same wait).
const MAX_PROMISED: usize = 65_536;
/// Slot times older than this say nothing about the rate now.
const STALE: Duration = Duration::from_secs(120);

/// What the handlers and the engine thread share about the queue.
#[derive(Debug)]
pub struct QueueWait {
    slots: usize,
    max_wait: Duration,
    /// Jobs sent to the engine and not yet finished (queued or running).
    in_system: AtomicUsize,
    /// When recent jobs finished, and how long each held its slot.
    finished: Mutex<VecDeque<(Instant, Duration)>>,
    /// When refused requests were told to come back, still ahead: each later refusal is
    /// sent back after them, so a burst's refusals return spread out instead of together.
    promised: Mutex<VecDeque<Instant>>,
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
            promised: Mutex::new(VecDeque::new()),
        }
    }

    /// Jobs the slots get through per second, from the slot times of recent jobs.
    fn rate(&self, now: Instant) -> Option<f64> {
        let finished = self.finished.lock().ok()?;
        let recent: Vec<f64> = finished
            .iter()
            .filter(|(at, _)| now.duration_since(*at) < STALE)
            .map(|(_, held)| held.as_secs_f64())
            .collect();
        let mean = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
        (!recent.is_empty() && mean > 0.0).then(|| self.slots as f64 / mean)
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
    ///
    /// A refused request is told to come back when the jobs ahead of it, and the refused
    /// requests told to come back before it, have drained to half the bound: the estimate
    /// moves as requests finish, and a request refused twice would be sent to the back.
    pub fn admit(&self, now: Instant) -> Result<(), WaitTooLong> {
        let expected = self.expected_wait(now);
        if expected <= self.max_wait {
            self.in_system.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let Some(rate) = self.rate(now) else {
            // Unreachable: a wait above zero needs a rate. Refuse for a second.
            return Err(WaitTooLong {
                expected,
                retry_after: Duration::from_secs(1),
            });
        };
        let Ok(mut promised) = self.promised.lock() else {
            return Err(WaitTooLong {
                expected,
                retry_after: expected - self.max_wait,
            });
        };
        while promised.front().is_some_and(|t| *t <= now) {
            promised.pop_front();
        }
        let per_job = Duration::from_secs_f64(1.0 / rate);
        let after_promised = per_job * u32::try_from(promised.len()).unwrap_or(u32::MAX);
        let retry_after = (expected + after_promised + per_job).saturating_sub(self.max_wait / 2);
        if promised.len() < MAX_PROMISED {
            promised.push_back(now + retry_after);
        }
        Err(WaitTooLong {
            expected,
            retry_after,
        })
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

    /// A job left the engine; `held` is how long it had a slot, `None` when it never got
    /// one (dropped while queued), which says nothing about the rate.
    pub fn finished(&self, now: Instant, held: Option<Duration>) {
        self.withdrawn();
        let Some(held) = held else {
            return;
        };
        if let Ok(mut finished) = self.finished.lock() {
            if finished.len() == WINDOW {
                finished.pop_front();
            }
            finished.push_back((now, held));
        }
    }
}

/// Counts a job out of [`QueueWait`] when the engine lets go of it, however it ends.
#[derive(Debug)]
pub struct InSystem {
    queue: std::sync::Arc<QueueWait>,
    armed: bool,
    /// When a slot took the job.
    started: Option<Instant>,
}

impl InSystem {
    /// A job [`QueueWait::admit`] counted in.
    pub fn new(queue: std::sync::Arc<QueueWait>) -> Self {
        Self {
            queue,
            armed: true,
            started: None,
        }
    }

    /// A slot took the job.
    pub fn started(&mut self, now: Instant) {
        self.started = Some(now);
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
            let now = Instant::now();
            let held = self.started.map(|at| now.saturating_duration_since(at));
            self.queue.finished(now, held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_the_jobs_ahead_over_the_rate_the_slots_get_through_them() {
        let queue = QueueWait::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        // Unknown rate: admitted, the count bound guards.
        for _ in 0..10 {
            queue.admit(t0).unwrap();
        }
        // Four jobs held a slot 2 s each: two slots get through one job a second.
        for _ in 0..4 {
            queue.finished(t0 + Duration::from_secs(2), Some(Duration::from_secs(2)));
        }
        let now = t0 + Duration::from_secs(2);
        // 6 in the system, 2 slots: a new job has 5 ahead of it, 5 s at 1/s.
        let wait = queue.expected_wait(now).as_secs_f64();
        assert!((4.9..=5.1).contains(&wait), "{wait}");
        // Waits of 5 to 10 s are admitted; the next would wait 11 s.
        for _ in 0..6 {
            queue.admit(now).unwrap();
        }
        let refused = queue.admit(now).unwrap_err();
        assert!(refused.expected > Duration::from_secs(10));
        // 11 s expected, back when one job more than half the 10 s bound is left: in 7 s.
        let retry = refused.retry_after.as_secs_f64();
        assert!((6.5..=7.5).contains(&retry), "{retry}");
        // The next refusal is sent back one job later, not at the same moment.
        let next = queue.admit(now).unwrap_err().retry_after.as_secs_f64();
        assert!((next - retry - 1.0).abs() < 0.1, "{next} after {retry}");
    }

    #[test]
    fn free_slots_mean_no_wait_and_jobs_dropped_in_the_queue_say_nothing() {
        let queue = QueueWait::new(4, Duration::ZERO);
        let t0 = Instant::now();
        queue.finished(t0, None);
        assert_eq!(queue.rate(t0), None);
        queue.finished(t0, Some(Duration::from_secs(1)));
        for _ in 0..4 {
            queue.admit(t0).unwrap();
        }
        assert!(queue.admit(t0).is_err());
    }
}
