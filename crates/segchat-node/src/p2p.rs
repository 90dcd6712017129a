//! The peer side of the node's endpoint: every incoming QUIC connection
//! with the peer ALPN is one peer link, admitted here — transport
//! identity (the connection's key, proven by its handshake), `hello`
//! (version, link kind, within a timeout) — and handed to
//! [`crate::chat`], whose link also carries stream requests for
//! [`crate::stream`]. Datagrams on the same connection go to the streams'
//! dispatcher. Garbage never takes the node down.
//!
//! Connections are capped twice: [`MAX_PEER_CONNS`] in all and
//! [`MAX_PEER_CONNS_PER_SOURCE`] from any one source (an IP address where
//! the path is direct, else the peer's key), so one source cannot take
//! every slot from real members.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler};
use segchat_log::SystemLog;
use segchat_net::{RecvStream, SendStream};
use segchat_proto::frame::CodecError;
use segchat_proto::{Failure, Frame, LinkKind, Status, PROTOCOL_VERSION};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::chat::{Chat, PeerCodec, PeerFrame, PeerReadCodec};
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

/// The peer protocol's handler on the node's router.
#[derive(Debug, Clone)]
pub struct PeerService {
    chat: Chat,
    log: SystemLog,
    shutdown: CancellationToken,
    per_source: PerSource,
    open: Arc<Semaphore>,
}

impl PeerService {
    pub fn new(chat: Chat, log: SystemLog, shutdown: CancellationToken) -> PeerService {
        PeerService {
            chat,
            log,
            shutdown,
            per_source: PerSource::default(),
            open: Arc::new(Semaphore::new(MAX_PEER_CONNS)),
        }
    }
}

impl ProtocolHandler for PeerService {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        if self.chat.is_invisible() {
            // Invisible looks offline: nothing is served, not even a
            // refusal.
            connection.close(0u32.into(), b"");
            return Ok(());
        }
        let addr = crate::transport::log_addr(&connection);
        let key = segchat_net::id_hex(&connection.remote_id());
        let Ok(_permit) = self.open.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many peer connections; refusing");
            return Ok(());
        };
        let source = match segchat_net::path::remote_ip(&connection) {
            Some(ip) => Source::Ip(ip),
            None => Source::Key(key.clone()),
        };
        let Some(_slot) = self.per_source.take(source) else {
            tracing::warn!(%addr, "too many peer connections from this source; refusing");
            return Ok(());
        };
        let span = tracing::info_span!("peer", peer = %addr, key = &key[..12]);
        async {
            let streams = match tokio::time::timeout(HELLO_TIMEOUT, connection.accept_bi()).await {
                Ok(Ok(s)) => s,
                _ => return,
            };
            let remote = Target(connection.clone());
            if let Some(streams) = self.chat.streams() {
                tokio::spawn(streams.clone().read_datagrams(remote.clone()));
            }
            serve_peer(
                streams,
                addr,
                remote,
                self.chat.clone(),
                self.log.clone(),
                self.shutdown.clone(),
            )
            .await;
        }
        .instrument(span)
        .await;
        Ok(())
    }
}

async fn serve_peer(
    (w, r): (SendStream, RecvStream),
    addr: SocketAddr,
    remote: Target,
    chat: Chat,
    log: SystemLog,
    shutdown: CancellationToken,
) {
    log.record(
        "CONNECTION_ESTABLISHED",
        addr,
        format!(
            "link=p2p key={} path={}",
            &segchat_net::id_hex(&remote.0.remote_id())[..12],
            crate::transport::path_of(&remote.0)
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
                let reason = crate::chat::serve_peer(chat, reader, w, addr, remote, shutdown).await;
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
        let _ = writer.get_mut().stopped().await;
    })
    .await;
    log.record("CONNECTION_CLOSED", addr, format!("link=p2p {reason}"));
}
