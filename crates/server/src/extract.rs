//! `JsonBody`: a request body that claims to be JSON and fits the size limit. Parsing into
//! protocol types happens in the handler, so every failure gets the Claude error envelope.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};

use crate::error::ApiError;
use missive_protocol::ErrorType;

/// A role a body names, one of `allowed`, or a 400 naming the field and the roles.
pub fn check_role(field: &str, role: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&role) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{field}: `{role}` is not one of {}",
            allowed.join(", ")
        )))
    }
}

/// The Claude API's cap on Messages and count_tokens bodies.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

pub struct JsonBody(pub Bytes);

/// A JSON body as a typed request, with the Claude API's 400 on a bad shape.
pub fn parse_json<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(raw).map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorType::RequestTooLarge,
        format!("Request exceeds the maximum allowed number of bytes ({MAX_BODY_BYTES})"),
    )
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" && !mime.ends_with("+json") {
            return Err(ApiError::invalid(format!(
                "Content-Type must be application/json (got `{content_type}`)"
            )));
        }
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
            return Err(too_large());
        }
        let body = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| too_large())?;
        Ok(JsonBody(body))
    }
}
