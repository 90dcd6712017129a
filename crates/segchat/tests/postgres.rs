//! `segchat server --database postgres://…`: the real server process on a
//! real PostgreSQL (a private one, `segchat-pgtest`), with real nodes.
//! The server is `kill -9`ed with a backlog written through it; after a
//! restart on the same database nothing acknowledged is missing, sessions
//! resume, and nothing landed in a SQLite file beside it.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;

/// Rows of `table` in the database at `url`.
fn count(url: &str, table: &str) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        let task = tokio::spawn(conn);
        let n: i64 = client
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await
            .expect("count")
            .get(0);
        drop(client);
        let _ = task.await;
        n
    })
}

fn fresh_database() -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(segchat_pgtest::fresh_database())
}

/// Alice (node in `adir`) hosts the members-only channel `ops`; bob
/// (node in `bdir`) joins it and reaches her host.
fn alice_hosts_ops_with_bob(adir: &Path, bdir: &Path) {
    register(adir, "alice");
    register(bdir, "bob");
    ok(adir, &["create", "ops", "--visibility", "members-only"]);
    ok(bdir, &["join", "ops"]);
    wait_until("bob to reach alice's host", || {
        link_of(bdir, "ops") == "host"
    });
}

#[test]
fn a_server_on_postgres_loses_nothing_to_kill_9_and_its_nodes_resume() {
    let url = fresh_database();
    let (_root, sdir, adir, bdir) = dirs();
    let (mut server, addr) = start_server_with(&sdir, "127.0.0.1:0", &["--database", &url]);
    let mut host = start_node(&addr, &adir);
    let _bob = start_node(&addr, &bdir);
    wait_node(&adir, "alice's node to connect", connected);
    wait_node(&bdir, "bob's node to connect", connected);
    alice_hosts_ops_with_bob(&adir, &bdir);

    let mut sent = BTreeSet::new();
    let mut write = |dir: &Path, body: String| sent.insert(send(dir, "ops", &body));
    for i in 0..4 {
        write(&adir, format!("alice {i}"));
        write(&bdir, format!("bob {i}"));
    }
    // The host gone: bob's messages are acknowledged by the server alone,
    // so they live only in PostgreSQL until the host returns.
    host.kill_9();
    for i in 4..10 {
        write(&bdir, format!("bob {i}"));
    }
    server.kill_9();

    // Same address, same database: everything is where it was.
    let (_server, again) = start_server_with(&sdir, &addr, &["--database", &url]);
    assert_eq!(again, addr);
    wait_node(&bdir, "bob's node to reconnect by itself", connected);
    assert!(
        ok(&bdir, &["whoami"]).starts_with("bob"),
        "bob's session resumed from PostgreSQL"
    );
    let _host = start_node(&addr, &adir);
    wait_node(&adir, "alice's node to come back", connected);
    write(&bdir, "bob after the restart".to_owned());
    converge(&[&adir, &bdir], "ops", &sent);

    // The backup is in PostgreSQL, and nowhere else.
    wait_until("the host's own messages to be backed up", || {
        count(&url, "messages") == sent.len() as i64
    });
    assert_eq!(count(&url, "users"), 2);
    assert_eq!(count(&url, "channels"), 1);
    assert!(
        !sdir.join("server.db").exists(),
        "no SQLite database beside the PostgreSQL one"
    );
    let log = std::fs::read_to_string(sdir.join("logs").join("segchat.log")).expect("server log");
    let started = log
        .lines()
        .find(|l| l.contains("SERVER_STARTED"))
        .expect("SERVER_STARTED");
    assert!(started.contains("database=postgres://"), "{started}");
}

/// Two instances of one server (one database, one key): the nodes are
/// given both addresses. The instance they use is `kill -9`ed while a
/// member writes through it; they move to the other by themselves, with
/// their sessions, and nothing acknowledged or queued is lost.
#[test]
fn when_an_instance_dies_its_nodes_move_to_the_other_and_lose_nothing() {
    let url = fresh_database();
    let (root, sdir, adir, bdir) = dirs();
    let (mut first, first_addr) = start_server_with(&sdir, "127.0.0.1:0", &["--database", &url]);
    // Instances of one server share its key: nodes pin it, tickets carry it.
    let second_dir = root.path().join("server-2");
    std::fs::create_dir_all(&second_dir).expect("second data dir");
    std::fs::copy(sdir.join("server.key"), second_dir.join("server.key")).expect("share the key");
    let (_second, second_addr) =
        start_server_with(&second_dir, "127.0.0.1:0", &["--database", &url]);
    let both = format!("{first_addr},{second_addr}");

    let mut host = start_node(&both, &adir);
    let _bob = start_node(&both, &bdir);
    wait_node(&adir, "alice's node to connect", connected);
    wait_node(&bdir, "bob's node to connect", connected);
    alice_hosts_ops_with_bob(&adir, &bdir);
    host.kill_9();

    let mut sent = BTreeSet::new();
    let mut write = |dir: &Path, body: String| sent.insert(send(dir, "ops", &body));
    for i in 0..4 {
        write(&bdir, format!("through the first {i}"));
    }
    first.kill_9();
    // Written while no instance is connected: queued in bob's outbox.
    for i in 0..3 {
        write(&bdir, format!("queued {i}"));
    }
    wait_node(
        &bdir,
        "bob's node to move to the second instance",
        connected,
    );
    assert!(
        ok(&bdir, &["whoami"]).starts_with("bob"),
        "bob's session resumed on the other instance"
    );
    write(&bdir, "through the second".to_owned());

    // Alice's host comes back; the first instance is still dead.
    let _host = start_node(&both, &adir);
    wait_node(&adir, "alice's node to find the second instance", connected);
    converge(&[&adir, &bdir], "ops", &sent);
    wait_until("the whole conversation in the shared database", || {
        count(&url, "messages") == sent.len() as i64
    });
    let log = std::fs::read_to_string(bdir.join("logs").join("segchat.log")).expect("bob's log");
    assert!(
        log.lines()
            .any(|l| l.contains("SERVER_INSTANCE") && l.contains(&format!("addr={second_addr}"))),
        "bob's log names the instance it moved to"
    );
}
