//! Which path the stream took: nftables byte counters in bob's node
//! namespace, the share of each window's bytes that came straight, and
//! bob's watch of alice's stream measured with them (see "Which path" in
//! the `nat` module's doc).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use super::lab::{Site, MGMT_IF};
use crate::cluster::DEADLINE;
use crate::procs::Node;

/// How long bob watches after the first frame (frames must keep coming);
/// the first window in which the path is measured.
pub(super) const WATCH_FOR: Duration = Duration::from_secs(2);
/// How much longer hole punching gets, after that first window, to move
/// the stream to a direct path (1 s windows, until one is direct).
pub(super) const SETTLE: Duration = Duration::from_secs(6);

/// Stream bytes bob's node received in a window, by path: UDP from
/// anyone but the server (alice, straight), or TCP from the server's
/// relay port.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Traffic {
    direct: u64,
    relayed: u64,
}

impl Traffic {
    /// `direct` or `relayed` when at least 90 % of the bytes took that
    /// path, `mixed` otherwise (the path changed during the window).
    pub(super) fn path(&self) -> &'static str {
        let all = (self.direct + self.relayed).max(1);
        if self.direct * 10 >= all * 9 {
            "direct"
        } else if self.relayed * 10 >= all * 9 {
            "relayed"
        } else {
            "mixed"
        }
    }

    pub(super) fn describe(&self) -> String {
        let share = self.direct * 100 / (self.direct + self.relayed).max(1);
        format!("{} {share}%", self.path())
    }
}

/// Counts what reaches bob's node namespace, by path (nftables named
/// counters in its input hook).
#[derive(Debug)]
pub(super) struct Meter {
    ns: String,
}

impl Meter {
    pub(super) fn install(site: &Site, server: SocketAddr) -> anyhow::Result<Meter> {
        let (ip, port) = (server.ip(), server.port());
        site.node.nft(&format!(
            "table inet segchat_meter {{
               counter direct {{ }}
               counter relayed {{ }}
               chain input {{ type filter hook input priority filter; policy accept;
                 iifname != \"{MGMT_IF}\" meta l4proto udp ip saddr != {ip} counter name \"direct\";
                 ip saddr {ip} tcp sport {port} counter name \"relayed\"; }}
             }}"
        ))?;
        Ok(Meter {
            ns: site.node.name.clone(),
        })
    }

    fn bytes(&self, counter: &str) -> anyhow::Result<u64> {
        let out = output(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "nft",
            "list",
            "counter",
            "inet",
            "segchat_meter",
            counter,
        ])?;
        out.split_whitespace()
            .skip_while(|w| *w != "bytes")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("no byte count in {out:?}"))
    }

    fn read(&self) -> anyhow::Result<Traffic> {
        Ok(Traffic {
            direct: self.bytes("direct")?,
            relayed: self.bytes("relayed")?,
        })
    }

    /// The traffic during `d`.
    async fn over(&self, d: Duration) -> anyhow::Result<Traffic> {
        let before = self.read()?;
        tokio::time::sleep(d).await;
        let after = self.read()?;
        Ok(Traffic {
            direct: after.direct - before.direct,
            relayed: after.relayed - before.relayed,
        })
    }
}

/// A command's stdout.
fn output(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("could not run {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One watch of alice's stream by bob.
#[derive(Debug)]
pub(super) struct Watch {
    pub(super) frames: u64,
    /// The last window's traffic: how the frames came.
    pub(super) traffic: Traffic,
    /// How long the watch lasted (to a direct window, or [`SETTLE`]).
    pub(super) watched: Duration,
    /// The path the streamer's `GET /streams/{id}` gave for bob.
    pub(super) claimed: Option<String>,
}

/// bob watches alice's stream `stream` until frames arrive, then for at
/// least [`WATCH_FOR`], and on until the frames come straight or
/// [`SETTLE`] is over; frames must keep coming.
pub(super) async fn watch(
    alice: &Node,
    bob: &Node,
    stream: u64,
    meter: &Meter,
) -> anyhow::Result<Watch> {
    let b = bob.api();
    b.post(&format!("streams/{stream}/watch"), json!({}))
        .await
        .context("bob watches")?;
    let start = Instant::now();
    let view = || async {
        b.get(&format!("streams/{stream}"))
            .await
            .map(|v| v["watching"].clone())
            .unwrap_or(Value::Null)
    };
    let frames = |v: &Value| v["report"]["frames"].as_u64().unwrap_or(0);
    let first = loop {
        let v = view().await;
        if frames(&v) > 0 {
            break frames(&v);
        }
        if start.elapsed() > DEADLINE {
            bail!("no frame reached bob within {DEADLINE:?}: bob's watch: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut traffic = meter.over(WATCH_FOR).await?;
    let settle = Instant::now();
    while traffic.path() != "direct" && settle.elapsed() < SETTLE {
        traffic = meter.over(Duration::from_secs(1)).await?;
    }
    let v = view().await;
    if frames(&v) <= first || v["state"] != "playing" {
        bail!("frames stopped coming after {first}: bob's watch: {v}");
    }
    // What segchat says about the path: the streamer's view of bob (the
    // newest viewer of that name).
    let claimed = alice
        .api()
        .get(&format!("streams/{stream}"))
        .await
        .ok()
        .and_then(|v| {
            v["streaming"]["viewers"]
                .as_array()
                .and_then(|vs| vs.iter().rev().find(|x| x["user"] == "bob"))
                .and_then(|x| x["path"].as_str().map(str::to_owned))
        });
    Ok(Watch {
        frames: frames(&v),
        traffic,
        watched: start.elapsed(),
        claimed,
    })
}
