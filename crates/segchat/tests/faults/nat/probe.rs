//! Asking the processes: polls and posts through a node's HTTP API, and
//! what the nodes' and the server's system logs recorded.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use crate::api::{Api, Sent};
use crate::cluster::{CHANNEL, DEADLINE};
use crate::procs::Node;

/// The source of each `UDP_ADDRESS_TOLD` record of the node whose key
/// starts with `key` in the server's log: where the server told that node
/// it sees its QUIC packets come from (`0.0.0.0:0`: nothing told).
pub(super) fn seen_at(server_log: &str, key: &str) -> Vec<String> {
    let who = format!("node={key}");
    server_log
        .lines()
        .filter(|l| l.contains("] UDP_ADDRESS_TOLD |") && l.contains(&who))
        .filter_map(|l| l.split(" | Source: ").nth(1))
        .filter_map(|l| l.split(" | ").next())
        .map(str::to_owned)
        .collect()
}

/// Polls `ok` until it says yes, for at most `within`; says how long it
/// took.
pub(super) async fn wait_until<F, Fut>(
    what: &str,
    within: Duration,
    mut ok: F,
) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if ok().await {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) async fn via(node: &Node) -> String {
    node.api().via(CHANNEL).await.unwrap_or_default()
}

pub(super) async fn has(node: &Node, id: &str) -> bool {
    node.api()
        .snapshot(CHANNEL)
        .await
        .is_ok_and(|s| s.messages.iter().any(|m| m.id == id))
}

pub(super) async fn send(node: &Node, body: &str) -> anyhow::Result<String> {
    match node.api().send(CHANNEL, body).await {
        Sent::Accepted { id } => Ok(id),
        other => bail!("{} could not post {body:?}: {other:?}", node.name),
    }
}

/// The node's system log.
pub(super) fn log_of(node: &Node) -> String {
    std::fs::read_to_string(node.dir.join("logs").join("segchat.log")).unwrap_or_default()
}

/// Whether a line of `log` contains every one of `needles`.
pub(super) fn logged(log: &str, needles: &[&str]) -> bool {
    log.lines().any(|l| needles.iter().all(|n| l.contains(n)))
}

/// The `path=` of every peer connection from `key` (12 hex digits) that
/// the host's log records as accepted, in order.
pub(super) fn accepted_paths(host_log: &str, key12: &str) -> Vec<String> {
    let needle = format!("link=p2p key={key12} path=");
    host_log
        .lines()
        .filter(|l| l.contains("CONNECTION_ESTABLISHED"))
        .filter_map(|l| l.split(&needle).nth(1))
        .map(|p| p.trim().to_owned())
        .collect()
}

/// Reads `/node`'s `node_id`.
pub(super) async fn node_key(api: &Api) -> anyhow::Result<String> {
    let v = api.node().await?;
    v["node_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("/node has no node_id: {v}"))
}

/// The last lines of a file (a process's stderr), for failure messages.
pub(super) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(super) async fn reaches_host(node: &Node, what: &str) -> anyhow::Result<Duration> {
    wait_until(what, DEADLINE, || async move { via(node).await == "host" }).await
}
