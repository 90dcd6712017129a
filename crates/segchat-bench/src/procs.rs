//! The processes under test and what `/proc` says about them.
//!
//! Each child is started with `kill_on_drop`, so an error or Ctrl-C in the
//! bench takes the children down with it. Their stderr (logs) goes to a
//! file in the bench's temporary directory, named in error messages.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long a child has to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Clock ticks per second of `/proc/PID/stat` times. Linux has reported
/// `USER_HZ` = 100 on every architecture for decades; asking `sysconf`
/// would need `libc` and `unsafe`.
const CLK_TCK: f64 = 100.0;

/// The `segchat` binary that sits next to this one.
pub(crate) fn segchat_exe() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()
        .context("could not find this program's path")?
        .with_file_name("segchat");
    if !exe.is_file() {
        bail!(
            "{} is missing: build it with cargo build --release -p segchat",
            exe.display()
        );
    }
    Ok(exe)
}

/// A running child process.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) name: &'static str,
    pub(crate) pid: u32,
    pub(crate) log: PathBuf,
    child: Child,
}

impl Proc {
    /// Starts `exe args…` with stderr to `log` and waits for a stdout line
    /// starting with `prefix`; returns the rest of that line.
    pub(crate) async fn start(
        name: &'static str,
        exe: &Path,
        args: &[&str],
        log: PathBuf,
        prefix: &str,
    ) -> anyhow::Result<(Proc, String)> {
        let stderr = std::fs::File::create(&log)
            .with_context(|| format!("could not create {}", log.display()))?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        // Settings of a segchat the user runs must not leak into ours.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SEGCHAT_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start {} ({name})", exe.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("{name} exited at once; see {}", log.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("{name}: no stdout pipe"))?;
        let mut proc = Proc {
            name,
            pid,
            log,
            child,
        };
        match tokio::time::timeout(START_TIMEOUT, wait_for_line(stdout, prefix)).await {
            Ok(Ok(rest)) => Ok((proc, rest)),
            Ok(Err(e)) => {
                let status = proc.child.wait().await.ok();
                Err(e.context(format!(
                    "{name} stopped before it was ready (exit: {}); its log is {}",
                    status.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
                    proc.log.display()
                )))
            }
            Err(_) => bail!(
                "{name} did not print {prefix:?} within {} s; its log is {}",
                START_TIMEOUT.as_secs(),
                proc.log.display()
            ),
        }
    }

    /// Kills the process and waits for it.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Whether it is still running.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "{} exited ({status}) during the run; its log is {}",
                self.name,
                self.log.display()
            ),
            Err(e) => bail!("could not check on {}: {e}", self.name),
        }
    }
}

/// Reads stdout until a line starting with `prefix`, then keeps draining
/// it in the background so the child never blocks on a full pipe.
async fn wait_for_line(stdout: ChildStdout, prefix: &str) -> anyhow::Result<String> {
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            let rest = rest.trim().to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(rest);
        }
    }
    bail!("its output ended without a line starting with {prefix:?}")
}

/// `segchat server --listen 127.0.0.1:0 --data-dir DIR/server`.
pub(crate) async fn start_server(exe: &Path, dir: &Path) -> anyhow::Result<(Proc, SocketAddr)> {
    let data = dir.join("server");
    let (proc, rest) = Proc::start(
        "segchat server",
        exe,
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path_str(&data)?,
        ],
        dir.join("server.log"),
        "listening on",
    )
    .await?;
    let addr = rest
        .parse()
        .with_context(|| format!("segchat server printed a bad address {rest:?}"))?;
    Ok((proc, addr))
}

/// `segchat node --server ADDR --data-dir DIR/host --p2p 127.0.0.1:0`, and
/// a client of its API.
pub(crate) async fn start_host(
    exe: &Path,
    dir: &Path,
    server: SocketAddr,
) -> anyhow::Result<(Proc, Api)> {
    start_node(exe, dir, server, "host node", "host").await
}

/// `segchat node --server ADDR --data-dir DIR/SUB --p2p 127.0.0.1:0`, and
/// a client of its API.
pub(crate) async fn start_node(
    exe: &Path,
    dir: &Path,
    server: SocketAddr,
    name: &'static str,
    sub: &str,
) -> anyhow::Result<(Proc, Api)> {
    let data = dir.join(sub);
    let server = server.to_string();
    let (proc, _url) = Proc::start(
        name,
        exe,
        &[
            "node",
            "--server",
            &server,
            "--data-dir",
            path_str(&data)?,
            "--p2p",
            "127.0.0.1:0",
        ],
        dir.join(format!("{sub}.log")),
        "node API listening on",
    )
    .await?;
    let api = Api::open(&data.join("api.json"))?;
    Ok((proc, api))
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", p.display()))
}

#[derive(Debug, Deserialize)]
struct ApiFile {
    url: String,
    token: String,
}

