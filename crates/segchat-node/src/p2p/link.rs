//! One peer link after its `hello`: the `welcome` (with the nonce every
//! ticket presented on the link must be proven over), liveness, and each
//! request handed to the protocol that serves it.
//!
//! Invariant: a link is held [`ADMIT_WITHIN`] in all until a protocol
//! admits it (a `peer_connect` or `watch` answered), then while it sends
//! a frame at least every [`LINK_IDLE`]. See ARCHITECTURE.md, "Peer link
//! liveness".

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use segchat_proto::peer;
use segchat_proto::ticket::NONCE_LEN;
use segchat_proto::{Failure, Frame, Welcome, PROTOCOL_VERSION};
use tokio_util::codec::FramedRead;

use super::codec::{encode, PeerFrame, PeerReadCodec};
use super::outbound::Outbound;
use super::{
    Answer, LinkRead, LinkWrite, PeerLink, PeerProtocol, PeerService, ProtocolLink, Remote,
};

/// How often a member pings when it has nothing else to send (the
/// welcome's `heartbeat_ms`). See ARCHITECTURE.md, "Peer link liveness".
const PING_EVERY: Duration = Duration::from_secs(2);
/// A link with no frame for this long is dropped (the welcome's
/// `peer_ttl_ms`): five missed pings, so a loaded member is not cut.
const LINK_IDLE: Duration = Duration::from_secs(10);
/// A link must be admitted (`peer_connect` or `watch` answered) this soon
/// after its welcome, whatever it sends meanwhile.
const ADMIT_WITHIN: Duration = Duration::from_secs(5);

static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

/// Serves one peer link after its `hello` was accepted, until it ends;
/// answers why it ended.
pub(super) async fn serve(
    router: &PeerService,
    mut reader: FramedRead<LinkRead, PeerReadCodec>,
    writer: LinkWrite,
    addr: SocketAddr,
    remote: Remote,
) -> String {
    let protocols = &router.protocols[..];
    let cancel = router.shutdown.child_token();
    let (out, write_task) =
        Outbound::start(Box::new(writer), cancel.clone(), router.log.clone(), addr);
    let link = PeerLink {
        id: NEXT_LINK.fetch_add(1, Ordering::Relaxed),
        addr,
        remote_id: remote.id,
        remote_key: segchat_net::id_hex(&remote.id),
        datagrams: remote.datagrams,
        path: remote.path,
        out,
        cancel: cancel.clone(),
        nonce: {
            let mut n = [0u8; NONCE_LEN];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut n);
            n
        },
    };
    let mut sides: Vec<Box<dyn ProtocolLink>> = protocols.iter().map(|p| p.open(&link)).collect();
    let state = router.server.state();
    let server_key = state.server_key.clone().unwrap_or_default();
    let welcome: PeerFrame = Frame::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        agent: crate::config::AGENT.into(),
        heartbeat_ms: PING_EVERY.as_millis() as u64,
        peer_ttl_ms: LINK_IDLE.as_millis() as u64,
        server_key,
        max_body_len: state.max_body_len() as u32,
        nonce: hex::encode(link.nonce),
        observed_addr: None,
    });
    let greeted = match encode(&welcome) {
        Some(b) => link.out.send(b).is_ok(),
        None => false,
    };
    let mut admitted = false;
    // Until admitted the link has ADMIT_WITHIN in all; then LINK_IDLE
    // from its last frame.
    let idle = tokio::time::sleep(ADMIT_WITHIN);
    tokio::pin!(idle);
    let reason = match greeted {
        true => loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => break "closed by host (slow consumer or shutdown)".to_string(),
                _ = &mut idle => {
                    let f = match admitted {
                        true => Failure::bad_request(format!(
                            "no frame for {} s (ping every {} s)",
                            LINK_IDLE.as_secs(),
                            PING_EVERY.as_secs()
                        )),
                        false => Failure::bad_request(format!(
                            "no peer_connect or watch admitted within {} s",
                            ADMIT_WITHIN.as_secs()
                        )),
                    };
                    let reason = format!("idle: {}", f.reason);
                    if let Some(b) = encode(&Frame::Error(f)) {
                        let _ = link.out.send(b);
                    }
                    break reason;
                }
                n = reader.next() => n,
            };
            if admitted {
                idle.as_mut().reset(tokio::time::Instant::now() + LINK_IDLE);
            }
            match next {
                None => break "closed by member".into(),
                Some(Err(e)) => {
                    let f = match &e {
                        segchat_proto::frame::CodecError::Decode(d) => d.to_failure(),
                        _ => Failure::bad_request(e.to_string()),
                    };
                    if let Some(b) = encode(&Frame::Error(f)) {
                        let _ = link.out.send(b);
                    }
                    break format!("bad frame: {e}");
                }
                // A whole request whose body could not be read: answered
                // 400, and the link carries on (PROTOCOL.md §1).
                Some(Ok(Err((id, reason)))) => {
                    let result = Err(Failure::bad_request(format!("malformed request: {reason}")));
                    if let Some(b) = encode(&Frame::Response { id, result }) {
                        if link.out.send(b).is_err() {
                            break "writer gone".into();
                        }
                    }
                }
                Some(Ok(Ok(Frame::Request { id, body }))) => {
                    let result = match route(protocols, &mut sides, &link, id, body).await {
                        // The protocol answers later itself (a queued post).
                        Ok(Answer::Later) => continue,
                        Ok(Answer::Reply(reply)) => Ok(reply),
                        Ok(Answer::Admitted(reply)) => {
                            if !admitted {
                                admitted = true;
                                idle.as_mut().reset(tokio::time::Instant::now() + LINK_IDLE);
                            }
                            Ok(reply)
                        }
                        Err(f) => Err(f),
                    };
                    let Some(b) = encode(&Frame::Response { id, result }) else {
                        continue;
                    };
                    if link.out.send(b).is_err() {
                        break "writer gone".into();
                    }
                }
                Some(Ok(Ok(other))) => {
                    let f = Failure::bad_request(format!(
                        "unexpected {:?} frame from a member",
                        other.kind()
                    ));
                    if let Some(b) = encode(&Frame::Error(f)) {
                        let _ = link.out.send(b);
                    }
                    break "unexpected frame".into();
                }
            }
        },
        false => "could not greet".into(),
    };
    for side in &mut sides {
        side.closed(&link);
    }
    // The last frames (an error, say) still go out; then the write side
    // is shut down.
    link.out.close();
    drop(sides);
    drop(link);
    let _ = tokio::time::timeout(Duration::from_secs(2), write_task).await;
    cancel.cancel();
    reason
}

/// Hands request `id` to the protocol that serves it; `ping` is the
/// link's own.
async fn route(
    protocols: &[std::sync::Arc<dyn PeerProtocol>],
    sides: &mut [Box<dyn ProtocolLink>],
    link: &PeerLink,
    id: u32,
    body: peer::Request,
) -> Result<Answer, Failure> {
    if matches!(body, peer::Request::Ping) {
        return Ok(Answer::Reply(peer::Reply::Pong));
    }
    match protocols.iter().position(|p| p.serves(&body)) {
        Some(i) => sides[i].request(link, id, body).await,
        None => Err(Failure::unavailable(
            "this node does not serve that request",
        )),
    }
}
