//! The Admin API's members, shaped as the Claude API shapes them.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use missive_protocol::models::Page;
use missive_store::{Member, WORKSPACE_ROLES};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{audit, body, page, store};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::check_role;
use crate::extract::JsonBody;
use crate::params::Params;
use crate::state::AppState;

#[derive(Serialize)]
pub struct MemberView {
    #[serde(rename = "type")]
    kind: &'static str,
    user_id: String,
    workspace_id: String,
    workspace_role: String,
}

fn view(m: Member) -> MemberView {
    MemberView {
        kind: "workspace_member",
        user_id: m.user_id,
        workspace_id: m.workspace_id,
        workspace_role: m.workspace_role,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    user_id: String,
    workspace_role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    workspace_role: String,
}

fn find(state: &AppState, workspace_id: &str, user_id: &str) -> Result<Member, ApiError> {
    store(state)?.member(workspace_id, user_id)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "user {user_id} is not a member of workspace {workspace_id}"
        ))
    })
}

pub async fn list(
    State(state): State<AppState>,
    Path(workspace_id): Path<String>,
    params: Params,
) -> Result<Json<Page<MemberView>>, ApiError> {
    super::workspaces::find(&state, &workspace_id)?;
    let all = store(&state)?.list_members(&workspace_id)?;
    let views = all.into_iter().map(view).collect();
    Ok(Json(page(
        views,
        |m: &MemberView| m.user_id.as_str(),
        &params,
    )?))
}

pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(workspace_id): Path<String>,
    JsonBody(raw): JsonBody,
) -> Result<Json<MemberView>, ApiError> {
    let request: CreateBody = body(&raw)?;
    check_role("workspace_role", &request.workspace_role, WORKSPACE_ROLES)?;
    super::workspaces::find(&state, &workspace_id)?;
    let store = store(&state)?;
    let member = store.add_member(&workspace_id, &request.user_id, &request.workspace_role)?;
    audit(
        store.as_ref(),
        &principal,
        "workspace_member.create",
        &workspace_id,
        json!({"user_id": request.user_id, "workspace_role": request.workspace_role}),
    )?;
    Ok(Json(view(member)))
}

pub async fn retrieve(
    State(state): State<AppState>,
    Path((workspace_id, user_id)): Path<(String, String)>,
) -> Result<Json<MemberView>, ApiError> {
    Ok(Json(view(find(&state, &workspace_id, &user_id)?)))
}

pub async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((workspace_id, user_id)): Path<(String, String)>,
    JsonBody(raw): JsonBody,
) -> Result<Json<MemberView>, ApiError> {
    let request: UpdateBody = body(&raw)?;
    check_role("workspace_role", &request.workspace_role, WORKSPACE_ROLES)?;
    find(&state, &workspace_id, &user_id)?;
    let store = store(&state)?;
    let member = store.set_member_role(&workspace_id, &user_id, &request.workspace_role)?;
    audit(
        store.as_ref(),
        &principal,
        "workspace_member.update",
        &workspace_id,
        json!({"user_id": user_id, "workspace_role": request.workspace_role}),
    )?;
    Ok(Json(view(member)))
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((workspace_id, user_id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    find(&state, &workspace_id, &user_id)?;
    let store = store(&state)?;
    store.remove_member(&workspace_id, &user_id)?;
    audit(
        store.as_ref(),
        &principal,
        "workspace_member.delete",
        &workspace_id,
        json!({"user_id": user_id}),
    )?;
    Ok(Json(json!({
        "type": "workspace_member_deleted",
        "user_id": user_id,
        "workspace_id": workspace_id,
    })))
}
