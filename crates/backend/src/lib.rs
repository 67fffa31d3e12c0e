//! The seam between the server and whatever runs a model.
//!
//! Owns the [`Backend`] trait, the normalised [`GenerateRequest`] (the Claude API's own
//! shape, with turns merged and the prefill split out) and the [`BackendEvent`]s a
//! generation yields. The server depends on this crate and never on an implementation,
//! so its tests build without llama.cpp; `scripted` provides a deterministic backend
//! for tests of our own code.

pub mod answer;
pub mod client_tools;
pub mod context_edits;
mod error;
mod event;
pub mod history;
pub mod reasoning;
mod request;
#[cfg(feature = "scripted")]
pub mod scripted;

use std::pin::Pin;

use futures::Stream;
use missive_protocol::models::ModelCapabilities;

pub mod served_by;

pub use error::BackendError;
pub use event::{BackendEvent, FinishReason, PromptUsage, ServerToolRun};
pub use request::{GenerateRequest, Priority, Sampling, Turn};

/// The events of one generation, ended by [`BackendEvent::Finished`] or an error.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<BackendEvent, BackendError>> + Send>>;

/// What a backend tells the world about the model it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDescriptor {
    pub id: String,
    pub display_name: String,
    /// RFC 3339; the model file's date when nothing better is known.
    pub created_at: String,
    /// Tokens the prompt may use (the context window).
    pub max_input_tokens: u32,
    /// Tokens one reply may use.
    pub max_output_tokens: u32,
    pub capabilities: ModelCapabilities,
    /// The backend runs server tools itself (a Claude API upstream): they, their blocks and
    /// `mcp_servers` pass through. Otherwise the server runs them.
    pub runs_server_tools: bool,
}

/// Runs a model. Implementations: the embedded engine, a scripted backend for tests,
/// later upstream providers.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    fn descriptor(&self) -> &ModelDescriptor;

    /// Exactly the number of prompt tokens `generate` would report for this request.
    async fn count_tokens(&self, request: &GenerateRequest) -> Result<u32, BackendError>;

    /// Starts a generation. Errors known before any output (prompt too long, overload,
    /// unsupported input) are returned here, so they can become an HTTP status. Dropping
    /// the stream cancels the generation.
    async fn generate(&self, request: GenerateRequest) -> Result<EventStream, BackendError>;
}
