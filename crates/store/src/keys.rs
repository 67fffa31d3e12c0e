use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

/// A key's status as the Admin API reports it. `Expired` is derived from `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
    Archived,
    Expired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Inactive => "inactive",
            KeyStatus::Archived => "archived",
            KeyStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(KeyStatus::Active),
            "inactive" => Some(KeyStatus::Inactive),
            "archived" => Some(KeyStatus::Archived),
            "expired" => Some(KeyStatus::Expired),
            _ => None,
        }
    }
}

/// What a key may call: the Messages API in one workspace, or the Admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Standard,
    Admin,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Standard => "standard",
            KeyKind::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "standard" => Some(KeyKind::Standard),
            "admin" => Some(KeyKind::Admin),
            _ => None,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            KeyKind::Standard => "sk-ant-api03-",
            KeyKind::Admin => "sk-ant-admin01-",
        }
    }
}

/// A stored API key: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub kind: KeyKind,
    /// `None` for admin keys, which belong to the organization.
    pub workspace_id: Option<String>,
    pub workspace_name: Option<String>,
    /// The secret's first and last characters, for people to recognise it.
    pub hint: String,
    pub status: KeyStatus,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

impl ApiKey {
    /// Whether the key may be used now: active, not expired, its workspace not archived.
    pub fn usable(&self) -> bool {
        self.status == KeyStatus::Active && self.expires_at.is_none_or(|at| at > crate::now_secs())
    }
}

/// A key's columns as both stores keep them; [`ApiKey`] derives what they leave implicit.
pub(crate) struct StoredKey {
    pub id: String,
    pub name: String,
    pub kind: String,
    /// Empty for admin keys.
    pub workspace_id: String,
    pub workspace_name: Option<String>,
    pub hint: String,
    pub status: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

impl From<StoredKey> for ApiKey {
    fn from(k: StoredKey) -> Self {
        let mut status = KeyStatus::parse(&k.status).unwrap_or(KeyStatus::Inactive);
        if status == KeyStatus::Active && k.expires_at.is_some_and(|at| at <= crate::now_secs()) {
            status = KeyStatus::Expired;
        }
        ApiKey {
            id: k.id,
            name: k.name,
            kind: KeyKind::parse(&k.kind).unwrap_or(KeyKind::Standard),
            workspace_id: (!k.workspace_id.is_empty()).then_some(k.workspace_id),
            workspace_name: k.workspace_name,
            hint: k.hint,
            status,
            created_at: k.created_at,
            expires_at: k.expires_at,
        }
    }
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

pub(crate) fn generate_secret(kind: KeyKind) -> String {
    let body = Alphanumeric.sample_string(&mut rand::rng(), 86);
    format!("{}{body}AA", kind.prefix())
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
