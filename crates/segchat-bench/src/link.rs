//! Minimal clients of the two links, built only on `segchat_proto`'s
//! frames and codec (the bench writes no byte layout of its own), over
//! `segchat_net`'s client: each simulated machine is a [`Machine`], an
//! endpoint of its own under its own node key; its tracker links are TLS
//! over TCP under the same key.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use segchat_net::client::{Client, Duplex, Link};
use segchat_net::{Connection, EndpointId};
use segchat_proto::ticket::SignedTicket;
use segchat_proto::types::NodeAddr;
use segchat_proto::{peer, tracker, Frame, FrameCodec, Hello, LinkKind, Welcome};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// How long one set-up step (connect, handshake, one request) may take.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing the bench's endpoints may take, all together.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
const AGENT: &str = concat!("segchat-bench/", env!("CARGO_PKG_VERSION"));

pub(crate) type TrackerFramed = Framed<
    segchat_net::tls::ClientStream,
    FrameCodec<tracker::Request, tracker::Reply, tracker::Event>,
>;
pub(crate) type PeerFrame = Frame<peer::Request, peer::Reply, peer::Event>;
pub(crate) type PeerFramed =
    Framed<LinkStream, FrameCodec<peer::Request, peer::Reply, peer::Event>>;

/// How often a bench peer link pings the host: the host drops a peer link
/// that sends nothing for its `peer_ttl_ms` (10 s); see PROTOCOL.md §7.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(2);
/// Request ids of pings: far above any post's, so answers are told apart.
pub(crate) const PING_IDS: u32 = 0x8000_0000;

/// Machines bound so far, to give each its own loopback source address.
static MACHINES: AtomicU32 = AtomicU32::new(0);

/// Makes the next machine the `n`th: a process that shares the bench's
/// source addresses with others starts past theirs.
pub(crate) fn skip_machines(n: u32) {
    MACHINES.store(n, Ordering::Relaxed);
}

/// The address the next machine binds its endpoint to, to reach a
/// loopback `server`: a different 127.1.x.y (port 0) each time, as if every
/// simulated member were a machine of its own (a node admits only 32 peer
/// connections per source IP). Elsewhere: any address of the server's
/// family.
pub(crate) fn source_for(server: SocketAddr) -> SocketAddr {
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let n = MACHINES.fetch_add(1, Ordering::Relaxed);
            let ip = Ipv4Addr::new(127, 1, ((n / 250) % 250) as u8, (n % 250) as u8 + 1);
            SocketAddr::new(IpAddr::V4(ip), 0)
        }
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// The server as the bench's machines dial it: its address and its key.
/// The key is asked once per run (`GET /segchat/server-key`), as a node
/// pins it on first contact; every machine then dials it by that key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) id: EndpointId,
}

impl Server {
    pub(crate) async fn find(addr: SocketAddr) -> anyhow::Result<Server> {
        let id = segchat_net::relay::fetch_server_key(addr, STEP_TIMEOUT)
            .await
            .with_context(|| format!("asking the server at {addr} for its key"))?;
        Ok(Server { addr, id })
    }
}

/// One simulated machine: a node key and a QUIC endpoint keyed by it, on a
/// source address of its own. Its tracker link and its peer link are
/// both keyed by it, so the host sees the ticket's `node_key` as the
/// connection's key. Close it ([`close_all`]) when the run ends.
#[derive(Debug)]
pub(crate) struct Machine {
    pub(crate) key: SigningKey,
    pub(crate) client: Client,
}

