//! Opening one connection to the server: TLS over TCP to the server's
//! pinned key (`segchat_net::tls`), then `hello` and `welcome`.
//!
//! The server is known by its ed25519 key. A node learns it once — from
//! its configuration (`--server-key`, an invite) or, failing that, by
//! asking the server the first time ([`segchat_net::relay::fetch_server_key`])
//! — and writes it to `DATA_DIR/server.pin`. From then on the transport
//! refuses any server that cannot prove that key, and the node says so
//! plainly instead of retrying in silence.
//!
//! The link is TCP, so it works where UDP is blocked too. Beside it, the
//! node asks the server over QUIC where its UDP packets come from
//! (`segchat_net::observe`): behind a NAT that is the mapping peers can
//! punch through to, which the node then offers them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use segchat_net::{Endpoint, EndpointId, PeerAddress};
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::{Failure, Frame, FrameCodec, Hello, LinkKind, Welcome, PROTOCOL_VERSION};
use tokio_util::codec::Framed;

pub(super) type Codec = FrameCodec<Request, Reply, Event>;
pub(super) type TrackerFrame = Frame<Request, Reply, Event>;
/// The tracker link's stream.
pub(super) type Duplex = segchat_net::tls::ClientStream;

/// The share of the connect timeout given to TCP and TLS; the rest is for
/// finding out why the server did not answer.
const LINK_SHARE: f32 = 0.6;
/// How long a new link waits for the server to say where it sees the
/// node's UDP packets (a millisecond or so where UDP gets through). The
/// question goes on in the background after that, for
/// [`OBSERVE_TIMEOUT`] in all.
const OBSERVE_WAIT: Duration = Duration::from_secs(1);
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The file in the data directory that holds the pinned server key.
pub const PIN_FILE: &str = "server.pin";

/// A connection that completed the handshake.
#[derive(Debug)]
pub(super) struct Connected {
    pub(super) framed: Framed<Duplex, Codec>,
    pub(super) welcome: Welcome,
    /// The local IP the server is reached from (the interface peers on
    /// the same network probably reach too), with the endpoint's port.
    pub(super) local: SocketAddr,
    /// The link's own (TCP) local address.
    pub(super) tcp_local: SocketAddr,
    pub(super) remote: SocketAddr,
    /// The server's key, which the TLS handshake proved.
    pub(super) server: EndpointId,
    /// The question of where the server sees this node's UDP packets
    /// come from: true once answered, false if it could not be (UDP does
    /// not get through; peers then reach this node through the relay
    /// only). Taken by whoever waits for it.
    pub(super) udp: Option<UdpAnswer>,
}

/// Whether the server could tell where this node's UDP packets come
/// from: known already, or still being asked.
#[derive(Debug)]
pub(super) enum UdpAnswer {
    Known(bool),
    Asking(tokio::task::JoinHandle<bool>),
}

impl UdpAnswer {
    /// The answer, once there is one (false if the question failed).
    pub(super) async fn get(self) -> bool {
        match self {
            UdpAnswer::Known(works) => works,
            UdpAnswer::Asking(question) => question.await.unwrap_or(false),
        }
    }
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the server refused the link: {0}")]
    Refused(Failure),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Key(#[from] KeyError),
}

/// What is wrong with the server's key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the server at {addr} now presents key {presented}, but this node pinned key {pinned} \
         ({source_of_pin}); refusing to connect. If the server was reinstalled on purpose, \
         delete {path} or start the node with --server-key {presented}"
    )]
    Changed {
        addr: SocketAddr,
        pinned: String,
        presented: String,
        source_of_pin: &'static str,
        path: String,
    },
    #[error("cannot learn the server's key: {0}")]
    Unknown(String),
    #[error("could not write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} does not hold a server key: {reason}")]
    BadPin { path: String, reason: String },
}

/// Where the server's key comes from.
#[derive(Debug, Clone)]
pub struct ServerPin {
    /// `DATA_DIR/server.pin`.
    path: PathBuf,
    /// The key the user gave, if any; it wins over the pin file.
    configured: Option<EndpointId>,
}

impl ServerPin {
    pub fn new(data_dir: &Path, configured: Option<EndpointId>) -> ServerPin {
        ServerPin {
            path: data_dir.join(PIN_FILE),
            configured,
        }
    }

