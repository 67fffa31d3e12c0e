//! What lives in a workspace: its prompts, batches and files, and the workbench, which
//! run through the workspace's own APIs.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use missive_store::{LabelTarget, RegistryKind};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{acting, body, registry_workspace, store, Filter, User};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::params::rfc3339_ms;
use crate::state::AppState;

pub(super) async fn prompts(
    State(state): State<AppState>,
    user: User,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let workspace = registry_workspace(&user, filter.workspace_id.as_deref())?;
    let data: Vec<Value> = store(&state)?
        .list_registry(&workspace, RegistryKind::Prompt)?
        .iter()
        .map(|entry| {
            let labels: serde_json::Map<String, Value> = entry
                .labels
                .iter()
                .map(|(label, target)| {
                    let target = match target {
                        LabelTarget::Version(v) => json!(v),
                        LabelTarget::Split(shares) => json!(shares
                            .iter()
                            .map(|s| format!("{}:{}", s.version, s.weight))
                            .collect::<Vec<_>>()
                            .join(",")),
                    };
                    (label.clone(), target)
                })
                .collect();
            let versions: Vec<Value> = entry
                .versions
                .iter()
                .map(|v| json!({"version": v.version, "text": v.body, "created_at": rfc3339_ms(v.created_at_ms)}))
                .collect();
            json!({"name": entry.name, "labels": labels, "versions": versions})
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPrompt {
    #[serde(default)]
    workspace_id: Option<String>,
    name: String,
    text: String,
}

/// A new version, through the registry's own route (its checks, its size limit).
pub(super) async fn create_prompt(
    State(state): State<AppState>,
    user: User,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let request: NewPrompt = body(&raw)?;
    let principal = acting(&state, &user, request.workspace_id.as_deref())?;
    let workspace = principal.workspace_id.clone();
    let entry = json!({"name": request.name, "text": request.text}).to_string();
    let Json(version) = crate::routes::registry::create(
        State(state.clone()),
        axum::Extension(principal),
        Path("prompts".to_owned()),
        JsonBody(entry.into()),
    )
    .await?;
    let (name, number) = (version["name"].clone(), version["version"].clone());
    user.audit(
        store(&state)?,
        "prompt.version",
        &format!("{}@{number}", name.as_str().unwrap_or_default()),
        json!({"workspace_id": workspace}),
    );
    Ok(Json(json!({"name": name, "version": number})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelMove {
    #[serde(default)]
    workspace_id: Option<String>,
    label: String,
    version: i64,
}

/// Moves a label, through the registry's own route.
pub(super) async fn label_prompt(
    State(state): State<AppState>,
    user: User,
    Path(name): Path<String>,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let request: LabelMove = body(&raw)?;
    let principal = acting(&state, &user, request.workspace_id.as_deref())?;
    let workspace = principal.workspace_id.clone();
    let label = json!({"label": request.label, "version": request.version}).to_string();
    let Json(_entry) = crate::routes::registry::label(
        State(state.clone()),
        axum::Extension(principal),
        Path(("prompts".to_owned(), name.clone())),
        JsonBody(label.into()),
    )
    .await?;
    user.audit(
        store(&state)?,
        "prompt.label",
        &format!("{name}@{}", request.label),
        json!({"workspace_id": workspace, "version": request.version}),
    );
    Ok(Json(
        json!({"name": name, "label": request.label, "version": request.version}),
    ))
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
pub(super) async fn models(
    State(state): State<AppState>,
    _user: User,
) -> Result<Response, ApiError> {
    let listed = crate::routes::models::list(
        State(state),
        Query(crate::routes::models::ListParams::default()),
    )
    .await?;
    Ok(listed.into_response())
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
