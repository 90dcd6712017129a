//! The peer layer: below chat and livestreams, above the transport.
//! Every incoming QUIC connection with the peer ALPN, and every TLS
//! connection on the node's TCP port (`tcp.rs`), is one peer link,
//! admitted here once — transport identity (the connection's key, proven
//! by its handshake), the connection caps, `hello` (version, link kind,
//! within a timeout), then the `welcome` with the nonce that every ticket
//! presented on the link is proven over — and then each request is handed
//! to the [`PeerProtocol`] that serves it: chat and livestreams today
//! (both above this layer; it names neither). A new protocol (direct messages,
//! files) is one more implementation registered in `node.rs`, not a branch
//! in another protocol's read loop. Garbage never takes the node down.
//!
//! # Layout
//!
//! - this file: [`PeerService`], the handler on the node's iroh router:
//!   caps, `hello`; the protocol traits and [`PeerLink`], what a protocol
//!   sees of a link.
//! - `tcp.rs`: the same service on TCP: members whose host is directly
//!   reachable link to it with TLS over TCP (see `segchat_net::tls`).
//! - `link.rs`: one link after `hello`: welcome, liveness, routing.
//! - `outbound.rs`: [`Outbound`], the link's one sending end, which every
//!   protocol writes through.
//! - `codec.rs`: the peer link's frames and codecs.
//! - `dial.rs`: the dialling side's handshake, for protocols that open
//!   links of their own (direct messages, files).
//!
//! Connections are capped twice: [`MAX_PEER_CONNS`] in all and
//! [`MAX_PEER_CONNS_PER_SOURCE`] from any one source (an IP address where
//! the path is direct, else the peer's key), so one source cannot take
//! every slot from real members.
//!
//! Architecture invariant: an invisible user's node serves no peer: a new
//! connection is closed before a byte, and chat closes the open ones.

mod codec;
pub(crate) mod dial;
mod link;
mod outbound;
mod tcp;

pub(crate) use codec::{encode, PeerCodec, PeerFrame, PeerReadCodec};
pub(crate) use outbound::Outbound;
pub(crate) use tcp::{bind as bind_tcp, listen as listen_tcp};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler};
use segchat_log::SystemLog;
use segchat_net::{EndpointId, RecvStream, SendStream};
use segchat_proto::frame::CodecError;
use segchat_proto::peer;
use segchat_proto::ticket::NONCE_LEN;
use segchat_proto::{Failure, Frame, LinkKind, Status, PROTOCOL_VERSION};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::link::LinkHandle;
use crate::transport::Target;

/// How long a peer has to open its stream and send `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame a peer may send.
const MAX_PEER_FRAME: usize = segchat_proto::MAX_FRAME_LEN;
/// Peer connections served at once; more are closed at once.
const MAX_PEER_CONNS: usize = 4096;
/// Peer connections served at once from one source; more from it are
/// closed at once. A node has one link per channel it follows on a host,
/// so a real peer needs a handful; NAT may put a few people behind one
/// address.
pub const MAX_PEER_CONNS_PER_SOURCE: usize = 32;

/// Where a peer connection comes from, for the per-source cap.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    Ip(std::net::IpAddr),
    Key(String),
}

/// Open peer connections per source.
#[derive(Debug, Default, Clone)]
struct PerSource(Arc<Mutex<HashMap<Source, usize>>>);

/// One connection's place in [`PerSource`]; gives it back when dropped
/// (also when the connection's task is aborted).
#[derive(Debug)]
struct Slot {
    table: PerSource,
    source: Source,
}

/// Locks the table, carrying on past a poisoned lock (plain counts).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PerSource {
    /// A slot for a connection from `source`, or `None` if it has all of its.
    fn take(&self, source: Source) -> Option<Slot> {
        let mut map = lock(&self.0);
        let n = map.entry(source.clone()).or_default();
        if *n >= MAX_PEER_CONNS_PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(Slot {
            table: self.clone(),
            source,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = lock(&self.table.0);
        if let Some(n) = map.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.source);
            }
        }
    }
}

