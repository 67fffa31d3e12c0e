use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::conflict;
use crate::{now_secs, Error, Member, User, Workspace};

/// Colours the console cycles through for new workspaces (as the SQLite store).
const COLORS: &[&str] = &["#6C5BB9", "#2F7D6D", "#C2572F", "#3B6FB6", "#A23C75"];

const WORKSPACE_COLUMNS: &str = "id, name, display_color, created_at, archived_at";

fn row_to_workspace(row: &Row) -> Result<Workspace, Error> {
    Ok(Workspace {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        display_color: row.try_get(2)?,
        created_at: row.try_get(3)?,
        archived_at: row.try_get(4)?,
    })
}

pub(super) async fn create_workspace(
    c: &impl GenericClient,
    name: &str,
) -> Result<Workspace, Error> {
    let id = crate::new_id("wrkspc");
    let count: i64 = c
        .query_one("SELECT count(*) FROM workspaces", &[])
        .await?
        .try_get(0)?;
    let color = COLORS[usize::try_from(count).unwrap_or(0) % COLORS.len()];
    c.execute(
        "INSERT INTO workspaces (id, name, display_color, created_at) VALUES ($1, $2, $3, $4)",
        &[&id, &name, &color, &now_secs()],
    )
    .await
    .map_err(|e| conflict(e, || format!("a workspace named {name:?} already exists")))?;
    workspace(c, "id", &id)
        .await?
        .ok_or_else(|| Error::not_found("workspace", &id))
}

/// `column` is `id` or `name`, never user input.
pub(super) async fn workspace(
    c: &impl GenericClient,
    column: &str,
    value: &str,
) -> Result<Option<Workspace>, Error> {
    let sql = format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE {column} = $1");
    c.query_opt(&sql, &[&value])
        .await?
        .as_ref()
        .map(row_to_workspace)
        .transpose()
}

pub(super) async fn list_workspaces(
    c: &impl GenericClient,
    include_archived: bool,
) -> Result<Vec<Workspace>, Error> {
    let filter = if include_archived {
        ""
    } else {
        "WHERE archived_at IS NULL"
    };
    let sql =
        format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces {filter} ORDER BY created_at, seq");
    c.query(&sql, &[])
        .await?
        .iter()
        .map(row_to_workspace)
        .collect()
}

pub(super) async fn rename_workspace(
    c: &impl GenericClient,
    id: &str,
    name: &str,
) -> Result<Workspace, Error> {
    let changed = c
        .execute(
            "UPDATE workspaces SET name = $1 WHERE id = $2",
            &[&name, &id],
        )
        .await
        .map_err(|e| conflict(e, || format!("a workspace named {name:?} already exists")))?;
    if changed == 0 {
        return Err(Error::not_found("workspace", id));
    }
    workspace(c, "id", id)
        .await?
        .ok_or_else(|| Error::not_found("workspace", id))
}

pub(super) async fn archive_workspace(mut c: super::Client, id: &str) -> Result<Workspace, Error> {
    if id == crate::DEFAULT_WORKSPACE_ID {
        return Err(Error::Conflict(
            "the default workspace cannot be archived".to_owned(),
        ));
    }
    let tx = c.transaction().await?;
    let changed = tx
        .execute(
            "UPDATE workspaces SET archived_at = coalesce(archived_at, $1) WHERE id = $2",
            &[&now_secs(), &id],
        )
        .await?;
    if changed == 0 {
        return Err(Error::not_found("workspace", id));
    }
    tx.execute(
        "UPDATE api_keys SET status = 'archived' WHERE workspace_id = $1",
        &[&id],
    )
    .await?;
    tx.commit().await?;
    workspace(&c, "id", id)
        .await?
        .ok_or_else(|| Error::not_found("workspace", id))
}

const USER_COLUMNS: &str = "id, email, name, role, added_at";

fn row_to_user(row: &Row) -> Result<User, Error> {
    Ok(User {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        name: row.try_get(2)?,
        role: row.try_get(3)?,
        added_at: row.try_get(4)?,
    })
}

