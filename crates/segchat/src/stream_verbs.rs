//! `segchat stream …`: start, stop, list and watch livestreams through a
//! running node's API.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::StreamCommand;
use crate::client::{ClientError, NodeClient};
use crate::paths;

pub(crate) async fn run(
    node: &NodeClient,
    json_out: bool,
    cmd: StreamCommand,
) -> Result<(), ClientError> {
    match cmd {
        StreamCommand::Start {
            channel,
            test_pattern: _,
            size,
            fps,
        } => {
            let (width, height) = parse_size(&size).map_err(ClientError::Other)?;
            let v = node
                .call(
                    Method::POST,
                    "/streams",
                    Some(json!({"channel": channel, "source": "test_pattern",
                                "width": width, "height": height, "fps": fps})),
                )
                .await?;
            let s = &v["stream"];
            print(json_out, &v, || {
                format!(
                    "streaming the test pattern in {channel} as stream {} ({}x{} at {} fps, {}); viewers reach this node at {} (key {}…)",
                    s["stream_id"], s["width"], s["height"], s["fps"],
                    s["codec"].as_str().unwrap_or("?"), str_of(&s["p2p_addr"]),
                    str_of(&s["node_id"]).chars().take(16).collect::<String>()
                )
            });
        }
        StreamCommand::Stop { id } => {
            let ids: Vec<u64> = match id {
                Some(id) => vec![id],
                None => {
                    let v = node.call(Method::GET, "/streams", None).await?;
                    v["own"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|o| o["stream"]["stream_id"].as_u64())
                                .collect()
                        })
                        .unwrap_or_default()
                }
            };
            if ids.is_empty() {
                return Err(ClientError::Refused {
                    reason: "this node is not streaming".into(),
                });
            }
            for id in &ids {
                node.call(Method::DELETE, &format!("/streams/{id}"), None)
                    .await?;
            }
            print(json_out, &json!({"stopped": ids}), || {
                format!(
                    "stopped stream {}",
                    ids.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        }
        StreamCommand::List { channel } => {
            let path = match &channel {
                Some(c) => format!("/streams?channel={}", paths::query(c)),
                None => "/streams".into(),
            };
            let v = node.call(Method::GET, &path, None).await?;
            print(json_out, &v, || {
                let streams = v["streams"].as_array().cloned().unwrap_or_default();
                if streams.is_empty() {
                    return "no live streams".into();
                }
                let own = v["own"].as_array().cloned().unwrap_or_default();
                streams
                    .iter()
                    .map(|s| {
                        let viewers = own
                            .iter()
                            .find(|o| o["stream"]["stream_id"] == s["stream_id"])
                            .map(|o| format!("  (yours, {} viewers)", o["viewer_count"]))
                            .unwrap_or_default();
                        format!(
                            "{:>4}  {:<16} {:<16} {}x{} {} fps {}{}",
                            s["stream_id"],
                            str_of(&s["channel"]),
                            str_of(&s["streamer"]),
                            s["width"],
                            s["height"],
                            s["fps"],
                            str_of(&s["codec"]),
                            viewers
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        StreamCommand::Watch {
            channel,
            stats,
            seconds,
        } => watch(node, json_out, &channel, stats, seconds).await?,
    }
    Ok(())
}

/// Watches the channel's stream until it ends, Ctrl-C or `seconds`.
async fn watch(
    node: &NodeClient,
    json_out: bool,
    channel: &str,
    stats: bool,
    seconds: Option<f64>,
) -> Result<(), ClientError> {
    let v = node
        .call(
            Method::GET,
            &format!("/streams?channel={}", paths::query(channel)),
            None,
        )
        .await?;
    let Some(stream) = v["streams"].as_array().and_then(|s| s.last()).cloned() else {
        return Err(ClientError::Refused {
            reason: format!("nobody streams in {channel} now"),
        });
    };
    let id = stream["stream_id"].as_u64().unwrap_or_default();
    node.call(
        Method::POST,
        &format!("/streams/{id}/watch"),
        Some(json!({})),
    )
    .await?;
    if !json_out {
        println!(
            "watching {}'s stream {id} in {channel} ({}x{} at {} fps, {}) peer to peer from {}; Ctrl-C to stop",
            str_of(&stream["streamer"]), stream["width"], stream["height"], stream["fps"],
            str_of(&stream["codec"]), str_of(&stream["p2p_addr"])
        );
    }
    let started = Instant::now();
    let deadline = seconds.map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_message = None::<String>;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let v = node
            .call(Method::GET, &format!("/streams/{id}"), None)
            .await?;
        let w = &v["watching"];
        if json_out && stats {
            println!("{}", serde_json::to_string(w).unwrap_or_default());
        } else if stats {
            println!("{}", stats_line(w));
        }
        let message = w["message"].as_str().map(str::to_owned);
        if w["state"] == "ended" {
            if !json_out {
                println!(
                    "stream ended: {}",
                    message.as_deref().unwrap_or("no reason given")
                );
            }
            let _ = node
                .call(Method::DELETE, &format!("/streams/{id}/watch"), None)
                .await;
            return Ok(());
        }
        if message.is_some() && message != last_message && !json_out {
            println!("{}", message.as_deref().unwrap_or_default());
        }
        last_message = message;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    node.call(Method::DELETE, &format!("/streams/{id}/watch"), None)
        .await?;
    Ok(())
}

/// `fps 30 | latency p50 12.3 ms p95 20.1 ms | frames 300 lost 2 (0.7%) …`
fn stats_line(w: &Value) -> String {
    let r = &w["report"];
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    let (frames, lost) = (n("frames"), n("lost"));
    let loss = if frames + lost > 0 {
        100.0 * lost as f64 / (frames + lost) as f64
    } else {
        0.0
    };
    format!(
        "fps {:>2} | latency p50 {:.1} ms p95 {:.1} ms | frames {frames} lost {lost} ({loss:.1}%) late {} forged {} | {} kbit/s | {}",
        n("fps"),
        n("latency_p50_us") as f64 / 1000.0,
        n("latency_p95_us") as f64 / 1000.0,
        n("late"),
        n("forged"),
        w["bitrate_kbps"].as_u64().unwrap_or(0),
        str_of(&w["state"]),
    )
}

fn print(json_out: bool, v: &Value, text: impl FnOnce() -> String) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        println!("{}", text());
    }
}

fn str_of(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_owned(),
        None => v.to_string(),
    }
}

/// `640x480` → (640, 480).
pub(crate) fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("size {s:?} is not WIDTHxHEIGHT, e.g. 640x480");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("640x480"), Ok((640, 480)));
        assert_eq!(parse_size("320X240"), Ok((320, 240)));
        assert!(parse_size("640").is_err());
        assert!(parse_size("axb").is_err());
    }

    #[test]
    fn stats_lines_show_loss_and_latency() {
        let w = json!({"state": "playing", "bitrate_kbps": 900, "report": {
            "frames": 90, "lost": 10, "late": 1, "forged": 0, "fps": 30,
            "latency_p50_us": 2500, "latency_p95_us": 7000}});
        let line = stats_line(&w);
        assert!(line.contains("fps 30"), "{line}");
        assert!(line.contains("p50 2.5 ms p95 7.0 ms"), "{line}");
        assert!(line.contains("lost 10 (10.0%)"), "{line}");
    }
}
