//! `GET /health` (liveness: the process answers) and `GET /ready` (readiness: what a
//! request needs is reachable), for load balancers in front of several replicas. Neither
//! takes a key, so neither says more than which check failed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::state::AppState;

pub async fn health() -> &'static str {
    "ok"
}

/// 200 when the store (and Redis, when configured) answers and at least one model is
/// served; 503 naming the failing checks otherwise.
pub async fn ready(State(state): State<AppState>) -> Response {
    let mut checks = Map::new();
    if let Some(store) = state.store.clone() {
        let answered = tokio::task::spawn_blocking(move || store.organization().is_ok())
            .await
            .unwrap_or(false);
        checks.insert("store".into(), status(answered));
    }
    if let Some(shared) = state.shared.clone() {
        let answered = tokio::task::spawn_blocking(move || shared.redis.ping().is_ok())
            .await
            .unwrap_or(false);
        checks.insert("redis".into(), status(answered));
    }
    checks.insert("models".into(), status(!state.models.models().is_empty()));
    let ready = checks.values().all(|v| v == "ok");
    let body =
        Json(json!({"status": if ready { "ready" } else { "unavailable" }, "checks": checks}));
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body).into_response()
}

fn status(ok: bool) -> Value {
    Value::from(if ok { "ok" } else { "failing" })
}
