//! The `stream` scenario: one streamer node sends the test pattern to 1,
//! 4, 8… viewer nodes on loopback, as QUIC datagrams on each viewer's
//! connection.
//!
//! ```text
//!   segchat server  <-- tracker links --  streamer node, viewer nodes
//!   streamer node -- QUIC datagrams -->  each viewer node
//! ```
//!
//! Every process is a real `segchat` (server, streamer node, one node per
//! viewer). Viewers are added round by round (1, then up to 4, then up to
//! 8…); after a warm-up each round measures, per viewer, the frames shown
//! per second, the capture-to-reassembly latency percentiles (from the
//! capture time each frame carries), loss, and the payload bitrate; and
//! the streamer process's CPU.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::procs::{self, Api, Proc};

const CHANNEL: &str = "live";
const PASSWORD: &str = "benchmark-password";

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StreamArgs {
    /// Viewer counts to measure, in increasing order.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    viewers: Vec<u32>,
    /// WIDTHxHEIGHT of the test pattern.
    #[arg(long, default_value = "640x480")]
    size: String,
    #[arg(long, default_value_t = 30)]
    fps: u8,
    /// Seconds measured per round (after a 2-second warm-up).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Print one JSON object per round after the table.
    #[arg(long)]
    json: bool,
}

/// What one round measured.
#[derive(Debug, Clone, serde::Serialize)]
struct Round {
    viewers: u32,
    fps_min: f64,
    fps_avg: f64,
    latency_p50_ms: f64,
    latency_p95_ms: f64,
    loss_percent: f64,
    kbit_per_viewer: f64,
    streamer_cpu_percent: f64,
}

async fn start_node(
    exe: &std::path::Path,
    dir: &std::path::Path,
    server: &str,
    name: &'static str,
) -> anyhow::Result<(Proc, Api)> {
    let data = dir.join(name);
    let data_str = data
        .to_str()
        .context("temporary path is not UTF-8")?
        .to_owned();
    let (proc, _) = Proc::start(
        name,
        exe,
        &[
            "node",
            "--server",
            server,
            "--data-dir",
            &data_str,
            "--p2p",
            "127.0.0.1:0",
        ],
        dir.join(format!("{name}.log")),
        "node API listening on",
    )
    .await?;
    let api = Api::open(&data.join("api.json"))?;
    Ok((proc, api))
}

