//! The relay `segchat server` embeds, and the route that names the server.
//!
//! Nodes behind NATs that no hole punch gets through (symmetric NATs,
//! blocked UDP) still reach each other through the relay: iroh-relay's
//! relay service, which forwards QUIC packets it cannot read (each is
//! encrypted end to end between the two nodes). It runs here behind our
//! own TCP accept loop, on the server's port (TCP; QUIC uses the same
//! number on UDP), so that:
//!
//! - signed-in nodes use it freely ([`Gate`] asks the server's live state
//!   at each relay connection). A node that is not signed in is let in on
//!   probation, because a node whose UDP is blocked reaches the server
//!   itself only through the relay: it keeps its relay connection while it
//!   holds a tracker link ([`Standing::Linked`]), and loses it when it has
//!   none [`PROBATION`] after connecting (swept every [`SWEEP`]). At most
//!   [`Limits::unsigned_total`] such connections are open at once, so the
//!   relay cannot become a free pipe between strangers: each one needs a
//!   tracker link, which the server bounds too,
//! - each node gets at most [`Limits::conns_per_node`] relay connections
//!   and [`Limits::bytes_per_sec`] of forwarding, and each source IP at
//!   most [`Limits::tcp_per_ip`] TCP connections while they upgrade to
//!   the relay protocol (iroh-relay serves an upgraded connection on a
//!   task of its own, past the accept loop's count; from then on the
//!   admission above bounds it) — a stranger cannot make the server hold
//!   more than that,
//! - and `GET /segchat/server-key` answers the server's public key, which a
//!   node pins the first time it meets the server ([`fetch_server_key`]).
//!   The key is public; a node that was told it (config or invite) checks
//!   it instead of trusting the answer.
//!
//! The same port takes the tracker links (TLS over TCP, [`crate::tls`]): a
//! connection whose first byte opens a TLS handshake goes to the
//! [`TlsDoor`] the server gave, still counted under the caps above until
//! its handshake is done; every other one is HTTP, served here.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// How long a node that is not signed in may hold a relay connection
/// without a tracker link: time enough to open one through the relay.
pub const PROBATION: Duration = Duration::from_secs(10);
/// How often the relay checks the standing of the nodes it serves.
pub const SWEEP: Duration = Duration::from_secs(5);

/// Where a node stands with the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It holds a signed-in session.
    SignedIn,
    /// It holds a tracker link but no session (not signed in yet).
    Linked,
    /// The server does not know it.
    Stranger,
}

/// What the server tells the relay about a node.
pub trait Gate: Send + Sync + fmt::Debug + 'static {
    /// Where the node with this key stands now.
    fn standing(&self, node: &EndpointId) -> Standing;
    /// A relay connection of `node` from `source` was admitted, refused
    /// (with the reason) or closed; for the system log.
    fn note(&self, node: &EndpointId, what: Note<'_>);
}

/// Where the port hands a connection that opened with TLS: the server's
/// tracker.
pub trait TlsDoor: Send + Sync + fmt::Debug + 'static {
    /// `stream` came from `from`, nothing read from it yet. `place` holds
    /// its place under the port's caps; drop it once the handshake is over.
    fn enter(&self, stream: TcpStream, from: SocketAddr, place: Place);
}

/// A connection's place under the port's caps (per source IP and in all)
/// while it upgrades: to the relay protocol, or through a TLS handshake.
#[derive(Debug)]
pub struct Place {
    _slot: IpSlot,
    _permit: tokio::sync::OwnedSemaphorePermit,
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
    /// TCP connections one source IP may hold open at once while they
    /// upgrade to the relay protocol.
    pub tcp_per_ip: usize,
    /// TCP connections upgrading at once in all.
    pub tcp_total: usize,
    /// Relay connections of nodes that are not signed in, at once, in all.
    pub unsigned_total: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // 4 MiB/s: a 720p stream to a few viewers, with room to spare.
            bytes_per_sec: 4 << 20,
            conns_per_node: 2,
            tcp_per_ip: 64,
            tcp_total: 4096,
            unsigned_total: 1024,
        }
    }
}

/// The running relay; stops when dropped.
#[derive(Debug)]
pub struct Relay {
    accept: JoinHandle<()>,
    sweep: JoinHandle<()>,
    service: RelayService,
}

impl Relay {
    /// Serves the relay (and the key route) on `listener` until dropped.
    pub fn spawn(
        listener: TcpListener,
        server: EndpointId,
        gate: Arc<dyn Gate>,
        door: Arc<dyn TlsDoor>,
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
        let admission = Arc::new(Admission {
            gate,
            server,
            per_node: limits.conns_per_node,
            unsigned_max: limits.unsigned_total,
            open: Mutex::default(),
        });
        let service = RelayService::new(
            handlers,
            http::HeaderMap::new(),
            Some(rate),
            KeyCache::new(4096),
            admission.clone(),
            Arc::new(Metrics::default()),
        );
        let accept = tokio::spawn(accept_loop(listener, service.clone(), door, limits));
        let sweep = tokio::spawn(sweep_loop(admission, service.clone()));
        Relay {
            accept,
            sweep,
            service,
        }
    }

    /// Stops accepting and waits until the listening socket is closed, so
    /// the port can be bound again at once (a restart on the same address).
    pub async fn shutdown(mut self) {
        self.sweep.abort();
        self.accept.abort();
        let _ = (&mut self.accept).await;
        self.service.shutdown().await;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.sweep.abort();
        self.accept.abort();
    }
}

