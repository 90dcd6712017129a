//! The server's half of hosted channels: tickets, the backup, posting
//! while the host is offline, history, host status and notices.

mod common;

use common::{Client, TestServer};
use ed25519_dalek::SigningKey;
use segchat_proto::message::{Draft, Message};
use segchat_proto::ticket::{decode_key, SignedTicket};
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::types::{NodeAddr, Presence, Visibility};
use segchat_proto::Status;
use uuid::Uuid;

/// A signed-in client with a node key and a ticket for it.
struct Author {
    client: Client,
    name: String,
    key: SigningKey,
    ticket: SignedTicket,
}

impl Author {
    async fn register(server: &TestServer, name: &str, seed: u8) -> Author {
        let mut client = Client::connect(server.addr).await;
        client.register(name).await;
        let key = SigningKey::from_bytes(&[seed; 32]);
        let ticket = match client
            .ok(Request::GetTicket {
                node_key: hex::encode(key.verifying_key().as_bytes()),
            })
            .await
        {
            Reply::Ticket(t) => t,
            other => panic!("expected a ticket, got {other:?}"),
        };
        Author {
            client,
            name: name.into(),
            key,
            ticket,
        }
    }

    fn message(&self, channel: &str, ts_ms: u64, body: &str) -> Message {
        Draft {
            file: None,
            id: Uuid::now_v7(),
            channel,
            author: &self.name,
            ts_ms,
            body,
            re: None,
        }
        .sign(&self.key, self.ticket.clone())
        .expect("sign")
    }
}

async fn history(c: &mut Client, channel: &str, after_seq: u64) -> Vec<(u64, String)> {
    match c
        .ok(Request::History {
            channel: channel.into(),
            after_seq,
            limit: 200,
        })
        .await
    {
        Reply::Messages { messages, .. } => messages
            .into_iter()
            .map(|s| (s.seq, s.message.body))
            .collect(),
        other => panic!("expected messages, got {other:?}"),
    }
}

