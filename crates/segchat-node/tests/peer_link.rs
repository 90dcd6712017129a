//! The peer link under faults and abuse: a link cut silently (a proxy that
//! stops forwarding without a word) is noticed, the member falls back to
//! the server and then reaches the host again through the server's relay;
//! connections that say hello and then nothing are closed; one source
//! cannot take every slot; a bad request is answered and the link carries
//! on.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::chat::{log_of, message, send, wait_via};
use common::{
    ask, client, client_at, eventually, node_addr, open_peer, registered, start_node, tempdir, Api,
    PeerLink, Raw, TestServer, DEADLINE,
};
use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use segchat_net::client::Client;
use segchat_node::NodeHandle;
use segchat_proto::types::NodeAddr;
use segchat_proto::{peer, tracker, Frame, FrameCodec, Hello, LinkKind, Status};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::codec::Framed;

/// A node that tells the server its P2P address is on `advertise`.
async fn start_node_advertising(
    server: SocketAddr,
    dir: &std::path::Path,
    advertise: IpAddr,
) -> NodeHandle {
    common::start_node_with(server, dir, |c| c.advertise_ip = Some(advertise)).await
}

/// A UDP proxy from `listen` to `target` that, while `cut` holds true,
/// forwards nothing in either direction and says nothing: a silent cut,
/// as a dropped route or a dead NAT entry looks to both ends. Each client
/// address gets a socket of its own towards `target`, as a NAT would;
/// their addresses (where `target` sees the traffic come from) are put in
/// `inside`.
async fn proxy(
    listen: SocketAddr,
    target: SocketAddr,
    cut: watch::Receiver<bool>,
    inside_addrs: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
) {
    let outside = Arc::new(UdpSocket::bind(listen).await.expect("bind proxy"));
    tokio::spawn(async move {
        let mut inside: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok((n, from)) = outside.recv_from(&mut buf).await {
            if *cut.borrow() {
                continue;
            }
            let socket = match inside.get(&from) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
                    s.connect(target).await.expect("connect");
                    inside.insert(from, s.clone());
                    inside_addrs
                        .lock()
                        .expect("lock")
                        .push(s.local_addr().expect("addr"));
                    let (outside, cut, s2) = (outside.clone(), cut.clone(), s.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = s2.recv(&mut buf).await {
                            if !*cut.borrow() {
                                let _ = outside.send_to(&buf[..n], from).await;
                            }
                        }
                    });
                    s
                }
            };
            let _ = socket.send(&buf[..n]).await;
        }
    });
}

