//! Admission on the peer link: a ticket is public (every stored message
//! carries its author's), so a host or streamer admits only a peer that
//! proves it holds the ticket's node key, and stops admitting a ticket
//! whose session has ended.

mod common;

use common::{
    ask, client, eventually, first_request, hello_peer, peer_connect, registered, start_node,
    tempdir, ticket_for, try_open_peer, watch, Api, PeerLink, TestServer, Tracker, DEADLINE,
};
use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use segchat_net::Connection;
use segchat_proto::stream::{encode, open, DatagramKind, Header, SessionKey};
use segchat_proto::ticket::{prove, ProofPurpose, SignedTicket};
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::types::NodeAddr;
use segchat_proto::{peer, Failure, Frame, Hello, LinkKind, Status};
use serde_json::json;

/// The reason a host gives for a ticket presented over a connection keyed
/// by another key than the ticket's.
const NOT_THIS_KEY: &str = "but this connection is keyed by";

fn refused_401(what: &str, answer: &Result<peer::Reply, Failure>) {
    match answer {
        Err(f) => assert_eq!(f.status, Status::Unauthorized, "{what}: {f}"),
        Ok(reply) => panic!("{what} was admitted: {reply:?}"),
    }
}

/// [`refused_401`], and the reason says `why`.
fn refused_401_for(what: &str, answer: &Result<peer::Reply, Failure>, why: &str) {
    refused_401(what, answer);
    if let Err(f) = answer {
        assert!(f.reason.contains(why), "{what}: {f}");
    }
}

