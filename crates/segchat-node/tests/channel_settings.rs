//! Channel settings and deletion end to end: a real server, real nodes
//! driven over their HTTP APIs, and raw clients that speak the tracker
//! and peer protocols themselves, so that what a node's host refuses and
//! what the server refuses are both seen from outside.

mod common;

use common::{
    ask, client, eventually, next_matching, peer_connect, registered, start_node, tempdir,
    ticket_for, tracker_link, Api, PeerLink, TestServer, Tracker, DEADLINE,
};
use ed25519_dalek::SigningKey;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::types::NodeAddr;
use segchat_proto::{peer, Failure, Frame, Status};
use serde_json::{json, Value};

/// A `PATCH /channels/{name}` as `api`: the status and the body.
async fn patch(api: &Api, channel: &str, body: Value) -> (StatusCode, Value) {
    api.call(Method::PATCH, &format!("/channels/{channel}"), Some(body))
        .await
}

/// The channels `api` lists, by name.
async fn listed(api: &Api) -> Vec<Value> {
    let (status, v) = api.get("/channels").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["channels"].as_array().expect("channels").clone()
}

/// Reads `p` until the host closes it; false if it stays open.
async fn closed_by_host(p: &mut PeerLink) -> bool {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match p.next().await {
                None | Some(Err(_)) | Some(Ok(Frame::Error(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// Reads a raw tracker link until the server pushes an event `ok` takes.
async fn told(t: &mut Tracker, what: &str, ok: impl Fn(&Event) -> bool) {
    let seen = tokio::time::timeout(DEADLINE, async {
        loop {
            match t.next().await {
                Some(Ok(Frame::Event(ev))) if ok(&ev) => return true,
                Some(Ok(_)) => continue,
                _ => return false,
            }
        }
    })
    .await;
    assert_eq!(seen, Ok(true), "the server never said: {what}");
}

fn refused(what: &str, answer: &Result<peer::Reply, Failure>, status: Status) {
    match answer {
        Err(f) => assert_eq!(f.status, status, "{what}: {f}"),
        Ok(reply) => panic!("{what} was admitted: {reply:?}"),
    }
}

/// `history` of `channel` on a raw tracker link: the failure's status,
/// or `Ok` if the server served it.
async fn server_history(t: &mut Tracker, id: u32, channel: &str) -> Result<(), Status> {
    let history = Request::History {
        channel: channel.into(),
        after_seq: 0,
        limit: 10,
    };
    match ask(t, id, history).await {
        Ok(Reply::Messages { .. }) => Ok(()),
        Ok(other) => panic!("history answered {other:?}"),
        Err(f) => Err(f.status),
    }
}

/// A raw visitor: its tracker link, signed in as `name`, and a ticket for
/// `key` (request ids 1 and 2 are used).
async fn visitor(
    c: &segchat_net::client::Client,
    server: std::net::SocketAddr,
    name: &str,
    key: &SigningKey,
) -> (Tracker, segchat_proto::ticket::SignedTicket) {
    let mut t = tracker_link(c, server, name).await;
    let visit = Request::Visit {
        display_name: name.into(),
    };
    ask(&mut t, 1, visit).await.expect("visit");
    let ticket = ticket_for(&mut t, 2, key).await;
    (t, ticket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_sets_topic_and_title_and_members_see_them_at_once() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let host = start_node(server.addr, &adir).await;
    let member = start_node(server.addr, &bdir).await;
    let (a, b) = (Api::of(&host), Api::of(&member));
    a.wait_connected().await;
    b.wait_connected().await;
    a.register("alice").await;
    b.register("bob").await;
    let created = a.create_channel("lobby", "public").await;
    assert_eq!(created["title"], "lobby", "the title is the name until set");
    assert_eq!(created["topic"], "");
    b.join("lobby").await;
    let mut bob_events = b.events().await;

    // Bob is a member, not the owner or a moderator.
    let (status, v) = patch(&b, "lobby", json!({"topic": "bob was here"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    // Bad input gets a reason; nobody can change a channel that is not there.
    for (body, why) in [
        (json!({"title": "  "}), "title"),
        (json!({"topic": "x".repeat(301)}), "300"),
        (json!({}), "nothing to change"),
    ] {
        let (status, v) = patch(&a, "lobby", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["reason"].as_str().unwrap_or("").contains(why), "{v}");
    }
    let (status, v) = patch(&a, "nowhere", json!({"topic": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");

    let (status, v) = patch(
        &a,
        "lobby",
        json!({"topic": "coffee and code", "title": "The Lobby ☕"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["name"], &v["title"], &v["topic"]),
        (
            &json!("lobby"),
            &json!("The Lobby ☕"),
            &json!("coffee and code")
        ),
        "a rename sets the title; the name stays: {v}"
    );
    assert_eq!(v["visibility"], "public", "what was not asked stays: {v}");

    let ev = next_matching(&mut bob_events, "channel_updated", |v| {
        v["type"] == "channel_updated"
    })
    .await;
    assert_eq!(ev["channel"]["title"], "The Lobby ☕", "{ev}");
    assert_eq!(ev["channel"]["topic"], "coffee and code", "{ev}");
    assert_eq!(ev["channel"]["my_role"], "member", "as bob sees it: {ev}");
    let lobby = listed(&b)
        .await
        .into_iter()
        .find(|c| c["name"] == "lobby")
        .expect("still listed");
    assert_eq!(lobby["title"], "The Lobby ☕", "{lobby}");
    assert_eq!(lobby["topic"], "coffee and code", "{lobby}");

    host.shutdown().await;
    member.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_public_channel_cuts_off_whoever_may_no_longer_read() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let host = start_node(server.addr, &adir).await;
    let a = Api::of(&host);
    a.wait_connected().await;
    a.register("alice").await;
    a.ok(
        Method::POST,
        "/channels",
        Some(json!({"name": "lobby", "visibility": "public", "allow_visitors": true})),
    )
    .await;
    let to: NodeAddr = a.node_addr().await;

    // Carol is registered but no member: she reads a public channel.
    let carol_key = SigningKey::from_bytes(&[7; 32]);
    let carol = client(&carol_key).await;
    let mut carol_t = registered(&carol, server.addr, "carol").await;
    let carol_ticket = ticket_for(&mut carol_t, 2, &carol_key).await;
    // Vic is a visitor, admitted while visitors are.
    let vic_key = SigningKey::from_bytes(&[8; 32]);
    let vic = client(&vic_key).await;
    let (mut vic_t, vic_ticket) = visitor(&vic, server.addr, "Vic", &vic_key).await;

    let mut carol_link = eventually("carol to be admitted to the lobby", || async {
        let (p, answer) = peer_connect(&carol, &to, &carol_key, &carol_ticket, "lobby").await;
        answer.is_ok().then_some(p)
    })
    .await;
    let (mut vic_link, answer) = peer_connect(&vic, &to, &vic_key, &vic_ticket, "lobby").await;
    assert!(answer.is_ok(), "visitors are admitted: {answer:?}");
    assert_eq!(server_history(&mut vic_t, 10, "lobby").await, Ok(()));

    // Visitors off: Vic is told the channel is gone, cut off the host at
    // once, refused by the host and by the server; Carol stays.
    let (status, v) = patch(&a, "lobby", json!({"allow_visitors": false})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    told(
        &mut vic_t,
        "channel_hidden to the visitor",
        |ev| matches!(ev, Event::ChannelHidden { channel } if channel == "lobby"),
    )
    .await;
    assert!(
        closed_by_host(&mut vic_link).await,
        "the host keeps a visitor's link after visitors were turned off"
    );
    let (_, answer) = peer_connect(&vic, &to, &vic_key, &vic_ticket, "lobby").await;
    refused(
        "a visitor after visitors were turned off",
        &answer,
        Status::Forbidden,
    );
    assert_eq!(
        server_history(&mut vic_t, 11, "lobby").await,
        Err(Status::NotFound)
    );
    assert_eq!(server_history(&mut carol_t, 10, "lobby").await, Ok(()));

    // Private: Carol (no member, no invitation) goes the same way.
    let (status, v) = patch(&a, "lobby", json!({"visibility": "private"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["visibility"], "private", "{v}");
    told(
        &mut carol_t,
        "channel_hidden to the non-member",
        |ev| matches!(ev, Event::ChannelHidden { channel } if channel == "lobby"),
    )
    .await;
    assert!(
        closed_by_host(&mut carol_link).await,
        "the host keeps a non-member's link after the channel went private"
    );
    let (_, answer) = peer_connect(&carol, &to, &carol_key, &carol_ticket, "lobby").await;
    refused(
        "a non-member of a private channel",
        &answer,
        Status::Forbidden,
    );
    assert_eq!(
        server_history(&mut carol_t, 11, "lobby").await,
        Err(Status::NotFound),
        "a private channel does not reveal itself"
    );
    let (status, v) = patch(&a, "lobby", json!({"topic": "still mine"})).await;
    assert_eq!(status, StatusCode::OK, "the owner still manages it: {v}");

    host.shutdown().await;
    server.stop().await;
    carol.close().await;
    vic.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_channel_removes_it_for_every_member_and_the_host() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let host = start_node(server.addr, &adir).await;
    let member = start_node(server.addr, &bdir).await;
    let (a, b) = (Api::of(&host), Api::of(&member));
    a.wait_connected().await;
    b.wait_connected().await;
    a.register("alice").await;
    b.register("bob").await;
    a.create_channel("lobby", "public").await;
    a.create_channel("kept", "public").await;
    b.join("lobby").await;
    a.ok(
        Method::POST,
        "/channels/lobby/messages",
        Some(json!({"body": "soon gone"})),
    )
    .await;
    let to: NodeAddr = a.node_addr().await;

    // A raw reader, to ask the host and the server directly.
    let carol_key = SigningKey::from_bytes(&[9; 32]);
    let carol = client(&carol_key).await;
    let mut carol_t = registered(&carol, server.addr, "carol").await;
    let carol_ticket = ticket_for(&mut carol_t, 2, &carol_key).await;
    let start = std::time::Instant::now();
    for id in 3.. {
        let history = Request::History {
            channel: "lobby".into(),
            after_seq: 0,
            limit: 10,
        };
        match ask(&mut carol_t, id, history).await {
            Ok(Reply::Messages { messages, .. }) if !messages.is_empty() => break,
            _ => {}
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the message never reached the server's backup"
        );
        tokio::time::sleep(common::POLL).await;
    }
    let (mut carol_link, answer) =
        peer_connect(&carol, &to, &carol_key, &carol_ticket, "lobby").await;
    assert!(answer.is_ok(), "{answer:?}");
    let mut bob_events = b.events().await;
    eventually("bob to hold the message", || async {
        let (_, v) = b.get("/search?q=soon").await;
        (v["results"].as_array()?.len() == 1).then_some(())
    })
    .await;

    let (status, v) = b.delete("/channels/lobby").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only the owner deletes: {v}");

    let (status, v) = a.delete("/channels/lobby").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["deleted"], true, "{v}");

    next_matching(&mut bob_events, "channel_deleted", |v| {
        v["type"] == "channel_deleted" && v["channel"] == "lobby"
    })
    .await;
    for api in [&a, &b] {
        let names: Vec<Value> = listed(api)
            .await
            .into_iter()
            .map(|c| c["name"].clone())
            .collect();
        assert!(!names.contains(&json!("lobby")), "still listed: {names:?}");
        assert!(
            names.contains(&json!("kept")),
            "the other channel went too: {names:?}"
        );
    }
    // The host stopped hosting it: open links close, new ones find nothing.
    assert!(
        closed_by_host(&mut carol_link).await,
        "the host keeps a link to a deleted channel"
    );
    let (_, answer) = peer_connect(&carol, &to, &carol_key, &carol_ticket, "lobby").await;
    refused("a deleted channel on its host", &answer, Status::NotFound);
    // The server's copy is gone.
    assert_eq!(
        server_history(&mut carol_t, 9_000, "lobby").await,
        Err(Status::NotFound)
    );
    let (status, v) = patch(&a, "lobby", json!({"topic": "back?"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    // Bob's node stopped following it and forgot it from its cache.
    eventually("bob's node to stop following the lobby", || async {
        let (_, v) = b.get("/unread").await;
        v["links"].get("lobby").is_none().then_some(())
    })
    .await;
    // Both nodes forgot its messages: nothing of it is found again...
    for (who, api) in [("alice", &a), ("bob", &b)] {
        eventually(&format!("{who}'s node to forget the messages"), || async {
            let (_, v) = api.get("/search?q=soon").await;
            v["results"].as_array()?.is_empty().then_some(())
        })
        .await;
    }
    // ...and a new channel of the same name starts from nothing: its
    // host serves none of the old messages, its member's cursor does not
    // skip the new ones.
    a.create_channel("lobby", "public").await;
    b.join("lobby").await;
    a.ok(
        Method::POST,
        "/channels/lobby/messages",
        Some(json!({"body": "fresh start"})),
    )
    .await;
    for (who, api) in [("alice", &a), ("bob", &b)] {
        eventually(&format!("{who} to see only the new lobby"), || async {
            let (_, v) = api.get("/channels/lobby/messages").await;
            let bodies: Vec<&str> = v["messages"]
                .as_array()?
                .iter()
                .filter_map(|m| m["body"].as_str())
                .collect();
            (bodies == ["fresh start"]).then_some(())
        })
        .await;
    }

    host.shutdown().await;
    member.shutdown().await;
    server.stop().await;
    carol.close().await;
}
