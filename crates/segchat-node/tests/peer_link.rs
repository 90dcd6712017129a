//! The peer link under faults and abuse: a link cut silently (a proxy that
//! stops forwarding without closing) is noticed and the member falls back
//! to the server; connections that say hello and then nothing are closed;
//! one source cannot take every slot; a bad request is answered and the
//! link carries on.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{eventually, start_node, tempdir, Api, TestServer, DEADLINE};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use segchat_node::{Node, NodeConfig, NodeHandle};
use segchat_proto::{peer, Frame, FrameCodec, Hello, LinkKind, Status};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

type PeerLink = Framed<TcpStream, FrameCodec<peer::Request, peer::Reply, peer::Event>>;

/// A node that tells the server its P2P address is on `advertise`.
async fn start_node_advertising(
    server: SocketAddr,
    dir: &std::path::Path,
    advertise: IpAddr,
) -> NodeHandle {
    let mut config = NodeConfig::new(server.to_string(), dir);
    config.p2p_listen = "127.0.0.1:0".parse().expect("addr");
    config.advertise_ip = Some(advertise);
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(500);
    Node::start(config, CancellationToken::new())
        .await
        .expect("node starts")
}

/// A TCP proxy from `listen` to `target` that, while `cut` holds true,
/// forwards nothing in either direction and closes nothing: a silent cut,
/// as a dropped route or a dead NAT entry looks to both ends.
async fn proxy(listen: SocketAddr, target: SocketAddr, cut: watch::Receiver<bool>) {
    let listener = TcpListener::bind(listen).await.expect("bind proxy");
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let cut = cut.clone();
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(pump(ri, wo, cut.clone()));
                tokio::spawn(pump(ro, wi, cut));
            });
        }
    });
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if cut.wait_for(|c| !*c).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Read during a cut: held until the heal, never delivered before.
        if cut.wait_for(|c| !*c).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn via(api: &Api, channel: &str) -> Option<String> {
    let (_, v) = api.get("/unread").await;
    v["links"][channel].as_str().map(str::to_owned)
}

async fn wait_via(api: &Api, channel: &str, want: &str) -> Duration {
    let start = Instant::now();
    eventually(&format!("{channel} to be reached via {want}"), || async {
        (via(api, channel).await.as_deref() == Some(want)).then_some(())
    })
    .await;
    start.elapsed()
}

