//! `segchat-bench`: benchmarks that start real segchat processes on
//! loopback, drive them over real sockets, and print figures. They are
//! programs, not tests: nothing here fails on a slow machine.
//!
//! # Layout
//!
//! - [`procs`]: the child processes (a `segchat server`, the host's
//!   `segchat node`), the host's HTTP API, and CPU and memory readings
//!   from `/proc`.
//! - [`link`]: minimal clients of the tracker link and the peer link,
//!   built on `segchat_proto`'s frames and codec over `segchat_net`'s
//!   client (one endpoint, under its own key, per simulated machine; the
//!   tracker link TLS over TCP under the same key).
//! - [`chat`]: the `chat` scenario: one host, N members, K senders.
//! - [`stream`]: the `stream` scenario: a livestream to 1, 4, 8 viewers.
//! - [`floor`]: the `floor` scenario: the same fan-out as `chat` with no
//!   segchat code, to tell the machine's share of `chat`'s figures.
//! - [`conns`]: the `conns` scenario: server instances on PostgreSQL and
//!   NATS, idle nodes held by child processes of the bench
//!   (`conns/idle.rs`), and presence from one instance to another's users.
//! - [`store`]: the `store` scenario: the server's backup on SQLite and
//!   on PostgreSQL, through the `Store` trait.
//! - [`dm`]: the `dm` scenario: direct-message latency P2P and through
//!   the server, and Olm's cost per message.
//! - [`files`]: the `files` scenario: a file from 1 seeder and from 4,
//!   the share rate, and the cost of resuming a killed fetch.
//! - [`report`]: latency percentiles, the table and the JSON line.

mod chat;
mod conns;
mod dm;
mod files;
mod floor;
mod link;
mod procs;
mod report;
mod store;
mod stream;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Benchmarks for segchat. Build the binary under test first:
/// `cargo build --release -p segchat -p segchat-bench`.
#[derive(Debug, Parser)]
#[command(name = "segchat-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Channel fan-out: one host node, N members, K senders posting R
    /// messages/s in total; prints delivery, latency, host CPU and memory.
    Chat(chat::ChatArgs),
    /// Livestream over QUIC datagrams: one streamer node, rounds of 1, 4, 8 viewer
    /// nodes; prints delivered fps, latency, loss, bitrate, streamer CPU.
    Stream(stream::StreamArgs),
    /// The machine's floor for `chat`: one process writes a frame to each
    /// of N connections (TCP, or QUIC on the same iroh endpoints as
    /// segchat's links) R times a second, the bench reads them; no segchat
    /// code. Prints latency and the CPU a write costs.
    Floor(floor::FloorArgs),
    /// The server's message backup on SQLite and on PostgreSQL (a private
    /// server started for the run): backup throughput and history pages.
    Store(store::StoreArgs),
    /// Server instances on PostgreSQL and NATS: memory per idle connected
    /// node, and presence changes from one instance to another's users
    /// (p50/p99).
    Conns(conns::ConnsArgs),
    /// Direct messages between two nodes: latency P2P and through the
    /// server's mailbox, and the cost of Olm encryption per message.
    Dm(dm::DmArgs),
    /// Files: a file fetched from 1 seeder and from 4 (each capped with
    /// `tc` when given `--cap-mbit`, as root), the share rate (hashing),
    /// and what a fetch killed half way fetches again.
    Files(files::FilesArgs),
    /// The writing side of `floor` (started by it).
    #[command(hide = true)]
    FloorWriter(floor::WriterArgs),
    /// Holds idle nodes for `conns` (started by it).
    #[command(hide = true)]
    Idle(conns::idle::IdleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(cli) => r,
            // Dropping `run` drops the child processes, which kills them.
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Do not wait for member tasks still blocked on sockets.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Chat(args) => chat::run(args).await,
        Command::Stream(args) => stream::run(args).await,
        Command::Floor(args) => floor::run(args).await,
        Command::Store(args) => store::run(args).await,
        Command::Dm(args) => dm::run(args).await,
        Command::Files(args) => files::run(args).await,
        Command::Conns(args) => conns::run(args).await,
        Command::FloorWriter(args) => floor::writer(args).await,
        Command::Idle(args) => conns::idle::run(args).await,
    }
}
