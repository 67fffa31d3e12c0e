//! Month-to-date spend, in cents, in one hash per month: `org` and `ws:<workspace id>`.
//! Additions are atomic increments; a month's hash that is missing (Redis restarted) is
//! seeded once from the ledger, by whichever replica notices first.

use std::collections::HashMap;

use crate::{Coordination, Error};

/// Adds `ARGV[1]` cents to `org` and to the field `ARGV[2]`, if the month is seeded;
/// returns 0 when it is not (the caller seeds it and adds again).
pub(crate) const ADD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBYFLOAT', KEYS[1], 'org', ARGV[1])
redis.call('HINCRBYFLOAT', KEYS[1], ARGV[2], ARGV[1])
return 1
";

/// Writes the ledger's totals (`field value` pairs) unless another replica seeded first.
pub(crate) const SEED: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'seeded', '1', unpack(ARGV))
redis.call('PEXPIRE', KEYS[1], 40 * 24 * 3600 * 1000)
return 1
";

/// Month-to-date spend of the organization and one workspace, or `None` when the month has
/// not been seeded since Redis started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spent {
    pub organization_cents: f64,
    pub workspace_cents: f64,
}

fn workspace_field(workspace_id: &str) -> String {
    format!("ws:{workspace_id}")
}

impl Coordination {
    /// What the organization and `workspace_id` spent in `month` (`YYYY-MM`). Awaited: a
    /// cap is checked on the request path.
    pub async fn spent(&self, month: &str, workspace_id: &str) -> Result<Option<Spent>, Error> {
        let key = self.key(&["spend", month]);
        let field = workspace_field(workspace_id);
        let values: Vec<Option<String>> = self
            .call_async(move |mut c, _| async move {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("seeded")
                    .arg("org")
                    .arg(&field)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let number = |i: usize| {
            values
                .get(i)
                .and_then(|v| v.as_deref())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        if values.first().is_none_or(Option::is_none) {
            return Ok(None);
        }
        Ok(Some(Spent {
            organization_cents: number(1),
            workspace_cents: number(2),
        }))
    }

    /// Adds a request's cost. Returns false when the month is not seeded: nothing was added.
    pub fn add_spend(&self, month: &str, workspace_id: &str, cents: f64) -> Result<bool, Error> {
        let key = self.key(&["spend", month]);
        let field = workspace_field(workspace_id);
        let added: i64 = self.call(move |mut c, scripts| async move {
            scripts
                .spend_add
                .key(&key)
                .arg(cents)
                .arg(&field)
                .invoke_async(&mut c)
                .await
        })?;
        Ok(added == 1)
    }

    /// Seeds `month` with the ledger's totals (organization, and by workspace id) unless it
    /// is already seeded.
    pub fn seed_spend(
        &self,
        month: &str,
        organization_cents: f64,
        by_workspace: &HashMap<String, f64>,
    ) -> Result<(), Error> {
        let key = self.key(&["spend", month]);
        let mut args = vec![("org".to_owned(), organization_cents)];
        args.extend(
            by_workspace
                .iter()
                .map(|(id, cents)| (workspace_field(id), *cents)),
        );
        self.call(move |mut c, scripts| async move {
            let mut invocation = scripts.spend_seed.key(&key);
            for (field, cents) in &args {
                invocation.arg(field).arg(*cents);
            }
            invocation.invoke_async::<i64>(&mut c).await.map(|_| ())
        })
    }
}
