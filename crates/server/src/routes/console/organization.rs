//! The organization: workspaces, their keys, limits and kill switches, and the audit log.

use axum::extract::{Path, Query, State};
use axum::Json;
use missive_store::{KeyKind, KeyStatus, WorkspaceLimits};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, read_off_workers, store, Filter, User};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::params::rfc3339_ms;
use crate::state::AppState;

pub(super) async fn workspaces(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let all = store.list_workspaces(false)?;
    let scope = user.scope(None)?;
    let limits: std::collections::HashMap<String, WorkspaceLimits> =
        store.workspace_limits()?.into_iter().collect();
    let switches = store.kill_switches()?;
    let mut data = Vec::new();
    for w in all
        .into_iter()
        .filter(|w| scope.is_none_or(|own| own == w.id))
    {
        let set = limits.get(&w.id).copied().unwrap_or_default();
        let cap = set
            .spend_cap_usd
            .or_else(|| state.spend.configured_cap_usd(&w.name));
        let spent = state.spend.month_to_date_cents(&w.id).await.unwrap_or(0.0) / 100.0;
        data.push(json!({
                "id": w.id,
                "name": w.name,
                "killed": switches
                    .iter()
                    .any(|k| k.model.is_none() && k.workspace_id.as_deref().is_none_or(|id| id == w.id)),
                "killed_models": switches
                    .iter()
                    .filter(|k| k.workspace_id.as_deref() == Some(w.id.as_str()))
                    .filter_map(|k| k.model.clone())
                    .collect::<Vec<_>>(),
                "spend": {"month_to_date_usd": spent, "cap_usd": cap},
                "limits": {
                    "requests_per_minute": set.requests_per_minute,
                    "input_tokens_per_minute": set.input_tokens_per_minute,
                    "output_tokens_per_minute": set.output_tokens_per_minute,
                    "spend_cap_usd": set.spend_cap_usd,
                    "capture_content_days": set.capture_content_days,
                },
        }));
    }
    Ok(Json(json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWorkspace {
    name: String,
}

pub(super) async fn create_workspace(
    State(state): State<AppState>,
    user: User,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let request: NewWorkspace = body(&raw)?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 40 {
        return Err(ApiError::invalid("name: must be 1 to 40 characters"));
    }
    let store = store(&state)?;
    let created = store.create_workspace(name)?;
    user.audit(
        store,
        "workspace.create",
        &created.id,
        json!({"name": name}),
    );
    Ok(Json(json!({"id": created.id, "name": created.name})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    #[serde(default)]
    requests_per_minute: Option<u32>,
    #[serde(default)]
    input_tokens_per_minute: Option<u32>,
    #[serde(default)]
    output_tokens_per_minute: Option<u32>,
    #[serde(default)]
    spend_cap_usd: Option<f64>,
    /// Keep the workspace's request content (redacted) this many days; absent or null: off.
    #[serde(default)]
    capture_content_days: Option<u32>,
}

/// Sets a workspace's rate limits and monthly spend cap (a field left out or null keeps the
/// config's); every replica applies them from its next request.
pub(super) async fn set_limits(
    State(state): State<AppState>,
    user: User,
    Path(workspace_id): Path<String>,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let request: LimitsBody = body(&raw)?;
    if [
        request.requests_per_minute,
        request.input_tokens_per_minute,
        request.output_tokens_per_minute,
    ]
    .contains(&Some(0))
    {
        return Err(ApiError::invalid(
            "a per-minute limit is at least 1 (the kill switch stops all traffic)",
        ));
    }
    if request
        .spend_cap_usd
        .is_some_and(|cap| !cap.is_finite() || cap < 0.0)
    {
        return Err(ApiError::invalid(
            "spend_cap_usd: a number of dollars, 0 or more",
        ));
    }
    if request
        .capture_content_days
        .is_some_and(|days| !(1..=365).contains(&days))
    {
        return Err(ApiError::invalid(
            "capture_content_days: 1 to 365 days (null: content is not kept)",
        ));
    }
    let store = store(&state)?;
    if store.workspace(&workspace_id)?.is_none() {
        return Err(ApiError::not_found(format!(
            "workspace {workspace_id} not found"
        )));
    }
    let limits = WorkspaceLimits {
        requests_per_minute: request.requests_per_minute,
        input_tokens_per_minute: request.input_tokens_per_minute,
        output_tokens_per_minute: request.output_tokens_per_minute,
        spend_cap_usd: request.spend_cap_usd,
        capture_content_days: request.capture_content_days,
    };
    store.set_workspace_limits(&workspace_id, &limits)?;
    let view = json!({
        "requests_per_minute": limits.requests_per_minute,
        "input_tokens_per_minute": limits.input_tokens_per_minute,
        "output_tokens_per_minute": limits.output_tokens_per_minute,
        "spend_cap_usd": limits.spend_cap_usd,
        "capture_content_days": limits.capture_content_days,
    });
    user.audit(store, "workspace.limits", &workspace_id, view.clone());
    Ok(Json(view))
}

fn key_view(key: &missive_store::ApiKey) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "workspace_id": key.workspace_id,
        "hint": key.hint,
        "status": key.status.as_str(),
        "created_at": rfc3339_ms(key.created_at.saturating_mul(1000)),
        "expires_at": key.expires_at.map(|at| rfc3339_ms(at.saturating_mul(1000))),
    })
}

pub(super) async fn keys(
    State(state): State<AppState>,
    user: User,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let scope = user.scope(filter.workspace_id.as_deref())?;
    let data: Vec<Value> = store(&state)?
        .list_api_keys()?
        .iter()
        .filter(|k| k.kind == KeyKind::Standard)
        .filter(|k| scope.is_none_or(|w| k.workspace_id.as_deref() == Some(w)))
        .map(key_view)
        .collect();
    Ok(Json(json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    workspace_id: String,
    name: String,
    /// Days until the key stops working; absent: it never expires.
    #[serde(default)]
    expires_in_days: Option<u32>,
}

/// A key's expiry, `days` from now; 0 clears it. At most ten years ahead.
fn expiry(days: u32) -> Result<Option<i64>, ApiError> {
    match days {
        0 => Ok(None),
        1..=3650 => Ok(Some(crate::ids::now_ms() / 1000 + i64::from(days) * 86_400)),
        _ => Err(ApiError::invalid(
            "expires_in_days: at most 3650 (0: never expires)",
        )),
    }
}

/// Creates a workspace key; the secret is in this answer and nowhere else, ever.
pub(super) async fn create_key(
    State(state): State<AppState>,
    user: User,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let request: NewKey = body(&raw)?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name: must be 1 to 100 characters"));
    }
    let expires_at = request.expires_in_days.map(expiry).transpose()?.flatten();
    let store = store(&state)?;
    let mut created = store.create_api_key(name, KeyKind::Standard, Some(&request.workspace_id))?;
    if expires_at.is_some() {
        created.key = store.set_api_key_expiry(&created.key.id, expires_at)?;
    }
    user.audit(
        store,
        "api_key.create",
        &created.key.id,
        json!({"name": name, "workspace_id": request.workspace_id, "expires_at": expires_at}),
    );
    let mut view = key_view(&created.key);
    view["secret"] = Value::from(created.secret);
    Ok(Json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyChange {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    /// Days from now until the key expires; 0: never.
    #[serde(default)]
    expires_in_days: Option<u32>,
}

/// Renames a key, revokes it (`status: "inactive"`) or sets when it expires.
pub(super) async fn update_key(
    State(state): State<AppState>,
    user: User,
    Path(key_id): Path<String>,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let change: KeyChange = body(&raw)?;
    let status = match change.status.as_deref() {
        None => None,
        Some(s @ ("active" | "inactive")) => KeyStatus::parse(s),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "status: `{other}` is not one of active, inactive"
            )))
        }
    };
    let expires_at = change.expires_in_days.map(expiry).transpose()?;
    let store = store(&state)?;
    let mut updated = store.update_api_key(&key_id, change.name.as_deref(), status)?;
    if let Some(expires_at) = expires_at {
        updated = store.set_api_key_expiry(&key_id, expires_at)?;
    }
    user.audit(
        store,
        "api_key.update",
        &key_id,
        json!({"name": change.name, "status": change.status, "expires_at": expires_at}),
    );
    Ok(Json(key_view(&updated)))
}

pub(super) async fn kill_switches(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<Value>, ApiError> {
    let scope = user.scope(None)?;
    let data: Vec<Value> = store(&state)?
        .kill_switches()?
        .into_iter()
        .filter(|s| scope.is_none_or(|w| s.workspace_id.as_deref().is_none_or(|id| id == w)))
        .map(|s| json!({"workspace_id": s.workspace_id, "model": s.model}))
        .collect();
    Ok(Json(json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KillSwitchChange {
    #[serde(default)]
    workspace_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    on: bool,
}

pub(super) async fn set_kill_switch(
    State(state): State<AppState>,
    user: User,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let change: KillSwitchChange = body(&raw)?;
    let workspace = change.workspace_id.as_deref().filter(|w| !w.is_empty());
    let model = change.model.as_deref().filter(|m| !m.is_empty());
    let store = store(&state)?;
    store.set_kill_switch(workspace, model, change.on)?;
    user.audit(
        store,
        if change.on {
            "kill_switch.on"
        } else {
            "kill_switch.off"
        },
        workspace.unwrap_or("*"),
        json!({"model": model}),
    );
    Ok(Json(
        json!({"workspace_id": workspace, "model": model, "on": change.on}),
    ))
}

pub(super) async fn audit_log(
    State(state): State<AppState>,
    user: User,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    let entries = read_off_workers(&state, move |store| store.audit_log(limit)).await?;
    let data: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            json!({
                "at": rfc3339_ms(e.at_ms),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "detail": serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}
