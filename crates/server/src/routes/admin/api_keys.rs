//! The Admin API's api keys, shaped as the Claude API shapes them.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use missive_protocol::models::Page;
use missive_store::{ApiKey, KeyKind, KeyStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{audit, body, page, store};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::params::{rfc3339_secs, Params};
use crate::state::AppState;

#[derive(Serialize)]
pub struct ApiKeyView {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    status: &'static str,
    created_at: String,
    created_by: serde_json::Value,
    partial_key_hint: String,
    workspace_id: Option<String>,
    expires_at: Option<String>,
    scope: serde_json::Value,
}

fn view(k: ApiKey) -> ApiKeyView {
    ApiKeyView {
        id: k.id,
        kind: "api_key",
        name: k.name,
        status: k.status.as_str(),
        created_at: rfc3339_secs(k.created_at),
        // Keys are created by the operator on the command line.
        created_by: json!({"id": "missive-cli", "type": "service_account"}),
        partial_key_hint: k.hint,
        scope: match &k.workspace_id {
            Some(id) => json!({"type": "workspace", "workspace_id": id}),
            None => json!({"type": "organization"}),
        },
        workspace_id: k.workspace_id,
        expires_at: k.expires_at.map(rfc3339_secs),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    status: Option<String>,
}

/// Workspace keys only: admin keys are not Admin API resources.
fn find(state: &AppState, id: &str) -> Result<ApiKey, ApiError> {
    store(state)?
        .api_key(id)?
        .filter(|k| k.kind == KeyKind::Standard)
        .ok_or_else(|| ApiError::not_found(format!("API key {id} not found")))
}

pub async fn list(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<Page<ApiKeyView>>, ApiError> {
    let status = params.one("status");
    if let Some(status) = status {
        if KeyStatus::parse(status).is_none() {
            return Err(ApiError::invalid(format!(
                "status: `{status}` is not one of active, inactive, archived, expired"
            )));
        }
    }
    let workspace = params.one("workspace_id");
    let keys = store(&state)?
        .list_api_keys()?
        .into_iter()
        .filter(|k| k.kind == KeyKind::Standard)
        .filter(|k| status.is_none_or(|s| k.status.as_str() == s))
        .filter(|k| workspace.is_none_or(|w| k.workspace_id.as_deref() == Some(w)))
        .map(view)
        .collect();
    Ok(Json(page(keys, |k: &ApiKeyView| k.id.as_str(), &params)?))
}

pub async fn retrieve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyView>, ApiError> {
    Ok(Json(view(find(&state, &id)?)))
}

pub async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(raw): JsonBody,
) -> Result<Json<ApiKeyView>, ApiError> {
    let request: UpdateBody = body(&raw)?;
    let status = match request.status.as_deref() {
        None => None,
        Some(s @ ("active" | "inactive" | "archived")) => KeyStatus::parse(s),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "status: `{other}` is not one of active, inactive, archived"
            )))
        }
    };
    if let Some(name) = &request.name {
        if name.trim().is_empty() || name.chars().count() > 500 {
            return Err(ApiError::invalid("name: must be 1 to 500 characters"));
        }
    }
    find(&state, &id)?;
    let store = store(&state)?;
    let updated = store.update_api_key(&id, request.name.as_deref(), status)?;
    audit(
        store.as_ref(),
        &principal,
        "api_key.update",
        &id,
        json!({"name": request.name, "status": request.status}),
    )?;
    Ok(Json(view(updated)))
}
