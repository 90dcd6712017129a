//! The dialling side of a peer link, for protocols that open their own
//! (direct messages, files): dial the node by its key, `hello`, and the
//! `welcome`'s nonce that every ticket on the link is proven over.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use segchat_proto::ticket::{decode_nonce, NONCE_LEN};
use segchat_proto::types::NodeAddr;
use segchat_proto::{Frame, Hello, LinkKind};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::{PeerCodec, PeerFrame};
use crate::transport::Transport;

/// A peer link this node opened, past the handshake.
pub(crate) struct Dialled {
    pub(crate) conn: iroh::endpoint::Connection,
    pub(crate) reader: FramedRead<segchat_net::RecvStream, PeerCodec>,
    pub(crate) writer: FramedWrite<segchat_net::SendStream, PeerCodec>,
    /// The welcome's nonce: what proofs on this link sign.
    pub(crate) nonce: [u8; NONCE_LEN],
}

/// Dials `to` within `timeout` and does the handshake.
pub(crate) async fn open(
    transport: &Transport,
    to: &NodeAddr,
    timeout: Duration,
) -> Result<Dialled, String> {
    let dialed = transport.dial(to, timeout).await?;
    let mut reader = FramedRead::new(dialed.recv, PeerCodec::default());
    let mut writer = FramedWrite::new(dialed.send, PeerCodec::default());
    let hello: PeerFrame = Frame::Hello(Hello::new(LinkKind::Peer, crate::config::AGENT));
    writer.send(hello).await.map_err(|e| e.to_string())?;
    let nonce = match reader.next().await {
        Some(Ok(Frame::Welcome(w))) => decode_nonce(&w.nonce).map_err(|e| e.to_string())?,
        Some(Ok(Frame::Error(f))) => return Err(f.reason),
        _ => return Err("the peer broke the handshake".to_owned()),
    };
    Ok(Dialled {
        conn: dialed.conn,
        reader,
        writer,
        nonce,
    })
}
