//! The real binary: a server and two node processes on ephemeral ports,
//! driven by the CLI verbs.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_segchat");
/// Generous: the test machine may be loaded.
const DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
const PASSWORD: &str = "correct horse battery";

/// A `segchat` command with no `SEGCHAT_*` leaking in from the outside.
fn segchat() -> Command {
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
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
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
    fn wait_line(&self, prefix: &str) -> String {
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

    /// SIGKILL: no goodbye, no flush.
    fn kill_9(&mut self) {
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

fn start_server(dir: &Path, listen: &str) -> (Proc, String) {
    let p = Proc::spawn(&[
        "server",
        "--listen",
        listen,
        "--data-dir",
        dir.to_str().expect("utf-8 path"),
        "--heartbeat-secs",
        "0.5",
        "--peer-ttl-secs",
        "2",
    ]);
    let addr = p.wait_line("listening on");
    (p, addr)
}

fn start_node(server: &str, dir: &Path) -> Proc {
    let p = Proc::spawn(&[
        "node",
        "--server",
        server,
        "--data-dir",
        dir.to_str().expect("utf-8 path"),
        "--p2p",
        "127.0.0.1:0",
    ]);
    let url = p.wait_line("node API listening on");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    p
}

/// Runs a verb against the node at `dir`.
fn verb(dir: &Path, args: &[&str]) -> Output {
    verb_with(dir, args, None, &[])
}

fn verb_with(dir: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
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

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = verb(dir, args);
    assert!(
        out.status.success(),
        "segchat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(dir, &all)).expect("--json prints JSON")
}

/// A refused verb: exit code and stderr.
fn refused(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = verb(dir, args);
    assert!(!out.status.success(), "segchat {args:?} should fail");
    assert!(out.stdout.is_empty(), "errors go to stderr only");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stderr).expect("utf-8"),
    )
}

/// Polls the node's `GET /api/v1/node` until `ok` holds.
fn wait_node(dir: &Path, what: &str, ok: impl Fn(&Value) -> bool) {
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

fn connected(v: &Value) -> bool {
    v["server_connected"] == true
}

fn register(dir: &Path, user: &str) {
    let out = verb_with(
        dir,
        &["register", user, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
        &[],
    );
    assert!(
        out.status.success(),
        "register {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let root = tempfile::tempdir().expect("tempdir");
    let (s, a, b) = (
        root.path().join("server"),
        root.path().join("a"),
        root.path().join("b"),
    );
    (root, s, a, b)
}

#[test]
fn verbs_end_to_end_with_errors_on_stderr() {
    let (_root, sdir, adir, bdir) = dirs();
    let (_server, addr) = start_server(&sdir, "127.0.0.1:0");
    let _a = start_node(&addr, &adir);
    let _b = start_node(&addr, &bdir);
    wait_node(&adir, "A connected", connected);
    wait_node(&bdir, "B connected", connected);

    register(&adir, "alice");
    // Bob's password comes from the environment instead.
    let out = verb_with(
        &bdir,
        &["register", "bob"],
        None,
        &[("SEGCHAT_PASSWORD", PASSWORD)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(ok(&adir, &["whoami"]).contains("alice"));
    let created = ok(&adir, &["create", "general", "--allow-visitors"]);
    assert!(created.contains("general"), "{created}");
    ok(&adir, &["create", "staff", "--visibility", "members-only"]);
    assert!(ok(&bdir, &["join", "general"]).contains("general"));

    let v = ok_json(&bdir, &["channels"]);
    assert_eq!(v["cached"], false);
    let general = v["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "general"))
        .expect("general listed");
    assert_eq!(general["member_count"], 2);
    assert_eq!(general["my_role"], "member");

    let members = ok(&adir, &["members", "general"]);
    let header = members.lines().next().expect("a header");
    assert!(
        header.starts_with("USER") && header.contains("PRESENCE"),
        "{members}"
    );
    assert!(
        members.contains("alice") && members.contains("bob"),
        "{members}"
    );

    let peers = ok_json(&adir, &["peers", "--channel", "general"]);
    let names: Vec<&str> = peers["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(|p| p["username"].as_str())
        .collect();
    assert!(
        names.contains(&"alice") && names.contains(&"bob"),
        "{peers}"
    );

    // Refusals: stderr, exit 1.
    let (code, err) = refused(&bdir, &["join", "nope"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: "), "{err}");
    let out = verb_with(
        &bdir,
        &["login", "alice", "--password-stdin"],
        Some("wrong password\n"),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    let out = verb_with(
        &bdir,
        &["register", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken"));

    // Status round trip.
    assert!(ok(&adir, &["status", "invisible"]).contains("invisible"));
    assert_eq!(ok(&adir, &["status"]).trim(), "invisible");

    // Usage errors: exit 2. No node: exit 3 with a hint.
    let (code, _) = refused(&adir, &["status", "sleepy"]);
    assert_eq!(code, 2);
    let nowhere = adir.join("no-node-here");
    let (code, err) = refused(&nowhere, &["whoami"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("no node found at") && err.contains("segchat up"),
        "{err}"
    );
}

#[test]
fn server_kill_9_and_restart_keeps_data_and_nodes_reconnect() {
    let (_root, sdir, adir, bdir) = dirs();
    let (mut server, addr) = start_server(&sdir, "127.0.0.1:0");
    let _a = start_node(&addr, &adir);
    let _b = start_node(&addr, &bdir);
    wait_node(&adir, "A connected", connected);
    wait_node(&bdir, "B connected", connected);
    register(&adir, "alice");
    register(&bdir, "bob");
    ok(&adir, &["create", "general"]);
    ok(&bdir, &["join", "general"]);

    server.kill_9();
    wait_node(&adir, "A to notice the server is gone", |v| !connected(v));
    wait_node(&bdir, "B to notice the server is gone", |v| !connected(v));
    // Meanwhile: requests fail fast; the channel list comes from the cache.
    let (code, err) = refused(&adir, &["create", "other"]);
    assert_eq!(code, 1);
    assert!(err.contains("unreachable"), "{err}");
    let cached = ok_json(&adir, &["channels"]);
    assert_eq!(cached["cached"], true, "{cached}");

    // Same port, same data directory.
    let (_server, again) = start_server(&sdir, &addr);
    assert_eq!(again, addr);
    wait_node(&adir, "A to reconnect by itself", connected);
    wait_node(&bdir, "B to reconnect by itself", connected);

    // Sessions resumed: no new login needed.
    assert!(ok(&adir, &["whoami"]).starts_with("alice"));
    assert!(ok(&bdir, &["whoami"]).starts_with("bob"));
    // Accounts and channels are intact.
    let v = ok_json(&bdir, &["channels"]);
    assert_eq!(v["cached"], false);
    let general = v["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "general"))
        .expect("general survived");
    assert_eq!(general["owner"], "alice");
    let members = ok(&adir, &["members", "general"]);
    assert!(
        members.contains("alice") && members.contains("bob"),
        "{members}"
    );
    ok(&adir, &["logout"]);
    let out = verb_with(
        &adir,
        &["login", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
        &[],
    );
    assert!(
        out.status.success(),
        "the account survived: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
