//! Peer links over TLS on TCP: a member takes TCP to a host it reaches
//! directly and QUIC where the host's TCP port does not answer as the
//! host; on TCP the same caps hold as on QUIC, and what TCP cannot carry
//! (a livestream's datagrams) is refused with a reason.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::chat::{log_of, message, send, wait_via};
use common::{client_at, eventually, node_addr, start_node, start_node_with, tempdir, Api};
use common::{TestServer, DEADLINE};
use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use segchat_net::client::Client;
use segchat_proto::ticket::{SignedTicket, Ticket};
use segchat_proto::types::{AccountKind, NodeAddr};
use segchat_proto::{peer, Frame, FrameCodec, Hello, LinkKind, Status};
use tokio_util::codec::Framed;

type TcpPeer =
    Framed<segchat_net::tls::ClientStream, FrameCodec<peer::Request, peer::Reply, peer::Event>>;

/// A peer link over TCP from `client` to `to`, after hello and welcome;
/// `None` if the node refused it.
async fn tcp_hello(client: &Client, to: &NodeAddr) -> Option<TcpPeer> {
    let stream = client.peer_tcp(&to.node_id, to.addr, DEADLINE).await.ok()?;
    let mut link: TcpPeer = Framed::new(stream, FrameCodec::default());
    link.send(Frame::Hello(Hello::new(LinkKind::Peer, "test")))
        .await
        .ok()?;
    match tokio::time::timeout(DEADLINE, link.next()).await {
        Ok(Some(Ok(Frame::Welcome(_)))) => Some(link),
        _ => None,
    }
}

/// The `link=p2p` line of `dir`'s log for the member's link, once there.
async fn member_link_line(dir: &std::path::Path) -> String {
    eventually("the member's link in its log", || async {
        log_of(dir)
            .lines()
            .find(|l| l.contains("] CONNECTION_ESTABLISHED |") && l.contains("role=member"))
            .map(str::to_owned)
    })
    .await
}

/// Alice hosts `room` on `host`; bob, on `member`, joins it and posts one
/// message through the host: its id.
async fn alice_hosts_and_bob_posts(a: &Api, b: &Api) -> String {
    a.wait_connected().await;
    b.wait_connected().await;
    a.register("alice").await;
    a.create_channel("room", "public").await;
    b.register("bob").await;
    b.join("room").await;
    wait_via(b, "room", "host").await;
    let id = send(b, "room", "hello over the link").await;
    eventually("the host to store bob's message", || async {
        message(a, "room", &id).await.map(|_| ())
    })
    .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_links_over_tcp_to_a_host_it_reaches_directly() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let host = start_node(server.addr, &adir).await;
    let member = start_node(server.addr, &bdir).await;
    let (a, b) = (Api::of(&host), Api::of(&member));
    alice_hosts_and_bob_posts(&a, &b).await;
    let line = member_link_line(&bdir).await;
    assert!(line.contains("path=tcp"), "{line}");
    let host_log = log_of(&adir);
    assert!(
        host_log
            .lines()
            .any(|l| l.contains("] CONNECTION_ESTABLISHED |") && l.contains("path=tcp ")),
        "the host took no link over TCP: {host_log}"
    );
    host.shutdown().await;
    member.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_tcp_port_answers_with_another_key_is_reached_over_quic() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    // Something else holds the TCP port of the host's number: a TLS
    // listener for the peer protocol under another key.
    let impostor = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port: SocketAddr = impostor.local_addr().expect("addr");
    let tls = segchat_net::tls::TlsAcceptor::from(segchat_net::tls::peer_server_config(
        &SigningKey::from_bytes(&[0x41; 32]),
    ));
    let handshakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = impostor.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tls = tls.clone();
            tokio::spawn(async move {
                let _ = tls.accept(tcp).await;
            });
        }
    });
    let host = start_node_with(server.addr, &adir, |c| c.p2p_listen = port).await;
    let member = start_node(server.addr, &bdir).await;
    let (a, b) = (Api::of(&host), Api::of(&member));
    alice_hosts_and_bob_posts(&a, &b).await;
    let line = member_link_line(&bdir).await;
    assert!(line.contains("path=direct"), "{line}");
    assert!(
        handshakes.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the member never tried TCP"
    );
    host.shutdown().await;
    member.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_tcp_one_source_gets_its_share_and_a_watch_is_refused_with_a_reason() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node = start_node(server.addr, &adir).await;
    Api::of(&node).wait_connected().await;
    let to = node_addr(&node);
    let cap = segchat_node::p2p::MAX_PEER_CONNS_PER_SOURCE;

    // One source opens more links than its share; they are held (hello
    // said, nothing admitted) while the rest are tried.
    let from_one = client_at(
        &SigningKey::from_bytes(&[0x42; 32]),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..cap + 4 {
        match tcp_hello(&from_one, &to).await {
            Some(link) => held.push(link),
            None => refused += 1,
        }
    }
    assert_eq!(held.len(), cap, "{refused} refused");
    // Another source still gets in.
    let other = client_at(
        &SigningKey::from_bytes(&[0x43; 32]),
        "127.0.0.2:0".parse().expect("addr"),
    )
    .await;
    let mut link = tcp_hello(&other, &to)
        .await
        .expect("another source is served");

    // A watch over TCP: refused, and why, before its ticket is looked at.
    let ticket = SignedTicket {
        ticket: Ticket {
            username: "nobody".into(),
            kind: AccountKind::Visitor,
            session_id: "s".into(),
            node_key: "00".into(),
            issued_at_ms: 0,
            expires_at_ms: 0,
        },
        signature: "00".into(),
    };
    link.send(Frame::Request {
        id: 1,
        body: peer::Request::Watch {
            ticket,
            stream_id: 1,
            proof: "00".into(),
        },
    })
    .await
    .expect("send");
    match tokio::time::timeout(DEADLINE, link.next()).await {
        Ok(Some(Ok(Frame::Response { result: Err(f), .. }))) => {
            assert_eq!(f.status, Status::BadRequest, "{f}");
            assert!(f.reason.contains("QUIC"), "{f}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    node.shutdown().await;
    server.stop().await;
}
