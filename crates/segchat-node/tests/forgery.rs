//! Peers that misbehave. A channel host that lies (alters a body, signs in
//! someone else's name, presents a ticket the server never signed, puts an
//! author's ticket on a broadcast in another's name, names a ticket it never
//! sent): the member's node keeps only the genuine message, logs the rest,
//! and drops a link that breaks the protocol. A member who alters a post is
//! refused (alone or in a burst of genuine ones); a member who leaves is cut
//! off and refused; a member who stops reading is cut off without holding
//! up the others.

mod common;

use common::{
    ask, client, eventually, peer_connect, registered, start_node, tempdir, ticket_for, Api,
    PeerLink, TestServer, Tracker,
};
use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use segchat_proto::edits::{Ref, RefKind};
use segchat_proto::message::{Draft, Message, Sequenced};
use segchat_proto::ticket::{SignedTicket, Ticket};
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::types::{AccountKind, Visibility};
use segchat_proto::{peer, Frame, FrameCodec, Welcome, PROTOCOL_VERSION};
use serde_json::json;
use std::time::Duration;
use tokio_util::codec::Framed;
use uuid::Uuid;

/// Request `id` on `t`, which the server accepts.
async fn ok(t: &mut Tracker, id: u32, body: Request) -> Reply {
    ask(t, id, body).await.expect("the server accepts")
}

fn sign(key: &SigningKey, ticket: &SignedTicket, author: &str, body: &str) -> Message {
    Draft {
        file: None,
        id: Uuid::now_v7(),
        channel: "trap",
        author,
        ts_ms: 1_000,
        body,
        re: None,
    }
    .sign(key, ticket.clone())
    .expect("sign")
}

/// Mallory's fake host: a real account and channel `trap`, and an
/// endpoint of its own that accepts peer links. Its tracker link and its
/// peer links share the endpoint, so the server lists it under its key,
/// which is the ticket's.
struct Mallory {
    fake: segchat_net::client::Client,
    key: SigningKey,
    ticket: SignedTicket,
    _tracker: Tracker,
}

async fn mallory_hosts_trap(server: std::net::SocketAddr) -> Mallory {
    let key = SigningKey::from_bytes(&[7; 32]);
    let fake = client(&key).await;
    fake.endpoint()
        .set_alpns(vec![segchat_net::ALPN_PEER.to_vec()]);
    let fake_addr = segchat_net::endpoint::local_addr(fake.endpoint()).expect("bound");
    let mut t = registered(&fake, server, "mallory").await;
    ok(
        &mut t,
        2,
        Request::CreateChannel {
            name: "trap".into(),
            visibility: Visibility::Public,
            allow_visitors: false,
        },
    )
    .await;
    let ticket = ticket_for(&mut t, 3, &key).await;
    ok(
        &mut t,
        4,
        Request::SubmitInfo {
            p2p_addr: fake_addr,
            status: None,
        },
    )
    .await;
    ok(
        &mut t,
        5,
        Request::HostChannel {
            channel: "trap".into(),
        },
    )
    .await;
    Mallory {
        fake,
        key,
        ticket,
        _tracker: t,
    }
}

