//! `segchat send-file`, `segchat dm send-file` and `segchat get`: a file
//! shared in a channel or a direct message, with a progress bar on the terminal (`indicatif`) or, with `--json`,
//! one progress line per update for scripts, then the answer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::cli::Command;
use crate::client::{ClientError, NodeClient};
use crate::output::{str_of, Output};
use crate::paths;

/// How often `get` asks how far the fetch is.
const POLL: Duration = Duration::from_millis(250);

pub(crate) async fn run(
    node: &NodeClient,
    out: &Output,
    command: Command,
) -> Result<(), ClientError> {
    match command {
        Command::SendFile {
            channel,
            path,
            caption,
            mime,
        } => {
            let to = Where {
                api: format!("/channels/{}", paths::channel(&channel)?),
                shown: format!("#{channel}"),
            };
            send_file(node, out, &to, &path, &caption, mime.as_deref()).await
        }
        Command::Get {
            hash,
            channel,
            out: to,
        } => get(node, out, &hash, channel.as_deref(), to).await,
        _ => Err(ClientError::Other("not a file verb".into())),
    }
}

/// Progress as the user asked: a bar on stderr, or JSON lines on stdout.
struct Meter {
    bar: Option<ProgressBar>,
    what: &'static str,
}

impl Meter {
    fn new(json: bool, what: &'static str, size: u64) -> Meter {
        let bar = (!json).then(|| {
            let bar = ProgressBar::new(size);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta} left",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(what);
            bar
        });
        Meter { bar, what }
    }

    fn set(&self, bytes: u64, size: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(bytes),
            None => println!(
                "{}",
                json!({"event": "progress", "what": self.what, "bytes": bytes, "size": size})
            ),
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Where a file is shared: the API path it is posted under (its
/// `/files` beside it), and as the user reads it.
pub(crate) struct Where {
    pub(crate) api: String,
    pub(crate) shown: String,
}

/// Shares the file at `path` where `to` says, with a progress meter.
pub(crate) async fn send_file(
    node: &NodeClient,
    out: &Output,
    to: &Where,
    path: &Path,
    caption: &str,
    mime: Option<&str>,
) -> Result<(), ClientError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ClientError::Other(format!("{}: {e}", path.display())))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| ClientError::Other(format!("{}: {e}", path.display())))?
        .len();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| ClientError::Other(format!("{} names no file", path.display())))?;
    let meter = std::sync::Arc::new(Meter::new(out.is_json(), "sending", size));
    let counting = meter.clone();
    let mut sent = 0u64;
    let counted = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |chunk| {
        if let Ok(c) = &chunk {
            sent += c.len() as u64;
            counting.set(sent, size);
        }
        chunk
    });
    let mut query: Vec<(&str, &str)> = vec![("name", &name), ("caption", caption)];
    if let Some(m) = mime {
        query.push(("type", m));
    }
    let resp = node
        .raw(Method::POST, &format!("{}/files", to.api))
        .query(&query)
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(counted))
        .send()
        .await
        .map_err(|e| node.unreachable(e))?;
    meter.done();
    let v = node.answer(resp).await?;
    out.print(&v, || {
        let m = &v["message"];
        format!(
            "shared {} ({}) in {}; id {}; file {}",
            str_of(&m["file"]["name"]),
            human(m["file"]["size"].as_u64().unwrap_or(size)),
            to.shown,
            str_of(&m["id"]),
            str_of(&m["file"]["hash"]),
        )
    });
    Ok(())
}

async fn get(
    node: &NodeClient,
    out: &Output,
    hash: &str,
    channel: Option<&str>,
    to: Option<PathBuf>,
) -> Result<(), ClientError> {
    let hash_path = paths::segment(hash)?;
    // No channel: a file a direct message on this node shares.
    let mut status = node
        .call(
            Method::POST,
            &format!("/files/{hash_path}/fetch"),
            Some(json!({ "channel": channel })),
        )
        .await?;
    let size = status["size"].as_u64().unwrap_or(0);
    let meter = Meter::new(out.is_json(), "fetching", size);
    loop {
        meter.set(status["bytes"].as_u64().unwrap_or(0), size);
        match status["state"].as_str() {
            Some("complete") => break,
            Some("failed") => {
                meter.done();
                return Err(ClientError::Refused {
                    reason: format!(
                        "the fetch failed: {} (run `segchat get` again to resume)",
                        str_of(&status["reason"])
                    ),
                });
            }
            _ => {}
        }
        tokio::time::sleep(POLL).await;
        status = node
            .call(Method::GET, &format!("/files/{hash_path}"), None)
            .await?;
    }
    meter.done();
    let target = match to {
        Some(p) => p,
        None => free_name(Path::new("."), str_of(&status["name"]))?,
    };
    let resp = node
        .raw(Method::GET, &format!("/files/{hash_path}/content"))
        .query(&[("download", "1")])
        .send()
        .await
        .map_err(|e| node.unreachable(e))?;
    if !resp.status().is_success() {
        return Err(node
            .answer(resp)
            .await
            .err()
            .unwrap_or(ClientError::Other("the node did not give the file".into())));
    }
    // Never over an existing file: created new, or refused.
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .await
        .map_err(|e| ClientError::Other(format!("{}: {e}", target.display())))?;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ClientError::Other(format!("the file broke off: {e}")))?;
        file.write_all(&chunk)
            .await
            .map_err(|e| ClientError::Other(format!("{}: {e}", target.display())))?;
    }
    file.flush()
        .await
        .map_err(|e| ClientError::Other(format!("{}: {e}", target.display())))?;
    let v = json!({"file": status, "saved_to": target.display().to_string()});
    out.print(&v, || {
        format!(
            "saved {} ({}) to {}",
            str_of(&status["name"]),
            human(size),
            target.display()
        )
    });
    Ok(())
}

/// A path in `dir` for a file named `name` by someone else: only its last
/// part, never `.` or `..` or hidden, and never a file that exists
/// (`name (1).ext`, `name (2).ext`, …).
fn free_name(dir: &Path, name: &str) -> Result<PathBuf, ClientError> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim_start_matches('.')
        .trim()
        .to_owned();
    let clean = if clean.is_empty() {
        "file".to_owned()
    } else {
        clean
    };
    let (stem, ext) = match clean.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_owned(), format!(".{e}")),
        _ => (clean.clone(), String::new()),
    };
    for n in 0..1000 {
        let candidate = if n == 0 {
            dir.join(&clean)
        } else {
            dir.join(format!("{stem} ({n}){ext}"))
        };
        if !candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(ClientError::Other(format!(
        "{clean} and 999 numbered copies exist here; give --out"
    )))
}

/// A size for people: 1.5 MB.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_from_elsewhere_stays_in_the_directory_and_overwrites_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        assert_eq!(free_name(d, "../../x").ok(), Some(d.join("x")));
        assert_eq!(free_name(d, "..").ok(), Some(d.join("file")));
        assert_eq!(free_name(d, ".bashrc").ok(), Some(d.join("bashrc")));
        std::fs::write(d.join("cat.png"), b"mine").expect("write");
        assert_eq!(free_name(d, "cat.png").ok(), Some(d.join("cat (1).png")));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(50_000_000), "50.0 MB");
    }
}