/// Alice's node with a public `lobby` (where she has said hello) and a
/// members-only `club`.
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

    /// Starts a test-pattern stream in the club at `fps`; its id.
    async fn stream_to_club(&self, fps: u8) -> u64 {
        let (status, v) = self
            .a
            .post(
                "/streams",
                json!({"channel": "club", "source": "test_pattern", "width": 160, "height": 120, "fps": fps}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["stream"]["stream_id"].as_u64().expect("stream id")
    }

    /// A raw member of the club named `name`: its tracker link, signed in,
    /// and a ticket for `key` (request ids 1 to 3 are used).
    async fn member(
        &self,
        client: &segchat_net::client::Client,
        name: &str,
        key: &SigningKey,
    ) -> (Tracker, SignedTicket) {
        let mut t = registered(client, self.server.addr, name).await;
        let join = Request::JoinChannel {
            channel: "club".into(),
        };
        ask(&mut t, 2, join).await.expect("join");
        let ticket = ticket_for(&mut t, 3, key).await;
        (t, ticket)
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

/// Whether the host's log has a `PEER_REFUSED` line with all of `what`.
fn refusal_logged(log: &str, what: &[&str]) -> bool {
    log.lines()
        .any(|l| l.contains("] PEER_REFUSED |") && what.iter().all(|w| l.contains(w)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_ticket_is_refused_by_the_host_and_the_streamer() {
    let alice = Alice::start().await;
    let host = alice.a.node_addr().await;
    let mallory_key = SigningKey::from_bytes(&[9; 32]);
    let mallory = client(&mallory_key).await;
    let mut mallory_t = registered(&mallory, alice.server.addr, "mallory").await;
    let stolen = steal_alices_ticket(&mut mallory_t).await;

    // Bob, a member of the club, gets in with his own ticket and key.
    let bob_key = SigningKey::from_bytes(&[5; 32]);
    let bob = client(&bob_key).await;
    let (_bob_t, bob_ticket) = alice.member(&bob, "bob", &bob_key).await;
    eventually("bob to be admitted to the club", || async {
        let (_, answer) = peer_connect(&bob, &host, &bob_key, &bob_ticket, "club").await;
        answer.is_ok().then_some(())
    })
    .await;

    // Mallory presents Alice's ticket over her own connection (keyed by
    // her key, as every connection of hers is): with a proof by her own
    // key, and with none. The host refuses the ticket as not this
    // connection's before it looks at the proof.
    let (_, answer) = peer_connect(&mallory, &host, &mallory_key, &stolen, "club").await;
    refused_401_for("alice's ticket with mallory's proof", &answer, NOT_THIS_KEY);
    let (_, answer) = first_request(&mallory, &host, |_| peer::Request::PeerConnect {
        ticket: stolen.clone(),
        channel: "club".into(),
        proof: String::new(),
    })
    .await;
    refused_401_for("alice's ticket with no proof", &answer, NOT_THIS_KEY);
    // Bob's own ticket over his own connection (the key check passes) with
    // his proof for another link's nonce: the proof check refuses it.
    let replayed = prove(
        &bob_key,
        &[0; 32],
        ProofPurpose::PeerConnect { channel: "club" },
    )
    .expect("prove");
    let (_, answer) = first_request(&bob, &host, |_| peer::Request::PeerConnect {
        ticket: bob_ticket.clone(),
        channel: "club".into(),
        proof: replayed,
    })
    .await;
    refused_401_for(
        "bob's ticket with a proof for another nonce",
        &answer,
        "the proof is not signed by the ticket's node key",
    );

    // Alice streams to the club: Mallory with Alice's ticket is refused
    // there too, Bob watches.
    let stream_id = alice.stream_to_club(5).await;
    let (_, answer) = watch(&mallory, &host, &mallory_key, &stolen, stream_id).await;
    refused_401_for(
        "alice's ticket with mallory's proof on watch",
        &answer,
        NOT_THIS_KEY,
    );
    let (_, answer) = watch(&bob, &host, &bob_key, &bob_ticket, stream_id).await;
    assert!(
        matches!(answer, Ok(peer::Reply::Watching { .. })),
        "bob may watch: {answer:?}"
    );

    // The host and the streamer log the refusals (the log is written
    // in the background).
    let log = eventually("both refusals in the log", || async {
        let log = alice.log();
        let stream = format!("stream={stream_id}");
        (refusal_logged(&log, &["ticket_user=alice", "channel=club"])
            && refusal_logged(&log, &["ticket_user=alice", &stream]))
        .then_some(log)
    })
    .await;
    assert!(
        !log.lines()
            .any(|l| l.contains("PEER_CONNECT") && l.contains("member=alice")),
        "alice's ticket was admitted: {log}"
    );
    alice.host.shutdown().await;
    alice.server.stop().await;
    for c in [mallory, bob] {
        c.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_ticket_over_a_transport_keyed_by_another_key_is_refused() {
    let alice = Alice::start().await;
    let host = alice.a.node_addr().await;
    // Bob's ticket is issued for key A; he holds both A and B.
    let key_a = SigningKey::from_bytes(&[5; 32]);
    let key_b = SigningKey::from_bytes(&[6; 32]);
    let (as_a, as_b) = (client(&key_a).await, client(&key_b).await);
    let (_t, ticket) = alice.member(&as_a, "bob", &key_a).await;

    // Over a connection keyed by A, the ticket gets in: it is valid, of a
    // live session, of a member.
    eventually("bob to be admitted to the club", || async {
        let (_, answer) = peer_connect(&as_a, &host, &key_a, &ticket, "club").await;
        answer.is_ok().then_some(())
    })
    .await;

    // The same ticket with a valid proof by A, over a connection keyed by
    // B: refused, and the reason names both keys.
    let (_, answer) = peer_connect(&as_b, &host, &key_a, &ticket, "club").await;
    refused_401_for("ticket A over transport B", &answer, NOT_THIS_KEY);
    let reason = answer.expect_err("refused").reason;
    let (a_hex, b_hex) = (
        hex::encode(key_a.verifying_key().as_bytes()),
        hex::encode(key_b.verifying_key().as_bytes()),
    );
    assert!(
        reason.contains(&a_hex[..12]) && reason.contains(&b_hex[..12]),
        "{reason}"
    );

    // The streamer refuses it the same way, and admits it over A.
    let stream_id = alice.stream_to_club(5).await;
    let (_, answer) = watch(&as_b, &host, &key_a, &ticket, stream_id).await;
    refused_401_for("ticket A over transport B, on watch", &answer, NOT_THIS_KEY);
    let (_, answer) = watch(&as_a, &host, &key_a, &ticket, stream_id).await;
    assert!(
        matches!(answer, Ok(peer::Reply::Watching { .. })),
        "over A bob may watch: {answer:?}"
    );

    let stream = format!("stream={stream_id}");
    eventually("both refusals in the log", || async {
        let log = alice.log();
        let keyed = format!("reason=it was issued to node key {}", &a_hex[..12]);
        (refusal_logged(&log, &["ticket_user=bob", "channel=club", &keyed])
            && refusal_logged(&log, &["ticket_user=bob", &stream, &keyed]))
        .then_some(())
    })
    .await;
    alice.host.shutdown().await;
    alice.server.stop().await;
    for c in [as_a, as_b] {
        c.close().await;
    }
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
    let host = alice.a.node_addr().await;
    let key = SigningKey::from_bytes(&[5; 32]);
    let bob = client(&key).await;
    let (mut bob_t, ticket) = alice.member(&bob, "bob", &key).await;
    let mut link = eventually("bob to be admitted to the club", || async {
        let (p, answer) = peer_connect(&bob, &host, &key, &ticket, "club").await;
        answer.is_ok().then_some(p)
    })
    .await;
    let stream_id = alice.stream_to_club(5).await;
    let (mut viewing, answer) = watch(&bob, &host, &key, &ticket, stream_id).await;
    assert!(
        matches!(answer, Ok(peer::Reply::Watching { .. })),
        "{answer:?}"
    );

    ask(&mut bob_t, 4, Request::Logout).await.expect("logout");

    assert!(
        closed_by_host(&mut link).await,
        "the host keeps a link admitted under a session that ended"
    );
    assert!(
        told_stream_ended(&mut viewing, stream_id).await,
        "the streamer keeps sending to a session that ended"
    );
    // Bob's own ticket with a valid proof of his own key, over his own
    // connection: refused now.
    let (_, answer) = peer_connect(&bob, &host, &key, &ticket, "club").await;
    refused_401_for(
        "a ticket of a session that ended",
        &answer,
        "session has ended",
    );
    let (_, answer) = watch(&bob, &host, &key, &ticket, stream_id).await;
    refused_401_for(
        "a ticket of a session that ended, on watch",
        &answer,
        "session has ended",
    );
    eventually("the refusal in the log", || async {
        refusal_logged(&alice.log(), &["session has ended"]).then_some(())
    })
    .await;
    alice.host.shutdown().await;
    alice.server.stop().await;
    bob.close().await;
}

/// The next datagram on `conn` opened under `key`: its header and payload.
async fn next_datagram(conn: &Connection, key: &SessionKey) -> Option<(Header, Vec<u8>)> {
    let bytes = tokio::time::timeout(DEADLINE, conn.read_datagram())
        .await
        .ok()?
        .ok()?;
    let (h, payload) = open(&bytes, key).ok()?;
    Some((h, payload.to_vec()))
}

/// Waits on `conn` for a datagram of `kind`; the first such.
async fn wait_for_kind(
    conn: &Connection,
    key: &SessionKey,
    kind: DatagramKind,
) -> (Header, Vec<u8>) {
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            match next_datagram(conn, key).await {
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

/// Sends one datagram on `conn`.
fn send_datagram(conn: &Connection, bytes: Vec<u8>) {
    conn.send_datagram(bytes.into()).expect("datagram");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_probe_moves_nothing_and_a_new_connection_proves_itself() {
    let alice = Alice::start().await;
    let host = alice.a.node_addr().await;
    let key = SigningKey::from_bytes(&[5; 32]);
    let bob = client(&key).await;
    let (_bob_t, ticket) = alice.member(&bob, "bob", &key).await;
    let stream_id = alice.stream_to_club(10).await;

    // Bob watches on connection A: the frames come as datagrams on it,
    // and he probes on it.
    let (link_a, answer) = watch(&bob, &host, &key, &ticket, stream_id).await;
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
    let a = &link_a.conn;
    send_datagram(a, probe(1, &[]));
    wait_for_kind(a, &skey, DatagramKind::Chunk).await;

    // Mallory, on a peer connection of her own to the streamer, replays
    // Bob's probe 1, and probe 2, which she caught before it reached the
    // streamer: her connection gets a challenge it cannot answer, never a
    // frame, and the frames keep going to A.
    let mallory = client(&SigningKey::from_bytes(&[9; 32])).await;
    let (link_m, _) = hello_peer(&mallory, &host, "mallory").await;
    let m = &link_m.conn;
    send_datagram(m, probe(1, &[]));
    send_datagram(m, probe(2, &[]));
    let (challenge, _) = wait_for_kind(m, &skey, DatagramKind::Challenge).await;
    assert_eq!(challenge.frame, viewer_id);
    let (first, _) = wait_for_kind(a, &skey, DatagramKind::Chunk).await;
    loop {
        let (h, _) = wait_for_kind(a, &skey, DatagramKind::Chunk).await;
        if h.frame > first.frame + 1 {
            break;
        }
    }
    while let Ok(Ok(bytes)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), m.read_datagram()).await
    {
        let (h, _) = open(&bytes, &skey).expect("from the streamer");
        assert_ne!(h.kind, DatagramKind::Chunk, "a replayed probe drew frames");
    }

    // Bob's path really changes: a new connection B probes, is
    // challenged, answers with the challenge's bytes under the session
    // key, and gets the frames.
    let (link_b, _) = hello_peer(&bob, &host, "bob").await;
    let b = &link_b.conn;
    send_datagram(b, probe(3, &[]));
    let (_, nonce) = wait_for_kind(b, &skey, DatagramKind::Challenge).await;
    send_datagram(b, probe(4, &nonce));
    wait_for_kind(b, &skey, DatagramKind::Chunk).await;
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
    for c in [bob, mallory] {
        c.close().await;
    }
}

/// Whether a peer link from `client` to `to` gets a `welcome` (the node
/// serves it).
async fn welcomed(client: &segchat_net::client::Client, to: &NodeAddr) -> bool {
    let Ok(mut p) = try_open_peer::<_, _, _>(client, to).await else {
        return false;
    };
    let p: &mut PeerLink = &mut p;
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
    let host = alice.a.node_addr().await;
    let key = SigningKey::from_bytes(&[5; 32]);
    let bob = client(&key).await;
    let (_bob_t, ticket) = alice.member(&bob, "bob", &key).await;
    let mut link = eventually("bob to be admitted to the club", || async {
        let (p, answer) = peer_connect(&bob, &host, &key, &ticket, "club").await;
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
        (!welcomed(&bob, &host).await).then_some(())
    })
    .await;
    assert!(
        !welcomed(&bob, &host).await,
        "an invisible node answers hello"
    );

    // Visible again: Bob gets in.
    let (status, v) = alice.a.put("/status", json!({"status": "online"})).await;
    assert!(status.is_success(), "{v}");
    eventually("the P2P port to answer again", || async {
        welcomed(&bob, &host).await.then_some(())
    })
    .await;
    eventually("bob to be admitted again", || async {
        let (_, answer) = peer_connect(&bob, &host, &key, &ticket, "club").await;
        answer.is_ok().then_some(())
    })
    .await;
    alice.host.shutdown().await;
    alice.server.stop().await;
    bob.close().await;
}
