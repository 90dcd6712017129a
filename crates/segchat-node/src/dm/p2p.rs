//! Direct messages on the peer layer: while the recipient's node is
//! online, a sealed envelope goes straight to it (`dm` on a peer link)
//! and the server never carries it; when that fails, the same envelope
//! goes to the server's mailbox.
//!
//! The receiving node checks who hands it over the way a host checks a
//! member: the server's ticket for the link's own key, proven over the
//! link's nonce and the envelope's id, so the username it stores the
//! message under is one the server vouched for on that key. A sender the
//! receiving user blocked is refused as the server would refuse it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use segchat_proto::mailbox::{Delivered, Envelope};
use segchat_proto::peer;
use segchat_proto::ticket::{decode_nonce, ProofPurpose};
use segchat_proto::types::{AccountKind, NodeAddr};
use segchat_proto::{Failure, Frame, Hello, LinkKind, Status};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::service::Dms;
use crate::p2p::{Answer, PeerCodec, PeerFrame, PeerLink, PeerProtocol, ProtocolLink};

/// How long handing a message to a peer may take before the server's
/// mailbox is used instead.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(3);

impl PeerProtocol for Dms {
    fn serves(&self, request: &peer::Request) -> bool {
        matches!(request, peer::Request::Dm { .. })
    }

    fn open(&self, _link: &PeerLink) -> Box<dyn ProtocolLink> {
        Box::new(DmLink(self.clone()))
    }
}

/// Direct messages' side of one peer link (no state of its own).
struct DmLink(Dms);

impl ProtocolLink for DmLink {
    fn request<'a>(
        &'a mut self,
        link: &'a PeerLink,
        _id: u32,
        request: peer::Request,
    ) -> BoxFuture<'a, Result<Answer, Failure>> {
        async move {
            let peer::Request::Dm {
                ticket,
                proof,
                envelope,
            } = request
            else {
                return Err(Failure::bad_request("not a direct message"));
            };
            let dms = &self.0;
            dms.chat().check_presented(
                link,
                &ticket,
                ProofPurpose::Dm { id: &envelope.id },
                &proof,
                "recipient",
            )?;
            if ticket.ticket.kind != AccountKind::User {
                return Err(Failure::forbidden("visitors cannot send direct messages"));
            }
            dms.spend_from(&ticket.ticket.username)?;
            if envelope.to_node != dms.chat().node_key() {
                return Err(Failure::not_found("this envelope is for another device"));
            }
            let delivered = Delivered {
                seq: 0,
                id: envelope.id,
                from: ticket.ticket.username.clone(),
                from_node: link.remote_key.clone(),
                body: envelope.body,
                stored_at_ms: crate::clock::now_ms(),
            };
            dms.receive_direct(&envelope.to, delivered).await?;
            // Admitted: the sender may keep the link for its next
            // messages (held while it is heard from, like a member's).
            Ok(Answer::Admitted(peer::Reply::DmKept { id: envelope.id }))
        }
        .boxed()
    }

    fn closed(&mut self, _link: &PeerLink) {}
}

/// An open link to a device's node, kept for the next message while it
/// lives (the receiver holds an admitted link while it hears from us
/// within its liveness window; a link that died is dialled again).
pub(crate) struct OpenLink {
    conn: iroh::endpoint::Connection,
    reader: FramedRead<segchat_net::RecvStream, PeerCodec>,
    writer: FramedWrite<segchat_net::SendStream, PeerCodec>,
    nonce: [u8; segchat_proto::ticket::NONCE_LEN],
    next_id: u32,
}

/// The links kept, by the device's node key: each behind its own lock, so
/// messages to one device go one at a time and others are not held up.
#[derive(Default)]
pub(crate) struct Links(Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<OpenLink>>>>>);

impl Links {
    fn slot(&self, node: &str) -> Arc<tokio::sync::Mutex<Option<OpenLink>>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Forget links that are gone, so the map stays as small as the
        // set of devices written to lately.
        map.retain(|_, l| Arc::strong_count(l) > 1 || l.try_lock().is_ok_and(|o| o.is_some()));
        map.entry(node.to_owned()).or_default().clone()
    }
}

