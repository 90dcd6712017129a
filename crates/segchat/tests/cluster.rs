//! Several server instances on one PostgreSQL with NATS between them
//! (`segchat server --database postgres://… --nats nats://…`): real
//! processes, a private PostgreSQL (`segchat-pgtest`) and the
//! distribution's `nats-server`. Nodes on different instances chat, see
//! each other's presence, hosts and streams; when an instance is
//! `kill -9`ed its nodes move on, nothing acknowledged is lost, and the
//! users it held are shown offline elsewhere within the peer TTL; a
//! channel joined through one instance changes whom the other tells of
//! presence.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use segchat_pgtest::nats::Nats;

fn fresh_database() -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(segchat_pgtest::fresh_database())
}

/// Two instances of one server (one database, one key, one NATS).
struct Pair {
    _nats: Nats,
    root: tempfile::TempDir,
    first: (Proc, String),
    second: (Proc, String),
    second_dir: PathBuf,
    /// Node data directories: alice, bob, carol.
    nodes: [PathBuf; 3],
}

fn two_instances() -> Pair {
    let nats = Nats::start().expect("nats-server (scripts/test.sh installs it)");
    let url = fresh_database();
    let (root, sdir, adir, bdir) = dirs();
    let cdir = root.path().join("carol");
    std::fs::create_dir_all(&cdir).expect("carol's dir");
    // Instances of one server share its key (nodes pin it, tickets carry
    // it): the first makes it, the second is pointed at it.
    let key = sdir.join("server.key");
    let key = key.to_str().expect("a UTF-8 path");
    let extra = [
        "--database",
        url.as_str(),
        "--nats",
        nats.url.as_str(),
        "--key-file",
        key,
    ];
    let first = start_server_with(&sdir, "127.0.0.1:0", &extra);
    let second_dir = root.path().join("server-2");
    std::fs::create_dir_all(&second_dir).expect("second data dir");
    let second = start_server_with(&second_dir, "127.0.0.1:0", &extra);
    assert!(
        !second_dir.join("server.key").exists(),
        "the second instance uses the shared key, not a key of its own"
    );
    Pair {
        _nats: nats,
        root,
        first,
        second,
        second_dir,
        nodes: [adir, bdir, cdir],
    }
}

/// `user`'s presence as `dir`'s user sees it in `channel`'s member list.
fn presence_in(dir: &Path, channel: &str, user: &str) -> String {
    let members = ok(dir, &["members", channel]);
    members
        .lines()
        .find(|l| l.split_whitespace().next() == Some(user))
        .and_then(|l| {
            ["online", "idle", "offline"]
                .into_iter()
                .find(|p| l.split_whitespace().any(|w| w == *p))
        })
        .unwrap_or_else(|| panic!("{user} not in {channel}'s members:\n{members}"))
        .to_owned()
}

