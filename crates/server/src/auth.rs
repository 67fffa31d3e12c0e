//! API key authentication: `x-api-key` or `Authorization: Bearer`. Keys are compared by
//! SHA-256 hash, configured keys in constant time, stored keys by indexed lookup of the
//! hash (which reveals nothing about the secret). Standard keys call the Messages API in
//! their workspace; admin keys call the Admin API and nothing else.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use missive_protocol::ErrorType;
use missive_store::{hash_key, KeyKind, Store, DEFAULT_WORKSPACE_ID};
use subtle::ConstantTimeEq;

use crate::controls::Controls;
use crate::error::ApiError;
use crate::state::AppState;

/// The key id the ledger records for workbench requests an admin runs in the console.
pub const CONSOLE_KEY_ID: &str = "apikey_console";

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub kind: KeyKind,
    /// Empty for admin keys.
    pub workspace_id: String,
    /// The workspace's name, which config (rate and spend limits) refers to.
    pub workspace: String,
}

impl Principal {
    /// Whether the key was given in config or the environment (not in the store).
    pub fn is_configured(&self) -> bool {
        self.key_id.starts_with("apikey_configured_")
    }

    /// The console's workbench acting in a workspace for an admin's session (checked
    /// when the session was).
    pub fn console(workspace_id: &str, workspace: &str) -> Self {
        Self {
            key_id: CONSOLE_KEY_ID.to_owned(),
            kind: KeyKind::Standard,
            workspace_id: workspace_id.to_owned(),
            workspace: workspace.to_owned(),
        }
    }

    /// Whether the console's workbench made the request, for an admin.
    pub fn is_console(&self) -> bool {
        self.key_id == CONSOLE_KEY_ID
    }

    /// A key from config or the environment (and everyone, when auth is off).
    pub fn configured(kind: KeyKind) -> Self {
        let (workspace_id, workspace) = match kind {
            KeyKind::Standard => (DEFAULT_WORKSPACE_ID, "default"),
            KeyKind::Admin => ("", ""),
        };
        Self {
            key_id: format!("apikey_configured_{}", kind.as_str()),
            kind,
            workspace_id: workspace_id.to_owned(),
            workspace: workspace.to_owned(),
        }
    }
}

pub struct Auth {
    /// Hashes of keys given in config or the environment, with their kind.
    configured: Vec<(String, KeyKind)>,
    store: Option<Arc<Controls>>,
    /// Governance off: every request is the default workspace's.
    open: bool,
}

impl Auth {
    pub fn new(configured_keys: &[String], store: Option<Arc<dyn Store>>) -> Self {
        Self {
            configured: configured_keys
                .iter()
                .map(|k| (hash_key(k), KeyKind::Standard))
                .collect(),
            store: store.map(|store| Arc::new(Controls::new(store))),
            open: false,
        }
    }

    /// Adds configured admin keys (`sk-ant-admin01-…`).
    pub fn with_admin_keys(mut self, admin_keys: &[String]) -> Self {
        self.configured
            .extend(admin_keys.iter().map(|k| (hash_key(k), KeyKind::Admin)));
        self
    }

    /// No authentication at all: for measuring what governance costs, never for serving.
    pub fn open() -> Self {
        Self {
            configured: Vec::new(),
            store: None,
            open: true,
        }
    }

    /// Whether a key of this kind is given in config or the environment.
    pub fn has_configured(&self, kind: KeyKind) -> bool {
        self.configured.iter().any(|(_, k)| *k == kind)
    }