/// Serves one peer link on mallory's endpoint: welcome, admit, answer a
/// `sync` with `lies` (numbered from 1), then push `pushed`.
fn serve_lies(
    mallory: &Mallory,
    lies: Vec<Message>,
    pushed: Vec<peer::Event>,
) -> tokio::task::JoinHandle<()> {
    let endpoint = mallory.fake.endpoint().clone();
    tokio::spawn(async move {
        let incoming = endpoint.accept().await.expect("an incoming connection");
        let conn = incoming.await.expect("a connection");
        let (send, recv) = conn.accept_bi().await.expect("a stream");
        let mut p: PeerLink = common::Raw {
            framed: Framed::new(tokio::io::join(recv, send), FrameCodec::default()),
            conn,
        };
        assert!(matches!(p.next().await, Some(Ok(Frame::Hello(_)))));
        p.send(Frame::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            agent: "liar".into(),
            heartbeat_ms: 0,
            peer_ttl_ms: 0,
            server_key: String::new(),
            max_body_len: 4000,
            nonce: hex::encode([3u8; 32]),
            observed_addr: None,
        }))
        .await
        .expect("welcome");
        while let Some(Ok(frame)) = p.next().await {
            let Frame::Request { id, body } = frame else {
                continue;
            };
            let synced = matches!(body, peer::Request::Sync { .. });
            let result = match body {
                peer::Request::PeerConnect { channel, .. } => Ok(peer::Reply::Connected {
                    channel,
                    last_seq: lies.len() as u64,
                    can_write: true,
                }),
                peer::Request::Sync { channel, .. } => Ok(peer::Reply::Messages {
                    channel,
                    messages: lies
                        .iter()
                        .enumerate()
                        .map(|(i, m)| Sequenced {
                            seq: i as u64 + 1,
                            message: m.clone(),
                        })
                        .collect(),
                    has_more: false,
                }),
                peer::Request::Post { message } => Ok(peer::Reply::Stored {
                    id: message.id,
                    seq: 99,
                }),
                _ => Err(segchat_proto::Failure::bad_request("no streams here")),
            };
            if p.send(Frame::Response { id, result }).await.is_err() {
                break;
            }
            if synced {
                for ev in pushed.iter().cloned() {
                    if p.send(Frame::Event(ev)).await.is_err() {
                        break;
                    }
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_host_cannot_forge_or_alter_messages() {
    let (_s, sdir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let mallory = mallory_hosts_trap(server.addr).await;
    let (key, ticket) = (&mallory.key, &mallory.ticket);

    let genuine = sign(key, ticket, "mallory", "an honest message");
    let mut altered = sign(key, ticket, "mallory", "pay me 10");
    altered.body = "pay me 1000".into();
    let in_bobs_name = sign(key, ticket, "bob", "bob says mallory is great");
    let fake_ticket = Ticket {
        username: "bob".into(),
        kind: AccountKind::User,
        session_id: "x".into(),
        node_key: hex::encode(key.verifying_key().as_bytes()),
        issued_at_ms: 0,
        expires_at_ms: u64::MAX,
    }
    .sign(&SigningKey::from_bytes(&[9; 32]))
    .expect("sign");
    let with_fake_ticket = sign(key, &fake_ticket, "bob", "bob resigns");
    let lies = vec![altered, in_bobs_name, with_fake_ticket, genuine];
    // Pushed as broadcasts: mallory's ticket put on a message in bob's name,
    // then a broadcast naming a ticket the link never got.
    let (in_bobs_name_again, _) = sign(key, ticket, "bob", "bob agrees, says mallory").into_parts();
    let forged_broadcast = in_bobs_name_again.id.to_string();
    let (unknown_ticket, _) = sign(key, ticket, "mallory", "who am I").into_parts();
    let pushed = vec![
        peer::Event::Ticket {
            ticket_ref: 0,
            ticket: ticket.clone(),
        },
        peer::Event::Broadcast {
            seq: 5,
            ticket_ref: 0,
            message: in_bobs_name_again,
        },
        peer::Event::Broadcast {
            seq: 6,
            ticket_ref: 7,
            message: unknown_ticket,
        },
    ];

    let fake_host = serve_lies(&mallory, lies, pushed);

    let node = start_node(server.addr, &bdir).await;
    let b = Api::of(&node);
    b.wait_connected().await;
    b.register("bob").await;
    b.join("trap").await;
    eventually("the genuine message to arrive", || async {
        let (_, v) = b.get("/channels/trap/messages").await;
        (v["messages"].as_array()?.len() == 1).then_some(())
    })
    .await;
    // The pushed broadcasts come after the sync: wait until the node has
    // dealt with them too (the log is flushed whenever its queue runs dry).
    let log_file = bdir.join("logs").join("segchat.log");
    eventually("the broken link to be dropped", || async {
        let log = std::fs::read_to_string(&log_file).ok()?;
        log.contains("which this link was never sent").then_some(())
    })
    .await;
    let (_, v) = b.get("/channels/trap/messages").await;
    assert_eq!(v["messages"][0]["body"], "an honest message", "{v}");
    let (_, found) = b.get("/search?q=pay").await;
    assert_eq!(
        found["results"],
        json!([]),
        "altered messages are never stored"
    );

    node.shutdown().await;
    let log = std::fs::read_to_string(bdir.join("logs").join("segchat.log")).expect("log");
    let rejected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("] MESSAGE_REJECTED |"))
        .collect();
    assert_eq!(rejected.len(), 4, "{log}");
    assert!(
        rejected
            .iter()
            .any(|l| l.contains(&forged_broadcast) && l.contains("not \"bob\"")),
        "the forged broadcast is among the rejected: {rejected:?}"
    );
    assert!(
        log.lines().any(|l| l.contains("] HOST_UNREACHABLE |")
            && l.contains("names ticket 7, which this link was never sent")),
        "a broadcast naming an unknown ticket breaks the link: {log}"
    );
    assert!(rejected
        .iter()
        .any(|l| l.contains("signature does not verify")));
    assert!(rejected
        .iter()
        .any(|l| l.contains("ticket is for \"mallory\", not \"bob\"")));
    fake_host.abort();
    server.stop().await;
    mallory.fake.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_host_cannot_edit_or_delete_someone_elses_message() {
    let (_s, sdir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let mallory = mallory_hosts_trap(server.addr).await;

    // Carol and dave are real users with their own keys and genuine
    // tickets; carol wrote a message in the channel.
    let member = |seed: u8, name: &'static str| async move {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let link = client(&key).await;
        let mut t = registered(&link, server.addr, name).await;
        let ticket = ticket_for(&mut t, 2, &key).await;
        (key, ticket, link)
    };
    let (carol_key, carol_ticket, _carol) = member(11, "carol").await;
    let (dave_key, dave_ticket, _dave) = member(12, "dave").await;
    let act = |key: &SigningKey, ticket: &SignedTicket, author: &str, body: &str, re| {
        Draft {
            file: None,
            id: Uuid::now_v7(),
            channel: "trap",
            author,
            ts_ms: 2_000,
            body,
            re,
        }
        .sign(key, ticket.clone())
        .expect("sign")
    };
    let carols = act(
        &carol_key,
        &carol_ticket,
        "carol",
        "carol's own words",
        None,
    );
    let on_carols = |kind| {
        Some(Ref {
            kind,
            id: carols.id,
        })
    };
    // The host, who owns the channel, may delete carol's message but not
    // put words in her mouth; dave, a plain member, may do neither. Each
    // action is genuinely signed by whoever made it, and the host serves
    // them all as if they were fine.
    let lies = vec![
        carols.clone(),
        act(
            &mallory.key,
            &mallory.ticket,
            "mallory",
            "carol forged owes mallory",
            on_carols(RefKind::Edit),
        ),
        act(
            &dave_key,
            &dave_ticket,
            "dave",
            "dave forged rewrites",
            on_carols(RefKind::Edit),
        ),
        act(
            &dave_key,
            &dave_ticket,
            "dave",
            "",
            on_carols(RefKind::Delete),
        ),
        act(&mallory.key, &mallory.ticket, "mallory", "last word", None),
    ];
    let fake_host = serve_lies(&mallory, lies, Vec::new());

    let node = start_node(server.addr, &bdir).await;
    let b = Api::of(&node);
    b.wait_connected().await;
    b.register("bob").await;
    b.join("trap").await;
    // The last message of the sync shown means every action before it
    // was dealt with.
    let shown = eventually("the sync to be stored", || async {
        let (_, v) = b.get("/channels/trap/messages").await;
        let list = v["messages"].as_array()?.clone();
        (list.len() == 2 && list[0]["body"] == "last word").then_some(list)
    })
    .await;
    let carol_seen = &shown[1];
    assert_eq!(carol_seen["body"], "carol's own words", "{carol_seen}");
    assert_eq!(carol_seen["edited_ms"], serde_json::Value::Null);
    assert_eq!(carol_seen["deleted"], false);
    let (_, found) = b.get("/search?q=forged").await;
    assert_eq!(
        found["results"],
        json!([]),
        "refused edits are not searchable"
    );
    let (_, found) = b.get("/search?q=carol").await;
    assert_eq!(
        found["results"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );

    node.shutdown().await;
    fake_host.abort();
    server.stop().await;
    mallory.fake.close().await;
}

/// Alice's node hosting the members-only channel `club`, with its server.
struct Club {
    server: TestServer,
    host: segchat_node::NodeHandle,
    a: Api,
    /// The server's data directory, then the host's.
    dirs: [(tempfile::TempDir, std::path::PathBuf); 2],
}

impl Club {
    async fn start() -> Club {
        let dirs = [tempdir(), tempdir()];
        let server = TestServer::start(&dirs[0].1).await;
        let host = start_node(server.addr, &dirs[1].1).await;
        let a = Api::of(&host);
        a.wait_connected().await;
        a.register("alice").await;
        a.create_channel("club", "members_only").await;
        Club {
            server,
            host,
            a,
            dirs,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_leaves_is_cut_off_and_cannot_write() {
    let Club {
        server,
        host,
        a,
        dirs: _dirs,
    } = Club::start().await;

    // Eve, a bare client: joins, gets a ticket, connects to the host P2P.
    let key = SigningKey::from_bytes(&[5; 32]);
    let eve = client(&key).await;
    let mut t = registered(&eve, server.addr, "eve").await;
    ok(
        &mut t,
        2,
        Request::JoinChannel {
            channel: "club".into(),
        },
    )
    .await;
    let ticket = ticket_for(&mut t, 3, &key).await;
    let host_at = a.node_addr().await;
    // The host learns of the join from the server; retry until admitted.
    let mut p = eventually("eve to be admitted", || async {
        let (p, answer) = peer_connect(&eve, &host_at, &key, &ticket, "club").await;
        admitted_to_write(p, answer)
    })
    .await;

    // While a member, Eve's genuine posts are stored and altered ones are
    // refused, also when they come in one burst with genuine ones (the host
    // checks a burst's signatures together).
    let eve_says = |body: &str| {
        Draft {
            file: None,
            id: Uuid::now_v7(),
            channel: "club",
            author: "eve",
            ts_ms: 1_000,
            body,
            re: None,
        }
        .sign(&key, ticket.clone())
        .expect("sign")
    };
    let mut burst = Vec::new();
    for i in 0..6u32 {
        let mut m = eve_says(&format!("eve {i}"));
        if i == 3 {
            m.body = "eve was never here".into();
        }
        burst.push((10 + i, m));
    }
    for (id, m) in &burst {
        p.feed(Frame::Request {
            id: *id,
            body: peer::Request::Post { message: m.clone() },
        })
        .await
        .expect("post");
    }
    p.flush().await.expect("flush");
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < burst.len() {
        match tokio::time::timeout(common::DEADLINE, p.next()).await {
            Ok(Some(Ok(Frame::Response { id, result }))) => {
                answers.insert(id, result);
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("the host stopped answering posts: {other:?}"),
        }
    }
    for (id, _) in &burst {
        match (&answers[id], *id == 13) {
            (Ok(peer::Reply::Stored { .. }), false) => {}
            (Err(f), true) => {
                assert_eq!(f.status, segchat_proto::Status::BadRequest, "{f}");
                assert!(f.reason.contains("not authentic"), "{f}");
            }
            (other, _) => panic!("post {id}: unexpected {other:?}"),
        }
    }

    // Eve leaves; the host cuts her connection and refuses her from now on.
    ok(
        &mut t,
        4,
        Request::LeaveChannel {
            channel: "club".into(),
        },
    )
    .await;
    let closed = tokio::time::timeout(common::DEADLINE, async {
        loop {
            match p.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the host keeps serving a member who left");
    let (_, answer) = peer_connect(&eve, &host_at, &key, &ticket, "club").await;
    match answer {
        Err(f) => assert_eq!(f.status, segchat_proto::Status::Forbidden, "{f}"),
        other => panic!("a member who left was admitted again: {other:?}"),
    }
    host.shutdown().await;
    server.stop().await;
    eve.close().await;
}

/// The link, if `peer_connect` admitted its member as a writer.
fn admitted_to_write(
    p: PeerLink,
    answer: Result<peer::Reply, segchat_proto::Failure>,
) -> Option<PeerLink> {
    matches!(
        answer,
        Ok(peer::Reply::Connected {
            can_write: true,
            ..
        })
    )
    .then_some(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_stops_reading_is_cut_off_and_the_others_get_everything() {
    let Club {
        server,
        host,
        a,
        dirs,
    } = Club::start().await;
    let adir = dirs[1].1.clone();
    let host_at = a.node_addr().await;

    // Two bare members: Bob reads everything, Eve posts and never reads
    // (QUIC's flow control then stops the host's writes to her once her
    // receive window is full).
    let member = |name: &'static str, seed: u8| async move {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let client = client(&key).await;
        let mut t = registered(&client, server.addr, name).await;
        ok(
            &mut t,
            2,
            Request::JoinChannel {
                channel: "club".into(),
            },
        )
        .await;
        let ticket = ticket_for(&mut t, 3, &key).await;
        (client, t, key, ticket)
    };
    let (bob_client, _bt, bkey, bob_ticket) = member("bob", 7).await;
    let (eve_client, _et, ekey, eve_ticket) = member("eve", 8).await;
    let mut bob = eventually("bob to be admitted", || async {
        let (p, answer) = peer_connect(&bob_client, &host_at, &bkey, &bob_ticket, "club").await;
        answer.is_ok().then_some(p)
    })
    .await;
    let mut eve = eventually("eve to be admitted", || async {
        let (p, answer) = peer_connect(&eve_client, &host_at, &ekey, &eve_ticket, "club").await;
        admitted_to_write(p, answer)
    })
    .await;

    // Bob counts what he gets while Eve floods: every broadcast of hers
    // comes back to her too, and she never reads, so the host's queue for
    // her fills (8 MiB) and she is cut off.
    let bob_reads = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while let Ok(Some(Ok(frame))) =
            tokio::time::timeout(Duration::from_secs(3), bob.next()).await
        {
            if let Frame::Event(peer::Event::Broadcast { seq, message, .. }) = frame {
                seqs.push(seq);
                if message.body == "after" {
                    break;
                }
            }
        }
        seqs
    });
    let body = "x".repeat(segchat_proto::message::MAX_BODY_LEN);
    let mut posted = 0u32;
    for i in 0..6_000u32 {
        let message = Draft {
            file: None,
            id: Uuid::now_v7(),
            channel: "club",
            author: "eve",
            ts_ms: 1_000 + u64::from(i),
            body: &body,
            re: None,
        }
        .sign(&ekey, eve_ticket.clone())
        .expect("sign");
        let sent = tokio::time::timeout(
            Duration::from_secs(5),
            eve.send(Frame::Request {
                id: 10 + i,
                body: peer::Request::Post { message },
            }),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
        posted += 1;
    }
    let log_file = adir.join("logs").join("segchat.log");
    eventually("the host to cut eve off", || async {
        let log = std::fs::read_to_string(&log_file).ok()?;
        log.lines()
            .any(|l| l.contains("] SLOW_CONSUMER |") && l.contains("member=eve"))
            .then_some(())
    })
    .await;
    assert!(posted > 0);

    // The others never waited for her: a post after the flood reaches Bob,
    // and he has every broadcast, in order, none missing.
    a.ok(
        Method::POST,
        "/channels/club/messages",
        Some(json!({"body": "after"})),
    )
    .await;
    let seqs = bob_reads.await.expect("bob's reader");
    let n = seqs.len() as u64;
    assert!(n > 1, "bob got nothing");
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<u64>>(),
        "bob's broadcasts are 1..={n} in order"
    );
    drop(eve);
    host.shutdown().await;
    server.stop().await;
    for c in [bob_client, eve_client] {
        c.close().await;
    }
}
