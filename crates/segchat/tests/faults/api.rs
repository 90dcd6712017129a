//! A client of a node's HTTP API (README, "The node's local API"): what the
//! suite does to nodes and reads back from them.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

pub(crate) const PASSWORD: &str = "correct horse battery";

#[derive(Debug, Clone)]
pub(crate) struct Api {
    url: String,
    token: String,
    http: reqwest::Client,
}

/// What a node answered to `POST /channels/{name}/messages`.
#[derive(Debug, Clone)]
pub(crate) enum Sent {
    /// 202: the message is in the node's outbox, with this id.
    Accepted { id: String },
    /// Any other HTTP answer: refused, with the status and the body.
    Refused { status: u16, body: String },
    /// No HTTP answer (the node is down or the answer was cut off).
    NoAnswer,
}

/// One message of a node's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Msg {
    pub(crate) id: String,
    pub(crate) author: String,
    pub(crate) body: String,
    pub(crate) ts_ms: u64,
    /// For messages written on this node: pending, stored, backed_up,
    /// refused.
    pub(crate) state: Option<String>,
}

/// A channel's whole history on one node, oldest first, and its gap
/// markers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) messages: Vec<Msg>,
    pub(crate) gaps: Vec<(u64, u64)>,
}

impl Api {
    /// Reads `DATA_DIR/api.json`.
    pub(crate) fn open(data_dir: &Path) -> anyhow::Result<Api> {
        let path = data_dir.join("api.json");
        let file: Value = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Api {
            url: file["url"]
                .as_str()
                .ok_or_else(|| anyhow!("api.json has no url"))?
                .trim_end_matches('/')
                .to_owned(),
            token: file["token"]
                .as_str()
                .ok_or_else(|| anyhow!("api.json has no token"))?
                .to_owned(),
            http,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1/{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("/{path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("/{path} answered {status}: {text}");
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("/{path} answered {text:?}"))
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub(crate) async fn register(&self, user: &str) -> anyhow::Result<()> {
        self.post(
            "session/register",
            json!({"username": user, "password": PASSWORD}),
        )
        .await
        .map(|_| ())
    }

    pub(crate) async fn create(&self, channel: &str) -> anyhow::Result<()> {
        self.post(
            "channels",
            json!({"name": channel, "visibility": "members_only", "allow_visitors": false}),
        )
        .await
        .map(|_| ())
    }

    pub(crate) async fn join(&self, channel: &str) -> anyhow::Result<()> {
        self.post(&format!("channels/{channel}/join"), json!({}))
            .await
            .map(|_| ())
    }

    /// Sends a message; never fails, says what happened.
    pub(crate) async fn send(&self, channel: &str, body: &str) -> Sent {
        let resp = self
            .http
            .post(format!("{}/api/v1/channels/{channel}/messages", self.url))
            .bearer_auth(&self.token)
            .json(&json!({ "body": body }))
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(_) => return Sent::NoAnswer,
        };
        let status = resp.status().as_u16();
        let text = match resp.text().await {
            Ok(t) => t,
            Err(_) => return Sent::NoAnswer,
        };
        if status != 202 {
            return Sent::Refused { status, body: text };
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match v["message"]["id"].as_str() {
            Some(id) => Sent::Accepted { id: id.to_owned() },
            None => Sent::Refused {
                status,
                body: format!("202 without a message id: {text}"),
            },
        }
    }

    /// How the node reaches `channel` now: `hosting`, `host`, `server`,
    /// `offline` (or "" if it does not follow it).
    pub(crate) async fn via(&self, channel: &str) -> anyhow::Result<String> {
        let v = self.get("unread").await?;
        Ok(v["links"][channel].as_str().unwrap_or("").to_owned())
    }

    /// The node's own view of itself (`GET /node`).
    pub(crate) async fn node(&self) -> anyhow::Result<Value> {
        self.get("node").await
    }

    /// The channel's whole local history, paged, oldest first.
    pub(crate) async fn snapshot(&self, channel: &str) -> anyhow::Result<Snapshot> {
        let mut snap = Snapshot::default();
        let mut before: Option<String> = None;
        loop {
            let mut path = format!("channels/{channel}/messages?limit=500");
            if let Some(b) = &before {
                path.push_str(&format!("&before={b}"));
            }
            let page = self.get(&path).await?;
            if before.is_none() {
                for g in page["gaps"].as_array().into_iter().flatten() {
                    snap.gaps.push((
                        g["from_host_seq"].as_u64().unwrap_or(0),
                        g["to_host_seq"].as_u64().unwrap_or(0),
                    ));
                }
            }
            for m in page["messages"].as_array().into_iter().flatten() {
                snap.messages.push(Msg {
                    id: m["id"].as_str().unwrap_or("").to_owned(),
                    author: m["author"].as_str().unwrap_or("").to_owned(),
                    body: m["body"].as_str().unwrap_or("").to_owned(),
                    ts_ms: m["ts_ms"].as_u64().unwrap_or(0),
                    state: m["state"].as_str().map(str::to_owned),
                });
            }
            match page["next_before"].as_str() {
                Some(b) => before = Some(b.to_owned()),
                None => break,
            }
        }
        snap.messages.reverse();
        Ok(snap)
    }
}
