//! Organization chores the Admin API leaves to the operator: adding users, the kill switch,
//! reading the audit log. They work on the store while the server runs.

use std::io::Write;

use missive_store::ORG_ROLES;

use crate::cli::keys::{audit, ensure_workspace, open_store};
use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// Add a user to the organization (the Claude API adds them by invite).
    Add {
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, default_value = "developer")]
        role: String,
    },
    /// List users.
    List,
}

#[derive(Debug, clap::Args)]
pub struct KillSwitchArgs {
    /// `on` stops traffic at once; `off` lets it through again.
    #[arg(value_parser = ["on", "off"])]
    pub state: String,
    /// Only this workspace (by name); default: every workspace.
    #[arg(long)]
    pub workspace: Option<String>,
    /// Only this model id; default: every model.
    #[arg(long)]
    pub model: Option<String>,
}

pub fn users(config: &Config, command: UsersCommand) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let mut out = std::io::stdout();
    match command {
        UsersCommand::Add { email, name, role } => {
            anyhow::ensure!(
                ORG_ROLES.contains(&role.as_str()),
                "role must be one of {}",
                ORG_ROLES.join(", ")
            );
            let name = if name.is_empty() { email.clone() } else { name };
            let user = store.add_user(&email, &name, &role)?;
            audit(
                store.as_ref(),
                "user.create",
                &user.id,
                format!("{{\"email\":{email:?},\"role\":{role:?}}}"),
            )?;
            writeln!(out, "{}", user.id)?;
        }
        UsersCommand::List => {
            for user in store.list_users(None)? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    user.id, user.role, user.email, user.name
                )?;
            }
        }
    }
    Ok(())
}

pub fn kill_switch(config: &Config, args: KillSwitchArgs) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let workspace_id = match &args.workspace {
        Some(name) => Some(ensure_workspace(store.as_ref(), name)?),
        None => None,
    };
    let on = args.state == "on";
    store.set_kill_switch(workspace_id.as_deref(), args.model.as_deref(), on)?;
    audit(
        store.as_ref(),
        if on {
            "kill_switch.on"
        } else {
            "kill_switch.off"
        },
        workspace_id.as_deref().unwrap_or("*"),
        format!("{{\"model\":{:?}}}", args.model.as_deref().unwrap_or("*")),
    )?;
    let mut out = std::io::stdout();
    for switch in store.kill_switches()? {
        writeln!(
            out,
            "off\tworkspace={}\tmodel={}",
            switch.workspace_id.as_deref().unwrap_or("*"),
            switch.model.as_deref().unwrap_or("*")
        )?;
    }
    Ok(())
}

pub fn audit_log(config: &Config, limit: usize) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let mut out = std::io::stdout();
    for entry in store.audit_log(limit)? {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}",
            entry.at_ms, entry.actor, entry.action, entry.target, entry.detail
        )?;
    }
    Ok(())
}
