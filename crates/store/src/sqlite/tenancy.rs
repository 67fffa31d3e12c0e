use rusqlite::{params, Connection, OptionalExtension, Row};

use super::conflict;
use crate::{now_secs, Error, Member, User, Workspace};

/// Colours the console cycles through for new workspaces.
const COLORS: &[&str] = &["#6C5BB9", "#2F7D6D", "#C2572F", "#3B6FB6", "#A23C75"];

fn row_to_workspace(row: &Row<'_>) -> Result<Workspace, rusqlite::Error> {
    Ok(Workspace {
        id: row.get(0)?,
        name: row.get(1)?,
        display_color: row.get(2)?,
        created_at: row.get(3)?,
        archived_at: row.get(4)?,
    })
}

const WORKSPACE_COLUMNS: &str = "id, name, display_color, created_at, archived_at";

pub(super) fn create_workspace(conn: &Connection, name: &str) -> Result<Workspace, Error> {
    let id = crate::new_id("wrkspc");
    let count: i64 = conn.query_row("SELECT count(*) FROM workspaces", [], |row| row.get(0))?;
    let color = COLORS[usize::try_from(count).unwrap_or(0) % COLORS.len()];
    conn.execute(
        "INSERT INTO workspaces (id, name, display_color, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, name, color, now_secs()],
    )
    .map_err(|e| conflict(e, || format!("a workspace named {name:?} already exists")))?;
    workspace(conn, "id", &id)?.ok_or_else(|| Error::not_found("workspace", &id))
}

/// `column` is `id` or `name`, never user input.
pub(super) fn workspace(
    conn: &Connection,
    column: &str,
    value: &str,
) -> Result<Option<Workspace>, Error> {
    Ok(conn
        .query_row(
            &format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE {column} = ?1"),
            params![value],
            row_to_workspace,
        )
        .optional()?)
}

pub(super) fn list_workspaces(
    conn: &Connection,
    include_archived: bool,
) -> Result<Vec<Workspace>, Error> {
    let filter = if include_archived {
        ""
    } else {
        "WHERE archived_at IS NULL"
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {WORKSPACE_COLUMNS} FROM workspaces {filter} ORDER BY created_at, rowid"
    ))?;
    let rows = stmt
        .query_map([], row_to_workspace)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn rename_workspace(
    conn: &Connection,
    id: &str,
    name: &str,
) -> Result<Workspace, Error> {
    let changed = conn
        .execute(
            "UPDATE workspaces SET name = ?1 WHERE id = ?2",
            params![name, id],
        )
        .map_err(|e| conflict(e, || format!("a workspace named {name:?} already exists")))?;
    if changed == 0 {
        return Err(Error::not_found("workspace", id));
    }
    workspace(conn, "id", id)?.ok_or_else(|| Error::not_found("workspace", id))
}

pub(super) fn archive_workspace(conn: &mut Connection, id: &str) -> Result<Workspace, Error> {
    if id == crate::DEFAULT_WORKSPACE_ID {
        return Err(Error::Conflict(
            "the default workspace cannot be archived".to_owned(),
        ));
    }
    let tx = conn.transaction()?;
    let changed = tx.execute(
        "UPDATE workspaces SET archived_at = coalesce(archived_at, ?1) WHERE id = ?2",
        params![now_secs(), id],
    )?;
    if changed == 0 {
        return Err(Error::not_found("workspace", id));
    }
    tx.execute(
        "UPDATE api_keys SET status = 'archived' WHERE workspace_id = ?1",
        params![id],
    )?;
    tx.commit()?;
    workspace(conn, "id", id)?.ok_or_else(|| Error::not_found("workspace", id))
}

fn row_to_user(row: &Row<'_>) -> Result<User, rusqlite::Error> {
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        role: row.get(3)?,
        added_at: row.get(4)?,
    })
}

const USER_COLUMNS: &str = "id, email, name, role, added_at";

