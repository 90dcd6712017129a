//! The processes under test: `segchat server` and `segchat node` as child
//! processes, started again on the same data directory after a `kill -9`,
//! optionally inside a network namespace or under a skewed clock.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::api::Api;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_segchat");
/// How long a process has to say where it listens (the machine may be
/// loaded).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How a process is launched: a command prefix (`ip netns exec NS`) and
/// extra environment (`LD_PRELOAD` of libfaketime).
#[derive(Debug, Clone, Default)]
pub(crate) struct Launch {
    pub(crate) prefix: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
}

impl Launch {
    fn command(&self, args: &[String]) -> Command {
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SEGCHAT_") {
                cmd.env_remove(k);
            }
        }
        // `SEGCHAT_FAULTS_LOG` sets the children's `RUST_LOG` (their
        // stderr is in the scenario's directory).
        let filter = std::env::var("SEGCHAT_FAULTS_LOG").unwrap_or_else(|_| "warn".into());
        cmd.env("RUST_LOG", filter);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// One running (or killed) child, restartable with the same arguments.
#[derive(Debug)]
struct Restartable {
    name: String,
    launch: Launch,
    args: Vec<String>,
    /// Its stderr, appended to across restarts (outside its data dir, so a
    /// full disk does not silence it).
    stderr: PathBuf,
    child: Option<Child>,
}

impl Restartable {
    /// Starts it and waits for a stdout line starting with `prefix`;
    /// returns the line's last word.
    async fn start(&mut self, prefix: &str) -> anyhow::Result<String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)
            .with_context(|| format!("could not open {}", self.stderr.display()))?;
        let mut child = self
            .launch
            .command(&self.args)
            .stderr(log)
            .spawn()
            .with_context(|| format!("could not start {}", self.name))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        self.child = Some(child);
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with(prefix) {
                    return Ok(line.split_whitespace().last().unwrap_or("").to_owned());
                }
            }
            bail!("its output ended without {prefix:?}")
        })
        .await;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        match found {
            Ok(Ok(word)) => Ok(word),
            Ok(Err(e)) => Err(e.context(format!(
                "{} did not start; see {}",
                self.name,
                self.stderr.display()
            ))),
            Err(_) => bail!(
                "{} did not print {prefix:?} within {START_TIMEOUT:?}; see {}",
                self.name,
                self.stderr.display()
            ),
        }
    }

    /// SIGKILL: no goodbye, no flush; waits until it is gone.
    async fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// `segchat server`, restarted on the same address and data dir.
#[derive(Debug)]
pub(crate) struct Server {
    proc: Restartable,
    pub(crate) addr: SocketAddr,
}

impl Server {
    /// Starts a server on `ip` (an ephemeral port) with short heartbeats,
    /// so nodes notice each other going away within seconds.
    pub(crate) async fn start(root: &Path, ip: &str) -> anyhow::Result<Server> {
        let dir = root.join("server");
        let mut proc = Restartable {
            name: "segchat server".into(),
            launch: Launch::default(),
            args: Vec::new(),
            stderr: root.join("server.stderr"),
            child: None,
        };
        let args = |listen: &str| -> Vec<String> {
            [
                "server",
                "--listen",
                listen,
                "--data-dir",
                &dir.to_string_lossy(),
                "--heartbeat-secs",
                "0.5",
                "--peer-ttl-secs",
                "2",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        proc.args = args(&format!("{ip}:0"));
        let addr: SocketAddr = proc.start("listening on").await?.parse()?;
        // A restart must come back where the nodes look for it.
        proc.args = args(&addr.to_string());
        Ok(Server { proc, addr })
    }

    pub(crate) async fn kill_9(&mut self) {
        self.proc.kill_9().await;
    }

    pub(crate) async fn restart(&mut self) -> anyhow::Result<()> {
        self.proc.start("listening on").await.map(|_| ())
    }
}

/// `segchat node`, with a client of its API that follows restarts.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    proc: Restartable,
    api: Arc<Mutex<Api>>,
}

/// Where a node listens.
#[derive(Debug, Clone)]
pub(crate) struct NodeAddrs {
    /// `--p2p` (the UDP socket binds beside it).
    pub p2p: String,
    /// `--api`.
    pub(crate) api: String,
}

impl Default for NodeAddrs {
    fn default() -> Self {
        NodeAddrs {
            p2p: "127.0.0.1:0".into(),
            api: "127.0.0.1:0".into(),
        }
    }
}

impl Node {
    pub(crate) async fn start(
        root: &Path,
        name: &str,
        server: SocketAddr,
        dir: PathBuf,
        addrs: NodeAddrs,
        launch: Launch,
    ) -> anyhow::Result<Node> {
        let args = [
            "node",
            "--server",
            &server.to_string(),
            "--data-dir",
            &dir.to_string_lossy(),
            "--p2p",
            &addrs.p2p,
            "--api",
            &addrs.api,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut proc = Restartable {
            name: format!("node {name}"),
            launch,
            args,
            stderr: root.join(format!("{name}.stderr")),
            child: None,
        };
        proc.start("node API listening on").await?;
        let api = Api::open(&dir)?;
        Ok(Node {
            name: name.to_owned(),
            dir,
            proc,
            api: Arc::new(Mutex::new(api)),
        })
    }

    /// A client of the node's API as it is now (after a restart, the new
    /// address and token).
    pub(crate) fn api(&self) -> Api {
        self.api.lock().expect("api lock").clone()
    }

    /// A handle that always gives the current client, for posters that
    /// outlive a restart.
    pub(crate) fn api_cell(&self) -> Arc<Mutex<Api>> {
        self.api.clone()
    }

    pub(crate) async fn kill_9(&mut self) {
        self.proc.kill_9().await;
    }

    /// Starts it again on the same data dir (a new API port and token).
    pub(crate) async fn restart(&mut self) -> anyhow::Result<()> {
        self.proc.start("node API listening on").await?;
        *self.api.lock().expect("api lock") = Api::open(&self.dir)?;
        Ok(())
    }

    /// The local TCP port of the node's tracker link now (its system log
    /// names it on each connection).
    pub(crate) fn tracker_port(&self) -> Option<u16> {
        let text =
            std::fs::read_to_string(self.dir.join("logs").join("segchat.log")).unwrap_or_default();
        text.lines()
            .rev()
            .filter(|l| l.contains("] CONNECTION_ESTABLISHED |") && l.contains("link=tracker"))
            .find_map(|l| l.split(" tcp=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse::<SocketAddr>().ok())
            .map(|addr| addr.port())
    }

    /// The end of the node's system log, for failure messages, without the
    /// records per message sent or received or
    /// batch synced.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.join("logs").join("segchat.log")).unwrap_or_default();
        let all: Vec<&str> = text
            .lines()
            .filter(|l| {
                !["] MESSAGE_SENT |", "] MESSAGE_RECEIVED |", "] SYNC |"]
                    .iter()
                    .any(|r| l.contains(r))
            })
            .collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
