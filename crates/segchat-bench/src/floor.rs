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
//! loopback TCP and the scheduler on this machine.
//!
//! `--transport noise-tcp` is the same TCP fan-out encrypted: a Noise NN
//! handshake per connection (`snow`, ChaCha20-Poly1305), then every frame
//! sealed for its connection and sent with a 2-byte length; the readers
//! open it. It is the other stack the secure-links issue named (encryption
//! over TCP), to put a figure on what encryption costs without QUIC.
//!
//! `--transport quic` is the same fan-out over the transport `chat` runs
//! on: the writer is an iroh endpoint bound as segchat binds its own
//! (`segchat_net::endpoint::bind`), each reader an endpoint of its own
//! on a loopback address of its own (as `chat`'s members), and the writer
//! writes each frame on each reader's QUIC stream from one task, or with
//! `--writer-tasks` hands it to a task per reader (the host's `Outbound`
//! shape). The difference between the two transports is what QUIC, its
//! encryption in user space and one UDP datagram per reader cost on this
//! machine before segchat does anything; `chat`'s latency at the same N
//! and R over QUIC cannot be lower than the QUIC floor.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::procs;
use crate::report::Percentiles;

/// The ALPN of the QUIC floor's connections (no segchat service).
const ALPN_FLOOR: &[u8] = b"segchat-bench/floor/1";

/// How long a reader may take to connect to the QUIC writer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// What carries the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    /// Plain TCP on loopback, one blocking `write` per connection.
    Tcp,
    /// TCP with every frame sealed by a Noise session (`snow`).
    NoiseTcp,
    /// QUIC on iroh endpoints, as segchat's links.
    Quic,
}

/// The Noise pattern of `noise-tcp`: no static keys (the cost of the
/// transport is the same with them; only the handshake differs).
const NOISE: &str = "Noise_NN_25519_ChaChaPoly_BLAKE2s";
/// What sealing adds to a frame (Poly1305's tag).
const NOISE_TAG: usize = 16;

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::NoiseTcp => "noise-tcp",
            Transport::Quic => "quic",
        })
    }
}

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
    /// What carries the frames.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    /// QUIC: the writer hands each frame to a task per reader through a
    /// channel (as the host's `Outbound` does) instead of writing every
    /// stream from its one loop.
    #[arg(long)]
    writer_tasks: bool,
}

/// The child's side: `segchat-bench floor-writer`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WriterArgs {
    /// Where the readers listen (TCP; over QUIC the readers dial).
    #[arg(long)]
    to: Option<SocketAddr>,
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    #[arg(long)]
    writer_tasks: bool,
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

/// The QUIC writer's first line on stdout: where to dial it.
#[derive(Debug, Serialize, Deserialize)]
struct WriterHello {
    id: String,
    addr: SocketAddr,
}

