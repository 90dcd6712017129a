//! Admission on the peer link: a ticket is public (every stored message
//! carries its author's), so a host or streamer admits only a peer that
//! proves it holds the ticket's node key, and stops admitting a ticket
//! whose session has ended.

mod common;

use std::net::SocketAddr;

use common::{eventually, start_node, tempdir, Api, TestServer, DEADLINE};
use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use segchat_proto::stream::{encode, open, DatagramKind, Header, SessionKey};
use segchat_proto::ticket::{decode_nonce, prove, ProofPurpose, SignedTicket};
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::{peer, Failure, Frame, FrameCodec, Hello, LinkKind, Status};
use serde_json::json;
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::codec::Framed;

type Tracker = Framed<TcpStream, FrameCodec<Request, Reply, Event>>;
type PeerLink = Framed<TcpStream, FrameCodec<peer::Request, peer::Reply, peer::Event>>;

/// Request `id` on a bare tracker link, and its answer.
async fn ask(t: &mut Tracker, id: u32, body: Request) -> Result<Reply, Failure> {
    t.send(Frame::Request { id, body }).await.expect("send");
    loop {
        match t.next().await {
            Some(Ok(Frame::Response { id: got, result })) if got == id => return result,
            Some(Ok(_)) => continue,
            other => panic!("tracker link ended: {other:?}"),
        }
    }
}

/// A bare tracker link, signed in as a newly registered `name`.
async fn registered(server: SocketAddr, name: &str) -> Tracker {
    let mut t: Tracker = Framed::new(
        TcpStream::connect(server).await.expect("connect"),
        FrameCodec::default(),
    );
    t.send(Frame::Hello(Hello::new(LinkKind::Tracker, name)))
        .await
        .expect("hello");
    assert!(matches!(t.next().await, Some(Ok(Frame::Welcome(_)))));
    let register = Request::Register {
        username: name.into(),
        password: common::PASSWORD.into(),
    };
    ask(&mut t, 1, register).await.expect("register");
    t
}