/// Members reach the server and the host only through the server's relay
/// (their endpoints have no UDP socket), to measure the relay (`chat
/// --via-relay`).
pub(crate) static VIA_RELAY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Peer links to a host go over QUIC even where TCP would take them (as a
/// node's do when the host's TCP port does not answer): `chat --quic`.
pub(crate) static QUIC_ONLY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

impl Machine {
    /// A new key and an endpoint under it, to reach `server`.
    pub(crate) async fn bind(server: &Server) -> anyhow::Result<Machine> {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let at = source_for(server.addr);
        // With `--via-relay` a member has no UDP socket at all (so no hole
        // punch can take its links off the relay); otherwise every dial
        // is direct.
        let client = if VIA_RELAY.load(Ordering::Relaxed) {
            Client::bind_relay_only(&key, server.addr)
                .await
                .context("binding a relay-only member endpoint")?
        } else {
            Client::bind(&key, at, None)
                .await
                .with_context(|| format!("binding a member's endpoint on {at}"))?
        };
        Ok(Machine { key, client })
    }

    /// A new key and an endpoint under it that can use `server`'s relay
    /// once a node on it signed in ([`Client::use_relay`]).
    pub(crate) async fn bind_with_relay(server: &Server) -> anyhow::Result<Machine> {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let at = source_for(server.addr);
        let client = Client::bind(&key, at, Some(server.addr))
            .await
            .with_context(|| format!("binding an endpoint on {at}"))?;
        Ok(Machine { key, client })
    }
}

/// Closes every endpoint (and so every connection) of `clients`, waiting
/// at most [`CLOSE_TIMEOUT`] for the peers to acknowledge.
pub(crate) async fn close_all(clients: Vec<Client>) {
    let closing = futures::future::join_all(clients.iter().map(Client::close));
    if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
        eprintln!(
            "warning: closing {} endpoints took over {} s; left to time out",
            clients.len(),
            CLOSE_TIMEOUT.as_secs()
        );
    }
}

/// One link's stream: a QUIC stream, holding the connection it runs on
/// (the connection closes when its last handle is dropped), or a peer
/// link over TLS on TCP. What a link's `Framed` wraps.
#[derive(Debug)]
pub(crate) enum LinkStream {
    Quic { stream: Duplex, _conn: Connection },
    Tcp(Box<segchat_net::tls::ClientStream>),
}

impl From<Link> for LinkStream {
    fn from(link: Link) -> LinkStream {
        LinkStream::Quic {
            stream: link.stream,
            _conn: link.conn,
        }
    }
}