    /// The cached view of the store's keys and kill switches, when there is a store.
    pub fn controls(&self) -> Option<&Arc<Controls>> {
        self.store.as_ref()
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        if self.open {
            return Ok(Principal::configured(KeyKind::Standard));
        }
        let Some(secret) = presented_key(headers) else {
            return Err(ApiError::unauthenticated("x-api-key header is required"));
        };
        let hash = hash_key(secret);
        // Check every configured key, so the time taken does not depend on which matched.
        let mut matched = None;
        for (known, kind) in &self.configured {
            if bool::from(known.as_bytes().ct_eq(hash.as_bytes())) {
                matched = Some(*kind);
            }
        }
        if let Some(kind) = matched {
            return Ok(Principal::configured(kind));
        }
        if let Some(store) = &self.store {
            if let Some(key) = store.find_key(&hash)? {
                if key.usable() {
                    return Ok(Principal {
                        key_id: key.id,
                        kind: key.kind,
                        workspace_id: key.workspace_id.unwrap_or_default(),
                        workspace: key.workspace_name.unwrap_or_default(),
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

async fn authenticate_as(
    state: &AppState,
    wanted: KeyKind,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match state.auth.authenticate(request.headers()) {
        Ok(principal) => principal,
        Err(err) => return err.into_response(),
    };
    if principal.kind != wanted {
        let message = match wanted {
            KeyKind::Admin => "This endpoint requires an admin API key (sk-ant-admin01-…); the key used is a workspace API key.",
            KeyKind::Standard => "Admin API keys can only call the Admin API (/v1/organizations/…); use a workspace API key for this endpoint.",
        };
        return ApiError::new(ErrorType::PermissionError, message).into_response();
    }
    if let Err(err) = check_selectors(request.headers(), &principal) {
        return err.into_response();
    }
    crate::access::note_principal(&request, &principal, state.request_log.as_ref());
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The SDKs' `workspace_id` and `user_profile_id` arguments travel as headers. A key here
/// belongs to one workspace, so naming another is refused rather than ignored; there are
/// no user profiles to act for.
fn check_selectors(headers: &HeaderMap, principal: &Principal) -> Result<(), ApiError> {
    if let Some(named) = headers
        .get("anthropic-workspace-id")
        .and_then(|v| v.to_str().ok())
    {
        if !principal.is_configured() && named != principal.workspace_id {
            return Err(ApiError::new(
                ErrorType::PermissionError,
                format!(
                    "anthropic-workspace-id: this API key belongs to workspace `{}`, not `{named}`",
                    principal.workspace_id
                ),
            ));
        }
    }
    if headers.contains_key("anthropic-user-profile-id") {
        return Err(ApiError::invalid(
            "anthropic-user-profile-id: user profiles are not supported on this server",
        ));
    }
    Ok(())
}

/// The Messages API and everything beside it: workspace keys.
pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    authenticate_as(&state, KeyKind::Standard, request, next).await
}

/// The registry (`/v1/missive/…`): a workspace key manages its own workspace's entries; an
/// admin key manages the workspace it names in `anthropic-workspace-id`.
pub async fn registry_middleware(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let principal = match state.auth.authenticate(request.headers()) {
        Ok(principal) => principal,
        Err(err) => return err.into_response(),
    };
    if principal.kind != KeyKind::Admin {
        return authenticate_as(&state, KeyKind::Standard, request, next).await;
    }
    match admin_in_workspace(&state, request.headers(), principal) {
        Ok(principal) => {
            let mut request = request;
            crate::access::note_principal(&request, &principal, None);
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(err) => err.into_response(),
    }
}

/// An admin key acting in the workspace its request names.
fn admin_in_workspace(
    state: &AppState,
    headers: &HeaderMap,
    admin: Principal,
) -> Result<Principal, ApiError> {
    let named = headers
        .get("anthropic-workspace-id")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::invalid(
                "anthropic-workspace-id: an admin key names the workspace whose registry it manages",
            )
        })?;
    let workspace = state
        .store
        .as_deref()
        .map(|store| store.workspace(named))
        .transpose()?
        .flatten()
        .filter(|w| w.archived_at.is_none())
        .ok_or_else(|| ApiError::not_found(format!("workspace {named} not found")))?;
    Ok(Principal {
        workspace_id: workspace.id,
        workspace: workspace.name,
        ..admin
    })
}

/// The Admin API: admin keys only.
pub async fn admin_middleware(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    authenticate_as(&state, KeyKind::Admin, request, next).await
}
