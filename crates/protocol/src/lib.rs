//! The Claude API's wire format, as the official SDKs see it.
//!
//! This crate owns the serde types for requests (every field of the SDKs' request types is
//! known, and any other is refused by name; old and new spellings are both accepted), responses and stream events (strict: every field the
//! SDKs require is always written), the error-type table, and request validation.
//! It performs no IO and knows nothing about models, HTTP servers or storage.

pub mod content;
pub mod context;
pub mod error;
pub mod ids;
pub mod messages;
pub mod models;
pub mod parse;
pub mod stream;
pub mod tools;
pub mod usage;
pub mod walk;

pub use content::{ContentBlock, ContentBlockParam};
pub use error::{ErrorBody, ErrorDetail, ErrorType};
pub use messages::{
    CountTokensRequest, CountTokensResponse, Message, MessageContent, MessageParam,
    MessagesRequest, Role, StopReason, SystemPrompt,
};
pub use parse::{parse_count_tokens_request, parse_messages_request, RequestError};
pub use stream::{ContentBlockDelta, MessageDelta, StreamEvent};
pub use usage::{CacheCreation, MessageDeltaUsage, ServiceTier, Usage};
