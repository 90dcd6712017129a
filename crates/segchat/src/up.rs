//! The long-running commands: `server`, `node`, and `up` (both in one
//! process). Each binds, says where it listens on stdout, and runs until
//! Ctrl-C or SIGTERM, then shuts down gracefully.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use segchat_node::{Node, NodeConfig};
use segchat_server::ServerConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{NodeArgs, ServerArgs, UpArgs};
use crate::config::{self, FileConfig};

/// Prints a line on stdout at once (tests and scripts read it).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Cancels `token` on Ctrl-C or SIGTERM.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops this");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

async fn bind_server(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not listen on {listen}"))
}

/// `segchat server`.
pub(crate) async fn server(
    data_dir: Option<PathBuf>,
    args: &ServerArgs,
    file: &FileConfig,
) -> anyhow::Result<()> {
    let (listen, config) = config::server(data_dir, args, file)?;
    let key = segchat_server::key_fingerprint(&config.key_file).with_context(|| {
        format!(
            "could not read the server key {}",
            config.key_file.display()
        )
    })?;
    let listener = bind_server(listen).await?;
    let addr = listener.local_addr()?;
    say(&format!("listening on {addr}"));
    say(&format!(
        "links: QUIC on UDP {addr}, relay and key on TCP {addr}"
    ));
    say(&format!("server key: {key}"));
    say(&invite_line(addr, &key));
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    segchat_server::run(listener, config, shutdown).await?;
    Ok(())
}

/// `segchat node`.
pub(crate) async fn node(
    data_dir: Option<PathBuf>,
    args: &NodeArgs,
    file: &FileConfig,
) -> anyhow::Result<()> {
    let config = config::node(data_dir, args, file)?;
    let dir = config.data_dir.clone();
    let shutdown = CancellationToken::new();
    let handle = Node::start(config, shutdown.clone()).await?;
    say(&format!("node API listening on {}", handle.api_url()));
    say(&format!(
        "web UI: {}",
        segchat_node::web::ui_url(handle.api_addr(), handle.api_token())
    ));
    say(&format!("data dir: {}", dir.display()));
    cancel_on_signal(shutdown);
    handle.wait().await;
    Ok(())
}

/// What `up` says about inviting people, by where its server listens.
fn invite_line(server: SocketAddr, key: &str) -> String {
    if server.ip().is_loopback() {
        return format!(
            "invite: only this machine can reach this server; to let friends in, start with `segchat up --listen 0.0.0.0:{}`",
            server.port()
        );
    }
    let at = if server.ip().is_unspecified() {
        format!("<this machine's address>:{}", server.port())
    } else {
        server.to_string()
    };
    format!(
        "invite: friends run `segchat node --server {at} --server-key {key}` (the web UI's Invite panel lists this machine's addresses)"
    )
}

/// `segchat up`: a server in `DIR/server` and a node in `DIR/node`.
pub(crate) async fn up(
    data_dir: Option<PathBuf>,
    args: &UpArgs,
    file: &FileConfig,
) -> anyhow::Result<()> {
    let root = data_dir
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(config::default_root);
    let server_args = ServerArgs {
        listen: Some(
            args.listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], config::DEFAULT_PORT))),
        ),
        ..ServerArgs::default()
    };
    let (listen, server_config): (SocketAddr, ServerConfig) =
        config::server(Some(root.join("server")), &server_args, file)?;
    let key = segchat_server::key_fingerprint(&server_config.key_file).with_context(|| {
        format!(
            "could not read the server key {}",
            server_config.key_file.display()
        )
    })?;
    let listener = bind_server(listen).await?;
    let server_addr = listener.local_addr()?;

    let shutdown = CancellationToken::new();
    let server_task = tokio::spawn(segchat_server::run(
        listener,
        server_config,
        shutdown.child_token(),
    ));

    let node_dir = root.join("node");
    let node_args = NodeArgs {
        server: Some(segchat_net::relay::reachable_from_here(server_addr).to_string()),
        server_key: Some(key.clone()),
        api: args.api,
        ..NodeArgs::default()
    };
    let mut node_config: NodeConfig = config::node(Some(node_dir.clone()), &node_args, file)?;
    node_config.share_server = Some(server_addr);
    let handle = match Node::start(node_config, shutdown.child_token()).await {
        Ok(h) => h,
        Err(e) => {
            shutdown.cancel();
            let _ = server_task.await;
            return Err(e.into());
        }
    };
    say(&format!("server listening on {server_addr}"));
    say(&format!("server key: {key}"));
    say(&invite_line(server_addr, &key));
    say(&format!("node API listening on {}", handle.api_url()));
    say(&format!(
        "web UI: {}",
        segchat_node::web::ui_url(handle.api_addr(), handle.api_token())
    ));
    say(&format!(
        "data dir: {} (e.g. `segchat --data-dir {} register NAME`)",
        node_dir.display(),
        node_dir.display()
    ));
    cancel_on_signal(shutdown.clone());
    handle.wait().await;
    shutdown.cancel();
    match server_task.await {
        Ok(result) => result?,
        Err(e) => anyhow::bail!("the server task failed: {e}"),
    }
    Ok(())
}
