//! The model catalog: names `missive pull` understands, and where their bytes come from.

use anyhow::Context;
use serde::Deserialize;

const CATALOG: &str = include_str!("../catalog.toml");

pub const DEFAULT_MODEL: &str = "qwen2.5-coder-0.5b-instruct";

#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub name: String,
    pub description: String,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    #[serde(default)]
    pub pypi: Vec<String>,
    pub url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Catalog {
    model: Vec<Entry>,
}

pub fn entries() -> anyhow::Result<Vec<Entry>> {
    let catalog: Catalog = toml::from_str(CATALOG).context("parsing the built-in model catalog")?;
    Ok(catalog.model)
}

pub fn find(name: &str) -> anyhow::Result<Option<Entry>> {
    Ok(entries()?.into_iter().find(|e| e.name == name))
}

#[cfg(test)]
mod tests {
    #[test]
    fn catalog_parses_and_holds_the_default_model() {
        let default = super::find(super::DEFAULT_MODEL).unwrap().unwrap();
        assert_eq!(default.pypi.len(), 6);
        assert_eq!(default.size, Some(491_400_064));
        assert!(super::find("gemma-3-270m").unwrap().is_some());
        let agent = super::find("qwen2.5-coder-1.5b-instruct").unwrap().unwrap();
        assert_eq!(agent.pypi.len(), 22);
    }
}
