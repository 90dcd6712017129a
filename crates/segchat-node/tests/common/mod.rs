//! A real server and real nodes on ephemeral ports, a small client of the
//! node's HTTP API, and raw clients that speak the tracker and peer
//! protocols themselves over the same QUIC transport a node uses.
#![allow(dead_code, unreachable_pub)]

pub mod chat;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use segchat_node::{Node, NodeConfig, NodeHandle};
use segchat_server::ServerConfig;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous: the test machine may be loaded.
pub const DEADLINE: Duration = Duration::from_secs(20);
pub const POLL: Duration = Duration::from_millis(50);
pub const PASSWORD: &str = "correct horse battery";

pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(dir: &Path) -> TestServer {
        Self::start_at(dir, "127.0.0.1:0".parse().expect("addr")).await
    }

    pub async fn start_at(dir: &Path, at: SocketAddr) -> TestServer {
        // A server stopped just before on this address lets go of its
        // listener a moment after its `run` returns (the relay's accept
        // task is aborted, not awaited): retry for a while.
        let start = Instant::now();
        let listener = loop {
            match TcpListener::bind(at).await {
                Ok(l) => break l,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse && start.elapsed() < DEADLINE =>
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => panic!("bind server at {at}: {e}"),
            }
        };
        let addr = listener.local_addr().expect("server addr");
        // The server's QUIC endpoint takes the same port over UDP, where
        // a node's endpoint may already sit: take another port then.
        if at.port() == 0 && std::net::UdpSocket::bind(addr).is_err() {
            drop(listener);
            return Box::pin(Self::start_at(dir, at)).await;
        }
        let mut config = ServerConfig::new(dir);
        config.heartbeat = Duration::from_millis(200);
        config.peer_ttl = Duration::from_secs(1);
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
        let _ = tokio::time::timeout(DEADLINE, self.task).await;
    }
}

pub async fn start_node(server: SocketAddr, dir: &Path) -> NodeHandle {
    start_node_with(server, dir, |_| {}).await
}

/// A node as [`start_node`] makes it, with `tweak` applied to its config.
pub async fn start_node_with(
    server: SocketAddr,
    dir: &Path,
    tweak: impl FnOnce(&mut NodeConfig),
) -> NodeHandle {
    let mut config = NodeConfig::new(server.to_string(), dir);
    config.p2p_listen = "127.0.0.1:0".parse().expect("addr");
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(500);
    tweak(&mut config);
    Node::start(config, CancellationToken::new())
        .await
        .expect("node starts")
}

/// A client of one node's API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