/// The relay URL of a server reached at `addr`.
pub fn url_of(addr: SocketAddr) -> iroh::RelayUrl {
    format!("http://{addr}")
        .parse()
        .expect("http://IP:port is a URL")
}

/// Where a process on this machine reaches a socket bound at `bind`: the
/// loopback address when it is bound to all addresses.
pub fn reachable_from_here(bind: SocketAddr) -> SocketAddr {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            (std::net::Ipv4Addr::LOCALHOST, bind.port()).into()
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            (std::net::Ipv6Addr::LOCALHOST, bind.port()).into()
        }
        _ => bind,
    }
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

#[derive(Debug)]
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

async fn accept_loop(
    listener: TcpListener,
    service: RelayService,
    door: Arc<dyn TlsDoor>,
    limits: Limits,
) {
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
        let (service, door) = (service.clone(), door.clone());
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            match tokio::time::timeout(ESTABLISH_TIMEOUT, stream.peek(&mut first)).await {
                Ok(Ok(1)) if crate::tls::is_tls_start(first[0]) => {
                    let place = Place {
                        _slot: slot,
                        _permit: permit,
                    };
                    return door.enter(stream, addr, place);
                }
                Ok(Ok(_)) => {}
                // Silent for the whole time, or already gone.
                Ok(Err(_)) | Err(_) => return,
            }
            service
                .handle_connection(stream, None, ESTABLISH_TIMEOUT)
                .await;
            drop((slot, permit));
        });
    }
}

/// Lets nodes in by their [`Standing`]: the server itself always,
/// signed-in nodes up to `per_node` connections each, others on probation
/// up to `unsigned_max` connections in all.
#[derive(Debug)]
struct Admission {
    gate: Arc<dyn Gate>,
    /// The server's own endpoint, which reaches relayed nodes through here.
    server: EndpointId,
    per_node: usize,
    unsigned_max: usize,
    open: Mutex<Open>,
}

/// The relay connections open now.
#[derive(Debug, Default)]
struct Open {
    conns: HashMap<ConnectionId, OpenConn>,
    per_node: HashMap<EndpointId, usize>,
    /// Connections whose node was not signed in when last looked at.
    unsigned: usize,
}

#[derive(Debug)]
struct OpenConn {
    node: EndpointId,
    since: Instant,
    unsigned: bool,
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
        let standing = if node == self.server {
            Standing::SignedIn
        } else {
            self.gate.standing(&node)
        };
        let unsigned = standing != Standing::SignedIn;
        {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let n = open.per_node.get(&node).copied().unwrap_or(0);
            if n >= self.per_node {
                drop(open);
                return refuse("too many relay connections for this node");
            }
            if unsigned && open.unsigned >= self.unsigned_max {
                drop(open);
                return refuse("too many relay connections of nodes that are not signed in");
            }
            *open.per_node.entry(node).or_default() += 1;
            open.unsigned += usize::from(unsigned);
            open.conns.insert(
                request.connection_id(),
                OpenConn {
                    node,
                    since: Instant::now(),
                    unsigned,
                },
            );
        }
        self.gate.note(&node, Note::Admitted);
        Access::Allow
    }

    fn on_disconnect(&self, node: EndpointId, connection: ConnectionId) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(conn) = open.conns.remove(&connection) {
            open.unsigned -= usize::from(conn.unsigned);
            if let Some(n) = open.per_node.get_mut(&node) {
                *n -= 1;
                if *n == 0 {
                    open.per_node.remove(&node);
                }
            }
        }
        drop(open);
        self.gate.note(&node, Note::Closed);
    }
}

impl Admission {
    /// Looks at every open connection's node again: recounts which are
    /// signed in, and returns the nodes past [`PROBATION`] that the server
    /// no longer knows (no session, no tracker link).
    fn review(&self, now: Instant) -> Vec<EndpointId> {
        let nodes: Vec<(EndpointId, bool)> = {
            let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            open.conns
                .values()
                .filter(|c| c.node != self.server)
                .map(|c| (c.node, now.duration_since(c.since) >= PROBATION))
                .collect()
        };
        let mut standing: HashMap<EndpointId, Standing> = HashMap::new();
        let mut out = Vec::new();
        for (node, past_probation) in nodes {
            let s = *standing
                .entry(node)
                .or_insert_with(|| self.gate.standing(&node));
            if s == Standing::Stranger && past_probation && !out.contains(&node) {
                out.push(node);
            }
        }
        // Recount who is signed in now, both ways: a node that signed out
        // counts against `unsigned_max` again.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut unsigned = 0;
        for conn in open.conns.values_mut() {
            if conn.node == self.server {
                continue;
            }
            if let Some(s) = standing.get(&conn.node) {
                conn.unsigned = *s != Standing::SignedIn;
            }
            unsigned += usize::from(conn.unsigned);
        }
        open.unsigned = unsigned;
        out
    }
}

/// Every [`SWEEP`], cuts off the nodes the server no longer knows.
async fn sweep_loop(admission: Arc<Admission>, service: RelayService) {
    let mut tick = tokio::time::interval(SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for node in admission.review(Instant::now()) {
            admission.gate.note(
                &node,
                Note::Refused("not signed in and no tracker link; relay connection closed"),
            );
            service.clients().disconnect(node, None);
        }
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
