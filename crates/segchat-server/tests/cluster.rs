//! Two server instances in this process on one PostgreSQL
//! (`segchat-pgtest`) with a private `nats-server` between them, and bare
//! protocol clients: what one instance does to a session holds on the
//! other, and with NATS gone each instance carries on alone until it is
//! back.

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestServer, WAIT};
use segchat_pgtest::nats::Nats;
use segchat_proto::tracker::{Event, Request};
use segchat_proto::types::{Presence, Visibility};
use segchat_proto::Status;
use segchat_server::ServerConfig;

/// Two instances of one server on a fresh database, sharing one key
/// file (nodes pin the key, tickets carry it), linked by `nats` when
/// given, each also set up by `tweak`.
async fn two_instances(
    nats: Option<&Nats>,
    tweak: impl Fn(&mut ServerConfig) + Clone + Send + 'static,
) -> (TestServer, TestServer, [tempfile::TempDir; 2]) {
    let database = segchat_pgtest::fresh_database().await;
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let key = dirs[0].path().join("server.key");
    segchat_server::key_fingerprint(&key).expect("make the server key");
    let nats = nats.map(|n| n.url.clone());
    let mut started = Vec::new();
    for dir in &dirs {
        let (database, key, nats, tweak) =
            (database.clone(), key.clone(), nats.clone(), tweak.clone());
        let server = TestServer::start_with(dir.path(), move |c| {
            c.database_url = Some(database);
            c.key_file = key;
            c.nats_url = nats;
            tweak(c);
        })
        .await;
        started.push(server);
    }
    let second = started.pop().expect("two");
    let first = started.pop().expect("two");
    (first, second, dirs)
}

