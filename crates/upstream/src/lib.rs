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
