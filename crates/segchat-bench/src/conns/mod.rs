//! The `conns` scenario: K server instances (2 by default) on one
//! PostgreSQL with NATS between them (all started for the run), then
//!
//! - **idle nodes**: N tracker links spread over every instance but the
//!   second (with two instances: all to the first), each signed in (as a
//!   visitor: no password to hash), its address submitted, and
//!   heartbeating at the server's interval; prints each instance's memory
//!   before and after, per node it holds (the second holds only
//!   replicas), and all instances' together per node;
//! - **presence across instances**: C registered users on the first
//!   instance go away and come back (`set_activity`: shown idle, then
//!   online) R times a second in all; W users on the second, members of
//!   each changer's channel, are told by the second instance. Prints how
//!   long a change took from the request being sent to the event
//!   arriving, p50/p99.
//!
//! The simulated nodes are spread over M machines (each a key and an
//! endpoint on its own 127.1.x.y, its tracker links TCP from the same
//! address), so no source address runs short of ports; each machine opens
//! N/M links. Each link is a TCP socket at both ends, and a process may
//! hold 20,000 files here: child processes of the bench hold the idle
//! links ([`idle`], at most `--per-process` each), and N/(K-1) must stay
//! under that limit for each instance.

pub(crate) mod idle;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::{SinkExt, StreamExt};
use segchat_proto::tracker::{Event, Request};
use segchat_proto::types::{Presence, Visibility};
use segchat_proto::Frame;
use tokio_util::sync::CancellationToken;

use crate::link::{Machine, Server, TrackerLink};
use crate::procs::{self, Proc};
use crate::report::Percentiles;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnsArgs {
    /// Idle nodes, spread over every instance but the second.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Server instances (at least 2).
    #[arg(long, default_value_t = 2)]
    instances: usize,
    /// Machines (endpoints) the idle nodes are spread over.
    #[arg(long, default_value_t = 100)]
    machines: usize,
    /// Idle links one child process of the bench holds at most.
    #[arg(long, default_value_t = 15_000)]
    per_process: usize,
    /// Users changing status (on the first instance). Each changes
    /// rate/changers times a second: faster than the instances tell, a
    /// user's changes fold into one (counted, and timed from the older).
    #[arg(long, default_value_t = 500)]
    changers: usize,
    /// Users told of the changes (on the second instance).
    #[arg(long, default_value_t = 2)]
    watchers: usize,
    /// Status changes per second, all changers together.
    #[arg(long, default_value_t = 5_000)]
    rate: u32,
    /// Seconds of status changes.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Each machine also keeps a connection to the server's relay once
    /// its first node signed in, as a real node does while signed in
    /// (so that peers behind NAT can reach it). With `--machines` equal
    /// to `--nodes`, what a node's relay connection costs the server.
    #[arg(long)]
    relay: bool,
}

