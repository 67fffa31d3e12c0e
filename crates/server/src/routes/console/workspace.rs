//! What lives in a workspace: its prompts and schemas, batches and files, and the workbench, which
//! run through the workspace's own APIs.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{acting, body, named_workspace, store, Filter, User};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;

/// A workspace's prompts or schemas, each with every version's body.
pub(super) async fn registry(
    State(state): State<AppState>,
    user: User,
    Path(kind): Path<String>,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let kind = crate::routes::registry::kind_of(&kind)?;
    let workspace = named_workspace(&user, filter.workspace_id.as_deref())?;
    let data: Vec<Value> = store(&state)?
        .list_registry(&workspace, kind)?
        .iter()
        .map(|entry| {
            let mut view = crate::routes::registry::entry_view(kind, entry);
            view["versions"] = entry
                .versions
                .iter()
                .map(|v| crate::routes::registry::version_view(kind, v))
                .collect();
            view
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// A console change's body: the registry route's own body, plus the workspace it is for.
fn split_workspace(raw: &[u8]) -> Result<(Option<String>, Vec<u8>), ApiError> {
    let mut fields: serde_json::Map<String, Value> = body(raw)?;
    let workspace = match fields.remove("workspace_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(_) => {
            return Err(ApiError::invalid(
                "workspace_id: Input should be a valid string",
            ))
        }
    };
    Ok((workspace, Value::Object(fields).to_string().into_bytes()))
}

/// A new version, through the registry's own route (its checks, its size limit).
pub(super) async fn create_version(
    State(state): State<AppState>,
    user: User,
    Path(kind): Path<String>,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    crate::routes::registry::kind_of(&kind)?;
    let (workspace, forwarded) = split_workspace(&raw)?;
    let principal = acting(&state, &user, workspace.as_deref())?;
    let workspace = principal.workspace_id.clone();
    let Json(version) = crate::routes::registry::create(
        State(state.clone()),
        axum::Extension(principal),
        Path(kind.clone()),
        JsonBody(forwarded.into()),
    )
    .await?;
    let target = format!(
        "{}@{}",
        version["name"].as_str().unwrap_or_default(),
        version["version"]
    );
    user.audit(
        store(&state)?,
        &format!("{}.version", kind.trim_end_matches('s')),
        &target,
        json!({"workspace_id": workspace}),
    );
    Ok(Json(version))
}

/// Moves a label or sets an A/B split, through the registry's own route.
pub(super) async fn move_label(
    State(state): State<AppState>,
    user: User,
    Path((kind, name)): Path<(String, String)>,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    crate::routes::registry::kind_of(&kind)?;
    let (workspace, forwarded) = split_workspace(&raw)?;
    let detail: Value = serde_json::from_slice(&forwarded).unwrap_or_default();
    let principal = acting(&state, &user, workspace.as_deref())?;
    let workspace = principal.workspace_id.clone();
    let Json(entry) = crate::routes::registry::label(
        State(state.clone()),
        axum::Extension(principal),
        Path((kind.clone(), name.clone())),
        JsonBody(forwarded.into()),
    )
    .await?;
    user.audit(
        store(&state)?,
        &format!("{}.label", kind.trim_end_matches('s')),
        &format!("{name}@{}", detail["label"].as_str().unwrap_or_default()),
        json!({"workspace_id": workspace, "version": detail["version"], "split": detail["split"]}),
    );
    Ok(Json(entry))
}

pub(super) async fn batches(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let principal = acting(&state, &user, filter.workspace_id.as_deref())?;
    let listed = crate::routes::batches::list(
        State(state),
        axum::Extension(principal),
        headers,
        crate::params::Params::default(),
    )
    .await?;
    Ok(listed.into_response())
}

pub(super) async fn cancel_batch(
    State(state): State<AppState>,
    actor: User,
    headers: HeaderMap,
    Path(batch_id): Path<String>,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let principal = acting(&state, &actor, filter.workspace_id.as_deref())?;
    let canceled = crate::routes::batches::cancel(
        State(state.clone()),
        axum::Extension(principal),
        headers,
        Path(batch_id.clone()),
    )
    .await?;
    if let Some(store) = state.store.as_deref() {
        actor.audit(store, "batch.cancel", &batch_id, json!({}));
    }
    Ok(canceled.into_response())
}

pub(super) async fn batch_results(
    State(state): State<AppState>,
    user: User,
    Path(batch_id): Path<String>,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let principal = acting(&state, &user, filter.workspace_id.as_deref())?;
    crate::routes::batches::results(State(state), axum::Extension(principal), Path(batch_id)).await
}

pub(super) async fn files(
    State(state): State<AppState>,
    user: User,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let principal = acting(&state, &user, filter.workspace_id.as_deref())?;
    let listed = crate::routes::files::list(
        State(state),
        axum::Extension(principal),
        crate::params::Params::default(),
    )
    .await?;
    Ok(listed.into_response())
}

pub(super) async fn delete_file(
    State(state): State<AppState>,
    actor: User,
    Path(file_id): Path<String>,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let principal = acting(&state, &actor, filter.workspace_id.as_deref())?;
    let deleted = crate::routes::files::delete(
        State(state.clone()),
        axum::Extension(principal),
        Path(file_id.clone()),
    )
    .await?;
    if let Some(store) = state.store.as_deref() {
        actor.audit(store, "file.delete", &file_id, json!({}));
    }
    Ok(deleted.into_response())
}

/// The models a workbench request can name.
/// The models the API lists, each with its price (USD per million tokens), so the
/// workbench can show what a run cost.
pub(super) async fn models(
    State(state): State<AppState>,
    _user: User,
) -> Result<Json<Value>, ApiError> {
    let Json(listed) = crate::routes::models::list(
        State(state.clone()),
        Query(crate::routes::models::ListParams::default()),
    )
    .await?;
    let mut listed = serde_json::to_value(listed).map_err(ApiError::internal)?;
    if let Some(models) = listed["data"].as_array_mut() {
        for model in models {
            let price = state
                .spend
                .prices()
                .price(model["id"].as_str().unwrap_or_default());
            model["price"] = json!({
                "input": price.input,
                "output": price.output,
                "cache_write_5m": price.cache_write_5m,
                "cache_read": price.cache_read,
            });
        }
    }
    Ok(Json(listed))
}

/// The workbench: a Messages request run in a workspace, exactly as `/v1/messages` runs
/// it (streamed when asked). A workspace session runs as its own key; an admin runs as
/// the console in the workspace named, and the ledger says so.
pub(super) async fn workbench(
    State(state): State<AppState>,
    user: User,
    Query(filter): Query<Filter>,
    access: Option<axum::Extension<crate::access::AccessSlot>>,
    JsonBody(raw): JsonBody,
) -> Result<Response, ApiError> {
    let principal = acting(&state, &user, filter.workspace_id.as_deref())?;
    // In the access and request logs like any other Messages request.
    if let Some(slot) = &access {
        slot.principal(&principal, state.request_log.as_ref());
    }
    crate::routes::messages::create(
        State(state),
        Some(axum::Extension(principal)),
        access,
        HeaderMap::new(),
        JsonBody(raw),
    )
    .await
}