/// One protocol carried on the peer link (chat, livestreams; next direct
/// messages and files): which requests are its, and its side of each link.
pub(crate) trait PeerProtocol: Send + Sync + std::fmt::Debug + 'static {
    /// Whether `request` is this protocol's (each request is one
    /// protocol's; `ping` is the link's own).
    fn serves(&self, request: &peer::Request) -> bool;
    /// This protocol's side of a link just admitted by the peer layer.
    fn open(&self, link: &PeerLink) -> Box<dyn ProtocolLink>;
    /// A connection was accepted (before its `hello`): for what a protocol
    /// takes off the connection itself, such as datagrams.
    fn connected(&self, _remote: &Target) {}
}

/// A protocol's side of one link: its per-link state and its requests.
pub(crate) trait ProtocolLink: Send {
    /// Serves request `id` (one [`PeerProtocol::serves`] claimed).
    fn request<'a>(
        &'a mut self,
        link: &'a PeerLink,
        id: u32,
        request: peer::Request,
    ) -> BoxFuture<'a, Result<Answer, Failure>>;
    /// The link ended: forget it.
    fn closed(&mut self, link: &PeerLink);
}

/// How a protocol answered a request.
#[derive(Debug)]
pub(crate) enum Answer {
    /// This reply, now.
    Reply(peer::Reply),
    /// This reply, now, and the peer is admitted: the link is held while
    /// it pings instead of for its admission deadline.
    Admitted(peer::Reply),
    /// The protocol answers later itself, on the link's [`Outbound`].
    Later,
}

/// What a protocol sees of a peer link.
#[derive(Debug)]
pub(crate) struct PeerLink {
    /// The link's id on this node.
    pub(crate) id: u64,
    /// Where it comes from, for the log.
    pub(crate) addr: SocketAddr,
    /// The key the transport authenticated: every ticket presented on the
    /// link must be for it.
    pub(crate) remote_id: EndpointId,
    /// `remote_id`, hex.
    pub(crate) remote_key: String,
    /// The QUIC connection, which livestream datagrams go back on; `None`
    /// on TCP, which carries none.
    pub(crate) datagrams: Option<Target>,
    /// Where the link's bytes go, for the log: `direct <addr>`,
    /// `relayed`, or `tcp <addr>`.
    pub(crate) path: String,
    /// The link's one sending end.
    pub(crate) out: Outbound,
    /// Cancelled when the link ends; cancel it to end the link.
    pub(crate) cancel: CancellationToken,
    /// The nonce this link's `welcome` carried: `peer_connect` and `watch`
    /// sign it with the ticket's node key.
    pub(crate) nonce: [u8; NONCE_LEN],
}

/// A peer link's read and write halves: a QUIC stream's, or a TLS over
/// TCP connection's.
pub(crate) type LinkRead = Either<RecvStream, ReadHalf<segchat_net::tls::ServerStream>>;
pub(crate) type LinkWrite = Either<SendStream, WriteHalf<segchat_net::tls::ServerStream>>;

/// Who is on the other end of a new link, as its transport proved.
#[derive(Debug)]
struct Remote {
    id: EndpointId,
    datagrams: Option<Target>,
    path: String,
}

/// What a connection holds while it is served: a place in the caps.
#[derive(Debug)]
struct Admitted {
    _permit: OwnedSemaphorePermit,
    _slot: Slot,
}

/// The peer protocol's handler on the node's router.
#[derive(Debug, Clone)]
pub struct PeerService {
    protocols: Arc<[Arc<dyn PeerProtocol>]>,
    /// The server link: whether this node is invisible, and what the
    /// `welcome` tells (the server's key, the largest body).
    server: LinkHandle,
    log: SystemLog,
    shutdown: CancellationToken,
    per_source: PerSource,
    open: Arc<Semaphore>,
}

impl PeerService {
    /// A router for `protocols`; each request goes to the first that
    /// serves it.
    pub(crate) fn new(
        protocols: Vec<Arc<dyn PeerProtocol>>,
        server: LinkHandle,
        log: SystemLog,
        shutdown: CancellationToken,
    ) -> PeerService {
        PeerService {
            protocols: protocols.into(),
            server,
            log,
            shutdown,
            per_source: PerSource::default(),
            open: Arc::new(Semaphore::new(MAX_PEER_CONNS)),
        }
    }

