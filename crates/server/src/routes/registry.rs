//! The registry of versioned prompts and schemas (a Missive extension, under
//! `/v1/missive/`): a workspace key manages its own workspace's entries. Versions are
//! numbered and never change; labels (`production`, `staging`, any name) move between
//! them. Requests use entries through `crate::registry`.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use missive_protocol::ErrorType;
use missive_store::{LabelTarget, RegistryEntry, RegistryKind, RegistryVersion, SplitShare};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::params::rfc3339_ms;
use crate::registry::{parse_reference, pick, valid_name, Pick};
use crate::state::AppState;

/// The most one version may hold: a system prompt or a schema, not a corpus.
const MAX_VERSION_BYTES: usize = 1024 * 1024;

/// The registry lives in the store; a server without one (governance off) has none.
fn store(state: &AppState) -> Result<&dyn missive_store::Store, ApiError> {
    state.store.as_deref().ok_or_else(|| {
        ApiError::not_found("The registry needs a store; this server runs without one")
    })
}

pub(crate) fn kind_of(path: &str) -> Result<RegistryKind, ApiError> {
    match path {
        "prompts" => Ok(RegistryKind::Prompt),
        "schemas" => Ok(RegistryKind::Schema),
        other => Err(ApiError::not_found(format!(
            "Not found: /v1/missive/{other}"
        ))),
    }
}

pub(crate) fn version_view(kind: RegistryKind, version: &RegistryVersion) -> Value {
    let mut view = json!({
        "type": format!("{}_version", kind.as_str()),
        "name": version.name,
        "version": version.version,
        "created_at": rfc3339_ms(version.created_at_ms),
    });
    match kind {
        RegistryKind::Prompt => view["text"] = Value::from(version.body.clone()),
        RegistryKind::Schema => {
            view["schema"] = serde_json::from_str(&version.body).unwrap_or(Value::Null)
        }
    }
    view
}

