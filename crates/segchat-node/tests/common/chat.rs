//! A channel as its users see it through their nodes' APIs: which way a
//! channel is reached, sending, finding a message; and a node's system log.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{eventually, Api};

/// How `api`'s node reaches `channel` now (`host`, `server`, ...).
pub async fn via(api: &Api, channel: &str) -> Option<String> {
    let (_, v) = api.get("/unread").await;
    v["links"][channel].as_str().map(str::to_owned)
}

/// Waits until `api`'s node reaches `channel` via `want`; how long that took.
pub async fn wait_via(api: &Api, channel: &str, want: &str) -> Duration {
    let start = Instant::now();
    eventually(&format!("{channel} to be reached via {want}"), || async {
        (via(api, channel).await.as_deref() == Some(want)).then_some(())
    })
    .await;
    start.elapsed()
}

/// Sends `body` to `channel` from `api`'s node; the message as the API
/// answered it.
pub async fn post(api: &Api, channel: &str, body: &str) -> Value {
    let (status, v) = api
        .post(
            &format!("/channels/{channel}/messages"),
            json!({"body": body}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "send {body:?}: {v}");
    v["message"].clone()
}

/// Sends `body` to `channel` from `api`'s node; the message's id.
pub async fn send(api: &Api, channel: &str, body: &str) -> String {
    post(api, channel, body).await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// The message `id` in `api`'s copy of `channel`, once it is there.
pub async fn message(api: &Api, channel: &str, id: &str) -> Option<Value> {
    let (_, hist) = api
        .get(&format!("/channels/{channel}/messages?limit=500"))
        .await;
    hist["messages"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)
        .cloned()
}

/// The system log of the node or server whose data is in `dir`.
pub fn log_of(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("logs").join("segchat.log")).unwrap_or_default()
}
