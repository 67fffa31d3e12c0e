use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::keys::{generate_secret, hash_key, hint, StoredKey};
use crate::{now_secs, ApiKey, Error, KeyKind, KeyStatus, NewApiKey};

const COLUMNS: &str = "k.id, k.name, k.kind, k.workspace_id, w.name, k.hint, k.status, \
     k.created_at, k.expires_at";
const FROM: &str = "api_keys k LEFT JOIN workspaces w ON w.id = k.workspace_id";

fn row_to_key(row: &Row) -> Result<ApiKey, Error> {
    Ok(StoredKey {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        kind: row.try_get(2)?,
        workspace_id: row.try_get(3)?,
        workspace_name: row.try_get(4)?,
        hint: row.try_get(5)?,
        status: row.try_get(6)?,
        created_at: row.try_get(7)?,
        expires_at: row.try_get(8)?,
    }
    .into())
}

pub(super) async fn create(
    c: &impl GenericClient,
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
        let archived = c
            .query_opt(
                "SELECT archived_at FROM workspaces WHERE id = $1",
                &[&workspace_id],
            )
            .await?;
        match archived
            .map(|row| row.try_get::<_, Option<i64>>(0))
            .transpose()?
        {
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
    c.execute(
        "INSERT INTO api_keys (id, name, kind, workspace_id, key_hash, hint, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'active', $7)",
        &[
            &id,
            &name,
            &kind.as_str(),
            &workspace_id,
            &hash_key(&secret),
            &hint(&secret),
            &now_secs(),
        ],
    )
    .await?;
    let key = find(c, "k.id", &id)
        .await?
        .ok_or_else(|| Error::not_found("API key", &id))?;
    Ok(NewApiKey { key, secret })
}

/// `column` is one of our own column names, never user input.
pub(super) async fn find(
    c: &impl GenericClient,
    column: &str,
    value: &str,
) -> Result<Option<ApiKey>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE {column} = $1");
    let statement = c.prepare_cached(&sql).await?;
    c.query_opt(&statement, &[&value])
        .await?
        .as_ref()
        .map(row_to_key)
        .transpose()
}

pub(super) async fn list(c: &impl GenericClient) -> Result<Vec<ApiKey>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} ORDER BY k.created_at, k.seq");
    c.query(&sql, &[]).await?.iter().map(row_to_key).collect()
}

pub(super) async fn update(
    c: &impl GenericClient,
    id: &str,
    name: Option<&str>,
    status: Option<KeyStatus>,
) -> Result<ApiKey, Error> {
    let current = find(c, "k.id", id)
        .await?
        .ok_or_else(|| Error::not_found("API key", id))?;
    if current.status == KeyStatus::Archived && status.is_some_and(|s| s != KeyStatus::Archived) {
        return Err(Error::Conflict(format!(
            "API key {id} is archived; archived keys cannot be reactivated"
        )));
    }
    c.execute(
        "UPDATE api_keys SET name = coalesce($1, name), status = coalesce($2, status) WHERE id = $3",
        &[&name, &status.map(KeyStatus::as_str), &id],
    )
    .await?;
    find(c, "k.id", id)
        .await?
        .ok_or_else(|| Error::not_found("API key", id))
}

pub(super) async fn set_expiry(
    c: &impl GenericClient,
    id: &str,
    expires_at: Option<i64>,
) -> Result<ApiKey, Error> {
    let changed = c
        .execute(
            "UPDATE api_keys SET expires_at = $1 WHERE id = $2",
            &[&expires_at, &id],
        )
        .await?;
    if changed == 0 {
        return Err(Error::not_found("API key", id));
    }
    find(c, "k.id", id)
        .await?
        .ok_or_else(|| Error::not_found("API key", id))
}