#[tokio::test]
async fn a_logout_through_one_instance_signs_the_session_out_on_the_other() {
    let nats = Nats::start().expect("nats-server (scripts/test.sh installs it)");
    // The bare clients do not heartbeat: their peer entries must outlast
    // the test.
    let (first, second, _dirs) = two_instances(Some(&nats), |c| {
        c.peer_ttl = Duration::from_secs(60);
    })
    .await;

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

/// `user`'s presence in `channel` as `asker` is told it, once it is
/// `want`, within `within`.
async fn presence_becomes(
    asker: &mut Client,
    channel: &str,
    user: &str,
    want: Presence,
    within: Duration,
) {
    let start = Instant::now();
    loop {
        let seen = asker.presence_of(channel, user).await;
        if seen == want {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{user} still {seen:?}, not {want:?}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_nats_down_each_instance_serves_its_own_and_they_meet_again_after() {
    let mut nats = Nats::start().expect("nats-server (scripts/test.sh installs it)");
    let ttl = Duration::from_millis(1500);
    let (first, second, _dirs) = two_instances(Some(&nats), move |c| c.peer_ttl = ttl).await;
    let mut a = Client::connect(first.addr).await;
    a.register("ann").await;
    a.create("lobby", Visibility::Public, false).await;
    let mut b = Client::connect(second.addr).await;
    b.register("bob").await;
    b.ok(Request::JoinChannel {
        channel: "lobby".into(),
    })
    .await;
    presence_becomes(&mut a, "lobby", "bob", Presence::Online, WAIT).await;

    // The link between the instances is cut. Neither knows whether the
    // other's users are still there: after the TTL they are shown
    // offline, not online forever.
    nats.kill();
    presence_becomes(&mut a, "lobby", "bob", Presence::Offline, ttl * 4).await;
    presence_becomes(&mut b, "lobby", "ann", Presence::Offline, ttl * 4).await;
    // Each instance still serves its own nodes.
    assert_eq!(a.channel_names().await, vec!["lobby"]);
    a.ok(Request::SetStatus {
        status: Presence::Idle,
    })
    .await;
    assert_eq!(b.channel_names().await, vec!["lobby"]);

    // NATS back: the instances reconnect and each tells the other all it
    // holds again, changes made meanwhile included.
    nats.restart().expect("nats-server again");
    presence_becomes(
        &mut b,
        "lobby",
        "ann",
        Presence::Idle,
        Duration::from_secs(20),
    )
    .await;
    presence_becomes(
        &mut a,
        "lobby",
        "bob",
        Presence::Online,
        Duration::from_secs(20),
    )
    .await;
    drop((a, b));
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_logout_whose_news_never_came_still_signs_the_session_out_on_the_other_instance() {
    // No NATS at all: the second instance hears nothing of the logout,
    // and finds out by checking the sessions its connections hold.
    let (first, second, _dirs) = two_instances(None, |c| {
        c.peer_ttl = Duration::from_secs(60);
        c.session_check = Duration::from_millis(200);
    })
    .await;
    let mut a = Client::connect(first.addr).await;
    let session = a.register("max").await;
    let mut b = Client::connect(second.addr).await;
    b.ok(Request::Resume {
        token: session.token.clone(),
    })
    .await;
    a.ok(Request::Logout).await;
    let ended = Instant::now();
    b.event_where(|e| matches!(e, Event::SessionEnded { .. }))
        .await;
    assert!(ended.elapsed() < WAIT, "not within the check period");
    let f = b.request(Request::Whoami).await.expect_err("signed out");
    assert_eq!(f.status, Status::Unauthorized);
    drop((a, b));
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_dm_sent_through_one_instance_reaches_the_device_on_the_other_and_friends_see_presence() {
    use segchat_proto::devices::DeviceKeys;
    use segchat_proto::friends::FriendAction;
    use segchat_proto::mailbox::Envelope;
    use segchat_proto::tracker::Reply;

    let nats = Nats::start().expect("nats-server (scripts/test.sh installs it)");
    let (first, second, _dirs) = two_instances(Some(&nats), |c| {
        c.peer_ttl = Duration::from_secs(60);
    })
    .await;
    let mut ann = Client::connect(first.addr).await;
    ann.register("ann").await;
    ann.submit(4300).await;
    let mut bob = Client::connect(second.addr).await;
    bob.register("bob").await;
    bob.submit(4301).await;
    bob.ok(Request::PublishKeys {
        device: DeviceKeys::sign(&bob.key, [1; 32], [2; 32]),
        one_time_keys: Vec::new(),
    })
    .await;
    let start = Instant::now();
    while !ann.peer_names(None).await.contains(&"bob".to_string()) {
        assert!(start.elapsed() < WAIT, "the instances never saw each other");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let envelope = Envelope {
        id: uuid::Uuid::from_u128(1),
        to: "bob".into(),
        to_node: bob.node_id(),
        body: "sealed".into(),
    };
    let sent = ann
        .ok(Request::SendDm {
            envelopes: vec![envelope],
        })
        .await;
    assert!(
        matches!(sent, Reply::DmStored { stored: 1, .. }),
        "{sent:?}"
    );
    match bob.event_where(|e| matches!(e, Event::Dm(_))).await {
        Event::Dm(d) => assert_eq!((d.from.as_str(), d.body.as_str()), ("ann", "sealed")),
        _ => unreachable!(),
    }

    // Friends on different instances: the request arrives, and presence
    // follows without a channel in common.
    ann.ok(Request::Relate {
        username: "bob".into(),
        action: FriendAction::Request,
    })
    .await;
    bob.event_where(|e| matches!(e, Event::Relation(r) if r.username == "ann"))
        .await;
    bob.ok(Request::Relate {
        username: "ann".into(),
        action: FriendAction::Accept,
    })
    .await;
    bob.ok(Request::SetStatus {
        status: Presence::Idle,
    })
    .await;
    ann.event_where(
        |e| matches!(e, Event::Presence { username, status: Presence::Idle } if username == "bob"),
    )
    .await;
    drop((ann, bob));
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn reach_through_one_instance_wakes_the_node_on_the_other() {
    let nats = Nats::start().expect("nats-server (scripts/test.sh installs it)");
    let (first, second, _dirs) = two_instances(Some(&nats), |c| {
        c.peer_ttl = Duration::from_secs(60);
    })
    .await;
    let mut dialler = Client::connect(first.addr).await;
    dialler.register("dana").await;
    let mut dialled = Client::connect(second.addr).await;
    dialled.register("eli").await;
    dialled.submit(4300).await;
    let start = Instant::now();
    while !dialler.peer_names(None).await.contains(&"eli".to_string()) {
        assert!(start.elapsed() < WAIT, "the instances never saw each other");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    dialler
        .ok(Request::Reach {
            node_id: dialled.node_id(),
        })
        .await;
    let want = dialler.node_id();
    match dialled
        .event_where(|e| matches!(e, Event::RelayWanted { .. }))
        .await
    {
        Event::RelayWanted { node_id } => assert_eq!(node_id, want, "named the dialler"),
        _ => unreachable!(),
    }
    drop((dialler, dialled));
    first.stop().await;
    second.stop().await;
}
