//! Livestreams end to end: a real server, real nodes, frames as QUIC
//! datagrams over real UDP on loopback, everything driven through the
//! nodes' HTTP APIs.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, start_node, tempdir, Api, TestServer, DEADLINE};
use reqwest::{Method, StatusCode};
use segchat_node::stream::LossHook;
use segchat_node::{Node, NodeConfig, NodeHandle};
use segchat_proto::stream::{encode, DatagramKind, Header, SessionKey};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

async fn start_lossy_node(server: std::net::SocketAddr, dir: &std::path::Path) -> NodeHandle {
    common::start_node_with(server, dir, |c| {
        c.stream_loss = Some(LossHook {
            percent: 10,
            seed: 42,
        })
    })
    .await
}

/// Starts a test-pattern stream; returns its id.
async fn start_stream(api: &Api, channel: &str, fps: u8) -> u64 {
    let (status, v) = api
        .post(
            "/streams",
            json!({"channel": channel, "source": "test_pattern", "width": 320, "height": 240, "fps": fps}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["stream"]["stream_id"].as_u64().expect("id")
}

async fn watching(api: &Api, id: u64) -> Value {
    let (status, v) = api.get(&format!("/streams/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["watching"].clone()
}

/// Waits until a viewer has shown at least `n` frames; returns its view.
async fn frames_at_least(api: &Api, id: u64, n: u64) -> Value {
    eventually(&format!("{n} frames"), || async {
        let w = watching(api, id).await;
        (w["report"]["frames"].as_u64().unwrap_or(0) >= n).then_some(w)
    })
    .await
}

/// A WebSocket request for `/streams/{id}/ws` with the bearer token.
fn ws_request(api: &Api, id: u64) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!(
        "{}/streams/{id}/ws",
        api.base.replacen("http://", "ws://", 1)
    );
    let mut req = url.into_client_request().expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", api.token).parse().expect("header"),
    );
    req
}

/// Reads `/streams/{id}/ws` until it has had statistics and three frames.
async fn frames_over_websocket(api: &Api, id: u64) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(api, id))
        .await
        .expect("stream websocket");
    let (mut stats, mut frames) = (0, 0);
    tokio::time::timeout(DEADLINE, async {
        while let Some(msg) = ws.next().await {
            match msg.expect("message") {
                Message::Text(text) => {
                    let v: Value = serde_json::from_str(&text).expect("stats are JSON");
                    assert_eq!(v["watching"]["stream"]["stream_id"], id, "{v}");
                    stats += 1;
                }
                Message::Binary(jpeg) => {
                    assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
                    frames += 1;
                }
                _ => {}
            }
            if stats >= 1 && frames >= 3 {
                return;
            }
        }
        panic!("the stream websocket closed early");
    })
    .await
    .expect("stats and frames over the websocket");
    // Neither streamed nor watched here: refused before the upgrade.
    match tokio_tungstenite::connect_async(ws_request(api, 999_999)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 404);
        }
        other => panic!("expected a 404, got {other:?}"),
    }
}