#[tokio::test]
async fn tickets_verify_under_the_welcome_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut c = Client::raw(server.addr).await;
    c.send(segchat_proto::Frame::Hello(segchat_proto::Hello::new(
        segchat_proto::LinkKind::Tracker,
        "t",
    )))
    .await;
    let welcome = match c.recv().await {
        Some(segchat_proto::Frame::Welcome(w)) => w,
        other => panic!("expected welcome, got {other:?}"),
    };
    c.register("tina").await;
    let key = SigningKey::from_bytes(&[4; 32]);
    let ticket = match c
        .ok(Request::GetTicket {
            node_key: hex::encode(key.verifying_key().as_bytes()),
        })
        .await
    {
        Reply::Ticket(t) => t,
        other => panic!("expected a ticket, got {other:?}"),
    };
    let server_key = decode_key(&welcome.server_key).expect("server key");
    ticket
        .verify(&server_key, Some(ticket.ticket.issued_at_ms))
        .expect("ticket verifies");
    assert_eq!(ticket.ticket.username, "tina");
    let bad = c
        .request(Request::GetTicket {
            node_key: "zz".into(),
        })
        .await
        .expect_err("bad key");
    assert_eq!(bad.status, Status::BadRequest);
    server.stop().await;

    // The key survives a restart: old tickets stay valid.
    let server = TestServer::start(dir.path()).await;
    let mut c = Client::raw(server.addr).await;
    c.send(segchat_proto::Frame::Hello(segchat_proto::Hello::new(
        segchat_proto::LinkKind::Tracker,
        "t",
    )))
    .await;
    match c.recv().await {
        Some(segchat_proto::Frame::Welcome(w)) => assert_eq!(w.server_key, welcome.server_key),
        other => panic!("expected welcome, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn backup_is_idempotent_and_history_pages_by_cursor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut host = Author::register(&server, "hank", 1).await;
    host.client.create("ops", Visibility::Public, false).await;
    let batch: Vec<Message> = (0..5)
        .map(|i| host.message("ops", 1_000 + i, &format!("m{i}")))
        .collect();
    let first = match host
        .client
        .ok(Request::Backup {
            channel: "ops".into(),
            messages: batch.clone(),
        })
        .await
    {
        Reply::BackedUp {
            stored,
            server_last_seq,
            ..
        } => (stored, server_last_seq),
        other => panic!("expected backed_up, got {other:?}"),
    };
    assert_eq!(first.0, 5);
    // The same batch again (a retry after a lost ack) stores nothing new.
    match host
        .client
        .ok(Request::Backup {
            channel: "ops".into(),
            messages: batch[2..].to_vec(),
        })
        .await
    {
        Reply::BackedUp {
            stored,
            server_last_seq,
            ..
        } => {
            assert_eq!(stored, 0, "nothing new in a retried batch");
            assert_eq!(server_last_seq, first.1, "the cursor did not move");
        }
        other => panic!("expected backed_up, got {other:?}"),
    }
    let all = history(&mut host.client, "ops", 0).await;
    assert_eq!(
        all.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>(),
        vec!["m0", "m1", "m2", "m3", "m4"]
    );
    let cursor = all[2].0;
    let rest = history(&mut host.client, "ops", cursor).await;
    assert_eq!(
        rest.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>(),
        vec!["m3", "m4"]
    );
    server.stop().await;
}

#[tokio::test]
async fn forged_and_altered_messages_are_refused_and_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut host = Author::register(&server, "mallory", 1).await;
    host.client.create("town", Visibility::Public, false).await;
    let mut victim = Author::register(&server, "victor", 2).await;
    victim
        .client
        .ok(Request::JoinChannel {
            channel: "town".into(),
        })
        .await;
    let genuine = victim.message("town", 5, "I agree");

    // The host alters the body of a genuine message.
    let mut altered = genuine.clone();
    altered.body = "I disagree".into();
    let f = host
        .client
        .request(Request::Backup {
            channel: "town".into(),
            messages: vec![altered],
        })
        .await
        .expect_err("altered body");
    assert_eq!(f.status, Status::BadRequest);
    assert!(f.reason.contains("not authentic"), "{}", f.reason);

    // The host signs a message in the victim's name with its own key.
    let mut forged = host.message("town", 6, "send me money");
    forged.author = "victor".into();
    let f = host
        .client
        .request(Request::Backup {
            channel: "town".into(),
            messages: vec![forged.clone()],
        })
        .await
        .expect_err("forged author");
    assert_eq!(f.status, Status::BadRequest);
    let f = host
        .client
        .request(Request::PostMessage {
            message: forged.into(),
        })
        .await
        .expect_err("posting in someone else's name");
    assert_eq!(f.status, Status::Forbidden);
    assert!(history(&mut victim.client, "town", 0).await.is_empty());

    // The genuine one goes through.
    host.client
        .ok(Request::Backup {
            channel: "town".into(),
            messages: vec![genuine],
        })
        .await;
    assert_eq!(history(&mut victim.client, "town", 0).await.len(), 1);
    drop(host);
    drop(victim);
    server.stop().await;
    let log =
        std::fs::read_to_string(dir.path().join("logs").join(segchat_log::FILE_NAME)).expect("log");
    assert!(
        log.lines()
            .filter(|l| l.contains("] MESSAGE_REJECTED |"))
            .count()
            >= 3,
        "{log}"
    );
}

