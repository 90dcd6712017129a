//! `segchat channel …`: change a channel's settings and delete it,
//! through a running node's API (`PATCH` / `DELETE /channels/{name}`).

use std::io::{BufRead, IsTerminal, Write};

use reqwest::Method;
use serde_json::{Map, Value};

use crate::cli::ChannelCommand;
use crate::client::{ClientError, NodeClient};
use crate::output::{str_of, Output};
use crate::paths;

pub(crate) async fn run(
    node: &NodeClient,
    out: &Output,
    cmd: ChannelCommand,
) -> Result<(), ClientError> {
    match cmd {
        ChannelCommand::Set {
            channel,
            topic,
            title,
            visibility,
            allow_visitors,
        } => {
            let mut body = Map::new();
            if let Some(t) = topic {
                body.insert("topic".into(), t.into());
            }
            if let Some(t) = title {
                body.insert("title".into(), t.into());
            }
            if let Some(v) = visibility {
                body.insert("visibility".into(), v.as_api().into());
            }
            if let Some(a) = allow_visitors {
                body.insert("allow_visitors".into(), a.into());
            }
            if body.is_empty() {
                return Err(ClientError::Other(
                    "nothing to change: give --topic, --title, --visibility or --allow-visitors"
                        .into(),
                ));
            }
            let v = node
                .call(
                    Method::PATCH,
                    &format!("/channels/{}", paths::channel(&channel)?),
                    Some(Value::Object(body)),
                )
                .await?;
            out.print(&v, || {
                let topic = str_of(&v["topic"]);
                format!(
                    "#{} \"{}\": {}{}, topic: {}",
                    str_of(&v["name"]),
                    str_of(&v["title"]),
                    str_of(&v["visibility"]),
                    if v["allow_visitors"] == true {
                        ", visitors read"
                    } else {
                        ""
                    },
                    if topic.is_empty() { "(none)" } else { topic }
                )
            });
        }
        ChannelCommand::Delete { channel, yes } => {
            if !yes && !confirm(&channel)? {
                return Err(ClientError::Other(format!("#{channel} was not deleted")));
            }
            let v = node
                .call(
                    Method::DELETE,
                    &format!("/channels/{}", paths::channel(&channel)?),
                    None,
                )
                .await?;
            out.print(&v, || {
                format!("deleted #{channel}, its members and the server's copy of its messages")
            });
        }
    }
    Ok(())
}

/// Asks on the terminal whether to delete `channel`; the answer must be
/// its name. Without a terminal, refuses: say `--yes`.
fn confirm(channel: &str) -> Result<bool, ClientError> {
    if !std::io::stdin().is_terminal() {
        return Err(ClientError::Other(format!(
            "deleting #{channel} cannot be undone; confirm with --yes"
        )));
    }
    eprint!(
        "Delete #{channel} for everyone, with its members and the server's copy of its \
         messages? This cannot be undone. Type the channel's name to confirm: "
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| ClientError::Other(format!("could not read the answer: {e}")))?;
    Ok(line.trim().trim_start_matches('#') == channel)
}
