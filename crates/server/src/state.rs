use std::sync::Arc;

use crate::auth::Auth;
use crate::model_router::ModelRouter;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub models: Arc<ModelRouter>,
    pub auth: Arc<Auth>,
}

impl AppState {
    pub fn new(models: ModelRouter, auth: Auth) -> Self {
        Self {
            models: Arc::new(models),
            auth: Arc::new(auth),
        }
    }
}