/// Labels that point at one version map to it; A/B splits are listed apart, with weights.
pub(crate) fn entry_view(kind: RegistryKind, entry: &RegistryEntry) -> Value {
    let mut labels = Map::new();
    let mut splits = Map::new();
    for (label, target) in &entry.labels {
        match target {
            LabelTarget::Version(version) => {
                labels.insert(label.clone(), Value::from(*version));
            }
            LabelTarget::Split(shares) => {
                let shares: Vec<Value> = shares
                    .iter()
                    .map(|s| json!({"version": s.version, "weight": s.weight}))
                    .collect();
                splits.insert(label.clone(), Value::from(shares));
            }
        }
    }
    let versions: Vec<Value> = entry
        .versions
        .iter()
        .map(|v| json!({"version": v.version, "created_at": rfc3339_ms(v.created_at_ms)}))
        .collect();
    json!({
        "type": kind.as_str(),
        "name": entry.name,
        "latest_version": entry.versions.last().map_or(0, |v| v.version),
        "labels": labels,
        "splits": splits,
        "versions": versions,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    schema: Option<Value>,
}

/// `POST /v1/missive/{prompts|schemas}`: the next version of `name`.
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(kind): Path<String>,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let kind = kind_of(&kind)?;
    if raw.len() > MAX_VERSION_BYTES {
        return Err(ApiError::new(
            ErrorType::RequestTooLarge,
            format!("a registry version may be at most {MAX_VERSION_BYTES} bytes"),
        ));
    }
    let body: CreateBody = crate::extract::parse_json(&raw)?;
    if !valid_name(&body.name) {
        return Err(ApiError::invalid(
            "name: 1 to 64 letters, digits, `_`, `-` or `.`",
        ));
    }
    let stored = match (kind, body.text, body.schema) {
        (RegistryKind::Prompt, Some(text), None) if !text.is_empty() => text,
        (RegistryKind::Prompt, _, _) => return Err(ApiError::invalid(
            "text: Field required (a non-empty prompt; `schema` belongs to /v1/missive/schemas)",
        )),
        (RegistryKind::Schema, None, Some(schema)) => {
            // The same checks as `output_config.format`: what is saved can be used.
            missive_protocol::parse::check_schema(&schema, "schema")?;
            schema.to_string()
        }
        (RegistryKind::Schema, _, _) => return Err(ApiError::invalid(
            "schema: Field required (a JSON Schema object; `text` belongs to /v1/missive/prompts)",
        )),
    };
    let version =
        store(&state)?.add_registry_version(&principal.workspace_id, kind, &body.name, &stored)?;
    Ok(Json(version_view(kind, &version)))
}

/// `GET /v1/missive/{prompts|schemas}`: every entry of the workspace.
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(kind): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let kind = kind_of(&kind)?;
    let entries = store(&state)?.list_registry(&principal.workspace_id, kind)?;
    let data: Vec<Value> = entries.iter().map(|e| entry_view(kind, e)).collect();
    Ok(Json(json!({
        "data": data,
        "has_more": false,
        "first_id": entries.first().map(|e| e.name.clone()),
        "last_id": entries.last().map(|e| e.name.clone()),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    version: Option<i64>,
    /// For a label that splits traffic: the user whose version to fetch.
    #[serde(default)]
    user_id: Option<String>,
}

/// `GET /v1/missive/{prompts|schemas}/{name}`: the entry, or with `?label=` or `?version=`
/// the version it picks (how clients fetch the current schema).
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((kind, name)): Path<(String, String)>,
    Query(selector): Query<Selector>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kind)?;
    let entry = store(&state)?
        .registry_entry(&principal.workspace_id, kind, &name)?
        .ok_or_else(|| ApiError::not_found(format!("{} {name} not found", kind.as_str())))?;
    let chosen = match (&selector.label, selector.version) {
        (None, None) => return Ok(Json(entry_view(kind, &entry)).into_response()),
        (Some(label), None) => Pick::Label(label),
        (None, Some(version)) => Pick::Version(version),
        (Some(_), Some(_)) => return Err(ApiError::invalid("give `label` or `version`, not both")),
    };
    let version = pick(&entry, chosen, selector.user_id.as_deref()).ok_or_else(|| {
        ApiError::not_found(format!(
            "{} {name} has no version {}",
            kind.as_str(),
            match chosen {
                Pick::Label(label) => format!("labelled `{label}`"),
                Pick::Version(v) => v.to_string(),
            }
        ))
    })?;
    Ok(Json(version_view(kind, version)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelBody {
    label: String,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    split: Option<Vec<ShareBody>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareBody {
    version: i64,
    weight: u32,
}

/// The most versions one split may serve.
const MAX_SPLIT: usize = 16;

fn label_target(body: LabelBody) -> Result<LabelTarget, ApiError> {
    match (body.version, body.split) {
        (Some(version), None) => Ok(LabelTarget::Version(version)),
        (None, Some(shares)) => {
            if shares.is_empty() || shares.len() > MAX_SPLIT {
                return Err(ApiError::invalid(format!(
                    "split: 1 to {MAX_SPLIT} versions, each with a weight"
                )));
            }
            if shares.iter().any(|s| s.weight == 0 || s.weight > 1_000_000) {
                return Err(ApiError::invalid(
                    "split: each weight is a whole number from 1 to 1000000",
                ));
            }
            let mut seen: Vec<i64> = shares.iter().map(|s| s.version).collect();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != shares.len() {
                return Err(ApiError::invalid("split: each version may appear once"));
            }
            Ok(LabelTarget::Split(
                shares
                    .into_iter()
                    .map(|s| SplitShare {
                        version: s.version,
                        weight: s.weight,
                    })
                    .collect(),
            ))
        }
        _ => Err(ApiError::invalid(
            "give `version` (the label points at it) or `split` (weights over versions), not both",
        )),
    }
}

/// `POST /v1/missive/{prompts|schemas}/{name}/labels`: points a label at a version (a
/// rollout, or a rollback), or splits it over versions by weight (an A/B test).
pub async fn label(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((kind, name)): Path<(String, String)>,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let kind = kind_of(&kind)?;
    let body: LabelBody = crate::extract::parse_json(&raw)?;
    if parse_reference(&format!("{name}@{}", body.label))
        .is_none_or(|r| !matches!(r.pick, Pick::Label(_)))
    {
        return Err(ApiError::invalid(
            "label: 1 to 64 letters, digits, `_`, `-` or `.`, not a number",
        ));
    }
    let label = body.label.clone();
    let target = label_target(body)?;
    let entry =
        store(&state)?.set_registry_label(&principal.workspace_id, kind, &name, &label, &target)?;
    Ok(Json(entry_view(kind, &entry)))
}
