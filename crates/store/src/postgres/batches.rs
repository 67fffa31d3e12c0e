use std::collections::HashSet;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{to_i64, Client};
use crate::{
    now_ms, Batch, BatchResult, Error, FileMeta, NewBatchRequest, PendingRequest, RequestCounts,
    UsageRecord,
};

const BATCH_COLUMNS: &str =
    "id, workspace_id, api_key_id, created_at_ms, expires_at_ms, cancel_initiated_ms, ended_at_ms";

fn row_to_batch(row: &Row) -> Result<Batch, Error> {
    Ok(Batch {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        api_key_id: row.try_get(2)?,
        created_at_ms: row.try_get(3)?,
        expires_at_ms: row.try_get(4)?,
        cancel_initiated_ms: row.try_get(5)?,
        ended_at_ms: row.try_get(6)?,
        counts: RequestCounts::default(),
    })
}

async fn counts(c: &impl GenericClient, batch: &mut Batch) -> Result<(), Error> {
    let rows = c
        .query(
            "SELECT result_type, count(*) FROM batch_requests WHERE batch_id = $1 GROUP BY result_type",
            &[&batch.id],
        )
        .await?;
    let rows = rows
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    batch.counts = RequestCounts::tally(rows, batch.ended_at_ms.is_some());
    Ok(())
}

pub(super) async fn create(
    mut c: Client,
    workspace_id: &str,
    api_key_id: &str,
    expires_at_ms: i64,
    requests: &[NewBatchRequest],
) -> Result<Batch, Error> {
    let mut seen = HashSet::new();
    if let Some(repeated) = requests.iter().find(|r| !seen.insert(r.custom_id.as_str())) {
        return Err(Error::Conflict(format!(
            "requests: custom_id `{}` is used more than once",
            repeated.custom_id
        )));
    }
    let id = crate::new_id("msgbatch");
    let tx = c.transaction().await?;
    tx.execute(
        "INSERT INTO batches (id, workspace_id, api_key_id, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5)",
        &[&id, &workspace_id, &api_key_id, &now_ms(), &expires_at_ms],
    )
    .await?;
    let idx: Vec<i64> = (0..requests.len()).map(to_i64).collect();
    let custom_ids: Vec<&str> = requests.iter().map(|r| r.custom_id.as_str()).collect();
    let params: Vec<&str> = requests.iter().map(|r| r.params.as_str()).collect();
    let kinds: Vec<Option<&str>> = requests
        .iter()
        .map(|r| r.refused.as_ref().map(|_| "errored"))
        .collect();
    let refused: Vec<Option<&str>> = requests.iter().map(|r| r.refused.as_deref()).collect();
    tx.execute(
        "INSERT INTO batch_requests (batch_id, idx, custom_id, params, result_type, result) \
         SELECT $1, * FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])",
        &[&id, &idx, &custom_ids, &params, &kinds, &refused],
    )
    .await?;
    // A batch whose every request was refused has nothing to run: it ends at once.
    end_if_done(&tx, &id).await?;
    tx.commit().await?;
    get(&c, workspace_id, &id)
        .await?
        .ok_or_else(|| Error::not_found("batch", &id))
}

