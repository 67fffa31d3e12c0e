//! The store for several replicas: PostgreSQL through `tokio-postgres` and a connection
//! pool. The [`Store`] trait is synchronous (SQLite answers in microseconds), so this store
//! drives its pool on a small runtime of its own and each call waits for its answer; it can
//! be called from anywhere, inside an async runtime or not.
//!
//! Every replica caches what the request path checks and drops the cache when the control
//! generation moves. A change made by any replica bumps it in the same transaction and
//! announces it with `NOTIFY`; a listener here picks that up at once, and a poll catches
//! what a dropped connection missed.

mod batches;
mod keys;
mod ledger;
mod registry;
mod tenancy;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::StreamExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::request_log::{count, uncount};

use crate::{
    now_ms, ApiKey, AuditEntry, Batch, BatchResult, CapturedContent, Error, FileMeta, KeyKind,
    KeyStatus, KillSwitch, LabelTarget, Member, NewApiKey, NewBatchRequest, Organization,
    PendingRequest, RegistryEntry, RegistryKind, RegistryVersion, RequestLogEntry, RequestLogQuery,
    Store, UsageQuery, UsageRecord, UsageRow, UsageWriter, User, Workspace, WorkspaceLimits,
};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_schema.sql"),
    include_str!("../../migrations/postgres/0002_registry.sql"),
    include_str!("../../migrations/postgres/0003_registry_splits_versions.sql"),
    include_str!("../../migrations/postgres/0004_workspace_limits.sql"),
    include_str!("../../migrations/postgres/0005_request_log.sql"),
    include_str!("../../migrations/postgres/0006_usage_by_endpoint.sql"),
    include_str!("../../migrations/postgres/0007_capture_content.sql"),
];

/// Serializes migrations across replicas starting together (an arbitrary constant).
const MIGRATION_LOCK: i64 = 0x006d_6973_7369_7665;

/// The channel control changes are announced on.
const CONTROL_CHANNEL: &str = "missive_control";

/// How often the control generation is read when no notification came.
const CONTROL_POLL: Duration = Duration::from_millis(250);

/// Connections per replica.
const POOL_SIZE: usize = 16;

type Client = deadpool_postgres::Object;

