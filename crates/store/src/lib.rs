//! Durable state behind one [`Store`] trait: SQLite (WAL) under the data directory by
//! default, PostgreSQL for several replicas sharing one state. Knows nothing of HTTP or the wire format:
//! the server converts between these types and the Claude API's.

mod batches;
mod keys;
mod ledger;
mod postgres;
mod registry;
mod request_log;
mod sqlite;
mod tenancy;

pub use batches::{Batch, BatchResult, FileMeta, NewBatchRequest, PendingRequest, RequestCounts};
pub use keys::{hash_key, ApiKey, KeyKind, KeyStatus, NewApiKey};
pub use ledger::{Dimension, TokenCounts, UsageQuery, UsageRecord, UsageRow, UsageWriter};
pub use postgres::PostgresStore;
pub use registry::{
    LabelTarget, RegistryEntry, RegistryKind, RegistryVersion, SplitShare, PRODUCTION,
};
pub use request_log::{CapturedContent, RequestLogEntry, RequestLogQuery};
pub use sqlite::SqliteStore;
pub use tenancy::{
    AuditEntry, KillSwitch, Member, Organization, User, Workspace, WorkspaceLimits,
    DEFAULT_WORKSPACE_ID, ORG_ROLES, WORKSPACE_ROLES,
};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres connection pool: {0}")]
    Pool(String),
    #[error("starting the store's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the store has shut down")]
    Stopped,
    #[error("creating the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("no {kind} with id {id}")]
    NotFound { kind: &'static str, id: String },
    /// A uniqueness rule would break (a second workspace of the same name, a user added twice).
    #[error("{0}")]
    Conflict(String),
    #[error("the store's lock was poisoned by a panic")]
    Poisoned,
}

impl Error {
    pub(crate) fn not_found(kind: &'static str, id: &str) -> Self {
        Error::NotFound {
            kind,
            id: id.to_owned(),
        }
    }
}

/// Everything Missive keeps across restarts.
pub trait Store: Send + Sync {
    fn organization(&self) -> Result<Organization, Error>;

    fn create_workspace(&self, name: &str) -> Result<Workspace, Error>;
    fn workspace(&self, id: &str) -> Result<Option<Workspace>, Error>;
    fn workspace_by_name(&self, name: &str) -> Result<Option<Workspace>, Error>;
    /// Oldest first.
    fn list_workspaces(&self, include_archived: bool) -> Result<Vec<Workspace>, Error>;
    fn rename_workspace(&self, id: &str, name: &str) -> Result<Workspace, Error>;
    /// Archives the workspace and every key in it, at once.
    fn archive_workspace(&self, id: &str) -> Result<Workspace, Error>;

    /// Creates a key; the secret is returned once and only its hash is stored. Standard keys
    /// need a workspace; admin keys have none.
    fn create_api_key(
        &self,
        name: &str,
        kind: KeyKind,
        workspace_id: Option<&str>,
    ) -> Result<NewApiKey, Error>;
    /// The key whose secret hashes to `key_hash`, whatever its status.
    fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>, Error>;
    fn api_key(&self, id: &str) -> Result<Option<ApiKey>, Error>;
    /// Oldest first.
    fn list_api_keys(&self) -> Result<Vec<ApiKey>, Error>;
    fn update_api_key(
        &self,
        id: &str,
        name: Option<&str>,
        status: Option<KeyStatus>,
    ) -> Result<ApiKey, Error>;

    /// Sets when a key stops working (unix seconds); `None`: never.
    fn set_api_key_expiry(&self, id: &str, expires_at: Option<i64>) -> Result<ApiKey, Error>;

    fn add_user(&self, email: &str, name: &str, role: &str) -> Result<User, Error>;
    fn user(&self, id: &str) -> Result<Option<User>, Error>;
    fn list_users(&self, email: Option<&str>) -> Result<Vec<User>, Error>;
    fn set_user_role(&self, id: &str, role: &str) -> Result<User, Error>;
    /// Removes the user and their workspace memberships.
    fn remove_user(&self, id: &str) -> Result<(), Error>;

