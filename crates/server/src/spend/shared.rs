//! Month-to-date spend shared by every replica through Redis: costs are added in the
//! background, a few times a second, and a cap check reads the month's figures there,
//! counting this replica's costs still on their way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use missive_store::Store;
use time::OffsetDateTime;

use super::{ledger_totals, Prices};
use crate::error::ApiError;
use crate::shared::Shared;

/// Redis, the ledger it is seeded from, and what has not reached it yet.
pub(super) struct SharedSpend {
    shared: Shared,
    store: Arc<dyn Store>,
    /// To price the ledger's rows when a month is seeded.
    prices: Prices,
    /// Costs not yet added in Redis. Requests only add here; a flush sends what gathered
    /// ([`ADD_GATHER`]), and a cap check on this replica counts them on top of what it
    /// reads. A failed flush keeps its sums, so an outage loses nothing and holds one entry
    /// per workspace however long it lasts; the next cost added tries again.
    unsent: Mutex<Unsent>,
    /// Whether a flush is on its way.
    flushing: AtomicBool,
    /// Held while a flush sends, so no sum is sent twice.
    sending: Mutex<()>,
}

/// Costs summed by month and workspace id.
type Sums = HashMap<(String, String), f64>;

#[derive(Default)]
struct Unsent {
    /// For the next flush.
    gathering: Sums,
    /// Taken by a flush and not yet confirmed by Redis. A reading taken in between counts
    /// a sum both here and in Redis: for a moment a cap is checked a few milliseconds'
    /// costs early, never late.
    sending: Sums,
}

impl Unsent {
    /// What a workspace and the organization spent in `month` that Redis may not show.
    fn in_month(&self, month: &str, workspace_id: &str) -> (f64, f64) {
        let mut sums = (0.0, 0.0);
        for ((m, w), cents) in self.gathering.iter().chain(&self.sending) {
            if m == month {
                sums.1 += cents;
                if w == workspace_id {
                    sums.0 += cents;
                }
            }
        }
        sums
    }
}

/// How long costs gather before a flush sends them: a request never waits on Redis to be
/// billed, and a busy replica sends a few additions a second, not one per request.
const ADD_GATHER: Duration = Duration::from_millis(20);

impl SharedSpend {
    pub(super) fn new(shared: Shared, store: Arc<dyn Store>, prices: Prices) -> Self {
        Self {
            shared,
            store,
            prices,
            unsent: Mutex::default(),
            flushing: AtomicBool::new(false),
            sending: Mutex::default(),
        }
    }

    /// Month-to-date spend of a workspace and the organization as every replica sees it,
    /// this replica's costs on their way included, seeding Redis from the ledger when the
    /// month is missing there; `None` to use this replica's own figures (Redis unreachable,
    /// and the operator chose that).
    pub(super) async fn spent(
        self: &Arc<Self>,
        month_start: OffsetDateTime,
        workspace_id: &str,
    ) -> Result<Option<(f64, f64)>, ApiError> {
        let month = month_label(month_start);
        let mut read = self.shared.redis.spent(&month, workspace_id).await;
        if matches!(read, Ok(None)) {
            // Rare (once a month, or after Redis lost its data), and it reads the ledger.
            let seeding = Arc::clone(self);
            let seeded = tokio::task::spawn_blocking(move || seeding.seed(month_start))
                .await
                .map_err(ApiError::internal)?;
            read = match seeded {
                Ok(()) => self.shared.redis.spent(&month, workspace_id).await,
                Err(Seeding::Redis(err)) => Err(err),
                Err(Seeding::Store(err)) => return Err(ApiError::from(err)),
            };
        }
        match read {
            Ok(Some(spent)) => {
                let (workspace, organization) = self.unsent().in_month(&month, workspace_id);
                Ok(Some((
                    spent.workspace_cents + workspace,
                    spent.organization_cents + organization,
                )))
            }
            Ok(None) => Ok(None),
            Err(err) => self.shared.unreachable(&err).map(|()| None),
        }
    }

