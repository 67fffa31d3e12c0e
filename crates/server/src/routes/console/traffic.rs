//! Traffic: usage over time, and the request log.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use missive_store::{Dimension, RequestLogQuery, TokenCounts, UsageQuery};
use serde_json::{json, Value};

use super::{read_off_workers, Filter, User};
use crate::error::ApiError;
use crate::params::rfc3339_ms;
use crate::state::AppState;

/// Billed usage over time, by model, workspace or key: the overview's chart. Cost is
/// priced per model, then summed into the chosen breakdown.
pub(super) async fn usage(
    State(state): State<AppState>,
    user: User,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let scope = user.scope(filter.workspace_id.as_deref())?;
    let bucket_ms = match filter.bucket.as_deref().unwrap_or("1h") {
        "1h" => 3_600_000,
        "1d" => 86_400_000,
        other => {
            return Err(ApiError::invalid(format!(
                "bucket: `{other}` is not one of 1h, 1d"
            )))
        }
    };
    let by = match filter.group.as_deref().unwrap_or("model") {
        "model" => Dimension::Model,
        "workspace" => Dimension::WorkspaceId,
        "key" => Dimension::ApiKeyId,
        other => {
            return Err(ApiError::invalid(format!(
                "group: `{other}` is not one of model, workspace, key"
            )))
        }
    };
    let now = crate::ids::now_ms();
    let end_ms = filter.end_ms.unwrap_or(now + 1);
    let start_ms = filter.start_ms.unwrap_or(end_ms - 24 * 3_600_000);
    if end_ms <= start_ms || (end_ms - start_ms) / bucket_ms > 1000 {
        return Err(ApiError::invalid(
            "start_ms, end_ms: a range of at most 1000 buckets, start before end",
        ));
    }
    let mut group_by = vec![Dimension::Model];
    if by != Dimension::Model {
        group_by.push(by);
    }
    let query = UsageQuery {
        start_ms,
        end_ms,
        bucket_ms,
        group_by,
        filters: scope
            .map(|w| vec![(Dimension::WorkspaceId, vec![w.to_owned()])])
            .unwrap_or_default(),
    };
    let rows = read_off_workers(&state, move |store| store.usage(&query)).await?;
    let prices = state.spend.prices();
    let mut totals: BTreeMap<(i64, String), (TokenCounts, f64)> = BTreeMap::new();
    for row in &rows {
        let model = row.model.clone().unwrap_or_default();
        let group = match by {
            Dimension::WorkspaceId => row.workspace_id.clone(),
            Dimension::ApiKeyId => row.api_key_id.clone(),
            _ => row.model.clone(),
        }
        .unwrap_or_default();
        let total = totals.entry((row.bucket_start_ms, group)).or_default();
        total.0.add(&row.tokens);
        total.1 += prices.cost_cents(&model, "standard", &row.tokens) / 100.0;
    }
    let data: Vec<Value> = totals
        .iter()
        .map(|((bucket, group), (t, cost))| {
            json!({
                "bucket_start": rfc3339_ms(*bucket),
                "group": group,
                "input_tokens": t.uncached_input + t.cache_creation_5m + t.cache_creation_1h,
                "cache_read_input_tokens": t.cache_read,
                "output_tokens": t.output,
                "cost_usd": cost,
            })
        })
        .collect();
    Ok(Json(json!({
        "bucket": filter.bucket.unwrap_or_else(|| "1h".to_owned()),
        "group": filter.group.unwrap_or_else(|| "model".to_owned()),
        "start": rfc3339_ms(start_ms),
        "end": rfc3339_ms(end_ms),
        "data": data,
    })))
}

/// The request log: one row per API request, failures included, newest first.
pub(super) async fn requests(
    State(state): State<AppState>,
    user: User,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let scope = user.scope(filter.workspace_id.as_deref())?;
    let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let query = RequestLogQuery {
        workspace_id: scope.map(str::to_owned),
        api_key_id: nonempty(&filter.api_key_id),
        model: nonempty(&filter.model),
        errors_only: filter.errors_only.unwrap_or(false),
        limit: filter.limit.unwrap_or(100).clamp(1, 1000),
    };
    let rows = read_off_workers(&state, move |store| store.request_log(&query)).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "request_id": r.request_id,
                "at": rfc3339_ms(r.at_ms),
                "method": r.method,
                "path": r.path,
                "status": r.status,
                "latency_ms": r.latency_ms,
                "api_key_id": r.api_key_id,
                "workspace_id": r.workspace_id,
                "model": r.model,
                "upstream": r.upstream,
                "input_tokens": r.input_tokens,
                "cache_creation_input_tokens": r.cache_creation_input_tokens,
                "cache_read_input_tokens": r.cache_read_input_tokens,
                "output_tokens": r.output_tokens,
                "prompt_version": r.prompt_version,
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// A request's captured content (its workspace opted in, and it has not expired), as
/// stored: redacted.
pub(super) async fn request_content(
    State(state): State<AppState>,
    user: User,
    Path(request_id): Path<String>,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let workspace = super::named_workspace(&user, filter.workspace_id.as_deref())?;
    let id = request_id.clone();
    let found =
        read_off_workers(&state, move |store| store.captured_content(&workspace, &id)).await?;
    let content = found.ok_or_else(|| {
        ApiError::not_found(format!(
            "no content kept for {request_id}: its workspace does not capture content, or it expired"
        ))
    })?;
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::from(text));
    Ok(Json(json!({
        "request_id": content.request_id,
        "at": rfc3339_ms(content.at_ms),
        "expires_at": rfc3339_ms(content.expires_at_ms),
        "request": parse(&content.request),
        "response": parse(&content.response),
    })))
}
