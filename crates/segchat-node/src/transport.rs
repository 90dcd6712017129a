//! The node's side of the secure transport: its one QUIC endpoint (keyed
//! by the node key), dialling other nodes, and peer connections as
//! datagram targets for livestreams.
//!
//! Chat and streams dial through [`Transport`]; incoming connections are
//! routed by the peer layer (`p2p`). Every dial names the node's key, so the
//! connection is to that node or fails: a host that answers with another
//! key is not the host.
//!
//! A member's chat link to its host goes over TLS on TCP where the host's
//! announced address takes it ([`Transport::dial_chat`]; see
//! `segchat_net::tls` for why), over QUIC where not.
//!
//! The relay is used on demand (`crate::relay`): a node whose UDP gets
//! through keeps no relay connection. A dial that the direct path has not
//! answered within [`REACH_AFTER`] asks the server to bring the other
//! node onto the relay (`reach`), and a node asked so
//! ([`Transport::wake_relay`]) sends the dialler a packet through the
//! relay, which opens its own relay connection for as long as it carries
//! traffic (iroh closes a relay connection that is not its home relay
//! after 60 s without any).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use segchat_net::tls::ClientStream;
use segchat_net::{Connection, Endpoint, PeerAddress, RecvStream, RelayUrl, SendStream};
use segchat_proto::types::NodeAddr;
use tokio::io::{ReadHalf, WriteHalf};
use tokio_util::either::Either;

/// How long a dial waits for the direct path before it asks the server
/// to bring the other node onto the relay. On a path that works the link
/// is up long before (a round trip or two).
pub(crate) const REACH_AFTER: Duration = Duration::from_millis(200);

/// The protocol of a relay wake-up: no node accepts it. The connection
/// attempt is refused, and its only purpose is done by then: its packets
/// went out through the relay, which opened this node's relay connection.
pub(crate) const ALPN_WAKE: &[u8] = b"segchat/relay-wake/1";
/// How long a wake-up may take.
const WAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// When a chat dial's QUIC attempt is up first, how much longer than it
/// took the TCP attempt may still take (TLS on TCP needs a round trip
/// more than QUIC).
const TCP_GRACE: Duration = Duration::from_millis(50);

/// The node's endpoint and the relay it shares with every other node of
/// its server.
#[derive(Debug, Clone)]
pub struct Transport {
    endpoint: Endpoint,
    relay: Option<RelayUrl>,
    /// Where a dial's "bring this node onto the relay" goes (node keys,
    /// hex; `crate::relay` asks the server). Full: the ask is dropped.
    reach: Option<tokio::sync::mpsc::Sender<String>>,
    /// The node key, which chat links over TCP are keyed by; without it
    /// chat dials QUIC only.
    tcp_key: Option<ed25519_dalek::SigningKey>,
}

/// A dialled peer link: the connection and its first stream.
#[derive(Debug)]
pub(crate) struct Dialed {
    pub(crate) conn: Connection,
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
}

/// A chat link's read and write halves: a QUIC stream's or a TLS over TCP
/// connection's.
pub(crate) type ChatRead = Either<RecvStream, ReadHalf<ClientStream>>;
pub(crate) type ChatWrite = Either<SendStream, WriteHalf<ClientStream>>;

/// A dialled chat link.
#[derive(Debug)]
pub(crate) struct ChatDialed {
    /// The QUIC connection, held while the link lives (`None` on TCP).
    pub(crate) conn: Option<Connection>,
    pub(crate) send: ChatWrite,
    pub(crate) recv: ChatRead,
    /// `tcp` or the QUIC path, for the log.
    pub(crate) path: String,
}

impl From<Dialed> for ChatDialed {
    fn from(d: Dialed) -> ChatDialed {
        ChatDialed {
            path: path_of(&d.conn).to_string(),
            conn: Some(d.conn),
            send: Either::Left(d.send),
            recv: Either::Left(d.recv),
        }
    }
}

impl From<ClientStream> for ChatDialed {
    fn from(s: ClientStream) -> ChatDialed {
        let (recv, send) = tokio::io::split(s);
        ChatDialed {
            conn: None,
            send: Either::Right(send),
            recv: Either::Right(recv),
            path: "tcp".into(),
        }
    }
}

impl Transport {
    pub fn new(endpoint: Endpoint, relay: Option<RelayUrl>) -> Transport {
        Transport {
            endpoint,
            relay,
            reach: None,
            tcp_key: None,
        }
    }

    /// The same, dialling chat links over TCP too, keyed by `key` (the
    /// endpoint's own).
    pub fn with_tcp(self, key: ed25519_dalek::SigningKey) -> Transport {
        Transport {
            tcp_key: Some(key),
            ..self
        }
    }

