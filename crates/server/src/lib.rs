//! The HTTP face of Missive: the Claude API's routes, auth, and streaming.
//!
//! Data flows one way: request bytes → `missive_protocol` types → [`model_router`] picks a
//! `Backend` → `BackendEvent`s → [`sse`] turns them into Claude events or one `Message`.
//! Depends on `protocol`, `backend` and `store`; never on the engine, so its tests build
//! without llama.cpp. Only this crate knows the mapping from failures to Claude errors.

mod access;
mod admission;
mod auth;
mod batch_results;
pub mod batch_worker;
mod billing;
mod capture;
pub mod console_oidc;
pub mod console_session;
mod context_window;
pub mod controls;
pub mod documents;
mod error;
mod extract;
pub mod file_storage;
pub mod ids;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod model_router;
mod params;
pub mod policy;
pub mod registry;
mod request_id;
pub mod request_log;
mod routes;
pub mod shared;
pub mod spend;
mod sse;
mod state;
pub mod thinking;

pub use auth::Auth;
pub use error::ApiError;
pub use file_storage::FilesConfig;
pub use model_router::ModelRouter;
pub use routes::app;
pub use state::{AppState, Services};
