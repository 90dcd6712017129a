//! Livestreams end to end: a real server, real nodes, frames over real UDP
//! on loopback, everything driven through the nodes' HTTP APIs.

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
    let mut config = NodeConfig::new(server.to_string(), dir);
    config.p2p_listen = "127.0.0.1:0".parse().expect("addr");
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(500);
    config.stream_loss = Some(LossHook {
        percent: 10,
        seed: 42,
    });
    Node::start(config, CancellationToken::new())
        .await
        .expect("node starts")
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

    // A third party who knows the stream id and the viewer's port injects
    // frames with a key of its own: every one is dropped.
    let mallory = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
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
        mallory.send_to(&buf, guest.udp_addr()).await.expect("send");
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
    for node in [alice, bob, guest] {
        node.shutdown().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_streamer_gets_a_clear_refusal() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let (_c, cdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    // Alice announces an address where nothing listens.
    let mut config = NodeConfig::new(server.addr.to_string(), &adir);
    config.p2p_listen = "127.0.0.1:0".parse().expect("addr");
    config.advertise_ip = Some("127.0.0.2".parse().expect("ip"));
    let alice = Node::start(config, CancellationToken::new())
        .await
        .expect("node");
    let bob = start_node(server.addr, &bdir).await;
    let guest = start_node(server.addr, &cdir).await;
    let (a, b, _c) = setup(&server, [&alice, &bob, &guest]).await;
    let id = start_stream(&a, "live", 10).await;
    let (status, v) = b.post(&format!("/streams/{id}/watch"), json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    let reason = v["reason"].as_str().expect("reason");
    assert!(reason.contains("cannot reach alice's node"), "{reason}");
    assert!(
        reason.contains("not relayed through the server"),
        "{reason}"
    );
    for node in [alice, bob, guest] {
        node.shutdown().await;
    }
    server.stop().await;
}
