use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection};

use crate::{Dimension, Error, TokenCounts, UsageQuery, UsageRecord, UsageRow};

pub(super) fn record(conn: &mut Connection, records: &[UsageRecord]) -> Result<(), Error> {
    let tx = conn.transaction()?;
    insert(&tx, records)?;
    tx.commit()?;
    Ok(())
}

pub(super) fn insert(conn: &Connection, records: &[UsageRecord]) -> Result<(), Error> {
    {
        let mut stmt = conn.prepare_cached(
            "INSERT INTO usage_ledger (request_id, at_ms, endpoint, api_key_id, workspace_id, model, \
             service_tier, uncached_input_tokens, cache_creation_5m, cache_creation_1h, cache_read, \
             output_tokens, web_search_requests, web_fetch_requests, code_execution_ms, \
             prompt_version, schema_version) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        )?;
        for r in records {
            let t = &r.tokens;
            stmt.execute(params![
                r.request_id,
                r.at_ms,
                r.endpoint,
                r.api_key_id,
                r.workspace_id,
                r.model,
                r.service_tier,
                count(t.uncached_input),
                count(t.cache_creation_5m),
                count(t.cache_creation_1h),
                count(t.cache_read),
                count(t.output),
                count(t.web_search_requests),
                count(t.web_fetch_requests),
                count(t.code_execution_ms),
                r.prompt_version,
                r.schema_version,
            ])?;
        }
    }
    Ok(())
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn usage(conn: &Connection, query: &UsageQuery) -> Result<Vec<UsageRow>, Error> {
    let width = query.bucket_ms.max(1);
    let mut sql = format!("SELECT (at_ms / {width}) * {width} AS bucket");
    for dim in Dimension::ALL {
        if query.group_by.contains(&dim) {
            sql.push_str(&format!(", {}", dim.column()));
        } else {
            sql.push_str(", NULL");
        }
    }
    sql.push_str(
        ", sum(uncached_input_tokens), sum(cache_creation_5m), sum(cache_creation_1h), \
         sum(cache_read), sum(output_tokens), sum(web_search_requests), \
         sum(web_fetch_requests), sum(code_execution_ms) FROM usage_ledger WHERE endpoint = 'messages' AND at_ms >= ? AND at_ms < ?",
    );
    let mut values: Vec<Value> = vec![Value::Integer(query.start_ms), Value::Integer(query.end_ms)];
    for (dim, allowed) in &query.filters {
        if allowed.is_empty() {
            continue;
        }
        let marks = vec!["?"; allowed.len()].join(", ");
        sql.push_str(&format!(" AND {} IN ({marks})", dim.column()));
        values.extend(allowed.iter().cloned().map(Value::Text));
    }
    sql.push_str(" GROUP BY bucket");
    for dim in &query.group_by {
        sql.push_str(&format!(", {}", dim.column()));
    }
    sql.push_str(" ORDER BY bucket");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map(params_from_iter(values.iter()), |row| {
            Ok(UsageRow {
                bucket_start_ms: row.get(0)?,
                api_key_id: row.get(1)?,
                workspace_id: row.get(2)?,
                model: row.get(3)?,
                service_tier: row.get(4)?,
                prompt_version: row.get(5)?,
                schema_version: row.get(6)?,
                tokens: TokenCounts::from_sums([
                    row.get(7)?,
                    row.get(8)?,
                    row.get(9)?,
                    row.get(10)?,
                    row.get(11)?,
                    row.get(12)?,
                    row.get(13)?,
                    row.get(14)?,
                ]),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
