use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{
    now_ms, Batch, BatchResult, Error, FileMeta, NewBatchRequest, PendingRequest, RequestCounts,
    UsageRecord,
};

const BATCH_COLUMNS: &str =
    "id, workspace_id, api_key_id, created_at_ms, expires_at_ms, cancel_initiated_ms, ended_at_ms";

fn row_to_batch(row: &Row<'_>) -> Result<Batch, rusqlite::Error> {
    Ok(Batch {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        api_key_id: row.get(2)?,
        created_at_ms: row.get(3)?,
        expires_at_ms: row.get(4)?,
        cancel_initiated_ms: row.get(5)?,
        ended_at_ms: row.get(6)?,
        counts: RequestCounts::default(),
    })
}

fn counts(conn: &Connection, batch: &mut Batch) -> Result<(), Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT result_type, count(*) FROM batch_requests WHERE batch_id = ?1 GROUP BY result_type",
    )?;
    let rows = stmt
        .query_map(params![batch.id], |row| {
            Ok((row.get::<_, Option<String>>(0)?, row.get::<_, i64>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    batch.counts = RequestCounts::tally(rows, batch.ended_at_ms.is_some());
    Ok(())
}

pub(super) fn create(
    conn: &mut Connection,
    workspace_id: &str,
    api_key_id: &str,
    expires_at_ms: i64,
    requests: &[NewBatchRequest],
) -> Result<Batch, Error> {
    let id = crate::new_id("msgbatch");
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO batches (id, workspace_id, api_key_id, created_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, workspace_id, api_key_id, now_ms(), expires_at_ms],
    )?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO batch_requests (batch_id, idx, custom_id, params, result_type, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (idx, r) in requests.iter().enumerate() {
            let kind = r.refused.as_ref().map(|_| "errored");
            stmt.execute(params![
                id,
                i64::try_from(idx).unwrap_or(i64::MAX),
                r.custom_id,
                r.params,
                kind,
                r.refused
            ])
            .map_err(|e| {
                super::conflict(e, || {
                    format!(
                        "requests: custom_id `{}` is used more than once",
                        r.custom_id
                    )
                })
            })?;
        }
    }
    // A batch whose every request was refused has nothing to run: it ends at once.
    tx.execute(
        "UPDATE batches SET ended_at_ms = ?2 WHERE id = ?1 AND NOT EXISTS \
         (SELECT 1 FROM batch_requests WHERE batch_id = ?1 AND result_type IS NULL)",
        params![id, now_ms()],
    )?;
    tx.commit()?;
    get(conn, workspace_id, &id)?.ok_or_else(|| Error::not_found("batch", &id))
}

pub(super) fn get(conn: &Connection, workspace_id: &str, id: &str) -> Result<Option<Batch>, Error> {
    let batch = conn
        .query_row(
            &format!("SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?1 AND workspace_id = ?2 AND deleted = 0"),
            params![id, workspace_id],
            row_to_batch,
        )
        .optional()?;
    match batch {
        Some(mut batch) => {
            counts(conn, &mut batch)?;
            Ok(Some(batch))
        }
        None => Ok(None),
    }
}

pub(super) fn list(conn: &Connection, workspace_id: &str) -> Result<Vec<Batch>, Error> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {BATCH_COLUMNS} FROM batches WHERE workspace_id = ?1 AND deleted = 0 ORDER BY created_at_ms DESC, rowid DESC"
    ))?;
    let mut batches = stmt
        .query_map(params![workspace_id], row_to_batch)?
        .collect::<Result<Vec<_>, _>>()?;
    for batch in &mut batches {
        counts(conn, batch)?;
    }
    Ok(batches)
}

pub(super) fn cancel(conn: &Connection, workspace_id: &str, id: &str) -> Result<Batch, Error> {
    conn.execute(
        "UPDATE batches SET cancel_initiated_ms = coalesce(cancel_initiated_ms, ?3) \
         WHERE id = ?1 AND workspace_id = ?2 AND deleted = 0 AND ended_at_ms IS NULL",
        params![id, workspace_id, now_ms()],
    )?;
    get(conn, workspace_id, id)?.ok_or_else(|| Error::not_found("batch", id))
}

