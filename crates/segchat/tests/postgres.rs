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

fn ids(dir: &Path, channel: &str) -> BTreeSet<String> {
    history(dir, channel)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
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
    register(&adir, "alice");
    register(&bdir, "bob");
    ok(&adir, &["create", "ops", "--visibility", "members-only"]);
    ok(&bdir, &["join", "ops"]);
    wait_until("bob to reach alice's host", || {
        link_of(&bdir, "ops") == "host"
    });

    let mut sent = BTreeSet::new();
    let mut write = |dir: &Path, body: String| {
        let v = ok_json(dir, &["send", "ops", &body]);
        sent.insert(v["message"]["id"].as_str().expect("id").to_owned());
    };
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
    for dir in [&adir, &bdir] {
        wait_until("every acknowledged message on both nodes", || {
            sent.is_subset(&ids(dir, "ops"))
        });
    }
    let (a, b) = (history(&adir, "ops"), history(&bdir, "ops"));
    assert_eq!(a.len(), sent.len(), "nothing twice: {a:?}");
    assert_eq!(
        a, b,
        "host and member show the same history in the same order"
    );

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