/// A node's `/events` WebSocket, as a web UI tab holds it.
pub type EventStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Api {
    /// Opens the node's `/events` WebSocket, with the token in the query
    /// as a browser does.
    pub async fn events(&self) -> EventStream {
        let url = format!(
            "{}/events?token={}",
            self.base.replacen("http://", "ws://", 1),
            self.token
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket");
        ws
    }

    pub fn of(node: &NodeHandle) -> Api {
        Api {
            base: format!("{}/api/v1", node.api_url()),
            token: node.api_token().to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("API reachable");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// How a peer reaches this node, as `GET /node` tells it: the node's
    /// key and its QUIC address.
    pub async fn node_addr(&self) -> NodeAddr {
        let (status, v) = self.get("/node").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        NodeAddr {
            node_id: v["node_id"].as_str().expect("node id").to_owned(),
            addr: v["p2p_addr"]
                .as_str()
                .expect("p2p address")
                .parse()
                .expect("addr"),
        }
    }

    /// Waits until the node says it is connected to the server.
    pub async fn wait_connected(&self) {
        self.wait_for("the node to connect", |v| v["server_connected"] == true)
            .await;
    }

    /// Polls `GET /node` until `ok` holds.
    pub async fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (status, v) = self.get("/node").await;
            if status == StatusCode::OK && ok(&v) {
                return v;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}: {v}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn register(&self, user: &str) -> Value {
        let (status, v) = self
            .post(
                "/session/register",
                json!({"username": user, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "register {user}: {v}");
        v
    }

    /// Creates a channel (`visibility`: public, members_only, private),
    /// asserting success.
    pub async fn create_channel(&self, name: &str, visibility: &str) -> Value {
        self.ok(
            reqwest::Method::POST,
            "/channels",
            Some(json!({"name": name, "visibility": visibility})),
        )
        .await
    }

    /// Joins a channel, asserting success.
    pub async fn join(&self, channel: &str) -> Value {
        self.ok(
            reqwest::Method::POST,
            &format!("/channels/{channel}/join"),
            None,
        )
        .await
    }

    /// Creates and/or joins channels, asserting success.
    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }
}

/// Reads events from `ws` until one matches, failing after the deadline.
pub async fn next_matching(ws: &mut EventStream, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(msg) = ws.next().await {
            if let Ok(Message::Text(text)) = msg {
                let v: Value = serde_json::from_str(&text).expect("events are JSON");
                if ok(&v) {
                    return Some(v);
                }
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(v)) => v,
        _ => panic!("no event: {what}"),
    }
}

pub fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().to_path_buf();
    (d, p)
}

/// Polls `f` until it returns `Some`, failing after the deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// `len` bytes that do not compress or repeat (xorshift from `seed`).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `GET /files/{hash}/content`: status, headers and the bytes.
pub async fn content(api: &Api, hash: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let resp = api
        .http
        .get(format!("{}/files/{hash}/content", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("API reachable");
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.bytes().await.expect("body").to_vec())
}

/// Waits until the node at `dir` has published its device keys (once
/// per sign-in: `times` counts them).
pub async fn keys_published(dir: &Path, times: usize) {
    eventually("the device keys are published", || async {
        let log = std::fs::read_to_string(dir.join("logs").join("segchat.log")).unwrap_or_default();
        (log.matches("KEYS_PUBLISHED").count() >= times).then_some(())
    })
    .await;
}

/// A server and two nodes signed in as ann and bob, their device keys
/// published.
pub struct AnnAndBob {
    pub server: TestServer,
    pub ann_node: NodeHandle,
    pub bob_node: NodeHandle,
    pub ann: Api,
    pub bob: Api,
    pub sdir: PathBuf,
    pub adir: PathBuf,
    pub bdir: PathBuf,
    pub _dirs: [tempfile::TempDir; 3],
}

pub async fn ann_and_bob() -> AnnAndBob {
    let (s, sdir) = tempdir();
    let (a, adir) = tempdir();
    let (b, bdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let ann_node = start_node(server.addr, &adir).await;
    let bob_node = start_node(server.addr, &bdir).await;
    let (ann, bob) = (Api::of(&ann_node), Api::of(&bob_node));
    ann.wait_connected().await;
    bob.wait_connected().await;
    ann.register("ann").await;
    bob.register("bob").await;
    keys_published(&adir, 1).await;
    keys_published(&bdir, 1).await;
    AnnAndBob {
        server,
        ann_node,
        bob_node,
        ann,
        bob,
        sdir,
        adir,
        bdir,
        _dirs: [s, a, b],
    }
}

// ---------------------------------------------------------------------------
// Raw clients: links opened and spoken by the test itself (over the same
// QUIC transport a node uses), to play a misbehaving peer or server user.

use std::ops::{Deref, DerefMut};

use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use segchat_net::client::{Client, Duplex};
use segchat_net::Connection;
use segchat_proto::ticket::{decode_nonce, prove, ProofPurpose, SignedTicket, NONCE_LEN};
use segchat_proto::types::NodeAddr;
use segchat_proto::{peer, tracker, Failure, Frame, FrameCodec, Hello, LinkKind};
use tokio_util::codec::Framed;

/// One link of a raw client: its framed stream, and the connection it
/// lives on (kept, since dropping the connection closes it).
pub struct Raw<Req, Rep, Ev> {
    pub framed: Framed<Duplex, FrameCodec<Req, Rep, Ev>>,
    pub conn: Connection,
}

impl<Req, Rep, Ev> Deref for Raw<Req, Rep, Ev> {
    type Target = Framed<Duplex, FrameCodec<Req, Rep, Ev>>;
    fn deref(&self) -> &Self::Target {
        &self.framed
    }
}

impl<Req, Rep, Ev> DerefMut for Raw<Req, Rep, Ev> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.framed
    }
}

/// A raw peer link (member to host, viewer to streamer).
pub type PeerLink = Raw<peer::Request, peer::Reply, peer::Event>;
/// A raw tracker link (node to server): TLS over TCP.
pub type Tracker = Framed<
    segchat_net::tls::ClientStream,
    FrameCodec<tracker::Request, tracker::Reply, tracker::Event>,
>;

/// A raw client keyed by `key`, on loopback.
pub async fn client(key: &SigningKey) -> Client {
    client_at(key, "127.0.0.1:0".parse().expect("addr")).await
}

/// A raw client keyed by `key`, bound at `bind`.
pub async fn client_at(key: &SigningKey, bind: SocketAddr) -> Client {
    Client::bind(key, bind, None).await.expect("bind a client")
}

/// How a raw client reaches `node`: its key and its QUIC address.
pub fn node_addr(node: &NodeHandle) -> NodeAddr {
    NodeAddr {
        node_id: node.node_id().to_owned(),
        addr: node.p2p_addr(),
    }
}

/// Opens a peer link from `client` to `to`; nothing is said on it yet.
pub async fn open_peer<Req, Rep, Ev>(client: &Client, to: &NodeAddr) -> Raw<Req, Rep, Ev> {
    try_open_peer(client, to).await.expect("a peer connection")
}

/// [`open_peer`], or why the connection failed.
pub async fn try_open_peer<Req, Rep, Ev>(
    client: &Client,
    to: &NodeAddr,
) -> Result<Raw<Req, Rep, Ev>, segchat_net::client::ClientError> {
    let link = client.peer(&to.node_id, to.addr, DEADLINE).await?;
    Ok(Raw {
        framed: Framed::new(link.stream, FrameCodec::default()),
        conn: link.conn,
    })
}

/// Opens a peer link from `client` to `to` and says hello as `agent`:
/// the link and the welcome's nonce.
pub async fn hello_peer(
    client: &Client,
    to: &NodeAddr,
    agent: &str,
) -> (PeerLink, [u8; NONCE_LEN]) {
    let mut p: PeerLink = open_peer(client, to).await;
    p.send(Frame::Hello(Hello::new(LinkKind::Peer, agent)))
        .await
        .expect("hello");
    let nonce = match tokio::time::timeout(DEADLINE, p.next()).await {
        Ok(Some(Ok(Frame::Welcome(w)))) => decode_nonce(&w.nonce).expect("a nonce in the welcome"),
        other => panic!("expected a welcome, got {other:?}"),
    };
    (p, nonce)
}

/// Opens a peer link from `client` to `to` and sends `body(nonce)` as its
/// first request: the link, and the answer.
pub async fn first_request(
    client: &Client,
    to: &NodeAddr,
    body: impl FnOnce(&[u8; NONCE_LEN]) -> peer::Request,
) -> (PeerLink, Result<peer::Reply, Failure>) {
    let (mut p, nonce) = hello_peer(client, to, "raw").await;
    p.send(Frame::Request {
        id: 1,
        body: body(&nonce),
    })
    .await
    .expect("request");
    match tokio::time::timeout(DEADLINE, p.next()).await {
        Ok(Some(Ok(Frame::Response { result, .. }))) => (p, result),
        other => panic!("expected an answer, got {other:?}"),
    }
}

/// `peer_connect` to `channel` from `client` with `ticket`, proving `key`.
/// The transport is keyed by the client's key, the proof by `key`: the
/// same key for an honest member.
pub async fn peer_connect(
    client: &Client,
    to: &NodeAddr,
    key: &SigningKey,
    ticket: &SignedTicket,
    channel: &str,
) -> (PeerLink, Result<peer::Reply, Failure>) {
    first_request(client, to, |nonce| peer::Request::PeerConnect {
        ticket: ticket.clone(),
        channel: channel.into(),
        proof: prove(key, nonce, ProofPurpose::PeerConnect { channel }).expect("prove"),
    })
    .await
}

/// `watch` of `stream_id` from `client` with `ticket`, proving `key`.
pub async fn watch(
    client: &Client,
    to: &NodeAddr,
    key: &SigningKey,
    ticket: &SignedTicket,
    stream_id: u64,
) -> (PeerLink, Result<peer::Reply, Failure>) {
    first_request(client, to, |nonce| peer::Request::Watch {
        ticket: ticket.clone(),
        stream_id,
        proof: prove(key, nonce, ProofPurpose::Watch { stream_id }).expect("prove"),
    })
    .await
}

/// A raw tracker link from `client` to the server at `server`, after the
/// hello and welcome.
pub async fn tracker_link(client: &Client, server: SocketAddr, agent: &str) -> Tracker {
    let link = client
        .tracker(server, DEADLINE)
        .await
        .expect("a tracker connection");
    let mut t = Tracker::new(link, FrameCodec::default());
    t.send(Frame::Hello(Hello::new(LinkKind::Tracker, agent)))
        .await
        .expect("hello");
    match tokio::time::timeout(DEADLINE, t.next()).await {
        Ok(Some(Ok(Frame::Welcome(_)))) => t,
        other => panic!("expected a welcome from the server, got {other:?}"),
    }
}

/// Request `id` on a raw tracker link, and its answer.
pub async fn ask(
    t: &mut Tracker,
    id: u32,
    body: tracker::Request,
) -> Result<tracker::Reply, Failure> {
    t.send(Frame::Request { id, body }).await.expect("send");
    loop {
        match tokio::time::timeout(DEADLINE, t.next()).await {
            Ok(Some(Ok(Frame::Response { id: got, result }))) if got == id => return result,
            Ok(Some(Ok(_))) => continue,
            other => panic!("tracker link ended: {other:?}"),
        }
    }
}

/// A raw tracker link from `client`, signed in as a newly registered
/// `name` (request id 1 is used).
pub async fn registered(client: &Client, server: SocketAddr, name: &str) -> Tracker {
    let mut t = tracker_link(client, server, name).await;
    let register = tracker::Request::Register {
        username: name.into(),
        password: PASSWORD.into(),
    };
    ask(&mut t, 1, register).await.expect("register");
    t
}

/// A ticket for `key`, asked for on `t` as request `id`.
pub async fn ticket_for(t: &mut Tracker, id: u32, key: &SigningKey) -> SignedTicket {
    let node_key = hex::encode(key.verifying_key().as_bytes());
    match ask(t, id, tracker::Request::GetTicket { node_key }).await {
        Ok(tracker::Reply::Ticket(ticket)) => ticket,
        other => panic!("expected a ticket, got {other:?}"),
    }
}
