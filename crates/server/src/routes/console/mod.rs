//! `/console`: the operator's web console, served by the binary itself. The page and its
//! script are embedded (nothing from a CDN); they call the JSON endpoints below with the
//! session cookie (see `crate::console_session`), never with a key.
//!
//! An admin session sees and changes the whole organization. A session opened with a
//! workspace key sees its own workspace only, and changes nothing but that workspace's
//! registry.

mod members;
mod organization;
mod sign_in;
mod traffic;
mod workspace;

use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use missive_protocol::ErrorType;
use missive_store::{AuditEntry, KeyKind, Store};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::Principal;
use crate::console_session::{self, Session};
use crate::error::ApiError;
use crate::state::AppState;

const PAGE: &str = include_str!("../../../console/index.html");
const SCRIPT: &str = include_str!("../../../console/console.js");
const STYLE: &str = include_str!("../../../console/console.css");

/// Scripts from this origin only, no inline code, no framing.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(style))
        .route("/console/session", post(sign_in::sign_in))
        .route("/console/sign-in-options", get(sign_in::sign_in_options))
        .route("/console/oidc/login", get(sign_in::oidc_login))
        .route("/console/oidc/callback", get(sign_in::oidc_callback))
        .route("/console/api/session", get(sign_in::session))
        .route("/console/api/session/end", post(sign_in::sign_out))
        .route(
            "/console/api/session/workspace",
            post(sign_in::choose_workspace),
        )
        .route(
            "/console/api/workspaces",
            get(organization::workspaces).post(organization::create_workspace),
        )
        .route(
            "/console/api/workspaces/{workspace_id}/limits",
            post(organization::set_limits),
        )
        .route(
            "/console/api/users",
            get(members::users).post(members::add_user),
        )
        .route(
            "/console/api/workspaces/{workspace_id}/members",
            get(members::members).post(members::set_member),
        )
        .route(
            "/console/api/workspaces/{workspace_id}/members/{user_id}/remove",
            post(members::remove_member),
        )
        .route(
            "/console/api/keys",
            get(organization::keys).post(organization::create_key),
        )
        .route("/console/api/keys/{key_id}", post(organization::update_key))
        .route(
            "/console/api/kill_switches",
            get(organization::kill_switches).post(organization::set_kill_switch),
        )
        .route("/console/api/usage", get(traffic::usage))
        .route("/console/api/requests", get(traffic::requests))
        .route(
            "/console/api/requests/{request_id}/content",
            get(traffic::request_content),
        )
        .route("/console/api/audit", get(organization::audit_log))
        .route("/console/api/models", get(workspace::models))
        .route("/console/api/batches", get(workspace::batches))
        .route(
            "/console/api/batches/{batch_id}/cancel",
            post(workspace::cancel_batch),
        )
        .route(
            "/console/api/batches/{batch_id}/results",
            get(workspace::batch_results),
        )
        .route("/console/api/files", get(workspace::files))
        .route(
            "/console/api/files/{file_id}/delete",
            post(workspace::delete_file),
        )
        .route("/console/api/messages", post(workspace::workbench))
        .route(
            "/console/api/registry/{kind}",
            get(workspace::registry).post(workspace::create_version),
        )
        .route(
            "/console/api/registry/{kind}/{name}/labels",
            post(workspace::move_label),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// Who is signed in: the session and the principal behind it.
struct User {
    principal: Principal,
    session: Session,
}

impl User {
    fn is_admin(&self) -> bool {
        self.principal.kind == KeyKind::Admin
    }

    fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorType::PermissionError,
                "This needs a console session opened with an admin key",
            ))
        }
    }

    /// The workspace a request may look at: an admin names any (or none, for all); a
    /// workspace session is held to its own.
    fn scope<'a>(&'a self, asked: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
        if self.is_admin() {
            return Ok(asked.filter(|w| !w.is_empty()));
        }
        let own = self.principal.workspace_id.as_str();
        match asked {
            Some(other) if !other.is_empty() && other != own => {
                Err(ApiError::not_found(format!("workspace {other} not found")))
            }
            _ => Ok(Some(own)),
        }
    }

    fn audit(&self, store: &dyn Store, action: &str, target: &str, detail: Value) {
        let entry = AuditEntry {
            at_ms: crate::ids::now_ms(),
            actor: format!("console:{}", self.principal.key_id),
            action: action.to_owned(),
            target: target.to_owned(),
            detail: detail.to_string(),
        };
        if let Err(err) = store.audit(&entry) {
            tracing::warn!(%err, action, "console change not written to the audit log");
        }
    }
}

/// A handler that takes a `User` runs only for a signed-in session (and, for a change, one
/// that carries its CSRF token).
impl axum::extract::FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        user(state, &parts.method, &parts.headers)
    }
}

fn user(state: &AppState, method: &Method, headers: &HeaderMap) -> Result<User, ApiError> {
    match console_session::principal(state, method, headers) {
        Some(Ok((principal, session))) => Ok(User { principal, session }),
        Some(Err(err)) => Err(err),
        None => Err(ApiError::unauthenticated("Sign in to the console")),
    }
}

fn no_store() -> ApiError {
    ApiError::not_found("The console needs a store; this server runs without one")
}

fn store(state: &AppState) -> Result<&dyn Store, ApiError> {
    state.store.as_deref().ok_or_else(no_store)
}

/// A store read that may scan (a report, the request log), run off the async workers: a
/// console page must never hold up the API requests those workers serve.
async fn read_off_workers<T: Send + 'static>(
    state: &AppState,
    read: impl FnOnce(&dyn Store) -> Result<T, missive_store::Error> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.store.clone().ok_or_else(no_store)?;
    tokio::task::spawn_blocking(move || read(store.as_ref()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

use crate::extract::parse_json as body;

#[derive(Deserialize, Default)]
struct Filter {
    #[serde(default)]
    workspace_id: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    /// `1h` or `1d`.
    #[serde(default)]
    bucket: Option<String>,
    /// Unix milliseconds.
    #[serde(default)]
    start_ms: Option<i64>,
    #[serde(default)]
    end_ms: Option<i64>,
    #[serde(default)]
    api_key_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    errors_only: Option<bool>,
    /// What the overview's usage is broken down by: `model`, `workspace` or `key`.
    #[serde(default)]
    group: Option<String>,
}

/// The one workspace a request is about: an admin must name it.
fn named_workspace(user: &User, asked: Option<&str>) -> Result<String, ApiError> {
    user.scope(asked)?
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid("workspace_id: name the workspace"))
}

/// Who a console request acts as in a workspace's own APIs (Messages, Batches, Files): a
/// workspace session as its key; an admin as the console, in the workspace named.
fn acting(state: &AppState, user: &User, asked: Option<&str>) -> Result<Principal, ApiError> {
    if !user.is_admin() {
        user.scope(asked)?;
        // An OIDC member has no key of their own: the console acts for them.
        if console_session::is_user(&user.principal) {
            return Ok(Principal::console(
                &user.principal.workspace_id,
                &user.principal.workspace,
            ));
        }
        return Ok(user.principal.clone());
    }
    let workspace_id = named_workspace(user, asked)?;
    let workspace = store(state)?
        .workspace(&workspace_id)?
        .filter(|w| w.archived_at.is_none())
        .ok_or_else(|| ApiError::not_found(format!("workspace {workspace_id} not found")))?;
    Ok(Principal::console(&workspace.id, &workspace.name))
}
