//! `GET /v1/organizations/usage_report/messages` and `GET /v1/organizations/cost_report`:
//! the ledger, bucketed on UTC boundaries and grouped as asked. Every bucket in the page is
//! listed, empty ones with no results, as the Claude API does.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use base64::Engine;
use missive_store::{Dimension, UsageQuery, UsageRow};
use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::store;
use crate::error::ApiError;
use crate::ids::unix_ms;
use crate::params::{parse_time, rfc3339_ms, Params};
use crate::spend::{line_items, tier_factor, CODE_EXECUTION, WEB_SEARCH};
use crate::state::AppState;

#[derive(Serialize)]
pub struct Report {
    data: Vec<Bucket>,
    has_more: bool,
    next_page: Option<String>,
}

#[derive(Serialize)]
struct Bucket {
    starting_at: String,
    ending_at: String,
    results: Vec<Value>,
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The page of buckets a request covers.
struct Window {
    start_ms: i64,
    end_ms: i64,
    bucket_ms: i64,
    /// Where the next page starts, when there is one.
    next_ms: Option<i64>,
}

fn encode_page(start_ms: i64) -> String {
    let at = rfc3339_ms(start_ms);
    format!(
        "page_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(at)
    )
}

fn decode_page(token: &str) -> Result<OffsetDateTime, ApiError> {
    let bad = || ApiError::invalid(format!("page: `{token}` is not a page token from this API"));
    let encoded = token.strip_prefix("page_").ok_or_else(bad)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    parse_time("page", &text).map_err(|_| bad())
}

/// `widths`: the allowed `bucket_width`s with their default and maximum `limit`.
fn window(params: &Params, widths: &[(&str, i64, usize, usize)]) -> Result<Window, ApiError> {
    let starting_at = params
        .time("starting_at")?
        .ok_or_else(|| ApiError::invalid("starting_at: is required"))?;
    let ending_at = params.time("ending_at")?;
    let width_name = params.one("bucket_width").unwrap_or("1d");
    let Some(&(_, bucket_ms, default_limit, max_limit)) =
        widths.iter().find(|(name, ..)| *name == width_name)
    else {
        let names: Vec<&str> = widths.iter().map(|(n, ..)| *n).collect();
        return Err(ApiError::invalid(format!(
            "bucket_width: `{width_name}` is not one of {}",
            names.join(", ")
        )));
    };
    let limit = params.int("limit", 1, max_limit, default_limit)?;
    let from = match params.one("page") {
        Some(token) => decode_page(token)?,
        None => starting_at,
    };
    let start_ms = unix_ms(from).div_euclid(bucket_ms) * bucket_ms;
    let requested_end = match ending_at {
        Some(end) => {
            let end = unix_ms(end);
            if end <= unix_ms(starting_at) {
                return Err(ApiError::invalid("ending_at: must be after starting_at"));
            }
            // A partial last bucket is reported whole.
            end.div_euclid(bucket_ms) * bucket_ms + if end % bucket_ms == 0 { 0 } else { bucket_ms }
        }
        None => unix_ms(OffsetDateTime::now_utc()).div_euclid(bucket_ms) * bucket_ms + bucket_ms,
    };
    let page_end =
        start_ms.saturating_add(bucket_ms.saturating_mul(i64::try_from(limit).unwrap_or(1)));
    let end_ms = page_end.min(requested_end).max(start_ms + bucket_ms);
    Ok(Window {
        start_ms,
        end_ms,
        bucket_ms,
        next_ms: (end_ms < requested_end).then_some(end_ms),
    })
}

fn buckets(window: &Window, mut results: BTreeMap<i64, Vec<Value>>) -> Report {
    let mut data = Vec::new();
    let mut at = window.start_ms;
    while at < window.end_ms {
        data.push(Bucket {
            starting_at: rfc3339_ms(at),
            ending_at: rfc3339_ms(at + window.bucket_ms),
            results: results.remove(&at).unwrap_or_default(),
        });
        at += window.bucket_ms;
    }
    Report {
        data,
        has_more: window.next_ms.is_some(),
        next_page: window.next_ms.map(encode_page),
    }
}

fn dimension_list(
    params: &Params,
    name: &str,
    allowed: &[&str],
) -> Result<Vec<Dimension>, ApiError> {
    params
        .many(name)
        .iter()
        .map(|d| {
            allowed
                .contains(&d.as_str())
                .then(|| Dimension::parse(d))
                .flatten()
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "{name}: `{d}` is not one of {} (Missive does not report the others)",
                        allowed.join(", ")
                    ))
                })
        })
        .collect()
}