#[tokio::test]
async fn members_post_through_the_server_and_are_notified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut owner = Author::register(&server, "olga", 1).await;
    owner.client.create("cafe", Visibility::Public, true).await;
    let mut member = Author::register(&server, "max", 2).await;
    member
        .client
        .ok(Request::JoinChannel {
            channel: "cafe".into(),
        })
        .await;
    let mut stranger = Author::register(&server, "stan", 3).await;
    let mut visitor = Client::connect(server.addr).await;
    visitor
        .ok(Request::Visit {
            display_name: "Vi".into(),
        })
        .await;

    let m = member.message("cafe", 10, "hello from max");
    match member
        .client
        .ok(Request::PostMessage {
            message: m.clone().into(),
        })
        .await
    {
        Reply::Stored { id, seq } => {
            assert_eq!(id, m.id);
            assert!(seq > 0);
        }
        other => panic!("expected stored, got {other:?}"),
    }
    // Posting the same message again is harmless.
    member
        .client
        .ok(Request::PostMessage {
            message: m.clone().into(),
        })
        .await;
    let ev = owner
        .client
        .event_where(|e| matches!(e, Event::MessageNotice { .. }))
        .await;
    match ev {
        Event::MessageNotice {
            channel,
            author,
            count,
            id,
            ..
        } => {
            assert_eq!(
                (channel.as_str(), author.as_str(), count, id),
                ("cafe", "max", 1, m.id)
            );
        }
        other => panic!("{other:?}"),
    }
    // Only members write; visitors read.
    let f = stranger
        .client
        .request(Request::PostMessage {
            message: stranger.message("cafe", 11, "hi").into(),
        })
        .await
        .expect_err("not a member");
    assert_eq!(f.status, Status::Forbidden);
    assert_eq!(history(&mut visitor, "cafe", 0).await.len(), 1);

    let big = member.message("cafe", 12, &"x".repeat(5_000));
    let f = member
        .client
        .request(Request::PostMessage {
            message: big.into(),
        })
        .await
        .expect_err("too large");
    assert_eq!(f.status, Status::TooLarge);
    server.stop().await;
}

#[tokio::test]
async fn host_status_follows_the_host_and_its_visibility() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut owner = Author::register(&server, "hera", 1).await;
    owner
        .client
        .create("temple", Visibility::Public, false)
        .await;
    let mut member = Author::register(&server, "zeus", 2).await;
    member
        .client
        .ok(Request::JoinChannel {
            channel: "temple".into(),
        })
        .await;

    let f = member
        .client
        .request(Request::HostChannel {
            channel: "temple".into(),
        })
        .await
        .expect_err("only the owner hosts");
    assert_eq!(f.status, Status::Forbidden);
    let f = owner
        .client
        .request(Request::HostChannel {
            channel: "temple".into(),
        })
        .await
        .expect_err("needs a P2P address first");
    assert_eq!(f.status, Status::BadRequest);

    owner.client.submit(7001).await;
    let owner_node = NodeAddr {
        node_id: owner.client.node_id(),
        addr: "127.0.0.1:7001".parse().expect("addr"),
    };
    owner
        .client
        .ok(Request::HostChannel {
            channel: "temple".into(),
        })
        .await;
    let host_event = |e: &Event| matches!(e, Event::HostStatus { .. });
    let ev = member.client.event_where(host_event).await;
    assert_eq!(
        ev,
        Event::HostStatus {
            channel: "temple".into(),
            host: Some(owner_node.clone())
        }
    );
    match member.client.ok(Request::ListChannels).await {
        Reply::Channels { channels } => {
            assert_eq!(channels[0].host, Some(owner_node.clone()))
        }
        other => panic!("{other:?}"),
    }

    // Invisible owner: the address would give them away, so it is hidden.
    owner
        .client
        .ok(Request::SetStatus {
            status: Presence::Invisible,
        })
        .await;
    let ev = member.client.event_where(host_event).await;
    assert_eq!(
        ev,
        Event::HostStatus {
            channel: "temple".into(),
            host: None
        }
    );
    owner
        .client
        .ok(Request::SetStatus {
            status: Presence::Online,
        })
        .await;
    member.client.event_where(host_event).await;

    // The host goes away.
    drop(owner);
    let ev = member.client.event_where(host_event).await;
    assert_eq!(
        ev,
        Event::HostStatus {
            channel: "temple".into(),
            host: None
        }
    );
    server.stop().await;
}
