//! Admission to this node's peer services: the one check of the ticket a
//! peer presents (`peer_connect` to a host, `watch` to a streamer) —
//! signed by the server, not expired, not revoked, and the peer's own
//! (the transport's authenticated key is the ticket's node key, and proof
//! of possession) — and the sessions the server said have ended.
//! Shared by chat and livestreams (the host and the streamer); depends on
//! neither.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use segchat_log::SystemLog;
use segchat_proto::ticket::{ProofPurpose, NONCE_LEN};
use segchat_proto::Failure;

/// Checks the ticket a peer presents (`peer_connect`, `watch`): signed by
/// the server whose key this node learned, not expired, and the peer's
/// own: `proof` is the ticket's node key's signature over this link's
/// welcome `nonce` and `purpose`. A ticket that fails is refused 401 and
/// the refusal goes to the system log (`PEER_REFUSED`). `role` names this
/// node in the refusal ("host", "streamer").
pub(crate) fn check_peer_ticket(
    server_key: Option<ed25519_dalek::VerifyingKey>,
    presented: Presented<'_>,
    revoked: &Revoked,
    log: &SystemLog,
    role: &str,
) -> Result<(), Failure> {
    let server_key = server_key.ok_or_else(|| {
        Failure::unavailable(format!("this {role} has not met the server yet; try again"))
    })?;
    let Presented {
        ticket,
        nonce,
        purpose,
        proof,
        addr,
        transport_key,
    } = presented;
    let now = crate::clock::now_ms();
    let checked = ticket
        .verify(&server_key, Some(now))
        .map_err(|e| e.to_string())
        .and_then(|()| match ticket.ticket.node_key == transport_key {
            true => Ok(()),
            false => Err(format!(
                "it was issued to node key {}…, but this connection is keyed by {}…",
                ticket
                    .ticket
                    .node_key
                    .get(..12)
                    .unwrap_or(&ticket.ticket.node_key),
                transport_key.get(..12).unwrap_or(transport_key)
            )),
        })
        .and_then(
            |()| match revoked.is_revoked(&ticket.ticket.session_id, now) {
                true => Err("its session has ended".to_owned()),
                false => Ok(()),
            },
        )
        .and_then(|()| {
            ticket
                .check_proof(nonce, purpose, proof)
                .map_err(|e| e.to_string())
        });
    checked.map_err(|e| {
        let what = match purpose {
            ProofPurpose::PeerConnect { channel } => format!("channel={channel}"),
            ProofPurpose::Watch { stream_id } => format!("stream={stream_id}"),
            ProofPurpose::Dm { id } => format!("dm={id}"),
            ProofPurpose::File { hash } => format!("file={hash}"),
        };
        log.record(
            "PEER_REFUSED",
            addr,
            format!(
                "{what} ticket_user={} session={} reason={e}",
                ticket.ticket.username, ticket.ticket.session_id
            ),
        );
        Failure::unauthorized(format!("ticket refused: {e}"))
    })
}

/// Sessions the server said have ended (`session_revoked`), each until
/// the last ticket issued to it expires: their tickets are refused.
/// Shared by the host and the streamer; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Revoked(Arc<std::sync::Mutex<HashMap<String, u64>>>);

/// Most revoked sessions remembered; past it the one whose tickets expire
/// first is forgotten (a server is trusted, but memory stays bounded).
const MAX_REVOKED: usize = 65_536;

impl Revoked {
    /// Remembers that `session_id` ended; its tickets expire by `until_ms`.
    pub(crate) fn revoke(&self, session_id: String, until_ms: u64) {
        let now = crate::clock::now_ms();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, until| *until > now);
        if map.len() >= MAX_REVOKED {
            let first = map.iter().min_by_key(|(_, u)| **u).map(|(s, _)| s.clone());
            if let Some(first) = first {
                map.remove(&first);
            }
        }
        map.insert(session_id, until_ms);
    }

    pub(crate) fn is_revoked(&self, session_id: &str, now_ms: u64) -> bool {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(session_id).is_some_and(|until| *until > now_ms)
    }
}

/// What a peer presents to be admitted, with the link it came on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Presented<'a> {
    pub ticket: &'a segchat_proto::ticket::SignedTicket,
    /// The nonce this link's `welcome` carried.
    pub nonce: &'a [u8; NONCE_LEN],
    pub purpose: ProofPurpose<'a>,
    pub proof: &'a str,
    pub addr: SocketAddr,
    /// The key the link's transport authenticated (hex): the ticket must
    /// be this key's, so a ticket copied from elsewhere is worthless.
    pub transport_key: &'a str,
}