async fn send(api: &Api, channel: &str, body: &str) -> String {
    let (status, v) = api
        .post(
            &format!("/channels/{channel}/messages"),
            json!({"body": body}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "send {body:?}: {v}");
    v["message"]["id"].as_str().expect("id").to_owned()
}

/// The message `id` in `api`'s copy of `channel`, once it is there.
async fn message(api: &Api, channel: &str, id: &str) -> Option<Value> {
    let (_, hist) = api
        .get(&format!("/channels/{channel}/messages?limit=500"))
        .await;
    hist["messages"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_cut_peer_link_falls_back_to_the_server_and_comes_back_after_the_heal() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    // Members reach the host only through the proxy on 127.0.0.2; the
    // server link stays direct.
    let proxied = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let host = start_node_advertising(server.addr, &adir, proxied).await;
    let (cut, cut_rx) = watch::channel(false);
    proxy(
        SocketAddr::new(proxied, host.p2p_addr().port()),
        host.p2p_addr(),
        cut_rx,
    )
    .await;
    let member = start_node(server.addr, &bdir).await;
    let (a, b) = (Api::of(&host), Api::of(&member));
    a.wait_connected().await;
    b.wait_connected().await;
    a.register("alice").await;
    a.create_channel("room", "members_only").await;
    b.register("bob").await;
    b.join("room").await;
    wait_via(&b, "room", "host").await;
    let before = send(&b, "room", "before the cut").await;
    eventually("the host to store bob's first message", || async {
        message(&a, "room", &before).await.map(|_| ())
    })
    .await;

    cut.send(true).expect("cut");
    let noticed = wait_via(&b, "room", "server").await;
    eprintln!("the member noticed the cut after {noticed:?}");
    assert!(
        noticed < Duration::from_secs(12),
        "noticed only after {noticed:?}"
    );
    // Written during the cut: through the server, backed up, and the host
    // gets it from the server too.
    let during = send(&b, "room", "during the cut").await;
    let posted = Instant::now();
    eventually("bob's message to be backed up by the server", || async {
        let m = message(&b, "room", &during).await?;
        (m["state"] == "backed_up").then_some(())
    })
    .await;
    eprintln!("backed up {:?} after sending", posted.elapsed());
    eventually("the host to get it from the server", || async {
        message(&a, "room", &during).await.map(|_| ())
    })
    .await;
    // The host dropped the silent link on its side too.
    eventually("the host to drop the silent member link", || async {
        let log = std::fs::read_to_string(adir.join("logs").join("segchat.log")).ok()?;
        log.lines()
            .any(|l| l.contains("CONNECTION_CLOSED") && l.contains("idle: no frame"))
            .then_some(())
    })
    .await;

    cut.send(false).expect("heal");
    let back = wait_via(&b, "room", "host").await;
    eprintln!("back via host {back:?} after the heal");
    let after = send(&b, "room", "after the heal").await;
    eventually("the host to store the message after the heal", || async {
        message(&a, "room", &after).await.map(|_| ())
    })
    .await;
    let m = message(&b, "room", &after).await.expect("own message");
    assert_ne!(m["state"], "pending", "{m}");

    host.shutdown().await;
    member.shutdown().await;
    server.stop().await;
}

/// Connects from `source` (any port) to `to`.
async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

async fn say_hello(stream: TcpStream) -> PeerLink {
    let mut link: PeerLink = Framed::new(stream, FrameCodec::default());
    link.send(Frame::Hello(Hello::new(LinkKind::Peer, "test")))
        .await
        .expect("hello");
    match tokio::time::timeout(DEADLINE, link.next()).await {
        Ok(Some(Ok(Frame::Welcome(w)))) => {
            assert!(
                w.heartbeat_ms > 0 && w.peer_ttl_ms > w.heartbeat_ms,
                "{w:?}"
            );
        }
        other => panic!("expected welcome, got {other:?}"),
    }
    link
}

/// A connection from `source` that says hello and then nothing.
async fn flood_one(source: IpAddr, to: SocketAddr) -> TcpStream {
    let mut stream = connect_from(source, to).await.expect("connect");
    let mut hello = bytes::BytesMut::new();
    Frame::<peer::Request, peer::Reply, peer::Event>::Hello(Hello::new(LinkKind::Peer, "flood"))
        .encode(&mut hello)
        .expect("encode");
    let _ = stream.write_all(&hello).await;
    stream
}

/// Waits for the node to close `link`; how long that took.
async fn closed(mut link: PeerLink) -> (Duration, Option<segchat_proto::Failure>) {
    let start = Instant::now();
    let mut said = None;
    loop {
        match tokio::time::timeout(DEADLINE, link.next()).await {
            Err(_) => panic!("the link is still open after {DEADLINE:?}"),
            Ok(Some(Ok(Frame::Error(f)))) => said = Some(f),
            Ok(Some(Ok(_))) => {}
            Ok(None) | Ok(Some(Err(_))) => return (start.elapsed(), said),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_says_hello_and_then_nothing_is_closed() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node = start_node(server.addr, &adir).await;
    let link = say_hello(TcpStream::connect(node.p2p_addr()).await.expect("connect")).await;
    let (after, said) = closed(link).await;
    eprintln!("closed {after:?} after the welcome: {said:?}");
    assert!(
        after < Duration::from_secs(9),
        "closed only after {after:?}"
    );
    let said = said.expect("the node says why");
    assert!(said.reason.contains("within"), "{said}");

    // Pings alone do not keep a link that was never admitted.
    let mut link = say_hello(TcpStream::connect(node.p2p_addr()).await.expect("connect")).await;
    let pinger = tokio::spawn(async move {
        for id in 1.. {
            if link
                .send(Frame::Request {
                    id,
                    body: peer::Request::Ping,
                })
                .await
                .is_err()
            {
                return;
            }
            match tokio::time::timeout(Duration::from_secs(1), link.next()).await {
                Ok(Some(Ok(Frame::Response { result, .. }))) => {
                    assert_eq!(result, Ok(peer::Reply::Pong));
                }
                Ok(Some(Ok(Frame::Error(_)))) | Ok(None) | Ok(Some(Err(_))) => return,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    tokio::time::timeout(Duration::from_secs(9), pinger)
        .await
        .expect("closed before 9 s although it pinged")
        .expect("pinger");
    node.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_leaves_room_for_real_members() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let host = start_node(server.addr, &adir).await;
    let a = Api::of(&host);
    a.wait_connected().await;
    a.register("alice").await;
    a.create_channel("lobby", "public").await;

    // One source opens connections until the node refuses it.
    let flooder = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let p2p = host.p2p_addr();
    let mut held = Vec::new();
    let mut refused_at = None;
    for n in 0..200 {
        let stream = flood_one(flooder, p2p).await;
        // A refused connection is closed at once, before any welcome.
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(5), stream.peek(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                refused_at = Some(n);
                break;
            }
            Ok(Ok(_)) => held.push(stream),
            Err(_) => panic!("connection {n}: neither welcomed nor closed"),
        }
    }
    let refused_at = refused_at.expect("the node refused the flood at some point");
    eprintln!("one address got {refused_at} connections");
    assert_eq!(refused_at, segchat_node::p2p::MAX_PEER_CONNS_PER_IP);
    // The flood goes on (a new connection every 50 ms, none let go) while
    // a real member sets up.
    let flood = tokio::spawn(async move {
        loop {
            held.push(flood_one(flooder, p2p).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    // Meanwhile a real member connects and chats through the host.
    let member = start_node(server.addr, &bdir).await;
    let b = Api::of(&member);
    b.wait_connected().await;
    b.register("bob").await;
    b.join("lobby").await;
    wait_via(&b, "lobby", "host").await;
    let id = send(&b, "lobby", "still here").await;
    eventually("the host to store it", || async {
        message(&a, "lobby", &id).await.map(|_| ())
    })
    .await;
    flood.abort();
    host.shutdown().await;
    member.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_on_the_peer_link_gets_400_and_the_link_carries_on() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node = start_node(server.addr, &adir).await;
    type Raw = Framed<TcpStream, FrameCodec<Value, Value, Value>>;
    let mut raw: Raw = Framed::new(
        TcpStream::connect(node.p2p_addr()).await.expect("connect"),
        FrameCodec::default(),
    );
    raw.send(Frame::Hello(Hello::new(LinkKind::Peer, "test")))
        .await
        .expect("hello");
    assert!(matches!(raw.next().await, Some(Ok(Frame::Welcome(_)))));
    raw.send(Frame::Request {
        id: 7,
        body: json!({"op": "teleport"}),
    })
    .await
    .expect("request");
    match tokio::time::timeout(DEADLINE, raw.next()).await {
        Ok(Some(Ok(Frame::Response {
            id: 7,
            result: Err(f),
        }))) => {
            assert_eq!(f.status, Status::BadRequest, "{f}")
        }
        other => panic!("expected a 400 response, got {other:?}"),
    }
    raw.send(Frame::Request {
        id: 8,
        body: json!({"op": "ping"}),
    })
    .await
    .expect("ping");
    match tokio::time::timeout(DEADLINE, raw.next()).await {
        Ok(Some(Ok(Frame::Response {
            id: 8,
            result: Ok(v),
        }))) => {
            assert_eq!(v["type"], "pong", "{v}")
        }
        other => panic!("expected pong, got {other:?}"),
    }

    // A frame over the limit before hello: 413, as for any frame.
    let mut stream = TcpStream::connect(node.p2p_addr()).await.expect("connect");
    stream
        .write_all(&(2u32 << 20).to_be_bytes())
        .await
        .expect("write");
    let mut raw: Raw = Framed::new(stream, FrameCodec::default());
    match tokio::time::timeout(DEADLINE, raw.next()).await {
        Ok(Some(Ok(Frame::Error(f)))) => assert_eq!(f.status, Status::TooLarge, "{f}"),
        other => panic!("expected a 413 error frame, got {other:?}"),
    }
    node.shutdown().await;
    server.stop().await;
}
