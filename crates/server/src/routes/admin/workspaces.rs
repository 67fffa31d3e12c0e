//! The Admin API's workspaces, shaped as the Claude API shapes them.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use missive_protocol::models::Page;
use missive_store::Workspace;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{audit, body, page, store};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::params::{rfc3339_secs, Params};
use crate::state::AppState;

#[derive(Serialize)]
pub struct WorkspaceView {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    created_at: String,
    archived_at: Option<String>,
    display_color: String,
    data_residency: serde_json::Value,
    compartment_id: String,
    tags: serde_json::Map<String, serde_json::Value>,
    external_key_id: Option<String>,
    user_profile_id: Option<String>,
}

pub(crate) fn view(w: Workspace) -> WorkspaceView {
    WorkspaceView {
        // One machine, one encryption domain per workspace: its id names it.
        compartment_id: w.id.replacen("wrkspc_", "cmpt_", 1),
        tags: serde_json::Map::new(),
        external_key_id: None,
        user_profile_id: None,
        id: w.id,
        kind: "workspace",
        name: w.name,
        created_at: rfc3339_secs(w.created_at),
        archived_at: w.archived_at.map(rfc3339_secs),
        display_color: w.display_color,
        // Everything runs on this machine; the Claude API's values with no choice in them.
        data_residency: json!({
            "workspace_geo": "us",
            "default_inference_geo": "global",
            "allowed_inference_geos": "unrestricted",
        }),
    }
}

/// Other fields (`data_residency`, `display_color`, `tags`) have no meaning on one
/// machine and are ignored.
#[derive(Deserialize)]
struct WorkspaceBody {
    name: String,
}

#[derive(Deserialize)]
struct WorkspaceUpdate {
    name: Option<String>,
}

fn valid_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 40 {
        return Err(ApiError::invalid("name: must be 1 to 40 characters"));
    }
    Ok(name)
}

/// A workspace by id, 404 when there is none.
pub(crate) fn find(state: &AppState, id: &str) -> Result<Workspace, ApiError> {
    store(state)?
        .workspace(id)?
        .ok_or_else(|| ApiError::not_found(format!("workspace {id} not found")))
}

pub async fn list(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<Page<WorkspaceView>>, ApiError> {
    let all = store(&state)?.list_workspaces(params.flag("include_archived")?)?;
    let views = all.into_iter().map(view).collect();
    Ok(Json(page(
        views,
        |w: &WorkspaceView| w.id.as_str(),
        &params,
    )?))
}

pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(raw): JsonBody,
) -> Result<Json<WorkspaceView>, ApiError> {
    let request: WorkspaceBody = body(&raw)?;
    let store = store(&state)?;
    let created = store.create_workspace(valid_name(&request.name)?)?;
    audit(
        store.as_ref(),
        &principal,
        "workspace.create",
        &created.id,
        json!({"name": created.name}),
    )?;
    Ok(Json(view(created)))
}

pub async fn retrieve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WorkspaceView>, ApiError> {
    Ok(Json(view(find(&state, &id)?)))
}

pub async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(raw): JsonBody,
) -> Result<Json<WorkspaceView>, ApiError> {
    let request: WorkspaceUpdate = body(&raw)?;
    let store = store(&state)?;
    let current = find(&state, &id)?;
    let Some(name) = request.name else {
        return Ok(Json(view(current)));
    };
    // Config names workspaces for their limits, caps and policies; renamed, a workspace
    // would leave them behind.
    if name != current.name && state.names_in_config(&current.name) {
        return Err(ApiError::invalid(format!(
            "name: workspace `{}` is named in the server's configuration (rate limits, spend caps or policy); rename it there first",
            current.name
        )));
    }
    let updated = store.rename_workspace(&id, valid_name(&name)?)?;
    audit(
        store.as_ref(),
        &principal,
        "workspace.update",
        &id,
        json!({"name": updated.name}),
    )?;
    Ok(Json(view(updated)))
}

pub async fn archive(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<WorkspaceView>, ApiError> {
    let store = store(&state)?;
    find(&state, &id)?;
    let archived = store.archive_workspace(&id)?;
    audit(
        store.as_ref(),
        &principal,
        "workspace.archive",
        &id,
        json!({}),
    )?;
    Ok(Json(view(archived)))
}
