//! The node's side of the secure transport: its one QUIC endpoint (keyed
//! by the node key), dialling other nodes, and peer connections as
//! datagram targets for livestreams.
//!
//! Chat and streams dial through [`Transport`]; incoming connections are
//! routed by the peer layer (`p2p`). Every dial names the node's key, so the
//! connection is to that node or fails: a host that answers with another
//! key is not the host.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use segchat_net::{Connection, Endpoint, PeerAddress, RecvStream, RelayUrl, SendStream};
use segchat_proto::types::NodeAddr;

/// The node's endpoint and the relay it shares with every other node of
/// its server.
#[derive(Debug, Clone)]
pub struct Transport {
    endpoint: Endpoint,
    relay: Option<RelayUrl>,
}

/// A dialled peer link: the connection and its first stream.
#[derive(Debug)]
pub(crate) struct Dialed {
    pub(crate) conn: Connection,
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
}

impl Transport {
    pub fn new(endpoint: Endpoint, relay: Option<RelayUrl>) -> Transport {
        Transport { endpoint, relay }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The server's relay, which this node dials peers through.
    pub fn relay(&self) -> Option<&RelayUrl> {
        self.relay.as_ref()
    }

    /// Opens a peer link to `node` within `timeout`: directly at its
    /// announced address where that works, through the relay where not.
    pub(crate) async fn dial(&self, node: &NodeAddr, timeout: Duration) -> Result<Dialed, String> {
        let open = async {
            let conn = self.connect(node, segchat_net::ALPN_PEER).await?;
            let (send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            Ok(Dialed { conn, send, recv })
        };
        tokio::time::timeout(timeout, open)
            .await
            .map_err(|_| format!("no answer within {} s", timeout.as_secs()))?
    }

    /// A connection to `node` for protocol `alpn` (no stream opened).
    pub(crate) async fn connect(&self, node: &NodeAddr, alpn: &[u8]) -> Result<Connection, String> {
        let id = segchat_net::parse_id(&node.node_id)
            .map_err(|e| format!("the server gave a bad node key: {e}"))?;
        let direct = Some(node.addr)
            .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
            .into_iter()
            .collect();
        let addr = PeerAddress {
            id,
            direct,
            relay: self.relay.clone(),
        };
        self.endpoint
            .connect(addr.to_endpoint_addr(), alpn)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Where a peer connection's packets go now, for logs: its direct address
/// or `relayed`.
pub(crate) fn path_of(conn: &Connection) -> segchat_net::path::PathKind {
    segchat_net::path::current(conn)
}

/// An address to log a peer connection under: the direct one, or the
/// unspecified address while relayed.
pub(crate) fn log_addr(conn: &Connection) -> SocketAddr {
    match path_of(conn) {
        segchat_net::path::PathKind::Direct(a) => a,
        _ => SocketAddr::from(([0, 0, 0, 0], 0)),
    }
}

/// A peer connection as the source or destination of stream datagrams;
/// two are equal when they are the same connection.
#[derive(Clone)]
pub(crate) struct Target(pub(crate) Connection);

impl PartialEq for Target {
    fn eq(&self, other: &Target) -> bool {
        self.0.stable_id() == other.0.stable_id()
    }
}

impl Eq for Target {}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = segchat_net::id_hex(&self.0.remote_id());
        write!(f, "{}… ({})", &id[..12], path_of(&self.0))
    }
}

impl Target {
    /// Sends one datagram; a full send buffer drops it (as UDP would).
    pub(crate) fn send(&self, bytes: &[u8]) -> usize {
        match self.0.send_datagram(bytes::Bytes::copy_from_slice(bytes)) {
            Ok(()) => bytes.len(),
            Err(e) => {
                tracing::trace!(target = %self, error = %e, "datagram not sent");
                0
            }
        }
    }
}