pub struct PostgresStore {
    pool: Pool,
    runtime: tokio::runtime::Handle,
    generation: Arc<AtomicU64>,
    control_changes: AtomicU64,
    /// Dropping it ends the store's runtime (on its own thread, so a store dropped inside
    /// another runtime does not panic).
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`), runs the migrations this replica
    /// is the first to see, and starts following control changes.
    pub fn open(url: &str) -> Result<Self, Error> {
        let config: tokio_postgres::Config = url.parse()?;
        let (runtime, stop) = spawn_runtime()?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::Pool(e.to_string()))?;
        let store = Self {
            pool,
            runtime,
            generation: Arc::new(AtomicU64::new(0)),
            control_changes: AtomicU64::new(0),
            _stop: stop,
        };
        store.run(|mut client| async move { migrate(&mut client).await })?;
        let generation = store.run(|client| async move { read_generation(&client).await })?;
        store.generation.store(generation, Ordering::Release);
        store.runtime.spawn(follow_controls(
            config,
            store.pool.clone(),
            Arc::clone(&store.generation),
        ));
        Ok(store)
    }

    /// Runs `f` with a pooled connection on the store's runtime and waits for it.
    fn run<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Error>> + Send,
    {
        let pool = self.pool.clone();
        let (done, answer) = mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let result = match pool.get().await {
                Ok(client) => f(client).await,
                Err(err) => Err(Error::Pool(err.to_string())),
            };
            let _ = done.send(result);
        });
        answer.recv().map_err(|_| Error::Stopped)?
    }

    /// A write to what the request path caches; counted once it is done.
    fn control<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Error>> + Send,
    {
        let result = self.run(f);
        self.control_changes.fetch_add(1, Ordering::Release);
        result
    }
}

fn spawn_runtime() -> Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>), Error> {
    // One thread: the pool's connections need little CPU, and a second worker only adds
    // wake-ups between the two.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .thread_name("missive-postgres")
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("missive-postgres".into())
        .spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
            runtime.shutdown_background();
        })
        .map_err(Error::Runtime)?;
    Ok((handle, stop))
}

async fn migrate(client: &mut Client) -> Result<(), Error> {
    // Every replica but the first finds the table there; PostgreSQL would say so each time.
    client
        .batch_execute("SET client_min_messages TO warning")
        .await?;
    // Under the lock too: `IF NOT EXISTS` alone races when replicas start together.
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL)",
    )
    .await?;
    tx.commit().await?;
    for (i, migration) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(i + 1).unwrap_or(i64::MAX);
        // One transaction per migration, under a lock every replica takes: the first to
        // get it applies the step, the others find it applied.
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let applied = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&version],
            )
            .await?
            .is_some();
        if !applied {
            tx.batch_execute(migration).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at_ms) VALUES ($1, $2)",
                &[&version, &now_ms()],
            )
            .await?;
        }
        tx.commit().await?;
    }
    client
        .execute(
            "INSERT INTO organization (id, name) SELECT $1, 'Missive' WHERE NOT EXISTS (SELECT 1 FROM organization)",
            &[&uuid::Uuid::new_v4().to_string()],
        )
        .await?;
    Ok(())
}

/// Two replicas creating the bookkeeping table at once: one of them loses the race on the
/// catalog, which is as good as winning it.
async fn read_generation(client: &Client) -> Result<u64, Error> {
    let row = client
        .query_one("SELECT value FROM control_generation WHERE id = 1", &[])
        .await?;
    Ok(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))
}

/// Keeps `generation` current: `LISTEN` on a connection of its own, plus a poll.
async fn follow_controls(config: tokio_postgres::Config, pool: Pool, generation: Arc<AtomicU64>) {
    let listener = {
        let generation = Arc::clone(&generation);
        async move {
            loop {
                if let Err(err) = listen(&config, &generation).await {
                    tracing::warn!(error = %err, "listening for control changes; reconnecting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let poll = async move {
        let mut tick = tokio::time::interval(CONTROL_POLL);
        loop {
            tick.tick().await;
            if let Ok(client) = pool.get().await {
                if let Ok(value) = read_generation(&client).await {
                    generation.fetch_max(value, Ordering::AcqRel);
                }
            }
        }
    };
    tokio::join!(listener, poll);
}

async fn listen(config: &tokio_postgres::Config, generation: &AtomicU64) -> Result<(), Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let (notified, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    let pump = async move {
        while let Some(message) = messages.next().await {
            match message? {
                AsyncMessage::Notification(n) => {
                    let _ = notified.send(n.payload().parse::<u64>().unwrap_or(0));
                }
                _ => continue,
            }
        }
        Ok::<(), Error>(())
    };
    let follow = async move {
        client
            .batch_execute(&format!("LISTEN {CONTROL_CHANNEL}"))
            .await?;
        // Anything that moved before LISTEN took effect.
        let row = client
            .query_one("SELECT value FROM control_generation WHERE id = 1", &[])
            .await?;
        generation.fetch_max(
            u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0),
            Ordering::AcqRel,
        );
        while let Some(value) = notifications.recv().await {
            generation.fetch_max(value, Ordering::AcqRel);
        }
        Ok::<(), Error>(())
    };
    tokio::select! {
        result = pump => result,
        result = follow => result,
    }
}

/// Maps a uniqueness failure to [`Error::Conflict`] with the given message.
fn conflict(err: tokio_postgres::Error, message: impl FnOnce() -> String) -> Error {
    if err.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        Error::Conflict(message())
    } else {
        Error::Postgres(err)
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store for PostgresStore {
    fn organization(&self) -> Result<Organization, Error> {
        self.run(|c| async move {
            let row = c
                .query_one("SELECT id, name FROM organization LIMIT 1", &[])
                .await?;
            Ok(Organization {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
            })
        })
    }

    fn create_workspace(&self, name: &str) -> Result<Workspace, Error> {
        let name = name.to_owned();
        self.control(move |c| async move { tenancy::create_workspace(&c, &name).await })
    }

    fn workspace(&self, id: &str) -> Result<Option<Workspace>, Error> {
        let id = id.to_owned();
        self.run(move |c| async move { tenancy::workspace(&c, "id", &id).await })
    }

    fn workspace_by_name(&self, name: &str) -> Result<Option<Workspace>, Error> {
        let name = name.to_owned();
        self.run(move |c| async move { tenancy::workspace(&c, "name", &name).await })
    }

    fn list_workspaces(&self, include_archived: bool) -> Result<Vec<Workspace>, Error> {
        self.run(move |c| async move { tenancy::list_workspaces(&c, include_archived).await })
    }

    fn rename_workspace(&self, id: &str, name: &str) -> Result<Workspace, Error> {
        let (id, name) = (id.to_owned(), name.to_owned());
        self.control(move |c| async move { tenancy::rename_workspace(&c, &id, &name).await })
    }

    fn archive_workspace(&self, id: &str) -> Result<Workspace, Error> {
        let id = id.to_owned();
        self.control(move |c| async move { tenancy::archive_workspace(c, &id).await })
    }

    fn create_api_key(
        &self,
        name: &str,
        kind: KeyKind,
        workspace_id: Option<&str>,
    ) -> Result<NewApiKey, Error> {
        let (name, workspace_id) = (name.to_owned(), workspace_id.map(str::to_owned));
        self.control(move |c| async move {
            keys::create(&c, &name, kind, workspace_id.as_deref()).await
        })
    }

    fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>, Error> {
        let hash = key_hash.to_owned();
        self.run(move |c| async move { keys::find(&c, "k.key_hash", &hash).await })
    }

    fn api_key(&self, id: &str) -> Result<Option<ApiKey>, Error> {
        let id = id.to_owned();
        self.run(move |c| async move { keys::find(&c, "k.id", &id).await })
    }

    fn list_api_keys(&self) -> Result<Vec<ApiKey>, Error> {
        self.run(|c| async move { keys::list(&c).await })
    }

    fn update_api_key(
        &self,
        id: &str,
        name: Option<&str>,
        status: Option<KeyStatus>,
    ) -> Result<ApiKey, Error> {
        let (id, name) = (id.to_owned(), name.map(str::to_owned));
        self.control(move |c| async move { keys::update(&c, &id, name.as_deref(), status).await })
    }

    fn set_api_key_expiry(&self, id: &str, expires_at: Option<i64>) -> Result<ApiKey, Error> {
        let id = id.to_owned();
        self.control(move |c| async move { keys::set_expiry(&c, &id, expires_at).await })
    }

    fn add_user(&self, email: &str, name: &str, role: &str) -> Result<User, Error> {
        let (email, name, role) = (email.to_owned(), name.to_owned(), role.to_owned());
        self.run(move |c| async move { tenancy::add_user(&c, &email, &name, &role).await })
    }

    fn user(&self, id: &str) -> Result<Option<User>, Error> {
        let id = id.to_owned();
        self.run(move |c| async move { tenancy::user(&c, &id).await })
    }

    fn list_users(&self, email: Option<&str>) -> Result<Vec<User>, Error> {
        let email = email.map(str::to_owned);
        self.run(move |c| async move { tenancy::list_users(&c, email.as_deref()).await })
    }

    fn set_user_role(&self, id: &str, role: &str) -> Result<User, Error> {
        let (id, role) = (id.to_owned(), role.to_owned());
        self.run(move |c| async move { tenancy::set_user_role(&c, &id, &role).await })
    }

    fn remove_user(&self, id: &str) -> Result<(), Error> {
        let id = id.to_owned();
        self.run(move |c| async move { tenancy::remove_user(&c, &id).await })
    }

    fn add_member(&self, workspace_id: &str, user_id: &str, role: &str) -> Result<Member, Error> {
        let (w, u, r) = (workspace_id.to_owned(), user_id.to_owned(), role.to_owned());
        self.run(move |c| async move { tenancy::add_member(&c, &w, &u, &r).await })
    }

    fn member(&self, workspace_id: &str, user_id: &str) -> Result<Option<Member>, Error> {
        let (w, u) = (workspace_id.to_owned(), user_id.to_owned());
        self.run(move |c| async move { tenancy::member(&c, &w, &u).await })
    }

    fn list_members(&self, workspace_id: &str) -> Result<Vec<Member>, Error> {
        let w = workspace_id.to_owned();
        self.run(move |c| async move { tenancy::list_members(&c, &w).await })
    }

    fn set_member_role(
        &self,
        workspace_id: &str,
        user_id: &str,
        role: &str,
    ) -> Result<Member, Error> {
        let (w, u, r) = (workspace_id.to_owned(), user_id.to_owned(), role.to_owned());
        self.run(move |c| async move { tenancy::set_member_role(&c, &w, &u, &r).await })
    }

    fn remove_member(&self, workspace_id: &str, user_id: &str) -> Result<(), Error> {
        let (w, u) = (workspace_id.to_owned(), user_id.to_owned());
        self.run(move |c| async move { tenancy::remove_member(&c, &w, &u).await })
    }

    fn record_usage(&self, records: &[UsageRecord]) -> Result<(), Error> {
        let records = records.to_vec();
        // One statement commits on its own: one round trip, not three with BEGIN and COMMIT.
        self.run(move |c| async move { ledger::insert(&c, &records).await })
    }

    fn usage_writer(&self) -> Option<UsageWriter> {
        let pool = self.pool.clone();
        Some(UsageWriter::new(self.runtime.clone(), move |records| {
            let pool = pool.clone();
            Box::pin(async move {
                let client = pool.get().await.map_err(|e| Error::Pool(e.to_string()))?;
                ledger::insert(&client, &records).await
            })
        }))
    }

    fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, Error> {
        let query = query.clone();
        self.run(move |c| async move { ledger::usage(&c, &query).await })
    }

    fn log_requests(&self, entries: &[RequestLogEntry]) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        self.run(move |mut c| async move {
            let text = |f: fn(&RequestLogEntry) -> &String| -> Vec<&str> {
                entries.iter().map(|e| f(e).as_str()).collect()
            };
            let optional = |f: fn(&RequestLogEntry) -> &Option<String>| -> Vec<Option<&str>> {
                entries.iter().map(|e| f(e).as_deref()).collect()
            };
            let number = |f: fn(&RequestLogEntry) -> u64| -> Vec<i64> {
                entries.iter().map(|e| count(f(e))).collect()
            };
            let at: Vec<i64> = entries.iter().map(|e| e.at_ms).collect();
            let status: Vec<i32> = entries.iter().map(|e| i32::from(e.status)).collect();
            // A log, not a ledger: its commit does not wait for the disk, so it never
            // queues behind (or ahead of) the ledger's.
            let tx = c.transaction().await?;
            tx.batch_execute("SET LOCAL synchronous_commit = off")
                .await?;
            let statement = tx
                .prepare_cached(&format!(
                    "INSERT INTO request_log ({}) SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], \
                     $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::INTEGER[], $8::BIGINT[], \
                     $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::BIGINT[], $13::BIGINT[], \
                     $14::BIGINT[], $15::BIGINT[])",
                    crate::request_log::COLUMNS
                ))
                .await?;
            tx.execute(
                &statement,
                &[
                    &text(|e| &e.request_id),
                    &at,
                    &text(|e| &e.workspace_id),
                    &text(|e| &e.api_key_id),
                    &text(|e| &e.method),
                    &text(|e| &e.path),
                    &status,
                    &number(|e| e.latency_ms),
                    &optional(|e| &e.model),
                    &optional(|e| &e.upstream),
                    &optional(|e| &e.prompt_version),
                    &number(|e| e.input_tokens),
                    &number(|e| e.output_tokens),
                    &number(|e| e.cache_read_input_tokens),
                    &number(|e| e.cache_creation_input_tokens),
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn request_log(&self, query: &RequestLogQuery) -> Result<Vec<RequestLogEntry>, Error> {
        let query = query.clone();
        self.run(move |c| async move {
            let sql = crate::request_log::filter([
                "$1::TEXT",
                "$2::TEXT",
                "$3::TEXT",
                "$4::BIGINT",
                "$5::BIGINT",
            ]);
            c.query(
                &sql,
                &[
                    &query.workspace_id,
                    &query.api_key_id,
                    &query.model,
                    &i64::from(query.errors_only),
                    &count(query.limit as u64),
                ],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(RequestLogEntry {
                    request_id: row.try_get(0)?,
                    at_ms: row.try_get(1)?,
                    workspace_id: row.try_get(2)?,
                    api_key_id: row.try_get(3)?,
                    method: row.try_get(4)?,
                    path: row.try_get(5)?,
                    status: u16::try_from(row.try_get::<_, i32>(6)?).unwrap_or(0),
                    latency_ms: uncount(row.try_get(7)?),
                    model: row.try_get(8)?,
                    upstream: row.try_get(9)?,
                    prompt_version: row.try_get(10)?,
                    input_tokens: uncount(row.try_get(11)?),
                    output_tokens: uncount(row.try_get(12)?),
                    cache_read_input_tokens: uncount(row.try_get(13)?),
                    cache_creation_input_tokens: uncount(row.try_get(14)?),
                })
            })
            .collect()
        })
    }

    fn prune_request_log(&self, before_ms: i64) -> Result<u64, Error> {
        self.run(move |c| async move {
            Ok(
                c.execute("DELETE FROM request_log WHERE at_ms < $1", &[&before_ms])
                    .await?,
            )
        })
    }

    fn capture_content(&self, rows: &[CapturedContent]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows = rows.to_vec();
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let statement = tx
                .prepare_cached(
                    "INSERT INTO request_content (request_id, workspace_id, at_ms, \
                     expires_at_ms, request, response) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (request_id) DO UPDATE SET request = excluded.request, \
                     response = excluded.response, expires_at_ms = excluded.expires_at_ms",
                )
                .await?;
            for r in &rows {
                tx.execute(
                    &statement,
                    &[
                        &r.request_id,
                        &r.workspace_id,
                        &r.at_ms,
                        &r.expires_at_ms,
                        &r.request,
                        &r.response,
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn captured_content(
        &self,
        workspace_id: &str,
        request_id: &str,
    ) -> Result<Option<CapturedContent>, Error> {
        let (w, id) = (workspace_id.to_owned(), request_id.to_owned());
        self.run(move |c| async move {
            let row = c
                .query_opt(
                    "SELECT request_id, workspace_id, at_ms, expires_at_ms, request, response \
                     FROM request_content WHERE workspace_id = $1 AND request_id = $2 \
                     AND expires_at_ms > $3",
                    &[&w, &id, &now_ms()],
                )
                .await?;
            row.map(|row| {
                Ok(CapturedContent {
                    request_id: row.try_get(0)?,
                    workspace_id: row.try_get(1)?,
                    at_ms: row.try_get(2)?,
                    expires_at_ms: row.try_get(3)?,
                    request: row.try_get(4)?,
                    response: row.try_get(5)?,
                })
            })
            .transpose()
        })
    }

    fn prune_captured_content(&self, now_ms: i64) -> Result<u64, Error> {
        self.run(move |c| async move {
            Ok(c.execute(
                "DELETE FROM request_content WHERE expires_at_ms <= $1",
                &[&now_ms],
            )
            .await?)
        })
    }

    fn audit(&self, entry: &AuditEntry) -> Result<(), Error> {
        let e = entry.clone();
        self.run(move |c| async move {
            c.execute(
                "INSERT INTO audit_log (at_ms, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
                &[&e.at_ms, &e.actor, &e.action, &e.target, &e.detail],
            )
            .await?;
            Ok(())
        })
    }

    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, Error> {
        self.run(move |c| async move {
            let rows = c
                .query(
                    "SELECT at_ms, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1",
                    &[&to_i64(limit)],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(AuditEntry {
                        at_ms: row.try_get(0)?,
                        actor: row.try_get(1)?,
                        action: row.try_get(2)?,
                        target: row.try_get(3)?,
                        detail: row.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    fn set_kill_switch(
        &self,
        workspace_id: Option<&str>,
        model: Option<&str>,
        on: bool,
    ) -> Result<(), Error> {
        let workspace_id = workspace_id.unwrap_or("").to_owned();
        let model = model.unwrap_or("").to_owned();
        self.control(move |c| async move {
            if on {
                c.execute(
                    "INSERT INTO kill_switches (workspace_id, model, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&workspace_id, &model, &now_ms()],
                )
                .await?;
            } else {
                c.execute(
                    "DELETE FROM kill_switches WHERE workspace_id = $1 AND model = $2",
                    &[&workspace_id, &model],
                )
                .await?;
            }
            Ok(())
        })
    }

    fn set_workspace_limits(
        &self,
        workspace_id: &str,
        limits: &WorkspaceLimits,
    ) -> Result<(), Error> {
        let (w, limits) = (workspace_id.to_owned(), *limits);
        let number = |n: Option<u32>| n.map(i64::from);
        self.control(move |c| async move {
            if limits.is_empty() {
                c.execute(
                    "DELETE FROM workspace_limits WHERE workspace_id = $1",
                    &[&w],
                )
                .await?;
            } else {
                c.execute(
                    "INSERT INTO workspace_limits (workspace_id, requests_per_minute, \
                     input_tokens_per_minute, output_tokens_per_minute, spend_cap_usd, \
                     capture_content_days) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace_id) DO UPDATE SET \
                     requests_per_minute = excluded.requests_per_minute, \
                     input_tokens_per_minute = excluded.input_tokens_per_minute, \
                     output_tokens_per_minute = excluded.output_tokens_per_minute, \
                     spend_cap_usd = excluded.spend_cap_usd, \
                     capture_content_days = excluded.capture_content_days",
                    &[
                        &w,
                        &number(limits.requests_per_minute),
                        &number(limits.input_tokens_per_minute),
                        &number(limits.output_tokens_per_minute),
                        &limits.spend_cap_usd,
                        &limits
                            .capture_content_days
                            .map(|d| i32::try_from(d).unwrap_or(i32::MAX)),
                    ],
                )
                .await?;
            }
            Ok(())
        })
    }

    fn workspace_limits(&self) -> Result<Vec<(String, WorkspaceLimits)>, Error> {
        let number = |n: Option<i64>| n.and_then(|n| u32::try_from(n).ok());
        self.run(move |c| async move {
            c.query(
                "SELECT workspace_id, requests_per_minute, input_tokens_per_minute, \
                 output_tokens_per_minute, spend_cap_usd, capture_content_days \
                 FROM workspace_limits ORDER BY workspace_id",
                &[],
            )
            .await?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    WorkspaceLimits {
                        requests_per_minute: number(row.try_get(1)?),
                        input_tokens_per_minute: number(row.try_get(2)?),
                        output_tokens_per_minute: number(row.try_get(3)?),
                        spend_cap_usd: row.try_get(4)?,
                        capture_content_days: row
                            .try_get::<_, Option<i32>>(5)?
                            .and_then(|d| u32::try_from(d).ok()),
                    },
                ))
            })
            .collect()
        })
    }

    fn is_killed(&self, workspace_id: &str, model: &str) -> Result<bool, Error> {
        let (w, m) = (workspace_id.to_owned(), model.to_owned());
        self.run(move |c| async move {
            Ok(c.query_opt(
                "SELECT 1 FROM kill_switches WHERE workspace_id IN ('', $1) AND model IN ('', $2) LIMIT 1",
                &[&w, &m],
            )
            .await?
            .is_some())
        })
    }

    fn kill_switches(&self) -> Result<Vec<KillSwitch>, Error> {
        self.run(|c| async move {
            let rows = c
                .query(
                    "SELECT workspace_id, model FROM kill_switches ORDER BY created_at",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    let workspace: String = row.try_get(0)?;
                    let model: String = row.try_get(1)?;
                    Ok(KillSwitch {
                        workspace_id: (!workspace.is_empty()).then_some(workspace),
                        model: (!model.is_empty()).then_some(model),
                    })
                })
                .collect()
        })
    }

    fn create_batch(
        &self,
        workspace_id: &str,
        api_key_id: &str,
        expires_at_ms: i64,
        requests: &[NewBatchRequest],
    ) -> Result<Batch, Error> {
        let (w, k, requests) = (
            workspace_id.to_owned(),
            api_key_id.to_owned(),
            requests.to_vec(),
        );
        self.run(move |c| async move { batches::create(c, &w, &k, expires_at_ms, &requests).await })
    }

    fn batch(&self, workspace_id: &str, id: &str) -> Result<Option<Batch>, Error> {
        let (w, id) = (workspace_id.to_owned(), id.to_owned());
        self.run(move |c| async move { batches::get(&c, &w, &id).await })
    }

    fn list_batches(&self, workspace_id: &str) -> Result<Vec<Batch>, Error> {
        let w = workspace_id.to_owned();
        self.run(move |c| async move { batches::list(&c, &w).await })
    }

    fn cancel_batch(&self, workspace_id: &str, id: &str) -> Result<Batch, Error> {
        let (w, id) = (workspace_id.to_owned(), id.to_owned());
        self.run(move |c| async move { batches::cancel(&c, &w, &id).await })
    }

    fn delete_batch(&self, workspace_id: &str, id: &str) -> Result<(), Error> {
        let (w, id) = (workspace_id.to_owned(), id.to_owned());
        self.run(move |c| async move { batches::delete(c, &w, &id).await })
    }

    fn claim_batch_requests(
        &self,
        owner: &str,
        limit: usize,
        lease_ms: i64,
        skip: &[(String, i64)],
    ) -> Result<Vec<PendingRequest>, Error> {
        let (owner, skip) = (owner.to_owned(), skip.to_vec());
        self.run(move |c| async move { batches::claim(c, &owner, limit, lease_ms, &skip).await })
    }

    fn renew_batch_leases(&self, owner: &str, lease_ms: i64) -> Result<(), Error> {
        let owner = owner.to_owned();
        self.run(move |c| async move {
            c.execute(
                "UPDATE batch_requests SET lease_until = $2 WHERE leased_by = $1 AND result_type IS NULL",
                &[&owner, &now_ms().saturating_add(lease_ms)],
            )
            .await?;
            Ok(())
        })
    }

    fn release_batch_request(&self, owner: &str, batch_id: &str, idx: i64) -> Result<(), Error> {
        let (owner, batch_id) = (owner.to_owned(), batch_id.to_owned());
        self.run(move |c| async move {
            c.execute(
                "UPDATE batch_requests SET leased_by = NULL, lease_until = NULL \
                 WHERE batch_id = $1 AND idx = $2 AND leased_by = $3 AND result_type IS NULL",
                &[&batch_id, &idx, &owner],
            )
            .await?;
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
        let (b, t, r, u) = (
            batch_id.to_owned(),
            result_type.to_owned(),
            result.to_owned(),
            usage.cloned(),
        );
        self.run(move |c| async move { batches::complete(c, &b, idx, &t, &r, u.as_ref()).await })
    }

    fn settle_batches(&self, running: &[String]) -> Result<(), Error> {
        let running = running.to_vec();
        self.run(move |c| async move { batches::settle(c, &running).await })
    }

    fn batch_results(
        &self,
        batch_id: &str,
        after_idx: i64,
        limit: usize,
    ) -> Result<Vec<BatchResult>, Error> {
        let b = batch_id.to_owned();
        self.run(move |c| async move { batches::results(&c, &b, after_idx, limit).await })
    }

    fn add_file(&self, file: &FileMeta) -> Result<(), Error> {
        let file = file.clone();
        self.run(move |c| async move { batches::add_file(&c, &file).await })
    }

    fn file(&self, workspace_id: &str, id: &str) -> Result<Option<FileMeta>, Error> {
        let (w, id) = (workspace_id.to_owned(), id.to_owned());
        self.run(move |c| async move { batches::file(&c, &w, &id).await })
    }

    fn list_files(&self, workspace_id: &str) -> Result<Vec<FileMeta>, Error> {
        let w = workspace_id.to_owned();
        self.run(move |c| async move { batches::list_files(&c, &w).await })
    }

    fn delete_file(&self, workspace_id: &str, id: &str) -> Result<(), Error> {
        let (w, id) = (workspace_id.to_owned(), id.to_owned());
        self.run(move |c| async move { batches::delete_file(&c, &w, &id).await })
    }

    fn control_generation(&self) -> Result<u64, Error> {
        Ok(self.generation.load(Ordering::Acquire))
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
        let (w, n, b) = (workspace_id.to_owned(), name.to_owned(), body.to_owned());
        self.run(move |c| async move { registry::add_version(c, &w, kind, &n, &b).await })
    }

    fn registry_entry(
        &self,
        workspace_id: &str,
        kind: RegistryKind,
        name: &str,
    ) -> Result<Option<RegistryEntry>, Error> {
        let (w, n) = (workspace_id.to_owned(), name.to_owned());
        self.run(move |c| async move { Ok(registry::entries(&c, &w, kind, Some(&n)).await?.pop()) })
    }

    fn list_registry(
        &self,
        workspace_id: &str,
        kind: RegistryKind,
    ) -> Result<Vec<RegistryEntry>, Error> {
        let w = workspace_id.to_owned();
        self.run(move |c| async move { registry::entries(&c, &w, kind, None).await })
    }

    fn set_registry_label(
        &self,
        workspace_id: &str,
        kind: RegistryKind,
        name: &str,
        label: &str,
        target: &LabelTarget,
    ) -> Result<RegistryEntry, Error> {
        let (w, n, l, t) = (
            workspace_id.to_owned(),
            name.to_owned(),
            label.to_owned(),
            target.clone(),
        );
        self.run(move |c| async move { registry::set_label(&c, &w, kind, &n, &l, &t).await })
    }

    fn secret(&self, name: &str, len: usize) -> Result<Vec<u8>, Error> {
        let name = name.to_owned();
        let fresh: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
        self.run(move |c| async move {
            // First writer wins; every later caller, restart and replica reads the same value.
            c.execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&name, &fresh],
            )
            .await?;
            let row = c
                .query_one("SELECT value FROM secrets WHERE name = $1", &[&name])
                .await?;
            Ok(row.try_get(0)?)
        })
    }
}
