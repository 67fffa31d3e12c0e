//! `GET /metrics`: every metric of the process (HTTP, engine, cache) in the Prometheus
//! text format, from one recorder installed on first use.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed once (several servers in one test process share it).
/// `None` when another recorder was installed first.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ];
            PrometheusBuilder::new()
                // Several replicas behind one Prometheus: every series says whose it is.
                .add_global_label("replica", replica())
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .ok()?
                .install_recorder()
                .map_err(|err| tracing::warn!(error = %err, "metrics recorder not installed"))
                .ok()
        })
        .clone()
}

/// This replica's name (in metrics, and on the batch requests it leases): `MISSIVE_REPLICA`,
/// else the host's name. Replicas on one host need distinct names.
pub fn replica() -> String {
    std::env::var("MISSIVE_REPLICA")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "missive".to_owned())
}

pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let body = state
        .metrics
        .as_ref()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// One finished HTTP request.
pub fn request_finished(path: &str, status: u16, seconds: f64) {
    // Label by route family, not raw path: ids in paths would explode the series.
    let route = if path.starts_with("/v1/messages/count_tokens") {
        "count_tokens"
    } else if path.starts_with("/v1/messages") {
        "messages"
    } else if path.starts_with("/v1/models") {
        "models"
    } else {
        "other"
    };
    metrics::counter!("missive_http_requests_total", "route" => route, "status" => status.to_string())
        .increment(1);
    metrics::histogram!("missive_http_request_duration_seconds", "route" => route).record(seconds);
}

/// One finished request of a workspace on a model, with the tokens it used.
pub fn workspace_request(
    workspace: &str,
    model: &str,
    status: u16,
    tokens: &[(&'static str, u64)],
) {
    let workspace = workspace.to_owned();
    let model = model.to_owned();
    metrics::counter!(
        "missive_workspace_requests_total",
        "workspace" => workspace.clone(),
        "model" => model.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    for (kind, count) in tokens {
        if *count > 0 {
            metrics::counter!(
                "missive_workspace_tokens_total",
                "workspace" => workspace.clone(),
                "model" => model.clone(),
                "type" => *kind
            )
            .increment(*count);
        }
    }
}
