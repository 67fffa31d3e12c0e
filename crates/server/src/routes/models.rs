//! `GET /v1/models` and `GET /v1/models/{model_id}`.

use axum::extract::{Path, Query, State};
use axum::Json;
use missive_backend::ModelDescriptor;
use missive_protocol::models::{
    Lifecycle, ModelInfo, ModelTag, Page, ServerToolsCapability, Supported,
};
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    limit: Option<String>,
    after_id: Option<String>,
    before_id: Option<String>,
}

fn info(d: &ModelDescriptor, toolbox: &missive_tools::Toolbox) -> ModelInfo {
    let mut capabilities = d.capabilities.clone();
    // What this server does for every model it serves but a Claude API upstream's:
    // citations, PDFs read by their text layer, and the server tools the operator
    // configured.
    if !d.runs_server_tools {
        capabilities.citations = Supported::from(true);
        capabilities.pdf_input = Supported::from(true);
        capabilities.server_tools = ServerToolsCapability {
            supported: true,
            web_search: Supported::from(toolbox.search.is_some()),
            code_execution: Supported::from(toolbox.containers.is_some()),
        };
        capabilities.code_execution = Supported::from(toolbox.containers.is_some());
    }
    ModelInfo {
        kind: ModelTag::Model,
        id: d.id.clone(),
        display_name: d.display_name.clone(),
        created_at: d.created_at.clone(),
        max_input_tokens: Some(d.max_input_tokens),
        max_tokens: Some(d.max_output_tokens),
        capabilities: Some(capabilities),
        lifecycle: Lifecycle::Active,
        deprecated_at: None,
        retires_at: None,
        line: None,
    }
}

/// An exact alias as a model of its own: the model it names, under the alias's id.
fn alias_info(alias: &str, d: &ModelDescriptor, toolbox: &missive_tools::Toolbox) -> ModelInfo {
    ModelInfo {
        id: alias.to_owned(),
        display_name: format!("{alias} (alias of {})", d.id),
        ..info(d, toolbox)
    }
}

pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<ModelInfo>>, ApiError> {
    let limit = match params.limit.as_deref() {
        None => 20,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "limit: must be an integer from 1 to 1000 (got `{raw}`)"
                ))
            })?,
    };
    // Exact aliases are listed beside the ids they name: gateways that discover models by
    // keeping `claude*` ids find them.
    let aliases = state
        .models
        .exact_aliases()
        .map(|(alias, backend)| alias_info(alias, backend.descriptor(), &state.server_tools));
    let models: Vec<ModelInfo> = state
        .models
        .models()
        .iter()
        .map(|m| info(m.descriptor(), &state.server_tools))
        .chain(aliases)
        .collect();
    Ok(Json(Page::paginate(
        models,
        |m| m.id.as_str(),
        limit,
        params.after_id.as_deref(),
        params.before_id.as_deref(),
    )))
}

pub async fn retrieve(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
) -> Result<Json<ModelInfo>, ApiError> {
    if let Some((alias, backend)) = state.models.exact_aliases().find(|(a, _)| *a == model_id) {
        return Ok(Json(alias_info(
            alias,
            backend.descriptor(),
            &state.server_tools,
        )));
    }
    let backend = state.models.resolve(&model_id)?;
    Ok(Json(info(backend.descriptor(), &state.server_tools)))
}
