//! `segchat stream …` end to end with real processes: a visitor cannot
//! stream, two viewers watch the test pattern with live stats, and a
//! `kill -9` of the streamer ends the stream for both within the TTL.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn stream_verbs_and_a_killed_streamer() {
    let (root, sdir, adir, bdir) = dirs();
    let cdir = root.path().join("c");
    let (_server, addr) = start_server(&sdir, "127.0.0.1:0");
    let mut alice = start_node(&addr, &adir);
    let _bob = start_node(&addr, &bdir);
    let _guest = start_node(&addr, &cdir);
    for dir in [&adir, &bdir, &cdir] {
        wait_node(dir, "the node to connect", connected);
    }
    register(&adir, "alice");
    ok(&adir, &["create", "live", "--allow-visitors"]);
    register(&bdir, "bob");
    ok(&bdir, &["join", "live"]);
    ok(&cdir, &["visit", "guest"]);

    let (code, err) = refused(&cdir, &["stream", "start", "live", "--test-pattern"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("visitors may watch"), "{err}");
    let out = ok(
        &adir,
        &[
            "stream",
            "start",
            "live",
            "--test-pattern",
            "--size",
            "320x240",
            "--fps",
            "15",
        ],
    );
    assert!(out.contains("streaming the test pattern in live"), "{out}");
    let list = ok(&bdir, &["stream", "list"]);
    assert!(list.contains("alice") && list.contains("320x240"), "{list}");

    let data = |d: &std::path::Path| d.to_str().expect("utf-8").to_owned();
    let watchers: Vec<Proc> = [&bdir, &cdir]
        .iter()
        .map(|d| Proc::spawn(&["stream", "watch", "live", "--stats", "--data-dir", &data(d)]))
        .collect();
    for w in &watchers {
        // Stats lines end with the state; wait until frames play.
        let start = Instant::now();
        while w.wait_line("fps") != "playing" {
            assert!(start.elapsed() < DEADLINE, "never played");
        }
    }
    let own = ok_json(&adir, &["stream", "list"]);
    assert_eq!(own["own"][0]["viewer_count"], 2, "{own}");

    let killed = Instant::now();
    alice.kill_9();
    for w in &watchers {
        w.wait_line("stream ended");
    }
    // The server's peer TTL is 2 s; a killed process's sockets close at
    // once, so the end is seen well within it.
    assert!(
        killed.elapsed() < Duration::from_secs(2) + Duration::from_millis(1500),
        "ended after {:?}",
        killed.elapsed()
    );
    let list = ok(&bdir, &["stream", "list"]);
    assert!(list.contains("no live streams"), "{list}");
}
