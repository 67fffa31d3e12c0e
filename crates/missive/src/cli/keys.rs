use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use missive_store::{AuditEntry, KeyKind, KeyStatus, PostgresStore, SqliteStore, Store};

use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a key and print it (only its hash is stored).
    Create {
        #[arg(long, default_value = "cli")]
        name: String,
        /// The workspace's name; created if it does not exist.
        #[arg(long, default_value = "default", conflicts_with = "admin")]
        workspace: String,
        /// An Admin API key (`sk-ant-admin01-…`) instead of a workspace key.
        #[arg(long)]
        admin: bool,
        /// The key stops working after this long (`30d`, `12h`); its status turns `expired`.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id; its next request gets 401.
    Revoke { id: String },
}

/// The configured store: `[store] url` (PostgreSQL), else the SQLite file in the data
/// directory. The server and every CLI command open it the same way.
pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match config.store.url.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = PostgresStore::open(url).context("opening the PostgreSQL store")?;
            Ok(Arc::new(store))
        }
        Some(other) => anyhow::bail!(
            "[store] url must be a postgres:// URL (got {:?}); leave it unset for SQLite",
            other.split(':').next().unwrap_or_default()
        ),
        None => Ok(Arc::new(SqliteStore::open(
            &config.home()?.join("missive.db"),
        )?)),
    }
}

/// Records a CLI change in the audit log.
pub fn audit(store: &dyn Store, action: &str, target: &str, detail: String) -> anyhow::Result<()> {
    store.audit(&AuditEntry {
        at_ms: missive_server::ids::now_ms(),
        actor: "cli".to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        detail,
    })?;
    Ok(())
}

/// The workspace of that name, created on first use.
pub fn ensure_workspace(store: &dyn Store, name: &str) -> anyhow::Result<String> {
    if let Some(existing) = store.workspace_by_name(name)? {
        anyhow::ensure!(
            existing.archived_at.is_none(),
            "workspace {name} is archived"
        );
        return Ok(existing.id);
    }
    let created = store.create_workspace(name)?;
    audit(
        store,
        "workspace.create",
        &created.id,
        format!("{{\"name\":{name:?}}}"),
    )?;
    Ok(created.id)
}

pub fn run(config: &Config, command: Command) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let mut out = std::io::stdout();
    match command {
        Command::Create {
            name,
            workspace,
            admin,
            expires_in,
        } => {
            let mut created = if admin {
                store.create_api_key(&name, KeyKind::Admin, None)?
            } else {
                let workspace_id = ensure_workspace(store.as_ref(), &workspace)?;
                store.create_api_key(&name, KeyKind::Standard, Some(&workspace_id))?
            };
            if let Some(after) = expires_in {
                let at = created.key.created_at
                    + i64::try_from(after.as_secs()).context("--expires-in is too long")?;
                created.key = store.set_api_key_expiry(&created.key.id, Some(at))?;
            }
            audit(
                store.as_ref(),
                "api_key.create",
                &created.key.id,
                format!("{{\"name\":{name:?}}}"),
            )?;
            writeln!(out, "{}", created.secret)?;
            eprintln!(
                "created {} ({}) in {}",
                created.key.id,
                created.key.kind.as_str(),
                created
                    .key
                    .workspace_name
                    .as_deref()
                    .unwrap_or("the organization")
            );
        }
        Command::List => {
            for key in store.list_api_keys()? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    key.id,
                    key.kind.as_str(),
                    key.status.as_str(),
                    key.workspace_name.as_deref().unwrap_or("-"),
                    key.name,
                    key.hint
                )?;
            }
        }
        Command::Revoke { id } => {
            store
                .update_api_key(&id, None, Some(KeyStatus::Inactive))
                .with_context(|| format!("revoking {id}"))?;
            audit(store.as_ref(), "api_key.revoke", &id, "{}".to_owned())?;
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}
