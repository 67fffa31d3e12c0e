//! Message Batches: create, retrieve, list (newest first), cancel, delete, results as JSONL.
//! Requests run in the background ([`crate::batch_worker`]); a batch belongs to the
//! creating key's workspace, and any other workspace gets 404.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use missive_protocol::ErrorType;
use missive_store::{Batch, NewBatchRequest, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::batch_results::errored;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::params::{rfc3339_ms, Params};
use crate::state::AppState;

pub const MAX_REQUESTS: usize = 100_000;
pub const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Results are kept 29 days, then the batch is archived.
const RESULTS_KEPT_MS: i64 = 29 * DAY_MS;

#[derive(Serialize)]
pub struct BatchView {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    processing_status: &'static str,
    request_counts: Value,
    created_at: String,
    expires_at: String,
    ended_at: Option<String>,
    cancel_initiated_at: Option<String>,
    archived_at: Option<String>,
    results_url: Option<String>,
}

/// This server's own address as the client reached it, for `results_url`.
/// The configured public URL, or the request's `Host` (when it is a plain host and
/// port) over the scheme a proxy says it was reached by.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.public_url {
        return url.clone();
    }
    let header = |name: &str| headers.get(name).and_then(|h| h.to_str().ok());
    let Some(host) = header(HOST.as_str()).filter(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    }) else {
        return String::new();
    };
    let scheme = match header("x-forwarded-proto").map(str::trim) {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

fn view(batch: Batch, base: &str) -> BatchView {
    let status = match (batch.ended_at_ms, batch.cancel_initiated_ms) {
        (Some(_), _) => "ended",
        (None, Some(_)) => "canceling",
        (None, None) => "in_progress",
    };
    let c = batch.counts;
    let archived = (crate::ids::now_ms() >= batch.created_at_ms + RESULTS_KEPT_MS)
        .then(|| rfc3339_ms(batch.created_at_ms + RESULTS_KEPT_MS));
    BatchView {
        results_url: batch
            .ended_at_ms
            .map(|_| format!("{base}/v1/messages/batches/{}/results", batch.id)),
        id: batch.id,
        kind: "message_batch",
        processing_status: status,
        request_counts: json!({
            "processing": c.processing,
            "succeeded": c.succeeded,
            "errored": c.errored,
            "canceled": c.canceled,
            "expired": c.expired,
        }),
        created_at: rfc3339_ms(batch.created_at_ms),
        expires_at: rfc3339_ms(batch.expires_at_ms),
        ended_at: batch.ended_at_ms.map(rfc3339_ms),
        cancel_initiated_at: batch.cancel_initiated_ms.map(rfc3339_ms),
        archived_at: archived,
    }
}

fn store(state: &AppState) -> Result<&std::sync::Arc<dyn Store>, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        ApiError::not_found("Message Batches need a store; this server runs without one")
    })
}

