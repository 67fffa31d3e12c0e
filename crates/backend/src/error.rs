use thiserror::Error;

/// Why a backend could not serve a request, in the backend's terms.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BackendError {
    #[error("prompt is too long: {tokens} tokens > {max} maximum")]
    PromptTooLong { tokens: u32, max: u32 },
    /// The request asks for something this model cannot do (images on a text-only model).
    #[error("{0}")]
    Unsupported(String),
    /// The request is inconsistent in a way only the backend can see.
    #[error("{0}")]
    InvalidRequest(String),
    /// The model cannot take the request now; `retry_after_s` is when it expects to.
    #[error("the model's queue is full")]
    QueueFull { retry_after_s: u64 },
    #[error("the model is shutting down")]
    ShuttingDown,
    #[error("generation failed: {0}")]
    Generation(String),
    /// An upstream server refused or failed the request before answering. `status` 0: it
    /// could not be reached.
    #[error("upstream `{upstream}` answered {status}: {message}")]
    Upstream {
        upstream: String,
        status: u16,
        message: String,
        retry_after: Option<u64>,
    },
}

impl BackendError {
    /// Whether another upstream (or a later try) might succeed: unreachable, overloaded or
    /// failing servers; never a request the server judged wrong.
    pub fn is_retryable(&self) -> bool {
        match self {
            BackendError::Upstream { status, .. } => {
                matches!(status, 0 | 408 | 409 | 429) || *status >= 500
            }
            BackendError::QueueFull { .. } | BackendError::ShuttingDown => true,
            _ => false,
        }
    }
}
