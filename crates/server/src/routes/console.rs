//! `/console`: the operator's web console, served by the binary itself. The page and its
//! script are embedded (nothing from a CDN); they call the JSON endpoints below with the
//! session cookie (see `crate::console_session`), never with a key.
//!
//! An admin session sees and changes the whole organization. A session opened with a
//! workspace key sees its own workspace only, and changes nothing but that workspace's
//! registry.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use missive_protocol::ErrorType;
use missive_store::{
    AuditEntry, Dimension, KeyKind, KeyStatus, LabelTarget, RegistryKind, RequestLogQuery, Store,
    UsageQuery, WorkspaceLimits,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::console_session::{self, Session};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::params::rfc3339_ms;
use crate::state::AppState;

const PAGE: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/console.js");
const STYLE: &str = include_str!("../../console/console.css");

/// Scripts from this origin only, no inline code, no framing.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(style))
        .route("/console/session", post(sign_in))
        .route("/console/sign-in-options", get(sign_in_options))
        .route("/console/oidc/login", get(oidc_login))
        .route("/console/oidc/callback", get(oidc_callback))
        .route("/console/api/session", get(session))
        .route("/console/api/session/end", post(sign_out))
        .route(
            "/console/api/workspaces",
            get(workspaces).post(create_workspace),
        )
        .route(
            "/console/api/workspaces/{workspace_id}/limits",
            post(set_limits),
        )
        .route("/console/api/keys", get(keys).post(create_key))
        .route("/console/api/keys/{key_id}", post(update_key))
        .route(
            "/console/api/kill_switches",
            get(kill_switches).post(set_kill_switch),
        )
        .route("/console/api/usage", get(usage))
        .route("/console/api/requests", get(requests))
        .route("/console/api/audit", get(audit_log))
        .route("/console/api/models", get(models))
        .route("/console/api/batches", get(batches))
        .route("/console/api/batches/{batch_id}/cancel", post(cancel_batch))
        .route(
            "/console/api/batches/{batch_id}/results",
            get(batch_results),
        )
        .route("/console/api/files", get(files))
        .route("/console/api/files/{file_id}/delete", post(delete_file))
        .route("/console/api/messages", post(workbench))
        .route("/console/api/prompts", get(prompts).post(create_prompt))
        .route("/console/api/prompts/{name}/labels", post(label_prompt))
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

fn user(state: &AppState, method: &Method, headers: &HeaderMap) -> Result<User, ApiError> {
    match console_session::principal(state, method, headers) {
        Some(Ok((principal, session))) => Ok(User { principal, session }),
        Some(Err(err)) => Err(err),
        None => Err(ApiError::unauthenticated("Sign in to the console")),
    }
}

fn store(state: &AppState) -> Result<&dyn Store, ApiError> {
    state.store.as_deref().ok_or_else(|| {
        ApiError::not_found("The console needs a store; this server runs without one")
    })
}

fn body<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(raw).map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    key: String,
}

/// `POST /console/session` `{"key"}`: opens a session for an admin or workspace key. A
/// JSON body is required, which a cross-site form cannot send.
async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(raw): JsonBody,
) -> Result<Response, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::invalid("content-type: sign in with a JSON body"));
    }
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
    let mut response = Json(session_view(sessions, &principal, &session)).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// What the sign-in page offers: a key always, single sign-on when configured.