    /// The pinned key and where it came from, if there is one.
    fn pinned(&self) -> Result<Option<(EndpointId, &'static str)>, KeyError> {
        if let Some(k) = self.configured {
            return Ok(Some((k, "given with --server-key")));
        }
        match std::fs::read_to_string(&self.path) {
            Ok(text) => segchat_net::parse_id(&text)
                .map(|k| Some((k, "pinned on first contact")))
                .map_err(|e| KeyError::BadPin {
                    path: self.path.display().to_string(),
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KeyError::BadPin {
                path: self.path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// The key to demand of the server at `addr`: the pinned one, or the
    /// one it announces on first contact (then pinned). The second value
    /// is true when it was pinned just now.
    pub(super) async fn key_for(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(EndpointId, bool), KeyError> {
        if let Some((key, _)) = self.pinned()? {
            return Ok((key, false));
        }
        let key = segchat_net::relay::fetch_server_key(addr, timeout)
            .await
            .map_err(|e| KeyError::Unknown(e.to_string()))?;
        let write = |source| KeyError::Write {
            path: self.path.display().to_string(),
            source,
        };
        segchat_log::write_private(
            &self.path,
            format!("{}\n", segchat_net::id_hex(&key)).as_bytes(),
        )
        .map_err(write)?;
        Ok((key, true))
    }

    /// After a failed handshake: if the server now announces another key
    /// than the pinned one, that is the reason, said plainly.
    async fn explain(&self, addr: SocketAddr, timeout: Duration) -> Option<KeyError> {
        let (pinned, source_of_pin) = self.pinned().ok()??;
        let presented = segchat_net::relay::fetch_server_key(addr, timeout)
            .await
            .ok()?;
        (presented != pinned).then(|| KeyError::Changed {
            addr,
            pinned: segchat_net::id_hex(&pinned),
            presented: segchat_net::id_hex(&presented),
            source_of_pin,
            path: self.path.display().to_string(),
        })
    }
}

/// Connects to `addr` and performs the handshake within `timeout`. The
/// second value is true when the server's key was pinned just now.
pub(super) async fn connect(
    endpoint: &Endpoint,
    addr: &str,
    pin: &ServerPin,
    timeout: Duration,
) -> Result<(Connected, bool), ConnectError> {
    tokio::time::timeout(timeout, connect_inner(endpoint, addr, pin, timeout))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
}

/// The first address `addr` (host:port) resolves to, IPv4 first.
pub(crate) async fn resolve(addr: &str) -> std::io::Result<SocketAddr> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host(addr).await?.collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{addr} resolves to no address"),
            )
        })
}

/// The local IP this machine reaches `remote` from (no packet is sent).
fn local_ip_towards(remote: SocketAddr) -> std::io::Result<std::net::IpAddr> {
    let any: SocketAddr = if remote.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = std::net::UdpSocket::bind(any)?;
    probe.connect(remote)?;
    Ok(probe.local_addr()?.ip())
}

async fn connect_inner(
    endpoint: &Endpoint,
    addr: &str,
    pin: &ServerPin,
    timeout: Duration,
) -> Result<(Connected, bool), ConnectError> {
    let remote = resolve(addr).await?;
    let (key, pinned_now) = pin.key_for(remote, timeout).await?;
    let refused = |e: String| async move {
        match pin.explain(remote, timeout).await {
            Some(changed) => changed.into(),
            None => ConnectError::Protocol(format!("cannot connect: {e}")),
        }
    };
    // Asked at once, so the answer is usually in before the link is up.
    let mut observing = tokio::spawn(observe(endpoint.clone(), key, remote));
    let me = ed25519_dalek::SigningKey::from_bytes(&endpoint.secret_key().to_bytes());
    let budget = timeout.mul_f32(LINK_SHARE);
    let stream = match segchat_net::tls::connect(remote, None, &me, key, budget).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err(refused(format!("no answer within {budget:?}")).await)
        }
        Err(e) => return Err(refused(e.to_string()).await),
    };
    let local_port = segchat_net::endpoint::local_addr(endpoint).map_or(0, |a| a.port());
    let tcp_local = stream.get_ref().0.local_addr()?;
    let local = SocketAddr::new(tcp_local.ip(), local_port);
    let mut framed = Framed::new(stream, Codec::default());
    framed
        .send(Frame::Hello(Hello::new(
            LinkKind::Tracker,
            crate::config::AGENT,
        )))
        .await
        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
    match framed.next().await {
        Some(Ok(Frame::Welcome(welcome))) if welcome.version == PROTOCOL_VERSION => {
            let udp = match tokio::time::timeout(OBSERVE_WAIT, &mut observing).await {
                Ok(answered) => UdpAnswer::Known(answered.unwrap_or(false)),
                Err(_) => UdpAnswer::Asking(observing),
            };
            Ok((
                Connected {
                    framed,
                    welcome,
                    local,
                    tcp_local,
                    remote,
                    server: key,
                    udp: Some(udp),
                },
                pinned_now,
            ))
        }
        Some(Ok(Frame::Welcome(welcome))) => Err(ConnectError::Protocol(format!(
            "the server speaks protocol version {}, this node {PROTOCOL_VERSION}",
            welcome.version
        ))),
        Some(Ok(Frame::Error(failure))) => Err(ConnectError::Refused(failure)),
        Some(Ok(other)) => Err(ConnectError::Protocol(format!(
            "expected welcome, got a {:?} frame",
            other.kind()
        ))),
        Some(Err(e)) => Err(ConnectError::Protocol(e.to_string())),
        None => Err(ConnectError::Protocol(
            "the server closed the connection during the handshake".into(),
        )),
    }
}

/// Asks the server at `remote` (key `server`) where it sees this node's
/// UDP packets come from and, behind a NAT (an address that is not one of
/// the endpoint's own), offers that mapping to peers for hole punching.
/// Whether the server answered (UDP gets through).
async fn observe(endpoint: Endpoint, server: EndpointId, remote: SocketAddr) -> bool {
    let to = PeerAddress {
        id: server,
        direct: vec![remote],
        relay: None,
    };
    let Some(seen) = segchat_net::observe::ask(&endpoint, &to, OBSERVE_TIMEOUT).await else {
        tracing::debug!(%remote, "the server could not tell this node's UDP address");
        return false;
    };
    let own = local_ip_towards(remote).ok();
    if own != Some(seen.ip()) && !seen.ip().is_unspecified() && seen.port() != 0 {
        endpoint.add_external_addr(seen).await;
    }
    true
}
