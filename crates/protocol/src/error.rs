//! The error-type table: every `error.type` the Claude API sends, its HTTP status, and the
//! envelope `{"type":"error","error":{"type","message"},"request_id"}`.

use serde::{Deserialize, Serialize};

/// One row per Claude API error type. `status` and `as_str` below are the single place to
/// check wire-exactness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    BillingError,
    PermissionError,
    NotFoundError,
    RequestTooLarge,
    RateLimitError,
    ApiError,
    TimeoutError,
    OverloadedError,
}

impl ErrorType {
    /// The HTTP status the Claude API answers this error type with.
    pub fn status(self) -> u16 {
        match self {
            ErrorType::InvalidRequestError => 400,
            ErrorType::AuthenticationError => 401,
            ErrorType::BillingError => 402,
            ErrorType::PermissionError => 403,
            ErrorType::NotFoundError => 404,
            ErrorType::RequestTooLarge => 413,
            ErrorType::RateLimitError => 429,
            ErrorType::ApiError => 500,
            ErrorType::TimeoutError => 504,
            ErrorType::OverloadedError => 529,
        }
    }

    /// The wire string in `error.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequestError => "invalid_request_error",
            ErrorType::AuthenticationError => "authentication_error",
            ErrorType::BillingError => "billing_error",
            ErrorType::PermissionError => "permission_error",
            ErrorType::NotFoundError => "not_found_error",
            ErrorType::RequestTooLarge => "request_too_large",
            ErrorType::RateLimitError => "rate_limit_error",
            ErrorType::ApiError => "api_error",
            ErrorType::TimeoutError => "timeout_error",
            ErrorType::OverloadedError => "overloaded_error",
        }
    }
}

/// The `error` object inside the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub error_type: ErrorType,
    pub message: String,
}

/// The whole error envelope, used for non-2xx bodies and SSE `error` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: ErrorEnvelopeTag,
    pub error: ErrorDetail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The constant `"error"` tag of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorEnvelopeTag {
    #[default]
    Error,
}

impl ErrorBody {
    pub fn new(
        error_type: ErrorType,
        message: impl Into<String>,
        request_id: Option<String>,
    ) -> Self {
        Self {
            kind: ErrorEnvelopeTag::Error,
            error: ErrorDetail {
                error_type,
                message: message.into(),
            },
            request_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_string_matches_serde_name_for_every_type() {
        let all = [
            ErrorType::InvalidRequestError,
            ErrorType::AuthenticationError,
            ErrorType::BillingError,
            ErrorType::PermissionError,
            ErrorType::NotFoundError,
            ErrorType::RequestTooLarge,
            ErrorType::RateLimitError,
            ErrorType::ApiError,
            ErrorType::TimeoutError,
            ErrorType::OverloadedError,
        ];
        for t in all {
            let json = serde_json::to_value(t).unwrap();
            assert_eq!(json, serde_json::Value::String(t.as_str().to_owned()));
        }
    }

    #[test]
    fn envelope_has_type_error_message_and_request_id() {
        let body = ErrorBody::new(ErrorType::NotFoundError, "model: x", Some("req_1".into()));
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","error":{"type":"not_found_error","message":"model: x"},"request_id":"req_1"})
        );
    }
}
