//! The HTTP face of Missive: the Claude API's routes, auth, and streaming.
//!
//! Data flows one way: request bytes → `missive_protocol` types → [`model_router`] picks a
//! `Backend` → `BackendEvent`s → [`sse`] turns them into Claude events or one `Message`.
//! Depends on `protocol`, `backend` and `store`; never on the engine, so its tests build
//! without llama.cpp. Only this crate knows the mapping from failures to Claude errors.

mod access;
mod auth;
pub mod batch_worker;
pub mod controls;
pub mod documents;
mod error;
mod extract;
pub mod ids;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod model_router;
pub mod policy;
mod request_id;
mod routes;
pub mod spend;
mod sse;
mod state;
pub mod thinking;

pub use auth::Auth;
pub use error::ApiError;
pub use model_router::ModelRouter;
pub use routes::app;
pub use state::{AppState, FilesConfig};
