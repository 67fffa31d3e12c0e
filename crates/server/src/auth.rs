//! API key authentication: `x-api-key` or `Authorization: Bearer`. Keys are compared by
//! SHA-256 hash, configured keys in constant time, stored keys by indexed lookup of the
//! hash (which reveals nothing about the secret).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use missive_store::{hash_key, KeyStatus, Store};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub workspace: String,
}

pub struct Auth {
    /// Hashes of keys given in config or `MISSIVE_API_KEY`.
    configured: Vec<String>,
    store: Option<Arc<dyn Store>>,
}

impl Auth {
    pub fn new(configured_keys: &[String], store: Option<Arc<dyn Store>>) -> Self {
        Self {
            configured: configured_keys.iter().map(|k| hash_key(k)).collect(),
            store,
        }
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let Some(secret) = presented_key(headers) else {
            return Err(ApiError::unauthenticated("x-api-key header is required"));
        };
        let hash = hash_key(secret);
        // Check every configured key, so the time taken does not depend on which matched.
        let configured = self
            .configured
            .iter()
            .fold(subtle::Choice::from(0), |acc, known| {
                acc | known.as_bytes().ct_eq(hash.as_bytes())
            });
        if bool::from(configured) {
            return Ok(Principal {
                key_id: "apikey_configured".to_owned(),
                workspace: "default".to_owned(),
            });
        }
        if let Some(store) = &self.store {
            if let Some(key) = store.find_api_key(&hash)? {
                if key.status == KeyStatus::Active {
                    return Ok(Principal {
                        key_id: key.id,
                        workspace: key.workspace,
                    });
                }
            }
        }
        Err(ApiError::unauthenticated("invalid x-api-key"))
    }
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim());
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

pub async fn middleware(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match state.auth.authenticate(request.headers()) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(err) => err.into_response(),
    }
}
