//! The router: every path of the Claude API that Missive serves.

pub(crate) mod admin;
pub(crate) mod batches;
mod console;
pub(crate) mod files;
mod health;
pub(crate) mod messages;
pub(crate) mod models;
mod openai;
pub(crate) mod registry;

use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/messages", post(messages::create))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route(
            "/v1/messages/batches",
            post(batches::create).get(batches::list),
        )
        .route(
            "/v1/messages/batches/{batch_id}",
            get(batches::retrieve).delete(batches::delete),
        )
        .route(
            "/v1/messages/batches/{batch_id}/cancel",
            post(batches::cancel),
        )
        .route(
            "/v1/messages/batches/{batch_id}/results",
            get(batches::results),
        )
        .route("/v1/chat/completions", post(openai::create))
        .route("/v1/files", post(files::upload).get(files::list))
        .route(
            "/v1/files/{file_id}",
            get(files::retrieve).delete(files::delete),
        )
        .route("/v1/files/{file_id}/content", get(files::content))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{model_id}", get(models::retrieve))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::middleware,
        ));
    let registry = Router::new()
        .route(
            "/v1/missive/{kind}",
            post(registry::create).get(registry::list),
        )
        .route("/v1/missive/{kind}/{name}", get(registry::retrieve))
        .route("/v1/missive/{kind}/{name}/labels", post(registry::label))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::registry_middleware,
        ));
    let console = match state.console {
        Some(_) => console::routes(),
        None => Router::new(),
    };
    Router::new()
        .merge(api)
        .merge(registry)
        .merge(admin::routes(state.clone()))
        .merge(console)
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .merge(
            // Metrics name workspaces and their traffic: operators only.
            Router::new()
                .route("/metrics", get(crate::metrics::render))
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::auth::admin_middleware,
                )),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are bounded where they are read: `JsonBody` (32 MB), uploads (file size,
        // quota, multipart framing).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(crate::request_id::middleware))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("Not found: {}", uri.path()))
}

async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let err = ApiError::invalid(format!("Method {method} not allowed for {}", uri.path()));
    let mut response = err.into_response();
    *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    response
}
