//! The Admin API's resources, each shaped as the Claude API shapes it.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use missive_protocol::models::Page;
use missive_store::{
    ApiKey, KeyKind, KeyStatus, Member, User, Workspace, ORG_ROLES, WORKSPACE_ROLES,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::params::{rfc3339_secs, Params};
use super::{audit, store};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;

fn page<T>(
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

/// A JSON body as a typed request, with the Claude API's 400 on a bad shape.
fn body<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(raw).map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

fn check_role(field: &str, role: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&role) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{field}: `{role}` is not one of {}",
            allowed.join(", ")
        )))
    }
}

pub mod organization {
    use super::*;

    #[derive(Serialize)]
    pub struct Organization {
        id: String,
        #[serde(rename = "type")]
        kind: &'static str,
        name: String,
    }

    pub async fn me(State(state): State<AppState>) -> Result<Json<Organization>, ApiError> {
        let org = store(&state)?.organization()?;
        Ok(Json(Organization {
            id: org.id,
            kind: "organization",
            name: org.name,
        }))
    }
}

pub mod workspaces {
    use super::*;

    #[derive(Serialize)]
    pub struct WorkspaceView {
        id: String,
        #[serde(rename = "type")]
        kind: &'static str,
        name: String,
        created_at: String,
        archived_at: Option<String>,
        display_color: String,
        data_residency: serde_json::Value,
        compartment_id: String,
        tags: serde_json::Map<String, serde_json::Value>,
        external_key_id: Option<String>,
        user_profile_id: Option<String>,
    }

    pub(crate) fn view(w: Workspace) -> WorkspaceView {
        WorkspaceView {
            // One machine, one encryption domain per workspace: its id names it.
            compartment_id: w.id.replacen("wrkspc_", "cmpt_", 1),
            tags: serde_json::Map::new(),
            external_key_id: None,
            user_profile_id: None,
            id: w.id,
            kind: "workspace",
            name: w.name,
            created_at: rfc3339_secs(w.created_at),
            archived_at: w.archived_at.map(rfc3339_secs),
            display_color: w.display_color,
            // Everything runs on this machine; the Claude API's values with no choice in them.
            data_residency: json!({
                "workspace_geo": "us",
                "default_inference_geo": "global",
                "allowed_inference_geos": "unrestricted",
            }),
        }
    }

    /// Other fields (`data_residency`, `display_color`, `tags`) have no meaning on one
    /// machine and are ignored.
    #[derive(Deserialize)]
    struct WorkspaceBody {
        name: String,
    }

    #[derive(Deserialize)]
    struct WorkspaceUpdate {
        name: Option<String>,
    }

    fn valid_name(name: &str) -> Result<&str, ApiError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 40 {
            return Err(ApiError::invalid("name: must be 1 to 40 characters"));
        }
        Ok(name)
    }

    /// A workspace by id, 404 when there is none.
    pub(crate) fn find(state: &AppState, id: &str) -> Result<Workspace, ApiError> {
        store(state)?
            .workspace(id)?
            .ok_or_else(|| ApiError::not_found(format!("workspace {id} not found")))
    }

    pub async fn list(
        State(state): State<AppState>,
        params: Params,
    ) -> Result<Json<Page<WorkspaceView>>, ApiError> {
        let all = store(&state)?.list_workspaces(params.flag("include_archived")?)?;
        let views = all.into_iter().map(view).collect();
        Ok(Json(page(
            views,
            |w: &WorkspaceView| w.id.as_str(),
            &params,
        )?))
    }

    pub async fn create(
        State(state): State<AppState>,
        Extension(principal): Extension<Principal>,
        JsonBody(raw): JsonBody,
    ) -> Result<Json<WorkspaceView>, ApiError> {
        let request: WorkspaceBody = body(&raw)?;
        let store = store(&state)?;
        let created = store.create_workspace(valid_name(&request.name)?)?;
        audit(
            store.as_ref(),
            &principal,
            "workspace.create",
            &created.id,
            json!({"name": created.name}),
        )?;
        Ok(Json(view(created)))
    }

    pub async fn retrieve(
        State(state): State<AppState>,
        Path(id): Path<String>,
    ) -> Result<Json<WorkspaceView>, ApiError> {
        Ok(Json(view(find(&state, &id)?)))
    }

    pub async fn update(
        State(state): State<AppState>,
        Extension(principal): Extension<Principal>,
        Path(id): Path<String>,
        JsonBody(raw): JsonBody,
    ) -> Result<Json<WorkspaceView>, ApiError> {
        let request: WorkspaceUpdate = body(&raw)?;
        let store = store(&state)?;
        let current = find(&state, &id)?;
        let Some(name) = request.name else {
            return Ok(Json(view(current)));
        };
        let updated = store.rename_workspace(&id, valid_name(&name)?)?;
        audit(
            store.as_ref(),
            &principal,
            "workspace.update",
            &id,
            json!({"name": updated.name}),
        )?;
        Ok(Json(view(updated)))
    }

    pub async fn archive(
        State(state): State<AppState>,
        Extension(principal): Extension<Principal>,
        Path(id): Path<String>,
    ) -> Result<Json<WorkspaceView>, ApiError> {
        let store = store(&state)?;
        find(&state, &id)?;
        let archived = store.archive_workspace(&id)?;
        audit(
            store.as_ref(),
            &principal,
            "workspace.archive",
            &id,
            json!({}),
        )?;
        Ok(Json(view(archived)))
    }
}