    /// A place for a new connection from `source` (at `addr`, for the
    /// log), or `None`: the user is invisible (nothing is served, not even
    /// a refusal: invisible looks offline) or a cap is reached.
    fn admit(&self, source: Source, addr: SocketAddr) -> Option<Admitted> {
        if self.server.state().is_invisible() {
            return None;
        }
        let Ok(permit) = self.open.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many peer connections; refusing");
            return None;
        };
        let Some(slot) = self.per_source.take(source) else {
            tracing::warn!(%addr, "too many peer connections from this source; refusing");
            return None;
        };
        Some(Admitted {
            _permit: permit,
            _slot: slot,
        })
    }
}

impl ProtocolHandler for PeerService {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let addr = crate::transport::log_addr(&connection);
        let id = connection.remote_id();
        let key = segchat_net::id_hex(&id);
        let source = match segchat_net::path::remote_ip(&connection) {
            Some(ip) => Source::Ip(ip),
            None => Source::Key(key.clone()),
        };
        let Some(_admitted) = self.admit(source, addr) else {
            connection.close(0u32.into(), b"");
            return Ok(());
        };
        let span = tracing::info_span!("peer", peer = %addr, key = &key[..12]);
        async {
            let (w, r) = match tokio::time::timeout(HELLO_TIMEOUT, connection.accept_bi()).await {
                Ok(Ok(s)) => s,
                _ => return,
            };
            let datagrams = Target(connection.clone());
            for p in self.protocols.iter() {
                p.connected(&datagrams);
            }
            let remote = Remote {
                id,
                path: crate::transport::path_of(&connection).to_string(),
                datagrams: Some(datagrams),
            };
            serve_peer(self, (Either::Left(w), Either::Left(r)), addr, remote).await;
        }
        .instrument(span)
        .await;
        Ok(())
    }
}

async fn serve_peer(
    router: &PeerService,
    (w, r): (LinkWrite, LinkRead),
    addr: SocketAddr,
    remote: Remote,
) {
    let log = &router.log;
    log.record(
        "CONNECTION_ESTABLISHED",
        addr,
        format!(
            "link=p2p key={} path={}",
            &segchat_net::id_hex(&remote.id)[..12],
            remote.path
        ),
    );
    let mut reader = FramedRead::new(r, PeerReadCodec::new(MAX_PEER_FRAME));
    let refusal = match tokio::time::timeout(HELLO_TIMEOUT, reader.next()).await {
        Err(_) => Failure::bad_request(format!("no hello within {} s", HELLO_TIMEOUT.as_secs())),
        Ok(None) => {
            log.record("CONNECTION_CLOSED", addr, "link=p2p closed before hello");
            return;
        }
        Ok(Some(Err(CodecError::Decode(e)))) => {
            let f = e.to_failure();
            Failure::new(f.status, format!("could not read hello: {}", f.reason))
        }
        Ok(Some(Err(e))) => Failure::bad_request(format!("could not read hello: {e}")),
        Ok(Some(Ok(Err((_, reason))))) => {
            Failure::bad_request(format!("the first frame must be hello: {reason}"))
        }
        Ok(Some(Ok(Ok(Frame::Hello(hello))))) => {
            if hello.version != PROTOCOL_VERSION {
                Failure::new(
                    Status::UnsupportedVersion,
                    format!(
                        "protocol version {} is not supported; this node speaks version {PROTOCOL_VERSION}",
                        hello.version
                    ),
                )
            } else if hello.link != LinkKind::Peer {
                Failure::bad_request(
                    "this is a segchat node's P2P port; it accepts only the peer link",
                )
            } else {
                tracing::debug!(agent = %hello.agent, "peer said hello");
                let reason = link::serve(router, reader, w, addr, remote).await;
                log.record("CONNECTION_CLOSED", addr, format!("link=p2p {reason}"));
                return;
            }
        }
        Ok(Some(Ok(Ok(_)))) => Failure::bad_request("the first frame must be hello"),
    };
    let reason = refusal.to_string();
    let frame: PeerFrame = Frame::Error(refusal);
    let mut writer = FramedWrite::new(w, PeerCodec::new(MAX_PEER_FRAME));
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = writer.send(frame).await;
        let _ = writer.get_mut().shutdown().await;
        // QUIC drops what is unsent when the connection closes.
        if let Either::Left(quic) = writer.get_mut() {
            let _ = quic.stopped().await;
        }
    })
    .await;
    log.record("CONNECTION_CLOSED", addr, format!("link=p2p {reason}"));
}
