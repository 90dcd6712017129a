//! `segchat dm …`: direct messages through a running node's API (`/dms…`).
//! The node encrypts and decrypts; the CLI only sees its own user's text.

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{DmArgs, DmCommand};
use crate::client::{ClientError, NodeClient};
use crate::file_verbs::{send_file, Where};
use crate::message_verbs::message_line;
use crate::output::{rows, str_of, table, Output};
use crate::paths::{self, segment};

pub(crate) async fn run(node: &NodeClient, out: &Output, args: DmArgs) -> Result<(), ClientError> {
    match args.command {
        Some(DmCommand::SendFile {
            user,
            path,
            caption,
            mime,
        }) => {
            let to = Where {
                api: format!("/dms/{}", conversation(&user)?),
                shown: format!("a direct message to {user}"),
            };
            send_file(node, out, &to, &path, &caption, mime.as_deref()).await?;
        }
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
            out.print(&v, || history(&v, false));
        }
        Some(DmCommand::History { user, limit, ids }) => {
            let path = format!("/dms/{}?limit={limit}", conversation(&user)?);
            let v = node.call(Method::GET, &path, None).await?;
            out.print(&v, || history(&v, ids));
        }
        Some(DmCommand::Reply { user, id, text }) => {
            let path = format!("/dms/{}", conversation(&user)?);
            let body = json!({ "text": text.join(" "), "reply_to": id });
            let v = node.call(Method::POST, &path, Some(body)).await?;
            out.print(&v, || line(&v["message"], false));
        }
        Some(DmCommand::Edit { user, id, text }) => {
            let path = message(&user, &id)?;
            let body = json!({ "text": text.join(" ") });
            let v = node.call(Method::PATCH, &path, Some(body)).await?;
            out.print(&v, || line(&v["message"], false));
        }
        Some(DmCommand::Delete { user, id }) => {
            let v = node
                .call(Method::DELETE, &message(&user, &id)?, None)
                .await?;
            out.print(&v, || line(&v["message"], false));
        }
        Some(DmCommand::React {
            user,
            id,
            emoji,
            remove,
        }) => {
            let path = format!("{}/reactions/{}", message(&user, &id)?, segment(&emoji)?);
            let method = if remove { Method::DELETE } else { Method::PUT };
            let v = node.call(method, &path, None).await?;
            out.print(&v, || line(&v["message"], false));
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

/// Message `id` of the conversation with `users`, as an API path.
fn message(users: &str, id: &str) -> Result<String, ClientError> {
    Ok(format!(
        "/dms/{}/messages/{}",
        conversation(users)?,
        segment(id)?
    ))
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

/// One direct message as a line, as a channel's reads (its quote,
/// "(edited)", reactions), with the date, and the state of your own (the
/// others' are yours to read, not to track).
fn line(m: &Value, with_id: bool) -> String {
    let sender = str_of(&m["sender"]);
    let theirs = str_of(&m["conversation"]).split(',').any(|u| u == sender);
    let mut as_channel = m.clone();
    as_channel["author"] = m["sender"].clone();
    as_channel["body"] = m["text"].clone();
    as_channel["ts_ms"] = m["sent_at_ms"].clone();
    if theirs {
        as_channel["state"] = Value::Null;
    }
    let shown = message_line(&as_channel);
    // The channel line starts with the time of day: the date goes first.
    let id = if with_id {
        format!("{} ", str_of(&m["id"]))
    } else {
        String::new()
    };
    let day = when(m);
    let day = day.split(' ').next().unwrap_or_default();
    match shown.rsplit_once('\n') {
        Some((quote, rest)) => format!("{quote}\n{id}{day} {rest}"),
        None => format!("{id}{day} {shown}"),
    }
}

fn history(v: &Value, with_ids: bool) -> String {
    let lines: Vec<String> = v["messages"]
        .as_array()
        .map(|ms| ms.iter().map(|m| line(m, with_ids)).collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dm_line_shows_the_date_quote_edit_reactions_and_only_my_state() {
        let reply = json!({
            "id": "0193", "conversation": "ann", "sender": "bob", "text": "yes",
            "sent_at_ms": 0, "state": "read", "reply_to": "x",
            "quote": {"id": "x", "author": "ann", "body": "lunch?", "deleted": false},
            "edited_ms": 5, "deleted": false,
            "reactions": [{"emoji": "👍", "count": 1, "users": ["ann"], "me": false}]
        });
        let mine = line(&reply, true);
        assert!(mine.starts_with("  ↳ <ann> lunch?\n0193 "), "{mine}");
        assert!(
            mine.ends_with("<bob> yes (edited)  [👍 1]  [read]"),
            "{mine}"
        );
        let mut theirs = reply.clone();
        theirs["conversation"] = json!("bob");
        assert!(
            line(&theirs, false).ends_with("[👍 1]"),
            "no state on theirs"
        );
    }
}