pub(super) async fn get(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<Option<Batch>, Error> {
    let sql = format!(
        "SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1 AND workspace_id = $2 AND NOT deleted"
    );
    match c.query_opt(&sql, &[&id, &workspace_id]).await? {
        Some(row) => {
            let mut batch = row_to_batch(&row)?;
            counts(c, &mut batch).await?;
            Ok(Some(batch))
        }
        None => Ok(None),
    }
}

pub(super) async fn list(c: &impl GenericClient, workspace_id: &str) -> Result<Vec<Batch>, Error> {
    let sql = format!(
        "SELECT {BATCH_COLUMNS} FROM batches WHERE workspace_id = $1 AND NOT deleted ORDER BY created_at_ms DESC, seq DESC"
    );
    let mut batches = c
        .query(&sql, &[&workspace_id])
        .await?
        .iter()
        .map(row_to_batch)
        .collect::<Result<Vec<_>, _>>()?;
    for batch in &mut batches {
        counts(c, batch).await?;
    }
    Ok(batches)
}

pub(super) async fn cancel(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<Batch, Error> {
    c.execute(
        "UPDATE batches SET cancel_initiated_ms = coalesce(cancel_initiated_ms, $3) \
         WHERE id = $1 AND workspace_id = $2 AND NOT deleted AND ended_at_ms IS NULL",
        &[&id, &workspace_id, &now_ms()],
    )
    .await?;
    get(c, workspace_id, id)
        .await?
        .ok_or_else(|| Error::not_found("batch", id))
}

/// Marks the batch deleted and drops its rows in one transaction.
pub(super) async fn delete(mut c: Client, workspace_id: &str, id: &str) -> Result<(), Error> {
    let tx = c.transaction().await?;
    let batch = get(&tx, workspace_id, id)
        .await?
        .ok_or_else(|| Error::not_found("batch", id))?;
    if batch.ended_at_ms.is_none() {
        return Err(Error::Conflict(format!(
            "batch {id} has not ended; cancel it and wait for it to end before deleting it"
        )));
    }
    tx.execute("UPDATE batches SET deleted = TRUE WHERE id = $1", &[&id])
        .await?;
    tx.execute("DELETE FROM batch_requests WHERE batch_id = $1", &[&id])
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Leases up to `limit` requests in one statement. `SKIP LOCKED` lets replicas claim at the
/// same moment without waiting on each other or taking the same row.
pub(super) async fn claim(
    c: Client,
    owner: &str,
    limit: usize,
    lease_ms: i64,
    skip: &[(String, i64)],
) -> Result<Vec<PendingRequest>, Error> {
    let now = now_ms();
    let skip_batches: Vec<&str> = skip.iter().map(|(b, _)| b.as_str()).collect();
    let skip_idx: Vec<i64> = skip.iter().map(|(_, i)| *i).collect();
    let statement = c
        .prepare_cached(
            "WITH picked AS ( \
               SELECT r.batch_id, r.idx FROM batches b JOIN batch_requests r ON r.batch_id = b.id \
               WHERE b.ended_at_ms IS NULL AND b.cancel_initiated_ms IS NULL AND NOT b.deleted \
               AND r.result_type IS NULL \
               AND (r.lease_until IS NULL OR r.lease_until <= $2 OR r.leased_by = $3) \
               AND NOT EXISTS (SELECT 1 FROM unnest($5::TEXT[], $6::BIGINT[]) AS s(b, i) \
                               WHERE s.b = r.batch_id AND s.i = r.idx) \
               ORDER BY b.created_at_ms, b.seq, r.idx LIMIT $1 \
               FOR UPDATE OF r SKIP LOCKED) \
             UPDATE batch_requests r SET leased_by = $3, lease_until = $4 \
             FROM picked p, batches b WHERE r.batch_id = p.batch_id AND r.idx = p.idx AND b.id = r.batch_id \
             RETURNING r.batch_id, r.idx, r.custom_id, r.params, b.workspace_id, b.api_key_id, \
               b.created_at_ms, b.seq",
        )
        .await?;
    let rows = c
        .query(
            &statement,
            &[
                &to_i64(limit),
                &now,
                &owner,
                &now.saturating_add(lease_ms),
                &skip_batches,
                &skip_idx,
            ],
        )
        .await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            let order: (i64, i64) = (row.try_get(6)?, row.try_get(7)?);
            let request = PendingRequest {
                batch_id: row.try_get(0)?,
                idx: row.try_get(1)?,
                custom_id: row.try_get(2)?,
                params: row.try_get(3)?,
                workspace_id: row.try_get(4)?,
                api_key_id: row.try_get(5)?,
            };
            Ok((order, request))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    // RETURNING keeps no order: oldest batch first, in submission order.
    claimed.sort_by_key(|((created, seq), r)| (*created, *seq, r.idx));
    Ok(claimed.into_iter().map(|(_, r)| r).collect())
}

/// Writes a result (and its usage row) if the request is still pending; ends the batch when
/// it was the last. Returns whether the result was taken.
pub(super) async fn complete(
    mut c: Client,
    batch_id: &str,
    idx: i64,
    result_type: &str,
    result: &str,
    usage: Option<&UsageRecord>,
) -> Result<bool, Error> {
    let tx = c.transaction().await?;
    // Completions of one batch take turns: two at once would each see the other's request
    // still pending, and neither would end the batch.
    tx.execute(
        "SELECT 1 FROM batches WHERE id = $1 FOR UPDATE",
        &[&batch_id],
    )
    .await?;
    let changed = tx
        .execute(
            "UPDATE batch_requests SET result_type = $3, result = $4, leased_by = NULL, lease_until = NULL \
             WHERE batch_id = $1 AND idx = $2 AND result_type IS NULL",
            &[&batch_id, &idx, &result_type, &result],
        )
        .await?;
    if changed == 0 {
        return Ok(false);
    }
    if let Some(record) = usage {
        super::ledger::insert(&tx, std::slice::from_ref(record)).await?;
    }
    end_if_done(&tx, batch_id).await?;
    tx.commit().await?;
    Ok(true)
}

async fn end_if_done(c: &impl GenericClient, batch_id: &str) -> Result<(), Error> {
    c.execute(
        "UPDATE batches SET ended_at_ms = $2 WHERE id = $1 AND ended_at_ms IS NULL AND NOT EXISTS \
         (SELECT 1 FROM batch_requests WHERE batch_id = $1 AND result_type IS NULL)",
        &[&batch_id, &now_ms()],
    )
    .await?;
    Ok(())
}

/// Ends canceled batches (their pending requests `canceled`) and expired ones (`expired`),
/// unless a request of theirs runs here or under a live lease elsewhere. Batches are locked
/// in id order, so replicas settling at once cannot deadlock.
pub(super) async fn settle(mut c: Client, running: &[String]) -> Result<(), Error> {
    let now = now_ms();
    let tx = c.transaction().await?;
    let rows = tx
        .query(
            "SELECT id, cancel_initiated_ms IS NOT NULL FROM batches b WHERE ended_at_ms IS NULL AND NOT deleted \
             AND (cancel_initiated_ms IS NOT NULL OR expires_at_ms <= $1) AND NOT (id = ANY($2)) AND NOT EXISTS \
             (SELECT 1 FROM batch_requests r WHERE r.batch_id = b.id AND r.result_type IS NULL AND r.lease_until > $1) ORDER BY id",
            &[&now, &running],
        )
        .await?;
    for row in rows {
        let id: String = row.try_get(0)?;
        let kind = if row.try_get::<_, bool>(1)? {
            "canceled"
        } else {
            "expired"
        };
        let result = format!("{{\"type\":\"{kind}\"}}");
        tx.execute("SELECT 1 FROM batches WHERE id = $1 FOR UPDATE", &[&id])
            .await?;
        tx.execute(
            "UPDATE batch_requests SET result_type = $2, result = $3 WHERE batch_id = $1 AND result_type IS NULL",
            &[&id, &kind, &result],
        )
        .await?;
        end_if_done(&tx, &id).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn results(
    c: &impl GenericClient,
    batch_id: &str,
    after_idx: i64,
    limit: usize,
) -> Result<Vec<BatchResult>, Error> {
    c.query(
        "SELECT idx, custom_id, result_type, result FROM batch_requests \
         WHERE batch_id = $1 AND idx > $2 AND result_type IS NOT NULL ORDER BY idx LIMIT $3",
        &[&batch_id, &after_idx, &to_i64(limit)],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(BatchResult {
            idx: row.try_get(0)?,
            custom_id: row.try_get(1)?,
            result_type: row.try_get(2)?,
            result: row.try_get(3)?,
        })
    })
    .collect()
}

const FILE_COLUMNS: &str =
    "id, workspace_id, filename, mime_type, size_bytes, created_at_ms, downloadable";

fn row_to_file(row: &Row) -> Result<FileMeta, Error> {
    Ok(FileMeta {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        filename: row.try_get(2)?,
        mime_type: row.try_get(3)?,
        size_bytes: u64::try_from(row.try_get::<_, i64>(4)?).unwrap_or(0),
        created_at_ms: row.try_get(5)?,
        downloadable: row.try_get(6)?,
    })
}

pub(super) async fn add_file(c: &impl GenericClient, file: &FileMeta) -> Result<(), Error> {
    c.execute(
        "INSERT INTO files (id, workspace_id, filename, mime_type, size_bytes, created_at_ms, downloadable) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &file.id,
            &file.workspace_id,
            &file.filename,
            &file.mime_type,
            &i64::try_from(file.size_bytes).unwrap_or(i64::MAX),
            &file.created_at_ms,
            &file.downloadable,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn file(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<Option<FileMeta>, Error> {
    let sql = format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE id = $1 AND workspace_id = $2 AND NOT deleted"
    );
    c.query_opt(&sql, &[&id, &workspace_id])
        .await?
        .as_ref()
        .map(row_to_file)
        .transpose()
}

pub(super) async fn list_files(
    c: &impl GenericClient,
    workspace_id: &str,
) -> Result<Vec<FileMeta>, Error> {
    let sql = format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE workspace_id = $1 AND NOT deleted ORDER BY created_at_ms DESC, seq DESC"
    );
    c.query(&sql, &[&workspace_id])
        .await?
        .iter()
        .map(row_to_file)
        .collect()
}

pub(super) async fn delete_file(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<(), Error> {
    let changed = c
        .execute(
            "UPDATE files SET deleted = TRUE WHERE id = $1 AND workspace_id = $2 AND NOT deleted",
            &[&id, &workspace_id],
        )
        .await?;
    if changed == 0 {
        return Err(Error::not_found("file", id));
    }
    Ok(())
}
