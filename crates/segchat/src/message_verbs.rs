//! Verbs on one message — reply, edit, delete, react — and how a message
//! reads as a line of text (with its quote, "(edited)", reactions).

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::Command;
use crate::client::{ClientError, NodeClient};
use crate::output::{local_time, str_of, Output};
use crate::paths::{channel as chan, segment};

pub(crate) async fn run(
    node: &NodeClient,
    out: &Output,
    command: Command,
) -> Result<(), ClientError> {
    let (method, path, body, done) = match command {
        Command::Reply { channel, id, text } => (
            Method::POST,
            format!("/channels/{}/messages", chan(&channel)?),
            Some(json!({"body": text.join(" "), "reply_to": id})),
            format!("replied in #{channel}"),
        ),
        Command::Edit { channel, id, text } => (
            Method::PATCH,
            format!("/channels/{}/messages/{}", chan(&channel)?, segment(&id)?),
            Some(json!({"body": text.join(" ")})),
            format!("edited in #{channel}"),
        ),
        Command::Delete { channel, id } => (
            Method::DELETE,
            format!("/channels/{}/messages/{}", chan(&channel)?, segment(&id)?),
            None,
            format!("deleted from #{channel}"),
        ),
        Command::React {
            channel,
            id,
            emoji,
            remove,
        } => (
            if remove { Method::DELETE } else { Method::PUT },
            format!(
                "/channels/{}/messages/{}/reactions/{}",
                chan(&channel)?,
                segment(&id)?,
                segment(&emoji)?
            ),
            None,
            format!(
                "{} {emoji} in #{channel}",
                if remove { "took back" } else { "reacted" }
            ),
        ),
        _ => return Err(ClientError::Other("not a message verb".into())),
    };
    let v = node.call(method, &path, body).await?;
    out.print(&v, || format!("{done}:\n{}", message_line(&v["message"])));
    Ok(())
}

/// One message as a line: time, author, body (its quote first for a
/// reply), "(edited)", reactions, and for own messages their delivery
/// state.
pub(crate) fn message_line(m: &Value) -> String {
    let time = local_time(m, "%H:%M:%S");
    let state = match m["state"].as_str() {
        Some("refused") => format!("  [refused: {}]", str_of(&m["reason"])),
        Some(s) => format!("  [{}]", s.replace('_', " ")),
        None => String::new(),
    };
    let quote = match &m["quote"] {
        Value::Object(q) if q.get("deleted") == Some(&Value::Bool(true)) => {
            "  ↳ (a deleted message)\n".to_owned()
        }
        Value::Object(q) => {
            let text: String = q
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(60)
                .collect();
            format!(
                "  ↳ <{}> {text}\n",
                q.get("author").and_then(Value::as_str).unwrap_or("?")
            )
        }
        _ if m["reply_to"].is_string() => "  ↳ (a message not here)\n".to_owned(),
        _ => String::new(),
    };
    if m["deleted"] == Value::Bool(true) {
        return format!("{quote}{time} <{}> (message deleted)", str_of(&m["author"]));
    }
    let edited = if m["edited_ms"].is_u64() {
        " (edited)"
    } else {
        ""
    };
    let reactions: Vec<String> = m["reactions"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    format!(
                        "{} {}",
                        str_of(&r["emoji"]),
                        r["count"].as_u64().unwrap_or(0)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let reactions = if reactions.is_empty() {
        String::new()
    } else {
        format!("  [{}]", reactions.join(", "))
    };
    let file = match &m["file"] {
        Value::Object(f) => format!(
            "{}[file {} ({} bytes) {}]",
            if str_of(&m["body"]).is_empty() {
                ""
            } else {
                " "
            },
            f.get("name").and_then(Value::as_str).unwrap_or("?"),
            f.get("size").and_then(Value::as_u64).unwrap_or(0),
            f.get("hash").and_then(Value::as_str).unwrap_or("?"),
        ),
        _ => String::new(),
    };
    format!(
        "{quote}{time} <{}> {}{file}{edited}{reactions}{state}",
        str_of(&m["author"]),
        str_of(&m["body"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_the_quote_edit_reactions_and_deletion() {
        let reply = json!({
            "author": "bob", "body": "yes", "ts_ms": 0, "reply_to": "x",
            "quote": {"id": "x", "author": "alice", "body": "ship it?", "deleted": false},
            "edited_ms": 5, "deleted": false,
            "reactions": [{"emoji": "👍", "count": 2, "users": ["a", "c"], "me": false}]
        });
        let line = message_line(&reply);
        assert!(line.starts_with("  ↳ <alice> ship it?\n"), "{line}");
        assert!(line.ends_with("<bob> yes (edited)  [👍 2]"), "{line}");
        let gone = json!({"author": "bob", "body": "", "ts_ms": 0, "deleted": true});
        assert!(message_line(&gone).ends_with("<bob> (message deleted)"));
    }
}