pub(super) async fn add_user(
    c: &impl GenericClient,
    email: &str,
    name: &str,
    role: &str,
) -> Result<User, Error> {
    let id = crate::new_id("user");
    c.execute(
        "INSERT INTO users (id, email, name, role, added_at) VALUES ($1, $2, $3, $4, $5)",
        &[&id, &email, &name, &role, &now_secs()],
    )
    .await
    .map_err(|e| conflict(e, || format!("a user with email {email:?} already exists")))?;
    user(c, &id)
        .await?
        .ok_or_else(|| Error::not_found("user", &id))
}

pub(super) async fn user(c: &impl GenericClient, id: &str) -> Result<Option<User>, Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    c.query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(row_to_user)
        .transpose()
}

pub(super) async fn list_users(
    c: &impl GenericClient,
    email: Option<&str>,
) -> Result<Vec<User>, Error> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE $1::TEXT IS NULL OR email = $1 ORDER BY added_at, seq"
    );
    c.query(&sql, &[&email])
        .await?
        .iter()
        .map(row_to_user)
        .collect()
}

pub(super) async fn set_user_role(
    c: &impl GenericClient,
    id: &str,
    role: &str,
) -> Result<User, Error> {
    let changed = c
        .execute("UPDATE users SET role = $1 WHERE id = $2", &[&role, &id])
        .await?;
    if changed == 0 {
        return Err(Error::not_found("user", id));
    }
    user(c, id)
        .await?
        .ok_or_else(|| Error::not_found("user", id))
}

pub(super) async fn remove_user(c: &impl GenericClient, id: &str) -> Result<(), Error> {
    if c.execute("DELETE FROM users WHERE id = $1", &[&id]).await? == 0 {
        return Err(Error::not_found("user", id));
    }
    Ok(())
}

fn row_to_member(row: &Row) -> Result<Member, Error> {
    Ok(Member {
        workspace_id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        workspace_role: row.try_get(2)?,
    })
}

pub(super) async fn add_member(
    c: &impl GenericClient,
    workspace_id: &str,
    user_id: &str,
    role: &str,
) -> Result<Member, Error> {
    if user(c, user_id).await?.is_none() {
        return Err(Error::not_found("user", user_id));
    }
    c.execute(
        "INSERT INTO workspace_members (workspace_id, user_id, workspace_role) VALUES ($1, $2, $3)",
        &[&workspace_id, &user_id, &role],
    )
    .await
    .map_err(|e| {
        conflict(e, || {
            format!("user {user_id} is already a member of {workspace_id}")
        })
    })?;
    member(c, workspace_id, user_id)
        .await?
        .ok_or_else(|| Error::not_found("member", user_id))
}

pub(super) async fn member(
    c: &impl GenericClient,
    workspace_id: &str,
    user_id: &str,
) -> Result<Option<Member>, Error> {
    c.query_opt(
        "SELECT workspace_id, user_id, workspace_role FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
        &[&workspace_id, &user_id],
    )
    .await?
    .as_ref()
    .map(row_to_member)
    .transpose()
}

pub(super) async fn list_members(
    c: &impl GenericClient,
    workspace_id: &str,
) -> Result<Vec<Member>, Error> {
    c.query(
        "SELECT workspace_id, user_id, workspace_role FROM workspace_members WHERE workspace_id = $1 ORDER BY seq",
        &[&workspace_id],
    )
    .await?
    .iter()
    .map(row_to_member)
    .collect()
}

pub(super) async fn set_member_role(
    c: &impl GenericClient,
    workspace_id: &str,
    user_id: &str,
    role: &str,
) -> Result<Member, Error> {
    let changed = c
        .execute(
            "UPDATE workspace_members SET workspace_role = $1 WHERE workspace_id = $2 AND user_id = $3",
            &[&role, &workspace_id, &user_id],
        )
        .await?;
    if changed == 0 {
        return Err(Error::not_found("member", user_id));
    }
    member(c, workspace_id, user_id)
        .await?
        .ok_or_else(|| Error::not_found("member", user_id))
}

pub(super) async fn remove_member(
    c: &impl GenericClient,
    workspace_id: &str,
    user_id: &str,
) -> Result<(), Error> {
    let changed = c
        .execute(
            "DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
            &[&workspace_id, &user_id],
        )
        .await?;
    if changed == 0 {
        return Err(Error::not_found("member", user_id));
    }
    Ok(())
}