pub(super) fn add_user(
    conn: &Connection,
    email: &str,
    name: &str,
    role: &str,
) -> Result<User, Error> {
    let id = crate::new_id("user");
    conn.execute(
        "INSERT INTO users (id, email, name, role, added_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, email, name, role, now_secs()],
    )
    .map_err(|e| conflict(e, || format!("a user with email {email:?} already exists")))?;
    user(conn, &id)?.ok_or_else(|| Error::not_found("user", &id))
}

pub(super) fn user(conn: &Connection, id: &str) -> Result<Option<User>, Error> {
    Ok(conn
        .query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
            params![id],
            row_to_user,
        )
        .optional()?)
}

pub(super) fn list_users(conn: &Connection, email: Option<&str>) -> Result<Vec<User>, Error> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE ?1 IS NULL OR email = ?1 ORDER BY added_at, rowid"
    ))?;
    let rows = stmt
        .query_map(params![email], row_to_user)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn set_user_role(conn: &Connection, id: &str, role: &str) -> Result<User, Error> {
    if conn.execute(
        "UPDATE users SET role = ?1 WHERE id = ?2",
        params![role, id],
    )? == 0
    {
        return Err(Error::not_found("user", id));
    }
    user(conn, id)?.ok_or_else(|| Error::not_found("user", id))
}

pub(super) fn remove_user(conn: &Connection, id: &str) -> Result<(), Error> {
    if conn.execute("DELETE FROM users WHERE id = ?1", params![id])? == 0 {
        return Err(Error::not_found("user", id));
    }
    Ok(())
}

fn row_to_member(row: &Row<'_>) -> Result<Member, rusqlite::Error> {
    Ok(Member {
        workspace_id: row.get(0)?,
        user_id: row.get(1)?,
        workspace_role: row.get(2)?,
    })
}

pub(super) fn add_member(
    conn: &Connection,
    workspace_id: &str,
    user_id: &str,
    role: &str,
) -> Result<Member, Error> {
    if user(conn, user_id)?.is_none() {
        return Err(Error::not_found("user", user_id));
    }
    conn.execute(
        "INSERT INTO workspace_members (workspace_id, user_id, workspace_role) VALUES (?1, ?2, ?3)",
        params![workspace_id, user_id, role],
    )
    .map_err(|e| {
        conflict(e, || {
            format!("user {user_id} is already a member of {workspace_id}")
        })
    })?;
    member(conn, workspace_id, user_id)?.ok_or_else(|| Error::not_found("member", user_id))
}

pub(super) fn member(
    conn: &Connection,
    workspace_id: &str,
    user_id: &str,
) -> Result<Option<Member>, Error> {
    Ok(conn
        .query_row(
            "SELECT workspace_id, user_id, workspace_role FROM workspace_members WHERE workspace_id = ?1 AND user_id = ?2",
            params![workspace_id, user_id],
            row_to_member,
        )
        .optional()?)
}

pub(super) fn list_members(conn: &Connection, workspace_id: &str) -> Result<Vec<Member>, Error> {
    let mut stmt = conn.prepare(
        "SELECT workspace_id, user_id, workspace_role FROM workspace_members WHERE workspace_id = ?1 ORDER BY rowid",
    )?;
    let rows = stmt
        .query_map(params![workspace_id], row_to_member)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn set_member_role(
    conn: &Connection,
    workspace_id: &str,
    user_id: &str,
    role: &str,
) -> Result<Member, Error> {
    let changed = conn.execute(
        "UPDATE workspace_members SET workspace_role = ?1 WHERE workspace_id = ?2 AND user_id = ?3",
        params![role, workspace_id, user_id],
    )?;
    if changed == 0 {
        return Err(Error::not_found("member", user_id));
    }
    member(conn, workspace_id, user_id)?.ok_or_else(|| Error::not_found("member", user_id))
}

pub(super) fn remove_member(
    conn: &Connection,
    workspace_id: &str,
    user_id: &str,
) -> Result<(), Error> {
    let changed = conn.execute(
        "DELETE FROM workspace_members WHERE workspace_id = ?1 AND user_id = ?2",
        params![workspace_id, user_id],
    )?;
    if changed == 0 {
        return Err(Error::not_found("member", user_id));
    }
    Ok(())
}
