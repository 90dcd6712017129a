//! `segchat`: the one binary. It parses flags, loads settings, sets up
//! logging, and calls into the libraries.
//!
//! # Layout
//!
//! - `cli.rs`: the clap types.
//! - `config.rs`: defaults < TOML file < `SEGCHAT_*` < flags, validated.
//! - `up.rs`: the long-running commands (`server`, `node`, `up`).
//! - `client.rs` and `verbs.rs`: the verbs, clients of a node's HTTP API;
//!   `stream_verbs.rs`: `segchat stream …`; `channel_verbs.rs`:
//!   `segchat channel set|delete`.

mod channel_verbs;
mod cli;
mod client;
mod config;
mod dm_verbs;
mod file_verbs;
mod friend_verbs;
mod message_verbs;
mod output;
mod paths;
mod stream_verbs;
mod up;
mod verbs;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let long_running = matches!(
        cli.command,
        Command::Server(_) | Command::Node(_) | Command::Up(_)
    );
    // Verbs keep stderr for their own errors unless RUST_LOG asks for more.
    let default_level = if long_running { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> ExitCode {
    let file = match config::load(cli.config.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(verbs::EXIT_USAGE);
        }
    };
    let data_dir = cli.data_dir.clone();
    let result = match &cli.command {
        Command::Server(args) => up::server(data_dir, args, &file).await,
        Command::Node(args) => up::node(data_dir, args, &file).await,
        Command::Up(args) => up::up(data_dir, args, &file).await,
        _ => {
            let dir = data_dir
                .or_else(|| file.node.data_dir.clone())
                .unwrap_or_else(|| config::default_root().join("node"));
            return verbs::run(&dir, cli.json, cli.command).await;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