async fn setup(server: &TestServer, nodes: [&NodeHandle; 3]) -> (Api, Api, Api) {
    let (a, b, c) = (Api::of(nodes[0]), Api::of(nodes[1]), Api::of(nodes[2]));
    for api in [&a, &b, &c] {
        api.wait_connected().await;
    }
    let _ = server;
    a.register("alice").await;
    a.ok(
        Method::POST,
        "/channels",
        Some(json!({"name": "live", "visibility": "public", "allow_visitors": true})),
    )
    .await;
    b.register("bob").await;
    b.join("live").await;
    c.ok(
        Method::POST,
        "/session/visit",
        Some(json!({"display_name": "guest"})),
    )
    .await;
    (a, b, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_pattern_reaches_two_viewers_and_late_joiners_see_frames_at_once() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let (_c, cdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let alice = start_node(server.addr, &adir).await;
    let bob = start_node(server.addr, &bdir).await;
    let guest = start_node(server.addr, &cdir).await;
    let (a, b, c) = setup(&server, [&alice, &bob, &guest]).await;

    // A visitor may not stream.
    let (status, v) = c
        .post(
            "/streams",
            json!({"channel": "live", "source": "test_pattern"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");

    let id = start_stream(&a, "live", 20).await;
    let (_, list) = b.get("/streams?channel=live").await;
    assert_eq!(list["streams"][0]["stream_id"], id, "{list}");
    assert_eq!(list["streams"][0]["streamer"], "alice");
    // Viewers reach the streamer by its key (and its QUIC address).
    assert_eq!(list["streams"][0]["node_id"], alice.node_id(), "{list}");
    assert_eq!(
        list["streams"][0]["p2p_addr"],
        alice.p2p_addr().to_string(),
        "{list}"
    );
    assert!(list["streams"][0].get("udp_addr").is_none(), "{list}");

    let (status, v) = b.post(&format!("/streams/{id}/watch"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let w = frames_at_least(&b, id, 20).await;
    assert_eq!(w["state"], "playing", "{w}");

    // The frame is a JPEG with its capture time.
    let resp = b
        .http
        .get(format!("{}/streams/{id}/frame", b.base))
        .bearer_auth(&b.token)
        .send()
        .await
        .expect("frame");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    let capture: u64 = resp.headers()["x-frame-capture-us"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    assert!(capture > 0);
    let jpeg = resp.bytes().await.expect("body");
    assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
    assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9]);

    // The stream's WebSocket (the web UI's player): statistics as text at
    // once, then every whole frame as a binary JPEG.
    frames_over_websocket(&b, id).await;

    // A visitor joins late and gets frames within a second.
    let (status, v) = c.post(&format!("/streams/{id}/watch"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let joined = Instant::now();
    loop {
        let w = watching(&c, id).await;
        if w["report"]["frames"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            joined.elapsed() < Duration::from_secs(1),
            "no frame within a second of joining: {w}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    frames_at_least(&c, id, 10).await;

    // The streamer counts two viewers and hears their reports.
    let own = eventually("two viewers with reports", || async {
        let (_, v) = a.get(&format!("/streams/{id}")).await;
        let s = v["streaming"].clone();
        let reported = s["viewers"].as_array().is_some_and(|vs| {
            vs.len() == 2 && vs.iter().all(|v| v["report"]["frames"].as_u64() > Some(0))
        });
        (s["viewer_count"] == 2 && reported).then_some(s)
    })
    .await;
    let mut users: Vec<&str> = own["viewers"]
        .as_array()
        .expect("viewers")
        .iter()
        .map(|v| v["user"].as_str().expect("user"))
        .collect();
    users.sort();
    assert_eq!(users[0], "bob");
    assert!(users[1].starts_with("visitor:guest"), "{users:?}");
    // Each viewer's path: on loopback, straight to the viewer's node.
    for v in own["viewers"].as_array().expect("viewers") {
        let path = v["path"].as_str().expect("path");
        assert!(path.starts_with("direct 127.0.0.1:"), "{v}");
        assert!(v.get("udp_addr").is_none(), "{v}");
    }

    // The streamer leaves: the stream ends for everybody.
    let since = Instant::now();
    alice.shutdown().await;
    for api in [&b, &c] {
        eventually("the stream to end", || async {
            let w = watching(api, id).await;
            (w["state"] == "ended").then_some(())
        })
        .await;
    }
    assert!(
        since.elapsed() < Duration::from_secs(3),
        "{:?}",
        since.elapsed()
    );
    let (_, list) = b.get("/streams").await;
    assert_eq!(list["streams"], json!([]), "{list}");

    // The log says who streamed and who watched.
    let log = std::fs::read_to_string(adir.join("logs").join("segchat.log")).unwrap_or_default();
    for kind in ["STREAM_START", "VIEWER_JOIN", "STREAM_STOP"] {
        assert!(log.contains(kind), "{kind} missing from the streamer's log");
    }
    guest.shutdown().await;
    bob.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_datagrams_are_dropped_and_ten_percent_loss_keeps_playing() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let (_c, cdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let alice = start_node(server.addr, &adir).await;
    let bob = start_lossy_node(server.addr, &bdir).await;
    let guest = start_node(server.addr, &cdir).await;
    let (a, b, c) = setup(&server, [&alice, &bob, &guest]).await;
    let id = start_stream(&a, "live", 30).await;
    for api in [&b, &c] {
        let (status, v) = api.post(&format!("/streams/{id}/watch"), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    frames_at_least(&c, id, 5).await;

    // A third party who knows the stream id and the viewer's node opens a
    // peer connection of its own to it (anyone may: it is the node's P2P
    // endpoint) and injects frames as datagrams, sealed with a key of its
    // own: every one is dropped, and counted as forged. (The watch
    // connection itself is QUIC, authenticated and encrypted: nobody but
    // the streamer can put a datagram on it; see the last test for bad
    // tags on it.)
    let mallory = common::client(&ed25519_dalek::SigningKey::from_bytes(&[66; 32])).await;
    let (link, _) = common::hello_peer(&mallory, &common::node_addr(&guest), "mallory").await;
    let key = SessionKey::from_bytes([7; 32]);
    let before = watching(&c, id).await;
    let mut buf = Vec::new();
    for n in 0..200u32 {
        buf.clear();
        let h = Header {
            kind: DatagramKind::Chunk,
            stream_id: id,
            frame: u32::MAX - 1000 + n,
            chunk: 0,
            count: 1,
            capture_us: 1,
        };
        encode(&h, b"\xff\xd8forged\xff\xd9", &key, &mut buf).expect("encode");
        link.conn
            .send_datagram_wait(buf.clone().into())
            .await
            .expect("send");
    }
    let after = eventually("the forgeries to be counted", || async {
        let w = watching(&c, id).await;
        (w["report"]["forged"].as_u64() >= Some(200)).then_some(w)
    })
    .await;
    assert_eq!(before["report"]["forged"], 0);
    // Frames keep flowing: a forged high frame number did not jam it.
    let shown = after["report"]["frames"].as_u64().expect("frames");
    frames_at_least(&c, id, shown + 10).await;
    let resp = c
        .http
        .get(format!("{}/streams/{id}/frame", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .expect("frame");
    let jpeg = resp.bytes().await.expect("body");
    assert!(
        !jpeg.windows(6).any(|w| w == b"forged"),
        "a forgery was shown"
    );

    // Bob's node drops 10% of chunks: he keeps playing, reports the
    // loss, and his buffers stay bounded.
    let start = Instant::now();
    let mut max_in_flight = 0;
    let w = loop {
        let w = watching(&b, id).await;
        max_in_flight = max_in_flight.max(w["in_flight"].as_u64().unwrap_or(0));
        if w["report"]["frames"].as_u64().unwrap_or(0) >= 30
            && w["report"]["lost"].as_u64().unwrap_or(0) >= 3
        {
            break w;
        }
        assert!(start.elapsed() < DEADLINE, "no lossy playback: {w}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(w["state"], "playing", "{w}");
    assert!(max_in_flight <= 4, "buffers grew to {max_in_flight} frames");
    let lost = w["report"]["lost"].as_u64().expect("lost");
    let frames = w["report"]["frames"].as_u64().expect("frames");
    assert!(frames > lost, "most frames still play: {w}");
    // The streamer hears about the loss.
    eventually("bob's loss reported to the streamer", || async {
        let (_, v) = a.get(&format!("/streams/{id}")).await;
        v["streaming"]["viewers"]
            .as_array()?
            .iter()
            .find(|v| v["user"] == "bob" && v["report"]["lost"].as_u64() > Some(0))
            .map(|_| ())
    })
    .await;

    // Stopping the stream ends it for its viewers.
    let (status, _) = a.delete(&format!("/streams/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    eventually("the stream to end", || async {
        let w = watching(&c, id).await;
        (w["state"] == "ended").then_some(())
    })
    .await;
    drop(link);
    mallory.close().await;
    for node in [alice, bob, guest] {
        node.shutdown().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamer_unreachable_at_its_announced_address_is_still_watched() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let (_c, cdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    // Alice announces an address where nothing listens. Before the relay,
    // nobody could watch her (see the test below for a streamer that
    // really is unreachable); now her viewers dial her by key: the first
    // connection goes through the server's relay, and hole punching then
    // finds her real address.
    let mut config = NodeConfig::new(server.addr.to_string(), &adir);
    config.p2p_listen = "127.0.0.1:0".parse().expect("addr");
    config.advertise_ip = Some("127.0.0.2".parse().expect("ip"));
    let alice = Node::start(config, CancellationToken::new())
        .await
        .expect("node");
    let bob = start_node(server.addr, &bdir).await;
    let guest = start_node(server.addr, &cdir).await;
    let (a, b, _c) = setup(&server, [&alice, &bob, &guest]).await;
    let (_, node) = a.get("/node").await;
    assert_eq!(
        node["advertised_addr"],
        format!("127.0.0.2:{}", alice.p2p_addr().port()),
        "{node}"
    );
    let id = start_stream(&a, "live", 10).await;
    let (status, v) = b.post(&format!("/streams/{id}/watch"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let w = frames_at_least(&b, id, 10).await;
    assert_eq!(w["state"], "playing", "{w}");
    for node in [alice, bob, guest] {
        node.shutdown().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_streamer_gets_a_clear_refusal() {
    use segchat_proto::tracker::{Reply, Request};
    let (_s, sdir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let bob = start_node(server.addr, &bdir).await;
    let b = Api::of(&bob);
    b.wait_connected().await;
    b.register("bob").await;

    // Carol streams from a bare client that announces an address where
    // nothing listens and never takes a connection through the relay:
    // her node can be reached neither directly nor through the relay.
    let carol = common::client(&ed25519_dalek::SigningKey::from_bytes(&[3; 32])).await;
    let mut t = common::registered(&carol, server.addr, "carol").await;
    let nowhere = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.local_addr().expect("addr")
    };
    for (id, req) in [
        Request::CreateChannel {
            name: "live".into(),
            visibility: segchat_proto::types::Visibility::Public,
            allow_visitors: true,
        },
        Request::SubmitInfo {
            p2p_addr: nowhere,
            status: None,
        },
    ]
    .into_iter()
    .enumerate()
    {
        common::ask(&mut t, 2 + id as u32, req)
            .await
            .expect("the server accepts");
    }
    let start = Request::StartStream {
        channel: "live".into(),
        width: 320,
        height: 240,
        fps: 10,
        codec: segchat_proto::stream::Codec::Mjpeg,
    };
    let id = match common::ask(&mut t, 4, start).await {
        Ok(Reply::Stream(info)) => info.stream_id,
        other => panic!("carol may stream: {other:?}"),
    };

    let asked = Instant::now();
    let (status, v) = b.post(&format!("/streams/{id}/watch"), json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    eprintln!("refused after {:?}", asked.elapsed());
    let reason = v["reason"].as_str().expect("reason");
    assert!(reason.contains("cannot reach carol's node"), "{reason}");
    assert!(
        reason.contains(&format!("neither directly at {nowhere}"))
            && reason.contains("nor through the server's relay"),
        "{reason}"
    );
    eventually("the refusal in the log", || async {
        let log = std::fs::read_to_string(bdir.join("logs").join("segchat.log")).ok()?;
        log.lines()
            .any(|l| l.contains("] STREAM_UNREACHABLE |") && l.contains(&format!("stream={id}")))
            .then_some(())
    })
    .await;
    drop(t);
    carol.close().await;
    bob.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_with_a_bad_tag_on_the_watch_connection_is_counted_as_forged() {
    use futures::{SinkExt, StreamExt};
    use segchat_proto::tracker::{Reply, Request};
    use segchat_proto::{peer, Frame, Welcome, PROTOCOL_VERSION};
    let (_s, sdir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let bob = start_node(server.addr, &bdir).await;
    let b = Api::of(&bob);
    b.wait_connected().await;
    b.register("bob").await;

    // Carol streams from a bare endpoint of her own, which answers Bob's
    // watch as a streamer does and then sends on the watch connection:
    // chunks sealed with the session key she gave him, and chunks whose
    // tag does not verify under it.
    let carol = common::client(&ed25519_dalek::SigningKey::from_bytes(&[3; 32])).await;
    carol
        .endpoint()
        .set_alpns(vec![segchat_net::ALPN_PEER.to_vec()]);
    let at = segchat_net::endpoint::local_addr(carol.endpoint()).expect("bound");
    let mut t = common::registered(&carol, server.addr, "carol").await;
    for (id, req) in [
        Request::CreateChannel {
            name: "live".into(),
            visibility: segchat_proto::types::Visibility::Public,
            allow_visitors: true,
        },
        Request::SubmitInfo {
            p2p_addr: at,
            status: None,
        },
    ]
    .into_iter()
    .enumerate()
    {
        common::ask(&mut t, 2 + id as u32, req)
            .await
            .expect("the server accepts");
    }
    let start = Request::StartStream {
        channel: "live".into(),
        width: 320,
        height: 240,
        fps: 10,
        codec: segchat_proto::stream::Codec::Mjpeg,
    };
    let id = match common::ask(&mut t, 4, start).await {
        Ok(Reply::Stream(info)) => info.stream_id,
        other => panic!("carol may stream: {other:?}"),
    };
    let skey = SessionKey::from_bytes([8; 32]);
    let endpoint = carol.endpoint().clone();
    let session_key = skey.to_hex();
    let streamer = tokio::spawn(async move {
        let conn = endpoint
            .accept()
            .await
            .expect("an incoming connection")
            .await
            .expect("a connection");
        let (send, recv) = conn.accept_bi().await.expect("a stream");
        let mut p: common::PeerLink = common::Raw {
            framed: tokio_util::codec::Framed::new(tokio::io::join(recv, send), Default::default()),
            conn,
        };
        assert!(matches!(p.next().await, Some(Ok(Frame::Hello(_)))));
        p.send(Frame::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            agent: "carol".into(),
            heartbeat_ms: 2_000,
            peer_ttl_ms: 6_000,
            server_key: String::new(),
            max_body_len: 4000,
            nonce: hex::encode([3u8; 32]),
            observed_addr: None,
        }))
        .await
        .expect("welcome");
        loop {
            match p.next().await {
                Some(Ok(Frame::Request {
                    id: rid,
                    body: peer::Request::Watch { stream_id, .. },
                })) => {
                    let result = Ok(peer::Reply::Watching {
                        stream_id,
                        viewer_id: 1,
                        session_key,
                        width: 320,
                        height: 240,
                        fps: 10,
                        codec: segchat_proto::stream::Codec::Mjpeg,
                    });
                    p.send(Frame::Response { id: rid, result })
                        .await
                        .expect("watching");
                    return p;
                }
                Some(Ok(_)) => continue,
                other => panic!("expected a watch, got {other:?}"),
            }
        }
    });
    let (status, v) = b.post(&format!("/streams/{id}/watch"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let link = streamer.await.expect("carol's streamer");

    let chunk = |frame: u32, body: &[u8], key: &SessionKey| {
        let h = Header {
            kind: DatagramKind::Chunk,
            stream_id: id,
            frame,
            chunk: 0,
            count: 1,
            capture_us: 1,
        };
        let mut out = Vec::new();
        encode(&h, body, key, &mut out).expect("encode");
        out
    };
    let send = |bytes: Vec<u8>| {
        let conn = link.conn.clone();
        async move {
            conn.send_datagram_wait(bytes.into())
                .await
                .expect("datagram");
        }
    };
    for frame in 1..=5 {
        send(chunk(frame, b"\xff\xd8genuine\xff\xd9", &skey)).await;
    }
    let before = frames_at_least(&b, id, 1).await;
    assert_eq!(before["report"]["forged"], 0, "{before}");
    // Sealed under another key, and a genuine chunk with one bit of its
    // tag flipped: both fail the tag check.
    let other = SessionKey::from_bytes([7; 32]);
    for n in 0..100u32 {
        let mut bad = if n % 2 == 0 {
            chunk(u32::MAX - 1000 + n, b"\xff\xd8forged\xff\xd9", &other)
        } else {
            chunk(6 + n, b"\xff\xd8forged\xff\xd9", &skey)
        };
        if n % 2 == 1 {
            let last = bad.len() - 1;
            bad[last] ^= 1;
        }
        send(bad).await;
    }
    let after = eventually("the forgeries to be counted", || async {
        let w = watching(&b, id).await;
        (w["report"]["forged"].as_u64() >= Some(100)).then_some(w)
    })
    .await;
    assert_eq!(after["report"]["forged"], 100, "{after}");
    // Genuine chunks after them still play: the forgeries jammed nothing.
    let shown = after["report"]["frames"].as_u64().expect("frames");
    for frame in 200..=205 {
        send(chunk(frame, b"\xff\xd8genuine\xff\xd9", &skey)).await;
    }
    frames_at_least(&b, id, shown + 1).await;
    let resp = b
        .http
        .get(format!("{}/streams/{id}/frame", b.base))
        .bearer_auth(&b.token)
        .send()
        .await
        .expect("frame");
    let jpeg = resp.bytes().await.expect("body");
    assert_eq!(&jpeg[..], b"\xff\xd8genuine\xff\xd9", "a forgery was shown");
    drop(link);
    drop(t);
    carol.close().await;
    bob.shutdown().await;
    server.stop().await;
}
