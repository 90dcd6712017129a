//! The relay `segchat server` embeds, and the route that names the server.
//!
//! Nodes behind NATs that no hole punch gets through (symmetric NATs,
//! blocked UDP) still reach each other through the relay: iroh-relay's
//! relay service, which forwards QUIC packets it cannot read (each is
//! encrypted end to end between the two nodes). It runs here behind our
//! own TCP accept loop, on the server's port (TCP; QUIC uses the same
//! number on UDP), so that:
//!
//! - only signed-in nodes use it ([`Gate`] asks the server's live state at
//!   each relay connection; a node whose session ends is cut off),
//! - each node gets at most [`Limits::conns_per_node`] relay connections
//!   and [`Limits::bytes_per_sec`] of forwarding, and each source IP at
//!   most [`Limits::tcp_per_ip`] TCP connections — a stranger cannot make
//!   the server hold more than that,
//! - and `GET /segchat/server-key` answers the server's public key, which a
//!   node pins the first time it meets the server ([`fetch_server_key`]).
//!   The key is public; a node that was told it (config or invite) checks
//!   it instead of trusting the answer.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use iroh::EndpointId;
use iroh_relay::server::{
    Access, AccessControl, ClientRateLimit, ClientRequest, ConnectionId, Handlers, Metrics,
    RelayService,
};
use iroh_relay::KeyCache;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The path of the route that answers the server's key (hex, one line).
pub const SERVER_KEY_PATH: &str = "/segchat/server-key";
/// How long a TCP connection has to become a relay connection (or finish
/// its plain HTTP request).
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server tells the relay about a node.
pub trait Gate: Send + Sync + fmt::Debug + 'static {
    /// Whether the node with this key is signed in now.
    fn admits(&self, node: &EndpointId) -> bool;
    /// A relay connection of `node` from `source` was admitted, refused
    /// (with the reason) or closed; for the system log.
    fn note(&self, node: &EndpointId, what: Note<'_>);
}

/// What happened to a relay connection.
#[derive(Debug, Clone, Copy)]
pub enum Note<'a> {
    Admitted,
    Refused(&'a str),
    Closed,
}

/// The relay's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes per second the relay forwards for one node connection.
    pub bytes_per_sec: u32,
    /// Relay connections one node may hold at once.
    pub conns_per_node: usize,
    /// TCP connections one source IP may hold open at once.
    pub tcp_per_ip: usize,
    /// TCP connections held open at once in all.
    pub tcp_total: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // 4 MiB/s: a 720p stream to a few viewers, with room to spare.
            bytes_per_sec: 4 << 20,
            conns_per_node: 2,
            tcp_per_ip: 64,
            tcp_total: 4096,
        }
    }
}

/// The running relay; stops when dropped.
#[derive(Debug)]
pub struct Relay {
    accept: JoinHandle<()>,
    service: RelayService,
}

impl Relay {
    /// Serves the relay (and the key route) on `listener` until dropped.
    pub fn spawn(
        listener: TcpListener,
        server: EndpointId,
        gate: Arc<dyn Gate>,
        limits: Limits,
    ) -> Relay {
        let key = Bytes::from(format!("{}\n", crate::id_hex(&server)));
        let mut handlers = Handlers::default();
        handlers.insert(
            (Method::GET, SERVER_KEY_PATH),
            Box::new(move |_req, res| {
                res.status(StatusCode::OK)
                    .header("Content-Type", "text/plain")
                    .body(body(key.clone()))
                    .map_err(|e| Box::new(e) as _)
            }),
        );
        // iroh's latency probe: how a node picks this relay as its home.
        handlers.insert(
            (Method::GET, iroh_relay::http::RELAY_PROBE_PATH),
            Box::new(|_req, res| {
                res.status(StatusCode::OK)
                    .body(body(Bytes::new()))
                    .map_err(|e| Box::new(e) as _)
            }),
        );
        let burst = (limits.bytes_per_sec / 4).max(64 << 10);
        let mut rate = ClientRateLimit::new(
            NonZeroU32::new(limits.bytes_per_sec.max(1024)).expect("at least 1024"),
        );
        rate.max_burst_bytes = NonZeroU32::new(burst);
        let service = RelayService::new(
            handlers,
            http::HeaderMap::new(),
            Some(rate),
            KeyCache::new(4096),
            Arc::new(Admission {
                gate,
                per_node: limits.conns_per_node,
                open: Mutex::default(),
            }),
            Arc::new(Metrics::default()),
        );
        let accept = tokio::spawn(accept_loop(listener, service.clone(), limits));
        Relay { accept, service }
    }

