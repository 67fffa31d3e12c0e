//! The Admin API's organization, shaped as the Claude API shapes them.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::store;
use crate::error::ApiError;
use crate::state::AppState;

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
