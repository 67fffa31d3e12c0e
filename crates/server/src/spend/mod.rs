//! Spend and its limits. Month-to-date spend per workspace is kept in memory, seeded from
//! the ledger at start. With Redis configured ([`Shared`]) the month-to-date figures every
//! replica checks live there (seeded from the ledger when missing); holds for requests in
//! flight stay with the replica that runs them.

mod prices;
mod shared;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use missive_protocol::ErrorType;
use missive_store::{Dimension, Store, TokenCounts, UsageQuery};
use time::{Date, OffsetDateTime, Time};

pub use prices::{line_items, tier_factor, Price, Prices, CODE_EXECUTION, WEB_SEARCH};

use crate::error::ApiError;
use crate::ids::unix_ms;
use crate::shared::Shared;
use shared::SharedSpend;

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
        self.shared = Some(Arc::new(SharedSpend::new(
            shared,
            store,
            self.prices.clone(),
        )));
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
        let spent = if caps.any() {
            Some(self.spent(workspace_id).await?)
        } else {
            None
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn tokens(
        input: u64,
        output: u64,
        write_5m: u64,
        write_1h: u64,
        read: u64,
    ) -> TokenCounts {
        TokenCounts {
            uncached_input: input,
            cache_creation_5m: write_5m,
            cache_creation_1h: write_1h,
            cache_read: read,
            output,
            ..TokenCounts::default()
        }
    }

    /// Every model at `input` USD per million input tokens; output free.
    pub(super) fn priced(input: f64) -> Prices {
        Prices {
            default: Some(Price::new(input, 0.0)),
            models: HashMap::new(),
        }
    }

    #[tokio::test]
    async fn a_burst_cannot_all_pass_a_cap_only_its_first_request_fits_under() {
        let prices = priced(1_000_000.0);
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
        let prices = priced(1_000_000.0);
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
}
