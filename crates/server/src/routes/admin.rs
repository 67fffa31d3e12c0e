//! The Admin API (`/v1/organizations/…`): the organization, workspaces and their members,
//! users, API keys, usage and cost reports. Admin keys only (403 for workspace keys);
//! every change is written to the audit log.

mod api_keys;
mod members;
mod organization;
mod reports;
mod users;
mod workspaces;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use missive_store::{AuditEntry, Store};

use missive_protocol::models::Page;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/organizations/me", get(organization::me))
        .route(
            "/v1/organizations/workspaces",
            get(workspaces::list).post(workspaces::create),
        )
        .route(
            "/v1/organizations/workspaces/{workspace_id}",
            get(workspaces::retrieve).post(workspaces::update),
        )
        .route(
            "/v1/organizations/workspaces/{workspace_id}/archive",
            post(workspaces::archive),
        )
        .route(
            "/v1/organizations/workspaces/{workspace_id}/members",
            get(members::list).post(members::create),
        )
        .route(
            "/v1/organizations/workspaces/{workspace_id}/members/{user_id}",
            get(members::retrieve)
                .post(members::update)
                .delete(members::delete),
        )
        .route("/v1/organizations/users", get(users::list))
        .route(
            "/v1/organizations/users/{user_id}",
            get(users::retrieve)
                .post(users::update)
                .delete(users::delete),
        )
        .route("/v1/organizations/api_keys", get(api_keys::list))
        .route(
            "/v1/organizations/api_keys/{api_key_id}",
            get(api_keys::retrieve).post(api_keys::update),
        )
        .route(
            "/v1/organizations/usage_report/messages",
            get(reports::usage),
        )
        .route("/v1/organizations/cost_report", get(reports::cost))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::auth::admin_middleware,
        ))
}

fn store(state: &AppState) -> Result<&Arc<dyn Store>, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        ApiError::not_found("The Admin API needs a store; this server runs without one")
    })
}

fn audit(
    store: &dyn Store,
    principal: &Principal,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    store.audit(&AuditEntry {
        at_ms: crate::ids::now_ms(),
        actor: principal.key_id.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        detail: detail.to_string(),
    })?;
    Ok(())
}

pub(super) fn page<T>(
    items: Vec<T>,
    id_of: impl Fn(&T) -> &str,
    params: &Params,
) -> Result<Page<T>, ApiError> {
    let limit = params.int("limit", 1, 1000, 20)?;
    Ok(Page::paginate(
        items,
        id_of,
        limit,
        params.one("after_id"),
        params.one("before_id"),
    ))
}

pub(super) use crate::extract::parse_json as body;
