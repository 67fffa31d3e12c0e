use rusqlite::{params, Connection, TransactionBehavior};

use crate::registry::{label_columns, label_target};
use crate::{now_ms, Error, LabelTarget, RegistryEntry, RegistryKind, RegistryVersion, PRODUCTION};

pub(super) fn add_version(
    conn: &mut Connection,
    workspace_id: &str,
    kind: RegistryKind,
    name: &str,
    body: &str,
) -> Result<RegistryVersion, Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row(
        "SELECT coalesce(max(version), 0) + 1 FROM registry_versions \
         WHERE workspace_id = ?1 AND kind = ?2 AND name = ?3",
        params![workspace_id, kind.as_str(), name],
        |row| row.get(0),
    )?;
    let created_at_ms = now_ms();
    tx.execute(
        "INSERT INTO registry_versions (workspace_id, kind, name, version, body, created_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            workspace_id,
            kind.as_str(),
            name,
            version,
            body,
            created_at_ms
        ],
    )?;
    if version == 1 {
        tx.execute(
            "INSERT INTO registry_labels (workspace_id, kind, name, label, version) VALUES (?1, ?2, ?3, ?4, 1)",
            params![workspace_id, kind.as_str(), name, PRODUCTION],
        )?;
    }
    tx.commit()?;
    Ok(RegistryVersion {
        name: name.to_owned(),
        version,
        body: body.to_owned(),
        created_at_ms,
    })
}

/// Entries of the workspace, all of them or the one named.
pub(super) fn entries(
    conn: &Connection,
    workspace_id: &str,
    kind: RegistryKind,
    name: Option<&str>,
) -> Result<Vec<RegistryEntry>, Error> {
    let mut versions = conn.prepare_cached(
        "SELECT name, version, body, created_at_ms FROM registry_versions \
         WHERE workspace_id = ?1 AND kind = ?2 AND (?3 IS NULL OR name = ?3) ORDER BY name, version",
    )?;
    let versions = versions
        .query_map(params![workspace_id, kind.as_str(), name], |row| {
            Ok(RegistryVersion {
                name: row.get(0)?,
                version: row.get(1)?,
                body: row.get(2)?,
                created_at_ms: row.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut labels = conn.prepare_cached(
        "SELECT name, label, version, split FROM registry_labels \
         WHERE workspace_id = ?1 AND kind = ?2 AND (?3 IS NULL OR name = ?3) ORDER BY name, label",
    )?;
    let labels = labels
        .query_map(params![workspace_id, kind.as_str(), name], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                label_target(row.get(2)?, row.get(3)?),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::registry::group(versions, labels))
}

pub(super) fn set_label(
    conn: &Connection,
    workspace_id: &str,
    kind: RegistryKind,
    name: &str,
    label: &str,
    target: &LabelTarget,
) -> Result<RegistryEntry, Error> {
    // Versions are never removed, so what is checked here still holds at the write.
    let entry = entries(conn, workspace_id, kind, Some(name))?.pop();
    let (version, split) = label_columns(entry.as_ref(), kind, name, target)?;
    conn.execute(
        "INSERT INTO registry_labels (workspace_id, kind, name, label, version, split) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (workspace_id, kind, name, label) \
         DO UPDATE SET version = excluded.version, split = excluded.split",
        params![workspace_id, kind.as_str(), name, label, version, split],
    )?;
    entries(conn, workspace_id, kind, Some(name))?
        .pop()
        .ok_or_else(|| Error::not_found(kind.as_str(), name))
}