pub mod members {
    use super::*;

    #[derive(Serialize)]
    pub struct MemberView {
        #[serde(rename = "type")]
        kind: &'static str,
        user_id: String,
        workspace_id: String,
        workspace_role: String,
    }

    fn view(m: Member) -> MemberView {
        MemberView {
            kind: "workspace_member",
            user_id: m.user_id,
            workspace_id: m.workspace_id,
            workspace_role: m.workspace_role,
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CreateBody {
        user_id: String,
        workspace_role: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct UpdateBody {
        workspace_role: String,
    }

    fn find(state: &AppState, workspace_id: &str, user_id: &str) -> Result<Member, ApiError> {
        store(state)?.member(workspace_id, user_id)?.ok_or_else(|| {
            ApiError::not_found(format!(
                "user {user_id} is not a member of workspace {workspace_id}"
            ))
        })
    }

    pub async fn list(
        State(state): State<AppState>,
        Path(workspace_id): Path<String>,
        params: Params,
    ) -> Result<Json<Page<MemberView>>, ApiError> {
        super::workspaces::find(&state, &workspace_id)?;
        let all = store(&state)?.list_members(&workspace_id)?;
        let views = all.into_iter().map(view).collect();
        Ok(Json(page(
            views,
            |m: &MemberView| m.user_id.as_str(),
            &params,
        )?))
    }

    pub async fn create(
        State(state): State<AppState>,
        Extension(principal): Extension<Principal>,
        Path(workspace_id): Path<String>,
        JsonBody(raw): JsonBody,
    ) -> Result<Json<MemberView>, ApiError> {
        let request: CreateBody = body(&raw)?;
        check_role("workspace_role", &request.workspace_role, WORKSPACE_ROLES)?;
        super::workspaces::find(&state, &workspace_id)?;
        let store = store(&state)?;
        let member = store.add_member(&workspace_id, &request.user_id, &request.workspace_role)?;
        audit(
            store.as_ref(),
            &principal,
            "workspace_member.create",
            &workspace_id,
            json!({"user_id": request.user_id, "workspace_role": request.workspace_role}),
        )?;
        Ok(Json(view(member)))
    }

    pub async fn retrieve(
        State(state): State<AppState>,
        Path((workspace_id, user_id)): Path<(String, String)>,
    ) -> Result<Json<MemberView>, ApiError> {
        Ok(Json(view(find(&state, &workspace_id, &user_id)?)))
    }

    pub async fn update(
        State(state): State<AppState>,
        Extension(principal): Extension<Principal>,
        Path((workspace_id, user_id)): Path<(String, String)>,
        JsonBody(raw): JsonBody,
    ) -> Result<Json<MemberView>, ApiError> {
        let request: UpdateBody = body(&raw)?;
        check_role("workspace_role", &request.workspace_role, WORKSPACE_ROLES)?;
        find(&state, &workspace_id, &user_id)?;
        let store = store(&state)?;
        let member = store.set_member_role(&workspace_id, &user_id, &request.workspace_role)?;
        audit(
            store.as_ref(),
            &principal,
            "workspace_member.update",
            &workspace_id,
            json!({"user_id": user_id, "workspace_role": request.workspace_role}),
        )?;
        Ok(Json(view(member)))
    }

    pub async fn delete(
        State(state): State<AppState>,
        Extension(principal): Extension<Principal>,
        Path((workspace_id, user_id)): Path<(String, String)>,
    ) -> Result<Json<serde_json::Value>, ApiError> {
        find(&state, &workspace_id, &user_id)?;
        let store = store(&state)?;
        store.remove_member(&workspace_id, &user_id)?;
        audit(
            store.as_ref(),
            &principal,
            "workspace_member.delete",
            &workspace_id,
            json!({"user_id": user_id}),
        )?;
        Ok(Json(json!({
            "type": "workspace_member_deleted",
            "user_id": user_id,
            "workspace_id": workspace_id,
        })))
    }
}

pub mod users {
    use super::*;

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
}

pub mod api_keys {
    use super::*;

    #[derive(Serialize)]
    pub struct ApiKeyView {
        id: String,
        #[serde(rename = "type")]
        kind: &'static str,
        name: String,
        status: &'static str,
        created_at: String,
        created_by: serde_json::Value,
        partial_key_hint: String,
        workspace_id: Option<String>,
        expires_at: Option<String>,
        scope: serde_json::Value,
    }

    fn view(k: ApiKey) -> ApiKeyView {
        ApiKeyView {
            id: k.id,
            kind: "api_key",
            name: k.name,
            status: k.status.as_str(),
            created_at: rfc3339_secs(k.created_at),
            // Keys are created by the operator on the command line.
            created_by: json!({"id": "missive-cli", "type": "service_account"}),
            partial_key_hint: k.hint,
            scope: match &k.workspace_id {
                Some(id) => json!({"type": "workspace", "workspace_id": id}),
                None => json!({"type": "organization"}),
            },
            workspace_id: k.workspace_id,
            expires_at: k.expires_at.map(rfc3339_secs),
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct UpdateBody {
        name: Option<String>,
        status: Option<String>,
    }

    /// Workspace keys only: admin keys are not Admin API resources.
    fn find(state: &AppState, id: &str) -> Result<ApiKey, ApiError> {
        store(state)?
            .api_key(id)?
            .filter(|k| k.kind == KeyKind::Standard)
            .ok_or_else(|| ApiError::not_found(format!("API key {id} not found")))
    }

    pub async fn list(
        State(state): State<AppState>,
        params: Params,
    ) -> Result<Json<Page<ApiKeyView>>, ApiError> {
        let status = params.one("status");
        if let Some(status) = status {
            if KeyStatus::parse(status).is_none() {
                return Err(ApiError::invalid(format!(
                    "status: `{status}` is not one of active, inactive, archived, expired"
                )));
            }
        }
        let workspace = params.one("workspace_id");
        let keys = store(&state)?
            .list_api_keys()?
            .into_iter()
            .filter(|k| k.kind == KeyKind::Standard)
            .filter(|k| status.is_none_or(|s| k.status.as_str() == s))
            .filter(|k| workspace.is_none_or(|w| k.workspace_id.as_deref() == Some(w)))
            .map(view)
            .collect();
        Ok(Json(page(keys, |k: &ApiKeyView| k.id.as_str(), &params)?))
    }

    pub async fn retrieve(
        State(state): State<AppState>,
        Path(id): Path<String>,
    ) -> Result<Json<ApiKeyView>, ApiError> {
        Ok(Json(view(find(&state, &id)?)))
    }

    pub async fn update(
        State(state): State<AppState>,
        Extension(principal): Extension<Principal>,
        Path(id): Path<String>,
        JsonBody(raw): JsonBody,
    ) -> Result<Json<ApiKeyView>, ApiError> {
        let request: UpdateBody = body(&raw)?;
        let status = match request.status.as_deref() {
            None => None,
            Some(s @ ("active" | "inactive" | "archived")) => KeyStatus::parse(s),
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "status: `{other}` is not one of active, inactive, archived"
                )))
            }
        };
        if let Some(name) = &request.name {
            if name.trim().is_empty() || name.chars().count() > 500 {
                return Err(ApiError::invalid("name: must be 1 to 500 characters"));
            }
        }
        find(&state, &id)?;
        let store = store(&state)?;
        let updated = store.update_api_key(&id, request.name.as_deref(), status)?;
        audit(
            store.as_ref(),
            &principal,
            "api_key.update",
            &id,
            json!({"name": request.name, "status": request.status}),
        )?;
        Ok(Json(view(updated)))
    }
}
