//! `segchat friend …`: friends, friend requests and blocks, through a
//! running node's API (`/friends…`, `/blocks…`).

use reqwest::Method;
use serde_json::Value;

use crate::cli::FriendCommand;
use crate::client::{ClientError, NodeClient};
use crate::output::{local_time, rows, str_of, table, Output};
use crate::paths;

pub(crate) async fn run(
    node: &NodeClient,
    out: &Output,
    cmd: FriendCommand,
) -> Result<(), ClientError> {
    let (method, path, user) = match cmd {
        FriendCommand::List => {
            let v = node.call(Method::GET, "/friends", None).await?;
            out.print(&v, || list(&v));
            return Ok(());
        }
        FriendCommand::Add { username } => (Method::POST, "/friends/{}", username),
        FriendCommand::Accept { username } => (Method::POST, "/friends/{}/accept", username),
        FriendCommand::Remove { username } => (Method::DELETE, "/friends/{}", username),
        FriendCommand::Block { username } => (Method::PUT, "/blocks/{}", username),
        FriendCommand::Unblock { username } => (Method::DELETE, "/blocks/{}", username),
    };
    let v = node
        .call(method, &path.replace("{}", paths::user(&user)?), None)
        .await?;
    out.print(&v, || now(&v));
    Ok(())
}

/// What one user is to you now, as a sentence.
fn now(v: &Value) -> String {
    let name = str_of(&v["username"]);
    match v["kind"].as_str() {
        Some("friend") => format!("{name} is your friend ({})", str_of(&v["presence"])),
        Some("outgoing") => format!("asked {name} to be your friend; waiting for an answer"),
        Some("incoming") => format!("{name} asked to be your friend"),
        Some("blocked") => format!("blocked {name}"),
        _ => format!("{name} is neither a friend nor blocked"),
    }
}

fn list(v: &Value) -> String {
    table(
        &["USER", "RELATION", "PRESENCE", "SINCE"],
        rows(&v["relations"], |r| {
            let relation = match str_of(&r["kind"]) {
                "incoming" => "asked you",
                "outgoing" => "you asked",
                other => other,
            };
            let since = serde_json::json!({ "ts_ms": r["since_ms"] });
            vec![
                str_of(&r["username"]).to_owned(),
                relation.to_owned(),
                r["presence"].as_str().unwrap_or("").to_owned(),
                local_time(&since, "%Y-%m-%d %H:%M"),
            ]
        }),
        "no friends, requests or blocks yet (segchat friend add USER)",
    )
}
