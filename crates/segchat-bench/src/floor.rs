//! The `floor` scenario: what this machine can do at best for one channel's
//! fan-out, with no segchat code in the way.
//!
//! A child process (this binary's hidden `floor-writer`) stands in for a
//! host that does nothing but write: at R frames a second it writes one
//! frame of `--frame-bytes` (188, the size of a broadcast of a 64-byte
//! body; raw bytes, its first 8 the time it was written, not a protocol
//! frame) to each of N TCP connections, one blocking `write` each, from one
//! thread. The bench reads them the way `chat`'s members do
//! (single-threaded runtimes, a task per connection); latency is a frame's
//! arrival minus the wall-clock time written into it.
//!
//! No storing, no signatures, no protocol: the figures are the kernel's
//! loopback TCP and the scheduler on this machine. `chat`'s latency at the
//! same N and R cannot be lower than this. (`chat` runs over QUIC on UDP,
//! with its encryption in user space, so this is the floor of plain
//! kernel delivery, not of the same transport.)

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::procs;
use crate::report::Percentiles;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FloorArgs {
    /// Connections written to (members).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    members: u32,
    /// Frames a second, each written to every connection.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// How long the writer writes, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Size of every frame (188: a broadcast with a 64-byte body).
    #[arg(long, default_value_t = 188, value_parser = clap::value_parser!(u32).range(8..=65_536))]
    frame_bytes: u32,
    /// Threads the readers run on (as `chat --member-threads`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    member_threads: u32,
}

/// The child's side: `segchat-bench floor-writer`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WriterArgs {
    /// Where the readers listen.
    #[arg(long)]
    to: SocketAddr,
    #[arg(long)]
    members: u32,
    #[arg(long)]
    rate: f64,
    #[arg(long)]
    duration: f64,
    #[arg(long)]
    frame_bytes: u32,
}

/// What the writer says when it is done (one JSON line on stdout).
#[derive(Debug, Serialize, Deserialize)]
struct WriterReport {
    frames: u64,
    writes: u64,
    window_s: f64,
    cpu_pct: f64,
}

#[derive(Debug, Serialize)]
struct FloorReport {
    bench: &'static str,
    members: u32,
    rate: f64,
    frame_bytes: u32,
    frames: u64,
    deliveries_expected: u64,
    deliveries: u64,
    latency: Percentiles,
    writer_cpu_pct: f64,
    writer_us_per_write: f64,
    reader_cpu_pct: f64,
    steal_pct: f64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub(crate) async fn run(args: FloorArgs) -> anyhow::Result<()> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be above 0 (got {})", args.rate);
    }
    if !(args.duration.is_finite() && args.duration > 0.0) {
        bail!("--duration must be above 0 (got {})", args.duration);
    }
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the readers' listener")?;
    let addr = listener.local_addr()?;
    let exe = std::env::current_exe().context("finding this program")?;
    let child = tokio::process::Command::new(exe)
        .arg("floor-writer")
        .args(["--to", &addr.to_string()])
        .args(["--members", &args.members.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .args(["--duration", &args.duration.to_string()])
        .args(["--frame-bytes", &args.frame_bytes.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the writer")?;
    eprintln!(
        "segchat-bench floor: {} connections, {} frames/s of {} bytes, {} s",
        args.members, args.rate, args.frame_bytes, args.duration
    );
    let members = args.members;
    let accepted = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<TcpStream>> {
        (0..members)
            .map(|_| {
                let (s, _) = listener.accept()?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .collect()
    })
    .await??;
    let pool = procs::MemberThreads::start(args.member_threads)?;
    let frame_len = args.frame_bytes as usize;
    let mut readers = Vec::new();
    for (i, std) in accepted.into_iter().enumerate() {
        readers.push(pool.handle(i).spawn(async move {
            let mut lat = Vec::new();
            let Ok(mut s) = tokio::net::TcpStream::from_std(std) else {
                return lat;
            };
            let mut buf = vec![0u8; frame_len];
            while s.read_exact(&mut buf).await.is_ok() {
                let mut at = [0u8; 8];
                at.copy_from_slice(&buf[..8]);
                lat.push(now_ns().saturating_sub(u64::from_be_bytes(at)));
            }
            lat
        }));
    }
    let cpu0 = procs::cpu_seconds("self")?;
    let machine0 = procs::machine_ticks()?;
    let t0 = Instant::now();
    let mut latencies = Vec::new();
    for r in readers {
        latencies.extend(r.await.context("a reader panicked")?);
    }
    let window = t0.elapsed().as_secs_f64();
    let cpu1 = procs::cpu_seconds("self")?;
    let machine1 = procs::machine_ticks()?;
    pool.stop();
    let out = child.wait_with_output().await?;
    let w: WriterReport = serde_json::from_slice(&out.stdout)
        .context("the writer did not report (see its errors above)")?;
    let report = FloorReport {
        bench: "floor",
        members: args.members,
        rate: args.rate,
        frame_bytes: args.frame_bytes,
        frames: w.frames,
        deliveries_expected: w.frames * u64::from(args.members),
        deliveries: latencies.len() as u64,
        latency: Percentiles::of(latencies),
        writer_cpu_pct: w.cpu_pct,
        writer_us_per_write: w.cpu_pct / 100.0 * w.window_s / (w.writes.max(1) as f64) * 1e6,
        reader_cpu_pct: (cpu1 - cpu0) / window.max(1e-9) * 100.0,
        steal_pct: machine1.stolen_pct_since(&machine0),
    };
    let l = &report.latency;
    println!(
        "  delivered    {} of {}\n  latency      p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms\n  CPU          writer {:.1} % ({:.1} us a write)  readers {:.1} %  (of one core); stolen {:.1} % of the machine",
        report.deliveries,
        report.deliveries_expected,
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.p999_ms,
        l.max_ms,
        report.writer_cpu_pct,
        report.writer_us_per_write,
        report.reader_cpu_pct,
        report.steal_pct
    );
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The writer: connects, writes on schedule, reports, closes.
pub(crate) fn writer(args: WriterArgs) -> anyhow::Result<()> {
    let mut conns: Vec<TcpStream> = (0..args.members)
        .map(|_| {
            let s = TcpStream::connect(args.to)?;
            s.set_nodelay(true)?;
            Ok(s)
        })
        .collect::<std::io::Result<_>>()
        .context("connecting to the readers")?;
    // Let the readers get their connections onto their runtimes.
    std::thread::sleep(Duration::from_millis(500));
    let frames = (args.rate * args.duration).round().max(1.0) as u64;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut frame = vec![0u8; args.frame_bytes as usize];
    let cpu0 = procs::cpu_seconds("self")?;
    let start = Instant::now();
    let mut writes = 0u64;
    for i in 0..frames {
        let due = start + period.mul_f64(i as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        frame[..8].copy_from_slice(&now_ns().to_be_bytes());
        for c in &mut conns {
            c.write_all(&frame).context("a reader went away")?;
            writes += 1;
        }
    }
    let window_s = start.elapsed().as_secs_f64();
    let cpu_pct = (procs::cpu_seconds("self")? - cpu0) / window_s.max(1e-9) * 100.0;
    let report = WriterReport {
        frames,
        writes,
        window_s,
        cpu_pct,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