    fn seed(&self, month_start: OffsetDateTime) -> Result<(), Seeding> {
        let (organization, by_workspace) =
            ledger_totals(&self.prices, self.store.as_ref(), month_start)?;
        self.shared
            .redis
            .seed_spend(&month_label(month_start), organization, &by_workspace)?;
        Ok(())
    }

    /// Adds a request's cost to what the next flush sends, starting one if none is on its
    /// way.
    pub(super) fn add(
        self: &Arc<Self>,
        month_start: OffsetDateTime,
        workspace_id: &str,
        cents: f64,
    ) {
        *self
            .unsent()
            .gathering
            .entry((month_label(month_start), workspace_id.to_owned()))
            .or_default() += cents;
        if self.flushing.swap(true, Ordering::AcqRel) {
            return;
        }
        // Off a runtime (a thread of its own, a test) the caller can wait, and sends at once.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let shared = Arc::clone(self);
                drop(runtime.spawn_blocking(move || {
                    std::thread::sleep(ADD_GATHER);
                    shared.flush();
                }));
            }
            Err(_) => self.flush(),
        }
    }

    fn flush(&self) {
        self.flushing.store(false, Ordering::Release);
        if let Err(err) = self.flush_unsent() {
            tracing::warn!(error = %err, "shared spend: kept to add later");
        }
    }

    /// Adds what gathered, and what an earlier flush could not. A month Redis has not
    /// seeded adds nothing: its seed reads the ledger, which already holds these costs.
    fn flush_unsent(&self) -> Result<(), missive_coordination::Error> {
        let _one_at_a_time = match self.sending.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let batch: Vec<((String, String), f64)> = {
            let mut unsent = self.unsent();
            let Unsent { gathering, sending } = &mut *unsent;
            for (key, cents) in gathering.drain() {
                *sending.entry(key).or_default() += cents;
            }
            sending.iter().map(|(k, c)| (k.clone(), *c)).collect()
        };
        // Sent without the lock held: requests keep adding while Redis answers.
        for ((month, workspace_id), cents) in batch {
            self.shared.redis.add_spend(&month, &workspace_id, cents)?;
            self.unsent().sending.remove(&(month, workspace_id));
        }
        Ok(())
    }

    fn unsent(&self) -> std::sync::MutexGuard<'_, Unsent> {
        match self.unsent.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The month's name in Redis keys: `2026-11`.
fn month_label(start: OffsetDateTime) -> String {
    format!("{:04}-{:02}", start.year(), u8::from(start.month()))
}