    fn add_member(&self, workspace_id: &str, user_id: &str, role: &str) -> Result<Member, Error>;
    fn member(&self, workspace_id: &str, user_id: &str) -> Result<Option<Member>, Error>;
    fn list_members(&self, workspace_id: &str) -> Result<Vec<Member>, Error>;
    fn set_member_role(
        &self,
        workspace_id: &str,
        user_id: &str,
        role: &str,
    ) -> Result<Member, Error>;
    fn remove_member(&self, workspace_id: &str, user_id: &str) -> Result<(), Error>;

    /// Writes the records in one transaction: all are durable when this returns.
    fn record_usage(&self, records: &[UsageRecord]) -> Result<(), Error>;
    /// The same commit without a waiting thread, where the store's driver is async. `None`:
    /// call [`Store::record_usage`] from a thread that may block.
    fn usage_writer(&self) -> Option<UsageWriter> {
        None
    }
    /// Billed (`messages`) usage, bucketed and grouped as asked; empty combinations omitted.
    fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, Error>;
    /// Appends rows to the request log.
    fn log_requests(&self, entries: &[RequestLogEntry]) -> Result<(), Error>;
    /// Request log rows, newest first.
    fn request_log(&self, query: &RequestLogQuery) -> Result<Vec<RequestLogEntry>, Error>;
    /// Drops request log rows older than `before_ms`; returns how many.
    fn prune_request_log(&self, before_ms: i64) -> Result<u64, Error>;
    /// Keeps captured request content until each row's expiry.
    fn capture_content(&self, rows: &[CapturedContent]) -> Result<(), Error>;
    /// A request's captured content, unless it has expired.
    fn captured_content(
        &self,
        workspace_id: &str,
        request_id: &str,
    ) -> Result<Option<CapturedContent>, Error>;
    /// Drops captured content whose expiry is before `now_ms`.
    fn prune_captured_content(&self, now_ms: i64) -> Result<u64, Error>;

    fn audit(&self, entry: &AuditEntry) -> Result<(), Error>;
    /// Newest first.
    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, Error>;

    /// Turns traffic off (or back on) for a workspace, a model, or a model in a workspace;
    /// `None` for both stops everything.
    fn set_kill_switch(
        &self,
        workspace_id: Option<&str>,
        model: Option<&str>,
        on: bool,
    ) -> Result<(), Error>;
    /// Whether any switch covers this workspace and model.
    fn is_killed(&self, workspace_id: &str, model: &str) -> Result<bool, Error>;
    fn kill_switches(&self) -> Result<Vec<KillSwitch>, Error>;
    /// Sets a workspace's run-time limits (all `None`: back to the config's).
    fn set_workspace_limits(
        &self,
        workspace_id: &str,
        limits: &WorkspaceLimits,
    ) -> Result<(), Error>;
    /// Every workspace's run-time limits, by workspace id.
    fn workspace_limits(&self) -> Result<Vec<(String, WorkspaceLimits)>, Error>;

