//! Hosted channels end to end: a real server and real nodes, driven over
//! the nodes' HTTP APIs.

mod common;

use common::chat::{post, via};
use common::{eventually, start_node, tempdir, Api, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// The bodies of a channel's history, oldest first.
async fn bodies(api: &Api, channel: &str) -> Vec<String> {
    let (status, v) = api
        .get(&format!("/channels/{channel}/messages?limit=500"))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mut out: Vec<String> = v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().expect("body").to_owned())
        .collect();
    out.reverse();
    out
}

/// Waits until `api` shows exactly `want` (in order) in `channel`.
async fn converges(api: &Api, channel: &str, want: &[&str]) {
    eventually(&format!("{channel} to read {want:?}"), || async {
        let got = bodies(api, channel).await;
        (got == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_chat_through_the_host_and_visitors_only_read() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let (_c, cdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let host = start_node(server.addr, &adir).await;
    let member = start_node(server.addr, &bdir).await;
    let visitor = start_node(server.addr, &cdir).await;
    let (a, b, c) = (Api::of(&host), Api::of(&member), Api::of(&visitor));
    for api in [&a, &b, &c] {
        api.wait_connected().await;
    }
    a.register("alice").await;
    a.ok(
        Method::POST,
        "/channels",
        Some(json!({"name": "lobby", "visibility": "public", "allow_visitors": true})),
    )
    .await;
    a.create_channel("vault", "private").await;
    b.register("bob").await;
    b.join("lobby").await;
    c.ok(
        Method::POST,
        "/session/visit",
        Some(json!({"display_name": "Vic"})),
    )
    .await;

    // Bob reaches the host directly.
    eventually("bob to connect to the host", || async {
        (via(&b, "lobby").await.as_deref() == Some("host")).then_some(())
    })
    .await;

    let sent = post(&b, "lobby", "hello from bob").await;
    assert_eq!(sent["state"], "pending", "shown as pending first: {sent}");
    post(&a, "lobby", "hi bob, alice here").await;
    converges(&a, "lobby", &["hello from bob", "hi bob, alice here"]).await;
    converges(&b, "lobby", &["hello from bob", "hi bob, alice here"]).await;
    converges(&c, "lobby", &["hello from bob", "hi bob, alice here"]).await;

    // Provenance: bob's copy of alice's message came from the host, P2P.
    let (_, hist) = b.get("/channels/lobby/messages").await;
    let from_alice = hist["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["author"] == "alice")
        .expect("alice's message")
        .clone();
    assert_eq!(from_alice["source"], "host", "{from_alice}");
    assert_eq!(
        from_alice["from"].as_str(),
        Some(host.p2p_addr().to_string().as_str())
    );
    // Bob's own message moves to stored by the host, then backed up.
    let id = sent["id"].as_str().expect("id").to_owned();
    eventually("bob's message to be backed up", || async {
        let (_, hist) = b.get("/channels/lobby/messages").await;
        let mine = hist["messages"]
            .as_array()?
            .iter()
            .find(|m| m["id"] == id.as_str())?
            .clone();
        (mine["state"] == "backed_up").then_some(())
    })
    .await;

    // The visitor reads but cannot write.
    let (status, v) = c
        .post("/channels/lobby/messages", json!({"body": "let me in"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");

    // A private channel refuses somebody who was not invited.
    let (status, v) = b.post("/channels/vault/join", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (status, v) = b
        .post("/channels/vault/messages", json!({"body": "sneaking in"}))
        .await;
    assert!(
        status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN,
        "{v}"
    );

    // Search and unread counts.
    let (_, found) = b.get("/search?q=alice%20here").await;
    let results = found["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{found}");
    assert_eq!(results[0]["author"], "alice");
    let (_, unread) = b.get("/unread").await;
    assert_eq!(unread["unread"]["lobby"], 1, "{unread}");
    b.ok(Method::POST, "/channels/lobby/read", None).await;
    let (_, unread) = b.get("/unread").await;
    assert!(unread["unread"].get("lobby").is_none(), "{unread}");

    // Oversized and empty messages get clear errors.
    let (status, _) = b
        .post(
            "/channels/lobby/messages",
            json!({"body": "x".repeat(5000)}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = b
        .post("/channels/lobby/messages", json!({"body": "   "}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    for n in [host, member, visitor] {
        n.shutdown().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_carry_on_through_the_server_while_the_host_is_away() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let (_d, ddir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let host = start_node(server.addr, &adir).await;
    let n_b = start_node(server.addr, &bdir).await;
    let n_d = start_node(server.addr, &ddir).await;
    let (a, b, d) = (Api::of(&host), Api::of(&n_b), Api::of(&n_d));
    for api in [&a, &b, &d] {
        api.wait_connected().await;
    }
    a.register("alice").await;
    a.create_channel("ops", "members_only").await;
    b.register("bob").await;
    d.register("dan").await;
    b.join("ops").await;
    d.join("ops").await;
    post(&a, "ops", "m1 alice").await;
    converges(&b, "ops", &["m1 alice"]).await;
    converges(&d, "ops", &["m1 alice"]).await;

    // The host goes away; the members notice and use the server.
    host.shutdown().await;
    for api in [&b, &d] {
        eventually("members to fall back to the server", || async {
            (via(api, "ops").await.as_deref() == Some("server")).then_some(())
        })
        .await;
    }
    post(&b, "ops", "m2 bob").await;
    post(&d, "ops", "m3 dan").await;
    post(&b, "ops", "m4 bob").await;
    let away = ["m1 alice", "m2 bob", "m3 dan", "m4 bob"];
    // History order is by timestamp; the two members' clocks agree here.
    for api in [&b, &d] {
        eventually("members to read each other through the server", || async {
            let mut got = bodies(api, "ops").await;
            got.sort();
            (got == away).then_some(())
        })
        .await;
    }
    // While the host is away, members' messages are backed up by the server.
    let (_, hist) = b.get("/channels/ops/messages").await;
    for m in hist["messages"].as_array().expect("messages") {
        if m["author"] == "bob" {
            assert_eq!(m["state"], "backed_up", "{m}");
        }
        if m["author"] == "dan" {
            assert_eq!(
                m["source"], "server",
                "dan's message came from the backup: {m}"
            );
        }
    }

    // The host returns: it pulls what it missed, members reconnect P2P.
    let host = start_node(server.addr, &adir).await;
    let a = Api::of(&host);
    a.wait_connected().await;
    for api in [&b, &d] {
        eventually("members to reconnect to the host", || async {
            (via(api, "ops").await.as_deref() == Some("host")).then_some(())
        })
        .await;
    }
    post(&d, "ops", "m5 dan").await;
    post(&a, "ops", "m6 alice").await;
    let want = [away.as_slice(), &["m5 dan", "m6 alice"]].concat();
    let mut histories = Vec::new();
    for api in [&a, &b, &d] {
        eventually("every node to converge", || async {
            let got = bodies(api, "ops").await;
            let mut sorted = got.clone();
            sorted.sort();
            let mut w = want.clone();
            w.sort();
            (sorted == w).then_some(())
        })
        .await;
        histories.push(bodies(api, "ops").await);
    }
    assert_eq!(
        histories[0], histories[1],
        "host and bob agree on the order"
    );
    assert_eq!(
        histories[0], histories[2],
        "host and dan agree on the order"
    );
    for n in [host, n_b, n_d] {
        n.shutdown().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_delivers_its_pending_messages_once() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let server_addr = server.addr;
    let host = start_node(server_addr, &adir).await;
    let member = start_node(server_addr, &bdir).await;
    let (a, b) = (Api::of(&host), Api::of(&member));
    a.wait_connected().await;
    b.wait_connected().await;
    a.register("alice").await;
    a.ok(Method::POST, "/channels", Some(json!({"name": "ops"})))
        .await;
    b.register("bob").await;
    b.join("ops").await;
    post(&b, "ops", "before").await;
    converges(&a, "ops", &["before"]).await;

    // Everything but bob's node goes down; bob writes anyway.
    host.shutdown().await;
    server.stop().await;
    let queued = post(&b, "ops", "written while alone").await;
    assert_eq!(queued["state"], "pending");
    // History and search work from the local store with nobody reachable.
    assert_eq!(bodies(&b, "ops").await, ["before", "written while alone"]);
    let (status, found) = b.get("/search?q=before").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(
        found["results"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    assert_eq!(via(&b, "ops").await.as_deref(), Some("offline"));
    member.shutdown().await;

    // The world comes back, then bob's node restarts and delivers.
    let server = TestServer::start_at(&sdir, server_addr).await;
    let host = start_node(server_addr, &adir).await;
    let member = start_node(server_addr, &bdir).await;
    let (a, b) = (Api::of(&host), Api::of(&member));
    converges(&a, "ops", &["before", "written while alone"]).await;
    converges(&b, "ops", &["before", "written while alone"]).await;
    let id = queued["id"].as_str().expect("id").to_owned();
    eventually("the queued message to leave the outbox", || async {
        let (_, hist) = b.get("/channels/ops/messages").await;
        let m = hist["messages"]
            .as_array()?
            .iter()
            .find(|m| m["id"] == id.as_str())?
            .clone();
        (m["state"] == "stored" || m["state"] == "backed_up").then_some(())
    })
    .await;
    for n in [host, member] {
        n.shutdown().await;
    }
    server.stop().await;
}
