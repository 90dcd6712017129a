//! Direct messages on the peer layer, the sending half: while a
//! recipient device's node is online, a sealed envelope goes straight to
//! it (`dm` on a peer link, kept open for the next one) and the server
//! never carries it; when that fails, the caller sends the same envelope
//! to the server's mailbox. The receiving half is `p2p.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use segchat_proto::mailbox::Envelope;
use segchat_proto::peer;
use segchat_proto::ticket::ProofPurpose;
use segchat_proto::types::NodeAddr;
use segchat_proto::Frame;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::chat::Chat;
use crate::p2p::{PeerCodec, PeerFrame};

/// How long a hand-over may take before the mailbox is used instead.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(3);

/// What handing over needs of the DM service: the links it keeps, the
/// chat handle (dialling, this node's ticket) and the node key.
pub(crate) struct HandOver<'a> {
    pub(crate) links: &'a Links,
    pub(crate) chat: &'a Chat,
    pub(crate) node: &'a SigningKey,
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
pub(crate) async fn hand_over(
    via: &HandOver<'_>,
    to: NodeAddr,
    envelope: &Envelope,
) -> Result<(), String> {
    let slot = via.links.slot(&to.node_id);
    let mut held = slot.lock().await;
    let attempt = async {
        // A kept link may have died while idle: one new link then.
        let reused = held.is_some();
        if let Some(link) = held.as_mut() {
            match send_on(via, link, envelope).await {
                Ok(()) => return Ok(()),
                Err(Refused(why)) => return Err(why),
                Err(Broken(_)) => *held = None,
            }
        }
        let mut link = open(via, &to).await?;
        let sent = send_on(via, &mut link, envelope).await;
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
async fn open(via: &HandOver<'_>, to: &NodeAddr) -> Result<OpenLink, String> {
    let d = crate::p2p::dial::open(via.chat.dialer(), to, HAND_OVER_TIMEOUT).await?;
    Ok(OpenLink {
        conn: d.conn,
        reader: d.reader,
        writer: d.writer,
        nonce: d.nonce,
        next_id: 1,
    })
}

/// One `dm` request on `link` and its answer.
async fn send_on(
    via: &HandOver<'_>,
    link: &mut OpenLink,
    envelope: &Envelope,
) -> Result<(), SendError> {
    let ticket = via
        .chat
        .peer_ticket()
        .await
        .map_err(|f| Refused(f.to_string()))?;
    let proof =
        segchat_proto::ticket::prove(via.node, &link.nonce, ProofPurpose::Dm { id: &envelope.id })
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
