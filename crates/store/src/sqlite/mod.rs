//! The default store: one SQLite file in WAL mode, so the CLI can change keys while the
//! server runs, and a committed row survives the process being killed.

mod batches;
mod keys;
mod ledger;
mod registry;
mod tenancy;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use crate::request_log::{count, uncount};

use crate::{
    now_ms, ApiKey, AuditEntry, Batch, BatchResult, CapturedContent, Error, FileMeta, KeyKind,
    KeyStatus, KillSwitch, LabelTarget, Member, NewApiKey, NewBatchRequest, Organization,
    PendingRequest, RegistryEntry, RegistryKind, RegistryVersion, RequestLogEntry, RequestLogQuery,
    Store, UsageQuery, UsageRecord, UsageRow, User, Workspace, WorkspaceLimits,
};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_api_keys.sql"),
    include_str!("../../migrations/sqlite/0002_secrets.sql"),
    include_str!("../../migrations/sqlite/0003_tenancy.sql"),
    include_str!("../../migrations/sqlite/0004_control_generation.sql"),
    include_str!("../../migrations/sqlite/0005_batches_files.sql"),
    include_str!("../../migrations/sqlite/0006_server_tool_use.sql"),
    include_str!("../../migrations/sqlite/0007_batch_leases.sql"),
    include_str!("../../migrations/sqlite/0008_registry.sql"),
    include_str!("../../migrations/sqlite/0009_registry_splits_versions.sql"),
    include_str!("../../migrations/sqlite/0010_workspace_limits.sql"),
    include_str!("../../migrations/sqlite/0011_usage_by_endpoint.sql"),
    include_str!("../../migrations/sqlite/0012_capture_content.sql"),
];

/// Writes (the ledger's commits, admin changes) go through one connection, lookups on the
/// request path (keys, kill switches) through another, and reports through a third, so a
/// request never waits behind a commit or a long report; WAL lets the readers see every
/// committed write.
pub struct SqliteStore {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    /// The request log's own database file: its writes never wait for, or hold up, a
    /// ledger commit.
    requests: Mutex<Connection>,
    /// Reports (usage over a range): a scan of the ledger that may take a while, kept off
    /// the connection the request path reads through.
    reports: Mutex<Connection>,
    control_changes: AtomicU64,
    /// Dropping it stops the checkpointer thread.
    _checkpointer: Option<mpsc::Sender<()>>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::DataDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut writer = connect(path)?;
        migrate(&mut writer)?;
        writer.execute(
            "INSERT OR IGNORE INTO organization (id, name) SELECT ?1, 'Missive' WHERE NOT EXISTS (SELECT 1 FROM organization)",
            params![uuid::Uuid::new_v4().to_string()],
        )?;
        // The writer never checkpoints: copying the WAL into the database (and the fsync
        // that goes with it) would stall every ledger commit behind it. A thread does it.
        let checkpointer = spawn_checkpointer(connect(path)?);
        if checkpointer.is_some() {
            writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        }
        let reader = connect(path)?;
        Ok(Self {
            _checkpointer: checkpointer,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            requests: Mutex::new(connect_request_log(path)?),
            reports: Mutex::new(connect(path)?),
            control_changes: AtomicU64::new(0),
        })
    }

    /// A read on the request path.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
        let conn = self.reader.lock().map_err(|_| Error::Poisoned)?;
        f(&conn)
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
        let conn = self.writer.lock().map_err(|_| Error::Poisoned)?;
        f(&conn)
    }

    fn with_mut<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, Error>) -> Result<T, Error> {
        let mut conn = self.writer.lock().map_err(|_| Error::Poisoned)?;
        f(&mut conn)
    }
}

impl SqliteStore {
    /// A write to what the request path caches; counted once it is done.
    fn control<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
        let result = self.with(f);
        self.control_changes.fetch_add(1, Ordering::Release);
        result
    }

    fn control_mut<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let result = self.with_mut(f);
        self.control_changes.fetch_add(1, Ordering::Release);
        result
    }
}

