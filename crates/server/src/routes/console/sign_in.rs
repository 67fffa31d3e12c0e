//! Signing in and out: with a key, or with OpenID Connect; the session the page reads.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use missive_store::{AuditEntry, KeyKind};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, store, User};
use crate::auth::Principal;
use crate::console_session::{self, Session};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::params::rfc3339_ms;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    key: String,
}

/// `POST /console/session` `{"key"}`: opens a session for an admin or workspace key. A
/// JSON body is required (`JsonBody` refuses any other), which a cross-site form cannot
/// send.
pub(super) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(raw): JsonBody,
) -> Result<Response, ApiError> {
    let sessions = state
        .console
        .as_deref()
        .ok_or_else(|| ApiError::not_found("Not found: /console/session"))?;
    let request: SignIn = body(&raw)?;
    let mut presented = HeaderMap::new();
    let key = HeaderValue::from_str(request.key.trim())
        .map_err(|_| ApiError::unauthenticated("invalid key"))?;
    presented.insert("x-api-key", key);
    let principal = state.auth.authenticate(&presented)?;
    let (value, session) = sessions.issue(&principal.key_id, principal.kind);
    let max_age = (session.expires_at_ms - crate::ids::now_ms()) / 1000;
    let cookie =
        console_session::set_cookie(&value, max_age, console_session::over_tls(&state, &headers));
    if let Some(store) = state.store.as_deref() {
        User {
            principal: principal.clone(),
            session: session.clone(),
        }
        .audit(store, "console.sign_in", &principal.key_id, json!({}));
    }
    let mut response = Json(session_view(&state, sessions, &principal, &session)?).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// What the sign-in page offers: a key always, single sign-on when configured.
pub(super) async fn sign_in_options(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"key": true, "oidc": state.console_oidc.is_some()}))
}

/// The OIDC sign-in in flight, in a cookie of its own: `Lax`, since the identity provider
/// sends the browser back from another site.
const OIDC_COOKIE: &str = "missive_oidc";

const OIDC_ATTEMPT_MS: i64 = 600_000;

fn oidc_parts(
    state: &AppState,
) -> Result<(&console_session::Sessions, &crate::console_oidc::Oidc), ApiError> {
    match (state.console.as_deref(), state.console_oidc.as_deref()) {
        (Some(sessions), Some(oidc)) => Ok((sessions, oidc)),
        _ => Err(ApiError::not_found(
            "Single sign-on is not configured ([console.oidc])",
        )),
    }
}

