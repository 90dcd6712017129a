//! A real server and real nodes on ephemeral ports, and a small client of
//! the node's HTTP API.
#![allow(dead_code, unreachable_pub)]

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
        let listener = TcpListener::bind(at).await.expect("bind server");
        let addr = listener.local_addr().expect("server addr");
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
    let mut config = NodeConfig::new(server.to_string(), dir);
    config.p2p_listen = "127.0.0.1:0".parse().expect("addr");
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(500);
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

impl Api {
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

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
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