/// A client of a node's HTTP API.
#[derive(Debug)]
pub(crate) struct Api {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    pub(crate) fn open(api_json: &Path) -> anyhow::Result<Api> {
        let text = std::fs::read_to_string(api_json)
            .with_context(|| format!("could not read {}", api_json.display()))?;
        let file: ApiFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a node's api.json", api_json.display()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Api {
            url: file.url.trim_end_matches('/').to_owned(),
            token: file.token,
            http,
        })
    }

    /// `POST /api/v1/PATH` with a JSON body; the JSON answer.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        self.with_body(reqwest::Method::POST, path, body).await
    }

    /// `PUT /api/v1/PATH` with a JSON body; the JSON answer.
    pub(crate) async fn put(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        self.with_body(reqwest::Method::PUT, path, body).await
    }

    async fn with_body(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}/api/v1/{path}", self.url);
        let req = self.http.request(method, url).json(&body);
        self.send(path, req).await
    }

    /// `POST /api/v1/channels/CHANNEL/files?name=NAME` with the file at
    /// `path` as the body; the JSON answer.
    pub(crate) async fn share_file(
        &self,
        channel: &str,
        path: &Path,
        name: &str,
    ) -> anyhow::Result<serde_json::Value> {
        self.post_file(&format!("channels/{channel}/files"), path, name)
            .await
    }

    /// Sends the file at `path` to `user` in a direct message (the node
    /// encrypts it): the message as the node answers it.
    pub(crate) async fn send_dm_file(
        &self,
        user: &str,
        path: &Path,
        name: &str,
    ) -> anyhow::Result<serde_json::Value> {
        self.post_file(&format!("dms/{user}/files"), path, name)
            .await
    }

    /// Times reading file `hash` back from the node: bytes a second.
    pub(crate) async fn read_back(&self, hash: &str) -> anyhow::Result<f64> {
        let t = std::time::Instant::now();
        let resp = self
            .http
            .get(format!("{}/api/v1/files/{hash}/content", self.url))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(3600))
            .send()
            .await?
            .error_for_status()?;
        let mut n = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(piece) = futures::StreamExt::next(&mut body).await {
            n += piece?.len() as u64;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    }

    async fn post_file(
        &self,
        route: &str,
        path: &Path,
        name: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let file = tokio::fs::File::open(path).await?;
        let len = file.metadata().await?.len();
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
        let req = self
            .http
            .post(format!("{}/api/v1/{route}", self.url))
            .query(&[("name", name)])
            .header(reqwest::header::CONTENT_LENGTH, len)
            .timeout(Duration::from_secs(3600))
            .body(body);
        self.send(route, req).await
    }

    /// The URL of the node's `/events` WebSocket, token included.
    pub(crate) fn events_url(&self) -> String {
        format!(
            "{}/api/v1/events?token={}",
            self.url.replacen("http://", "ws://", 1),
            self.token
        )
    }

    /// `GET /api/v1/PATH`; the JSON answer.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let req = self.http.get(format!("{}/api/v1/{path}", self.url));
        self.send(path, req).await
    }

    async fn send(
        &self,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> anyhow::Result<serde_json::Value> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("host API /{path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("host API /{path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("host API /{path} answered {text:?}"))
    }
}

/// CPU time a process has used so far, in seconds (user + system).
pub(crate) fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. There, field 3 (state) is index 0, so utime (14) and
    // stime (15) are 11 and 12.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("{path} is malformed"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<f64> {
        let v: u64 = fields
            .get(i)
            .ok_or_else(|| anyhow!("{path} is short"))?
            .parse()
            .with_context(|| format!("{path} field {}", i + 3))?;
        Ok(v as f64)
    };
    Ok((tick(11)? + tick(12)?) / CLK_TCK)
}

/// The whole machine's CPU time so far, from the first line of
/// `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MachineTicks {
    all: u64,
    /// Time the hypervisor gave to other guests.
    stolen: u64,
}

impl MachineTicks {
    /// Of the machine's time since `earlier`, the share stolen, in %.
    pub(crate) fn stolen_pct_since(&self, earlier: &MachineTicks) -> f64 {
        (self.stolen - earlier.stolen) as f64 / (self.all - earlier.all).max(1) as f64 * 100.0
    }
}

pub(crate) fn machine_ticks() -> anyhow::Result<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").context("could not read /proc/stat")?;
    let line = stat.lines().next().unwrap_or_default();
    // cpu user nice system idle iowait irq softirq steal guest guest_nice;
    // guest time is counted in user already.
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().context("/proc/stat is malformed"))
        .collect::<anyhow::Result<_>>()?;
    if ticks.len() < 8 {
        bail!("/proc/stat is short");
    }
    Ok(MachineTicks {
        all: ticks.iter().sum(),
        stolen: ticks[7],
    })
}

/// Resident memory now and at its peak, in KiB (`VmRSS`, `VmHWM`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
}

pub(crate) fn memory(pid: &str) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    })
}

/// The threads members run on: one single-threaded runtime each, members
/// dealt out round-robin.
#[derive(Debug)]
pub(crate) struct MemberThreads {
    handles: Vec<tokio::runtime::Handle>,
    stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl MemberThreads {
    pub(crate) fn start(n: u32) -> anyhow::Result<MemberThreads> {
        let mut pool = MemberThreads {
            handles: Vec::new(),
            stop: Vec::new(),
        };
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a members' runtime")?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            pool.handles.push(rt.handle().clone());
            pool.stop.push(stop);
            std::thread::Builder::new()
                .name(format!("members-{i}"))
                .spawn(move || {
                    let _ = rt.block_on(stopped);
                })
                .context("starting a members' thread")?;
        }
        Ok(pool)
    }

    /// The runtime the `i`th member runs on.
    pub(crate) fn handle(&self, i: usize) -> tokio::runtime::Handle {
        self.handles[i % self.handles.len()].clone()
    }

    /// Ends the threads (their runtimes drop whatever still runs).
    pub(crate) fn stop(self) {
        for s in self.stop {
            let _ = s.send(());
        }
    }
}
