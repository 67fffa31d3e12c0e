use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::keys::{generate_secret, hash_key, hint, StoredKey};
use crate::{now_secs, ApiKey, Error, KeyKind, KeyStatus, NewApiKey};

const COLUMNS: &str = "k.id, k.name, k.kind, k.workspace_id, w.name, k.hint, k.status, \
     k.created_at, k.expires_at";
const FROM: &str = "api_keys k LEFT JOIN workspaces w ON w.id = k.workspace_id";

fn row_to_key(row: &Row<'_>) -> Result<ApiKey, rusqlite::Error> {
    Ok(StoredKey {
        id: row.get(0)?,
        name: row.get(1)?,
        kind: row.get(2)?,
        workspace_id: row.get(3)?,
        workspace_name: row.get(4)?,
        hint: row.get(5)?,
        status: row.get(6)?,
        created_at: row.get(7)?,
        expires_at: row.get(8)?,
    }
    .into())
}

pub(super) fn create(
    conn: &Connection,
    name: &str,
    kind: KeyKind,
    workspace_id: Option<&str>,
) -> Result<NewApiKey, Error> {
    let workspace_id = match (kind, workspace_id) {
        (KeyKind::Admin, _) => "",
        (KeyKind::Standard, Some(id)) => id,
        (KeyKind::Standard, None) => crate::DEFAULT_WORKSPACE_ID,
    };
    if !workspace_id.is_empty() {
        let archived: Option<Option<i64>> = conn
            .query_row(
                "SELECT archived_at FROM workspaces WHERE id = ?1",
                params![workspace_id],
                |row| row.get(0),
            )
            .optional()?;
        match archived {
            None => return Err(Error::not_found("workspace", workspace_id)),
            Some(Some(_)) => {
                return Err(Error::Conflict(format!(
                    "workspace {workspace_id} is archived"
                )))
            }
            Some(None) => {}
        }
    }
    let secret = generate_secret(kind);
    let id = crate::new_id("apikey");
    conn.execute(
        "INSERT INTO api_keys (id, name, kind, workspace_id, key_hash, hint, status, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'active', ?7)",
        params![
            id,
            name,
            kind.as_str(),
            workspace_id,
            hash_key(&secret),
            hint(&secret),
            now_secs()
        ],
    )?;
    let key = find(conn, "k.id", &id)?.ok_or_else(|| Error::not_found("API key", &id))?;
    Ok(NewApiKey { key, secret })
}

/// `column` is one of our own column names, never user input.
pub(super) fn find(conn: &Connection, column: &str, value: &str) -> Result<Option<ApiKey>, Error> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE {column} = ?1"))?;
    Ok(stmt.query_row(params![value], row_to_key).optional()?)
}

pub(super) fn list(conn: &Connection) -> Result<Vec<ApiKey>, Error> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM {FROM} ORDER BY k.created_at, k.rowid"
    ))?;
    let keys = stmt
        .query_map([], row_to_key)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keys)
}

pub(super) fn update(
    conn: &Connection,
    id: &str,
    name: Option<&str>,
    status: Option<KeyStatus>,
) -> Result<ApiKey, Error> {
    let current = find(conn, "k.id", id)?.ok_or_else(|| Error::not_found("API key", id))?;
    if current.status == KeyStatus::Archived && status.is_some_and(|s| s != KeyStatus::Archived) {
        return Err(Error::Conflict(format!(
            "API key {id} is archived; archived keys cannot be reactivated"
        )));
    }
    conn.execute(
        "UPDATE api_keys SET name = coalesce(?1, name), status = coalesce(?2, status) WHERE id = ?3",
        params![name, status.map(KeyStatus::as_str), id],
    )?;
    find(conn, "k.id", id)?.ok_or_else(|| Error::not_found("API key", id))
}

pub(super) fn set_expiry(
    conn: &Connection,
    id: &str,
    expires_at: Option<i64>,
) -> Result<ApiKey, Error> {
    if conn.execute(
        "UPDATE api_keys SET expires_at = ?1 WHERE id = ?2",
        params![expires_at, id],
    )? == 0
    {
        return Err(Error::not_found("API key", id));
    }
    find(conn, "k.id", id)?.ok_or_else(|| Error::not_found("API key", id))
}
