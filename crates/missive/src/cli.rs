//! The subcommands.

pub mod bench;
pub mod chat;
pub mod keys;
pub mod org;
pub mod pull;
pub mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "missive", version, about = "The Claude API, self-hosted")]
pub struct Cli {
    /// Config file (TOML). Every value can also be set by a MISSIVE_* variable.
    #[arg(long, global = true, env = "MISSIVE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Claude API on the configured models, pulling them first if absent.
    Serve(serve::Args),
    /// Fetch a model: a catalog name, an http(s) URL, or a local GGUF path.
    Pull {
        /// What to pull. Without it, the catalog is listed.
        source: Option<String>,
        /// Fetch again even if the model is already cached.
        #[arg(long)]
        force: bool,
    },
    /// Chat with a running server from the terminal, streaming replies.
    Chat(chat::Args),
    /// Measure a running server (and optionally a peer beside it).
    Bench {
        #[command(subcommand)]
        command: bench::Command,
    },
    /// Manage API keys in the store (works while the server runs).
    Keys {
        #[command(subcommand)]
        command: keys::Command,
    },
    /// Manage the organization's users (works while the server runs).
    Users {
        #[command(subcommand)]
        command: org::UsersCommand,
    },
    /// Stop (or restart) traffic for a workspace, a model, or everything, at once.
    KillSwitch(org::KillSwitchArgs),
    /// Print the audit log of admin actions, newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}
