//! The cast of every scenario: a server, alice's node hosting the channel
//! `ops`, and two members, bob and carol, who post to it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::load::{Ledger, Poster};
use crate::procs::{Launch, Node, NodeAddrs, Server};

pub(crate) const CHANNEL: &str = "ops";
/// For waits during set-up and faults (the machine may be loaded).
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Where and how one node runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spec {
    /// Its data dir; `ROOT/NAME` if not given.
    pub(crate) dir: Option<PathBuf>,
    pub(crate) addrs: NodeAddrs,
    pub(crate) launch: Launch,
}

/// The whole cast.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) server: Server,
    /// alice: owns and hosts `ops`.
    pub(crate) host: Node,
    pub(crate) bob: Node,
    pub(crate) carol: Node,
}

impl Cluster {
    /// Starts everything, signs everyone up, and waits until both members
    /// reach the host P2P.
    pub(crate) async fn start(
        root: &Path,
        server_ip: &str,
        host: Spec,
        bob: Spec,
        carol: Spec,
    ) -> anyhow::Result<Cluster> {
        let server = Server::start(root, server_ip).await?;
        let node = |name: &'static str, spec: Spec| {
            let dir = spec.dir.unwrap_or_else(|| root.join(name));
            Node::start(root, name, server.addr, dir, spec.addrs, spec.launch)
        };
        let (host, bob, carol) =
            tokio::join!(node("alice", host), node("bob", bob), node("carol", carol));
        let c = Cluster {
            host: host?,
            bob: bob?,
            carol: carol?,
            server,
        };
        for n in c.nodes() {
            wait_for(&format!("{} to reach the server", n.name), || async {
                n.api()
                    .node()
                    .await
                    .map(|v| v["server_connected"] == true)
                    .unwrap_or(false)
            })
            .await;
        }
        let apis = c.nodes().map(Node::api);
        let (a, b, d) = tokio::join!(
            apis[0].register("alice"),
            apis[1].register("bob"),
            apis[2].register("carol")
        );
        for r in [a, b, d] {
            r?;
        }
        c.host.api().create(CHANNEL).await?;
        c.bob.api().join(CHANNEL).await?;
        c.carol.api().join(CHANNEL).await?;
        for n in c.members() {
            wait_for(&format!("{} to reach the host P2P", n.name), || {
                via_is(n, "host")
            })
            .await;
        }
        Ok(c)
    }

    pub(crate) fn nodes(&self) -> [&Node; 3] {
        [&self.host, &self.bob, &self.carol]
    }

    pub(crate) fn members(&self) -> [&Node; 2] {
        [&self.bob, &self.carol]
    }

    /// bob and carol start posting continuously, counting from `first`.
    pub(crate) fn start_posting(&self, ledger: &Ledger, first: u64) -> [Poster; 2] {
        [
            Poster::start(ledger, self.bob.api_cell(), "bob", CHANNEL, first),
            Poster::start(ledger, self.carol.api_cell(), "carol", CHANNEL, first),
        ]
    }
}

/// Whether `node` reaches the channel the way named.
pub(crate) async fn via_is(node: &Node, via: &str) -> bool {
    node.api()
        .via(CHANNEL)
        .await
        .map(|v| v == via)
        .unwrap_or(false)
}

/// Polls `ok` until it holds; panics after [`DEADLINE`].
pub(crate) async fn wait_for<F, Fut>(what: &str, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !ok().await {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops every poster (each after its post in flight).
pub(crate) async fn stop_posting(posters: [Poster; 2]) {
    for p in posters {
        p.stop().await;
    }
}

/// Lets time pass while the posters post (a scenario's phases are timed:
/// load before, during and after a fault).
pub(crate) async fn under_load(d: Duration) {
    tokio::time::sleep(d).await;
}

/// The scenario's directory (data dirs, each process's stderr). Kept, and
/// named on stderr, under `SEGCHAT_FAULTS_KEEP=1`.
pub(crate) fn workdir() -> tempfile::TempDir {
    let keep = std::env::var("SEGCHAT_FAULTS_KEEP").as_deref() == Ok("1");
    let dir = tempfile::Builder::new()
        .prefix("segchat-faults-")
        .disable_cleanup(keep)
        .tempdir()
        .expect("tempdir");
    if keep {
        eprintln!("kept: {}", dir.path().display());
    }
    dir
}

/// Whether this process may set up namespaces, mounts and firewall rules.
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A scenario that cannot run here says why; under
/// `SEGCHAT_FAULTS_STRICT=1` (set by `scripts/test.sh` when root) that is a
/// failure, so CI never skips silently.
pub(crate) fn skip(scenario: &str, why: &str) {
    let msg = format!("fault scenario {scenario} skipped: {why}");
    if std::env::var("SEGCHAT_FAULTS_STRICT").as_deref() == Ok("1") {
        panic!("{msg} (SEGCHAT_FAULTS_STRICT=1)");
    }
    eprintln!("{msg}");
}

/// The path of `tool` on `PATH`, if it is installed.
pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
