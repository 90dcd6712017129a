//! `segchat dm …`: direct messages through a running node's API (`/dms…`).
//! The node encrypts and decrypts; the CLI only sees its own user's text.

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{DmArgs, DmCommand};
use crate::client::{ClientError, NodeClient};
use crate::output::{rows, str_of, table, Output};
use crate::paths;

pub(crate) async fn run(node: &NodeClient, out: &Output, args: DmArgs) -> Result<(), ClientError> {
    match args.command {
        Some(DmCommand::List) => {
            let v = node.call(Method::GET, "/dms", None).await?;
            out.print(&v, || list(&v));
        }
        Some(DmCommand::Verify { user }) => {
            let path = format!("/dms/{}/safety", paths::user(&user)?);
            let v = node.call(Method::GET, &path, None).await?;
            out.print(&v, || safety(&v, &user));
        }
        Some(DmCommand::Search { words }) => {
            let path = format!("/dm-search?q={}", paths::query(&words.join(" ")));
            let v = node.call(Method::GET, &path, None).await?;
            out.print(&v, || history(&v));
        }
        Some(DmCommand::History { user, limit }) => {
            let path = format!("/dms/{}?limit={limit}", conversation(&user)?);
            let v = node.call(Method::GET, &path, None).await?;
            out.print(&v, || history(&v));
        }
        None => {
            let user = args.user.unwrap_or_default();
            let text = args.text.join(" ");
            let path = format!("/dms/{}", conversation(&user)?);
            let v = node
                .call(Method::POST, &path, Some(json!({ "text": text })))
                .await?;
            out.print(&v, || sent(&v["message"]));
        }
    }
    Ok(())
}

/// A conversation as a path segment: usernames, checked, joined by `,`.
fn conversation(users: &str) -> Result<String, ClientError> {
    let names: Result<Vec<&str>, ClientError> = users.split(',').map(paths::user).collect();
    Ok(names?.join(","))
}

fn when(m: &Value) -> String {
    crate::output::local_time(&json!({ "ts_ms": m["sent_at_ms"] }), "%Y-%m-%d %H:%M")
}

fn sent(m: &Value) -> String {
    match str_of(&m["state"]) {
        "pending" => format!(
            "queued for {} (the server is unreachable; it goes when it is back)",
            str_of(&m["conversation"])
        ),
        state => format!("{state} to {}", str_of(&m["conversation"])),
    }
}

fn history(v: &Value) -> String {
    let lines: Vec<String> = v["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    // The state of your own messages (the others' are
                    // yours to read, not to track).
                    let sender = str_of(&m["sender"]);
                    let theirs = str_of(&m["conversation"]).split(',').any(|u| u == sender);
                    let state = if theirs {
                        String::new()
                    } else {
                        format!("  [{}]", str_of(&m["state"]))
                    };
                    format!(
                        "{} <{}> {}{state}",
                        when(m),
                        str_of(&m["sender"]),
                        str_of(&m["text"])
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if lines.is_empty() {
        return "no messages yet".into();
    }
    lines.join("\n")
}

fn safety(v: &Value, user: &str) -> String {
    let devices = v["devices"]
        .as_object()
        .map(|d| {
            d.iter()
                .map(|(name, keys)| {
                    format!("{name}: {} device(s)", keys.as_array().map_or(0, Vec::len))
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!(
        "{}\n(compare with {user} in person or on a call; {devices})",
        str_of(&v["safety_number"])
    )
}

fn list(v: &Value) -> String {
    table(
        &["WITH", "UNREAD", "LAST"],
        rows(&v["conversations"], |c| {
            let last = &c["last"];
            vec![
                str_of(&c["conversation"]).to_owned(),
                c["unread"].as_u64().unwrap_or(0).to_string(),
                format!(
                    "{} <{}> {}",
                    when(last),
                    str_of(&last["sender"]),
                    str_of(&last["text"])
                ),
            ]
        }),
        "no direct messages yet (segchat dm USER TEXT)",
    )
}
