//! `ApiError`: the one error type handlers return. Only this crate maps failures to the
//! Claude API's error taxonomy; each library error converts here with an exhaustive match,
//! so a new variant forces a decision.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use missive_backend::BackendError;
use missive_protocol::{ErrorBody, ErrorType, RequestError};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub error_type: ErrorType,
    pub message: String,
    /// Seconds a client should wait before retrying (429, 529).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(error_type: ErrorType, message: impl Into<String>) -> Self {
        Self {
            error_type,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorType::InvalidRequestError, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorType::NotFoundError, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorType::AuthenticationError, message)
    }

    /// A 5xx whose details are logged here, not sent: the client learns only that it failed.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(request_id = ?crate::request_id::current(), %detail, "internal error");
        Self::new(ErrorType::ApiError, "Internal server error")
    }

    /// The envelope, with the current request's id.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(
            self.error_type,
            self.message.clone(),
            crate::request_id::current(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.error_type.status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        response
    }
}

impl From<RequestError> for ApiError {
    fn from(err: RequestError) -> Self {
        ApiError::invalid(err.0)
    }
}

impl From<BackendError> for ApiError {
    fn from(err: BackendError) -> Self {
        match err {
            BackendError::PromptTooLong { .. }
            | BackendError::Unsupported(_)
            | BackendError::InvalidRequest(_) => ApiError::invalid(err.to_string()),
            BackendError::QueueFull { retry_after_s } => ApiError {
                retry_after: Some(retry_after_s.max(1)),
                ..ApiError::new(ErrorType::OverloadedError, "Overloaded")
            },
            BackendError::ShuttingDown => ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    ErrorType::OverloadedError,
                    "Overloaded: the model is shutting down",
                )
            },
            BackendError::Generation(detail) => ApiError::internal(detail),
            BackendError::Upstream {
                upstream,
                status,
                message,
                retry_after,
            } => {
                // The client sees what it can act on; an upstream's auth or server trouble
                // is the operator's, reported as Missive's own failure.
                let (error_type, text) = match status {
                    400 | 404 | 413 | 422 => (
                        ErrorType::InvalidRequestError,
                        format!("upstream `{upstream}` refused the request: {message}"),
                    ),
                    429 => (
                        ErrorType::RateLimitError,
                        format!("upstream `{upstream}` is rate limited: {message}"),
                    ),
                    408 | 504 => (
                        ErrorType::TimeoutError,
                        format!("upstream `{upstream}` timed out"),
                    ),
                    0 | 502 | 503 | 529 => (
                        ErrorType::OverloadedError,
                        format!("upstream `{upstream}` is unavailable: {message}"),
                    ),
                    _ => {
                        tracing::error!(%upstream, status, %message, "upstream failed");
                        (ErrorType::ApiError, format!("upstream `{upstream}` failed"))
                    }
                };
                ApiError {
                    retry_after: retry_after.or(matches!(
                        error_type,
                        ErrorType::RateLimitError | ErrorType::OverloadedError
                    )
                    .then_some(1)),
                    ..ApiError::new(error_type, text)
                }
            }
        }
    }
}

impl From<missive_store::Error> for ApiError {
    fn from(err: missive_store::Error) -> Self {
        match err {
            missive_store::Error::NotFound { kind, id } => {
                ApiError::not_found(format!("{kind} {id} not found"))
            }
            missive_store::Error::Conflict(message) => ApiError::invalid(message),
            missive_store::Error::Database(_)
            | missive_store::Error::Postgres(_)
            | missive_store::Error::Pool(_)
            | missive_store::Error::Runtime(_)
            | missive_store::Error::Stopped
            | missive_store::Error::DataDir { .. }
            | missive_store::Error::Poisoned => ApiError::internal(err),
        }
    }
}
