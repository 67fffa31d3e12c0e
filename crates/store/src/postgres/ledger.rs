use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use crate::{Dimension, Error, TokenCounts, UsageQuery, UsageRecord, UsageRow};

/// Writes the records with one statement: several rows ride in arrays, so a group commit
/// costs one round trip whatever its size.
pub(super) async fn insert(c: &impl GenericClient, records: &[UsageRecord]) -> Result<(), Error> {
    if records.is_empty() {
        return Ok(());
    }
    let text = |f: fn(&UsageRecord) -> &String| -> Vec<&str> {
        records.iter().map(|r| f(r).as_str()).collect()
    };
    let number = |f: fn(&TokenCounts) -> u64| -> Vec<i64> {
        records.iter().map(|r| count(f(&r.tokens))).collect()
    };
    let optional = |f: fn(&UsageRecord) -> &Option<String>| -> Vec<Option<&str>> {
        records.iter().map(|r| f(r).as_deref()).collect()
    };
    let at: Vec<i64> = records.iter().map(|r| r.at_ms).collect();
    let statement = c
        .prepare_cached(
            "INSERT INTO usage_ledger (request_id, at_ms, endpoint, api_key_id, workspace_id, model, \
             service_tier, uncached_input_tokens, cache_creation_5m, cache_creation_1h, cache_read, \
             output_tokens, web_search_requests, web_fetch_requests, code_execution_ms, \
             prompt_version, schema_version) \
             SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
             $6::TEXT[], $7::TEXT[], $8::BIGINT[], $9::BIGINT[], $10::BIGINT[], $11::BIGINT[], \
             $12::BIGINT[], $13::BIGINT[], $14::BIGINT[], $15::BIGINT[], $16::TEXT[], $17::TEXT[])",
        )
        .await?;
    c.execute(
        &statement,
        &[
            &text(|r| &r.request_id),
            &at,
            &text(|r| &r.endpoint),
            &text(|r| &r.api_key_id),
            &text(|r| &r.workspace_id),
            &text(|r| &r.model),
            &text(|r| &r.service_tier),
            &number(|t| t.uncached_input),
            &number(|t| t.cache_creation_5m),
            &number(|t| t.cache_creation_1h),
            &number(|t| t.cache_read),
            &number(|t| t.output),
            &number(|t| t.web_search_requests),
            &number(|t| t.web_fetch_requests),
            &number(|t| t.code_execution_ms),
            &optional(|r| &r.prompt_version),
            &optional(|r| &r.schema_version),
        ],
    )
    .await?;
    Ok(())
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) async fn usage(
    c: &impl GenericClient,
    query: &UsageQuery,
) -> Result<Vec<UsageRow>, Error> {
    let width = query.bucket_ms.max(1);
    let mut sql = format!("SELECT (at_ms / {width}) * {width} AS bucket");
    for dim in Dimension::ALL {
        if query.group_by.contains(&dim) {
            sql.push_str(&format!(", {}", dim.column()));
        } else {
            sql.push_str(", NULL::TEXT");
        }
    }
    // sum() of BIGINT is NUMERIC in Postgres; the totals fit in BIGINT.
    sql.push_str(
        ", sum(uncached_input_tokens)::BIGINT, sum(cache_creation_5m)::BIGINT, \
         sum(cache_creation_1h)::BIGINT, sum(cache_read)::BIGINT, sum(output_tokens)::BIGINT, \
         sum(web_search_requests)::BIGINT, sum(web_fetch_requests)::BIGINT, \
         sum(code_execution_ms)::BIGINT FROM usage_ledger \
         WHERE endpoint = 'messages' AND at_ms >= $1 AND at_ms < $2",
    );
    let mut values: Vec<Box<dyn ToSql + Sync + Send>> =
        vec![Box::new(query.start_ms), Box::new(query.end_ms)];
    for (dim, allowed) in &query.filters {
        if allowed.is_empty() {
            continue;
        }
        values.push(Box::new(allowed.clone()));
        sql.push_str(&format!(" AND {} = ANY(${})", dim.column(), values.len()));
    }
    sql.push_str(" GROUP BY bucket");
    for dim in &query.group_by {
        sql.push_str(&format!(", {}", dim.column()));
    }
    sql.push_str(" ORDER BY bucket");
    let params: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
        .collect();
    c.query(&sql, &params)
        .await?
        .iter()
        .map(|row| {
            Ok(UsageRow {
                bucket_start_ms: row.try_get(0)?,
                api_key_id: row.try_get(1)?,
                workspace_id: row.try_get(2)?,
                model: row.try_get(3)?,
                service_tier: row.try_get(4)?,
                prompt_version: row.try_get(5)?,
                schema_version: row.try_get(6)?,
                tokens: TokenCounts::from_sums([
                    row.try_get(7)?,
                    row.try_get(8)?,
                    row.try_get(9)?,
                    row.try_get(10)?,
                    row.try_get(11)?,
                    row.try_get(12)?,
                    row.try_get(13)?,
                    row.try_get(14)?,
                ]),
            })
        })
        .collect()
}
