//! From token bytes to content: whole UTF-8 text without stop sequences (`text`), then the
//! model family's tool-call syntax (`tool_calls`). Pure code, tested with split inputs.

pub mod call_stream;
pub mod harmony;
pub mod named_call;
pub mod text;
pub mod tool_calls;
pub mod xml_call;

pub use text::{Step, TextDecoder};
pub use tool_calls::{CallBody, Piece, ToolCallParser};
