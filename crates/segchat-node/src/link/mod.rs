//! The server link: one actor owns the TCP connection to the central
//! server; everybody else holds a cloneable [`LinkHandle`].
//!
//! The actor connects, says `hello`, resumes the stored session (forgetting
//! it if the server answers `UNAUTHORIZED`), re-announces the node with
//! `submit_info`, heartbeats every `welcome.heartbeat_ms`, multiplexes
//! requests by id, and publishes server events on the node's
//! [`EventBus`] (a client of the bus, not its owner). When the connection
//! drops it fails every pending request with `UNAVAILABLE`, says so on the
//! bus, and reconnects with exponential backoff and jitter until shutdown.
//!
//! The node keeps the session token: replies handed to callers never carry
//! it.
//!
//! Layout: this file the handle and the link's state; `actor.rs` the
//! actor; `calls.rs` the typed calls the node's parts make (one method per
//! operation); `conn.rs` dialling the server by its pinned key;
//! `instances.rs` which of the server's instances to dial next.

mod actor;
mod calls;
mod conn;
mod instances;

pub use calls::{ChannelChange, HistoryPage, StreamRequest};

pub(crate) use conn::resolve;
pub use conn::{KeyError, ServerPin, PIN_FILE};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use segchat_log::SystemLog;
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::types::{PeerInfo, SessionInfo};
use segchat_proto::Failure;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::events::EventBus;
use crate::store::Store;

/// Requests queued for the actor before callers wait for room.
const INBOX: usize = 64;

/// The reason given for every request made while the server is down.
pub const UNREACHABLE: &str = "the server is unreachable; retrying";

/// What the rest of the node can see of the link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    /// Connected, handshaken and (if there was a session) signed in again.
    pub connected: bool,
    /// Counts the connections that became ready: what the server keeps
    /// per connection (`set_activity`) must be said again on a new one.
    pub connection: u64,
    /// Who this node is signed in as. `token` is always empty here.
    pub session: Option<SessionInfo>,
    /// The entry the server keeps for this node in the live peer list.
    pub listed: Option<PeerInfo>,
    /// The P2P address this node announces.
    pub advertised: Option<SocketAddr>,
    /// The server's ticket-signing key (hex), from its last `welcome`.
    pub server_key: Option<String>,
    /// The server's endpoint as this node reaches it now (files are
    /// fetched from it there).
    pub server_node: Option<segchat_proto::types::NodeAddr>,
    /// Largest message body the server accepts.
    pub max_body_len: Option<u32>,
    /// Why this node refuses the server at its address (its key changed),
    /// until a connection succeeds again.
    pub refusal: Option<String>,
    /// Whether this node's UDP gets through to the server, as the last
    /// connection found out (`None` until it did): where it does not,
    /// peers reach the node through the server's relay only, so it keeps
    /// a relay connection (see `crate::relay`).
    pub udp: Option<bool>,
}

impl LinkState {
    /// Whether this node's user is invisible: its P2P port then looks
    /// offline (no connection is served).
    pub fn is_invisible(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.status == segchat_proto::types::Presence::Invisible)
    }

    /// The largest message body the server accepts (the protocol's
    /// default until a `welcome` said).
    pub fn max_body_len(&self) -> usize {
        self.max_body_len
            .map_or(segchat_proto::message::MAX_BODY_LEN, |n| n as usize)
    }
}

/// Where this node's P2P endpoint is, for `submit_info`.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddrs {
    /// The QUIC endpoint's UDP address as bound (its IP may be unspecified).
    pub p2p: SocketAddr,
    /// Announce this IP instead of the detected one.
    pub advertise_ip: Option<IpAddr>,
}

impl PeerAddrs {
    /// The address to announce: the configured IP, else the listener's IP
    /// if it is specific, else the local IP of the connection to the
    /// server (the interface the server, and so probably peers, reach).
    pub fn advertised(&self, local_of_server_link: IpAddr) -> SocketAddr {
        let ip = self
            .advertise_ip
            .or(Some(self.p2p.ip()).filter(|ip| !ip.is_unspecified()))
            .unwrap_or(local_of_server_link);
        SocketAddr::new(ip, self.p2p.port())
    }
}

/// Settings of the link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub server_addr: String,
    /// The node's QUIC endpoint, which the link dials the server from.
    pub endpoint: segchat_net::Endpoint,
    /// The server's key: given, or pinned on first contact.
    pub pin: conn::ServerPin,
    pub peers: PeerAddrs,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// A request for the actor.
#[derive(Debug)]
pub(crate) enum LinkMsg {
    Request {
        body: Request,
        reply: oneshot::Sender<Result<Reply, Failure>>,
    },
}

/// A cloneable handle to the server link.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    tx: mpsc::Sender<LinkMsg>,
    state: watch::Receiver<LinkState>,
    request_timeout: Duration,
}

impl LinkHandle {
    /// Starts the actor on the current runtime; it runs until `shutdown`,
    /// publishing on `bus`. The returned future is the actor: spawn it in
    /// the node's task tree.
    pub fn new(
        config: LinkConfig,
        store: Store,
        log: SystemLog,
        bus: EventBus,
        shutdown: CancellationToken,
    ) -> (
        LinkHandle,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (tx, inbox) = mpsc::channel(INBOX);
        let (state_tx, state) = watch::channel(LinkState::default());
        let handle = LinkHandle {
            tx,
            state,
            request_timeout: config.request_timeout,
        };
        let actor = actor::Actor::new(config, store, log, state_tx, bus, inbox, shutdown);
        (handle, actor.run())
    }

    /// Sends `body` to the server and waits for its answer. Fails fast
    /// with `UNAVAILABLE` while the server is unreachable.
    pub async fn request(&self, body: Request) -> Result<Reply, Failure> {
        if !self.state.borrow().connected {
            return Err(Failure::unavailable(UNREACHABLE));
        }
        let op = body.op_name();
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(LinkMsg::Request { body, reply })
            .await
            .map_err(|_| Failure::unavailable("the node is shutting down"))?;
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            // The actor dropped the request: the link went down meanwhile.
            Ok(Err(_)) => Err(Failure::unavailable(UNREACHABLE)),
            Err(_) => {
                tracing::warn!(op, "the server did not answer in time");
                Err(Failure::unavailable(format!(
                    "the server did not answer {op} within {} s",
                    self.request_timeout.as_secs()
                )))
            }
        }
    }

    /// The link's state right now.
    pub fn state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every change of the link's state.
    pub fn watch(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn advertised_address_prefers_config_then_listener_then_link() {
        let lan = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 7));
        let mut a = PeerAddrs {
            p2p: "0.0.0.0:4000".parse().expect("addr"),
            advertise_ip: None,
        };
        assert_eq!(a.advertised(lan), "192.168.1.7:4000".parse().expect("addr"));
        a.p2p = "10.0.0.2:4000".parse().expect("addr");
        assert_eq!(a.advertised(lan), "10.0.0.2:4000".parse().expect("addr"));
        a.advertise_ip = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)));
        assert_eq!(a.advertised(lan), "203.0.113.9:4000".parse().expect("addr"));
    }
}
