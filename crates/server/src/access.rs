//! One structured log line per request (`target: "missive::access"`; JSON with
//! `MISSIVE_LOG_FORMAT=json`): request id, key, workspace, model, tokens, latency, status.
//! Never prompt content. Streamed responses are logged when their body ends or the client
//! goes away, so the line carries the final usage and the full latency. The same moment
//! feeds the per-workspace, per-model metrics.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use futures::StreamExt;

use crate::auth::Principal;

#[derive(Debug, Default, Clone)]
struct Fields {
    key_id: Option<String>,
    workspace: Option<String>,
    workspace_id: Option<String>,
    model: Option<String>,
    upstream: Option<String>,
    prompt_version: Option<String>,
    /// Where the request's row goes, for requests the request log keeps.
    log: Option<crate::request_log::RequestLog>,
    /// The request's content, for a workspace that keeps it.
    capture: Option<crate::capture::Captured>,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation_input_tokens: u64,
}

/// What handlers learn about a request, for its log line.
#[derive(Debug, Clone, Default)]
pub struct AccessSlot(Arc<Mutex<Fields>>);

impl AccessSlot {
    fn update(&self, f: impl FnOnce(&mut Fields)) {
        let mut fields = match self.0.lock() {
            Ok(fields) => fields,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut fields);
    }

    pub fn model(&self, model: &str) {
        self.update(|f| f.model = Some(model.to_owned()));
    }

    pub fn upstream(&self, upstream: &str) {
        self.update(|f| f.upstream = Some(upstream.to_owned()));
    }

    pub fn prompt_version(&self, version: Option<String>) {
        self.update(|f| f.prompt_version = version);
    }

    /// Who is calling, once auth knows; a workspace's requests also go to `log`.
    pub fn principal(&self, principal: &Principal, log: Option<&crate::request_log::RequestLog>) {
        self.update(|f| {
            f.key_id = Some(principal.key_id.clone());
            f.workspace = Some(principal.workspace.clone());
            if !principal.workspace_id.is_empty() {
                f.workspace_id = Some(principal.workspace_id.clone());
                f.log = log.cloned();
            }
        });
    }

    pub fn usage(&self, input: u32, output: u32, cache_read: u32, cache_creation: u32) {
        self.update(|f| {
            f.input_tokens = input.into();
            f.output_tokens = output.into();
            f.cache_read_input_tokens = cache_read.into();
            f.cache_creation_input_tokens = cache_creation.into();
        });
    }

    pub fn capture(&self, captured: crate::capture::Captured) {
        self.update(|f| f.capture = Some(captured));
    }

    fn take_capture(&self) -> Option<crate::capture::Captured> {
        let mut taken = None;
        self.update(|f| taken = f.capture.take());
        taken
    }

    fn snapshot(&self) -> Fields {
        match self.0.lock() {
            Ok(fields) => fields.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Records who is calling, once auth knows.
pub fn note_principal(
    request: &Request,
    principal: &Principal,
    log: Option<&crate::request_log::RequestLog>,
) {
    if let Some(slot) = request.extensions().get::<AccessSlot>() {
        slot.principal(principal, log);
    }
}

struct Line {
    request_id: String,
    method: String,
    path: String,
    status: u16,
    started: Instant,
    slot: AccessSlot,
}

impl Drop for Line {
    fn drop(&mut self) {
        let captured = self.slot.take_capture();
        let f = self.slot.snapshot();
        let latency = self.started.elapsed().as_secs_f64();
        if let (Some(log), Some(workspace_id)) = (&f.log, &f.workspace_id) {
            let latency_ms = (latency * 1000.0) as u64;
            let at_ms = crate::ids::now_ms().saturating_sub(i64::try_from(latency_ms).unwrap_or(0));
            let content = captured.map(|c| c.keep(&self.request_id, workspace_id, at_ms));
            log.record(
                missive_store::RequestLogEntry {
                    request_id: self.request_id.clone(),
                    at_ms,
                    workspace_id: workspace_id.clone(),
                    api_key_id: f.key_id.clone().unwrap_or_default(),
                    method: self.method.clone(),
                    path: self.path.clone(),
                    status: self.status,
                    latency_ms,
                    model: f.model.clone(),
                    upstream: f.upstream.clone(),
                    prompt_version: f.prompt_version.clone(),
                    input_tokens: f.input_tokens,
                    output_tokens: f.output_tokens,
                    cache_read_input_tokens: f.cache_read_input_tokens,
                    cache_creation_input_tokens: f.cache_creation_input_tokens,
                },
                content,
            );
        }
        crate::metrics::request_finished(&self.path, self.status, latency);
        if let (Some(workspace), Some(model)) = (&f.workspace, &f.model) {
            crate::metrics::workspace_request(
                workspace,
                model,
                self.status,
                &[
                    ("input", f.input_tokens),
                    ("output", f.output_tokens),
                    ("cache_read", f.cache_read_input_tokens),
                    ("cache_creation", f.cache_creation_input_tokens),
                ],
            );
        }
        tracing::info!(
            target: "missive::access",
            request_id = %self.request_id,
            method = %self.method,
            path = %self.path,
            status = self.status,
            latency_ms = latency * 1000.0,
            key_id = f.key_id.as_deref().unwrap_or(""),
            workspace = f.workspace.as_deref().unwrap_or(""),
            model = f.model.as_deref().unwrap_or(""),
            input_tokens = f.input_tokens,
            output_tokens = f.output_tokens,
            cache_read_input_tokens = f.cache_read_input_tokens,
            cache_creation_input_tokens = f.cache_creation_input_tokens,
            "request"
        );
    }
}

pub(crate) fn start(request: &mut Request) -> (AccessSlot, Instant) {
    let slot = AccessSlot::default();
    request.extensions_mut().insert(slot.clone());
    (slot, Instant::now())
}

/// Logs now, or when a streamed body ends.
pub(crate) fn finish(
    response: Response,
    request_id: String,
    method: String,
    path: String,
    started: Instant,
    slot: AccessSlot,
) -> Response {
    let line = Line {
        request_id,
        method,
        path,
        status: response.status().as_u16(),
        started,
        slot,
    };
    let streamed = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streamed {
        drop(line);
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held_until_the_stream_ends = &line;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}
