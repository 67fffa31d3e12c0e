//! What a batch request's result line holds, shaped as the Claude API shapes it. The
//! batch routes and the batch worker both write these.

use missive_protocol::ErrorType;
use serde_json::json;

/// The `errored` result of a request refused before or while it ran.
pub fn errored(error_type: ErrorType, message: &str) -> String {
    json!({
        "type": "errored",
        "error": {
            "type": "error",
            "error": {"type": error_type.as_str(), "message": message},
            "request_id": crate::request_id::current(),
        },
    })
    .to_string()
}

/// The `succeeded` result of a request: its message.
pub fn succeeded(message: &missive_protocol::Message) -> String {
    json!({"type": "succeeded", "message": message}).to_string()
}
