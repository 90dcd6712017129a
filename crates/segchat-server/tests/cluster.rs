//! Two server instances in this process on one PostgreSQL
//! (`segchat-pgtest`) with a private `nats-server` between them, and bare
//! protocol clients: what one instance does to a session holds on the
//! other.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Client, TestServer, WAIT};
use segchat_pgtest::nats::Nats;
use segchat_proto::tracker::{Event, Request};
use segchat_proto::Status;

/// One instance of the server on `database` linked by `nats`.
async fn instance(dir: &Path, database: &str, nats: &Nats) -> TestServer {
    let (database, nats) = (database.to_owned(), nats.url.clone());
    TestServer::start_with(dir, move |c| {
        c.database_url = Some(database);
        c.nats_url = Some(nats);
        // The bare clients do not heartbeat.
        c.peer_ttl = Duration::from_secs(60);
    })
    .await
}

#[tokio::test]
async fn a_logout_through_one_instance_signs_the_session_out_on_the_other() {
    let nats = Nats::start().expect("nats-server (scripts/test.sh installs it)");
    let database = segchat_pgtest::fresh_database().await;
    let (one, two) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    // Instances of one server share its key: nodes pin it, tickets carry it.
    segchat_server::key_fingerprint(one.path()).expect("make the server key");
    std::fs::copy(one.path().join("server.key"), two.path().join("server.key"))
        .expect("share the server key");
    let first = instance(one.path(), &database, &nats).await;
    let second = instance(two.path(), &database, &nats).await;

    let mut a = Client::connect(first.addr).await;
    let session = a.register("kim").await;
    let mut b = Client::connect(second.addr).await;
    b.ok(Request::Resume {
        token: session.token.clone(),
    })
    .await;
    b.submit(4200).await;
    // The first instance lists b's peer entry once the second's NATS link
    // is up (it subscribes before it announces).
    let start = Instant::now();
    while !a.peer_names(None).await.contains(&"kim".to_string()) {
        assert!(start.elapsed() < WAIT, "the instances never saw each other");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    a.ok(Request::Logout).await;
    match b
        .event_where(|e| matches!(e, Event::SessionEnded { .. }))
        .await
    {
        Event::SessionEnded { reason } => assert!(reason.contains("logged out"), "{reason}"),
        _ => unreachable!(),
    }
    for req in [Request::Whoami, Request::ListChannels] {
        let f = b.request(req).await.expect_err("signed out");
        assert_eq!(f.status, Status::Unauthorized);
    }
    let mut c = Client::connect(first.addr).await;
    c.register("lou").await;
    let start = Instant::now();
    while c.peer_names(None).await.contains(&"kim".to_string()) {
        assert!(start.elapsed() < WAIT, "kim's entry outlived the session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((a, b, c));
    first.stop().await;
    second.stop().await;
}
