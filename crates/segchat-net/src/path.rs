//! Which path a connection's packets take: straight to the peer, or through
//! the relay. A connection starts on whichever works first (often the
//! relay) and moves to a direct path when hole punching finds one; QUIC
//! carries the same streams across the move, so nothing is lost.

use std::fmt;
use std::net::SocketAddr;

use futures::StreamExt;
use iroh::endpoint::{Connection, PathEvent};
use iroh::TransportAddr;

/// The path a connection currently uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    /// UDP straight to this address of the peer.
    Direct(SocketAddr),
    /// Through the relay.
    Relayed,
    /// No path selected (yet).
    Unknown,
}

impl PathKind {
    fn of(addr: &TransportAddr) -> PathKind {
        match addr {
            TransportAddr::Ip(a) => PathKind::Direct(*a),
            TransportAddr::Relay(_) => PathKind::Relayed,
            _ => PathKind::Unknown,
        }
    }

    /// `"direct"`, `"relayed"` or `"unknown"`, as the system log writes it.
    pub fn name(&self) -> &'static str {
        match self {
            PathKind::Direct(_) => "direct",
            PathKind::Relayed => "relayed",
            PathKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathKind::Direct(a) => write!(f, "direct {a}"),
            other => f.write_str(other.name()),
        }
    }
}

/// The path `conn` uses now: the selected one, else (iroh may keep an
/// older connection's selection while a peer restarts) a direct path if
/// the connection has one, else the relay.
pub fn current(conn: &Connection) -> PathKind {
    let paths = conn.paths();
    if let Some(p) = paths.iter().find(|p| p.is_selected()) {
        return PathKind::of(p.remote_addr());
    }
    let kinds: Vec<PathKind> = paths
        .iter()
        .map(|p| PathKind::of(p.remote_addr()))
        .collect();
    kinds
        .iter()
        .find(|k| matches!(k, PathKind::Direct(_)))
        .or_else(|| kinds.iter().find(|k| **k == PathKind::Relayed))
        .cloned()
        .unwrap_or(PathKind::Unknown)
}

/// The address the peer's packets come from on a direct path, if the
/// connection has one (the selected one first).
pub fn remote_addr(conn: &Connection) -> Option<SocketAddr> {
    match current(conn) {
        PathKind::Direct(a) => Some(a),
        _ => None,
    }
}

/// The IP address the peer's packets come from, when a direct path is in
/// use (for per-source limits); `None` while relayed.
pub fn remote_ip(conn: &Connection) -> Option<std::net::IpAddr> {
    remote_addr(conn).map(|a| a.ip())
}

/// Calls `on_change` each time the connection selects another path, until
/// the connection ends. Spawn it beside the link it describes.
pub async fn follow(conn: Connection, mut on_change: impl FnMut(PathKind) + Send) {
    let mut events = conn.path_events();
    while let Some(ev) = events.next().await {
        if let PathEvent::Selected { remote_addr, .. } = ev {
            on_change(PathKind::of(&remote_addr));
        }
    }
}
