use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
    Archived,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Inactive => "inactive",
            KeyStatus::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(KeyStatus::Active),
            "inactive" => Some(KeyStatus::Inactive),
            "archived" => Some(KeyStatus::Archived),
            _ => None,
        }
    }
}

/// A stored API key: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub workspace: String,
    /// The secret's first and last characters, for people to recognise it.
    pub hint: String,
    pub status: KeyStatus,
    pub created_at: i64,
}

/// A key just created: the only time its secret exists outside the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub key: ApiKey,
    pub secret: String,
}

/// The stored form of a secret: SHA-256, hex. Keys are 256-bit random, so a fast hash is
/// enough; lookups by hash reveal nothing about the secret.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) fn generate_secret() -> String {
    let body = Alphanumeric.sample_string(&mut rand::rng(), 86);
    format!("sk-ant-api03-{body}AA")
}

pub(crate) fn hint(secret: &str) -> String {
    let head: String = secret.chars().take(16).collect();
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{head}...{tail}")
}
