use std::io::Write;

use missive_store::{KeyStatus, SqliteStore, Store};

use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a key and print it (only its hash is stored).
    Create {
        #[arg(long, default_value = "cli")]
        name: String,
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id; its next request gets 401.
    Revoke { id: String },
}

pub fn run(config: &Config, command: Command) -> anyhow::Result<()> {
    let store = SqliteStore::open(&config.home()?.join("missive.db"))?;
    let mut out = std::io::stdout();
    match command {
        Command::Create { name, workspace } => {
            let created = store.create_api_key(&name, &workspace)?;
            writeln!(out, "{}", created.secret)?;
            eprintln!(
                "created {} in workspace {}",
                created.key.id, created.key.workspace
            );
        }
        Command::List => {
            for key in store.list_api_keys()? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}",
                    key.id,
                    key.status.as_str(),
                    key.workspace,
                    key.name,
                    key.hint
                )?;
            }
        }
        Command::Revoke { id } => {
            store.set_api_key_status(&id, KeyStatus::Inactive)?;
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}
