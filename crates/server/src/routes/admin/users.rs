//! The Admin API's users, shaped as the Claude API shapes them.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use missive_protocol::models::Page;
use missive_store::{User, ORG_ROLES};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{audit, body, page, store};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::check_role;
use crate::extract::JsonBody;
use crate::params::{rfc3339_secs, Params};
use crate::state::AppState;

#[derive(Serialize)]
pub struct UserView {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    email: String,
    name: String,
    role: String,
    added_at: String,
}

fn view(u: User) -> UserView {
    UserView {
        id: u.id,
        kind: "user",
        email: u.email,
        name: u.name,
        role: u.role,
        added_at: rfc3339_secs(u.added_at),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    role: String,
}

fn find(state: &AppState, id: &str) -> Result<User, ApiError> {
    store(state)?
        .user(id)?
        .ok_or_else(|| ApiError::not_found(format!("user {id} not found")))
}

pub async fn list(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<Page<UserView>>, ApiError> {
    let all = store(&state)?.list_users(params.one("email"))?;
    let views = all.into_iter().map(view).collect();
    Ok(Json(page(views, |u: &UserView| u.id.as_str(), &params)?))
}

pub async fn retrieve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(view(find(&state, &id)?)))
}

pub async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(raw): JsonBody,
) -> Result<Json<UserView>, ApiError> {
    let request: UpdateBody = body(&raw)?;
    check_role("role", &request.role, ORG_ROLES)?;
    if request.role == "admin" {
        return Err(ApiError::invalid(
            "role: `admin` cannot be assigned through the API",
        ));
    }
    find(&state, &id)?;
    let store = store(&state)?;
    let user = store.set_user_role(&id, &request.role)?;
    audit(
        store.as_ref(),
        &principal,
        "user.update",
        &id,
        json!({"role": request.role}),
    )?;
    Ok(Json(view(user)))
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    find(&state, &id)?;
    let store = store(&state)?;
    store.remove_user(&id)?;
    audit(store.as_ref(), &principal, "user.delete", &id, json!({}))?;
    Ok(Json(json!({"id": id, "type": "user_deleted"})))
}