async fn sign_in_options(State(state): State<AppState>) -> Json<Value> {
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
async fn oidc_login(
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
struct Callback {
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
async fn oidc_callback(
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
        let mut workspaces = store.list_workspaces(false)?;
        workspaces.sort_by(|a, b| a.name.cmp(&b.name));
        let mut member_of = None;
        for workspace in workspaces {
            if store.member(&workspace.id, &found.id)?.is_some() {
                member_of = Some(workspace.id);
                break;
            }
        }
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

fn session_view(
    sessions: &console_session::Sessions,
    principal: &Principal,
    session: &Session,
) -> Value {
    json!({
        "type": "console_session",
        "kind": principal.kind.as_str(),
        "workspace_id": (!principal.workspace_id.is_empty()).then_some(&principal.workspace_id),
        "workspace_name": (!principal.workspace.is_empty()).then_some(&principal.workspace),
        "expires_at": rfc3339_ms(session.expires_at_ms),
        "csrf_token": sessions.csrf(session),
    })
}

async fn session(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    let sessions = state
        .console
        .as_deref()
        .ok_or_else(|| ApiError::unauthenticated("Sign in to the console"))?;
    Ok(Json(session_view(sessions, &user.principal, &user.session)))
}

async fn sign_out(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    user(&state, &method, &headers)?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&console_session::set_cookie("", 0, false)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

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
}

async fn workspaces(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    let store = store(&state)?;
    let all = store.list_workspaces(false)?;
    let scope = user.scope(None)?;
    let limits: std::collections::HashMap<String, WorkspaceLimits> =
        store.workspace_limits()?.into_iter().collect();
    let data: Vec<Value> = all
        .into_iter()
        .filter(|w| scope.is_none_or(|own| own == w.id))
        .map(|w| {
            let set = limits.get(&w.id).copied().unwrap_or_default();
            let cap = set
                .spend_cap_usd
                .or_else(|| state.spend.configured_cap_usd(&w.name));
            let spent = state.spend.month_to_date_cents(&w.id).unwrap_or(0.0) / 100.0;
            json!({
                "id": w.id,
                "name": w.name,
                "killed": store.is_killed(&w.id, "*").unwrap_or(false),
                "spend": {"month_to_date_usd": spent, "cap_usd": cap},
                "limits": {
                    "requests_per_minute": set.requests_per_minute,
                    "input_tokens_per_minute": set.input_tokens_per_minute,
                    "output_tokens_per_minute": set.output_tokens_per_minute,
                    "spend_cap_usd": set.spend_cap_usd,
                },
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWorkspace {
    name: String,
}

async fn create_workspace(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    user.require_admin()?;
    let request: NewWorkspace = body(&raw)?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 40 {
        return Err(ApiError::invalid("name: must be 1 to 40 characters"));
    }
    let store = store(&state)?;
    let created = store.create_workspace(name)?;
    user.audit(
        store,
        "workspace.create",
        &created.id,
        json!({"name": name}),
    );
    Ok(Json(json!({"id": created.id, "name": created.name})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    #[serde(default)]
    requests_per_minute: Option<u32>,
    #[serde(default)]
    input_tokens_per_minute: Option<u32>,
    #[serde(default)]
    output_tokens_per_minute: Option<u32>,
    #[serde(default)]
    spend_cap_usd: Option<f64>,
}

/// Sets a workspace's rate limits and monthly spend cap (a field left out or null keeps the
/// config's); every replica applies them from its next request.
async fn set_limits(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(workspace_id): Path<String>,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    user.require_admin()?;
    let request: LimitsBody = body(&raw)?;
    if [
        request.requests_per_minute,
        request.input_tokens_per_minute,
        request.output_tokens_per_minute,
    ]
    .contains(&Some(0))
    {
        return Err(ApiError::invalid(
            "a per-minute limit is at least 1 (the kill switch stops all traffic)",
        ));
    }
    if request
        .spend_cap_usd
        .is_some_and(|cap| !cap.is_finite() || cap < 0.0)
    {
        return Err(ApiError::invalid(
            "spend_cap_usd: a number of dollars, 0 or more",
        ));
    }
    let store = store(&state)?;
    if store.workspace(&workspace_id)?.is_none() {
        return Err(ApiError::not_found(format!(
            "workspace {workspace_id} not found"
        )));
    }
    let limits = WorkspaceLimits {
        requests_per_minute: request.requests_per_minute,
        input_tokens_per_minute: request.input_tokens_per_minute,
        output_tokens_per_minute: request.output_tokens_per_minute,
        spend_cap_usd: request.spend_cap_usd,
    };
    store.set_workspace_limits(&workspace_id, &limits)?;
    let view = json!({
        "requests_per_minute": limits.requests_per_minute,
        "input_tokens_per_minute": limits.input_tokens_per_minute,
        "output_tokens_per_minute": limits.output_tokens_per_minute,
        "spend_cap_usd": limits.spend_cap_usd,
    });
    user.audit(store, "workspace.limits", &workspace_id, view.clone());
    Ok(Json(view))
}

fn key_view(key: &missive_store::ApiKey) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "workspace_id": key.workspace_id,
        "hint": key.hint,
        "status": key.status.as_str(),
        "created_at": rfc3339_ms(key.created_at.saturating_mul(1000)),
        "expires_at": key.expires_at.map(|at| rfc3339_ms(at.saturating_mul(1000))),
    })
}

async fn keys(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    let scope = user.scope(filter.workspace_id.as_deref())?;
    let data: Vec<Value> = store(&state)?
        .list_api_keys()?
        .iter()
        .filter(|k| k.kind == KeyKind::Standard)
        .filter(|k| scope.is_none_or(|w| k.workspace_id.as_deref() == Some(w)))
        .map(key_view)
        .collect();
    Ok(Json(json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    workspace_id: String,
    name: String,
}

/// Creates a workspace key; the secret is in this answer and nowhere else, ever.
async fn create_key(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    user.require_admin()?;
    let request: NewKey = body(&raw)?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name: must be 1 to 100 characters"));
    }
    let store = store(&state)?;
    let created = store.create_api_key(name, KeyKind::Standard, Some(&request.workspace_id))?;
    user.audit(
        store,
        "api_key.create",
        &created.key.id,
        json!({"name": name, "workspace_id": request.workspace_id}),
    );
    let mut view = key_view(&created.key);
    view["secret"] = Value::from(created.secret);
    Ok(Json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyChange {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// Renames a key, or revokes it (`status: "inactive"`).
async fn update_key(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(key_id): Path<String>,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    user.require_admin()?;
    let change: KeyChange = body(&raw)?;
    let status = match change.status.as_deref() {
        None => None,
        Some(s @ ("active" | "inactive")) => KeyStatus::parse(s),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "status: `{other}` is not one of active, inactive"
            )))
        }
    };
    let store = store(&state)?;
    let updated = store.update_api_key(&key_id, change.name.as_deref(), status)?;
    user.audit(
        store,
        "api_key.update",
        &key_id,
        json!({"name": change.name, "status": change.status}),
    );
    Ok(Json(key_view(&updated)))
}

async fn kill_switches(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    let scope = user.scope(None)?;
    let data: Vec<Value> = store(&state)?
        .kill_switches()?
        .into_iter()
        .filter(|s| scope.is_none_or(|w| s.workspace_id.as_deref().is_none_or(|id| id == w)))
        .map(|s| json!({"workspace_id": s.workspace_id, "model": s.model}))
        .collect();
    Ok(Json(json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KillSwitchChange {
    #[serde(default)]
    workspace_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    on: bool,
}

async fn set_kill_switch(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    user.require_admin()?;
    let change: KillSwitchChange = body(&raw)?;
    let workspace = change.workspace_id.as_deref().filter(|w| !w.is_empty());
    let model = change.model.as_deref().filter(|m| !m.is_empty());
    let store = store(&state)?;
    store.set_kill_switch(workspace, model, change.on)?;
    user.audit(
        store,
        if change.on {
            "kill_switch.on"
        } else {
            "kill_switch.off"
        },
        workspace.unwrap_or("*"),
        json!({"model": model}),
    );
    Ok(Json(
        json!({"workspace_id": workspace, "model": model, "on": change.on}),
    ))
}

/// Billed usage over time by model: the overview's chart.
async fn usage(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    let scope = user.scope(filter.workspace_id.as_deref())?;
    let bucket_ms = match filter.bucket.as_deref().unwrap_or("1h") {
        "1h" => 3_600_000,
        "1d" => 86_400_000,
        other => {
            return Err(ApiError::invalid(format!(
                "bucket: `{other}` is not one of 1h, 1d"
            )))
        }
    };
    let now = crate::ids::now_ms();
    let end_ms = filter.end_ms.unwrap_or(now + 1);
    let start_ms = filter.start_ms.unwrap_or(end_ms - 24 * 3_600_000);
    if end_ms <= start_ms || (end_ms - start_ms) / bucket_ms > 1000 {
        return Err(ApiError::invalid(
            "start_ms, end_ms: a range of at most 1000 buckets, start before end",
        ));
    }
    let rows = store(&state)?.usage(&UsageQuery {
        start_ms,
        end_ms,
        bucket_ms,
        group_by: vec![Dimension::Model],
        filters: scope
            .map(|w| vec![(Dimension::WorkspaceId, vec![w.to_owned()])])
            .unwrap_or_default(),
    })?;
    let prices = state.spend.prices();
    let data: Vec<Value> = rows
        .iter()
        .map(|row| {
            let model = row.model.clone().unwrap_or_default();
            let t = &row.tokens;
            json!({
                "bucket_start": rfc3339_ms(row.bucket_start_ms),
                "model": model,
                "input_tokens": t.uncached_input + t.cache_creation_5m + t.cache_creation_1h,
                "cache_read_input_tokens": t.cache_read,
                "output_tokens": t.output,
                "cost_usd": prices.cost_cents(&model, "standard", t) / 100.0,
            })
        })
        .collect();
    Ok(Json(json!({
        "bucket": filter.bucket.unwrap_or_else(|| "1h".to_owned()),
        "start": rfc3339_ms(start_ms),
        "end": rfc3339_ms(end_ms),
        "data": data,
    })))
}

/// The request log: one row per API request, failures included, newest first.
async fn requests(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    let scope = user.scope(filter.workspace_id.as_deref())?;
    let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let query = RequestLogQuery {
        workspace_id: scope.map(str::to_owned),
        api_key_id: nonempty(&filter.api_key_id),
        model: nonempty(&filter.model),
        errors_only: filter.errors_only.unwrap_or(false),
        limit: filter.limit.unwrap_or(100).clamp(1, 1000),
    };
    let data: Vec<Value> = store(&state)?
        .request_log(&query)?
        .iter()
        .map(|r| {
            json!({
                "request_id": r.request_id,
                "at": rfc3339_ms(r.at_ms),
                "method": r.method,
                "path": r.path,
                "status": r.status,
                "latency_ms": r.latency_ms,
                "api_key_id": r.api_key_id,
                "workspace_id": r.workspace_id,
                "model": r.model,
                "upstream": r.upstream,
                "input_tokens": r.input_tokens,
                "cache_creation_input_tokens": r.cache_creation_input_tokens,
                "cache_read_input_tokens": r.cache_read_input_tokens,
                "output_tokens": r.output_tokens,
                "prompt_version": r.prompt_version,
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

async fn audit_log(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    user.require_admin()?;
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    let data: Vec<Value> = store(&state)?
        .audit_log(limit)?
        .into_iter()
        .map(|e| {
            json!({
                "at": rfc3339_ms(e.at_ms),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "detail": serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// The workspace a registry change or listing is for: an admin must name one.
fn registry_workspace(user: &User, asked: Option<&str>) -> Result<String, ApiError> {
    user.scope(asked)?
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid("workspace_id: name the workspace"))
}

async fn prompts(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    let workspace = registry_workspace(&user, filter.workspace_id.as_deref())?;
    let data: Vec<Value> = store(&state)?
        .list_registry(&workspace, RegistryKind::Prompt)?
        .iter()
        .map(|entry| {
            let labels: serde_json::Map<String, Value> = entry
                .labels
                .iter()
                .map(|(label, target)| {
                    let target = match target {
                        LabelTarget::Version(v) => json!(v),
                        LabelTarget::Split(shares) => json!(shares
                            .iter()
                            .map(|s| format!("{}:{}", s.version, s.weight))
                            .collect::<Vec<_>>()
                            .join(",")),
                    };
                    (label.clone(), target)
                })
                .collect();
            let versions: Vec<Value> = entry
                .versions
                .iter()
                .map(|v| json!({"version": v.version, "text": v.body, "created_at": rfc3339_ms(v.created_at_ms)}))
                .collect();
            json!({"name": entry.name, "labels": labels, "versions": versions})
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPrompt {
    #[serde(default)]
    workspace_id: Option<String>,
    name: String,
    text: String,
}

async fn create_prompt(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    let request: NewPrompt = body(&raw)?;
    let workspace = registry_workspace(&user, request.workspace_id.as_deref())?;
    if !crate::registry::valid_name(&request.name) || request.text.is_empty() {
        return Err(ApiError::invalid(
            "name: 1 to 64 letters, digits, `_`, `-` or `.`; text: not empty",
        ));
    }
    let store = store(&state)?;
    let version = store.add_registry_version(
        &workspace,
        RegistryKind::Prompt,
        &request.name,
        &request.text,
    )?;
    user.audit(
        store,
        "prompt.version",
        &format!("{}@{}", version.name, version.version),
        json!({"workspace_id": workspace}),
    );
    Ok(Json(
        json!({"name": version.name, "version": version.version}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelMove {
    #[serde(default)]
    workspace_id: Option<String>,
    label: String,
    version: i64,
}

async fn label_prompt(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
    JsonBody(raw): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let user = user(&state, &method, &headers)?;
    let request: LabelMove = body(&raw)?;
    let workspace = registry_workspace(&user, request.workspace_id.as_deref())?;
    if !crate::registry::valid_name(&request.label) || request.label.parse::<i64>().is_ok() {
        return Err(ApiError::invalid(
            "label: 1 to 64 letters, digits, `_`, `-` or `.`, not a number",
        ));
    }
    let store = store(&state)?;
    store.set_registry_label(
        &workspace,
        RegistryKind::Prompt,
        &name,
        &request.label,
        &LabelTarget::Version(request.version),
    )?;
    user.audit(
        store,
        "prompt.label",
        &format!("{name}@{}", request.label),
        json!({"workspace_id": workspace, "version": request.version}),
    );
    Ok(Json(
        json!({"name": name, "label": request.label, "version": request.version}),
    ))
}

/// Who a console request acts as in a workspace's own APIs (Messages, Batches, Files): a
/// workspace session as its key; an admin as the console, in the workspace named.
fn acting(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    filter: &Filter,
) -> Result<Principal, ApiError> {
    let user = user(state, method, headers)?;
    if !user.is_admin() {
        user.scope(filter.workspace_id.as_deref())?;
        // An OIDC member has no key of their own: the console acts for them.
        if console_session::is_user(&user.principal) {
            return Ok(Principal::console(
                &user.principal.workspace_id,
                &user.principal.workspace,
            ));
        }
        return Ok(user.principal);
    }
    let workspace_id = registry_workspace(&user, filter.workspace_id.as_deref())?;
    let workspace = store(state)?
        .workspace(&workspace_id)?
        .filter(|w| w.archived_at.is_none())
        .ok_or_else(|| ApiError::not_found(format!("workspace {workspace_id} not found")))?;
    Ok(Principal::console(&workspace.id, &workspace.name))
}

async fn batches(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let principal = acting(&state, &method, &headers, &filter)?;
    let listed = super::batches::list(
        State(state),
        axum::Extension(principal),
        headers,
        crate::params::Params::default(),
    )
    .await?;
    Ok(listed.into_response())
}

async fn cancel_batch(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(batch_id): Path<String>,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let principal = acting(&state, &method, &headers, &filter)?;
    let actor = user(&state, &method, &headers)?;
    let canceled = super::batches::cancel(
        State(state.clone()),
        axum::Extension(principal),
        headers,
        Path(batch_id.clone()),
    )
    .await?;
    if let Some(store) = state.store.as_deref() {
        actor.audit(store, "batch.cancel", &batch_id, json!({}));
    }
    Ok(canceled.into_response())
}

async fn batch_results(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(batch_id): Path<String>,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let principal = acting(&state, &method, &headers, &filter)?;
    super::batches::results(State(state), axum::Extension(principal), Path(batch_id)).await
}

async fn files(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let principal = acting(&state, &method, &headers, &filter)?;
    let listed = super::files::list(
        State(state),
        axum::Extension(principal),
        crate::params::Params::default(),
    )
    .await?;
    Ok(listed.into_response())
}

async fn delete_file(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(file_id): Path<String>,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let principal = acting(&state, &method, &headers, &filter)?;
    let actor = user(&state, &method, &headers)?;
    let deleted = super::files::delete(
        State(state.clone()),
        axum::Extension(principal),
        Path(file_id.clone()),
    )
    .await?;
    if let Some(store) = state.store.as_deref() {
        actor.audit(store, "file.delete", &file_id, json!({}));
    }
    Ok(deleted.into_response())
}

/// The models a workbench request can name.
async fn models(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    user(&state, &method, &headers)?;
    let listed =
        super::models::list(State(state), Query(super::models::ListParams::default())).await?;
    Ok(listed.into_response())
}

/// The workbench: a Messages request run in a workspace, exactly as `/v1/messages` runs
/// it (streamed when asked). A workspace session runs as its own key; an admin runs as
/// the console in the workspace named, and the ledger says so.
async fn workbench(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
    access: Option<axum::Extension<crate::access::AccessSlot>>,
    JsonBody(raw): JsonBody,
) -> Result<Response, ApiError> {
    let principal = acting(&state, &method, &headers, &filter)?;
    // In the access and request logs like any other Messages request.
    if let Some(slot) = &access {
        slot.principal(&principal, state.request_log.as_ref());
    }
    super::messages::create(
        State(state),
        Some(axum::Extension(principal)),
        access,
        HeaderMap::new(),
        JsonBody(raw),
    )
    .await
}
