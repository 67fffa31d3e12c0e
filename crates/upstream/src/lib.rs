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

/// Sends `call`, waiting at most `limit` for the response headers. Unreachable: status 0;
/// too slow: 408; both move a chain to its next upstream.
async fn send_within(
    call: reqwest::RequestBuilder,
    limit: Option<std::time::Duration>,
    upstream: &str,
) -> Result<reqwest::Response, missive_backend::BackendError> {
    let failed = |status: u16, message: String| missive_backend::BackendError::Upstream {
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