fn find(state: &AppState, principal: &Principal, id: &str) -> Result<Batch, ApiError> {
    store(state)?
        .batch(&principal.workspace_id, id)?
        .ok_or_else(|| ApiError::not_found(format!("message batch {id} not found")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    requests: Vec<RequestItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestItem {
    custom_id: String,
    params: Value,
}

fn valid_custom_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(raw): JsonBody,
) -> Result<Json<BatchView>, ApiError> {
    if raw.len() > MAX_BATCH_BYTES {
        return Err(ApiError::new(
            ErrorType::RequestTooLarge,
            format!("a batch may be at most {MAX_BATCH_BYTES} bytes"),
        ));
    }
    let body: CreateBody = crate::extract::parse_json(&raw)?;
    if body.requests.is_empty() || body.requests.len() > MAX_REQUESTS {
        return Err(ApiError::invalid(format!(
            "requests: must hold 1 to {MAX_REQUESTS} requests (got {})",
            body.requests.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut requests = Vec::with_capacity(body.requests.len());
    for (i, item) in body.requests.into_iter().enumerate() {
        if !valid_custom_id(&item.custom_id) {
            return Err(ApiError::invalid(format!(
                "requests.{i}.custom_id: `{}` must be 1 to 64 characters of letters, digits, `_` and `-`",
                item.custom_id
            )));
        }
        if !seen.insert(item.custom_id.clone()) {
            return Err(ApiError::invalid(format!(
                "requests.{i}.custom_id: `{}` is used more than once in this batch",
                item.custom_id
            )));
        }
        let params = item.params.to_string();
        // A request the Messages API would refuse is refused alone: an `errored` result,
        // not a failed batch.
        let refused = match missive_protocol::parse_messages_request(params.as_bytes()) {
            Err(err) => Some(errored(ErrorType::InvalidRequestError, &err.0)),
            Ok(parsed) if parsed.stream == Some(true) => Some(errored(
                ErrorType::InvalidRequestError,
                "stream: streaming is not supported inside a batch",
            )),
            Ok(_) => None,
        };
        requests.push(NewBatchRequest {
            custom_id: item.custom_id,
            params,
            refused,
        });
    }
    let expires = crate::ids::now_ms() + DAY_MS;
    let batch = store(&state)?.create_batch(
        &principal.workspace_id,
        &principal.key_id,
        expires,
        &requests,
    )?;
    state.batches.notify_one();
    Ok(Json(view(batch, &base_url(&state, &headers))))
}

pub async fn retrieve(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<BatchView>, ApiError> {
    Ok(Json(view(
        find(&state, &principal, &id)?,
        &base_url(&state, &headers),
    )))
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<missive_protocol::models::Page<BatchView>>, ApiError> {
    let limit = params.int("limit", 1, 1000, 20)?;
    let base = base_url(&state, &headers);
    let views: Vec<BatchView> = store(&state)?
        .list_batches(&principal.workspace_id)?
        .into_iter()
        .map(|b| view(b, &base))
        .collect();
    Ok(Json(missive_protocol::models::Page::paginate(
        views,
        |b| b.id.as_str(),
        limit,
        params.one("after_id"),
        params.one("before_id"),
    )))
}

pub async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<BatchView>, ApiError> {
    find(&state, &principal, &id)?;
    let batch = store(&state)?.cancel_batch(&principal.workspace_id, &id)?;
    state.batches.notify_one();
    Ok(Json(view(batch, &base_url(&state, &headers))))
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    find(&state, &principal, &id)?;
    store(&state)?.delete_batch(&principal.workspace_id, &id)?;
    Ok(Json(json!({"id": id, "type": "message_batch_deleted"})))
}

/// Results are read from the store a page at a time as the body streams.
const RESULTS_PAGE: usize = 256;

pub async fn results(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let batch = find(&state, &principal, &id)?;
    if batch.ended_at_ms.is_none() {
        return Err(ApiError::invalid(format!(
            "message batch {id} has not ended yet; its results are available once processing_status is `ended`"
        )));
    }
    let store = store(&state)?.clone();
    let lines = futures::stream::unfold(Some(-1_i64), move |after| {
        let store = store.clone();
        let id = id.clone();
        async move {
            let after = after?;
            match store.batch_results(&id, after, RESULTS_PAGE) {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let last = page.last().map_or(after, |r| r.idx);
                    let mut text = String::new();
                    for r in page {
                        let custom_id = Value::String(r.custom_id).to_string();
                        text.push_str(&format!(
                            "{{\"custom_id\":{custom_id},\"result\":{}}}\n",
                            r.result
                        ));
                    }
                    Some((Ok::<_, std::io::Error>(Bytes::from(text)), Some(last)))
                }
                Err(err) => {
                    tracing::error!(error = %err, "reading batch results");
                    Some((Err(std::io::Error::other(err.to_string())), None))
                }
            }
        }
    });
    Ok((
        [(CONTENT_TYPE, "application/x-jsonl")],
        Body::from_stream(lines),
    )
        .into_response())
}