/// Waits until the node's server link is up.
async fn connected(api: &Api) -> anyhow::Result<()> {
    let start = Instant::now();
    while api.get("node").await?["server_connected"] != true {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("a node did not connect to the server");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

pub(crate) async fn run(args: StreamArgs) -> anyhow::Result<()> {
    let (w, h) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u16>().ok()?, h.parse::<u16>().ok()?)))
        .context("--size is WIDTHxHEIGHT, e.g. 640x480")?;
    let max = args.viewers.iter().copied().max().unwrap_or(0);
    if max == 0 || args.viewers.windows(2).any(|p| p[0] >= p[1]) {
        bail!("--viewers is a list of increasing counts above zero, e.g. 1,4,8");
    }
    let exe = procs::segchat_exe()?;
    let tmp = tempfile::Builder::new()
        .prefix("segchat-bench-stream-")
        .tempdir()
        .context("could not create a temporary directory")?;
    let dir = tmp.path().to_owned();
    let (_server, server_addr) = procs::start_server(&exe, &dir).await?;
    let server = server_addr.to_string();
    let (mut streamer, sapi) = start_node(&exe, &dir, &server, "streamer").await?;
    connected(&sapi).await?;
    sapi.post(
        "session/register",
        json!({"username": "streamer", "password": PASSWORD}),
    )
    .await?;
    sapi.post("channels", json!({"name": CHANNEL, "visibility": "public"}))
        .await?;
    const NAMES: [&str; 16] = [
        "viewer1", "viewer2", "viewer3", "viewer4", "viewer5", "viewer6", "viewer7", "viewer8",
        "viewer9", "viewer10", "viewer11", "viewer12", "viewer13", "viewer14", "viewer15",
        "viewer16",
    ];
    if max as usize > NAMES.len() {
        bail!("at most {} viewers", NAMES.len());
    }
    let mut viewers: Vec<(Proc, Api)> = Vec::new();
    for name in NAMES.iter().take(max as usize) {
        let (p, api) = start_node(&exe, &dir, &server, name).await?;
        connected(&api).await?;
        api.post(
            "session/register",
            json!({"username": name, "password": PASSWORD}),
        )
        .await?;
        api.post(&format!("channels/{CHANNEL}/join"), json!({}))
            .await?;
        viewers.push((p, api));
    }
    let started = sapi
        .post(
            "streams",
            json!({"channel": CHANNEL, "source": "test_pattern", "width": w, "height": h, "fps": args.fps}),
        )
        .await?;
    let id = started["stream"]["stream_id"]
        .as_u64()
        .context("no stream id")?;
    eprintln!(
        "streaming {w}x{h} at {} fps (MJPEG test pattern) to up to {max} viewer processes on loopback; {} s per round",
        args.fps, args.seconds
    );

    let pid = streamer.pid.to_string();
    let mut rounds = Vec::new();
    let mut watching = 0usize;
    for &n in &args.viewers {
        for (_, api) in viewers.iter().take(n as usize).skip(watching) {
            api.post(&format!("streams/{id}/watch"), json!({})).await?;
        }
        watching = n as usize;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let active = &viewers[..watching];
        let before = reports(active, id).await?;
        let cpu0 = procs::cpu_seconds(&pid)?;
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
        let secs = t0.elapsed().as_secs_f64();
        let cpu1 = procs::cpu_seconds(&pid)?;
        let after = reports(active, id).await?;
        streamer.check_alive()?;
        rounds.push(round(
            n,
            secs,
            &before,
            &after,
            (cpu1 - cpu0) / secs * 100.0,
        ));
    }

    println!();
    println!(
        "livestream {w}x{h} @ {} fps, MJPEG test pattern, loopback, {} s per round",
        args.fps, args.seconds
    );
    println!(
        "{:>7}  {:>12}  {:>8}  {:>8}  {:>6}  {:>13}  {:>13}",
        "viewers", "fps min/avg", "p50 ms", "p95 ms", "loss %", "kbit/s/viewer", "streamer CPU %"
    );
    for r in &rounds {
        println!(
            "{:>7}  {:>5.1} / {:>4.1}  {:>8.1}  {:>8.1}  {:>6.2}  {:>13.0}  {:>13.1}",
            r.viewers,
            r.fps_min,
            r.fps_avg,
            r.latency_p50_ms,
            r.latency_p95_ms,
            r.loss_percent,
            r.kbit_per_viewer,
            r.streamer_cpu_percent
        );
    }
    if args.json {
        for r in &rounds {
            println!("{}", serde_json::to_string(r)?);
        }
    }
    drop(viewers);
    drop(tmp);
    Ok(())
}

/// Each active viewer's `watching` view.
async fn reports(viewers: &[(Proc, Api)], id: u64) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::with_capacity(viewers.len());
    for (_, api) in viewers {
        out.push(api.get(&format!("streams/{id}")).await?["watching"].clone());
    }
    Ok(out)
}

fn round(n: u32, secs: f64, before: &[Value], after: &[Value], cpu: f64) -> Round {
    let num = |v: &Value, k: &str| v["report"][k].as_u64().unwrap_or(0) as f64;
    let fps: Vec<f64> = before
        .iter()
        .zip(after)
        .map(|(b, a)| (num(a, "frames") - num(b, "frames")) / secs)
        .collect();
    let (shown, lost): (f64, f64) = before.iter().zip(after).fold((0.0, 0.0), |(s, l), (b, a)| {
        (
            s + num(a, "frames") - num(b, "frames"),
            l + num(a, "lost") - num(b, "lost"),
        )
    });
    let p50 =
        after.iter().map(|a| num(a, "latency_p50_us")).sum::<f64>() / after.len().max(1) as f64;
    let p95 = after
        .iter()
        .map(|a| num(a, "latency_p95_us"))
        .fold(0.0, f64::max);
    let kbit = after
        .iter()
        .map(|a| a["bitrate_kbps"].as_u64().unwrap_or(0) as f64)
        .sum::<f64>()
        / after.len().max(1) as f64;
    Round {
        viewers: n,
        fps_min: fps.iter().copied().fold(f64::INFINITY, f64::min),
        fps_avg: fps.iter().sum::<f64>() / fps.len().max(1) as f64,
        latency_p50_ms: p50 / 1000.0,
        latency_p95_ms: p95 / 1000.0,
        loss_percent: if shown + lost > 0.0 {
            100.0 * lost / (shown + lost)
        } else {
            0.0
        },
        kbit_per_viewer: kbit,
        streamer_cpu_percent: cpu,
    }
}
