//! Direct messages on the peer layer, the receiving half: `dm` on a peer
//! link, a sealed envelope handed straight to this node while it is
//! online, so the server never carries it (the sending half is
//! `handover.rs`).
//!
//! The receiving node checks who hands it over the way a host checks a
//! member: the server's ticket for the link's own key, proven over the
//! link's nonce and the envelope's id, so the username it stores the
//! message under is one the server vouched for on that key. A sender the
//! receiving user blocked is refused as the server would refuse it.

use futures::future::BoxFuture;
use futures::FutureExt;
use segchat_proto::mailbox::Delivered;
use segchat_proto::peer;
use segchat_proto::ticket::ProofPurpose;
use segchat_proto::types::AccountKind;
use segchat_proto::Failure;

use super::service::Dms;
use crate::p2p::{Answer, PeerLink, PeerProtocol, ProtocolLink};

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