/// Why shared spend could not be read.
#[derive(Debug, thiserror::Error)]
enum Seeding {
    #[error(transparent)]
    Redis(#[from] missive_coordination::Error),
    #[error(transparent)]
    Store(#[from] missive_store::Error),
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use missive_protocol::ErrorType;
    use missive_store::TokenCounts;

    use super::*;
    use crate::spend::tests::{priced, tokens};
    use crate::spend::{SpendLimits, SpendTracker};

    /// A SQLite store to seed months from, in a directory that lives as long as the guard.
    fn sqlite_store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = missive_store::SqliteStore::open(&dir.path().join("store.db")).unwrap();
        (dir, Arc::new(store))
    }

    /// Redis keys of this test run's own.
    fn redis_prefix(test: &str) -> String {
        format!(
            "spend-{test}-{}-{:?}",
            std::process::id(),
            std::time::Instant::now()
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cost_reaches_every_replica_without_its_request_waiting_on_redis() {
        let (_dir, store) = sqlite_store();
        let prefix = redis_prefix("replicas");
        let replica = || {
            let shared = crate::shared::on_test_redis(&prefix);
            let prices = priced(10_000.0);
            let limits = SpendLimits {
                organization: None,
                workspaces: HashMap::from([("a".to_owned(), 1_000.0)]),
            };
            SpendTracker::new(prices, limits).shared(shared, Arc::clone(&store))
        };
        let calls = |tracker: &SpendTracker| tracker.shared.as_ref().unwrap().shared.redis.calls();
        let (a, b) = (replica(), replica());
        // The first check seeds the month from the (empty) ledger.
        b.check("wa", "a").await.unwrap();
        let before = calls(&a);
        // A token at $0.01: a cent each.
        for _ in 0..50 {
            a.add("wa", "m", "standard", &tokens(1, 0, 0, 0, 0));
        }
        assert!(calls(&a) - before <= 1, "the adds waited on Redis");
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while b.month_to_date_cents("wa").await.unwrap() < 50.0 - 1e-9 {
            assert!(
                std::time::Instant::now() < deadline,
                "the costs never reached Redis"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!((b.month_to_date_cents("wa").await.unwrap() - 50.0).abs() < 1e-9);
        assert!(
            calls(&a) - before <= 3,
            "{} calls for 50 costs",
            calls(&a) - before
        );
    }

    /// Costs wait for a flush before they reach Redis; the replica that ran them counts
    /// them in its own cap checks at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[expect(
        clippy::await_holding_lock,
        reason = "holding off the flush is the point"
    )]
    async fn a_replica_counts_its_own_costs_before_redis_has_them() {
        let (_dir, store) = sqlite_store();
        let prefix = redis_prefix("own");
        let prices = priced(10_000.0);
        // 50 cents.
        let limits = SpendLimits {
            organization: None,
            workspaces: HashMap::from([("a".to_owned(), 0.5)]),
        };
        let tracker =
            SpendTracker::new(prices, limits).shared(crate::shared::on_test_redis(&prefix), store);
        tracker.check("wa", "a").await.unwrap();
        // No flush can send while this is held.
        let flushes = tracker.shared.as_ref().unwrap().sending.lock().unwrap();
        // A token at $0.01: a cent each, 50 of them.
        for _ in 0..50 {
            tracker.add("wa", "m", "standard", &tokens(1, 0, 0, 0, 0));
        }
        let refused = tracker.check("wa", "a").await.unwrap_err();
        assert!(
            refused.message.contains("workspace `a`"),
            "{}",
            refused.message
        );
        drop(flushes);
    }

    /// A cap is read from Redis on the request path. While Redis keeps it waiting, the
    /// runtime (here its only thread) still serves other requests, and the holds of other
    /// workspaces are not locked behind it.
    #[tokio::test(flavor = "current_thread")]
    async fn a_cap_waiting_on_redis_holds_up_neither_the_runtime_nor_other_workspaces() {
        // Accepts connections (the kernel's backlog) and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let timeout = Duration::from_millis(800);
        let redis = missive_coordination::Coordination::open(
            &format!("redis://{}", silent.local_addr().unwrap()),
            "silent",
            timeout,
        )
        .unwrap();
        let shared = Shared {
            redis: Arc::new(redis),
            when_unreachable: crate::shared::WhenUnreachable::Refuse,
        };
        let (_dir, store) = sqlite_store();
        let limits = SpendLimits {
            organization: None,
            workspaces: HashMap::from([("capped".to_owned(), 1.0)]),
        };
        let tracker = Arc::new(SpendTracker::new(Prices::default(), limits).shared(shared, store));
        let started = std::time::Instant::now();
        let capped = tokio::spawn({
            let tracker = Arc::clone(&tracker);
            async move { tracker.reserve("wc", "capped", "m", "standard", 1, 1).await }
        });
        // Let the capped request start waiting on Redis.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let free = tracker
            .reserve("wf", "free", "m", "standard", 1, 1)
            .await
            .unwrap();
        tracker.settle(&free, &TokenCounts::default());
        assert!(
            started.elapsed() < timeout / 2,
            "an uncapped request waited {:?} behind a cap's reading",
            started.elapsed()
        );
        assert!(!capped.is_finished());
        // Redis never answered: the operator chose to refuse.
        let refused = capped.await.unwrap().unwrap_err();
        assert_eq!(refused.error_type, ErrorType::OverloadedError);
        assert!(started.elapsed() >= timeout);
    }
}
