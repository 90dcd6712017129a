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
            Ok(Answer::Reply(peer::Reply::DmKept { id: envelope.id }))
        }
        .boxed()
    }

    fn closed(&mut self, _link: &PeerLink) {}
}

/// Hands `envelope` to the node at `to` over a peer link; `Ok` once that
/// node stored it.
pub(crate) async fn hand_over(dms: &Dms, to: NodeAddr, envelope: &Envelope) -> Result<(), String> {
    let attempt = async {
        let chat = dms.chat();
        let ticket = chat.peer_ticket().await.map_err(|f| f.to_string())?;
        let dialed = chat.dialer().dial(&to, HAND_OVER_TIMEOUT).await?;
        let conn = dialed.conn.clone();
        let mut reader = FramedRead::new(dialed.recv, PeerCodec::default());
        let mut writer = FramedWrite::new(dialed.send, PeerCodec::default());
        let hello: PeerFrame = Frame::Hello(Hello::new(LinkKind::Peer, crate::config::AGENT));
        writer.send(hello).await.map_err(|e| e.to_string())?;
        let nonce = match reader.next().await {
            Some(Ok(Frame::Welcome(w))) => decode_nonce(&w.nonce).map_err(|e| e.to_string())?,
            Some(Ok(Frame::Error(f))) => return Err(f.reason),
            _ => return Err("the peer broke the handshake".into()),
        };
        let proof = segchat_proto::ticket::prove(
            dms.node_signing_key(),
            &nonce,
            ProofPurpose::Dm { id: &envelope.id },
        )
        .map_err(|e| e.to_string())?;
        let request: PeerFrame = Frame::Request {
            id: 1,
            body: peer::Request::Dm {
                ticket,
                proof,
                envelope: envelope.clone(),
            },
        };
        writer.send(request).await.map_err(|e| e.to_string())?;
        let answer = loop {
            match reader.next().await {
                Some(Ok(Frame::Response { id: 1, result })) => break result,
                Some(Ok(Frame::Error(f))) => return Err(f.reason),
                Some(Ok(_)) => continue,
                _ => return Err("the peer closed the link".into()),
            }
        };
        conn.close(0u32.into(), b"done");
        match answer {
            Ok(peer::Reply::DmKept { id }) if id == envelope.id => Ok(()),
            Ok(other) => Err(format!("the peer answered {other:?}")),
            Err(f) => Err(format!("{}: {}", f.status, f.reason)),
        }
    };
    tokio::time::timeout(HAND_OVER_TIMEOUT, attempt)
        .await
        .map_err(|_| "the peer did not answer in time".to_owned())?
}

/// The failure a peer gets when this node cannot keep its message.
pub(crate) fn not_kept(why: impl std::fmt::Display) -> Failure {
    Failure::new(Status::ServerError, format!("could not keep it: {why}"))
}