/// `GET /console/oidc/login`: off to the identity provider.
pub(super) async fn oidc_login(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (sessions, oidc) = oidc_parts(&state)?;
    let attempt = crate::console_oidc::Attempt::new();
    let url = match oidc.authorize_url(&attempt).await {
        Ok(url) => url,
        Err(err) => return Ok(back_to_sign_in(&err.to_string())),
    };
    let payload = format!(
        "{}|{}|{}|{}",
        attempt.state,
        attempt.nonce,
        attempt.verifier,
        crate::ids::now_ms() + OIDC_ATTEMPT_MS
    );
    let cookie = format!(
        "{OIDC_COOKIE}={}; Path=/console/oidc; HttpOnly; SameSite=Lax; Max-Age={}{}",
        sessions.seal("oidc", &payload),
        OIDC_ATTEMPT_MS / 1000,
        if console_session::over_tls(&state, &headers) {
            "; Secure"
        } else {
            ""
        }
    );
    let mut response = axum::response::Redirect::to(&url).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Back to the sign-in page, which shows why.
fn back_to_sign_in(reason: &str) -> Response {
    let reason: String = url::form_urlencoded::byte_serialize(reason.as_bytes()).collect();
    axum::response::Redirect::to(&format!("/console?sign_in_error={reason}")).into_response()
}

#[derive(Deserialize)]
pub(super) struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `GET /console/oidc/callback`: the provider's answer. The signed-in email must be an
/// organization user's; an `admin` gets an admin session, anyone else a session in the
/// first workspace (by name) they are a member of.
pub(super) async fn oidc_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Result<Response, ApiError> {
    let (sessions, oidc) = oidc_parts(&state)?;
    if let Some(error) = callback.error {
        return Ok(back_to_sign_in(&format!(
            "The identity provider said: {error}"
        )));
    }
    let attempt = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == OIDC_COOKIE).then_some(value)
        })
        .and_then(|value| sessions.unseal("oidc", value))
        .and_then(|payload| {
            let mut parts = payload.splitn(4, '|');
            let attempt = crate::console_oidc::Attempt {
                state: parts.next()?.to_owned(),
                nonce: parts.next()?.to_owned(),
                verifier: parts.next()?.to_owned(),
            };
            let until: i64 = parts.next()?.parse().ok()?;
            (until > crate::ids::now_ms()).then_some(attempt)
        });
    let (Some(attempt), Some(code)) = (attempt, callback.code) else {
        return Ok(back_to_sign_in(
            "The sign-in expired or did not start here; try again",
        ));
    };
    if callback.state.as_deref() != Some(attempt.state.as_str()) {
        return Ok(back_to_sign_in(
            "The sign-in's state did not match; try again",
        ));
    }
    let email = match oidc.finish(&attempt, &code).await {
        Ok(email) => email,
        Err(err) => return Ok(back_to_sign_in(&err.to_string())),
    };
    let store = store(&state)?;
    let Some(found) = store.list_users(Some(&email))?.into_iter().next() else {
        return Ok(back_to_sign_in(&format!(
            "{email} is not a user of this organization"
        )));
    };
    let (session_id, kind) = if found.role == "admin" {
        (
            console_session::user_session_id(&found.id, None),
            KeyKind::Admin,
        )
    } else {
        let member_of = memberships(store, &found.id)?
            .into_iter()
            .next()
            .map(|w| w.id);
        let Some(workspace_id) = member_of else {
            return Ok(back_to_sign_in(&format!(
                "{email} is not a member of any workspace"
            )));
        };
        (
            console_session::user_session_id(&found.id, Some(&workspace_id)),
            KeyKind::Standard,
        )
    };
    let (value, session) = sessions.issue(&session_id, kind);
    let entry = AuditEntry {
        at_ms: crate::ids::now_ms(),
        actor: format!("console:user:{}", found.id),
        action: "console.sign_in".to_owned(),
        target: found.id.clone(),
        detail: json!({"via": "oidc"}).to_string(),
    };
    if let Err(err) = store.audit(&entry) {
        tracing::warn!(%err, "console sign-in not written to the audit log");
    }
    let secure = console_session::over_tls(&state, &headers);
    let max_age = (session.expires_at_ms - crate::ids::now_ms()) / 1000;
    let mut response = axum::response::Redirect::to("/console").into_response();
    for cookie in [
        console_session::set_cookie(&value, max_age, secure),
        format!("{OIDC_COOKIE}=; Path=/console/oidc; HttpOnly; SameSite=Lax; Max-Age=0"),
    ] {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// The workspaces an organization user is a member of, by name.
fn memberships(
    store: &dyn missive_store::Store,
    user_id: &str,
) -> Result<Vec<missive_store::Workspace>, ApiError> {
    let mut workspaces = store.list_workspaces(false)?;
    workspaces.sort_by(|a, b| a.name.cmp(&b.name));
    let mut member_of = Vec::new();
    for workspace in workspaces {
        if store.member(&workspace.id, user_id)?.is_some() {
            member_of.push(workspace);
        }
    }
    Ok(member_of)
}

fn session_view(
    state: &AppState,
    sessions: &console_session::Sessions,
    principal: &Principal,
    session: &Session,
) -> Result<Value, ApiError> {
    // An OIDC member may move between the workspaces they belong to.
    let workspaces = match (console_session::user_id(principal), principal.kind) {
        (Some(user_id), KeyKind::Standard) => memberships(store(state)?, user_id)?
            .into_iter()
            .map(|w| json!({"id": w.id, "name": w.name}))
            .collect(),
        _ => Vec::new(),
    };
    Ok(json!({
        "type": "console_session",
        "kind": principal.kind.as_str(),
        "workspace_id": (!principal.workspace_id.is_empty()).then_some(&principal.workspace_id),
        "workspace_name": (!principal.workspace.is_empty()).then_some(&principal.workspace),
        "expires_at": rfc3339_ms(session.expires_at_ms),
        "csrf_token": sessions.csrf(session),
        "workspaces": workspaces,
    }))
}

pub(super) async fn session(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<Value>, ApiError> {
    let sessions = state
        .console
        .as_deref()
        .ok_or_else(|| ApiError::unauthenticated("Sign in to the console"))?;
    Ok(Json(session_view(
        &state,
        sessions,
        &user.principal,
        &user.session,
    )?))
}

/// Ends the session in this browser (for a signed-in session, with its CSRF token).
pub(super) async fn sign_out(_user: User) -> Result<Response, ApiError> {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&console_session::set_cookie("", 0, false)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkspaceChoice {
    workspace_id: String,
}

/// Moves an OIDC member's session to another workspace they are a member of. A key's
/// session stays in its key's workspace.
pub(super) async fn choose_workspace(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: User,
    JsonBody(raw): JsonBody,
) -> Result<Response, ApiError> {
    let sessions = state
        .console
        .as_deref()
        .ok_or_else(|| ApiError::unauthenticated("Sign in to the console"))?;
    let user_id = match console_session::user_id(&user.principal) {
        Some(id) if !user.is_admin() => id.to_owned(),
        _ => {
            return Err(ApiError::invalid(
                "Only a member signed in with single sign-on chooses a workspace",
            ))
        }
    };
    let request: WorkspaceChoice = body(&raw)?;
    let workspace = memberships(store(&state)?, &user_id)?
        .into_iter()
        .find(|w| w.id == request.workspace_id)
        .ok_or_else(|| {
            ApiError::not_found(format!("workspace {} not found", request.workspace_id))
        })?;
    let session_id = console_session::user_session_id(&user_id, Some(&workspace.id));
    let (value, session) = sessions.issue(&session_id, KeyKind::Standard);
    let principal = Principal {
        workspace_id: workspace.id,
        workspace: workspace.name,
        ..user.principal
    };
    let max_age = (session.expires_at_ms - crate::ids::now_ms()) / 1000;
    let cookie =
        console_session::set_cookie(&value, max_age, console_session::over_tls(&state, &headers));
    let mut response = Json(session_view(&state, sessions, &principal, &session)?).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}