    /// Stores a batch and its requests in one transaction (a repeated `custom_id` is a
    /// conflict naming it).
    fn create_batch(
        &self,
        workspace_id: &str,
        api_key_id: &str,
        expires_at_ms: i64,
        requests: &[NewBatchRequest],
    ) -> Result<Batch, Error>;
    /// The batch, if it exists in this workspace.
    fn batch(&self, workspace_id: &str, id: &str) -> Result<Option<Batch>, Error>;
    /// Newest first.
    fn list_batches(&self, workspace_id: &str) -> Result<Vec<Batch>, Error>;
    fn cancel_batch(&self, workspace_id: &str, id: &str) -> Result<Batch, Error>;
    /// Only an ended batch; its results go with it.
    fn delete_batch(&self, workspace_id: &str, id: &str) -> Result<(), Error>;
    /// Up to `limit` requests to run, oldest batch first, now leased to `owner` (a replica)
    /// for `lease_ms`. Requests another owner holds a live lease on are left out, and so are
    /// those in `skip` (what `owner` runs now); a lease that runs out, because its replica
    /// died, puts the request back for anyone, and a replica restarted under the same name
    /// takes its own back at once.
    fn claim_batch_requests(
        &self,
        owner: &str,
        limit: usize,
        lease_ms: i64,
        skip: &[(String, i64)],
    ) -> Result<Vec<PendingRequest>, Error>;
    /// Extends `owner`'s leases on the requests it has not finished.
    fn renew_batch_leases(&self, owner: &str, lease_ms: i64) -> Result<(), Error>;
    /// Gives up `owner`'s lease on a request it will not run now (the model was busy), so
    /// another replica, or a cancel, need not wait for the lease to run out.
    fn release_batch_request(&self, owner: &str, batch_id: &str, idx: i64) -> Result<(), Error>;
    /// Stores a result and its usage row together, once: false if the request had already
    /// finished (canceled meanwhile, or completed before a crash).
    fn complete_batch_request(
        &self,
        batch_id: &str,
        idx: i64,
        result_type: &str,
        result: &str,
        usage: Option<&UsageRecord>,
    ) -> Result<bool, Error>;
    /// Ends canceled and expired batches, except those with a request in `running` or under
    /// a live lease (running on another replica).
    fn settle_batches(&self, running: &[String]) -> Result<(), Error>;
    /// Finished results in submission order, after `after_idx`.
    fn batch_results(
        &self,
        batch_id: &str,
        after_idx: i64,
        limit: usize,
    ) -> Result<Vec<BatchResult>, Error>;

    fn add_file(&self, file: &FileMeta) -> Result<(), Error>;
    fn file(&self, workspace_id: &str, id: &str) -> Result<Option<FileMeta>, Error>;
    /// Newest first.
    fn list_files(&self, workspace_id: &str) -> Result<Vec<FileMeta>, Error>;
    fn delete_file(&self, workspace_id: &str, id: &str) -> Result<(), Error>;

    /// Moves whenever keys, workspaces or kill switches change, whoever changed them: what
    /// the request path caches is current while this stays put. A change made through
    /// another handle (the CLI, another replica) shows within a second.
    fn control_generation(&self) -> Result<u64, Error>;
    /// Counts control changes made through this handle (no IO): lets a cache in the same
    /// process see its own changes at once, without asking the database.
    fn local_control_changes(&self) -> u64;

    /// Stores `body` as the next version of `name` in the workspace's registry (version 1,
    /// labelled [`PRODUCTION`], for a new name). Versions never change.
    fn add_registry_version(
        &self,
        workspace_id: &str,
        kind: RegistryKind,
        name: &str,
        body: &str,
    ) -> Result<RegistryVersion, Error>;
    /// The entry with every version and label.
    fn registry_entry(
        &self,
        workspace_id: &str,
        kind: RegistryKind,
        name: &str,
    ) -> Result<Option<RegistryEntry>, Error>;
    /// Every entry of the workspace, by name.
    fn list_registry(
        &self,
        workspace_id: &str,
        kind: RegistryKind,
    ) -> Result<Vec<RegistryEntry>, Error>;
    /// Points `label` at a version, or splits it over versions; each must exist.
    fn set_registry_label(
        &self,
        workspace_id: &str,
        kind: RegistryKind,
        name: &str,
        label: &str,
        target: &LabelTarget,
    ) -> Result<RegistryEntry, Error>;

    /// The named secret, created (`len` random bytes) on first use and kept thereafter.
    fn secret(&self, name: &str, len: usize) -> Result<Vec<u8>, Error>;
}

pub(crate) fn now_secs() -> i64 {
    now_ms() / 1000
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}