/// Whether the server (its data in `sdir`) ever let `node` onto its relay.
fn relay_open(sdir: &std::path::Path, node: &str) -> bool {
    log_of(sdir)
        .lines()
        .any(|l| l.contains("] RELAY_OPEN |") && l.contains(&format!("node={node}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_comes_onto_the_relay_only_when_a_dialler_asks_for_it() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let host = start_node(server.addr, &adir).await;
    let a = Api::of(&host);
    a.wait_connected().await;
    a.register("alice").await;
    // A dialler that reaches nodes through the relay only.
    let key = SigningKey::from_bytes(&[0x77; 32]);
    let dialler = Client::bind(
        &key,
        "127.0.0.1:0".parse().expect("addr"),
        Some(server.addr),
    )
    .await
    .expect("bind the dialler");
    let mut t = registered(&dialler, server.addr, "dan").await;
    assert!(
        dialler.use_relay(DEADLINE).await,
        "the relay takes a signed-in client"
    );

    // Nobody asked for the host: it is not on the relay, and a dial
    // through the relay finds nobody.
    let id = host.node_id().to_owned();
    let nobody = dialler.peer_via_relay(&id, Duration::from_secs(3)).await;
    assert!(
        nobody.is_err(),
        "the host answered through the relay before anybody asked"
    );
    assert!(
        !relay_open(&sdir, &id),
        "the host holds a relay connection nobody needs"
    );

    // Asked for through the server, it comes.
    let asked = Instant::now();
    ask(
        &mut t,
        2,
        tracker::Request::Reach {
            node_id: id.clone(),
        },
    )
    .await
    .expect("reach");
    let link = dialler
        .peer_via_relay(&id, DEADLINE)
        .await
        .expect("the host answers through the relay once asked for");
    eprintln!("through the relay {:?} after reach", asked.elapsed());
    let mut p: PeerLink = Raw {
        framed: Framed::new(link.stream, FrameCodec::default()),
        conn: link.conn,
    };
    p.send(Frame::Hello(Hello::new(LinkKind::Peer, "relayed")))
        .await
        .expect("hello");
    match tokio::time::timeout(DEADLINE, p.next()).await {
        Ok(Some(Ok(Frame::Welcome(_)))) => {}
        other => panic!("expected a welcome through the relay, got {other:?}"),
    }
    assert!(relay_open(&sdir, &id), "{}", log_of(&sdir));
    let by = format!("by={}", &hex::encode(key.verifying_key().as_bytes())[..12]);
    eventually("the host's log: it was told who dials", || async {
        log_of(&adir)
            .lines()
            .any(|l| l.contains("] RELAY_WANTED |") && l.contains(&by))
            .then_some(())
    })
    .await;

    drop(p);
    dialler.close().await;
    host.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_cut_peer_link_falls_back_to_the_server_and_comes_back_through_the_relay() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    // Members reach the host directly only through the proxy on
    // 127.0.0.2; the server link (and the relay in the server) stays
    // direct.
    let proxied = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let host = start_node_advertising(server.addr, &adir, proxied).await;
    let (cut, cut_rx) = watch::channel(false);
    let through_proxy = Arc::new(std::sync::Mutex::new(Vec::new()));
    proxy(
        SocketAddr::new(proxied, host.p2p_addr().port()),
        host.p2p_addr(),
        cut_rx,
        through_proxy.clone(),
    )
    .await;
    let member = start_node(server.addr, &bdir).await;
    let (a, b) = (Api::of(&host), Api::of(&member));
    a.wait_connected().await;
    b.wait_connected().await;
    a.register("alice").await;
    a.create_channel("room", "members_only").await;
    b.register("bob").await;
    // Signed in, UDP getting through, nobody dialling them: neither node
    // holds a relay connection (one used to be opened at sign-in; give
    // that the time it took).
    tokio::time::sleep(Duration::from_secs(1)).await;
    for node in [&host, &member] {
        assert!(
            !relay_open(&sdir, node.node_id()),
            "a node holds a relay connection nobody needs"
        );
    }
    b.join("room").await;
    wait_via(&b, "room", "host").await;
    let before = send(&b, "room", "before the cut").await;
    eventually("the host to store bob's first message", || async {
        message(&a, "room", &before).await.map(|_| ())
    })
    .await;
    // The member's link runs through the proxy (the direct path to the
    // announced address), so the cut below cuts it.
    let proxied_from = through_proxy.lock().expect("lock").clone();
    let log = log_of(&adir);
    assert!(
        log.lines().any(|l| l.contains("] CONNECTION_ESTABLISHED |")
            && l.contains("link=p2p")
            && proxied_from
                .iter()
                .any(|a| l.contains(&format!("path=direct {a}")))),
        "the member's link does not run through the proxy ({proxied_from:?}): {log}"
    );

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
        log_of(&adir)
            .lines()
            .any(|l| l.contains("CONNECTION_CLOSED") && l.contains("idle: no frame"))
            .then_some(())
    })
    .await;

    // The member does not wait for the heal: it dials the host by key
    // again, and the server's relay carries the new link while the
    // announced address stays cut. (Before the relay, the member stayed
    // on the server until the heal.)
    let back = wait_via(&b, "room", "host").await;
    eprintln!("back via host {back:?} later, still cut");
    let relayed = send(&b, "room", "through the relay").await;
    eventually(
        "the host to store the message sent through the relay",
        || async { message(&a, "room", &relayed).await.map(|_| ()) },
    )
    .await;
    assert!(*cut.borrow(), "still cut");
    eventually("the member to see it stored by the host", || async {
        let m = message(&b, "room", &relayed).await?;
        (m["state"] != "pending").then_some(())
    })
    .await;

    cut.send(false).expect("heal");
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

/// Opens a peer link from `client` to `to` and checks the welcome.
async fn say_hello(client: &Client, to: &NodeAddr) -> PeerLink {
    let mut link: PeerLink = open_peer(client, to).await;
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

/// A peer link from `client` that says hello and then nothing; `None` if
/// the node closed the connection before its stream could be opened (a
/// refusal that came quickly).
async fn flood_one(client: &Client, to: &NodeAddr) -> Option<PeerLink> {
    let mut link: PeerLink = common::try_open_peer(client, to).await.ok()?;
    let _ = link
        .send(Frame::Hello(Hello::new(LinkKind::Peer, "flood")))
        .await;
    Some(link)
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
    let to = node_addr(&node);
    let raw = client(&SigningKey::from_bytes(&[4; 32])).await;
    let link = say_hello(&raw, &to).await;
    let (after, said) = closed(link).await;
    eprintln!("closed {after:?} after the welcome: {said:?}");
    assert!(
        after < Duration::from_secs(9),
        "closed only after {after:?}"
    );
    let said = said.expect("the node says why");
    assert!(said.reason.contains("within"), "{said}");

    // Pings alone do not keep a link that was never admitted.
    let mut link = say_hello(&raw, &to).await;
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
    raw.close().await;
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

    // One source (an IP address of its own; the flooder's key does not
    // matter on a direct path) opens connections until the node refuses
    // it.
    let flooder = client_at(
        &SigningKey::from_bytes(&[6; 32]),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 0),
    )
    .await;
    let to = node_addr(&host);
    let mut held = Vec::new();
    let mut refused_at = None;
    for n in 0..200 {
        // A refused connection is closed at once, before any welcome.
        let Some(mut link) = flood_one(&flooder, &to).await else {
            refused_at = Some(n);
            break;
        };
        match tokio::time::timeout(Duration::from_secs(5), link.next()).await {
            Ok(None) | Ok(Some(Err(_))) => {
                refused_at = Some(n);
                break;
            }
            Ok(Some(Ok(Frame::Welcome(_)))) => held.push(link),
            Ok(Some(Ok(other))) => panic!("connection {n}: unexpected {other:?}"),
            Err(_) => panic!("connection {n}: neither welcomed nor closed"),
        }
    }
    let refused_at = refused_at.expect("the node refused the flood at some point");
    eprintln!("one address got {refused_at} connections");
    assert_eq!(refused_at, segchat_node::p2p::MAX_PEER_CONNS_PER_SOURCE);
    // The flood goes on (a new connection every 50 ms, none let go) while
    // a real member sets up.
    let flood = tokio::spawn({
        let flooder = flooder.clone();
        async move {
            loop {
                held.extend(flood_one(&flooder, &to).await);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
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
    flooder.close().await;
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
    let to = node_addr(&node);
    let client = client(&SigningKey::from_bytes(&[4; 32])).await;
    type Raw = common::Raw<Value, Value, Value>;
    let mut raw: Raw = open_peer(&client, &to).await;
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
    let mut raw: Raw = open_peer(&client, &to).await;
    raw.get_mut()
        .write_all(&(2u32 << 20).to_be_bytes())
        .await
        .expect("write");
    match tokio::time::timeout(DEADLINE, raw.next()).await {
        Ok(Some(Ok(Frame::Error(f)))) => assert_eq!(f.status, Status::TooLarge, "{f}"),
        other => panic!("expected a 413 error frame, got {other:?}"),
    }
    client.close().await;
    node.shutdown().await;
    server.stop().await;
}
