//! Livestream coordination on the tracker link: who may start a stream,
//! who hears of it, and how it ends (stop, disconnect, expiry).

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestServer};
use segchat_proto::stream::{Codec, StreamInfo};
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::types::Visibility;
use segchat_proto::Status;

fn start(channel: &str) -> Request {
    Request::StartStream {
        channel: channel.into(),
        width: 640,
        height: 480,
        fps: 30,
        codec: Codec::Mjpeg,
    }
}

fn started(e: &Event) -> Option<StreamInfo> {
    match e {
        Event::StreamStarted { stream } => Some(stream.clone()),
        _ => None,
    }
}

async fn stopped(c: &mut Client, id: u64) -> String {
    match c
        .event_where(|e| matches!(e, Event::StreamStopped { stream_id, .. } if *stream_id == id))
        .await
    {
        Event::StreamStopped { reason, .. } => reason,
        _ => unreachable!(),
    }
}

async fn streams(c: &mut Client, channel: Option<&str>) -> Vec<u64> {
    match c
        .ok(Request::ListStreams {
            channel: channel.map(str::to_owned),
        })
        .await
    {
        Reply::Streams { streams } => streams.into_iter().map(|s| s.stream_id).collect(),
        other => panic!("expected streams, got {other:?}"),
    }
}

#[tokio::test]
async fn members_stream_readers_hear_of_it_and_visitors_only_watch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(dir.path(), |c| {
        c.heartbeat = Duration::from_millis(200);
        c.peer_ttl = Duration::from_secs(3);
    })
    .await;
    let mut alice = Client::connect(server.addr).await;
    alice.register("alice").await;
    alice.submit(4000).await;
    alice.create("live", Visibility::Public, true).await;
    alice.create("club", Visibility::MembersOnly, false).await;
    let mut bob = Client::connect(server.addr).await;
    bob.register("bob").await;
    bob.ok(Request::JoinChannel {
        channel: "live".into(),
    })
    .await;
    let mut carol = Client::connect(server.addr).await;
    carol.register("carol").await;
    carol.submit(4002).await;
    let mut visitor = Client::connect(server.addr).await;
    visitor
        .ok(Request::Visit {
            display_name: "guest".into(),
        })
        .await;
    visitor.submit(4003).await;

    // Visitors and non-members may not stream; nobody streams unlisted.
    let refused = visitor.request(start("live")).await.expect_err("visitor");
    assert_eq!(refused.status, Status::Forbidden, "{refused}");
    let refused = carol
        .request(start("live"))
        .await
        .expect_err("not a member");
    assert_eq!(refused.status, Status::Forbidden, "{refused}");
    let refused = bob
        .request(start("live"))
        .await
        .expect_err("no submit_info");
    assert_eq!(refused.status, Status::BadRequest, "{refused}");
    let refused = alice
        .request(Request::StartStream {
            channel: "live".into(),
            width: 640,
            height: 480,
            fps: 0,
            codec: Codec::Mjpeg,
        })
        .await
        .expect_err("bad fps");
    assert_eq!(refused.status, Status::BadRequest);

    let info = match alice.ok(start("live")).await {
        Reply::Stream(s) => s,
        other => panic!("expected a stream, got {other:?}"),
    };
    assert_eq!(info.streamer, "alice");
    assert_eq!(info.p2p_addr, "127.0.0.1:4000".parse().expect("addr"));
    assert_eq!(
        info.node_id,
        alice.node_id(),
        "the key of alice's connection"
    );
    let again = alice
        .request(start("live"))
        .await
        .expect_err("one per channel");
    assert_eq!(again.status, Status::Conflict);

    // Members, public readers and admitted visitors all hear of it.
    for c in [&mut bob, &mut carol, &mut visitor] {
        let e = c.event_where(|e| started(e).is_some()).await;
        assert_eq!(started(&e), Some(info.clone()));
        assert_eq!(streams(c, Some("live")).await, vec![info.stream_id]);
    }

    // A members-only stream stays hidden from strangers.
    let club = match alice.ok(start("club")).await {
        Reply::Stream(s) => s,
        other => panic!("expected a stream, got {other:?}"),
    };
    assert_eq!(streams(&mut carol, None).await, vec![info.stream_id]);
    assert_eq!(
        streams(&mut alice, None).await,
        vec![info.stream_id, club.stream_id]
    );

    alice
        .ok(Request::StopStream {
            stream_id: info.stream_id,
        })
        .await;
    assert_eq!(stopped(&mut bob, info.stream_id).await, "stopped");
    assert_eq!(stopped(&mut visitor, info.stream_id).await, "stopped");
    assert!(streams(&mut bob, None).await.is_empty());
    let gone = alice
        .request(Request::StopStream {
            stream_id: info.stream_id,
        })
        .await
        .expect_err("already stopped");
    assert_eq!(gone.status, Status::NotFound);

    // The streamer's connection closes: its streams end at once.
    let info = match alice.ok(start("live")).await {
        Reply::Stream(s) => s,
        other => panic!("expected a stream, got {other:?}"),
    };
    drop(alice);
    assert_eq!(
        stopped(&mut bob, info.stream_id).await,
        "streamer_disconnected"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_silent_streamer_expires_within_the_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ttl = Duration::from_millis(800);
    let server = TestServer::start_with(dir.path(), |c| {
        c.heartbeat = Duration::from_millis(200);
        c.peer_ttl = ttl;
    })
    .await;
    let mut alice = Client::connect(server.addr).await;
    alice.register("alice").await;
    alice.submit(4000).await;
    alice.create("live", Visibility::Public, false).await;
    let mut bob = Client::connect(server.addr).await;
    bob.register("bob").await;
    let info = match alice.ok(start("live")).await {
        Reply::Stream(s) => s,
        other => panic!("expected a stream, got {other:?}"),
    };
    let since = Instant::now();
    // Alice keeps her socket open but stops heartbeating.
    let reason = stopped(&mut bob, info.stream_id).await;
    assert_eq!(reason, "streamer_expired");
    assert!(
        since.elapsed() < ttl + Duration::from_secs(2),
        "ended after {:?}",
        since.elapsed()
    );
    assert!(streams(&mut bob, None).await.is_empty());
    drop(alice);
    server.stop().await;
}