pub async fn usage(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<Report>, ApiError> {
    let window = window(
        &params,
        &[
            ("1m", MINUTE, 60, 1440),
            ("1h", HOUR, 24, 168),
            ("1d", DAY, 7, 31),
        ],
    )?;
    let group_by = dimension_list(
        &params,
        "group_by",
        &[
            "api_key_id",
            "workspace_id",
            "model",
            "service_tier",
            "prompt_version",
            "schema_version",
        ],
    )?;
    let mut filters = Vec::new();
    for (name, dim) in [
        ("api_key_ids", Dimension::ApiKeyId),
        ("workspace_ids", Dimension::WorkspaceId),
        ("models", Dimension::Model),
        ("service_tiers", Dimension::ServiceTier),
        ("prompt_versions", Dimension::PromptVersion),
        ("schema_versions", Dimension::SchemaVersion),
    ] {
        let values = params.many(name);
        if dim == Dimension::ServiceTier {
            if let Some(bad) = values
                .iter()
                .find(|t| !["standard", "batch", "priority"].contains(&t.as_str()))
            {
                return Err(ApiError::invalid(format!(
                    "service_tiers: `{bad}` is not one of standard, batch, priority"
                )));
            }
        }
        filters.push((dim, values));
    }
    // The registry's dimensions are Missive's own: their fields appear only when asked for.
    let registry_fields = [Dimension::PromptVersion, Dimension::SchemaVersion]
        .into_iter()
        .filter(|d| group_by.contains(d))
        .collect::<Vec<_>>();
    let rows = store(&state)?.usage(&UsageQuery {
        start_ms: window.start_ms,
        end_ms: window.end_ms,
        bucket_ms: window.bucket_ms,
        group_by,
        filters,
    })?;
    let mut results: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for row in rows {
        let mut result = usage_result(&row);
        for dim in &registry_fields {
            let value = match dim {
                Dimension::PromptVersion => &row.prompt_version,
                _ => &row.schema_version,
            };
            result[dim.column()] = value.clone().into();
        }
        results.entry(row.bucket_start_ms).or_default().push(result);
    }
    Ok(Json(buckets(&window, results)))
}

fn usage_result(row: &UsageRow) -> Value {
    let t = &row.tokens;
    json!({
        "uncached_input_tokens": t.uncached_input,
        "cache_creation": {
            "ephemeral_1h_input_tokens": t.cache_creation_1h,
            "ephemeral_5m_input_tokens": t.cache_creation_5m,
        },
        "cache_read_input_tokens": t.cache_read,
        "output_tokens": t.output,
        "server_tool_use": {"web_search_requests": t.web_search_requests},
        "api_key_id": row.api_key_id,
        "workspace_id": row.workspace_id,
        "model": row.model,
        "service_tier": row.service_tier,
        "context_window": null,
        "inference_geo": null,
        "speed": null,
    })
}

/// Cents as the Claude API writes them: a decimal string.
fn amount(cents: f64) -> String {
    let text = format!("{cents:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

fn token_label(token_type: &str) -> &'static str {
    match token_type {
        "uncached_input_tokens" => "Input Tokens",
        "output_tokens" => "Output Tokens",
        "cache_read_input_tokens" => "Cache Read",
        "cache_creation.ephemeral_5m_input_tokens" => "5m Cache Write",
        WEB_SEARCH => "Web Search",
        CODE_EXECUTION => "Code Execution",
        _ => "1h Cache Write",
    }
}

/// What a cost is reported by: workspace, model, service tier, token type.
type CostLine = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<&'static str>,
);

pub async fn cost(State(state): State<AppState>, params: Params) -> Result<Json<Report>, ApiError> {
    let window = window(&params, &[("1d", DAY, 7, 31)])?;
    let mut by_workspace = false;
    let mut by_description = false;
    for g in params.many("group_by") {
        match g.as_str() {
            "workspace_id" => by_workspace = true,
            "description" => by_description = true,
            other => {
                return Err(ApiError::invalid(format!(
                    "group_by: `{other}` is not one of workspace_id, description"
                )))
            }
        }
    }
    let mut group_by = vec![Dimension::Model, Dimension::ServiceTier];
    if by_workspace {
        group_by.push(Dimension::WorkspaceId);
    }
    let rows = store(&state)?.usage(&UsageQuery {
        start_ms: window.start_ms,
        end_ms: window.end_ms,
        bucket_ms: window.bucket_ms,
        group_by,
        filters: vec![],
    })?;
    let prices = state.spend.prices();
    // Bucket → (workspace, model, tier, token type) → cents; description-less reports fold
    // model, tier and token type away.
    let mut totals: BTreeMap<i64, BTreeMap<CostLine, f64>> = BTreeMap::new();
    for row in &rows {
        let model = row.model.clone().unwrap_or_default();
        let tier = row.service_tier.clone().unwrap_or_default();
        let price = prices.price(&model);
        let factor = tier_factor(&tier);
        for (token_type, count, per_mtok) in line_items(&price, &row.tokens) {
            if count == 0 {
                continue;
            }
            let cents = count as f64 * per_mtok / 1e6 * 100.0 * factor;
            let key = if by_description {
                (
                    row.workspace_id.clone(),
                    Some(model.clone()),
                    Some(tier.clone()),
                    Some(token_type),
                )
            } else {
                (row.workspace_id.clone(), None, None, None)
            };
            *totals
                .entry(row.bucket_start_ms)
                .or_default()
                .entry(key)
                .or_default() += cents;
        }
    }
    let results = totals
        .into_iter()
        .map(|(bucket, lines)| {
            let values = lines
                .into_iter()
                .map(|((workspace, model, tier, token_type), cents)| {
                    let description = match (&model, token_type) {
                        (Some(model), Some(t)) => {
                            Some(format!("{model} Usage - {}", token_label(t)))
                        }
                        _ => None,
                    };
                    let cost_type = match token_type {
                        _ if !by_description => None,
                        Some(WEB_SEARCH) => Some("web_search"),
                        Some(CODE_EXECUTION) => Some("code_execution"),
                        _ => Some("tokens"),
                    };
                    let tokens = cost_type == Some("tokens");
                    json!({
                        "amount": amount(cents),
                        "currency": "USD",
                        "cost_type": cost_type,
                        "description": description,
                        "model": model,
                        "service_tier": tier,
                        "token_type": token_type.filter(|_| tokens),
                        "context_window": if by_description { Some("0-200k") } else { None },
                        "workspace_id": if by_workspace { workspace } else { None },
                        "inference_geo": null,
                        "speed": null,
                    })
                })
                .collect();
            (bucket, values)
        })
        .collect();
    Ok(Json(buckets(&window, results)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_cent_strings_without_trailing_zeros() {
        assert_eq!(amount(123.45), "123.45");
        assert_eq!(amount(0.0), "0");
        assert_eq!(amount(1.0), "1");
        assert_eq!(amount(0.0000004), "0");
    }

    #[test]
    fn page_tokens_round_trip() {
        let token = encode_page(DAY * 3);
        let at = decode_page(&token).unwrap();
        assert_eq!(unix_ms(at), DAY * 3);
        assert!(decode_page("nonsense").is_err());
    }
}