/// Hands `envelope` to the node at `to` over a peer link (the one kept
/// for it, or a new one); `Ok` once that node stored it.
pub(crate) async fn hand_over(dms: &Dms, to: NodeAddr, envelope: &Envelope) -> Result<(), String> {
    let slot = dms.links().slot(&to.node_id);
    let mut held = slot.lock().await;
    let attempt = async {
        // A kept link may have died while idle: one new link then.
        let reused = held.is_some();
        if let Some(link) = held.as_mut() {
            match send_on(dms, link, envelope).await {
                Ok(()) => return Ok(()),
                Err(Refused(why)) => return Err(why),
                Err(Broken(_)) => *held = None,
            }
        }
        let mut link = open(dms, &to).await?;
        let sent = send_on(dms, &mut link, envelope).await;
        *held = Some(link);
        match sent {
            Ok(()) => Ok(()),
            Err(Refused(why) | Broken(why)) => {
                if !reused {
                    *held = None;
                }
                Err(why)
            }
        }
    };
    let result = tokio::time::timeout(HAND_OVER_TIMEOUT, attempt)
        .await
        .map_err(|_| "the peer did not answer in time".to_owned())
        .and_then(|r| r);
    if result.is_err() {
        if let Some(link) = held.take() {
            link.conn.close(0u32.into(), b"gone");
        }
    }
    result
}

/// Why a hand-over on a link failed.
enum SendError {
    /// The peer answered no: the link is fine.
    Refused(String),
    /// The link is not usable.
    Broken(String),
}
use SendError::{Broken, Refused};

/// Dials `to` and does the handshake.
async fn open(dms: &Dms, to: &NodeAddr) -> Result<OpenLink, String> {
    let dialed = dms.chat().dialer().dial(to, HAND_OVER_TIMEOUT).await?;
    let mut reader = FramedRead::new(dialed.recv, PeerCodec::default());
    let mut writer = FramedWrite::new(dialed.send, PeerCodec::default());
    let hello: PeerFrame = Frame::Hello(Hello::new(LinkKind::Peer, crate::config::AGENT));
    writer.send(hello).await.map_err(|e| e.to_string())?;
    let nonce = match reader.next().await {
        Some(Ok(Frame::Welcome(w))) => decode_nonce(&w.nonce).map_err(|e| e.to_string())?,
        Some(Ok(Frame::Error(f))) => return Err(f.reason),
        _ => return Err("the peer broke the handshake".into()),
    };
    Ok(OpenLink {
        conn: dialed.conn,
        reader,
        writer,
        nonce,
        next_id: 1,
    })
}

/// One `dm` request on `link` and its answer.
async fn send_on(dms: &Dms, link: &mut OpenLink, envelope: &Envelope) -> Result<(), SendError> {
    let ticket = dms
        .chat()
        .peer_ticket()
        .await
        .map_err(|f| Refused(f.to_string()))?;
    let proof = segchat_proto::ticket::prove(
        dms.node_signing_key(),
        &link.nonce,
        ProofPurpose::Dm { id: &envelope.id },
    )
    .map_err(|e| Refused(e.to_string()))?;
    let id = link.next_id;
    link.next_id = link.next_id.wrapping_add(1).max(1);
    let request: PeerFrame = Frame::Request {
        id,
        body: peer::Request::Dm {
            ticket,
            proof,
            envelope: envelope.clone(),
        },
    };
    link.writer
        .send(request)
        .await
        .map_err(|e| Broken(e.to_string()))?;
    let answer = loop {
        match link.reader.next().await {
            Some(Ok(Frame::Response { id: got, result })) if got == id => break result,
            Some(Ok(Frame::Error(f))) => return Err(Broken(f.reason)),
            Some(Ok(_)) => continue,
            _ => return Err(Broken("the peer closed the link".into())),
        }
    };
    match answer {
        Ok(peer::Reply::DmKept { id }) if id == envelope.id => Ok(()),
        Ok(other) => Err(Broken(format!("the peer answered {other:?}"))),
        Err(f) => Err(Refused(format!("{}: {}", f.status, f.reason))),
    }
}

/// The failure a peer gets when this node cannot keep its message.
pub(crate) fn not_kept(why: impl std::fmt::Display) -> Failure {
    Failure::new(Status::ServerError, format!("could not keep it: {why}"))
}