/// A ticket for `key`, asked for on `t` as request `id`.
async fn ticket_for(t: &mut Tracker, id: u32, key: &SigningKey) -> SignedTicket {
    let node_key = hex::encode(key.verifying_key().as_bytes());
    match ask(t, id, Request::GetTicket { node_key }).await {
        Ok(Reply::Ticket(ticket)) => ticket,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

/// Opens a peer link to `addr` and sends `body(nonce)` as the first
/// request: the answer, and the link.
async fn first_request(
    addr: SocketAddr,
    body: impl FnOnce(&[u8; 32]) -> peer::Request,
) -> (PeerLink, Result<peer::Reply, Failure>) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let mut p: PeerLink = Framed::new(stream, FrameCodec::default());
    p.send(Frame::Hello(Hello::new(LinkKind::Peer, "raw")))
        .await
        .expect("hello");
    let nonce = match p.next().await {
        Some(Ok(Frame::Welcome(w))) => decode_nonce(&w.nonce).expect("a nonce in the welcome"),
        other => panic!("expected a welcome, got {other:?}"),
    };
    p.send(Frame::Request {
        id: 1,
        body: body(&nonce),
    })
    .await
    .expect("request");
    match tokio::time::timeout(DEADLINE, p.next()).await {
        Ok(Some(Ok(Frame::Response { result, .. }))) => (p, result),
        other => panic!("expected an answer, got {other:?}"),
    }
}

/// `peer_connect` to `channel` with `ticket`, proving `key`.
async fn peer_connect(
    addr: SocketAddr,
    key: &SigningKey,
    ticket: &SignedTicket,
    channel: &str,
) -> (PeerLink, Result<peer::Reply, Failure>) {
    first_request(addr, |nonce| peer::Request::PeerConnect {
        ticket: ticket.clone(),
        channel: channel.into(),
        proof: prove(key, nonce, ProofPurpose::PeerConnect { channel }).expect("prove"),
    })
    .await
}

/// `watch` of `stream_id` with `ticket`, proving `key`.
async fn watch(
    addr: SocketAddr,
    key: &SigningKey,
    ticket: &SignedTicket,
    stream_id: u64,
) -> (PeerLink, Result<peer::Reply, Failure>) {
    watch_on(addr, key, ticket, stream_id, 9).await
}

/// [`watch`] with frames to `udp_port`.
async fn watch_on(
    addr: SocketAddr,
    key: &SigningKey,
    ticket: &SignedTicket,
    stream_id: u64,
    udp_port: u16,
) -> (PeerLink, Result<peer::Reply, Failure>) {
    first_request(addr, |nonce| peer::Request::Watch {
        ticket: ticket.clone(),
        stream_id,
        udp_port,
        proof: prove(key, nonce, ProofPurpose::Watch { stream_id }).expect("prove"),
    })
    .await
}

fn refused_401(what: &str, answer: &Result<peer::Reply, Failure>) {
    match answer {
        Err(f) => assert_eq!(f.status, Status::Unauthorized, "{what}: {f}"),
        Ok(reply) => panic!("{what} was admitted: {reply:?}"),
    }
}

/// The node's P2P address.
async fn p2p_addr(a: &Api) -> SocketAddr {
    let (_, v) = a.get("/node").await;
    v["p2p_addr"]
        .as_str()
        .expect("p2p address")
        .parse()
        .expect("addr")
}

/// Alice's node with a public `lobby` (where she has said hello) and a
/// members-only `club`, which Bob (a bare client) joined.
struct Alice {
    server: TestServer,
    host: segchat_node::NodeHandle,
    a: Api,
    dirs: [(tempfile::TempDir, std::path::PathBuf); 2],
}

impl Alice {
    async fn start() -> Alice {
        let dirs = [tempdir(), tempdir()];
        let server = TestServer::start(&dirs[0].1).await;
        let host = start_node(server.addr, &dirs[1].1).await;
        let a = Api::of(&host);
        a.wait_connected().await;
        a.register("alice").await;
        for (name, visibility) in [("lobby", "public"), ("club", "members_only")] {
            let body = json!({"name": name, "visibility": visibility});
            a.ok(Method::POST, "/channels", Some(body)).await;
        }
        a.ok(
            Method::POST,
            "/channels/lobby/messages",
            Some(json!({"body": "hello"})),
        )
        .await;
        Alice {
            server,
            host,
            a,
            dirs,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dirs[1].1.join("logs").join("segchat.log")).unwrap_or_default()
    }
}

/// Alice's ticket as anyone can read it: off her message in the server's
/// backup of the public lobby.
async fn steal_alices_ticket(t: &mut Tracker) -> SignedTicket {
    let start = std::time::Instant::now();
    for id in 100.. {
        let history = Request::History {
            channel: "lobby".into(),
            after_seq: 0,
            limit: 10,
        };
        if let Ok(Reply::Messages { messages, .. }) = ask(t, id, history).await {
            if let Some(s) = messages.into_iter().find(|s| s.message.author == "alice") {
                return s.message.ticket;
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "alice's hello never reached the server's backup"
        );
        tokio::time::sleep(common::POLL).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_ticket_is_refused_by_the_host_and_the_streamer() {
    let alice = Alice::start().await;
    let addr = p2p_addr(&alice.a).await;
    let mut mallory = registered(alice.server.addr, "mallory").await;
    let stolen = steal_alices_ticket(&mut mallory).await;
    let mallory_key = SigningKey::from_bytes(&[9; 32]);

    // Bob, a member of the club, gets in with his own ticket and key.
    let mut bob = registered(alice.server.addr, "bob").await;
    let join = Request::JoinChannel {
        channel: "club".into(),
    };
    ask(&mut bob, 2, join).await.expect("join");
    let bob_key = SigningKey::from_bytes(&[5; 32]);
    let bob_ticket = ticket_for(&mut bob, 3, &bob_key).await;
    eventually("bob to be admitted to the club", || async {
        let (_, answer) = peer_connect(addr, &bob_key, &bob_ticket, "club").await;
        answer.is_ok().then_some(())
    })
    .await;

    // Mallory presents Alice's ticket: with a proof by her own key, with
    // none, and with Bob's proof for another link's nonce.
    let (_, answer) = peer_connect(addr, &mallory_key, &stolen, "club").await;
    refused_401("alice's ticket with mallory's proof", &answer);
    let (_, answer) = first_request(addr, |_| peer::Request::PeerConnect {
        ticket: stolen.clone(),
        channel: "club".into(),
        proof: String::new(),
    })
    .await;
    refused_401("alice's ticket with no proof", &answer);
    let replayed = prove(
        &bob_key,
        &[0; 32],
        ProofPurpose::PeerConnect { channel: "club" },
    )
    .expect("prove");
    let (_, answer) = first_request(addr, |_| peer::Request::PeerConnect {
        ticket: bob_ticket.clone(),
        channel: "club".into(),
        proof: replayed,
    })
    .await;
    refused_401("bob's ticket with a proof for another nonce", &answer);

    // Alice streams to the club: Mallory with Alice's ticket is refused
    // there too, Bob watches.
    let (status, v) = alice
        .a
        .post(
            "/streams",
            json!({"channel": "club", "source": "test_pattern", "width": 160, "height": 120, "fps": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let stream_id = v["stream"]["stream_id"].as_u64().expect("stream id");
    let (_, answer) = watch(addr, &mallory_key, &stolen, stream_id).await;
    refused_401("alice's ticket with mallory's proof on watch", &answer);
    let (_, answer) = watch(addr, &bob_key, &bob_ticket, stream_id).await;
    assert!(
        matches!(answer, Ok(peer::Reply::Watching { .. })),
        "bob may watch: {answer:?}"
    );

    // The host and the streamer log the refusals (the log is written
    // in the background).
    let log = eventually("both refusals in the log", || async {
        let log = alice.log();
        let refused = |what: &str| {
            log.lines().any(|l| {
                l.contains("] PEER_REFUSED |")
                    && l.contains("ticket_user=alice")
                    && l.contains(what)
            })
        };
        (refused("channel=club") && refused(&format!("stream={stream_id}"))).then_some(log.clone())
    })
    .await;
    assert!(
        !log.lines()
            .any(|l| l.contains("PEER_CONNECT") && l.contains("member=alice")),
        "alice's ticket was admitted: {log}"
    );
    alice.host.shutdown().await;
    alice.server.stop().await;
}

/// Reads `p` until the host closes it; false if it stays open.
async fn closed_by_host(p: &mut PeerLink) -> bool {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match p.next().await {
                None | Some(Err(_)) | Some(Ok(Frame::Error(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// Reads `p` until the streamer says `stream_id` ended.
async fn told_stream_ended(p: &mut PeerLink, stream_id: u64) -> bool {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match p.next().await {
                Some(Ok(Frame::Event(peer::Event::StreamEnded { stream_id: id, .. })))
                    if id == stream_id =>
                {
                    return true
                }
                None | Some(Err(_)) => return false,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_logout_a_ticket_is_refused_and_its_links_are_closed() {
    let alice = Alice::start().await;
    let addr = p2p_addr(&alice.a).await;
    let mut bob = registered(alice.server.addr, "bob").await;
    let join = Request::JoinChannel {
        channel: "club".into(),
    };
    ask(&mut bob, 2, join).await.expect("join");
    let key = SigningKey::from_bytes(&[5; 32]);
    let ticket = ticket_for(&mut bob, 3, &key).await;
    let mut link = eventually("bob to be admitted to the club", || async {
        let (p, answer) = peer_connect(addr, &key, &ticket, "club").await;
        answer.is_ok().then_some(p)
    })
    .await;
    let (status, v) = alice
        .a
        .post(
            "/streams",
            json!({"channel": "club", "source": "test_pattern", "width": 160, "height": 120, "fps": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let stream_id = v["stream"]["stream_id"].as_u64().expect("stream id");
    let (mut viewing, answer) = watch(addr, &key, &ticket, stream_id).await;
    assert!(
        matches!(answer, Ok(peer::Reply::Watching { .. })),
        "{answer:?}"
    );

    ask(&mut bob, 4, Request::Logout).await.expect("logout");

    assert!(
        closed_by_host(&mut link).await,
        "the host keeps a link admitted under a session that ended"
    );
    assert!(
        told_stream_ended(&mut viewing, stream_id).await,
        "the streamer keeps sending to a session that ended"
    );
    // Bob's own ticket with a valid proof of his own key: refused now.
    let (_, answer) = peer_connect(addr, &key, &ticket, "club").await;
    refused_401("a ticket of a session that ended", &answer);
    let (_, answer) = watch(addr, &key, &ticket, stream_id).await;
    refused_401("a ticket of a session that ended, on watch", &answer);
    eventually("the refusal in the log", || async {
        alice
            .log()
            .lines()
            .any(|l| l.contains("] PEER_REFUSED |") && l.contains("session has ended"))
            .then_some(())
    })
    .await;
    alice.host.shutdown().await;
    alice.server.stop().await;
}

/// The next datagram on `sock` opened under `key`: its header and payload.
async fn next_datagram(sock: &UdpSocket, key: &SessionKey) -> Option<(Header, Vec<u8>)> {
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(DEADLINE, sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    let (h, payload) = open(&buf[..n], key).ok()?;
    Some((h, payload.to_vec()))
}

/// Waits on `sock` for a datagram of `kind`; the first such.
async fn wait_for_kind(
    sock: &UdpSocket,
    key: &SessionKey,
    kind: DatagramKind,
) -> (Header, Vec<u8>) {
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            match next_datagram(sock, key).await {
                Some((h, p)) if h.kind == kind => return Some((h, p)),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await;
    match found {
        Ok(Some(found)) => found,
        _ => panic!("no {kind:?} datagram arrived"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_probe_moves_nothing_and_a_new_port_proves_itself() {
    let alice = Alice::start().await;
    let addr = p2p_addr(&alice.a).await;
    let mut bob = registered(alice.server.addr, "bob").await;
    let join = Request::JoinChannel {
        channel: "club".into(),
    };
    ask(&mut bob, 2, join).await.expect("join");
    let key = SigningKey::from_bytes(&[5; 32]);
    let ticket = ticket_for(&mut bob, 3, &key).await;
    let (status, v) = alice
        .a
        .post(
            "/streams",
            json!({"channel": "club", "source": "test_pattern", "width": 160, "height": 120, "fps": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let stream_id = v["stream"]["stream_id"].as_u64().expect("stream id");
    let streamer: SocketAddr = v["stream"]["udp_addr"]
        .as_str()
        .expect("udp address")
        .parse()
        .expect("addr");

    // Bob watches with frames to port A and probes from there.
    let a_sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let a_port = a_sock.local_addr().expect("addr").port();
    let (_link, answer) = watch_on(addr, &key, &ticket, stream_id, a_port).await;
    let (viewer_id, skey) = match answer {
        Ok(peer::Reply::Watching {
            viewer_id,
            session_key,
            ..
        }) => (
            viewer_id,
            SessionKey::from_hex(&session_key).expect("session key"),
        ),
        other => panic!("bob may watch: {other:?}"),
    };
    let probe = |counter: u64, answer: &[u8]| {
        let mut out = Vec::new();
        let h = Header::probe(stream_id, viewer_id, counter);
        encode(&h, answer, &skey, &mut out).expect("encode");
        out
    };
    a_sock
        .send_to(&probe(1, &[]), streamer)
        .await
        .expect("probe");
    wait_for_kind(&a_sock, &skey, DatagramKind::Chunk).await;

    // Mallory replays Bob's probe 1 from port M, and probe 2, which she
    // caught before it reached the streamer: M gets a challenge it cannot
    // answer, never a frame, and the frames keep going to A.
    let m_sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    m_sock
        .send_to(&probe(1, &[]), streamer)
        .await
        .expect("replay");
    m_sock
        .send_to(&probe(2, &[]), streamer)
        .await
        .expect("replay");
    let (challenge, _) = wait_for_kind(&m_sock, &skey, DatagramKind::Challenge).await;
    assert_eq!(challenge.frame, viewer_id);
    let (first, _) = wait_for_kind(&a_sock, &skey, DatagramKind::Chunk).await;
    loop {
        let (h, _) = wait_for_kind(&a_sock, &skey, DatagramKind::Chunk).await;
        if h.frame > first.frame + 1 {
            break;
        }
    }
    let mut buf = vec![0u8; 2048];
    while let Ok((n, _)) = m_sock.try_recv_from(&mut buf) {
        let (h, _) = open(&buf[..n], &skey).expect("from the streamer");
        assert_ne!(h.kind, DatagramKind::Chunk, "a replayed probe drew frames");
    }

    // Bob's port really changes to B: B probes, is challenged, answers
    // with the challenge's bytes under the session key, and gets frames.
    let b_sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    b_sock
        .send_to(&probe(3, &[]), streamer)
        .await
        .expect("probe");
    let (_, nonce) = wait_for_kind(&b_sock, &skey, DatagramKind::Challenge).await;
    b_sock
        .send_to(&probe(4, &nonce), streamer)
        .await
        .expect("answer");
    wait_for_kind(&b_sock, &skey, DatagramKind::Chunk).await;
    eventually("the move in the log", || async {
        alice
            .log()
            .lines()
            .any(|l| l.contains("] VIEWER_MOVED |") && l.contains(&format!("stream={stream_id}")))
            .then_some(())
    })
    .await;
    alice.host.shutdown().await;
    alice.server.stop().await;
}

/// Whether a peer link to `addr` gets a `welcome` (the node serves it).
async fn welcomed(addr: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let mut p: PeerLink = Framed::new(stream, FrameCodec::default());
    if p.send(Frame::Hello(Hello::new(LinkKind::Peer, "raw")))
        .await
        .is_err()
    {
        return false;
    }
    matches!(
        tokio::time::timeout(DEADLINE, p.next()).await,
        Ok(Some(Ok(Frame::Welcome(_))))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invisible_host_looks_offline_on_its_p2p_port() {
    let alice = Alice::start().await;
    let addr = p2p_addr(&alice.a).await;
    let mut bob = registered(alice.server.addr, "bob").await;
    let join = Request::JoinChannel {
        channel: "club".into(),
    };
    ask(&mut bob, 2, join).await.expect("join");
    let key = SigningKey::from_bytes(&[5; 32]);
    let ticket = ticket_for(&mut bob, 3, &key).await;
    let mut link = eventually("bob to be admitted to the club", || async {
        let (p, answer) = peer_connect(addr, &key, &ticket, "club").await;
        answer.is_ok().then_some(p)
    })
    .await;

    // Alice turns invisible: Bob's link is closed and nothing answers.
    let (status, v) = alice.a.put("/status", json!({"status": "invisible"})).await;
    assert!(status.is_success(), "{v}");
    assert!(
        closed_by_host(&mut link).await,
        "an invisible host keeps its members' links"
    );
    eventually("the P2P port to stop answering", || async {
        (!welcomed(addr).await).then_some(())
    })
    .await;
    assert!(!welcomed(addr).await, "an invisible node answers hello");

    // Visible again: Bob gets in.
    let (status, v) = alice.a.put("/status", json!({"status": "online"})).await;
    assert!(status.is_success(), "{v}");
    eventually("the P2P port to answer again", || async {
        welcomed(addr).await.then_some(())
    })
    .await;
    eventually("bob to be admitted again", || async {
        let (_, answer) = peer_connect(addr, &key, &ticket, "club").await;
        answer.is_ok().then_some(())
    })
    .await;
    alice.host.shutdown().await;
    alice.server.stop().await;
}