#[tokio::test]
async fn an_invisible_user_cannot_stream_and_going_invisible_ends_their_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut alice = Client::connect(server.addr).await;
    alice.register("alice").await;
    alice.submit(4000).await;
    alice.create("live", Visibility::Public, false).await;
    let mut bob = Client::connect(server.addr).await;
    bob.register("bob").await;
    bob.ok(Request::JoinChannel {
        channel: "live".into(),
    })
    .await;

    // Streaming, then invisible: the stream ends as if her node had gone,
    // and nobody can list it any more.
    let id = match alice.ok(start("live")).await {
        Reply::Stream(s) => s.stream_id,
        other => panic!("expected a stream, got {other:?}"),
    };
    assert_eq!(streams(&mut bob, Some("live")).await, vec![id]);
    alice
        .ok(Request::SetStatus {
            status: segchat_proto::types::Presence::Invisible,
        })
        .await;
    assert_eq!(stopped(&mut bob, id).await, "streamer_disconnected");
    assert!(streams(&mut bob, None).await.is_empty());

    // Invisible, she cannot start one: it would show her name and address.
    bob.events.clear();
    match alice.request(start("live")).await {
        Err(f) => assert_eq!(f.status, Status::Conflict, "{f}"),
        Ok(r) => panic!("an invisible user started a stream: {r:?}"),
    }
    assert!(streams(&mut bob, None).await.is_empty());
    assert!(
        !bob.events
            .iter()
            .any(|e| matches!(e, Event::StreamStarted { stream } if stream.streamer == "alice")),
        "bob heard of a stream by an invisible user"
    );
    server.stop().await;
}
