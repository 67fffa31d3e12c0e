//! A replica's stock of rate-limit tokens, taken from the shared buckets in Redis ahead of
//! the requests that will spend it, so that most requests of a busy workspace are admitted
//! without a round trip to Redis.
//!
//! Nothing is admitted that the shared buckets did not give out first, so a lease never
//! lets the replicas together pass a limit. What it costs is the other way: tokens one
//! replica holds are not available to the others. Both the stock and its life are kept
//! small for that reason: at most [`SHARE`] of each bucket's capacity per minute (what the
//! bucket refills in 60 ms) and for at most [`LIFE`]. A stock not spent by then is dropped,
//! not returned: the shared bucket refills that much in 60 ms anyway, and a stock held past
//! a long idle spell would otherwise be admitted on top of a bucket that has refilled.

use std::time::{Duration, Instant};

/// The stock a replica holds, as a share of each bucket's capacity per minute.
pub(super) const SHARE: f64 = 1.0 / 1000.0;
/// How long a stock lasts after it was last topped up.
pub(super) const LIFE: Duration = Duration::from_secs(1);

/// What a replica may hold of each bucket (requests, input tokens, output tokens), or
/// `None` when a bucket is too small to lease whole tokens from: every request of such a
/// workspace goes to Redis, as without leases.
pub(super) fn size(capacities: [f64; 3]) -> Option<[f64; 3]> {
    let size = capacities.map(|capacity| (capacity * SHARE).floor());
    size.iter().all(|s| *s >= 1.0).then_some(size)
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Lease {
    stock: [f64; 3],
    /// When the stock is dropped; `None` when there is none.
    until: Option<Instant>,
    /// Until when a top-up asked of Redis is taken to be on its way: requests that find
    /// the stock short meanwhile ask for none, so a burst does not take a stock each. A
    /// time, not a flag, so a request dropped while it waits does not stop top-ups.
    topping_up: Option<Instant>,
}

impl Lease {
    /// The stock as of `now`, emptied once its life is over.
    fn live(&mut self, now: Instant) -> &mut [f64; 3] {
        if self.until.is_none_or(|until| now >= until) {
            self.stock = [0.0; 3];
            self.until = None;
        }
        &mut self.stock
    }

    /// Spends `amounts` from the stock if it holds all of them.
    pub(super) fn take(&mut self, now: Instant, amounts: &[f64; 3]) -> bool {
        let stock = self.live(now);
        if stock.iter().zip(amounts).any(|(s, a)| s < a) {
            return false;
        }
        for (s, a) in stock.iter_mut().zip(amounts) {
            *s -= a;
        }
        true
    }

    /// What to ask Redis for beside a request, to bring the stock back to `size`; nothing
    /// while another request's top-up is on its way.
    pub(super) fn top_up(&mut self, now: Instant, size: &[f64; 3]) -> [f64; 3] {
        if self.topping_up.is_some_and(|until| now < until) {
            return [0.0; 3];
        }
        self.topping_up = Some(now + LIFE);
        let stock = self.live(now);
        std::array::from_fn(|k| (size[k] - stock[k]).max(0.0))
    }

    /// What to ask Redis for once a bucket's stock is under half its size (and no top-up
    /// is on its way); nothing otherwise.
    pub(super) fn top_up_if_low(&mut self, now: Instant, size: &[f64; 3]) -> [f64; 3] {
        let stock = *self.live(now);
        if stock.iter().zip(size).any(|(s, z)| *s < z / 2.0) {
            self.top_up(now, size)
        } else {
            [0.0; 3]
        }
    }

    /// Adds what Redis granted (nothing when it had no room); the stock lives [`LIFE`] from
    /// now.
    pub(super) fn add(&mut self, now: Instant, granted: Option<&[f64; 3]>) {
        self.topping_up = None;
        let Some(granted) = granted else {
            return;
        };
        let stock = self.live(now);
        for (s, g) in stock.iter_mut().zip(granted) {
            *s += g;
        }
        self.until = Some(now + LIFE);
    }

    /// Settles a request against the stock while it lives: what the request did not use
    /// refills it up to `size`, and what it used past its reservation (a negative amount)
    /// comes out of it when it holds that much. Returns the rest, for Redis.
    pub(super) fn give_back(&mut self, now: Instant, size: &[f64; 3], back: [f64; 3]) -> [f64; 3] {
        if self.until.is_none_or(|until| now >= until) {
            return back;
        }
        std::array::from_fn(|k| {
            let settled = back[k].clamp(-self.stock[k], (size[k] - self.stock[k]).max(0.0));
            self.stock[k] += settled;
            back[k] - settled
        })
    }

    /// The stock as of `now`, for the rate-limit headers.
    pub(super) fn stock(&mut self, now: Instant) -> [f64; 3] {
        *self.live(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_buckets_large_enough_to_lease_whole_tokens_from_are_leased() {
        assert_eq!(
            size([100_000.0, 2_000_000.0, 400_000.0]),
            Some([100.0, 2_000.0, 400.0])
        );
        // The cluster test's 60 requests a minute: every request goes to Redis.
        assert_eq!(size([60.0, 2_000_000.0, 400_000.0]), None);
    }

    #[test]
    fn a_stock_serves_requests_until_spent_and_is_dropped_when_its_life_is_over() {
        let start = Instant::now();
        let size = [2.0, 100.0, 100.0];
        let mut lease = Lease::default();
        assert!(!lease.take(start, &[1.0, 10.0, 10.0]), "no stock yet");
        assert_eq!(lease.top_up(start, &size), size);
        assert_eq!(
            lease.top_up(start, &size),
            [0.0; 3],
            "one top-up on its way at a time"
        );
        lease.add(start, Some(&size));
        assert!(lease.take(start, &[1.0, 10.0, 10.0]));
        assert!(
            !lease.take(start, &[1.0, 10.0, 200.0]),
            "one bucket short: nothing"
        );
        assert_eq!(lease.stock(start), [1.0, 90.0, 90.0]);
        assert_eq!(
            lease.top_up_if_low(start, &size),
            [0.0; 3],
            "half of each bucket's stock left"
        );
        assert!(lease.take(start, &[0.0, 50.0, 0.0]));
        assert_eq!(lease.top_up_if_low(start, &size), [1.0, 60.0, 10.0]);
        lease.add(start, None);
        assert!(lease.take(start, &[0.0, 0.0, 0.0]));
        lease.add(start, Some(&[0.0, 50.0, 0.0]));
        assert_eq!(lease.stock(start), [1.0, 90.0, 90.0]);
        assert_eq!(lease.top_up(start, &size), [1.0, 10.0, 10.0]);
        lease.add(start, None);
        assert!(lease.take(start, &[1.0, 10.0, 10.0]));
        assert!(!lease.take(start, &[1.0, 0.0, 0.0]), "requests spent");
        assert_eq!(lease.top_up(start, &size), [2.0, 20.0, 20.0]);
        lease.add(start, Some(&[2.0, 20.0, 20.0]));
        let later = start + LIFE;
        assert!(!lease.take(later, &[1.0, 0.0, 0.0]), "dropped after LIFE");
        assert_eq!(lease.stock(later), [0.0; 3]);
    }

    #[test]
    fn a_settled_request_refills_or_draws_on_a_live_stock_and_the_rest_goes_to_redis() {
        let start = Instant::now();
        let size = [2.0, 100.0, 100.0];
        let mut lease = Lease::default();
        assert_eq!(
            lease.give_back(start, &size, [0.0, 30.0, 5.0]),
            [0.0, 30.0, 5.0],
            "no live stock: all to Redis"
        );
        lease.add(start, Some(&[2.0, 80.0, 100.0]));
        assert_eq!(
            lease.give_back(start, &size, [0.0, 30.0, -5.0]),
            [0.0, 10.0, 0.0],
            "kept up to the size; an overrun taken from the stock"
        );
        assert_eq!(lease.stock(start), [2.0, 100.0, 95.0]);
        assert_eq!(
            lease.give_back(start, &size, [0.0, 0.0, -120.0]),
            [0.0, 0.0, -25.0],
            "an overrun past the stock: Redis takes the rest"
        );
        assert_eq!(lease.stock(start), [2.0, 100.0, 0.0]);
        assert_eq!(
            lease.give_back(start + LIFE, &size, [0.0, 7.0, 0.0]),
            [0.0, 7.0, 0.0]
        );
    }
}
