//! The join race: a member's peer link reaches the host before the host
//! has heard of the join, so the link is admitted read-only. The link's
//! rights must follow the join (or the post go through the server): the
//! message is delivered promptly, never left pending with the host online.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Sends `signal` (`STOP`, `CONT`) to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// The state of the message with `body` in `dir`'s copy of `channel`.
fn state_of(dir: &Path, channel: &str, body: &str) -> Option<String> {
    let v = ok_json(dir, &["history", channel, "--limit", "50"]);
    v["messages"]
        .as_array()?
        .iter()
        .find(|m| m["body"] == body)
        .map(|m| m["state"].as_str().unwrap_or("").to_owned())
}

#[test]
fn a_message_sent_while_the_host_has_not_heard_of_the_join_is_delivered() {
    let (_root, sdir, adir, bdir) = dirs();
    let (_server, addr) = start_server(&sdir, "127.0.0.1:0");
    let host = start_node(&addr, &adir);
    let _member = start_node(&addr, &bdir);
    for dir in [&adir, &bdir] {
        wait_node(dir, "the node to connect", connected);
    }
    register(&adir, "alice");
    register(&bdir, "bob");
    // The race is won about half the time: several rounds.
    for round in 0..4 {
        let room = format!("room{round}");
        let body = format!("hi {round}");
        ok(&adir, &["create", &room]);
        signal(host.pid(), "STOP");
        let stopped = Instant::now();
        let resumed = std::panic::catch_unwind(|| {
            ok(&bdir, &["join", &room]);
            ok(&bdir, &["send", &room, &body]);
        });
        std::thread::sleep(Duration::from_millis(400).saturating_sub(stopped.elapsed()));
        signal(host.pid(), "CONT");
        if let Err(e) = resumed {
            std::panic::resume_unwind(e);
        }
        let start = Instant::now();
        loop {
            let at_host = state_of(&adir, &room, &body);
            let at_member = state_of(&bdir, &room, &body);
            if at_host.is_some() && at_member.as_deref().is_some_and(|s| s != "pending") {
                eprintln!(
                    "round {round}: delivered {:?} after the host resumed ({at_member:?})",
                    start.elapsed()
                );
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "round {round}: {body:?} not delivered 15 s after the host resumed: host {at_host:?}, member {at_member:?}\nhost log:\n{}",
                std::fs::read_to_string(adir.join("logs").join("segchat.log")).unwrap_or_default()
            );
            std::thread::sleep(POLL);
        }
    }
}