#[derive(Debug, Serialize)]
struct FloorReport {
    bench: &'static str,
    transport: String,
    writer_tasks: bool,
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
    if args.transport == Transport::NoiseTcp && args.frame_bytes as usize + NOISE_TAG > 65_535 {
        bail!("a Noise message is at most 65,535 bytes: --frame-bytes must be at most 65,519");
    }
    if args.writer_tasks && args.transport != Transport::Quic {
        bail!("--writer-tasks is for --transport quic");
    }
    let listener = match args.transport {
        Transport::Tcp | Transport::NoiseTcp => {
            Some(TcpListener::bind("127.0.0.1:0").context("binding the readers' listener")?)
        }
        Transport::Quic => None,
    };
    let exe = std::env::current_exe().context("finding this program")?;
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("floor-writer")
        .args(["--transport", &args.transport.to_string()])
        .args(["--members", &args.members.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .args(["--duration", &args.duration.to_string()])
        .args(["--frame-bytes", &args.frame_bytes.to_string()]);
    if let Some(l) = &listener {
        command.args(["--to", &l.local_addr()?.to_string()]);
    }
    if args.writer_tasks {
        command.arg("--writer-tasks");
    }
    let mut child = command
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the writer")?;
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().context("the writer's stdout")?);
    eprintln!(
        "segchat-bench floor: {} connections over {}{}, {} frames/s of {} bytes, {} s",
        args.members,
        args.transport,
        if args.writer_tasks {
            " (a writer task each)"
        } else {
            ""
        },
        args.rate,
        args.frame_bytes,
        args.duration
    );
    let pool = procs::MemberThreads::start(args.member_threads)?;
    let readers = match listener {
        Some(listener) => tcp_readers(listener, &args, &pool).await?,
        None => {
            let mut line = String::new();
            stdout.read_line(&mut line).await?;
            let hello: WriterHello = serde_json::from_str(&line)
                .context("the writer did not say where it listens (see its errors above)")?;
            quic_readers(hello, &args, &pool).await?
        }
    };
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
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await?;
    child.wait().await?;
    let w: WriterReport = serde_json::from_str(rest.trim())
        .context("the writer did not report (see its errors above)")?;
    let report = FloorReport {
        bench: "floor",
        transport: args.transport.to_string(),
        writer_tasks: args.writer_tasks,
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

/// A reader: the latency of every frame it reads, until the stream ends.
type Reader = tokio::task::JoinHandle<Vec<u64>>;

/// Reads frames of `len` bytes from `stream` until it ends.
async fn read_frames(mut stream: impl tokio::io::AsyncRead + Unpin, len: usize) -> Vec<u64> {
    let mut lat = Vec::new();
    let mut buf = vec![0u8; len];
    while stream.read_exact(&mut buf).await.is_ok() {
        let mut at = [0u8; 8];
        at.copy_from_slice(&buf[..8]);
        lat.push(now_ns().saturating_sub(u64::from_be_bytes(at)));
    }
    lat
}

/// Accepts the TCP writer's connections and reads each on the pool.
async fn tcp_readers(
    listener: TcpListener,
    args: &FloorArgs,
    pool: &procs::MemberThreads,
) -> anyhow::Result<Vec<Reader>> {
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
    let len = args.frame_bytes as usize;
    let noise = args.transport == Transport::NoiseTcp;
    Ok(accepted
        .into_iter()
        .enumerate()
        .map(|(i, std)| {
            pool.handle(i).spawn(async move {
                match tokio::net::TcpStream::from_std(std) {
                    Ok(s) if noise => read_sealed(s, len).await.unwrap_or_default(),
                    Ok(s) => read_frames(s, len).await,
                    Err(_) => Vec::new(),
                }
            })
        })
        .collect())
}

/// A 2-byte length, then that many bytes.
async fn read_record(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let n = s.read_u16().await? as usize;
    buf.resize(n, 0);
    s.read_exact(buf).await.map(drop)
}

/// The responder's side of `noise-tcp`: the handshake, then frames of
/// `len` bytes, each opened, until the stream ends.
async fn read_sealed(mut s: tokio::net::TcpStream, len: usize) -> anyhow::Result<Vec<u64>> {
    let mut noise = snow::Builder::new(NOISE.parse()?).build_responder()?;
    let mut record = Vec::new();
    let mut out = vec![0u8; 65_535];
    read_record(&mut s, &mut record).await?;
    noise.read_message(&record, &mut out)?;
    let n = noise.write_message(&[], &mut out)?;
    s.write_u16(n as u16).await?;
    s.write_all(&out[..n]).await?;
    let mut noise = noise.into_transport_mode()?;
    let mut lat = Vec::new();
    while read_record(&mut s, &mut record).await.is_ok() {
        let n = noise.read_message(&record, &mut out)?;
        if n != len {
            bail!("a frame of {n} bytes, not {len}");
        }
        let mut at = [0u8; 8];
        at.copy_from_slice(&out[..8]);
        lat.push(now_ns().saturating_sub(u64::from_be_bytes(at)));
    }
    Ok(lat)
}

/// Binds an endpoint per reader on the pool (each on a loopback address
/// of its own), dials the QUIC writer and reads the stream it opens.
async fn quic_readers(
    hello: WriterHello,
    args: &FloorArgs,
    pool: &procs::MemberThreads,
) -> anyhow::Result<Vec<Reader>> {
    let id = segchat_net::parse_id(&hello.id)?;
    let len = args.frame_bytes as usize;
    let mut readers = Vec::new();
    let mut connected = Vec::new();
    for i in 0..args.members {
        let at = crate::link::source_for(hello.addr);
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        readers.push(pool.handle(i as usize).spawn(async move {
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let dial = async {
                let client = segchat_net::client::Client::bind(&key, at, None).await?;
                let to = segchat_net::PeerAddress {
                    id,
                    direct: vec![hello.addr],
                    relay: None,
                };
                let mut link = client.open(to, ALPN_FLOOR, CONNECT_TIMEOUT).await?;
                // A QUIC stream reaches the other side with its first byte.
                link.stream.write_all(&[1]).await?;
                link.stream.flush().await?;
                anyhow::Ok((client, link))
            };
            match dial.await {
                Ok((client, link)) => {
                    let _ = ready.send(Ok(()));
                    let lat = read_frames(link.stream, len).await;
                    client.close().await;
                    lat
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    Vec::new()
                }
            }
        }));
        connected.push(is_ready);
    }
    for c in connected {
        c.await
            .context("a reader stopped before connecting")?
            .context("a reader could not connect to the writer")?;
    }
    Ok(readers)
}

/// The writer: connects (TCP) or is dialled (QUIC), writes on schedule,
/// reports, closes.
pub(crate) async fn writer(args: WriterArgs) -> anyhow::Result<()> {
    match args.transport {
        // Plain threads and blocking sockets: nothing else runs meanwhile.
        Transport::Tcp | Transport::NoiseTcp => {
            tokio::task::spawn_blocking(move || tcp_writer(args)).await?
        }
        Transport::Quic => quic_writer(args).await,
    }
}

fn tcp_writer(args: WriterArgs) -> anyhow::Result<()> {
    let to = args.to.context("--to is needed over TCP")?;
    let mut conns: Vec<TcpStream> = (0..args.members)
        .map(|_| {
            let s = TcpStream::connect(to)?;
            s.set_nodelay(true)?;
            Ok(s)
        })
        .collect::<std::io::Result<_>>()
        .context("connecting to the readers")?;
    let mut sessions = match args.transport {
        Transport::NoiseTcp => Some(
            conns
                .iter_mut()
                .map(noise_initiator)
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
        _ => None,
    };
    // Let the readers get their connections onto their runtimes.
    std::thread::sleep(Duration::from_millis(500));
    let frames = (args.rate * args.duration).round().max(1.0) as u64;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut frame = vec![0u8; args.frame_bytes as usize];
    let mut sealed = vec![0u8; 2 + frame.len() + NOISE_TAG];
    let cpu0 = procs::cpu_seconds("self")?;
    let start = Instant::now();
    let mut writes = 0u64;
    for i in 0..frames {
        let due = start + period.mul_f64(i as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        frame[..8].copy_from_slice(&now_ns().to_be_bytes());
        for (k, c) in conns.iter_mut().enumerate() {
            let bytes = match sessions.as_mut() {
                Some(sessions) => {
                    let n = sessions[k].write_message(&frame, &mut sealed[2..])?;
                    sealed[..2].copy_from_slice(&(n as u16).to_be_bytes());
                    &sealed[..2 + n]
                }
                None => &frame[..],
            };
            c.write_all(bytes).context("a reader went away")?;
            writes += 1;
        }
    }
    let window_s = start.elapsed().as_secs_f64();
    let cpu_pct = (procs::cpu_seconds("self")? - cpu0) / window_s.max(1e-9) * 100.0;
    report_writer(frames, writes, window_s, cpu_pct)
}

/// The initiator's side of `noise-tcp`'s handshake, on a blocking socket.
fn noise_initiator(c: &mut TcpStream) -> anyhow::Result<snow::TransportState> {
    use std::io::Read;
    let mut noise = snow::Builder::new(NOISE.parse()?).build_initiator()?;
    let mut buf = vec![0u8; 65_535];
    let n = noise.write_message(&[], &mut buf)?;
    c.write_all(&(n as u16).to_be_bytes())?;
    c.write_all(&buf[..n])?;
    let mut len = [0u8; 2];
    c.read_exact(&mut len)?;
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    c.read_exact(&mut reply)?;
    noise.read_message(&reply, &mut buf)?;
    Ok(noise.into_transport_mode()?)
}

fn report_writer(frames: u64, writes: u64, window_s: f64, cpu_pct: f64) -> anyhow::Result<()> {
    let report = WriterReport {
        frames,
        writes,
        window_s,
        cpu_pct,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&report)?)?;
    out.flush()?;
    Ok(())
}

/// The QUIC writer, on this process's multi-threaded runtime (as a node).
async fn quic_writer(args: WriterArgs) -> anyhow::Result<()> {
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let endpoint = segchat_net::endpoint::bind(segchat_net::endpoint::Options {
        key: key.clone(),
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        relay: segchat_net::endpoint::Relay::None,
        batched_sends: true,
    })
    .await?;
    endpoint.set_alpns(vec![ALPN_FLOOR.to_vec()]);
    let addr = segchat_net::endpoint::local_addr(&endpoint).context("no bound socket")?;
    let hello = WriterHello {
        id: segchat_net::id_hex(&endpoint.id()),
        addr,
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string(&hello)?)?;
        out.flush()?;
    }
    let mut conns = Vec::new();
    let mut sends = Vec::new();
    while conns.len() < args.members as usize {
        let incoming = endpoint.accept().await.context("the endpoint closed")?;
        let conn = incoming.await?;
        let (send, mut recv) = conn.accept_bi().await?;
        recv.read_exact(&mut [0u8; 1]).await?;
        conns.push(conn);
        sends.push(send);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frames = (args.rate * args.duration).round().max(1.0) as u64;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut frame = vec![0u8; args.frame_bytes as usize];
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    if args.writer_tasks {
        for mut send in std::mem::take(&mut sends) {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
            queues.push(tx);
            tasks.push(tokio::spawn(async move {
                while let Some(f) = rx.recv().await {
                    if send.write_all(&f).await.is_err() {
                        break;
                    }
                }
                let _ = send.finish();
            }));
        }
    }
    let cpu0 = procs::cpu_seconds("self")?;
    let start = tokio::time::Instant::now();
    let mut writes = 0u64;
    for i in 0..frames {
        tokio::time::sleep_until(start + period.mul_f64(i as f64)).await;
        frame[..8].copy_from_slice(&now_ns().to_be_bytes());
        for q in &queues {
            q.send(frame.clone()).context("a writer task ended")?;
            writes += 1;
        }
        for s in &mut sends {
            s.write_all(&frame).await.context("a reader went away")?;
            writes += 1;
        }
    }
    let window_s = start.elapsed().as_secs_f64();
    let cpu_pct = (procs::cpu_seconds("self")? - cpu0) / window_s.max(1e-9) * 100.0;
    drop(queues);
    for t in tasks {
        t.await?;
    }
    for s in &mut sends {
        let _ = s.finish();
    }
    // Each reader closes its endpoint once it has read to the end.
    for c in &conns {
        let _ = tokio::time::timeout(Duration::from_secs(10), c.closed()).await;
    }
    report_writer(frames, writes, window_s, cpu_pct)
}
