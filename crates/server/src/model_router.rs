//! Model names and aliases to backends.

use std::sync::Arc;

use missive_backend::Backend;

use crate::error::ApiError;

/// An alias: an exact name, or a prefix pattern ending in `*` (`claude-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub pattern: String,
    pub target: String,
}

impl Alias {
    fn matches(&self, name: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.pattern == name,
        }
    }
}

#[derive(Clone, Default)]
pub struct ModelRouter {
    models: Vec<Arc<dyn Backend>>,
    aliases: Vec<Alias>,
    /// Text-only models whose operator wants images refused rather than replaced by a
    /// placeholder (`[models.NAME] images = "reject"`).
    rejecting_images: Vec<String>,
}

impl ModelRouter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_model(mut self, backend: Arc<dyn Backend>) -> Self {
        self.models.push(backend);
        self
    }

    /// Adds an alias; exact aliases win over patterns, earlier patterns over later ones.
    pub fn with_alias(mut self, pattern: &str, target: &str) -> Self {
        self.aliases.push(Alias {
            pattern: pattern.to_owned(),
            target: target.to_owned(),
        });
        self
    }

    /// Requests with images for text-only model `id` are refused instead of read with
    /// placeholders.
    pub fn rejecting_images(mut self, id: &str) -> Self {
        self.rejecting_images.push(id.to_owned());
        self
    }

    pub fn rejects_images(&self, id: &str) -> bool {
        self.rejecting_images.iter().any(|m| m == id)
    }

    pub fn models(&self) -> &[Arc<dyn Backend>] {
        &self.models
    }

    /// Exact aliases with the backend each names, in the order they were added. Patterns
    /// (`claude-*`) resolve but name no model to list.
    pub fn exact_aliases(&self) -> impl Iterator<Item = (&str, &Arc<dyn Backend>)> {
        self.aliases
            .iter()
            .filter(|a| !a.pattern.ends_with('*') && self.by_id(&a.pattern).is_none())
            .filter_map(|a| Some((a.pattern.as_str(), self.by_id(&a.target)?)))
    }

    fn by_id(&self, id: &str) -> Option<&Arc<dyn Backend>> {
        self.models.iter().find(|m| m.descriptor().id == id)
    }

    /// The backend serving `name`, which may be a model id or an alias.
    pub fn resolve(&self, name: &str) -> Result<Arc<dyn Backend>, ApiError> {
        if let Some(model) = self.by_id(name) {
            return Ok(Arc::clone(model));
        }
        let exact = self
            .aliases
            .iter()
            .find(|a| !a.pattern.ends_with('*') && a.matches(name));
        let alias = exact.or_else(|| self.aliases.iter().find(|a| a.matches(name)));
        alias
            .and_then(|a| self.by_id(&a.target))
            .map(Arc::clone)
            .ok_or_else(|| ApiError::not_found(format!("model: {name}")))
    }
}
