//! The organization and who belongs to it.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub display_color: String,
    /// Unix seconds.
    pub created_at: i64,
    pub archived_at: Option<i64>,
}

/// The workspace every install starts with; keys created without one belong here.
pub const DEFAULT_WORKSPACE_ID: &str = "wrkspc_default";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    /// Unix seconds.
    pub added_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub workspace_id: String,
    pub user_id: String,
    pub workspace_role: String,
}

/// Organization roles the Claude API knows.
pub const ORG_ROLES: &[&str] = &["user", "developer", "billing", "admin", "claude_code_user"];

/// Workspace roles the Claude API knows.
pub const WORKSPACE_ROLES: &[&str] = &[
    "workspace_user",
    "workspace_developer",
    "workspace_restricted_developer",
    "workspace_admin",
    "workspace_billing",
];

/// One entry of the audit log: who did what to which resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The key (or `cli`) that acted.
    pub actor: String,
    pub action: String,
    pub target: String,
    /// JSON text with the change.
    pub detail: String,
}

/// Traffic switched off: for one workspace, one model, both, or (both `None`) everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillSwitch {
    pub workspace_id: Option<String>,
    pub model: Option<String>,
}

impl KillSwitch {
    /// Whether this switch stops a request from `workspace_id` for any of `models`.
    pub fn covers(&self, workspace_id: &str, models: &[&str]) -> bool {
        self.workspace_id
            .as_deref()
            .is_none_or(|w| w == workspace_id)
            && self.model.as_deref().is_none_or(|m| models.contains(&m))
    }
}

/// Limits set for one workspace at run time; `None` keeps what the config says.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkspaceLimits {
    pub requests_per_minute: Option<u32>,
    pub input_tokens_per_minute: Option<u32>,
    pub output_tokens_per_minute: Option<u32>,
    /// Per calendar month (UTC), in USD.
    pub spend_cap_usd: Option<f64>,
    /// Keep the content of the workspace's Messages requests (redacted) for this many days;
    /// `None`: content is never kept.
    pub capture_content_days: Option<u32>,
}

impl WorkspaceLimits {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
