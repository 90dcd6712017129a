//! A channel's host is `kill -9`ed while its members keep writing: they
//! carry on through the server, and when the host restarts every node ends
//! with the same history — nothing acknowledged missing, nothing twice.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::Value;

#[test]
fn host_killed_while_members_write_then_everyone_converges() {
    let (root, sdir, adir, bdir) = dirs();
    let ddir = root.path().join("d");
    let (_server, addr) = start_server(&sdir, "127.0.0.1:0");
    let mut host = start_node(&addr, &adir);
    let _b = start_node(&addr, &bdir);
    let _d = start_node(&addr, &ddir);
    for dir in [&adir, &bdir, &ddir] {
        wait_node(dir, "the node to connect", connected);
    }
    register(&adir, "alice");
    ok(&adir, &["create", "ops", "--visibility", "members-only"]);
    register(&bdir, "bob");
    register(&ddir, "dan");
    ok(&bdir, &["join", "ops"]);
    ok(&ddir, &["join", "ops"]);
    for dir in [&bdir, &ddir] {
        wait_until("members to reach the host", || {
            link_of(dir, "ops") == "host"
        });
    }

    let mut sent = BTreeSet::new();
    let mut write = |dir: &Path, body: String| sent.insert(send(dir, "ops", &body));
    for i in 0..5 {
        write(&bdir, format!("bob {i}"));
        write(&ddir, format!("dan {i}"));
    }
    host.kill_9();
    for i in 5..12 {
        write(&bdir, format!("bob {i}"));
        write(&ddir, format!("dan {i}"));
    }
    // While the host is dead, the members read each other via the server.
    for dir in [&bdir, &ddir] {
        wait_until("members to read each other without the host", || {
            let bodies: BTreeSet<String> =
                history(dir, "ops").into_iter().map(|(_, b)| b).collect();
            bodies.contains("bob 11") && bodies.contains("dan 11")
        });
    }

    let _host = start_node(&addr, &adir);
    write(&adir, "alice is back".to_owned());
    converge(&[&adir, &bdir, &ddir], "ops", &sent);

    // The system logs say where data came from.
    let host_log = std::fs::read_to_string(adir.join("logs").join("segchat.log")).expect("log");
    assert!(
        host_log.contains("direction=server->host"),
        "the host pulled what it missed"
    );
    let member_log = std::fs::read_to_string(bdir.join("logs").join("segchat.log")).expect("log");
    let received = |by: &str| {
        member_log
            .lines()
            .any(|l| l.contains("] MESSAGE_RECEIVED |") && l.contains(&format!("served_by={by}")))
    };
    assert!(
        received("server"),
        "bob read dan's messages from the server's backup"
    );
    assert!(received("host"), "bob received messages from the host, P2P");
    let v: Value = ok_json(&bdir, &["search", "dan", "11"]);
    assert_eq!(v["results"].as_array().map(Vec::len), Some(1));
}
