//! The scriptable verbs: each is one or two calls to a running node's API,
//! printed as aligned text or, with `--json`, as the API's raw JSON.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{Command, Credentials, SEARCH_LIMIT};
use crate::client::{ClientError, NodeClient};
use crate::output::{local_time, rows, str_of, table, Output};
use crate::paths;

/// Exit code for a refused request or any other failure.
const EXIT_REFUSED: u8 = 1;
/// Exit code for bad usage.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code when no node runs at the data directory.
const EXIT_NO_NODE: u8 = 3;

/// Runs one verb against the node at `dir`.
pub(crate) async fn run(dir: &Path, json_out: bool, command: Command) -> ExitCode {
    match run_inner(dir, json_out, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e {
                ClientError::NoNode { .. } => EXIT_NO_NODE,
                _ => EXIT_REFUSED,
            })
        }
    }
}

async fn run_inner(dir: &Path, json_out: bool, command: Command) -> Result<(), ClientError> {
    let node = NodeClient::find(dir)?;
    let out = Output::new(json_out);
    match command {
        Command::Register(c) => {
            let password = password(&c, true)?;
            let v = node
                .call(
                    Method::POST,
                    "/session/register",
                    Some(json!({"username": c.username, "password": password})),
                )
                .await?;
            out.print(&v, || {
                format!(
                    "registered {}; this node is signed in",
                    str_of(&v["username"])
                )
            });
        }
        Command::Login(c) => {
            let password = password(&c, false)?;
            let v = node
                .call(
                    Method::POST,
                    "/session/login",
                    Some(json!({"username": c.username, "password": password})),
                )
                .await?;
            out.print(&v, || format!("signed in as {}", str_of(&v["username"])));
        }
        Command::Visit { name } => {
            let v = node
                .call(
                    Method::POST,
                    "/session/visit",
                    Some(json!({"display_name": name})),
                )
                .await?;
            out.print(&v, || {
                format!("visiting as {} (read-only)", str_of(&v["username"]))
            });
        }
        Command::Logout => {
            let v = node.call(Method::DELETE, "/session", None).await?;
            out.print(&v, || "signed out".into());
        }
        Command::Whoami => {
            let v = node.call(Method::GET, "/session", None).await?;
            out.print(&v, || {
                format!(
                    "{} ({}, {})",
                    str_of(&v["username"]),
                    str_of(&v["kind"]),
                    str_of(&v["status"])
                )
            });
        }
        Command::Status { status: None } => {
            let v = node.call(Method::GET, "/status", None).await?;
            out.print(&v, || str_of(&v["status"]).to_owned());
        }
        Command::Status {
            status: Some(status),
        } => {
            let v = node
                .call(
                    Method::PUT,
                    "/status",
                    Some(json!({"status": status.as_api()})),
                )
                .await?;
            out.print(&v, || format!("status: {}", str_of(&v["status"])));
        }
        Command::Channels => {
            let v = node.call(Method::GET, "/channels", None).await?;
            if v["cached"] == true && !json_out {
                eprintln!("note: the server is unreachable; showing the last channel list seen");
            }
            out.print(&v, || {
                table(
                    &["NAME", "VISIBILITY", "VISITORS", "OWNER", "MEMBERS", "ROLE"],
                    rows(&v["channels"], |c| {
                        vec![
                            str_of(&c["name"]).to_owned(),
                            str_of(&c["visibility"]).replace('_', "-"),
                            if c["allow_visitors"] == true {
                                "yes"
                            } else {
                                "no"
                            }
                            .to_owned(),
                            str_of(&c["owner"]).to_owned(),
                            c["member_count"].to_string(),
                            c["my_role"].as_str().unwrap_or("-").to_owned(),
                        ]
                    }),
                    "no channels yet (create one with `segchat create NAME`)",
                )
            });
        }
        Command::Create {
            name,
            visibility,
            allow_visitors,
        } => {
            let v = node
                .call(
                    Method::POST,
                    "/channels",
                    Some(json!({
                        "name": name,
                        "visibility": visibility.as_api(),
                        "allow_visitors": allow_visitors,
                    })),
                )
                .await?;
            out.print(&v, || {
                format!(
                    "created #{} ({}, visitors {})",
                    str_of(&v["name"]),
                    str_of(&v["visibility"]).replace('_', "-"),
                    if v["allow_visitors"] == true {
                        "allowed"
                    } else {
                        "not allowed"
                    }
                )
            });
        }
        Command::Join { channel } => {
            let v = node
                .call(
                    Method::POST,
                    &format!("/channels/{}/join", paths::channel(&channel)?),
                    None,
                )
                .await?;
            out.print(&v, || {
                format!(
                    "joined #{} as {}",
                    str_of(&v["name"]),
                    v["my_role"].as_str().unwrap_or("member")
                )
            });
        }
        Command::Leave { channel } => {
            let v = node
                .call(
                    Method::POST,
                    &format!("/channels/{}/leave", paths::channel(&channel)?),
                    None,
                )
                .await?;
            out.print(&v, || format!("left #{channel}"));
        }
        Command::Members { channel } => {
            let v = node
                .call(
                    Method::GET,
                    &format!("/channels/{}/members", paths::channel(&channel)?),
                    None,
                )
                .await?;
            out.print(&v, || {
                table(
                    &["USER", "ROLE", "PRESENCE"],
                    rows(&v["members"], |m| {
                        vec![
                            str_of(&m["username"]).to_owned(),
                            str_of(&m["role"]).to_owned(),
                            str_of(&m["presence"]).to_owned(),
                        ]
                    }),
                    "no members",
                )
            });
        }
        Command::Invite { channel, username } => {
            let v = node
                .call(
                    Method::POST,
                    &format!("/channels/{}/invite", paths::channel(&channel)?),
                    Some(json!({"username": username})),
                )
                .await?;
            out.print(&v, || format!("invited {username} to #{channel}"));
        }
        Command::Peers { channel } => {
            let path = match &channel {
                Some(c) => format!("/peers?channel={}", paths::query(c)),
                None => "/peers".to_owned(),
            };
            let v = node.call(Method::GET, &path, None).await?;
            out.print(&v, || {
                table(
                    &["USER", "KIND", "STATUS", "P2P", "NODE KEY"],
                    rows(&v["peers"], |p| {
                        vec![
                            str_of(&p["username"]).to_owned(),
                            str_of(&p["kind"]).to_owned(),
                            str_of(&p["status"]).to_owned(),
                            str_of(&p["p2p_addr"]).to_owned(),
                            str_of(&p["node_id"]).chars().take(16).collect::<String>() + "…",
                        ]
                    }),
                    "no peers online",
                )
            });
        }
        Command::Send { channel, text } => {
            let v = node
                .call(
                    Method::POST,
                    &format!("/channels/{}/messages", paths::channel(&channel)?),
                    Some(json!({"body": text.join(" ")})),
                )
                .await?;
            out.print(&v, || {
                format!(
                    "sent to #{channel} ({}; id {})",
                    str_of(&v["message"]["state"]),
                    str_of(&v["message"]["id"])
                )
            });
        }
        Command::Reply { .. }
        | Command::Edit { .. }
        | Command::Delete { .. }
        | Command::React { .. } => crate::message_verbs::run(&node, &out, command).await?,
        Command::History {
            channel,
            limit,
            before,
            ids,
        } => {
            let mut path = format!(
                "/channels/{}/messages?limit={limit}",
                paths::channel(&channel)?
            );
            if let Some(b) = before {
                path.push_str(&format!("&before={}", paths::query(&b)));
            }
            let v = node.call(Method::GET, &path, None).await?;
            out.print(&v, || {
                let mut lines: Vec<String> = v["messages"]
                    .as_array()
                    .map(|ms| {
                        ms.iter()
                            .rev()
                            .map(|m| match ids {
                                true => format!("{}  {}", str_of(&m["id"]), message_line(m)),
                                false => message_line(m),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(gaps) = v["gaps"].as_array().filter(|g| !g.is_empty()) {
                    lines.push(format!(
                        "({} gap(s) in this history; they fill in when the host is back)",
                        gaps.len()
                    ));
                }
                if lines.is_empty() {
                    format!("no messages in #{channel} yet")
                } else {
                    lines.join("\n")
                }
            });
        }
        Command::Search {
            query,
            channel,
            author,
            before,
            after,
            limit,
            cursor,
        } => {
            let words = query.join(" ");
            let filters = [
                ("channel", channel),
                ("author", author),
                ("before", before),
                ("after", after),
            ];
            let mut path = format!("/search?q={}&limit={limit}", paths::query(&words));
            for (name, value) in &filters {
                if let Some(v) = value {
                    path.push_str(&format!("&{name}={}", paths::query(v)));
                }
            }
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", paths::query(c)));
            }
            let v = node.call(Method::GET, &path, None).await?;
            out.print(&v, || {
                let mut lines: Vec<String> = v["results"]
                    .as_array()
                    .map(|ms| ms.iter().map(search_line).collect())
                    .unwrap_or_default();
                let shown = lines.len();
                let total = v["total"].as_u64().unwrap_or(shown as u64);
                lines.push(match v["next_cursor"].as_str() {
                    _ if total == 0 => "no matches".to_owned(),
                    Some(next) => {
                        // The same search again, one page on.
                        let mut again = vec!["segchat".to_owned(), "search".to_owned()];
                        again.extend(query.iter().map(|w| shell_word(w)));
                        for (name, value) in &filters {
                            if let Some(v) = value {
                                again.push(format!("--{name}"));
                                again.push(shell_word(v));
                            }
                        }
                        if limit != SEARCH_LIMIT {
                            again.push(format!("--limit {limit}"));
                        }
                        again.push(format!("--cursor {next}"));
                        format!("showing {shown} of {total}; more: {}", again.join(" "))
                    }
                    None if shown as u64 == total => {
                        format!("{total} match{}", if total == 1 { "" } else { "es" })
                    }
                    None => format!("showing the last {shown} of {total}"),
                });
                lines.join("\n")
            });
        }
        Command::Unread => {
            let v = node.call(Method::GET, "/unread", None).await?;
            out.print(&v, || {
                let mut names: Vec<&String> = v["links"]
                    .as_object()
                    .map(|o| o.keys().collect())
                    .unwrap_or_default();
                if let Some(o) = v["unread"].as_object() {
                    names.extend(o.keys().filter(|k| v["links"].get(k.as_str()).is_none()));
                }
                names.sort();
                table(
                    &["CHANNEL", "UNREAD", "VIA"],
                    names
                        .into_iter()
                        .map(|n| {
                            vec![
                                n.clone(),
                                v["unread"][n.as_str()].as_u64().unwrap_or(0).to_string(),
                                v["links"][n.as_str()].as_str().unwrap_or("-").to_owned(),
                            ]
                        })
                        .collect(),
                    "no channels",
                )
            });
        }
        Command::Watch { channel } => {
            node.watch(&channel, |m| {
                if json_out {
                    println!("{}", serde_json::to_string(m).unwrap_or_default());
                } else {
                    println!("{}", message_line(m));
                }
            })
            .await?;
        }
        Command::Stream(cmd) => crate::stream_verbs::run(&node, json_out, cmd).await?,
        Command::Channel(cmd) => crate::channel_verbs::run(&node, &out, cmd).await?,
        Command::Friend(cmd) => crate::friend_verbs::run(&node, &out, cmd).await?,
        Command::Dm(args) => crate::dm_verbs::run(&node, &out, args).await?,
        Command::SendFile { .. } | Command::Get { .. } => {
            crate::file_verbs::run(&node, &out, command).await?
        }
        Command::Server(_) | Command::Node(_) | Command::Up(_) => {
            return Err(ClientError::Other("not a verb".into()));
        }
    }
    Ok(())
}

use crate::message_verbs::message_line;

/// A search result as a line: date and time, channel, author, body.
fn search_line(m: &Value) -> String {
    let time = local_time(m, "%Y-%m-%d %H:%M");
    format!(
        "{time} #{} <{}> {}",
        str_of(&m["channel"]),
        str_of(&m["author"]),
        str_of(&m["body"])
    )
}

/// `s` as one word for a POSIX shell: as it is when that is safe, else
/// in single quotes.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_alphanumeric() || "-_.,/:@%+=".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The password: `--password-stdin`, else `SEGCHAT_PASSWORD`, else a
/// prompt (twice when registering).
fn password(c: &Credentials, confirm: bool) -> Result<String, ClientError> {
    if c.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| {
            ClientError::Other(format!("could not read the password from stdin: {e}"))
        })?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    if let Ok(p) = std::env::var("SEGCHAT_PASSWORD") {
        return Ok(p);
    }
    let prompt_err = |e: std::io::Error| {
        ClientError::Other(format!(
            "could not read a password: {e} (use --password-stdin or SEGCHAT_PASSWORD)"
        ))
    };
    let p =
        rpassword::prompt_password(format!("Password for {}: ", c.username)).map_err(prompt_err)?;
    if confirm {
        let again = rpassword::prompt_password("Repeat the password: ").map_err(prompt_err)?;
        if again != p {
            return Err(ClientError::Other("the passwords do not match".into()));
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_come_back_as_typed() {
        assert_eq!(shell_word("lorem"), "lorem");
        assert_eq!(shell_word("2025-01-31T18:00:00Z"), "2025-01-31T18:00:00Z");
        assert_eq!(shell_word("two words"), "'two words'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("$HOME"), "'$HOME'");
        assert_eq!(shell_word(""), "''");
    }
}