#[test]
fn nodes_on_different_instances_chat_and_see_presence_hosts_and_streams() {
    let pair = two_instances();
    let [adir, bdir, _] = &pair.nodes;
    // Alice only knows the first instance, bob only the second.
    let mut host = start_node(&pair.first.1, adir);
    let _bob = start_node(&pair.second.1, bdir);
    wait_node(adir, "alice's node to connect", connected);
    wait_node(bdir, "bob's node to connect", connected);
    register(adir, "alice");
    register(bdir, "bob");
    ok(adir, &["create", "ops", "--visibility", "members-only"]);
    ok(bdir, &["join", "ops"]);
    // Her host's address came to bob's instance through NATS.
    wait_until(
        "bob to reach alice's host through the other instance",
        || link_of(bdir, "ops") == "host",
    );
    wait_until("each to see the other online", || {
        presence_in(adir, "ops", "bob") == "online" && presence_in(bdir, "ops", "alice") == "online"
    });
    let peers = ok_json(bdir, &["peers", "--channel", "ops"]);
    assert!(
        peers["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .any(|p| p["username"] == "alice"),
        "alice is in bob's peer list though she is on the other instance: {peers}"
    );

    let mut sent = BTreeSet::new();
    for i in 0..5 {
        sent.insert(send(adir, "ops", &format!("alice {i}")));
        sent.insert(send(bdir, "ops", &format!("bob {i}")));
    }
    converge(&[adir, bdir], "ops", &sent);

    // A stream on the first instance is announced on the second.
    let out = ok(
        adir,
        &[
            "stream",
            "start",
            "ops",
            "--test-pattern",
            "--size",
            "320x240",
        ],
    );
    assert!(out.contains("streaming"), "{out}");
    wait_until("bob to see alice's stream", || {
        let list = ok(bdir, &["stream", "list"]);
        list.contains("alice") && list.contains("320x240")
    });

    // Invisible on one instance looks offline on the other.
    ok(adir, &["status", "invisible"]);
    wait_until("bob to see alice offline", || {
        presence_in(bdir, "ops", "alice") == "offline"
    });
    ok(adir, &["status", "online"]);
    wait_until("bob to see alice back", || {
        presence_in(bdir, "ops", "alice") == "online"
    });

    // Her host gone: bob hears it through the other instance and falls
    // back to the server; his messages are kept.
    host.kill_9();
    wait_until("bob to fall back to the server", || {
        link_of(bdir, "ops") == "server"
    });
    sent.insert(send(bdir, "ops", "bob while alice is away"));
    let _host = start_node(&pair.first.1, adir);
    wait_node(adir, "alice's node to come back", connected);
    converge(&[adir, bdir], "ops", &sent);
}

#[test]
fn an_instance_killed_mid_conversation_loses_nothing_and_its_users_go_offline_in_ttl() {
    let mut pair = two_instances();
    let [adir, bdir, cdir] = pair.nodes.clone();
    let (first, second) = (pair.first.1.clone(), pair.second.1.clone());
    // Alice and carol start on the first instance, bob on the second;
    // alice and bob know both, carol only the first.
    let _host = start_node(&format!("{first},{second}"), &adir);
    let _bob = start_node(&format!("{second},{first}"), &bdir);
    let _carol = start_node(&first, &cdir);
    for (dir, who) in [(&adir, "alice"), (&bdir, "bob"), (&cdir, "carol")] {
        wait_node(dir, "the node to connect", connected);
        register(dir, who);
    }
    ok(&adir, &["create", "ops", "--visibility", "members-only"]);
    ok(&bdir, &["join", "ops"]);
    ok(&cdir, &["join", "ops"]);
    wait_until("bob to reach alice's host", || {
        link_of(&bdir, "ops") == "host"
    });
    wait_until("bob to see carol online", || {
        presence_in(&bdir, "ops", "carol") == "online"
    });

    let mut sent = BTreeSet::new();
    for i in 0..4 {
        sent.insert(send(&adir, "ops", &format!("alice {i}")));
        sent.insert(send(&cdir, "ops", &format!("carol {i}")));
        sent.insert(send(&bdir, "ops", &format!("bob {i}")));
    }
    pair.first.0.kill_9();
    let killed = Instant::now();
    // Written while alice's node looks for the other instance.
    for i in 0..3 {
        sent.insert(send(&adir, "ops", &format!("alice after the kill {i}")));
    }
    // Carol had only the first instance: to bob she is gone, within the
    // TTL (2 s) plus one expiry tick and the time to ask.
    wait_until("bob to see carol offline", || {
        presence_in(&bdir, "ops", "carol") == "offline"
    });
    let took = killed.elapsed();
    eprintln!("carol shown offline {} ms after the kill", took.as_millis());
    assert!(
        took < Duration::from_millis(4_500),
        "presence converged in {took:?}, not within the TTL"
    );
    wait_node(
        &adir,
        "alice's node to move to the second instance",
        connected,
    );
    wait_until("bob to see alice online again", || {
        presence_in(&bdir, "ops", "alice") == "online"
    });
    sent.insert(send(&adir, "ops", "alice on the second instance"));
    // Carol's own messages were acknowledged before the kill: they are
    // in alice's history and bob's, though carol is gone.
    let both: [&Path; 2] = [&adir, &bdir];
    converge(&both, "ops", &sent);
    let log = std::fs::read_to_string(pair.second_dir.join("logs").join("segchat.log"))
        .expect("the second instance's log");
    assert!(log.contains("CLUSTER_JOINED"), "the instance joined NATS");
    assert!(
        log.lines().any(|l| l.contains("PRESENCE_CHANGED")
            && l.contains("user=carol")
            && l.contains("to=offline")),
        "the second instance logged carol going offline"
    );
}

/// How many times the node at `dir` logged `user`'s presence pushed to
/// it as `status`.
fn presence_heard(dir: &Path, user: &str, status: &str) -> usize {
    let log = std::fs::read_to_string(dir.join("logs").join("segchat.log")).unwrap_or_default();
    let wanted = format!("user={user} status={status}");
    log.lines()
        .filter(|l| l.contains("PRESENCE_CHANGED") && l.ends_with(&wanted))
        .count()
}

#[test]
fn a_channel_joined_through_one_instance_changes_whom_the_other_tells_of_presence() {
    let pair = two_instances();
    let [adir, bdir, cdir] = &pair.nodes;
    let (first, second) = (&pair.first.1, &pair.second.1);
    // Carol has a node on each instance; alice is on the first, bob on
    // the second.
    let c2dir = pair.root.path().join("carol-2");
    std::fs::create_dir_all(&c2dir).expect("carol's second dir");
    let _alice = start_node(first, adir);
    let _bob = start_node(second, bdir);
    let _carol = start_node(first, cdir);
    let _carol_2 = start_node(second, &c2dir);
    for dir in [adir, bdir, cdir, &c2dir] {
        wait_node(dir, "the node to connect", connected);
    }
    register(adir, "alice");
    register(bdir, "bob");
    register(cdir, "carol");
    login(&c2dir, "carol");
    ok(adir, &["create", "ops", "--visibility", "public"]);
    ok(bdir, &["join", "ops"]);

    // The second instance tells bob, and remembers that bob is whom to
    // tell of alice.
    ok(adir, &["status", "invisible"]);
    wait_until("bob to hear alice go offline", || {
        presence_heard(bdir, "alice", "offline") == 1
    });
    ok(adir, &["status", "online"]);
    wait_until("bob to hear alice back", || {
        presence_heard(bdir, "alice", "online") >= 1
    });
    assert_eq!(
        presence_heard(&c2dir, "alice", "offline"),
        0,
        "carol shares no channel with alice yet"
    );

    // Carol joins through the first instance; the second hears of it and
    // tells her node there too.
    ok(cdir, &["join", "ops"]);
    ok(adir, &["status", "invisible"]);
    wait_until("carol to hear alice go offline on both her nodes", || {
        presence_heard(cdir, "alice", "offline") == 1
            && presence_heard(&c2dir, "alice", "offline") == 1
    });
    wait_until("bob to hear it too", || {
        presence_heard(bdir, "alice", "offline") == 2
    });
}