/// The request log's database, beside the main one (`missive.db` → `missive-requests.db`).
/// A log, not a ledger: commits do not wait for the disk (`synchronous = NORMAL`), so a
/// power cut may lose its last rows; a crash of the process loses none.
fn connect_request_log(path: &Path) -> Result<Connection, Error> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "missive".to_owned());
    let conn = Connection::open(path.with_file_name(format!("{stem}-requests.db")))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(include_str!("../../migrations/sqlite/request_log.sql"))?;
    Ok(conn)
}

/// How often the WAL is copied into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

fn spawn_checkpointer(conn: Connection) -> Option<mpsc::Sender<()>> {
    let (stop, stopped) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("missive-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY)
            {
                // PASSIVE: copies what it can without blocking writers or readers.
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        });
    // Without the thread, the writer keeps SQLite's own checkpoints.
    spawned.ok().map(|_| stop)
}

fn connect(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: every commit (a billed response's ledger row, a batch result, a key change) is
    // on disk before it returns, whether the process or the machine goes down. The ledger
    // commits in groups, so this costs one fsync per group, not per request.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), Error> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (i, migration) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        // Each migration and its version bump commit together, so a crash cannot leave a
        // half-applied schema.
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// Maps a uniqueness failure to [`Error::Conflict`] with the given message.
fn conflict(err: rusqlite::Error, message: impl FnOnce() -> String) -> Error {
    match err {
        rusqlite::Error::SqliteFailure(e, _)
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Error::Conflict(message())
        }
        other => Error::Database(other),
    }
}

impl Store for SqliteStore {
    fn organization(&self) -> Result<Organization, Error> {
        self.with(|conn| {
            Ok(
                conn.query_row("SELECT id, name FROM organization LIMIT 1", [], |row| {
                    Ok(Organization {
                        id: row.get(0)?,
                        name: row.get(1)?,
                    })
                })?,
            )
        })
    }

    fn create_workspace(&self, name: &str) -> Result<Workspace, Error> {
        self.control(|conn| tenancy::create_workspace(conn, name))
    }

    fn workspace(&self, id: &str) -> Result<Option<Workspace>, Error> {
        self.read(|conn| tenancy::workspace(conn, "id", id))
    }

    fn workspace_by_name(&self, name: &str) -> Result<Option<Workspace>, Error> {
        self.read(|conn| tenancy::workspace(conn, "name", name))
    }

    fn list_workspaces(&self, include_archived: bool) -> Result<Vec<Workspace>, Error> {
        self.read(|conn| tenancy::list_workspaces(conn, include_archived))
    }

    fn rename_workspace(&self, id: &str, name: &str) -> Result<Workspace, Error> {
        self.control(|conn| tenancy::rename_workspace(conn, id, name))
    }

    fn archive_workspace(&self, id: &str) -> Result<Workspace, Error> {
        self.control_mut(|conn| tenancy::archive_workspace(conn, id))
    }

    fn create_api_key(
        &self,
        name: &str,
        kind: KeyKind,
        workspace_id: Option<&str>,
    ) -> Result<NewApiKey, Error> {
        self.control(|conn| keys::create(conn, name, kind, workspace_id))
    }

    fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>, Error> {
        self.read(|conn| keys::find(conn, "k.key_hash", key_hash))
    }

    fn api_key(&self, id: &str) -> Result<Option<ApiKey>, Error> {
        self.read(|conn| keys::find(conn, "k.id", id))
    }

    fn list_api_keys(&self) -> Result<Vec<ApiKey>, Error> {
        self.read(keys::list)
    }

    fn update_api_key(
        &self,
        id: &str,
        name: Option<&str>,
        status: Option<KeyStatus>,
    ) -> Result<ApiKey, Error> {
        self.control(|conn| keys::update(conn, id, name, status))
    }

    fn set_api_key_expiry(&self, id: &str, expires_at: Option<i64>) -> Result<ApiKey, Error> {
        self.control(|conn| keys::set_expiry(conn, id, expires_at))
    }

    fn add_user(&self, email: &str, name: &str, role: &str) -> Result<User, Error> {
        self.with(|conn| tenancy::add_user(conn, email, name, role))
    }

    fn user(&self, id: &str) -> Result<Option<User>, Error> {
        self.read(|conn| tenancy::user(conn, id))
    }

    fn list_users(&self, email: Option<&str>) -> Result<Vec<User>, Error> {
        self.read(|conn| tenancy::list_users(conn, email))
    }

    fn set_user_role(&self, id: &str, role: &str) -> Result<User, Error> {
        self.with(|conn| tenancy::set_user_role(conn, id, role))
    }

    fn remove_user(&self, id: &str) -> Result<(), Error> {
        self.with(|conn| tenancy::remove_user(conn, id))
    }

    fn add_member(&self, workspace_id: &str, user_id: &str, role: &str) -> Result<Member, Error> {
        self.with(|conn| tenancy::add_member(conn, workspace_id, user_id, role))
    }

    fn member(&self, workspace_id: &str, user_id: &str) -> Result<Option<Member>, Error> {
        self.read(|conn| tenancy::member(conn, workspace_id, user_id))
    }

    fn list_members(&self, workspace_id: &str) -> Result<Vec<Member>, Error> {
        self.read(|conn| tenancy::list_members(conn, workspace_id))
    }

    fn set_member_role(
        &self,
        workspace_id: &str,
        user_id: &str,
        role: &str,
    ) -> Result<Member, Error> {
        self.with(|conn| tenancy::set_member_role(conn, workspace_id, user_id, role))
    }

    fn remove_member(&self, workspace_id: &str, user_id: &str) -> Result<(), Error> {
        self.with(|conn| tenancy::remove_member(conn, workspace_id, user_id))
    }

    fn record_usage(&self, records: &[UsageRecord]) -> Result<(), Error> {
        self.with_mut(|conn| ledger::record(conn, records))
    }

    fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, Error> {
        let conn = self.reports.lock().map_err(|_| Error::Poisoned)?;
        ledger::usage(&conn, query)
    }

    fn log_requests(&self, entries: &[RequestLogEntry]) -> Result<(), Error> {
        let mut conn = self.requests.lock().map_err(|_| Error::Poisoned)?;
        {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(&format!(
                    "INSERT INTO request_log ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                    crate::request_log::COLUMNS
                ))?;
                for e in entries {
                    stmt.execute(params![
                        e.request_id,
                        e.at_ms,
                        e.workspace_id,
                        e.api_key_id,
                        e.method,
                        e.path,
                        e.status,
                        count(e.latency_ms),
                        e.model,
                        e.upstream,
                        e.prompt_version,
                        count(e.input_tokens),
                        count(e.output_tokens),
                        count(e.cache_read_input_tokens),
                        count(e.cache_creation_input_tokens),
                    ])?;
                }
            }
            tx.commit()?;
        }
        Ok(())
    }

    fn request_log(&self, query: &RequestLogQuery) -> Result<Vec<RequestLogEntry>, Error> {
        let conn = self.requests.lock().map_err(|_| Error::Poisoned)?;
        {
            let mut stmt =
                conn.prepare_cached(&crate::request_log::filter(["?1", "?2", "?3", "?4", "?5"]))?;
            let rows = stmt
                .query_map(
                    params![
                        query.workspace_id,
                        query.api_key_id,
                        query.model,
                        i64::from(query.errors_only),
                        count(query.limit as u64),
                    ],
                    |row| {
                        Ok(RequestLogEntry {
                            request_id: row.get(0)?,
                            at_ms: row.get(1)?,
                            workspace_id: row.get(2)?,
                            api_key_id: row.get(3)?,
                            method: row.get(4)?,
                            path: row.get(5)?,
                            status: row.get(6)?,
                            latency_ms: uncount(row.get(7)?),
                            model: row.get(8)?,
                            upstream: row.get(9)?,
                            prompt_version: row.get(10)?,
                            input_tokens: uncount(row.get(11)?),
                            output_tokens: uncount(row.get(12)?),
                            cache_read_input_tokens: uncount(row.get(13)?),
                            cache_creation_input_tokens: uncount(row.get(14)?),
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        }
    }

    fn prune_request_log(&self, before_ms: i64) -> Result<u64, Error> {
        let conn = self.requests.lock().map_err(|_| Error::Poisoned)?;
        let dropped = conn.execute(
            "DELETE FROM request_log WHERE at_ms < ?1",
            params![before_ms],
        )?;
        Ok(dropped as u64)
    }

    fn capture_content(&self, rows: &[CapturedContent]) -> Result<(), Error> {
        let mut conn = self.requests.lock().map_err(|_| Error::Poisoned)?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO request_content (request_id, workspace_id, at_ms, \
                 expires_at_ms, request, response) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for r in rows {
                stmt.execute(params![
                    r.request_id,
                    r.workspace_id,
                    r.at_ms,
                    r.expires_at_ms,
                    r.request,
                    r.response
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn captured_content(
        &self,
        workspace_id: &str,
        request_id: &str,
    ) -> Result<Option<CapturedContent>, Error> {
        let conn = self.requests.lock().map_err(|_| Error::Poisoned)?;
        let found = conn
            .query_row(
                "SELECT request_id, workspace_id, at_ms, expires_at_ms, request, response \
                 FROM request_content WHERE workspace_id = ?1 AND request_id = ?2 \
                 AND expires_at_ms > ?3",
                params![workspace_id, request_id, now_ms()],
                |row| {
                    Ok(CapturedContent {
                        request_id: row.get(0)?,
                        workspace_id: row.get(1)?,
                        at_ms: row.get(2)?,
                        expires_at_ms: row.get(3)?,
                        request: row.get(4)?,
                        response: row.get(5)?,
                    })
                },
            )
            .optional()?;
        Ok(found)
    }

    fn prune_captured_content(&self, now_ms: i64) -> Result<u64, Error> {
        let conn = self.requests.lock().map_err(|_| Error::Poisoned)?;
        let dropped = conn.execute(
            "DELETE FROM request_content WHERE expires_at_ms <= ?1",
            params![now_ms],
        )?;
        Ok(dropped as u64)
    }

    fn audit(&self, entry: &AuditEntry) -> Result<(), Error> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO audit_log (at_ms, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![entry.at_ms, entry.actor, entry.action, entry.target, entry.detail],
            )?;
            Ok(())
        })
    }

    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, Error> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT at_ms, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT ?1",
            )?;
            let entries = stmt
                .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                    Ok(AuditEntry {
                        at_ms: row.get(0)?,
                        actor: row.get(1)?,
                        action: row.get(2)?,
                        target: row.get(3)?,
                        detail: row.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(entries)
        })
    }

    fn set_kill_switch(
        &self,
        workspace_id: Option<&str>,
        model: Option<&str>,
        on: bool,
    ) -> Result<(), Error> {
        let workspace_id = workspace_id.unwrap_or("");
        let model = model.unwrap_or("");
        self.control(|conn| {
            if on {
                conn.execute(
                    "INSERT OR IGNORE INTO kill_switches (workspace_id, model, created_at) VALUES (?1, ?2, ?3)",
                    params![workspace_id, model, now_ms()],
                )?;
            } else {
                conn.execute(
                    "DELETE FROM kill_switches WHERE workspace_id = ?1 AND model = ?2",
                    params![workspace_id, model],
                )?;
            }
            Ok(())
        })
    }

    fn set_workspace_limits(
        &self,
        workspace_id: &str,
        limits: &WorkspaceLimits,
    ) -> Result<(), Error> {
        let limits = *limits;
        self.control(|conn| {
            if limits.is_empty() {
                conn.execute(
                    "DELETE FROM workspace_limits WHERE workspace_id = ?1",
                    params![workspace_id],
                )?;
            } else {
                conn.execute(
                    "INSERT INTO workspace_limits (workspace_id, requests_per_minute, \
                     input_tokens_per_minute, output_tokens_per_minute, spend_cap_usd, \
                     capture_content_days) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (workspace_id) DO UPDATE SET \
                     requests_per_minute = excluded.requests_per_minute, \
                     input_tokens_per_minute = excluded.input_tokens_per_minute, \
                     output_tokens_per_minute = excluded.output_tokens_per_minute, \
                     spend_cap_usd = excluded.spend_cap_usd, \
                     capture_content_days = excluded.capture_content_days",
                    params![
                        workspace_id,
                        limits.requests_per_minute,
                        limits.input_tokens_per_minute,
                        limits.output_tokens_per_minute,
                        limits.spend_cap_usd,
                        limits.capture_content_days
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn workspace_limits(&self) -> Result<Vec<(String, WorkspaceLimits)>, Error> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT workspace_id, requests_per_minute, input_tokens_per_minute, \
                 output_tokens_per_minute, spend_cap_usd, capture_content_days \
                 FROM workspace_limits ORDER BY workspace_id",
            )?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get(0)?,
                        WorkspaceLimits {
                            requests_per_minute: row.get(1)?,
                            input_tokens_per_minute: row.get(2)?,
                            output_tokens_per_minute: row.get(3)?,
                            spend_cap_usd: row.get(4)?,
                            capture_content_days: row.get(5)?,
                        },
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn is_killed(&self, workspace_id: &str, model: &str) -> Result<bool, Error> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT 1 FROM kill_switches WHERE workspace_id IN ('', ?1) AND model IN ('', ?2) LIMIT 1",
            )?;
            Ok(stmt
                .query_row(params![workspace_id, model], |_| Ok(()))
                .optional()?
                .is_some())
        })
    }

    fn kill_switches(&self) -> Result<Vec<KillSwitch>, Error> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare("SELECT workspace_id, model FROM kill_switches ORDER BY created_at")?;
            let rows = stmt
                .query_map([], |row| {
                    let workspace: String = row.get(0)?;
                    let model: String = row.get(1)?;
                    Ok(KillSwitch {
                        workspace_id: (!workspace.is_empty()).then_some(workspace),
                        model: (!model.is_empty()).then_some(model),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn create_batch(
        &self,
        workspace_id: &str,
        api_key_id: &str,
        expires_at_ms: i64,
        requests: &[NewBatchRequest],
    ) -> Result<Batch, Error> {
        self.with_mut(|conn| {
            batches::create(conn, workspace_id, api_key_id, expires_at_ms, requests)
        })
    }

    fn batch(&self, workspace_id: &str, id: &str) -> Result<Option<Batch>, Error> {
        self.read(|conn| batches::get(conn, workspace_id, id))
    }

    fn list_batches(&self, workspace_id: &str) -> Result<Vec<Batch>, Error> {
        self.read(|conn| batches::list(conn, workspace_id))
    }

    fn cancel_batch(&self, workspace_id: &str, id: &str) -> Result<Batch, Error> {
        self.with(|conn| batches::cancel(conn, workspace_id, id))
    }

    fn delete_batch(&self, workspace_id: &str, id: &str) -> Result<(), Error> {
        self.with_mut(|conn| batches::delete(conn, workspace_id, id))
    }

    fn claim_batch_requests(
        &self,
        owner: &str,
        limit: usize,
        lease_ms: i64,
        skip: &[(String, i64)],
    ) -> Result<Vec<PendingRequest>, Error> {
        self.with_mut(|conn| batches::claim(conn, owner, limit, lease_ms, skip))
    }

    fn renew_batch_leases(&self, owner: &str, lease_ms: i64) -> Result<(), Error> {
        self.with(|conn| batches::renew(conn, owner, lease_ms))
    }

    fn release_batch_request(&self, owner: &str, batch_id: &str, idx: i64) -> Result<(), Error> {
        self.with(|conn| {
            conn.execute(
                "UPDATE batch_requests SET leased_by = NULL, lease_until = NULL \
                 WHERE batch_id = ?1 AND idx = ?2 AND leased_by = ?3 AND result_type IS NULL",
                params![batch_id, idx, owner],
            )?;
            Ok(())
        })
    }

    fn complete_batch_request(
        &self,
        batch_id: &str,
        idx: i64,
        result_type: &str,
        result: &str,
        usage: Option<&UsageRecord>,
    ) -> Result<bool, Error> {
        self.with_mut(|conn| batches::complete(conn, batch_id, idx, result_type, result, usage))
    }

    fn settle_batches(&self, running: &[String]) -> Result<(), Error> {
        self.with_mut(|conn| batches::settle(conn, running))
    }

    fn batch_results(
        &self,
        batch_id: &str,
        after_idx: i64,
        limit: usize,
    ) -> Result<Vec<BatchResult>, Error> {
        self.read(|conn| batches::results(conn, batch_id, after_idx, limit))
    }

    fn add_file(&self, file: &FileMeta) -> Result<(), Error> {
        self.with(|conn| batches::add_file(conn, file))
    }

    fn file(&self, workspace_id: &str, id: &str) -> Result<Option<FileMeta>, Error> {
        self.read(|conn| batches::file(conn, workspace_id, id))
    }

    fn list_files(&self, workspace_id: &str) -> Result<Vec<FileMeta>, Error> {
        self.read(|conn| batches::list_files(conn, workspace_id))
    }

    fn delete_file(&self, workspace_id: &str, id: &str) -> Result<(), Error> {
        self.with(|conn| batches::delete_file(conn, workspace_id, id))
    }

    fn control_generation(&self) -> Result<u64, Error> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT value FROM control_generation WHERE id = 1")?;
            let value: i64 = stmt.query_row([], |row| row.get(0))?;
            Ok(u64::try_from(value).unwrap_or(0))
        })
    }

    fn local_control_changes(&self) -> u64 {
        self.control_changes.load(Ordering::Acquire)
    }

    fn add_registry_version(
        &self,
        workspace_id: &str,
        kind: RegistryKind,
        name: &str,
        body: &str,
    ) -> Result<RegistryVersion, Error> {
        self.with_mut(|conn| registry::add_version(conn, workspace_id, kind, name, body))
    }

    fn registry_entry(
        &self,
        workspace_id: &str,
        kind: RegistryKind,
        name: &str,
    ) -> Result<Option<RegistryEntry>, Error> {
        self.read(|conn| Ok(registry::entries(conn, workspace_id, kind, Some(name))?.pop()))
    }

    fn list_registry(
        &self,
        workspace_id: &str,
        kind: RegistryKind,
    ) -> Result<Vec<RegistryEntry>, Error> {
        self.read(|conn| registry::entries(conn, workspace_id, kind, None))
    }

    fn set_registry_label(
        &self,
        workspace_id: &str,
        kind: RegistryKind,
        name: &str,
        label: &str,
        target: &LabelTarget,
    ) -> Result<RegistryEntry, Error> {
        self.with(|conn| registry::set_label(conn, workspace_id, kind, name, label, target))
    }

    fn secret(&self, name: &str, len: usize) -> Result<Vec<u8>, Error> {
        let fresh: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
        self.with(|conn| {
            // First writer wins; every later caller (and restart) reads the same value.
            conn.execute(
                "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
                params![name, fresh],
            )?;
            Ok(conn.query_row(
                "SELECT value FROM secrets WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )?)
        })
    }
}

#[cfg(test)]
mod tests;