    /// The same, asking `reach` to bring the nodes it dials onto the
    /// relay when their direct path does not answer soon.
    pub fn with_reach(self, reach: tokio::sync::mpsc::Sender<String>) -> Transport {
        Transport {
            reach: Some(reach),
            ..self
        }
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

    /// Opens a chat link to `node` within `timeout`: TLS over TCP at its
    /// announced address and QUIC ([`Transport::dial`]) at once. TCP is
    /// taken when it comes up first, or when it comes up soon after QUIC
    /// ([`TCP_GRACE`] more than QUIC took); QUIC otherwise (a host behind
    /// NAT or a firewall takes no TCP from outside, and the relay is QUIC's).
    pub(crate) async fn dial_chat(
        &self,
        node: &NodeAddr,
        timeout: Duration,
    ) -> Result<ChatDialed, String> {
        let Some(key) = self.tcp_key.as_ref().filter(|_| usable(node.addr)) else {
            return self.dial(node, timeout).await.map(ChatDialed::from);
        };
        let id = segchat_net::parse_id(&node.node_id)
            .map_err(|e| format!("the server gave a bad node key: {e}"))?;
        let started = tokio::time::Instant::now();
        let tcp = segchat_net::tls::connect_peer(node.addr, None, key, id, timeout);
        let quic = self.dial(node, timeout);
        tokio::pin!(tcp, quic);
        tokio::select! {
            biased;
            done = &mut tcp => match done {
                Ok(s) => Ok(s.into()),
                Err(e) => {
                    tracing::debug!(error = %e, to = %node.addr, "no chat link over TCP; QUIC");
                    quic.await.map(ChatDialed::from)
                }
            },
            done = &mut quic => match done {
                Ok(q) => {
                    let grace = started.elapsed() + TCP_GRACE;
                    match tokio::time::timeout(grace, &mut tcp).await {
                        Ok(Ok(s)) => {
                            q.conn.close(0u32.into(), b"took TCP");
                            Ok(s.into())
                        }
                        _ => Ok(q.into()),
                    }
                }
                Err(e) => tcp
                    .await
                    .map(ChatDialed::from)
                    .map_err(|t| format!("{e} (and over TCP: {t})")),
            },
        }
    }

    /// A connection to `node` for protocol `alpn` (no stream opened): at
    /// its announced address first; if that has not answered within
    /// [`REACH_AFTER`], the node is asked onto the relay (`reach`) and a
    /// second attempt goes through it too (iroh then punches a direct path
    /// where the NATs allow). The first connection up wins. A node with
    /// no usable announced address is dialled through the relay at once.
    pub(crate) async fn connect(&self, node: &NodeAddr, alpn: &[u8]) -> Result<Connection, String> {
        let id = segchat_net::parse_id(&node.node_id)
            .map_err(|e| format!("the server gave a bad node key: {e}"))?;
        let direct: Vec<SocketAddr> = Some(node.addr).filter(|a| usable(*a)).into_iter().collect();
        let through_relay = PeerAddress {
            id,
            direct: direct.clone(),
            relay: self.relay.clone(),
        };
        let fail = |e: iroh::endpoint::ConnectError| e.to_string();
        if direct.is_empty() || self.relay.is_none() {
            if self.relay.is_some() {
                self.ask_reach(&node.node_id);
            }
            return self
                .endpoint
                .connect(through_relay.to_endpoint_addr(), alpn)
                .await
                .map_err(fail);
        }
        let only_direct = PeerAddress {
            id,
            direct,
            relay: None,
        };
        let mut first = Box::pin(self.endpoint.connect(only_direct.to_endpoint_addr(), alpn));
        let still_trying = match tokio::time::timeout(REACH_AFTER, &mut first).await {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the direct path failed; trying the relay");
                false
            }
            Err(_) => true,
        };
        self.ask_reach(&node.node_id);
        let second = self
            .endpoint
            .connect(through_relay.to_endpoint_addr(), alpn);
        if !still_trying {
            return second.await.map_err(fail);
        }
        tokio::pin!(second);
        tokio::select! {
            done = &mut first => match done {
                Ok(conn) => Ok(conn),
                Err(_) => second.await.map_err(fail),
            },
            done = &mut second => match done {
                Ok(conn) => Ok(conn),
                Err(e) => first.await.map_err(|_| fail(e)),
            },
        }
    }

    /// Asks (without waiting) that `node_id` be brought onto the relay.
    fn ask_reach(&self, node_id: &str) {
        if let (Some(reach), Some(_)) = (&self.reach, &self.relay) {
            let _ = reach.try_send(node_id.to_owned());
        }
    }

    /// Opens this node's relay connection by sending `dialler` (a node
    /// key, hex) a packet through the relay: a connection attempt that
    /// it refuses ([`ALPN_WAKE`]). What `relay_wanted` asks for.
    pub(crate) async fn wake_relay(&self, dialler: &str) -> Result<(), String> {
        let id = segchat_net::parse_id(dialler).map_err(|e| e.to_string())?;
        let relay = self.relay.clone().ok_or("this node has no relay")?;
        let to = PeerAddress {
            id,
            direct: Vec::new(),
            relay: Some(relay),
        };
        // Refused, as it should be, or given up after WAKE_TIMEOUT: either
        // way its packets went through the relay.
        let attempt = self.endpoint.connect(to.to_endpoint_addr(), ALPN_WAKE);
        if let Ok(Ok(conn)) = tokio::time::timeout(WAKE_TIMEOUT, attempt).await {
            conn.close(0u32.into(), b"relay awake");
        }
        Ok(())
    }
}

/// Whether an announced address can be dialled directly.
fn usable(addr: SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified()
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
