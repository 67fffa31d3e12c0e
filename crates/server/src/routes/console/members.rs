//! The organization's users and each workspace's members: who may sign in with OIDC, and
//! what they see once in.

use axum::extract::{Path, State};
use axum::Json;
use missive_store::{ORG_ROLES, WORKSPACE_ROLES};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, store, User};
use crate::error::ApiError;
use crate::extract::{check_role, JsonBody};
use crate::params::rfc3339_ms;
use crate::state::AppState;

pub(super) async fn users(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let data: Vec<Value> = store(&state)?
        .list_users(None)?
        .into_iter()
        .map(|u| {
            json!({"id": u.id, "email": u.email, "name": u.name, "role": u.role,
                   "added_at": rfc3339_ms(u.added_at.saturating_mul(1000))})
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    email: String,
    name: String,
    role: String,
}

/// Adds a user of the organization. As in the Admin API, `admin` is not given from here:
/// an operator makes admins with `missive users add`.
pub(super) async fn add_user(
    State(state): State<AppState>,
    user: User,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let request: NewUser = body(&raw)?;
    check_role("role", &request.role, ORG_ROLES)?;
    if request.role == "admin" {
        return Err(ApiError::invalid(
            "role: `admin` is given with `missive users add`, not from the console",
        ));
    }
    let email = request.email.trim();
    if !email.contains('@') || email.len() > 254 {
        return Err(ApiError::invalid("email: not an email address"));
    }
    let store = store(&state)?;
    if !store.list_users(Some(email))?.is_empty() {
        return Err(ApiError::invalid(format!(
            "email: {email} is already a user"
        )));
    }
    let added = store.add_user(email, request.name.trim(), &request.role)?;
    user.audit(
        store,
        "user.add",
        &added.id,
        json!({"email": email, "role": request.role}),
    );
    Ok(Json(
        json!({"id": added.id, "email": added.email, "role": added.role}),
    ))
}

/// A workspace's members, with their emails: an admin sees any workspace's, a workspace
/// session its own.
pub(super) async fn members(
    State(state): State<AppState>,
    user: User,
    Path(workspace_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let workspace_id = user
        .scope(Some(&workspace_id))?
        .unwrap_or_default()
        .to_owned();
    let store = store(&state)?;
    let emails: std::collections::HashMap<String, String> = store
        .list_users(None)?
        .into_iter()
        .map(|u| (u.id, u.email))
        .collect();
    let data: Vec<Value> = store
        .list_members(&workspace_id)?
        .into_iter()
        .map(|member| {
            json!({"user_id": member.user_id, "email": emails.get(&member.user_id),
                   "workspace_role": member.workspace_role})
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Membership {
    user_id: String,
    workspace_role: String,
}

/// Adds a member, or changes a member's role.
pub(super) async fn set_member(
    State(state): State<AppState>,
    user: User,
    Path(workspace_id): Path<String>,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let request: Membership = body(&raw)?;
    check_role("workspace_role", &request.workspace_role, WORKSPACE_ROLES)?;
    let store = store(&state)?;
    if store
        .workspace(&workspace_id)?
        .is_none_or(|w| w.archived_at.is_some())
    {
        return Err(ApiError::not_found(format!(
            "workspace {workspace_id} not found"
        )));
    }
    if store.user(&request.user_id)?.is_none() {
        return Err(ApiError::not_found(format!(
            "user {} not found",
            request.user_id
        )));
    }
    let member = if store.member(&workspace_id, &request.user_id)?.is_some() {
        store.set_member_role(&workspace_id, &request.user_id, &request.workspace_role)?
    } else {
        store.add_member(&workspace_id, &request.user_id, &request.workspace_role)?
    };
    user.audit(
        store,
        "workspace_member.set",
        &workspace_id,
        json!({"user_id": member.user_id, "workspace_role": member.workspace_role}),
    );
    Ok(Json(
        json!({"user_id": member.user_id, "workspace_role": member.workspace_role}),
    ))
}

pub(super) async fn remove_member(
    State(state): State<AppState>,
    user: User,
    Path((workspace_id, user_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let store = store(&state)?;
    store.remove_member(&workspace_id, &user_id)?;
    user.audit(
        store,
        "workspace_member.remove",
        &workspace_id,
        json!({"user_id": user_id}),
    );
    Ok(Json(json!({"user_id": user_id, "removed": true})))
}
