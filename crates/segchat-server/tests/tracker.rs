//! The tracker link end to end: a real server on an ephemeral port, real
//! QUIC connections, bare protocol clients.

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::{Client, TestServer};
use ed25519_dalek::SigningKey;
use futures::SinkExt;
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::types::{Presence, Visibility};
use segchat_proto::{Frame, FrameKind, Hello, LinkKind, Status, MAX_FRAME_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn login(name: &str, password: &str) -> Request {
    Request::Login {
        username: name.into(),
        password: password.into(),
    }
}

#[tokio::test]
async fn register_login_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut a = Client::connect(server.addr).await;

    let s = a.register("Alice").await;
    assert_eq!(s.username, "Alice");
    assert_eq!(s.token.len(), 64);

    let dup = a
        .request(Request::Register {
            username: "alice".into(),
            password: "another password".into(),
        })
        .await
        .expect_err("duplicate refused");
    assert_eq!(dup.status, Status::Conflict);

    let short = a
        .request(Request::Register {
            username: "bob".into(),
            password: "short".into(),
        })
        .await
        .expect_err("short password refused");
    assert_eq!(short.status, Status::BadRequest);

    let mut b = Client::connect(server.addr).await;
    let wrong_pw = b
        .request(login("alice", "wrong password"))
        .await
        .expect_err("wrong password");
    let no_user = b
        .request(login("nobody", "wrong password"))
        .await
        .expect_err("unknown user");
    assert_eq!(wrong_pw.status, Status::Unauthorized);
    assert_eq!(
        wrong_pw, no_user,
        "a failed login must not say which half was wrong"
    );

    // Case-insensitive login with the right password works.
    match b.ok(login("ALICE", "correct horse battery")).await {
        Reply::Session(s) => assert_eq!(s.username, "Alice"),
        other => panic!("expected a session, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn repeated_failed_logins_are_rate_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server =
        TestServer::start_with(dir.path(), |c| c.login_failures_per_account_source = 3).await;
    let mut a = Client::connect(server.addr).await;
    a.register("carol").await;
    let mut b = Client::connect(server.addr).await;
    for _ in 0..3 {
        let f = b
            .request(login("carol", "nope nope"))
            .await
            .expect_err("wrong");
        assert_eq!(f.status, Status::Unauthorized);
    }
    let f = b
        .request(login("carol", "correct horse battery"))
        .await
        .expect_err("blocked even with the right password");
    assert_eq!(f.status, Status::RateLimited);
    assert!(f.reason.contains("try again"), "{}", f.reason);
    server.stop().await;
}

#[tokio::test]
async fn visitors_read_only_what_allows_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut owner = Client::connect(server.addr).await;
    owner.register("owner").await;
    owner.create("lobby", Visibility::Public, true).await;
    owner.create("staff", Visibility::MembersOnly, true).await;
    owner.create("closed", Visibility::Public, false).await;
    owner.create("secret", Visibility::Private, false).await;

    let mut v = Client::connect(server.addr).await;
    match v
        .ok(Request::Visit {
            display_name: "Guest".into(),
        })
        .await
    {
        Reply::Session(s) => assert!(s.username.starts_with("visitor:Guest#")),
        other => panic!("expected a session, got {other:?}"),
    }
    assert_eq!(v.channel_names().await, vec!["lobby"]);
    let f = v
        .request(Request::CreateChannel {
            name: "mine".into(),
            visibility: Visibility::Public,
            allow_visitors: true,
        })
        .await
        .expect_err("visitors cannot create");
    assert_eq!(f.status, Status::Forbidden);
    let f = v
        .request(Request::JoinChannel {
            channel: "lobby".into(),
        })
        .await
        .expect_err("visitors cannot join");
    assert_eq!(f.status, Status::Forbidden);
    // They may see who is in a channel they can read, but not in others.
    v.ok(Request::Members {
        channel: "lobby".into(),
    })
    .await;
    let f = v
        .request(Request::Members {
            channel: "staff".into(),
        })
        .await
        .expect_err("members-only is hidden from visitors");
    assert_eq!(f.status, Status::NotFound);

    // A registered stranger sees every channel but the private one.
    let mut s = Client::connect(server.addr).await;
    s.register("stranger").await;
    assert_eq!(s.channel_names().await, vec!["closed", "lobby", "staff"]);
    let f = s
        .request(Request::JoinChannel {
            channel: "secret".into(),
        })
        .await
        .expect_err("private without invitation");
    assert_eq!(f.status, Status::NotFound);
    owner
        .ok(Request::Invite {
            channel: "secret".into(),
            username: "stranger".into(),
        })
        .await;
    match s
        .ok(Request::JoinChannel {
            channel: "secret".into(),
        })
        .await
    {
        Reply::Channel(c) => assert_eq!(c.member_count, 2),
        other => panic!("expected a channel, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn channels_join_leave_and_member_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut a = Client::connect(server.addr).await;
    a.register("ann").await;
    a.create("general", Visibility::Public, false).await;
    let dup = a
        .request(Request::CreateChannel {
            name: "general".into(),
            visibility: Visibility::Private,
            allow_visitors: false,
        })
        .await
        .expect_err("duplicate channel");
    assert_eq!(dup.status, Status::Conflict);
    let bad = a
        .request(Request::CreateChannel {
            name: "Bad Name!".into(),
            visibility: Visibility::Public,
            allow_visitors: false,
        })
        .await
        .expect_err("bad name");
    assert_eq!(bad.status, Status::BadRequest);

    let mut b = Client::connect(server.addr).await;
    b.register("ben").await;
    b.ok(Request::JoinChannel {
        channel: "general".into(),
    })
    .await;
    let ev = a
        .event_where(|e| matches!(e, Event::MemberJoined { .. }))
        .await;
    assert_eq!(
        ev,
        Event::MemberJoined {
            channel: "general".into(),
            username: "ben".into(),
            role: segchat_proto::types::Role::Member
        }
    );
    assert_eq!(a.presence_of("general", "ben").await, Presence::Online);

    let f = a
        .request(Request::LeaveChannel {
            channel: "general".into(),
        })
        .await
        .expect_err("owner cannot leave");
    assert_eq!(f.status, Status::Conflict);
    b.ok(Request::LeaveChannel {
        channel: "general".into(),
    })
    .await;
    a.event_where(|e| matches!(e, Event::MemberLeft { username, .. } if username == "ben"))
        .await;
    let f = b
        .request(Request::Members {
            channel: "nowhere".into(),
        })
        .await
        .expect_err("unknown channel");
    assert_eq!(f.status, Status::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn presence_reaches_channel_mates_and_invisible_looks_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    // These clients send no heartbeats: a TTL well beyond the test's length
    // (several argon2 sign-ins on a loaded machine) keeps their entries.
    let server = TestServer::start_with(dir.path(), |c| c.peer_ttl = Duration::from_secs(60)).await;
    let mut a = Client::connect(server.addr).await;
    a.register("amy").await;
    a.submit(4001).await;
    a.create("room", Visibility::Public, false).await;
    let mut b = Client::connect(server.addr).await;
    b.register("bill").await;
    b.submit(4002).await;
    b.ok(Request::JoinChannel {
        channel: "room".into(),
    })
    .await;
    assert_eq!(a.peer_names(Some("room")).await, vec!["amy", "bill"]);

    b.ok(Request::SetStatus {
        status: Presence::Idle,
    })
    .await;
    let ev = a
        .event_where(|e| matches!(e, Event::Presence { username, .. } if username == "bill"))
        .await;
    assert_eq!(
        ev,
        Event::Presence {
            username: "bill".into(),
            status: Presence::Idle
        }
    );

    match b
        .ok(Request::SetStatus {
            status: Presence::Invisible,
        })
        .await
    {
        Reply::Session(s) => assert_eq!(s.status, Presence::Invisible, "own view"),
        other => panic!("expected a session, got {other:?}"),
    }
    let ev = a
        .event_where(|e| matches!(e, Event::Presence { username, .. } if username == "bill"))
        .await;
    assert_eq!(
        ev,
        Event::Presence {
            username: "bill".into(),
            status: Presence::Offline
        }
    );
    assert_eq!(a.presence_of("room", "bill").await, Presence::Offline);
    assert_eq!(b.presence_of("room", "bill").await, Presence::Invisible);
    assert_eq!(
        a.peer_names(Some("room")).await,
        vec!["amy"],
        "an invisible user is not listed to others"
    );
    assert_eq!(a.peer_names(None).await, vec!["amy"]);
    assert!(b.peer_names(None).await.contains(&"bill".to_owned()));

    // An invisible user who disconnects causes no event: to others they
    // were already offline, so nothing may hint they had been online.
    drop(b);
    let mut c = Client::connect(server.addr).await;
    c.register("cat").await;
    c.ok(Request::JoinChannel {
        channel: "room".into(),
    })
    .await;
    a.event_where(|e| matches!(e, Event::MemberJoined { username, .. } if username == "cat"))
        .await;
    assert!(
        !a.events
            .iter()
            .any(|e| matches!(e, Event::Presence { username, .. } if username == "bill")),
        "no presence event about bill after he left while invisible: {:?}",
        a.events
    );

    // Coming back online is announced.
    let mut b2 = Client::connect(server.addr).await;
    b2.ok(login("bill", "correct horse battery")).await;
    b2.ok(Request::SetStatus {
        status: Presence::Online,
    })
    .await;
    let ev = a
        .event_where(|e| matches!(e, Event::Presence { username, .. } if username == "bill"))
        .await;
    assert_eq!(
        ev,
        Event::Presence {
            username: "bill".into(),
            status: Presence::Online
        }
    );
    server.stop().await;
}

#[tokio::test]
async fn a_silent_peer_leaves_the_list_after_the_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut watcher = Client::connect(server.addr).await;
    watcher.register("watcher").await;
    watcher.submit(5001).await;

    let mut silent = Client::connect(server.addr).await;
    silent.register("silent").await;
    silent.submit(5002).await;
    assert_eq!(watcher.peer_names(None).await, vec!["silent", "watcher"]);

    // The watcher keeps heart-beating; the silent one says nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        watcher.ok(Request::Heartbeat).await;
        if watcher.peer_names(None).await == vec!["watcher"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "silent peer still listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its connection was closed too, so it shows offline.
    assert_eq!(silent.recv().await, None);
    server.stop().await;
}

#[tokio::test]
async fn same_user_on_two_nodes_gets_two_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut one = Client::connect(server.addr).await;
    one.register("dora").await;
    one.submit(6001).await;
    let mut two = Client::connect(server.addr).await;
    two.ok(login("dora", "correct horse battery")).await;
    two.submit(6002).await;
    assert_eq!(one.peer_names(None).await, vec!["dora", "dora"]);
    // Resubmitting the same (address, user, session) replaces, not adds.
    two.submit(6002).await;
    assert_eq!(one.peer_names(None).await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn garbage_and_oversized_frames_close_only_that_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut good = Client::connect(server.addr).await;
    good.register("steady").await;

    // Garbage before the handshake, on the QUIC stream of a fresh
    // connection.
    let mut raw = Client::raw(server.addr).await;
    let stream = raw.framed.get_mut();
    stream
        .write_all(b"\x00\x00\x00\x05\xeeHELLO WORLD")
        .await
        .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(common::WAIT, stream.read_to_end(&mut buf))
        .await
        .expect("closed in time")
        .expect("read");
    let mut bytes = BytesMut::from(&buf[..]);
    match common::TFrame::decode(&mut bytes, MAX_FRAME_LEN) {
        Ok(Some(Frame::Error(f))) => assert_eq!(f.status, Status::BadRequest),
        other => panic!("expected an error frame, got {other:?}"),
    }

    // An oversized frame after the handshake.
    let mut big = Client::connect(server.addr).await;
    let mut header = BytesMut::new();
    header.put_u32(64 * 1024 * 1024);
    header.put_u8(FrameKind::Request as u8);
    big.framed
        .get_mut()
        .write_all(&header)
        .await
        .expect("write");
    match big.recv().await {
        Some(Frame::Error(f)) => {
            assert_eq!(f.status, Status::TooLarge);
            assert!(f.reason.contains("larger than the limit"), "{}", f.reason);
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
    assert_eq!(big.recv().await, None, "connection closed");

    // A well-framed request with an unknown op gets BAD_REQUEST and the
    // connection stays usable.
    let mut odd = Client::connect(server.addr).await;
    let body = br#"{"op":"teleport"}"#;
    let mut frame = BytesMut::new();
    frame.put_u32(1 + 4 + body.len() as u32);
    frame.put_u8(FrameKind::Request as u8);
    frame.put_u32(99);
    frame.put_slice(body);
    odd.framed.get_mut().write_all(&frame).await.expect("write");
    match odd.recv().await {
        Some(Frame::Response {
            id: 99,
            result: Err(f),
        }) => {
            assert_eq!(f.status, Status::BadRequest)
        }
        other => panic!("expected a BAD_REQUEST response, got {other:?}"),
    }
    odd.register("odd-one").await;

    // A second hello is a protocol violation.
    odd.framed
        .send(Frame::Hello(Hello::new(LinkKind::Tracker, "again")))
        .await
        .expect("send");
    assert!(matches!(odd.recv().await, Some(Frame::Error(_))));

    // Meanwhile the well-behaved client never noticed.
    assert_eq!(good.channel_names().await, Vec::<String>::new());
    good.create("still-here", Visibility::Public, false).await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_protocol_version_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut c = Client::raw(server.addr).await;
    let mut hello = Hello::new(LinkKind::Tracker, "future");
    hello.version = 99;
    c.send(Frame::Hello(hello)).await;
    match c.recv().await {
        Some(Frame::Error(f)) => {
            assert_eq!(f.status, Status::UnsupportedVersion);
            assert!(
                f.reason.contains("99") && f.reason.contains("version 1"),
                "{}",
                f.reason
            );
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
    assert_eq!(c.recv().await, None);
    // A peer-link hello is refused too: this is not a node.
    let mut p = Client::raw(server.addr).await;
    p.send(Frame::Hello(Hello::new(LinkKind::Peer, "lost")))
        .await;
    assert!(matches!(p.recv().await, Some(Frame::Error(f)) if f.status == Status::BadRequest));
    server.stop().await;
}

#[tokio::test]
async fn requests_before_sign_in_are_unauthorized() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut c = Client::connect(server.addr).await;
    for req in [
        Request::ListChannels,
        Request::GetList {
            channel: None,
            users: Vec::new(),
        },
        Request::Whoami,
        Request::Logout,
    ] {
        let f = c.request(req).await.expect_err("needs sign-in");
        assert_eq!(f.status, Status::Unauthorized);
    }
    server.stop().await;
}

#[tokio::test]
async fn state_survives_a_restart_and_sessions_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut a = Client::connect(server.addr).await;
    let session = a.register("eve").await;
    a.create("diary", Visibility::Private, false).await;
    a.ok(Request::SetStatus {
        status: Presence::Idle,
    })
    .await;
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    let mut a = Client::connect(server.addr).await;
    match a
        .ok(Request::Resume {
            token: session.token.clone(),
        })
        .await
    {
        Reply::Session(s) => {
            assert_eq!(s.username, "eve");
            assert_eq!(s.session_id, session.session_id);
            assert_eq!(s.status, Presence::Idle, "chosen status is kept");
        }
        other => panic!("expected a session, got {other:?}"),
    }
    assert_eq!(a.channel_names().await, vec!["diary"]);

    a.ok(Request::Logout).await;
    let mut again = Client::connect(server.addr).await;
    let f = again
        .request(Request::Resume {
            token: session.token,
        })
        .await
        .expect_err("a logged-out session cannot be resumed");
    assert_eq!(f.status, Status::Unauthorized);
    server.stop().await;
}

#[tokio::test]
async fn logging_out_signs_out_every_connection_of_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(dir.path(), |c| {
        c.peer_ttl = Duration::from_secs(30);
    })
    .await;
    let mut a = Client::connect(server.addr).await;
    let session = a.register("ivy").await;
    // The same session on a second connection: another node of ivy's, or
    // whoever stole the token. Logging out is how ivy ends both.
    let mut b = Client::connect(server.addr).await;
    b.ok(Request::Resume {
        token: session.token.clone(),
    })
    .await;
    b.submit(4100).await;
    let mut c = Client::connect(server.addr).await;
    c.register("jude").await;
    assert!(c.peer_names(None).await.contains(&"ivy".to_string()));

    a.ok(Request::Logout).await;
    b.event_where(|e| matches!(e, Event::SessionEnded { .. }))
        .await;
    // A client that ignores the event is a stranger all the same.
    for req in [Request::Whoami, Request::ListChannels] {
        let f = b.request(req).await.expect_err("signed out");
        assert_eq!(f.status, Status::Unauthorized);
    }
    assert!(!c.peer_names(None).await.contains(&"ivy".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn a_connection_changing_its_status_in_a_loop_is_slowed_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(dir.path(), |c| {
        c.changes_burst = 5;
        c.changes_per_second = 4;
    })
    .await;
    let mut a = Client::connect(server.addr).await;
    a.register("nell").await;
    let mut accepted = 0;
    let refused = loop {
        match a
            .request(Request::SetActivity {
                idle: accepted % 2 == 0,
            })
            .await
        {
            Ok(_) => accepted += 1,
            Err(f) => break f,
        }
        assert!(accepted <= 6, "never slowed down");
    };
    assert!(accepted >= 5, "the burst is allowed: {accepted}");
    assert_eq!(refused.status, Status::RateLimited);
    assert!(
        refused.reason.contains("try again in"),
        "{}",
        refused.reason
    );
    for req in [
        Request::JoinChannel {
            channel: "x".into(),
        },
        Request::SetStatus {
            status: Presence::Idle,
        },
    ] {
        let f = a.request(req).await.expect_err("still throttled");
        assert_eq!(f.status, Status::RateLimited);
    }
    // What others are not told of is not counted.
    a.channel_names().await;
    a.ok(Request::Whoami).await;
    // The allowance comes back at the rate.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.ok(Request::SetActivity { idle: false }).await;
    server.stop().await;
}

#[tokio::test]
async fn system_log_records_connections_and_logins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut a = Client::connect(server.addr).await;
    a.register("frank").await;
    let _ = a.request(login("frank", "bad password!")).await;
    a.create("news", Visibility::Public, true).await;
    drop(a);
    server.stop().await;
    let text = std::fs::read_to_string(dir.path().join("logs").join(segchat_log::FILE_NAME))
        .expect("log file");
    for kind in [
        "SERVER_STARTED",
        "CONNECTION_ESTABLISHED",
        "REGISTER",
        "LOGIN_FAILED",
        "CHANNEL_CREATED",
        "PRESENCE_CHANGED",
        "CONNECTION_CLOSED",
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("] {kind} | Source: "))),
            "no {kind} record in:\n{text}"
        );
    }
    assert!(text.is_ascii());
    assert!(
        !text.contains("correct horse"),
        "passwords never reach the log"
    );
}

#[tokio::test]
async fn a_peer_entry_names_the_key_its_connection_authenticated_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(dir.path(), |c| c.peer_ttl = Duration::from_secs(60)).await;
    let key = SigningKey::from_bytes(&[42; 32]);
    let mut a = Client::connect_as(server.addr, key.clone()).await;
    a.register("gina").await;
    let listed = match a
        .ok(Request::SubmitInfo {
            p2p_addr: "127.0.0.1:7100".parse().expect("addr"),
            status: None,
        })
        .await
    {
        Reply::Listed(p) => p,
        other => panic!("expected listed, got {other:?}"),
    };
    let want = hex::encode(key.verifying_key().as_bytes());
    assert_eq!(listed.node_id, want);

    let mut b = Client::connect(server.addr).await;
    b.register("hugo").await;
    b.submit(7101).await;
    let peers = match b
        .ok(Request::GetList {
            channel: None,
            users: Vec::new(),
        })
        .await
    {
        Reply::Peers { peers } => peers,
        other => panic!("expected peers, got {other:?}"),
    };
    let gina = peers
        .iter()
        .find(|p| p.username == "gina")
        .expect("gina is listed");
    assert_eq!(gina.node_id, want, "the key gina's endpoint was bound with");
    assert_eq!(gina.p2p_addr, "127.0.0.1:7100".parse().expect("addr"));
    let hugo = peers
        .iter()
        .find(|p| p.username == "hugo")
        .expect("hugo is listed");
    assert_eq!(hugo.node_id, b.node_id());
    assert_ne!(hugo.node_id, want);

    // Asked by name (any case), only those users' nodes; a name nobody
    // has is left out; names and a channel together are refused.
    let named = match b
        .ok(Request::GetList {
            channel: None,
            users: vec!["GINA".into(), "nobody-here".into()],
        })
        .await
    {
        Reply::Peers { peers } => peers,
        other => panic!("expected peers, got {other:?}"),
    };
    let names: Vec<&str> = named.iter().map(|p| p.username.as_str()).collect();
    assert_eq!(names, ["gina"]);
    let both = b
        .request(Request::GetList {
            channel: Some("general".into()),
            users: vec!["gina".into()],
        })
        .await;
    assert!(
        matches!(both, Err(ref f) if f.status == Status::BadRequest),
        "{both:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn reach_tells_the_dialled_node_who_dials_and_tells_the_dialler_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let stranger = hex::encode(common::random_key().verifying_key().as_bytes());
    let mut a = Client::connect(server.addr).await;
    let f = a
        .request(Request::Reach {
            node_id: stranger.clone(),
        })
        .await
        .expect_err("signed out");
    assert_eq!(f.status, Status::Unauthorized);
    a.register("fay").await;
    let mut b = Client::connect(server.addr).await;
    b.register("gus").await;

    let f = a
        .request(Request::Reach {
            node_id: "not a key".into(),
        })
        .await
        .expect_err("bad key");
    assert_eq!(f.status, Status::BadRequest);

    // The dialled node is told, with the dialler's key.
    assert_eq!(
        a.ok(Request::Reach {
            node_id: b.node_id()
        })
        .await,
        Reply::Done
    );
    match b
        .event_where(|e| matches!(e, Event::RelayWanted { .. }))
        .await
    {
        Event::RelayWanted { node_id } => assert_eq!(node_id, a.node_id()),
        _ => unreachable!(),
    }
    // A key nobody holds gets the same answer: reach says nothing about
    // who is online.
    assert_eq!(
        a.ok(Request::Reach { node_id: stranger }).await,
        Reply::Done
    );

    // Each connection has an allowance of its own.
    let mut c = Client::connect(server.addr).await;
    c.register("hal").await;
    let mut refused = None;
    for i in 0..(segchat_proto::tracker::REACH_BURST * 3) {
        match c
            .request(Request::Reach {
                node_id: b.node_id(),
            })
            .await
        {
            Ok(_) => {}
            Err(f) => {
                assert_eq!(f.status, Status::RateLimited, "{f}");
                refused = Some(i);
                break;
            }
        }
    }
    let refused = refused.expect("reach is rate-limited");
    assert!(
        refused >= segchat_proto::tracker::REACH_BURST,
        "refused after only {refused}"
    );
    server.stop().await;
}
