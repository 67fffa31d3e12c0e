//! The `missive` binary: wiring only. Subcommands live in `cli/`.

mod catalog;
mod cli;
mod config;

use std::io::{IsTerminal, Write};

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
use crate::config::Config;

fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("MISSIVE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,llama_cpp_2=warn,llama-cpp-2=warn"));
    let json = std::env::var("MISSIVE_LOG_FORMAT").is_ok_and(|f| f == "json");
    // Colours only for a terminal: a log file or collector gets plain text.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(cli::serve::run(config, args)),
        Command::Pull { source: None, .. } => {
            for entry in catalog::entries()? {
                eprintln!("{:32} {}", entry.name, entry.description);
            }
            Ok(())
        }
        Command::Pull {
            source: Some(source),
            force,
        } => {
            let path = cli::pull::pull(&config.home()?.join("models"), &source, force)?;
            writeln!(std::io::stdout(), "{}", path.display())?;
            Ok(())
        }
        Command::Chat(args) => runtime.block_on(cli::chat::run(args)),
        Command::Keys { command } => cli::keys::run(&config, command),
        Command::Users { command } => cli::org::users(&config, command),
        Command::KillSwitch(args) => cli::org::kill_switch(&config, args),
        Command::Audit { limit } => cli::org::audit_log(&config, limit),
        Command::Bench { command } => cli::bench::run(command),
    }
}
