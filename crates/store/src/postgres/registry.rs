use deadpool_postgres::GenericClient;

use super::Client;
use crate::registry::{label_columns, label_target};
use crate::{now_ms, Error, LabelTarget, RegistryEntry, RegistryKind, RegistryVersion, PRODUCTION};

pub(super) async fn add_version(
    mut c: Client,
    workspace_id: &str,
    kind: RegistryKind,
    name: &str,
    body: &str,
) -> Result<RegistryVersion, Error> {
    let created_at_ms = now_ms();
    let tx = c.transaction().await?;
    // Replicas adding versions of one name take turns, so the numbers have no gaps and no
    // two versions share one.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2 || '/' || $3, 0))",
        &[&workspace_id, &kind.as_str(), &name],
    )
    .await?;
    let version: i64 = tx
        .query_one(
            "INSERT INTO registry_versions (workspace_id, kind, name, version, body, created_at_ms) \
             SELECT $1, $2, $3, coalesce(max(version), 0) + 1, $4, $5 FROM registry_versions \
             WHERE workspace_id = $1 AND kind = $2 AND name = $3 RETURNING version",
            &[&workspace_id, &kind.as_str(), &name, &body, &created_at_ms],
        )
        .await?
        .try_get(0)?;
    if version == 1 {
        tx.execute(
            "INSERT INTO registry_labels (workspace_id, kind, name, label, version) VALUES ($1, $2, $3, $4, 1)",
            &[&workspace_id, &kind.as_str(), &name, &PRODUCTION],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(RegistryVersion {
        name: name.to_owned(),
        version,
        body: body.to_owned(),
        created_at_ms,
    })
}

pub(super) async fn entries(
    c: &impl GenericClient,
    workspace_id: &str,
    kind: RegistryKind,
    name: Option<&str>,
) -> Result<Vec<RegistryEntry>, Error> {
    let versions = c
        .query(
            "SELECT name, version, body, created_at_ms FROM registry_versions \
             WHERE workspace_id = $1 AND kind = $2 AND ($3::TEXT IS NULL OR name = $3) ORDER BY name, version",
            &[&workspace_id, &kind.as_str(), &name],
        )
        .await?
        .iter()
        .map(|row| {
            Ok(RegistryVersion {
                name: row.try_get(0)?,
                version: row.try_get(1)?,
                body: row.try_get(2)?,
                created_at_ms: row.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let labels = c
        .query(
            "SELECT name, label, version, split FROM registry_labels \
             WHERE workspace_id = $1 AND kind = $2 AND ($3::TEXT IS NULL OR name = $3) ORDER BY name, label",
            &[&workspace_id, &kind.as_str(), &name],
        )
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                label_target(row.try_get(2)?, row.try_get(3)?),
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(crate::registry::group(versions, labels))
}

pub(super) async fn set_label(
    c: &impl GenericClient,
    workspace_id: &str,
    kind: RegistryKind,
    name: &str,
    label: &str,
    target: &LabelTarget,
) -> Result<RegistryEntry, Error> {
    // Versions are never removed, so what is checked here still holds at the write.
    let entry = entries(c, workspace_id, kind, Some(name)).await?.pop();
    let (version, split) = label_columns(entry.as_ref(), kind, name, target)?;
    c.execute(
        "INSERT INTO registry_labels (workspace_id, kind, name, label, version, split) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (workspace_id, kind, name, label) \
         DO UPDATE SET version = excluded.version, split = excluded.split",
        &[
            &workspace_id,
            &kind.as_str(),
            &name,
            &label,
            &version,
            &split,
        ],
    )
    .await?;
    entries(c, workspace_id, kind, Some(name))
        .await?
        .pop()
        .ok_or_else(|| Error::not_found(kind.as_str(), name))
}
