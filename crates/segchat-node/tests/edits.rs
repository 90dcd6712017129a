//! Replies, edits, deletions and reactions end to end, with a real server
//! and real nodes: made while the host is away, they reach every member
//! once it returns, once, and the replaced text is gone from every store's
//! search and from the server's backup; an edit or deletion signed by
//! somebody who may not make it is refused by the host and the server.

mod common;

use common::chat::via;
use common::{
    ask, client, eventually, peer_connect, registered, start_node, tempdir, ticket_for, Api,
    TestServer,
};
use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use segchat_proto::edits::{Ref, RefKind};
use segchat_proto::message::Draft;
use segchat_proto::tracker::Request;
use segchat_proto::{peer, Frame, Status};
use serde_json::{json, Value};
use uuid::Uuid;

/// The channel's shown messages, oldest first.
async fn shown(api: &Api, channel: &str) -> Vec<Value> {
    let (status, v) = api
        .get(&format!("/channels/{channel}/messages?limit=500"))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mut out = v["messages"].as_array().expect("messages").clone();
    out.reverse();
    out
}

async fn send(api: &Api, channel: &str, body: Value) -> Value {
    let v = api
        .ok(
            Method::POST,
            &format!("/channels/{channel}/messages"),
            Some(body),
        )
        .await;
    v["message"].clone()
}

