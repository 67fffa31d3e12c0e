//! Prices and spend limits. Costs come from a per-model price table (USD per million
//! tokens); cache writes and reads are priced as the Claude API prices them (1.25x input for
//! 5-minute writes, 2x for 1-hour writes, 0.1x for reads) and batch usage at half price.
//! Month-to-date spend per workspace is kept in memory, seeded from the ledger at start.
//! With Redis configured ([`Shared`]) the month-to-date figures every replica checks live
//! there (seeded from the ledger when missing); holds for requests in flight stay with the
//! replica that runs them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use missive_protocol::ErrorType;
use missive_store::{Dimension, Store, TokenCounts, UsageQuery};
use time::{Date, OffsetDateTime, Time};

use crate::error::ApiError;
use crate::ids::unix_ms;
use crate::shared::Shared;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
    /// USD per 1,000 web searches (`web_search`); fetches cost only their tokens.
    pub web_search: f64,
    /// USD per hour of code execution.
    pub code_execution: f64,
}

impl Price {
    /// A price from its input and output rates, with the Claude API's cache multipliers.
    pub fn new(input: f64, output: f64) -> Self {
        Self {
            input,
            output,
            cache_write_5m: input * 1.25,
            cache_write_1h: input * 2.0,
            cache_read: input * 0.1,
            web_search: 0.0,
            code_execution: 0.0,
        }
    }

    pub const FREE: Price = Price {
        input: 0.0,
        output: 0.0,
        cache_write_5m: 0.0,
        cache_write_1h: 0.0,
        cache_read: 0.0,
        web_search: 0.0,
        code_execution: 0.0,
    };
}

/// The cost report's line for web searches, beside the token types.
pub const WEB_SEARCH: &str = "web_search_requests";
/// The cost report's line for code execution time.
pub const CODE_EXECUTION: &str = "code_execution_ms";