/// Marks the batch deleted and drops its rows in one transaction: a crash between the two
/// must not leave a listed batch without its results.
pub(super) fn delete(conn: &mut Connection, workspace_id: &str, id: &str) -> Result<(), Error> {
    let tx = conn.transaction()?;
    let batch = get(&tx, workspace_id, id)?.ok_or_else(|| Error::not_found("batch", id))?;
    if batch.ended_at_ms.is_none() {
        return Err(Error::Conflict(format!(
            "batch {id} has not ended; cancel it and wait for it to end before deleting it"
        )));
    }
    tx.execute("UPDATE batches SET deleted = 1 WHERE id = ?1", params![id])?;
    tx.execute(
        "DELETE FROM batch_requests WHERE batch_id = ?1",
        params![id],
    )?;
    tx.commit()?;
    Ok(())
}

pub(super) fn claim(
    conn: &mut Connection,
    owner: &str,
    limit: usize,
    lease_ms: i64,
    skip: &[(String, i64)],
) -> Result<Vec<PendingRequest>, Error> {
    let now = now_ms();
    // IMMEDIATE: the read and the lease it leads to are one step; a deferred transaction
    // would fail (busy) when another handle wrote between them.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Oldest batch first, in submission order; a few more than asked so skipped (in-flight)
    // rows do not starve the page.
    let want = limit + skip.len();
    let rows = {
        let mut stmt = tx.prepare_cached(
            "SELECT r.batch_id, r.idx, r.custom_id, r.params, b.workspace_id, b.api_key_id \
             FROM batches b JOIN batch_requests r ON r.batch_id = b.id \
             WHERE b.ended_at_ms IS NULL AND b.cancel_initiated_ms IS NULL AND b.deleted = 0 \
             AND r.result_type IS NULL \
             AND (r.lease_until IS NULL OR r.lease_until <= ?2 OR r.leased_by = ?3) \
             ORDER BY b.created_at_ms, b.rowid, r.idx LIMIT ?1",
        )?;
        let rows = stmt.query_map(
            params![i64::try_from(want).unwrap_or(i64::MAX), now, owner],
            |row| {
                Ok(PendingRequest {
                    batch_id: row.get(0)?,
                    idx: row.get(1)?,
                    custom_id: row.get(2)?,
                    params: row.get(3)?,
                    workspace_id: row.get(4)?,
                    api_key_id: row.get(5)?,
                })
            },
        )?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let claimed: Vec<PendingRequest> = rows
        .into_iter()
        .filter(|r| !skip.iter().any(|(b, i)| *b == r.batch_id && *i == r.idx))
        .take(limit)
        .collect();
    {
        let mut lease = tx.prepare_cached(
            "UPDATE batch_requests SET leased_by = ?3, lease_until = ?4 WHERE batch_id = ?1 AND idx = ?2",
        )?;
        for r in &claimed {
            lease.execute(params![
                r.batch_id,
                r.idx,
                owner,
                now.saturating_add(lease_ms)
            ])?;
        }
    }
    tx.commit()?;
    Ok(claimed)
}

pub(super) fn renew(conn: &Connection, owner: &str, lease_ms: i64) -> Result<(), Error> {
    conn.execute(
        "UPDATE batch_requests SET lease_until = ?2 WHERE leased_by = ?1 AND result_type IS NULL",
        params![owner, now_ms().saturating_add(lease_ms)],
    )?;
    Ok(())
}

/// Writes a result (and its usage row) if the request is still pending; ends the batch when
/// it was the last. Returns whether the result was taken.
pub(super) fn complete(
    conn: &mut Connection,
    batch_id: &str,
    idx: i64,
    result_type: &str,
    result: &str,
    usage: Option<&UsageRecord>,
) -> Result<bool, Error> {
    let tx = conn.transaction()?;
    let changed = tx.execute(
        "UPDATE batch_requests SET result_type = ?3, result = ?4 WHERE batch_id = ?1 AND idx = ?2 AND result_type IS NULL",
        params![batch_id, idx, result_type, result],
    )?;
    if changed == 0 {
        return Ok(false);
    }
    if let Some(record) = usage {
        super::ledger::insert(&tx, std::slice::from_ref(record))?;
    }
    end_if_done(&tx, batch_id)?;
    tx.commit()?;
    Ok(true)
}

fn end_if_done(conn: &Connection, batch_id: &str) -> Result<(), Error> {
    conn.execute(
        "UPDATE batches SET ended_at_ms = ?2 WHERE id = ?1 AND ended_at_ms IS NULL AND NOT EXISTS \
         (SELECT 1 FROM batch_requests WHERE batch_id = ?1 AND result_type IS NULL)",
        params![batch_id, now_ms()],
    )?;
    Ok(())
}

/// Ends canceled batches (their pending requests `canceled`) unless a request of theirs is
/// running, and expired ones (pending requests `expired`).
pub(super) fn settle(conn: &mut Connection, running: &[String]) -> Result<(), Error> {
    let now = now_ms();
    let tx = conn.transaction()?;
    let finishing: Vec<(String, &'static str)> = {
        let mut stmt = tx.prepare(
            "SELECT id, cancel_initiated_ms IS NOT NULL FROM batches b WHERE ended_at_ms IS NULL AND deleted = 0 \
             AND (cancel_initiated_ms IS NOT NULL OR expires_at_ms <= ?1) AND NOT EXISTS \
             (SELECT 1 FROM batch_requests r WHERE r.batch_id = b.id AND r.result_type IS NULL AND r.lease_until > ?1)",
        )?;
        let rows = stmt
            .query_map(params![now], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, bool>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .filter(|(id, _)| !running.contains(id))
            .map(|(id, canceled)| (id, if canceled { "canceled" } else { "expired" }))
            .collect()
    };
    for (id, kind) in &finishing {
        let result = format!("{{\"type\":\"{kind}\"}}");
        tx.execute(
            "UPDATE batch_requests SET result_type = ?2, result = ?3 WHERE batch_id = ?1 AND result_type IS NULL",
            params![id, kind, result],
        )?;
        end_if_done(&tx, id)?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn results(
    conn: &Connection,
    batch_id: &str,
    after_idx: i64,
    limit: usize,
) -> Result<Vec<BatchResult>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT idx, custom_id, result_type, result FROM batch_requests \
         WHERE batch_id = ?1 AND idx > ?2 AND result_type IS NOT NULL ORDER BY idx LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(
            params![
                batch_id,
                after_idx,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |row| {
                Ok(BatchResult {
                    idx: row.get(0)?,
                    custom_id: row.get(1)?,
                    result_type: row.get(2)?,
                    result: row.get(3)?,
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

const FILE_COLUMNS: &str =
    "id, workspace_id, filename, mime_type, size_bytes, created_at_ms, downloadable";

fn row_to_file(row: &Row<'_>) -> Result<FileMeta, rusqlite::Error> {
    Ok(FileMeta {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        filename: row.get(2)?,
        mime_type: row.get(3)?,
        size_bytes: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
        created_at_ms: row.get(5)?,
        downloadable: row.get(6)?,
    })
}

pub(super) fn add_file(conn: &Connection, file: &FileMeta) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO files (id, workspace_id, filename, mime_type, size_bytes, created_at_ms, downloadable) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            file.id,
            file.workspace_id,
            file.filename,
            file.mime_type,
            i64::try_from(file.size_bytes).unwrap_or(i64::MAX),
            file.created_at_ms,
            file.downloadable
        ],
    )?;
    Ok(())
}

pub(super) fn file(
    conn: &Connection,
    workspace_id: &str,
    id: &str,
) -> Result<Option<FileMeta>, Error> {
    Ok(conn
        .query_row(
            &format!("SELECT {FILE_COLUMNS} FROM files WHERE id = ?1 AND workspace_id = ?2 AND deleted = 0"),
            params![id, workspace_id],
            row_to_file,
        )
        .optional()?)
}

pub(super) fn list_files(conn: &Connection, workspace_id: &str) -> Result<Vec<FileMeta>, Error> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE workspace_id = ?1 AND deleted = 0 ORDER BY created_at_ms DESC, rowid DESC"
    ))?;
    let rows = stmt
        .query_map(params![workspace_id], row_to_file)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn delete_file(conn: &Connection, workspace_id: &str, id: &str) -> Result<(), Error> {
    let changed = conn.execute(
        "UPDATE files SET deleted = 1 WHERE id = ?1 AND workspace_id = ?2 AND deleted = 0",
        params![id, workspace_id],
    )?;
    if changed == 0 {
        return Err(Error::not_found("file", id));
    }
    Ok(())
}