async fn hits(api: &Api, word: &str) -> usize {
    let (status, v) = api.get(&format!("/search?q={word}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["results"].as_array().expect("results").len()
}

/// What `api` shows of channel `ops`, reduced to what every node must
/// agree on: body, edited or not, deleted, reactions, quote.
async fn view(api: &Api) -> Vec<String> {
    shown(api, "ops")
        .await
        .iter()
        .map(|m| {
            let reactions: Vec<String> = m["reactions"]
                .as_array()
                .expect("reactions")
                .iter()
                .map(|r| format!("{}:{}", r["emoji"].as_str().unwrap_or("?"), r["users"]))
                .collect();
            format!(
                "{}|edited={}|deleted={}|{}|quote={}",
                m["body"].as_str().unwrap_or("?"),
                m["edited_ms"].is_u64(),
                m["deleted"],
                reactions.join(","),
                m["quote"]["body"].as_str().unwrap_or("-"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_the_host_is_away_reach_everyone_once_it_returns() {
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
    let m1 = send(&a, "ops", json!({"body": "deploy at noon?"})).await;
    let m2 = send(&b, "ops", json!({"body": "teh plan is fine"})).await;
    let m3 = send(&b, "ops", json!({"body": "oops, the password is hunter2"})).await;
    for api in [&b, &d] {
        eventually("members to hold the first three", || async {
            (shown(api, "ops").await.len() == 3).then_some(())
        })
        .await;
    }

    // The host goes away; the members go on through the server.
    host.shutdown().await;
    for api in [&b, &d] {
        eventually("members to fall back to the server", || async {
            (via(api, "ops").await.as_deref() == Some("server")).then_some(())
        })
        .await;
    }
    let id = |m: &Value| m["id"].as_str().expect("id").to_owned();
    let edited = b
        .ok(
            Method::PATCH,
            &format!("/channels/ops/messages/{}", id(&m2)),
            Some(json!({"body": "the plan is fine"})),
        )
        .await;
    assert_eq!(
        edited["message"]["body"], "the plan is fine",
        "shown at once"
    );
    b.ok(
        Method::DELETE,
        &format!("/channels/ops/messages/{}", id(&m3)),
        None,
    )
    .await;
    d.ok(
        Method::PUT,
        &format!("/channels/ops/messages/{}/reactions/%F0%9F%91%8D", id(&m1)),
        None,
    )
    .await;
    d.ok(
        Method::PUT,
        &format!("/channels/ops/messages/{}/reactions/%F0%9F%8E%89", id(&m1)),
        None,
    )
    .await;
    d.ok(
        Method::DELETE,
        &format!("/channels/ops/messages/{}/reactions/%F0%9F%8E%89", id(&m1)),
        None,
    )
    .await;
    send(
        &d,
        "ops",
        json!({"body": "agreed @bob", "reply_to": id(&m2)}),
    )
    .await;
    let want = vec![
        "deploy at noon?|edited=false|deleted=false|👍:[\"dan\"]|quote=-".to_owned(),
        "the plan is fine|edited=true|deleted=false||quote=-".to_owned(),
        "|edited=false|deleted=true||quote=-".to_owned(),
        "agreed @bob|edited=false|deleted=false||quote=the plan is fine".to_owned(),
    ];
    for api in [&b, &d] {
        eventually(
            "members to see each other's changes through the server",
            || async { (view(api).await == want).then_some(()) },
        )
        .await;
    }

    // The host returns, pulls what it missed, and everyone agrees.
    let host = start_node(server.addr, &adir).await;
    let a = Api::of(&host);
    a.wait_connected().await;
    for api in [&a, &b, &d] {
        eventually("every node to show every change", || async {
            (view(api).await == want).then_some(())
        })
        .await;
    }
    for api in [&b, &d] {
        eventually("members to reconnect to the host", || async {
            (via(api, "ops").await.as_deref() == Some("host")).then_some(())
        })
        .await;
    }
    // A change through the host reaches the members too.
    a.ok(
        Method::PATCH,
        &format!("/channels/ops/messages/{}", id(&m1)),
        Some(json!({"body": "deploy at one"})),
    )
    .await;
    for api in [&a, &b, &d] {
        eventually("the host's edit to reach everyone", || async {
            let v = view(api).await;
            v[0].starts_with("deploy at one|edited=true").then_some(())
        })
        .await;
        assert_eq!(hits(api, "hunter2").await, 0, "deleted text is not found");
        assert_eq!(hits(api, "teh").await, 0, "replaced text is not found");
        assert_eq!(hits(api, "noon").await, 0, "replaced text is not found");
        assert_eq!(hits(api, "plan").await, 1, "the edited text is found");
        let (_, unread) = api.get("/unread").await;
        assert!(
            unread["unread"]["ops"].as_u64().unwrap_or(0) <= 4,
            "edits, deletions and reactions are not unread: {unread}"
        );
    }
    let (_, unread) = b.get("/unread").await;
    assert_eq!(unread["mentions"]["ops"], 1, "dan mentioned bob: {unread}");

    // The server's backup keeps neither the deleted nor the replaced text
    // (once the host has backed its edit up).
    let db = rusqlite::Connection::open(sdir.join("server.db")).expect("server db");
    eventually(
        "the backup to redact what was deleted or replaced",
        || async {
            let leaked: i64 = db
                .query_row(
                    "SELECT COUNT(*) FROM messages WHERE body LIKE '%hunter2%'
                   OR body LIKE '%teh plan%' OR body LIKE '%noon%'",
                    [],
                    |r| r.get(0),
                )
                .expect("query");
            (leaked == 0).then_some(())
        },
    )
    .await;
    for n in [host, n_b, n_d] {
        n.shutdown().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_or_deletion_by_someone_else_is_refused_by_host_and_server() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let host = start_node(server.addr, &adir).await;
    let a = Api::of(&host);
    a.wait_connected().await;
    a.register("alice").await;
    a.create_channel("club", "members_only").await;
    let mine = send(&a, "club", json!({"body": "alice's words"})).await;
    let target: Uuid = mine["id"].as_str().expect("id").parse().expect("uuid");
    eventually("alice's message to be backed up", || async {
        let v = shown(&a, "club").await;
        (v[0]["state"] == "backed_up").then_some(())
    })
    .await;

    // Eve, a member with a bare client: her own key and genuine ticket,
    // signing actions on alice's message.
    let key = SigningKey::from_bytes(&[5; 32]);
    let eve = client(&key).await;
    let mut t = registered(&eve, server.addr, "eve").await;
    ask(
        &mut t,
        2,
        Request::JoinChannel {
            channel: "club".into(),
        },
    )
    .await
    .expect("join");
    let ticket = ticket_for(&mut t, 3, &key).await;
    let eve_does = |kind: RefKind, body: &str| {
        Draft {
            file: None,
            id: Uuid::now_v7(),
            channel: "club",
            author: "eve",
            ts_ms: 2_000_000_000_000,
            body,
            re: Some(Ref { kind, id: target }),
        }
        .sign(&key, ticket.clone())
        .expect("sign")
    };
    let host_at = a.node_addr().await;
    let mut p = eventually("eve to be admitted", || async {
        let (p, answer) = peer_connect(&eve, &host_at, &key, &ticket, "club").await;
        matches!(
            answer,
            Ok(peer::Reply::Connected {
                can_write: true,
                ..
            })
        )
        .then_some(p)
    })
    .await;
    let attempts = [
        (10, eve_does(RefKind::Edit, "alice says eve is right")),
        (11, eve_does(RefKind::Delete, "")),
        (12, eve_does(RefKind::React, "👍")),
    ];
    for (id, m) in &attempts {
        p.send(Frame::Request {
            id: *id,
            body: peer::Request::Post { message: m.clone() },
        })
        .await
        .expect("post");
    }
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < attempts.len() {
        match tokio::time::timeout(common::DEADLINE, p.next()).await {
            Ok(Some(Ok(Frame::Response { id, result }))) => {
                answers.insert(id, result);
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("the host stopped answering: {other:?}"),
        }
    }
    for id in [10, 11] {
        match &answers[&id] {
            Err(f) => assert_eq!(f.status, Status::Forbidden, "{f}"),
            other => panic!("the host took a forged action {id}: {other:?}"),
        }
    }
    assert!(
        matches!(answers[&12], Ok(peer::Reply::Stored { .. })),
        "a member may react: {:?}",
        answers[&12]
    );

    // The host goes away; the server refuses the same.
    host.shutdown().await;
    for (n, kind, body) in [
        (20, RefKind::Edit, "alice resigns"),
        (21, RefKind::Delete, ""),
    ] {
        let refused = ask(
            &mut t,
            n,
            Request::PostMessage {
                message: eve_does(kind, body).into(),
            },
        )
        .await
        .expect_err("the server refuses a forged action");
        assert_eq!(refused.status, Status::Forbidden, "{refused}");
    }
    // Nothing changed alice's message anywhere.
    let host = start_node(server.addr, &adir).await;
    let a = Api::of(&host);
    a.wait_connected().await;
    let v = eventually("the reaction to show", || async {
        let v = shown(&a, "club").await;
        (v[0]["reactions"].as_array().is_some_and(|r| r.len() == 1)).then_some(v)
    })
    .await;
    assert_eq!(v[0]["body"], "alice's words");
    assert_eq!(v[0]["deleted"], false);
    assert!(v[0]["edited_ms"].is_null());
    host.shutdown().await;
    server.stop().await;
}
