//! A client of a running node's HTTP API, found through `DATA_DIR/api.json`.

use std::path::{Path, PathBuf};

use reqwest::Method;
use segchat_node::api::{ApiFile, API_FILE};
use serde_json::Value;

/// Why a verb did not get its answer.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// No node runs at that data directory (exit 3).
    NoNode { dir: PathBuf },
    /// The node (or the server behind it) refused the request (exit 1).
    Refused { reason: String },
    /// Anything else (exit 1).
    Other(String),
}

impl std::error::Error for ClientError {}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NoNode { dir } => {
                let d = dir.display();
                write!(
                    f,
                    "no node found at {d} (start one with `segchat node --data-dir {d}` or `segchat up`)"
                )
            }
            ClientError::Refused { reason, .. } => f.write_str(reason),
            ClientError::Other(s) => f.write_str(s),
        }
    }
}

/// A node's API.
#[derive(Debug)]
pub(crate) struct NodeClient {
    base: String,
    token: String,
    dir: PathBuf,
    http: reqwest::Client,
}

impl NodeClient {
    /// Finds the node whose data directory is `dir` (or `dir/node`, as
    /// `segchat up` lays it out).
    pub(crate) fn find(dir: &Path) -> Result<NodeClient, ClientError> {
        let candidates = [dir.join(API_FILE), dir.join("node").join(API_FILE)];
        let Some(bytes) = candidates.iter().find_map(|p| std::fs::read(p).ok()) else {
            return Err(ClientError::NoNode {
                dir: dir.to_path_buf(),
            });
        };
        let file: ApiFile = serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Other(format!(
                "{} is not a node's api.json ({e}); is a node running there?",
                dir.join(API_FILE).display()
            ))
        })?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Other(format!("could not start an HTTP client: {e}")))?;
        Ok(NodeClient {
            base: format!("{}/api/v1", file.url.trim_end_matches('/')),
            token: file.token,
            dir: dir.to_path_buf(),
            http,
        })
    }

    /// Follows the node's event WebSocket and hands every new message of
    /// `channel` to `each`, until the connection ends.
    pub(crate) async fn watch(
        &self,
        channel: &str,
        mut each: impl FnMut(&Value),
    ) -> Result<(), ClientError> {
        use futures::StreamExt;
        let url = format!(
            "{}/events?token={}",
            self.base.replacen("http://", "ws://", 1),
            self.token
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| ClientError::Other(format!("could not follow the node's events: {e}")))?;
        while let Some(msg) = ws.next().await {
            let msg = msg.map_err(|e| ClientError::Other(format!("event stream ended: {e}")))?;
            let Ok(text) = msg.to_text() else { continue };
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if v["type"] == "message" && v["message"]["channel"] == channel {
                each(&v["message"]);
            }
        }
        Ok(())
    }

    /// A request to the API with the token, for bodies and answers that
    /// are not JSON (files); no overall timeout, as a file may be large.
    pub(crate) fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(std::time::Duration::from_secs(24 * 3600))
    }

    /// A raw answer's JSON if it is a 2xx, else the error's reason.
    pub(crate) async fn answer(&self, resp: reqwest::Response) -> Result<Value, ClientError> {
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| ClientError::Other(format!("could not read the node's answer: {e}")))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        Err(ClientError::Refused {
            reason: value["reason"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("the node answered {status}")),
        })
    }

    /// The error for a request that never got an answer.
    pub(crate) fn unreachable(&self, e: reqwest::Error) -> ClientError {
        tracing::debug!(error = ?e, "no answer from the node");
        if e.is_connect() {
            ClientError::NoNode {
                dir: self.dir.clone(),
            }
        } else {
            ClientError::Other(format!("the node did not answer: {e}"))
        }
    }

    /// Calls the API; a 2xx answer's JSON (or `null`), else the error's
    /// reason.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                // api.json is left over from a node that is gone.
                ClientError::NoNode {
                    dir: self.dir.clone(),
                }
            } else {
                ClientError::Other(format!("the node did not answer: {e}"))
            }
        })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| ClientError::Other(format!("could not read the node's answer: {e}")))?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        let reason = value["reason"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the node answered {status}"));
        tracing::debug!(%status, %reason, "the node refused the request");
        Err(ClientError::Refused { reason })
    }
}
