//! The real binary as child processes, and helpers to drive its verbs.
#![allow(dead_code, unreachable_pub, missing_debug_implementations)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_segchat");
/// Generous: the test machine may be loaded.
pub const DEADLINE: Duration = Duration::from_secs(20);
pub const POLL: Duration = Duration::from_millis(50);
pub const PASSWORD: &str = "correct horse battery";

/// A `segchat` command with no `SEGCHAT_*` leaking in from the outside.
pub fn segchat() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("SEGCHAT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// A long-running `segchat` process, killed when dropped.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        let mut child = segchat()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn segchat");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// The last word of the first stdout line that starts with `prefix`.
    pub fn wait_line(&self, prefix: &str) -> String {
        let start = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => {
                    return line.split_whitespace().last().expect("a word").to_owned();
                }
                Ok(_) => continue,
                Err(e) => panic!("no line starting with {prefix:?}: {e}"),
            }
        }
    }

    /// The next stdout line, if one comes before the deadline.
    pub fn next_line(&self) -> Option<String> {
        self.lines.recv_timeout(DEADLINE).ok()
    }

    /// The process id, for reading `/proc/PID/status` or `kill -STOP`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no goodbye, no flush.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(dir: &Path, listen: &str) -> (Proc, String) {
    start_server_with(dir, listen, &[])
}

/// A server with more flags after the usual ones.
pub fn start_server_with(dir: &Path, listen: &str, extra: &[&str]) -> (Proc, String) {
    let mut args = vec![
        "server",
        "--listen",
        listen,
        "--data-dir",
        dir.to_str().expect("utf-8 path"),
        "--heartbeat-secs",
        "0.5",
        "--peer-ttl-secs",
        "2",
    ];
    args.extend_from_slice(extra);
    let p = Proc::spawn(&args);
    let addr = p.wait_line("listening on");
    (p, addr)
}

pub fn start_node(server: &str, dir: &Path) -> Proc {
    start_node_with(server, dir, &[])
}

/// A node with more flags after the usual ones.
pub fn start_node_with(server: &str, dir: &Path, extra: &[&str]) -> Proc {
    let mut args = vec![
        "node",
        "--server",
        server,
        "--data-dir",
        dir.to_str().expect("utf-8 path"),
        "--p2p",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let p = Proc::spawn(&args);
    let url = p.wait_line("node API listening on");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    p
}

/// Runs a verb against the node at `dir`.
pub fn verb(dir: &Path, args: &[&str]) -> Output {
    verb_with(dir, args, None, &[])
}

pub fn verb_with(dir: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = segchat();
    cmd.arg("--data-dir").arg(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn verb");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("verb output")
}

pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = verb(dir, args);
    assert!(
        out.status.success(),
        "segchat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

pub fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(dir, &all)).expect("--json prints JSON")
}

/// A refused verb: exit code and stderr.
pub fn refused(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = verb(dir, args);
    assert!(!out.status.success(), "segchat {args:?} should fail");
    assert!(out.stdout.is_empty(), "errors go to stderr only");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stderr).expect("utf-8"),
    )
}

/// Polls the node's `GET /api/v1/node` until `ok` holds.
pub fn wait_node(dir: &Path, what: &str, ok: impl Fn(&Value) -> bool) {
    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.join("api.json")).expect("api.json"))
            .expect("json");
    let url = format!("{}/api/v1/node", file["url"].as_str().expect("url"));
    let token = file["token"].as_str().expect("token").to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(resp) = http.get(&url).bearer_auth(&token).send().await {
                if let Ok(v) = resp.json::<Value>().await {
                    if ok(&v) {
                        return;
                    }
                }
            }
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
            tokio::time::sleep(POLL).await;
        }
    });
}

pub fn connected(v: &Value) -> bool {
    v["server_connected"] == true
}

pub fn register(dir: &Path, user: &str) {
    with_password(dir, "register", user);
}

/// Signs the node at `dir` in as an existing account.
pub fn login(dir: &Path, user: &str) {
    with_password(dir, "login", user);
}

fn with_password(dir: &Path, verb: &str, user: &str) {
    let out = verb_with(
        dir,
        &[verb, user, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
        &[],
    );
    assert!(
        out.status.success(),
        "{verb} {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let root = tempfile::tempdir().expect("tempdir");
    let (s, a, b) = (
        root.path().join("server"),
        root.path().join("a"),
        root.path().join("b"),
    );
    (root, s, a, b)
}

/// Polls `f` until it holds.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// Every (id, body) in a channel's local history at the node in `dir`.
pub fn history(dir: &Path, channel: &str) -> Vec<(String, String)> {
    let v = ok_json(dir, &["history", channel, "--limit", "500"]);
    v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["id"].as_str().expect("id").to_owned(),
                m["body"].as_str().expect("body").to_owned(),
            )
        })
        .collect()
}

/// How the node in `dir` follows `channel` now (`host`, `server`, …).
pub fn link_of(dir: &Path, channel: &str) -> String {
    let v = ok_json(dir, &["unread"]);
    v["links"][channel].as_str().unwrap_or("").to_owned()
}

/// Sends `body` to `channel` from the node in `dir`; the message's id.
pub fn send(dir: &Path, channel: &str, body: &str) -> String {
    let v = ok_json(dir, &["send", channel, body]);
    v["message"]["id"].as_str().expect("id").to_owned()
}

/// Waits until every node in `dirs` holds every message of `sent` (ids)
/// in `channel`, then checks that each shows exactly those, once each, in
/// the same order as the first; returns that history. On a timeout, says
/// what the lagging node lacks, with its log.
pub fn converge(
    dirs: &[&Path],
    channel: &str,
    sent: &std::collections::BTreeSet<String>,
) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for dir in dirs {
        let start = Instant::now();
        loop {
            let h = history(dir, channel);
            let ids: std::collections::BTreeSet<String> =
                h.iter().map(|(id, _)| id.clone()).collect();
            if sent.is_subset(&ids) {
                break;
            }
            if start.elapsed() > DEADLINE {
                let missing: Vec<&String> = sent.difference(&ids).collect();
                let log = std::fs::read_to_string(dir.join("logs").join("segchat.log"))
                    .unwrap_or_default();
                panic!(
                    "{} lacks {missing:?}; has {h:?}\nlog:\n{log}",
                    dir.display()
                );
            }
            std::thread::sleep(POLL);
        }
        all.push(history(dir, channel));
    }
    for (dir, h) in dirs.iter().zip(&all) {
        let ids: std::collections::BTreeSet<&String> = h.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), h.len(), "{}: no message twice", dir.display());
        assert_eq!(
            h.len(),
            sent.len(),
            "{}: exactly what was sent: {h:?}",
            dir.display()
        );
        assert_eq!(
            h,
            &all[0],
            "{} shows the same history in the same order as {}",
            dir.display(),
            dirs[0].display()
        );
    }
    all.swap_remove(0)
}
