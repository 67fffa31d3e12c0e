//! Versioned prompts and schemas, per workspace: immutable numbered versions and labels
//! (`production`, `staging`, any name) that point at one of them.

/// What a registry entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryKind {
    /// A system prompt's text.
    Prompt,
    /// A JSON Schema, as JSON text.
    Schema,
}

impl RegistryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryKind::Prompt => "prompt",
            RegistryKind::Schema => "schema",
        }
    }
}

/// The label the first version gets, and the one a reference without a label means.
pub const PRODUCTION: &str = "production";

/// One version; never changed once stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryVersion {
    pub name: String,
    pub version: i64,
    pub body: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// A named entry: its versions, oldest first, and its labels, by label name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    pub name: String,
    pub versions: Vec<RegistryVersion>,
    pub labels: Vec<(String, i64)>,
}

impl RegistryEntry {
    pub fn version(&self, version: i64) -> Option<&RegistryVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    pub fn labelled(&self, label: &str) -> Option<&RegistryVersion> {
        let (_, version) = self.labels.iter().find(|(l, _)| l == label)?;
        self.version(*version)
    }
}

/// Versions (sorted by name, then version) and `(name, label, version)` rows (sorted by
/// name) into entries.
pub(crate) fn group(
    versions: Vec<RegistryVersion>,
    labels: Vec<(String, String, i64)>,
) -> Vec<RegistryEntry> {
    let mut entries: Vec<RegistryEntry> = Vec::new();
    for version in versions {
        match entries.last_mut() {
            Some(entry) if entry.name == version.name => entry.versions.push(version),
            _ => entries.push(RegistryEntry {
                name: version.name.clone(),
                versions: vec![version],
                labels: Vec::new(),
            }),
        }
    }
    for (name, label, version) in labels {
        if let Some(entry) = entries.iter_mut().find(|e| e.name == name) {
            entry.labels.push((label, version));
        }
    }
    entries
}
