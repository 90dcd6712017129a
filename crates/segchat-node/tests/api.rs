//! A real server and two real nodes, driven over the nodes' HTTP APIs.

mod common;

use std::time::Duration;

use common::{eventually, next_matching, start_node, tempdir, Api, TestServer, DEADLINE, PASSWORD};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use segchat_proto::{Frame, Hello, LinkKind, Status};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_tokens_and_error_shapes() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node = start_node(server.addr, &adir).await;
    let api = Api::of(&node);
    api.wait_connected().await;

    // GET /node: where the node is and who it is. Its key is its
    // identity on P2P connections; the server's key is pinned on first
    // contact (and kept in server.pin).
    let v = api
        .wait_for("the server key", |v| v["server_key"].is_string())
        .await;
    assert_eq!(v["node_id"], node.node_id(), "{v}");
    assert_eq!(v["node_id"].as_str().map(str::len), Some(64), "{v}");
    assert_eq!(v["p2p_addr"], node.p2p_addr().to_string(), "{v}");
    assert_eq!(v["server_key"], server_key(&sdir), "{v}");
    assert!(v["server_refused"].is_null(), "{v}");
    assert!(v.get("udp_addr").is_none(), "{v}");
    assert!(adir.join("server.pin").exists(), "the pin is kept on disk");

    // api.json tells local tools where the node is.
    let file: Value =
        serde_json::from_slice(&std::fs::read(adir.join("api.json")).expect("api.json"))
            .expect("json");
    assert_eq!(file["url"], node.api_url());
    assert_eq!(file["token"], node.api_token());

    // Without the token, or with a wrong one: 401 in the API's error shape.
    let resp = reqwest::get(format!("{}/node", api.base))
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["status"], 401);
    assert_eq!(v["error"], "UNAUTHORIZED");
    let wrong = Api {
        token: "0".repeat(64),
        ..api.clone()
    };
    assert_eq!(wrong.get("/session").await.0, StatusCode::UNAUTHORIZED);

    // Not signed in yet.
    let (status, v) = api.get("/session").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");

    let me = api.register("alice").await;
    assert_eq!(me["username"], "alice");
    assert!(
        me.get("token").is_none(),
        "the node keeps the session token: {me}"
    );
    let (status, v) = api.get("/session").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["username"], "alice");
    assert_eq!(v["kind"], "user");

    // The same name again is refused.
    let (status, v) = api
        .post(
            "/session/register",
            json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "CONFLICT");

    // A wrong password and an unknown user get the same answer.
    let (status, wrong_pw) = api
        .post(
            "/session/login",
            json!({"username": "alice", "password": "not the password"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong_pw}");
    let (status, no_user) = api
        .post(
            "/session/login",
            json!({"username": "nobody", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{no_user}");
    assert_eq!(wrong_pw["reason"], no_user["reason"]);
    let reason = wrong_pw["reason"].as_str().expect("reason").to_lowercase();
    assert!(
        !reason.contains("wrong password") && !reason.contains("no such user"),
        "{reason}"
    );

    // Bad JSON is a 400 in the same shape, not a crash.
    let resp = api
        .http
        .post(format!("{}/session/login", api.base))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"], "BAD_REQUEST");

    // Logging in again works, and logging out ends the session.
    let (status, v) = api
        .post(
            "/session/login",
            json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, _) = api.delete("/session").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.get("/session").await.0, StatusCode::UNAUTHORIZED);

    node.shutdown().await;
    assert!(
        !adir.join("api.json").exists(),
        "api.json is removed on shutdown"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_read_only_and_channel_visibility() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node_a = start_node(server.addr, &adir).await;
    let node_b = start_node(server.addr, &bdir).await;
    let (a, b) = (Api::of(&node_a), Api::of(&node_b));
    a.wait_connected().await;
    b.wait_connected().await;

    a.register("alice").await;
    let (status, v) = a
        .post(
            "/channels",
            json!({"name": "general", "visibility": "public", "allow_visitors": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["owner"], "alice");
    let (status, v) = a
        .post(
            "/channels",
            json!({"name": "staff", "visibility": "members_only"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");

    // A visitor on node B: may look, may not create.
    let (status, v) = b
        .post("/session/visit", json!({"display_name": "Vera"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["kind"], "visitor");
    let (status, v) = b.post("/channels", json!({"name": "mine"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "FORBIDDEN");
    let v = b.ok(Method::GET, "/channels", None).await;
    assert_eq!(v["cached"], false);
    let names = channel_names(&v);
    assert!(names.contains(&"general".to_owned()), "{v}");
    assert!(
        !names.contains(&"staff".to_owned()),
        "visitors never see members-only: {v}"
    );

    // Alice sees both.
    let v = a.ok(Method::GET, "/channels", None).await;
    let names = channel_names(&v);
    assert!(
        names.contains(&"general".to_owned()) && names.contains(&"staff".to_owned()),
        "{v}"
    );

    // B signs up as bob, joins, and both show up as members.
    b.ok(Method::DELETE, "/session", None).await;
    b.register("bob").await;
    let v = b.join("general").await;
    assert_eq!(v["name"], "general");
    assert_eq!(v["my_role"], "member");
    let v = a.ok(Method::GET, "/channels/general/members", None).await;
    let members: Vec<&str> = v["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["username"].as_str())
        .collect();
    assert!(
        members.contains(&"alice") && members.contains(&"bob"),
        "{v}"
    );

    // Leaving works; an unknown channel is a 404.
    b.ok(Method::POST, "/channels/general/leave", None).await;
    let (status, v) = b.post("/channels/nope/join", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");

    node_a.shutdown().await;
    node_b.shutdown().await;
    server.stop().await;
}

/// The public key (hex) of the server whose data directory is `dir`: what
/// a node pins.
fn server_key(dir: &std::path::Path) -> String {
    let seed: [u8; 32] = std::fs::read(dir.join("server.key"))
        .expect("server.key")
        .try_into()
        .expect("32 bytes");
    hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .as_bytes(),
    )
}

fn channel_names(v: &Value) -> Vec<String> {
    v["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

fn presence_of(members: &Value, user: &str) -> Option<String> {
    members["members"]
        .as_array()?
        .iter()
        .find(|m| m["username"] == user)
        .and_then(|m| m["presence"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_peers_and_invisible_looks_offline() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node_a = start_node(server.addr, &adir).await;
    let node_b = start_node(server.addr, &bdir).await;
    let (a, b) = (Api::of(&node_a), Api::of(&node_b));
    a.wait_connected().await;
    b.wait_connected().await;
    a.register("alice").await;
    b.register("bob").await;
    a.ok(Method::POST, "/channels", Some(json!({"name": "general"})))
        .await;
    b.join("general").await;

    // B listens to its events, with the token in the query as a browser would.
    let mut ws = b.events().await;

    a.ok(Method::PUT, "/status", Some(json!({"status": "idle"})))
        .await;
    next_matching(&mut ws, "alice idle", |v| {
        v["type"] == "presence" && v["username"] == "alice" && v["status"] == "idle"
    })
    .await;

    let v = a
        .ok(Method::PUT, "/status", Some(json!({"status": "invisible"})))
        .await;
    assert_eq!(v["status"], "invisible");
    let ev = next_matching(&mut ws, "alice offline", |v| {
        v["type"] == "presence" && v["username"] == "alice"
    })
    .await;
    assert_eq!(
        ev["status"], "offline",
        "invisible must look offline to others: {ev}"
    );

    // A sees itself as invisible; B sees alice offline in the member list.
    let v = a.ok(Method::GET, "/status", None).await;
    assert_eq!(v["status"], "invisible");
    let v = a.ok(Method::GET, "/session", None).await;
    assert_eq!(v["status"], "invisible");
    let v = b.ok(Method::GET, "/channels/general/members", None).await;
    assert_eq!(presence_of(&v, "alice").as_deref(), Some("offline"), "{v}");
    assert_eq!(presence_of(&v, "bob").as_deref(), Some("online"), "{v}");
    let v = a.ok(Method::GET, "/channels/general/members", None).await;
    assert_eq!(
        presence_of(&v, "alice").as_deref(),
        Some("invisible"),
        "{v}"
    );

    // "offline" is not a status one picks.
    let (status, v) = a.put("/status", json!({"status": "offline"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    let _ = ws.close(None).await;
    node_a.shutdown().await;
    node_b.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_leaves_the_peer_list() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node_a = start_node(server.addr, &adir).await;
    let node_b = start_node(server.addr, &bdir).await;
    let (a, b) = (Api::of(&node_a), Api::of(&node_b));
    a.wait_connected().await;
    b.wait_connected().await;
    a.register("alice").await;
    b.register("bob").await;
    b.wait_for("bob to be listed", |v| v["listed"] == true)
        .await;
    let b_p2p = node_b.p2p_addr().to_string();

    let peers = eventually("bob in alice's peer list", || async {
        let v = a.ok(Method::GET, "/peers", None).await;
        let has_bob = v["peers"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["username"] == "bob"));
        has_bob.then_some(v)
    })
    .await;
    let bob = peers["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["username"] == "bob"))
        .expect("bob listed");
    assert_eq!(
        bob["p2p_addr"], b_p2p,
        "the advertised address is B's P2P listener"
    );
    assert_eq!(
        bob["node_id"],
        node_b.node_id(),
        "peers are named by the key B's connection to the server proved"
    );
    assert!(bob.get("udp_port").is_none(), "{bob}");

    node_b.shutdown().await;
    eventually("bob to leave alice's peer list", || async {
        let v = a.ok(Method::GET, "/peers", None).await;
        let gone = v["peers"]
            .as_array()
            .is_some_and(|ps| !ps.iter().any(|p| p["username"] == "bob"));
        gone.then_some(())
    })
    .await;

    node_a.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_cached_channels_and_automatic_resume() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let addr = server.addr;
    let node = start_node(addr, &adir).await;
    let api = Api::of(&node);
    api.wait_connected().await;
    api.register("alice").await;
    api.ok(Method::POST, "/channels", Some(json!({"name": "general"})))
        .await;
    let v = api.ok(Method::GET, "/channels", None).await;
    assert_eq!(v["cached"], false);

    // A subscriber hears the link go down and come back.
    let mut ws = api.events().await;

    server.stop().await;
    api.wait_for("the node to notice", |v| v["server_connected"] == false)
        .await;
    next_matching(&mut ws, "server_disconnected", |v| {
        v["type"] == "server_disconnected"
    })
    .await;

    // While the server is down: the cached list, and fast 503s.
    let v = api.ok(Method::GET, "/channels", None).await;
    assert_eq!(v["cached"], true, "{v}");
    assert_eq!(channel_names(&v), ["general"]);
    let started = std::time::Instant::now();
    let (status, v) = api.post("/channels", json!({"name": "other"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["reason"], "the server is unreachable; retrying");
    assert!(started.elapsed() < Duration::from_secs(2), "fails fast");
    // whoami still answers from the node's own state.
    let v = api.ok(Method::GET, "/session", None).await;
    assert_eq!(v["username"], "alice");

    // Same port, same data: the node reconnects and resumes by itself.
    let server = TestServer::start_at(&sdir, addr).await;
    api.wait_connected().await;
    next_matching(&mut ws, "server_connected", |v| {
        v["type"] == "server_connected"
    })
    .await;
    let v = api.ok(Method::GET, "/session", None).await;
    assert_eq!(v["username"], "alice");
    api.wait_for("re-listing", |v| v["listed"] == true).await;
    let v = api.ok(Method::GET, "/channels", None).await;
    assert_eq!(v["cached"], false);
    assert_eq!(channel_names(&v), ["general"]);

    node.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_port_greets_peers_and_survives_garbage() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node = start_node(server.addr, &adir).await;
    let to = common::node_addr(&node);
    let raw = common::client(&ed25519_dalek::SigningKey::from_bytes(&[4; 32])).await;
    type Link = common::Raw<Value, Value, Value>;

    // Garbage in UDP datagrams to the QUIC port is not even answered.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for junk in [
        &b"\xff\xff\xff\xffGET / HTTP/1.1\r\n\r\n"[..],
        &[0u8; 1200][..],
    ] {
        udp.send_to(junk, to.addr).await.expect("send");
    }
    // Garbage on a peer stream: an error frame or a close, never a crash.
    let mut framed: Link = common::open_peer(&raw, &to).await;
    tokio::io::AsyncWriteExt::write_all(
        framed.get_mut(),
        b"\xff\xff\xff\xffGET / HTTP/1.1\r\n\r\n",
    )
    .await
    .expect("write");
    match tokio::time::timeout(DEADLINE, framed.next()).await {
        Ok(Some(Ok(Frame::Error(f)))) => assert_ne!(f.status, Status::Ok),
        Ok(None) | Ok(Some(Err(_))) => {}
        other => panic!("unexpected answer to garbage: {other:?}"),
    }

    // The tracker protocol is not served here: its ALPN is refused, and a
    // tracker hello on a peer link gets an error.
    let tracker = segchat_net::PeerAddress {
        id: segchat_net::parse_id(&to.node_id).expect("key"),
        direct: vec![to.addr],
        relay: None,
    };
    let refused = raw
        .open(tracker, segchat_net::ALPN_TRACKER, Duration::from_secs(5))
        .await;
    assert!(refused.is_err(), "the node took a tracker connection");
    let mut framed: Link = common::open_peer(&raw, &to).await;
    framed
        .send(Frame::Hello(Hello::new(LinkKind::Tracker, "test")))
        .await
        .expect("hello");
    match tokio::time::timeout(DEADLINE, framed.next()).await {
        Ok(Some(Ok(Frame::Error(f)))) => assert_eq!(f.status, Status::BadRequest, "{f}"),
        other => panic!("expected an error frame, got {other:?}"),
    }

    // The peer link is welcomed; an operation it does not know gets a 400
    // response (the link carries on; see tests/peer_link.rs).
    let mut framed: Link = common::open_peer(&raw, &to).await;
    framed
        .send(Frame::Hello(Hello::new(LinkKind::Peer, "test")))
        .await
        .expect("hello");
    match tokio::time::timeout(DEADLINE, framed.next()).await {
        Ok(Some(Ok(Frame::Welcome(w)))) => assert!(w.max_body_len > 0),
        other => panic!("expected welcome, got {other:?}"),
    }
    framed
        .send(Frame::Request {
            id: 1,
            body: serde_json::json!({"op": "teleport"}),
        })
        .await
        .expect("request");
    match tokio::time::timeout(DEADLINE, framed.next()).await {
        Ok(Some(Ok(Frame::Response {
            id: 1,
            result: Err(f),
        }))) => {
            assert_eq!(f.status, Status::BadRequest, "{f}")
        }
        other => panic!("expected a 400 response, got {other:?}"),
    }

    // Still serving the API afterwards.
    let api = Api::of(&node);
    assert_eq!(api.get("/node").await.0, StatusCode::OK);
    drop(framed);
    raw.close().await;
    node.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_node_restarts_and_refused_ones_are_forgotten() {
    let (_s, sdir) = tempdir();
    let (_s2, sdir2) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let addr = server.addr;
    let node = start_node(addr, &adir).await;
    let api = Api::of(&node);
    api.wait_connected().await;
    api.register("alice").await;
    node.shutdown().await;

    // A new node process on the same data directory resumes the session.
    let node = start_node(addr, &adir).await;
    let api = Api::of(&node);
    api.wait_connected().await;
    let v = api.ok(Method::GET, "/session", None).await;
    assert_eq!(v["username"], "alice");
    api.wait_for("re-listing", |v| v["listed"] == true).await;

    // A server at the same address with another key (a fresh data
    // directory) is not the server this node pinned: it refuses to talk
    // to it, says why, and keeps its session.
    let pinned = server_key(&sdir);
    server.stop().await;
    api.wait_for("the node to notice", |v| v["server_connected"] == false)
        .await;
    let impostor = TestServer::start_at(&sdir2, addr).await;
    let v = api
        .wait_for("the node to refuse the new key", |v| {
            v["server_refused"].is_string()
        })
        .await;
    let refusal = v["server_refused"].as_str().expect("refusal");
    assert!(
        refusal.contains(&server_key(&sdir2)) && refusal.contains(&pinned),
        "{refusal}"
    );
    assert_eq!(v["server_key"], pinned, "{v}");
    assert_eq!(v["server_connected"], false, "{v}");
    impostor.stop().await;

    // The same server (its key) that never heard of the session (fresh
    // data otherwise) refuses it: the node forgets it instead of retrying
    // forever.
    let (_s3, sdir3) = tempdir();
    std::fs::copy(sdir.join("server.key"), sdir3.join("server.key")).expect("copy the key");
    let server = TestServer::start_at(&sdir3, addr).await;
    api.wait_connected().await;
    let v = api.ok(Method::GET, "/node", None).await;
    assert!(v["server_refused"].is_null(), "{v}");
    let (status, v) = api.get("/session").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    // And the name is free to register on that server.
    api.register("alice").await;

    node.shutdown().await;
    server.stop().await;
}
