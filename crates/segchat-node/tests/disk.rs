//! A member whose disk fills up: a real tmpfs of a few MiB mounted as the
//! member node's data directory, filled with a file while another member
//! posts. Nothing may go missing silently: what could not be stored shows
//! as a gap and fills in once there is space again, with the link up and
//! after a restart.
//!
//! Mounting needs root (CI runs as root); without it the test says why and
//! passes without running.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::chat::via;
use common::{eventually, start_node, tempdir, Api, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A tmpfs mounted for the length of a test; unmounted on drop, even when
/// the test fails.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "16m"), or says why it cannot.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let uid = std::fs::metadata("/proc/self")
            .map_err(|e| format!("cannot tell who runs the test: {e}"))?
            .uid();
        if uid != 0 {
            return Err(format!("mounting a tmpfs needs root; this is uid {uid}"));
        }
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = parent.path().join("node");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir,
            _parent: parent,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the file system holding `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create the filler");
    let chunk = vec![0x5a_u8; 64 * 1024];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    // Whatever is left is smaller than a chunk: take it byte by byte.
    let mut byte = [0u8; 4096];
    while f.write_all(&byte[..1]).is_ok() {
        byte[0] = 0;
    }
    let _ = f.sync_all();
    path
}

/// `channel`'s history on `api`: bodies (oldest first) and open gaps.
async fn history(api: &Api, channel: &str) -> (Vec<String>, Vec<Value>) {
    let (status, v) = api
        .get(&format!("/channels/{channel}/messages?limit=500"))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mut bodies: Vec<String> = v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().expect("body").to_owned())
        .collect();
    bodies.reverse();
    let gaps = v["gaps"].as_array().cloned().unwrap_or_default();
    (bodies, gaps)
}

/// Waits until `api` holds exactly `want` in `channel`, with no gap.
async fn holds_all(api: &Api, channel: &str, want: &[String], what: &str) {
    eventually(what, || async {
        let (got, gaps) = history(api, channel).await;
        (got == want && gaps.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_disk_filled_converges_with_no_silent_hole() {
    let disk = match Tmpfs::mount("16m") {
        Ok(d) => d,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_c, cdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let host = start_node(server.addr, &adir).await;
    let member = start_node(server.addr, &disk.dir).await;
    let poster = start_node(server.addr, &cdir).await;
    let (a, b, c) = (Api::of(&host), Api::of(&member), Api::of(&poster));
    for api in [&a, &b, &c] {
        api.wait_connected().await;
    }
    a.register("alice").await;
    a.create_channel("lobby", "public").await;
    b.register("bob").await;
    c.register("carol").await;
    for api in [&b, &c] {
        api.join("lobby").await;
        eventually("the member to reach the host", || async {
            (via(api, "lobby").await.as_deref() == Some("host")).then_some(())
        })
        .await;
    }
    let mut want = vec!["before the disk filled".to_owned()];
    c.ok(
        Method::POST,
        "/channels/lobby/messages",
        Some(json!({"body": want[0]})),
    )
    .await;
    holds_all(&b, "lobby", &want, "bob to read the first message").await;

    // Bob's disk fills up; carol posts 40.
    let filler = fill(&disk.dir);
    for n in 0..40 {
        let body = format!("posted while bob's disk was full #{n:02}");
        c.ok(
            Method::POST,
            "/channels/lobby/messages",
            Some(json!({"body": body})),
        )
        .await;
        want.push(body);
    }
    holds_all(&a, "lobby", &want, "the host to store all 41").await;

    // Bob could not store them all; what he lacks is a marked gap, never
    // a silent hole.
    let (held, gaps) = eventually("bob to mark what he could not store", || async {
        let (got, gaps) = history(&b, "lobby").await;
        let lacking = got.len() < want.len();
        (lacking && !gaps.is_empty()).then_some((got, gaps))
    })
    .await;
    println!(
        "with the disk full bob holds {} of {}; gaps {gaps:?}",
        held.len(),
        want.len()
    );

    // Writing with a full disk says so.
    let (status, v) = b
        .post("/channels/lobby/messages", json!({"body": "no room"}))
        .await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{v}");
    assert_eq!(v["error"], "INSUFFICIENT_STORAGE", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("disk is full")),
        "{v}"
    );

    // Space comes back; with the link up all along, bob fills the gap.
    std::fs::remove_file(&filler).expect("remove the filler");
    holds_all(&b, "lobby", &want, "bob to fill the gap while connected").await;

    // And it stays whole after a restart.
    member.shutdown().await;
    let member = start_node(server.addr, &disk.dir).await;
    let b = Api::of(&member);
    b.wait_connected().await;
    eventually("bob to reach the host again", || async {
        (via(&b, "lobby").await.as_deref() == Some("host")).then_some(())
    })
    .await;
    holds_all(&b, "lobby", &want, "bob to hold all 41 after a restart").await;

    for n in [host, member, poster] {
        n.shutdown().await;
    }
    server.stop().await;
}