/// The cost report's token types, in its own names, with what each costs per million (a
/// search's price per 1,000 and an hour of code execution scaled to match).
pub fn line_items(price: &Price, tokens: &TokenCounts) -> [(&'static str, u64, f64); 7] {
    [
        ("uncached_input_tokens", tokens.uncached_input, price.input),
        ("output_tokens", tokens.output, price.output),
        (
            "cache_read_input_tokens",
            tokens.cache_read,
            price.cache_read,
        ),
        (
            "cache_creation.ephemeral_5m_input_tokens",
            tokens.cache_creation_5m,
            price.cache_write_5m,
        ),
        (
            "cache_creation.ephemeral_1h_input_tokens",
            tokens.cache_creation_1h,
            price.cache_write_1h,
        ),
        (
            WEB_SEARCH,
            tokens.web_search_requests,
            price.web_search * 1000.0,
        ),
        // Milliseconds: an hour is 3.6 million of them.
        (
            CODE_EXECUTION,
            tokens.code_execution_ms,
            price.code_execution / 3.6,
        ),
    ]
}

#[derive(Debug, Clone, Default)]
pub struct Prices {
    /// For models without their own entry; free when unset (local compute has no list price).
    pub default: Option<Price>,
    pub models: HashMap<String, Price>,
}

impl Prices {
    pub fn price(&self, model: &str) -> Price {
        self.models
            .get(model)
            .copied()
            .or(self.default)
            .unwrap_or(Price::FREE)
    }

    /// Cents, unrounded.
    pub fn cost_cents(&self, model: &str, service_tier: &str, tokens: &TokenCounts) -> f64 {
        let price = self.price(model);
        let usd: f64 = line_items(&price, tokens)
            .iter()
            .map(|(_, n, per_mtok)| *n as f64 * per_mtok / 1e6)
            .sum();
        usd * 100.0 * tier_factor(service_tier)
    }
}

/// Batch usage costs half.
pub fn tier_factor(service_tier: &str) -> f64 {
    if service_tier == "batch" {
        0.5
    } else {
        1.0
    }
}

/// Monthly caps in USD.
#[derive(Debug, Clone, Default)]
pub struct SpendLimits {
    pub organization: Option<f64>,
    /// By workspace name.
    pub workspaces: HashMap<String, f64>,
}

struct MonthToDate {
    month_start: OffsetDateTime,
    organization_cents: f64,
    by_workspace: HashMap<String, f64>,
}

/// What requests in flight may still cost, counted against caps until they settle, so a
/// burst cannot all pass a cap that only its first request fits under.
#[derive(Default)]
struct InFlight {
    organization_cents: f64,
    by_workspace: HashMap<String, f64>,
}

/// A request's share of [`InFlight`], returned by [`SpendTracker::settle`].
#[derive(Debug, Clone)]
pub struct SpendHold {
    workspace_id: String,
    model: String,
    service_tier: &'static str,
    cents: f64,
}

pub struct SpendTracker {
    prices: Prices,
    limits: SpendLimits,
    /// Caps set at run time (the console), by workspace name: over the config's.
    runtime_caps: std::sync::RwLock<HashMap<String, f64>>,
    month: Mutex<MonthToDate>,
    in_flight: Mutex<InFlight>,
    shared: Option<Arc<SharedSpend>>,
}

/// Redis, the ledger it is seeded from, and what has not reached it yet.
struct SharedSpend {
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

fn month_start(now: OffsetDateTime) -> OffsetDateTime {
    let first = Date::from_calendar_date(now.year(), now.month(), 1).unwrap_or(now.date());
    first.with_time(Time::MIDNIGHT).assume_utc()
}

fn next_month(start: OffsetDateTime) -> OffsetDateTime {
    let (year, month) = match start.month() {
        time::Month::December => (start.year() + 1, time::Month::January),
        m => (start.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1)
        .map_or(start, |d| d.with_time(Time::MIDNIGHT).assume_utc())
}

impl SpendTracker {
    pub fn new(prices: Prices, limits: SpendLimits) -> Self {
        Self {
            prices,
            limits,
            runtime_caps: std::sync::RwLock::default(),
            month: Mutex::new(MonthToDate {
                month_start: month_start(OffsetDateTime::now_utc()),
                organization_cents: 0.0,
                by_workspace: HashMap::new(),
            }),
            in_flight: Mutex::default(),
            shared: None,
        }
    }

    /// Checks caps against month-to-date figures every replica shares, seeded from `store`.
    pub fn shared(mut self, shared: Shared, store: Arc<dyn Store>) -> Self {
        self.shared = Some(Arc::new(SharedSpend {
            shared,
            store,
            prices: self.prices.clone(),
            unsent: Mutex::default(),
            flushing: AtomicBool::new(false),
            sending: Mutex::default(),
        }));
        self
    }

    /// Seeds this month's spend from the ledger, so caps hold across restarts.
    pub fn load(&self, store: &dyn Store) -> Result<(), missive_store::Error> {
        let start = month_start(OffsetDateTime::now_utc());
        let (organization_cents, by_workspace) = ledger_totals(&self.prices, store, start)?;
        *self.lock() = MonthToDate {
            month_start: start,
            organization_cents,
            by_workspace,
        };
        Ok(())
    }

    /// Whether a cap is configured for this workspace name.
    pub fn names(&self, workspace: &str) -> bool {
        self.limits.workspaces.contains_key(workspace)
    }

    pub fn prices(&self) -> &Prices {
        &self.prices
    }

    /// The cap the config sets for a workspace, in USD.
    pub fn configured_cap_usd(&self, workspace_name: &str) -> Option<f64> {
        self.limits.workspaces.get(workspace_name).copied()
    }

    /// A workspace's spend this month, in cents, as its cap is checked against.
    pub async fn month_to_date_cents(&self, workspace_id: &str) -> Result<f64, ApiError> {
        Ok(self.spent(workspace_id).await?.workspace_cents)
    }

    /// What a workspace and the organization spent this month, as every replica sees it
    /// when Redis is configured, else (or when the operator chose so while it is
    /// unreachable) as this replica does.
    async fn spent(&self, workspace_id: &str) -> Result<MonthSpent, ApiError> {
        let month_start = self.rolled().month_start;
        if let Some(shared) = &self.shared {
            if let Some((workspace_cents, organization_cents)) =
                shared.spent(month_start, workspace_id).await?
            {
                return Ok(MonthSpent {
                    month_start,
                    workspace_cents,
                    organization_cents,
                });
            }
        }
        let month = self.rolled();
        Ok(MonthSpent {
            month_start: month.month_start,
            workspace_cents: month.by_workspace.get(workspace_id).copied().unwrap_or(0.0),
            organization_cents: month.organization_cents,
        })
    }

    fn runtime_cap(&self, workspace: &str) -> Option<f64> {
        match self.runtime_caps.read() {
            Ok(caps) => caps.get(workspace).copied(),
            Err(poisoned) => poisoned.into_inner().get(workspace).copied(),
        }
    }

    /// Takes up the cap set for a workspace at run time; a cheap read when unchanged.
    pub fn set_runtime_cap(&self, workspace: &str, cap_usd: Option<f64>) {
        if self.runtime_cap(workspace) == cap_usd {
            return;
        }
        let mut caps = match self.runtime_caps.write() {
            Ok(caps) => caps,
            Err(poisoned) => poisoned.into_inner(),
        };
        match cap_usd {
            Some(cap) => caps.insert(workspace.to_owned(), cap),
            None => caps.remove(workspace),
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MonthToDate> {
        match self.month.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn rolled(&self) -> std::sync::MutexGuard<'_, MonthToDate> {
        let mut month = self.lock();
        let start = month_start(OffsetDateTime::now_utc());
        if start != month.month_start {
            *month = MonthToDate {
                month_start: start,
                organization_cents: 0.0,
                by_workspace: HashMap::new(),
            };
        }
        month
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        match self.in_flight.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Checks the caps, counting what requests in flight may still cost, and holds this
    /// request's worst case (its input estimate and all of `max_tokens`) until it settles.
    /// The month's spend is read before the holds are locked: a reading from Redis keeps
    /// no other request waiting, and the holds alone need the lock to add up.
    pub async fn reserve(
        &self,
        workspace_id: &str,
        workspace_name: &str,
        model: &str,
        service_tier: &'static str,
        input_estimate: u32,
        max_tokens: u32,
    ) -> Result<SpendHold, ApiError> {
        let worst = TokenCounts {
            uncached_input: input_estimate.into(),
            output: max_tokens.into(),
            ..TokenCounts::default()
        };
        let hold = SpendHold {
            workspace_id: workspace_id.to_owned(),
            model: model.to_owned(),
            service_tier,
            cents: self.prices.cost_cents(model, service_tier, &worst),
        };
        let caps = self.caps(workspace_name);
        let spent = match caps.any() {
            true => Some(self.spent(workspace_id).await?),
            false => None,
        };
        let mut in_flight = self.in_flight();
        if let Some(spent) = spent {
            let held_workspace = in_flight
                .by_workspace
                .get(workspace_id)
                .copied()
                .unwrap_or(0.0);
            caps.refuse_over(
                workspace_name,
                &spent,
                held_workspace,
                in_flight.organization_cents,
            )?;
        }
        in_flight.organization_cents += hold.cents;
        *in_flight
            .by_workspace
            .entry(workspace_id.to_owned())
            .or_default() += hold.cents;
        Ok(hold)
    }

    /// Releases a hold and adds what the request really cost.
    pub fn settle(&self, hold: &SpendHold, tokens: &TokenCounts) {
        {
            let mut in_flight = self.in_flight();
            in_flight.organization_cents = (in_flight.organization_cents - hold.cents).max(0.0);
            if let Some(held) = in_flight.by_workspace.get_mut(&hold.workspace_id) {
                *held = (*held - hold.cents).max(0.0);
            }
        }
        self.add(&hold.workspace_id, &hold.model, hold.service_tier, tokens);
    }

    /// Refuses a request once its workspace or the organization has spent its monthly cap.
    pub async fn check(&self, workspace_id: &str, workspace_name: &str) -> Result<(), ApiError> {
        let caps = self.caps(workspace_name);
        if !caps.any() {
            return Ok(());
        }
        let spent = self.spent(workspace_id).await?;
        caps.refuse_over(workspace_name, &spent, 0.0, 0.0)
    }

    /// The caps that apply to a workspace, in USD.
    fn caps(&self, workspace_name: &str) -> Caps {
        Caps {
            workspace: self
                .runtime_cap(workspace_name)
                .or_else(|| self.limits.workspaces.get(workspace_name).copied()),
            organization: self.limits.organization,
        }
    }

    /// Adds a billed call's cost.
    pub fn add(&self, workspace_id: &str, model: &str, service_tier: &str, tokens: &TokenCounts) {
        let cents = self.prices.cost_cents(model, service_tier, tokens);
        if cents == 0.0 {
            return;
        }
        let month_start = {
            let mut month = self.rolled();
            month.organization_cents += cents;
            *month
                .by_workspace
                .entry(workspace_id.to_owned())
                .or_default() += cents;
            month.month_start
        };
        if let Some(shared) = &self.shared {
            shared.add(month_start, workspace_id, cents);
        }
    }
}

/// A month's spend, in cents.
struct MonthSpent {
    month_start: OffsetDateTime,
    workspace_cents: f64,
    organization_cents: f64,
}

/// Monthly caps in USD.
struct Caps {
    workspace: Option<f64>,
    organization: Option<f64>,
}

impl Caps {
    fn any(&self) -> bool {
        self.workspace.is_some() || self.organization.is_some()
    }

    /// Refuses once spend and what is held for requests in flight reach a cap.
    fn refuse_over(
        &self,
        workspace_name: &str,
        spent: &MonthSpent,
        held_workspace: f64,
        held_organization: f64,
    ) -> Result<(), ApiError> {
        let over =
            |cap_usd: Option<f64>, cents: f64| cap_usd.is_some_and(|cap| cents >= cap * 100.0);
        let scope = if over(self.workspace, spent.workspace_cents + held_workspace) {
            format!("workspace `{workspace_name}`")
        } else if over(
            self.organization,
            spent.organization_cents + held_organization,
        ) {
            "organization".to_owned()
        } else {
            return Ok(());
        };
        let regain = next_month(spent.month_start);
        Err(ApiError::new(
            ErrorType::InvalidRequestError,
            format!(
                "You have reached your specified {scope} API usage limits. You will regain access on {:04}-{:02}-01 at 00:00 UTC.",
                regain.year(),
                u8::from(regain.month())
            ),
        ))
    }
}

/// What the ledger says was spent since `start`: the organization's total, and by
/// workspace id.
fn ledger_totals(
    prices: &Prices,
    store: &dyn Store,
    start: OffsetDateTime,
) -> Result<(f64, HashMap<String, f64>), missive_store::Error> {
    let rows = store.usage(&UsageQuery {
        start_ms: unix_ms(start),
        end_ms: i64::MAX,
        bucket_ms: i64::MAX,
        group_by: vec![
            Dimension::WorkspaceId,
            Dimension::Model,
            Dimension::ServiceTier,
        ],
        filters: vec![],
    })?;
    let mut organization = 0.0;
    let mut by_workspace: HashMap<String, f64> = HashMap::new();
    for row in rows {
        let cents = prices.cost_cents(
            row.model.as_deref().unwrap_or_default(),
            row.service_tier.as_deref().unwrap_or_default(),
            &row.tokens,
        );
        organization += cents;
        *by_workspace
            .entry(row.workspace_id.unwrap_or_default())
            .or_default() += cents;
    }
    Ok((organization, by_workspace))
}

impl SharedSpend {
    /// Month-to-date spend of a workspace and the organization as every replica sees it,
    /// this replica's costs on their way included, seeding Redis from the ledger when the
    /// month is missing there; `None` to use this replica's own figures (Redis unreachable,
    /// and the operator chose that).
    async fn spent(
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
    fn add(self: &Arc<Self>, month_start: OffsetDateTime, workspace_id: &str, cents: f64) {
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
    use super::*;

    fn tokens(input: u64, output: u64, write_5m: u64, write_1h: u64, read: u64) -> TokenCounts {
        TokenCounts {
            uncached_input: input,
            cache_creation_5m: write_5m,
            cache_creation_1h: write_1h,
            cache_read: read,
            output,
            ..TokenCounts::default()
        }
    }

    #[test]
    fn web_searches_are_priced_per_thousand() {
        let prices = Prices {
            default: Some(Price {
                web_search: 10.0,
                ..Price::new(3.0, 15.0)
            }),
            models: HashMap::new(),
        };
        let searches = TokenCounts {
            web_search_requests: 3,
            web_fetch_requests: 5,
            ..TokenCounts::default()
        };
        // $10 per 1,000 searches: 3 cost 3 cents; fetches cost only their tokens.
        let cents = prices.cost_cents("m", "standard", &searches);
        assert!((cents - 3.0).abs() < 1e-9, "{cents}");
        let prices = Prices {
            default: Some(Price {
                code_execution: 0.05,
                ..Price::new(3.0, 15.0)
            }),
            models: HashMap::new(),
        };
        let half_hour = TokenCounts {
            code_execution_ms: 1_800_000,
            ..TokenCounts::default()
        };
        let cents = prices.cost_cents("m", "standard", &half_hour);
        assert!((cents - 2.5).abs() < 1e-9, "{cents}");
    }

    #[test]
    fn cache_writes_reads_and_batches_are_priced_as_the_claude_api_prices_them() {
        let prices = Prices {
            default: Some(Price::new(3.0, 15.0)),
            models: HashMap::new(),
        };
        // 1M of each: 3 + 15 + 3.75 + 6 + 0.3 USD = 28.05 USD.
        let all = tokens(1_000_000, 1_000_000, 1_000_000, 1_000_000, 1_000_000);
        let cents = prices.cost_cents("m", "standard", &all);
        assert!((cents - 2805.0).abs() < 1e-6, "{cents}");
        let batch = prices.cost_cents("m", "batch", &all);
        assert!((batch - 1402.5).abs() < 1e-6, "{batch}");
    }

    #[tokio::test]
    async fn a_burst_cannot_all_pass_a_cap_only_its_first_request_fits_under() {
        let prices = Prices {
            default: Some(Price::new(1_000_000.0, 0.0)),
            models: HashMap::new(),
        };
        let limits = SpendLimits {
            organization: None,
            workspaces: HashMap::from([("a".to_owned(), 1.0)]),
        };
        let tracker = SpendTracker::new(prices, limits);
        let first = tracker
            .reserve("wa", "a", "m", "standard", 1, 0)
            .await
            .unwrap();
        assert!(tracker
            .reserve("wa", "a", "m", "standard", 1, 0)
            .await
            .is_err());
        // Settled for less than it held, the first leaves room again.
        tracker.settle(&first, &tokens(0, 0, 0, 0, 0));
        assert!(tracker
            .reserve("wa", "a", "m", "standard", 1, 0)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_workspace_cap_trips_after_its_spend_and_names_the_scope() {
        let prices = Prices {
            default: Some(Price::new(1_000_000.0, 0.0)),
            models: HashMap::new(),
        };
        let limits = SpendLimits {
            organization: Some(10.0),
            workspaces: HashMap::from([("a".to_owned(), 1.0)]),
        };
        let tracker = SpendTracker::new(prices, limits);
        tracker.check("wa", "a").await.unwrap();
        // One token at $1/token: the cap of $1 is reached.
        tracker.add("wa", "m", "standard", &tokens(1, 0, 0, 0, 0));
        let refused = tracker.check("wa", "a").await.unwrap_err();
        assert_eq!(refused.error_type, ErrorType::InvalidRequestError);
        assert!(
            refused.message.contains("workspace `a`"),
            "{}",
            refused.message
        );
        tracker.check("wb", "b").await.unwrap();
        tracker.add("wb", "m", "standard", &tokens(9, 0, 0, 0, 0));
        let refused = tracker.check("wb", "b").await.unwrap_err();
        assert!(
            refused.message.contains("organization"),
            "{}",
            refused.message
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cost_reaches_every_replica_without_its_request_waiting_on_redis() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(missive_store::SqliteStore::open(&dir.path().join("store.db")).unwrap());
        let prefix = format!(
            "spend-{}-{:?}",
            std::process::id(),
            std::time::Instant::now()
        );
        let replica = || {
            let shared = crate::shared::on_test_redis(&prefix);
            let prices = Prices {
                default: Some(Price::new(10_000.0, 0.0)),
                models: HashMap::new(),
            };
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
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(missive_store::SqliteStore::open(&dir.path().join("store.db")).unwrap());
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
