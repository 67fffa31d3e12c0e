//! Models served by other servers, behind the same `Backend` trait as the embedded engine:
//! [`openai::OpenAiBackend`] speaks to any OpenAI-compatible chat-completions server (vLLM,
//! SGLang, llama-server, Ollama), translating the Claude API both ways;
//! [`anthropic::AnthropicBackend`] forwards to the Claude API (or another Anthropic-compatible
//! server) with the operator's key; [`chain::Chain`]
//! puts several upstreams of one model behind retries, fallback and circuit breakers.

pub mod anthropic;
pub mod breaker;
pub mod chain;
pub mod openai;
mod sse;
mod translate;

use std::time::Duration;

use missive_backend::{BackendError, Sampling};
use serde_json::{json, Map, Value};

/// Where an upstream is and how to reach it, whatever API it speaks.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The upstream's name in config, for errors and metrics.
    pub name: String,
    /// OpenAI-compatible: up to and including `/v1`; Anthropic: the server's root.
    pub base_url: String,
    /// The model name the upstream knows.
    pub model: String,
    pub api_key: Option<String>,
    pub connect_timeout: Duration,
    /// Until the response headers arrive; past it the request moves to the next upstream.
    pub first_byte_timeout: Option<Duration>,
}

impl UpstreamConfig {
    fn client(&self) -> Result<reqwest::Client, BackendError> {
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            // Across hosts reqwest drops only `authorization` and cookies: a followed redirect
            // would send the operator's `x-api-key` wherever it pointed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BackendError::Generation(e.to_string()))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url.trim_end_matches('/'))
    }

    /// Sends `call` as [`send_within`] does, and turns a non-2xx answer into the
    /// upstream's error, with its message and `retry-after`.
    async fn send(&self, call: reqwest::RequestBuilder) -> Result<reqwest::Response, BackendError> {
        let response = send_within(call, self.first_byte_timeout, &self.name).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or(text);
        Err(BackendError::Upstream {
            upstream: self.name.clone(),
            status,
            message,
            retry_after,
        })
    }
}

/// Sends `call`, waiting at most `limit` for the response headers. Unreachable: status 0;
/// too slow: 408; both move a chain to its next upstream.
async fn send_within(
    call: reqwest::RequestBuilder,
    limit: Option<Duration>,
    upstream: &str,
) -> Result<reqwest::Response, BackendError> {
    let failed = |status: u16, message: String| BackendError::Upstream {
        upstream: upstream.to_owned(),
        status,
        message,
        retry_after: None,
    };
    let sent = match limit {
        Some(limit) => tokio::time::timeout(limit, call.send())
            .await
            .map_err(|_| failed(408, format!("no answer within {} ms", limit.as_millis())))?,
        None => call.send().await,
    };
    sent.map_err(|e| failed(0, format!("unreachable: {e}")))
}

/// Puts the sampling parameters that were given into an upstream request body: both APIs
/// name them alike (`top_k` is not OpenAI's, but vLLM, SGLang and llama-server take it).
pub(crate) fn insert_sampling(body: &mut Map<String, Value>, sampling: &Sampling) {
    if let Some(t) = sampling.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = sampling.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(k) = sampling.top_k {
        body.insert("top_k".into(), json!(k));
    }
}