    /// Stops accepting and waits until the listening socket is closed, so
    /// the port can be bound again at once (a restart on the same address).
    pub async fn shutdown(mut self) {
        self.accept.abort();
        let _ = (&mut self.accept).await;
        self.service.shutdown().await;
    }

    /// Closes every relay connection of `node` (its session ended).
    pub fn disconnect(&self, node: EndpointId) {
        self.service.clients().disconnect(node, None);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The relay URL of a server reached at `addr`.
pub fn url_of(addr: SocketAddr) -> iroh::RelayUrl {
    format!("http://{addr}")
        .parse()
        .expect("http://IP:port is a URL")
}

fn body(bytes: Bytes) -> iroh_relay::server::http_server::BytesBody {
    Box::new(http_body_util::Full::<Bytes>::new(bytes))
}

/// Counts TCP connections per source IP.
#[derive(Debug, Default, Clone)]
struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl PerIp {
    fn take(&self, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot(self.clone(), ip))
    }
}

struct IpSlot(PerIp, IpAddr);

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = (self.0).0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, service: RelayService, limits: Limits) {
    let per_ip = PerIp::default();
    let open = Arc::new(tokio::sync::Semaphore::new(limits.tcp_total));
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "relay accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            continue;
        };
        let Some(slot) = per_ip.take(addr.ip(), limits.tcp_per_ip) else {
            tracing::debug!(%addr, "too many relay connections from this address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            service
                .handle_connection(stream, None, ESTABLISH_TIMEOUT)
                .await;
            drop((slot, permit));
        });
    }
}

/// Lets signed-in nodes in, at most `per_node` connections each.
#[derive(Debug)]
struct Admission {
    gate: Arc<dyn Gate>,
    per_node: usize,
    open: Mutex<HashMap<EndpointId, usize>>,
}

impl AccessControl for Admission {
    async fn on_connect(&self, request: &ClientRequest) -> Access {
        let node = request.endpoint_id();
        let refuse = |reason: &'static str| {
            self.gate.note(&node, Note::Refused(reason));
            Access::Deny {
                reason: Some(reason.into()),
            }
        };
        if !self.gate.admits(&node) {
            return refuse("the relay serves signed-in nodes only");
        }
        {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let n = open.entry(node).or_default();
            if *n >= self.per_node {
                drop(open);
                return refuse("too many relay connections for this node");
            }
            *n += 1;
        }
        self.gate.note(&node, Note::Admitted);
        Access::Allow
    }

    fn on_disconnect(&self, node: EndpointId, _connection: ConnectionId) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&node) {
            *n -= 1;
            if *n == 0 {
                open.remove(&node);
            }
        }
        drop(open);
        self.gate.note(&node, Note::Closed);
    }
}

/// Why the server's key could not be learned.
#[derive(Debug, thiserror::Error)]
pub enum FetchKeyError {
    #[error("cannot reach {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("{0} is not a segchat server (no key at {SERVER_KEY_PATH})")]
    NotASegchatServer(SocketAddr),
}

/// Asks the server at `addr` for its key over plain HTTP. The answer is
/// public and unauthenticated: use it to pin a server on first contact,
/// and never in place of a key the user gave.
pub async fn fetch_server_key(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<EndpointId, FetchKeyError> {
    let io = |source| FetchKeyError::Io { addr, source };
    let fetch = async {
        let mut stream = TcpStream::connect(addr).await.map_err(io)?;
        let request =
            format!("GET {SERVER_KEY_PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut answer = Vec::new();
        // A key and its headers fit in far less; a longer answer is not ours.
        (&mut stream)
            .take(4096)
            .read_to_end(&mut answer)
            .await
            .map_err(io)?;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or(FetchKeyError::NotASegchatServer(addr))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(FetchKeyError::NotASegchatServer(addr));
        }
        crate::parse_id(body).map_err(|_| FetchKeyError::NotASegchatServer(addr))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| FetchKeyError::Timeout(addr, timeout))?
}
