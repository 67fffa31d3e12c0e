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

/// What a label points at: one version, or an A/B split of weights over versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelTarget {
    Version(i64),
    Split(Vec<SplitShare>),
}

/// One version's share of a split: it serves `weight` out of the split's total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitShare {
    pub version: i64,
    pub weight: u32,
}

/// A named entry: its versions, oldest first, and its labels, by label name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    pub name: String,
    pub versions: Vec<RegistryVersion>,
    pub labels: Vec<(String, LabelTarget)>,
}

impl RegistryEntry {
    pub fn version(&self, version: i64) -> Option<&RegistryVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    pub fn label(&self, label: &str) -> Option<&LabelTarget> {
        self.labels
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, target)| target)
    }

    /// The version a label points at, when it points at one (not a split).
    pub fn labelled(&self, label: &str) -> Option<&RegistryVersion> {
        match self.label(label)? {
            LabelTarget::Version(version) => self.version(*version),
            LabelTarget::Split(_) => None,
        }
    }
}

/// How a label row stores its target: the `version` column (a split's first version),
/// and the `split` column, `VERSION:WEIGHT,…`, for a split.
pub(crate) fn label_columns(
    entry: Option<&RegistryEntry>,
    kind: RegistryKind,
    name: &str,
    target: &LabelTarget,
) -> Result<(i64, Option<String>), crate::Error> {
    let entry = entry.ok_or_else(|| crate::Error::not_found(kind.as_str(), name))?;
    let versions: Vec<i64> = match target {
        LabelTarget::Version(version) => vec![*version],
        LabelTarget::Split(shares) => shares.iter().map(|s| s.version).collect(),
    };
    if let Some(missing) = versions.iter().find(|v| entry.version(**v).is_none()) {
        return Err(crate::Error::not_found(
            kind.as_str(),
            &format!("{name}@{missing}"),
        ));
    }
    Ok(match target {
        LabelTarget::Version(version) => (*version, None),
        LabelTarget::Split(shares) => (
            versions.first().copied().unwrap_or_default(),
            Some(
                shares
                    .iter()
                    .map(|s| format!("{}:{}", s.version, s.weight))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ),
    })
}

/// A label row's columns back into its target.
pub(crate) fn label_target(version: i64, split: Option<String>) -> LabelTarget {
    let Some(split) = split else {
        return LabelTarget::Version(version);
    };
    LabelTarget::Split(
        split
            .split(',')
            .filter_map(|share| {
                let (version, weight) = share.split_once(':')?;
                Some(SplitShare {
                    version: version.parse().ok()?,
                    weight: weight.parse().ok()?,
                })
            })
            .collect(),
    )
}

/// Versions (sorted by name, then version) and `(name, label, target)` rows (sorted by
/// name) into entries.
pub(crate) fn group(
    versions: Vec<RegistryVersion>,
    labels: Vec<(String, String, LabelTarget)>,
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
