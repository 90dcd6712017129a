//! A bare-protocol client and a server on an ephemeral port, for tests.
//!
//! The client speaks the tracker protocol itself over the real transport:
//! each [`Client`] binds its own QUIC endpoint under a key of its own (so
//! the server sees a distinct node per client) and opens one tracker link.
#![allow(dead_code, unreachable_pub, missing_debug_implementations)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use segchat_net::client::Client as NetClient;
use segchat_net::tls::ClientStream;
use segchat_proto::frame::CodecError;
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::types::{Presence, SessionInfo, Visibility};
use segchat_proto::{Failure, Frame, FrameCodec, Hello, LinkKind};
use segchat_server::ServerConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

pub type Codec = FrameCodec<Request, Reply, Event>;
pub type TFrame = Frame<Request, Reply, Event>;

pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(dir: &Path) -> TestServer {
        Self::start_with(dir, |_| {}).await
    }

    pub async fn start_with(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config = ServerConfig::new(dir);
        config.heartbeat = Duration::from_millis(100);
        config.peer_ttl = Duration::from_millis(600);
        tweak(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            segchat_server::run(listener, config, token)
                .await
                .expect("server runs");
        });
        TestServer {
            addr,
            shutdown,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server stops in time")
            .expect("server task");
    }
}

/// A fresh random node key.
pub fn random_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

pub struct Client {
    /// The tracker link (TLS over TCP; it closes when dropped).
    pub framed: Framed<ClientStream, Codec>,
    /// The endpoint, bound under `key`.
    pub net: NetClient,
    pub key: SigningKey,
    next_id: u32,
    pub events: VecDeque<Event>,
}

impl Client {
    /// Connects under a fresh key and completes the handshake.
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::connect_as(addr, random_key()).await
    }

    /// Connects with an endpoint bound under `key` and completes the
    /// handshake.
    pub async fn connect_as(addr: SocketAddr, key: SigningKey) -> Client {
        let mut c = Client::raw_as(addr, key).await;
        c.send(Frame::Hello(Hello::new(LinkKind::Tracker, "test")))
            .await;
        match c.recv().await {
            Some(Frame::Welcome(_)) => c,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// Connects without a handshake.
    pub async fn raw(addr: SocketAddr) -> Client {
        Client::raw_as(addr, random_key()).await
    }

    pub async fn raw_as(addr: SocketAddr, key: SigningKey) -> Client {
        let net = NetClient::bind(&key, "127.0.0.1:0".parse().expect("addr"), None)
            .await
            .expect("bind a client endpoint");
        let link = net.tracker(addr, WAIT).await.expect("connect");
        Client {
            framed: Framed::new(link, Codec::default()),
            net,
            key,
            next_id: 1,
            events: VecDeque::new(),
        }
    }

    /// The client's node key as hex: what the server knows it by.
    pub fn node_id(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    pub async fn send(&mut self, frame: TFrame) {
        self.framed.send(frame).await.expect("send");
    }

    /// Sends, or says why not (the server may have closed the connection
    /// already: what it said before closing can still be read).
    pub async fn try_send(&mut self, frame: TFrame) -> Result<(), CodecError> {
        self.framed.send(frame).await
    }

    /// The next frame, `None` on a clean close.
    pub async fn recv(&mut self) -> Option<TFrame> {
        match tokio::time::timeout(WAIT, self.framed.next()).await {
            Ok(Some(Ok(f))) => Some(f),
            Ok(Some(Err(e))) => panic!("decode error from server: {e}"),
            Ok(None) => None,
            Err(_) => panic!("no frame from the server within {WAIT:?}"),
        }
    }

    pub async fn request(&mut self, body: Request) -> Result<Reply, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(Frame::Request { id, body }).await;
        loop {
            match self.recv().await {
                Some(Frame::Response { id: got, result }) if got == id => return result,
                Some(Frame::Event(e)) => self.events.push_back(e),
                other => panic!("expected response {id}, got {other:?}"),
            }
        }
    }

    pub async fn ok(&mut self, body: Request) -> Reply {
        let op = body.op_name();
        self.request(body)
            .await
            .unwrap_or_else(|f| panic!("{op} refused: {f}"))
    }

    /// Waits for an event matching `pred`, skipping others.
    pub async fn event_where(&mut self, mut pred: impl FnMut(&Event) -> bool) -> Event {
        if let Some(pos) = self.events.iter().position(&mut pred) {
            return self.events.remove(pos).expect("present");
        }
        loop {
            match self.recv().await {
                Some(Frame::Event(e)) if pred(&e) => return e,
                Some(Frame::Event(_)) => {}
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    pub async fn register(&mut self, name: &str) -> SessionInfo {
        match self
            .ok(Request::Register {
                username: name.into(),
                password: "correct horse battery".into(),
            })
            .await
        {
            Reply::Session(s) => s,
            other => panic!("expected a session, got {other:?}"),
        }
    }

    pub async fn submit(&mut self, port: u16) {
        self.ok(Request::SubmitInfo {
            p2p_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            status: None,
        })
        .await;
    }

    pub async fn create(&mut self, name: &str, visibility: Visibility, allow_visitors: bool) {
        self.ok(Request::CreateChannel {
            name: name.into(),
            visibility,
            allow_visitors,
        })
        .await;
    }

    pub async fn channel_names(&mut self) -> Vec<String> {
        match self.ok(Request::ListChannels).await {
            Reply::Channels { channels } => channels.into_iter().map(|c| c.name).collect(),
            other => panic!("expected channels, got {other:?}"),
        }
    }

    pub async fn presence_of(&mut self, channel: &str, user: &str) -> Presence {
        match self
            .ok(Request::Members {
                channel: channel.into(),
            })
            .await
        {
            Reply::Members { members, .. } => {
                members
                    .into_iter()
                    .find(|m| m.username == user)
                    .unwrap_or_else(|| panic!("{user} is not a member of {channel}"))
                    .presence
            }
            other => panic!("expected members, got {other:?}"),
        }
    }

    pub async fn peer_names(&mut self, channel: Option<&str>) -> Vec<String> {
        match self
            .ok(Request::GetList {
                channel: channel.map(Into::into),
                users: Vec::new(),
            })
            .await
        {
            Reply::Peers { peers } => peers.into_iter().map(|p| p.username).collect(),
            other => panic!("expected peers, got {other:?}"),
        }
    }
}

impl Drop for Client {
    /// Hangs up the way a node going away does: the link closes with the
    /// client, and the endpoint shuts down gracefully in the background.
    fn drop(&mut self) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let net = self.net.clone();
            rt.spawn(async move { net.close().await });
        }
    }
}