impl AsyncRead for LinkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkStream::Quic { stream, .. } => Pin::new(stream).poll_read(cx, buf),
            LinkStream::Tcp(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            LinkStream::Quic { stream, .. } => Pin::new(stream).poll_write(cx, buf),
            LinkStream::Tcp(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkStream::Quic { stream, .. } => Pin::new(stream).poll_flush(cx),
            LinkStream::Tcp(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkStream::Quic { stream, .. } => Pin::new(stream).poll_shutdown(cx),
            LinkStream::Tcp(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Sends `hello` and waits for `welcome`.
async fn handshake<S, Req, Rep, Ev>(
    framed: &mut Framed<S, FrameCodec<Req, Rep, Ev>>,
    link: LinkKind,
    who: &str,
) -> anyhow::Result<Welcome>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Req: serde::Serialize + serde::de::DeserializeOwned,
    Rep: serde::Serialize + serde::de::DeserializeOwned,
    Ev: segchat_proto::frame::LinkEvent,
{
    framed.send(Frame::Hello(Hello::new(link, AGENT))).await?;
    match tokio::time::timeout(STEP_TIMEOUT, framed.next()).await {
        Err(_) => bail!("{who} sent no welcome within {} s", STEP_TIMEOUT.as_secs()),
        Ok(None) => bail!("{who} closed the connection instead of answering hello"),
        Ok(Some(Err(e))) => bail!("{who} answered hello with bad bytes: {e}"),
        Ok(Some(Ok(Frame::Welcome(w)))) => Ok(w),
        Ok(Some(Ok(Frame::Error(f)))) => bail!("{who} refused the handshake: {f}"),
        Ok(Some(Ok(other))) => bail!("{who} answered hello with a {:?} frame", other.kind()),
    }
}

/// A signed-in tracker link, used one request at a time during set-up.
#[derive(Debug)]
pub(crate) struct TrackerLink {
    framed: TrackerFramed,
    next_id: u32,
    pub(crate) welcome: Welcome,
}

impl TrackerLink {
    /// Opens `machine`'s tracker link to `server` and says hello.
    pub(crate) async fn connect(machine: &Machine, server: &Server) -> anyhow::Result<TrackerLink> {
        let link = machine
            .client
            .tracker_to(server.id, server.addr, STEP_TIMEOUT)
            .await
            .with_context(|| format!("opening the tracker link to {}", server.addr))?;
        let mut framed = Framed::new(link, FrameCodec::default());
        let welcome = handshake(&mut framed, LinkKind::Tracker, "the server").await?;
        Ok(TrackerLink {
            framed,
            next_id: 1,
            welcome,
        })
    }

    /// Sends one request and waits for its answer, skipping events.
    pub(crate) async fn call(&mut self, req: tracker::Request) -> anyhow::Result<tracker::Reply> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let op = req.op_name();
        self.framed.send(Frame::Request { id, body: req }).await?;
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.framed.next()).await {
                Err(_) => bail!("{op}: no answer within {} s", STEP_TIMEOUT.as_secs()),
                Ok(None) => bail!("{op}: the server closed the connection"),
                Ok(Some(Err(e))) => bail!("{op}: bad bytes from the server: {e}"),
                Ok(Some(Ok(Frame::Response { id: got, result }))) if got == id => {
                    return result.map_err(|f| anyhow!("{op} refused: {f}"));
                }
                Ok(Some(Ok(Frame::Error(f)))) => bail!("{op}: the server closed the link: {f}"),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The framed link itself, to read its events.
    pub(crate) fn into_framed(self) -> TrackerFramed {
        self.framed
    }

    /// A ticket for `key`.
    pub(crate) async fn ticket(
        &mut self,
        key: &ed25519_dalek::SigningKey,
    ) -> anyhow::Result<SignedTicket> {
        let node_key = hex::encode(key.verifying_key().as_bytes());
        match self.call(tracker::Request::GetTicket { node_key }).await? {
            tracker::Reply::Ticket(t) => Ok(t),
            other => bail!("get_ticket answered {other:?}"),
        }
    }

    /// Keeps the link alive with heartbeats until `stop`; the result says
    /// why the link was lost, if it was.
    pub(crate) async fn keep_alive(mut self, stop: CancellationToken) -> Option<String> {
        let every = Duration::from_millis(self.welcome.heartbeat_ms.max(100));
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tick.tick() => {
                    let id = self.next_id;
                    self.next_id = self.next_id.wrapping_add(1);
                    let hb = Frame::Request { id, body: tracker::Request::Heartbeat };
                    if let Err(e) = self.framed.send(hb).await {
                        return Some(format!("heartbeat failed: {e}"));
                    }
                }
                frame = self.framed.next() => match frame {
                    None => return Some("the server closed the tracker link".into()),
                    Some(Err(e)) => return Some(format!("tracker link: {e}")),
                    Some(Ok(Frame::Error(f))) => return Some(format!("the server closed the tracker link: {f}")),
                    Some(Ok(Frame::Response { result: Err(f), .. })) => {
                        return Some(format!("heartbeat refused: {f}"));
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}

/// Through the relay only (`--via-relay`), first asks the server to bring
/// the host onto the relay (`reach`), as a node's dial does when the
/// direct path does not answer: a node holds no relay connection while
/// nobody needs one.
pub(crate) async fn reach_if_relayed(
    tracker: &mut TrackerLink,
    host: &NodeAddr,
) -> anyhow::Result<()> {
    if VIA_RELAY.load(Ordering::Relaxed) {
        tracker
            .call(tracker::Request::Reach {
                node_id: host.node_id.clone(),
            })
            .await
            .context("asking the server to bring the host onto the relay")?;
    }
    Ok(())
}

/// Opens `machine`'s peer link to `host` and subscribes to `channel` with
/// `ticket` (issued to `machine.key`); answers the framed link, whether
/// this member may post, and the host's last sequence number.
pub(crate) async fn peer_connect(
    machine: &Machine,
    host: &NodeAddr,
    ticket: SignedTicket,
    channel: &str,
) -> anyhow::Result<(PeerFramed, bool, u64)> {
    let link = if VIA_RELAY.load(Ordering::Relaxed) {
        // Signed in by now (the ticket says so): the relay takes us.
        if !machine.client.use_relay(STEP_TIMEOUT).await {
            anyhow::bail!("the server's relay did not take this member");
        }
        machine
            .client
            .peer_via_relay(&host.node_id, STEP_TIMEOUT)
            .await
            .context("opening the peer link to the host through the relay")?
            .into()
    } else if QUIC_ONLY.load(Ordering::Relaxed) {
        machine
            .client
            .peer(&host.node_id, host.addr, STEP_TIMEOUT)
            .await
            .with_context(|| format!("opening the peer link to the host at {}", host.addr))?
            .into()
    } else {
        LinkStream::Tcp(Box::new(
            machine
                .client
                .peer_tcp(&host.node_id, host.addr, STEP_TIMEOUT)
                .await
                .with_context(|| {
                    format!(
                        "opening the peer link over TCP to the host at {}",
                        host.addr
                    )
                })?,
        ))
    };
    let mut framed: PeerFramed = Framed::new(link, FrameCodec::default());
    let welcome = handshake(&mut framed, LinkKind::Peer, "the host").await?;
    let nonce = segchat_proto::ticket::decode_nonce(&welcome.nonce)
        .context("the host's welcome carries no nonce")?;
    let proof = segchat_proto::ticket::prove(
        &machine.key,
        &nonce,
        segchat_proto::ticket::ProofPurpose::PeerConnect { channel },
    )?;
    let req = peer::Request::PeerConnect {
        ticket,
        channel: channel.to_owned(),
        proof,
    };
    framed.send(Frame::Request { id: 0, body: req }).await?;
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, framed.next()).await {
            Err(_) => bail!(
                "peer_connect: the host did not answer within {} s",
                STEP_TIMEOUT.as_secs()
            ),
            Ok(None) => bail!("peer_connect: the host closed the connection"),
            Ok(Some(Err(e))) => bail!("peer_connect: bad bytes from the host: {e}"),
            Ok(Some(Ok(Frame::Response { id: 0, result }))) => {
                return match result {
                    Ok(peer::Reply::Connected {
                        can_write,
                        last_seq,
                        ..
                    }) => Ok((framed, can_write, last_seq)),
                    Ok(other) => bail!("peer_connect answered {other:?}"),
                    Err(f) => Err(anyhow::Error::new(f).context("the host refused peer_connect")),
                };
            }
            Ok(Some(Ok(Frame::Error(f)))) => bail!("the host closed the peer link: {f}"),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// A peer link kept alive (a `ping` every [`PING_EVERY`]; whatever the host
/// sends meanwhile is dropped) until it is taken back.
#[derive(Debug)]
pub(crate) struct Held {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<PeerFramed>,
}

impl Held {
    pub(crate) fn new(mut peer: PeerFramed) -> Held {
        let stop = CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(PING_EVERY);
            let mut id = PING_IDS;
            let mut open = true;
            loop {
                tokio::select! {
                    _ = until.cancelled() => return peer,
                    _ = tick.tick(), if open => {
                        id = id.wrapping_add(1).max(PING_IDS);
                        let ping = Frame::Request { id, body: peer::Request::Ping };
                        open = peer.send(ping).await.is_ok();
                    }
                    f = peer.next(), if open => open = matches!(f, Some(Ok(_))),
                }
            }
        });
        Held { stop, task }
    }

    /// The link back (the next reader sees how it ended, if it did).
    pub(crate) async fn take(self) -> anyhow::Result<PeerFramed> {
        self.stop.cancel();
        self.task
            .await
            .context("a peer link's keep-alive task panicked")
    }
}
