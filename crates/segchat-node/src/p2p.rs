//! The peer listeners: a TCP listener for the P2P link and a UDP socket for
//! livestreams, both on the configured IP.
//!
//! An incoming peer gets its `hello` checked here (version, link kind,
//! within a timeout); the peer link itself is served by
//! [`crate::chat`] (and its stream requests by [`crate::stream`], which
//! also owns the UDP socket). Garbage never takes the node down.
//!
//! Connections are capped twice: [`MAX_PEER_CONNS`] in all and
//! [`MAX_PEER_CONNS_PER_IP`] from any one address, so one source cannot
//! take every slot (or every file descriptor) from real members.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use segchat_log::SystemLog;
use segchat_proto::frame::CodecError;
use segchat_proto::{Failure, Frame, LinkKind, Status, PROTOCOL_VERSION};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How long a peer has to send `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame a peer may send.
const MAX_PEER_FRAME: usize = segchat_proto::MAX_FRAME_LEN;
/// Peer connections served at once; more are closed at once.
const MAX_PEER_CONNS: usize = 4096;
/// Peer connections served at once from one IP address; more from it are
/// closed at once. A node has one link per channel it follows on a host,
/// so a real peer needs a handful; NAT may put a few people behind one
/// address.
pub const MAX_PEER_CONNS_PER_IP: usize = 32;

use crate::chat::{Chat, PeerCodec, PeerFrame, PeerReadCodec};

/// Open peer connections per source IP.
#[derive(Debug, Default, Clone)]
struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection's place in [`PerIp`]; gives it back when dropped (also
/// when the connection's task is aborted).
#[derive(Debug)]
struct Slot {
    table: PerIp,
    ip: IpAddr,
}

/// Locks the table, carrying on past a poisoned lock (plain counts).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PerIp {
    /// A slot for a connection from `ip`, or `None` if it has all of its.
    fn take(&self, ip: IpAddr) -> Option<Slot> {
        let mut map = lock(&self.0);
        let n = map.entry(ip).or_default();
        if *n >= MAX_PEER_CONNS_PER_IP {
            return None;
        }
        *n += 1;
        Some(Slot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = lock(&self.table.0);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// The bound peer sockets.
#[derive(Debug)]
pub struct PeerSockets {
    pub tcp: TcpListener,
    pub udp: Arc<UdpSocket>,
}

impl PeerSockets {
    /// Binds the TCP listener at `p2p` and the UDP socket at `udp`, or on
    /// the TCP listener's IP with any port.
    pub async fn bind(
        p2p: SocketAddr,
        udp: Option<SocketAddr>,
    ) -> Result<PeerSockets, crate::NodeError> {
        let tcp = TcpListener::bind(p2p)
            .await
            .map_err(|source| crate::NodeError::Bind {
                what: "P2P TCP",
                addr: p2p,
                source,
            })?;
        let udp_addr = udp.unwrap_or_else(|| SocketAddr::new(p2p.ip(), 0));
        let udp = UdpSocket::bind(udp_addr)
            .await
            .map_err(|source| crate::NodeError::Bind {
                what: "P2P UDP",
                addr: udp_addr,
                source,
            })?;
        Ok(PeerSockets {
            tcp,
            udp: Arc::new(udp),
        })
    }
}

/// Accepts peers until `shutdown`; each connection runs in a task of its
/// own, all aborted when this returns.
pub async fn serve(listener: TcpListener, chat: Chat, log: SystemLog, shutdown: CancellationToken) {
    let mut conns = JoinSet::new();
    let per_ip = PerIp::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                if chat.is_invisible() {
                    // Invisible looks offline: nothing is served, not even
                    // a refusal.
                    drop(stream);
                    continue;
                }
                if conns.len() >= MAX_PEER_CONNS {
                    tracing::warn!(%addr, "too many peer connections; refusing");
                    drop(stream);
                    continue;
                }
                let Some(slot) = per_ip.take(addr.ip()) else {
                    tracing::warn!(%addr, "too many peer connections from this address; refusing");
                    drop(stream);
                    continue;
                };
                let span = tracing::info_span!("peer", peer = %addr);
                let (chat, log, shutdown) = (chat.clone(), log.clone(), shutdown.clone());
                conns.spawn(
                    async move {
                        serve_peer(stream, addr, chat, log, shutdown).await;
                        drop(slot);
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "P2P accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    conns.shutdown().await;
}

async fn serve_peer(
    stream: TcpStream,
    addr: SocketAddr,
    chat: Chat,
    log: SystemLog,
    shutdown: CancellationToken,
) {
    log.record("CONNECTION_ESTABLISHED", addr, "link=p2p");
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
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
                let reason = crate::chat::serve_peer(chat, reader, w, addr, shutdown).await;
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
    })
    .await;
    log.record("CONNECTION_CLOSED", addr, format!("link=p2p {reason}"));
}