pub(crate) async fn run(args: ConnsArgs) -> anyhow::Result<()> {
    if args.machines == 0 || args.changers == 0 || args.watchers == 0 {
        bail!("--machines, --changers and --watchers must be at least 1");
    }
    if !(2..=10).contains(&args.instances) {
        bail!("--instances must be 2 to 10");
    }
    let exe = procs::segchat_exe()?;
    let work = tempfile::tempdir()?;
    let pg = tokio::task::spawn_blocking(|| {
        segchat_pgtest::Postgres::start(segchat_pgtest::Options {
            durable: true,
            ..Default::default()
        })
    })
    .await?
    .map_err(|e| anyhow!(e))?;
    let db = pg.create_database("conns").await.map_err(|e| anyhow!(e))?;
    let nats = segchat_pgtest::nats::Nats::start().map_err(anyhow::Error::msg)?;
    let per_source = (args.nodes / args.machines.min(args.nodes).max(1) + 64).to_string();
    // Both instances sign with one key: the first makes it.
    let key = work.path().join("a").join("server.key");
    let key = key.to_str().context("a UTF-8 temporary path")?;
    let extra = [
        "--key-file",
        key,
        "--database",
        db.as_str(),
        "--nats",
        nats.url.as_str(),
        "--max-conns-per-source",
        per_source.as_str(),
        // Each watcher joins every changer's channel at once, and each
        // changer may change faster than a person would.
        "--changes-burst",
        "1000000",
        "--changes-per-second",
        "1000000",
    ];
    const NAMES: [&str; 10] = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let mut instances = Vec::with_capacity(args.instances);
    for name in NAMES.iter().take(args.instances) {
        instances.push(start_instance(&exe, work.path(), name, &extra).await?);
    }
    let (sa, sb) = (
        Server::find(instances[0].1).await?,
        Server::find(instances[1].1).await?,
    );
    let addrs: Vec<String> = instances.iter().map(|(_, a)| a.to_string()).collect();
    println!(
        "{} instances on PostgreSQL and NATS: {}",
        instances.len(),
        addrs.join(", ")
    );

    // Idle nodes, on every instance but b.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pids: Vec<String> = instances.iter().map(|(p, _)| p.pid.to_string()).collect();
    let before = pids
        .iter()
        .map(|p| procs::memory(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let holders: Vec<usize> = (0..instances.len()).filter(|&i| i != 1).collect();
    let mut held = vec![0usize; instances.len()];
    for (k, &i) in holders.iter().enumerate() {
        held[i] = args.nodes / holders.len() + usize::from(k < args.nodes % holders.len());
    }
    let plan: Vec<(SocketAddr, usize)> =
        holders.iter().map(|&i| (instances[i].1, held[i])).collect();
    let started = Instant::now();
    let idle = idle::Holders::start(&plan, args.machines, args.per_process, args.relay).await?;
    println!(
        "{} idle nodes connected, signed in and submitted in {:.1} s",
        args.nodes,
        started.elapsed().as_secs_f64()
    );
    // Two heartbeat rounds and the refresh, so every instance is settled.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = pids
        .iter()
        .map(|p| procs::memory(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut total_kib = 0;
    for (i, name) in NAMES.iter().take(instances.len()).enumerate() {
        let grew = after[i].rss_kib.saturating_sub(before[i].rss_kib);
        total_kib += grew;
        let (what, n) = match held[i] {
            0 => ("replicas only; per node in all", args.nodes),
            n => ("holds", n),
        };
        println!(
            "instance {name}: RSS {} → {} MiB, {what} {n}: {:.1} KB per node",
            before[i].rss_kib / 1024,
            after[i].rss_kib / 1024,
            grew as f64 * 1.024 / n.max(1) as f64
        );
    }
    println!(
        "all instances together: {:.1} KB per idle node",
        total_kib as f64 * 1.024 / args.nodes.max(1) as f64
    );
    let lat = presence(&args, &sa, &sb).await?;
    println!(
        "presence a → b at {} changes/s for {:.0} s: {} delivered, p50 {:.2} / p99 {:.2} / max {:.2} ms",
        args.rate, args.seconds, lat.count, lat.p50_ms, lat.p99_ms, lat.max_ms
    );
    let lost = idle.finish().await?;
    println!("idle links lost (until after the presence run): {lost}");
    for (proc, _) in instances {
        proc.stop().await;
    }
    Ok(())
}

/// Changes sent and not yet seen, per user: (status, when sent).
type Pending = Arc<Mutex<HashMap<String, VecDeque<(Presence, Instant)>>>>;

async fn presence(args: &ConnsArgs, sa: &Server, sb: &Server) -> anyhow::Result<Percentiles> {
    let tag = rand::random::<u32>();
    let mut changers = Vec::new();
    for i in 0..args.changers {
        let machine = Machine::bind(sa).await?;
        let mut link = TrackerLink::connect(&machine, sa).await?;
        register(&mut link, &format!("c{tag:x}x{i}")).await?;
        changers.push((machine, link, format!("c{tag:x}x{i}")));
    }
    // Each changer owns a channel the watchers join: a change is told to
    // the watchers only, not to the other changers.
    let channels: Vec<String> = (0..args.changers)
        .map(|i| format!("p{tag:x}x{i}"))
        .collect();
    for ((_, link, _), channel) in changers.iter_mut().zip(&channels) {
        link.call(Request::CreateChannel {
            name: channel.clone(),
            visibility: Visibility::Public,
            allow_visitors: false,
        })
        .await?;
    }
    let pending: Pending = Arc::default();
    let samples = Arc::new(Mutex::new(Vec::<u64>::new()));
    // Changes a watcher never saw on their own: the instance tells a
    // user's latest state, so a change undone before it was told is
    // folded into the next (and that one is timed from the older send).
    let folded = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let mut watchers = Vec::new();
    for i in 0..args.watchers {
        let machine = Machine::bind(sb).await?;
        let mut link = TrackerLink::connect(&machine, sb).await?;
        register(&mut link, &format!("w{tag:x}x{i}")).await?;
        for channel in &channels {
            link.call(Request::JoinChannel {
                channel: channel.clone(),
            })
            .await?;
        }
        let (pending, samples, stop) = (pending.clone(), samples.clone(), stop.clone());
        let folded = folded.clone();
        let mut framed = link.into_framed();
        watchers.push((
            machine,
            tokio::spawn(async move {
                // Heartbeats keep the silent link from being cut.
                let mut beat = tokio::time::interval(Duration::from_secs(2));
                let mut id = 1u32 << 30;
                loop {
                    let frame = tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = beat.tick() => {
                            id += 1;
                            let hb = Frame::Request { id, body: Request::Heartbeat };
                            if framed.send(hb).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        f = framed.next() => f,
                    };
                    let Some(Ok(Frame::Event(Event::Presence { username, status }))) = frame else {
                        if matches!(frame, None | Some(Err(_))) {
                            return;
                        }
                        continue;
                    };
                    let now = Instant::now();
                    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(q) = p.get_mut(&username) {
                        while let Some((s, at)) = q.pop_front() {
                            if s == status {
                                samples
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push((now - at).as_nanos() as u64);
                                break;
                            }
                            folded.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }),
        ));
    }
    // Only the first watcher's view is timed (each change reaches all).
    let watchers_seen = args.watchers;
    tokio::time::sleep(Duration::from_secs(2)).await;
    samples.lock().unwrap_or_else(|e| e.into_inner()).clear();
    folded.store(0, Ordering::Relaxed);
    pending.lock().unwrap_or_else(|e| e.into_inner()).clear();

    let per_changer = f64::from(args.rate) / args.changers as f64;
    let every = Duration::from_secs_f64(1.0 / per_changer.max(0.001));
    let until = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (_machine, mut link, name)) in changers.into_iter().enumerate() {
        let pending = pending.clone();
        tasks.spawn(async move {
            // Spread the changers' ticks over one period.
            tokio::time::sleep(every.mul_f64(n as f64 / 100.0 % 1.0)).await;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut status = Presence::Idle;
            let mut sent = 0u64;
            while Instant::now() < until {
                tick.tick().await;
                pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(name.clone())
                    .or_default()
                    .extend(std::iter::repeat_n((status, Instant::now()), watchers_seen));
                // Away and back: the frequent change (a chosen status is
                // rare and written to the database).
                link.call(Request::SetActivity {
                    idle: status == Presence::Idle,
                })
                .await?;
                sent += 1;
                status = if status == Presence::Idle {
                    Presence::Online
                } else {
                    Presence::Idle
                };
            }
            Ok::<_, anyhow::Error>((sent, _machine))
        });
    }
    let mut sent = 0;
    let mut keep = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (n, m) = done??;
        sent += n;
        keep.push(m);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let got = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
    println!(
        "status changes sent: {sent} ({:.0}/s); events timed: {} of {}; folded into a later change: {}",
        sent as f64 / args.seconds,
        got.len(),
        sent as usize * args.watchers,
        folded.load(Ordering::Relaxed)
    );
    Ok(Percentiles::of(got))
}

async fn register(link: &mut TrackerLink, username: &str) -> anyhow::Result<()> {
    link.call(Request::Register {
        username: username.to_owned(),
        password: "bench password 1".into(),
    })
    .await
    .with_context(|| format!("registering {username}"))?;
    Ok(())
}

async fn start_instance(
    exe: &Path,
    work: &Path,
    name: &'static str,
    extra: &[&str],
) -> anyhow::Result<(Proc, SocketAddr)> {
    let data = work.join(name);
    let data = data.to_str().ok_or_else(|| anyhow!("non-UTF-8 temp dir"))?;
    let mut args = vec!["server", "--listen", "127.0.0.1:0", "--data-dir", data];
    args.extend_from_slice(extra);
    let (proc, rest) = Proc::start(
        "segchat server",
        exe,
        &args,
        work.join(format!("{name}.log")),
        "listening on",
    )
    .await?;
    Ok((proc, rest.parse().context("the server's address")?))
}
