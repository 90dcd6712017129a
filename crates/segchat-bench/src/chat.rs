//! The `chat` scenario: channel fan-out through a host node.
//!
//! ```text
//!   segchat server  <-- tracker links --  host node, members, senders
//!   host node (P2P) <--  peer links   --  N members (visitors), K senders
//! ```
//!
//! The server and the host are real processes; members and senders are
//! tasks in this process, each a machine of its own: its own node key, a
//! QUIC endpoint under that key on its own loopback address, and from it a
//! tracker link (kept alive with heartbeats) and a peer link (keyed as its
//! ticket's `node_key`, as the host demands). Senders sign all their posts before the send
//! window (signing is each author's own machine's work; here it would take
//! CPU from the host), then post them at a fixed pace without waiting for
//! acks. Every body starts with the sender's number and the post's; the
//! sender notes when each post went out (nanoseconds since a bench-wide
//! `Instant`), so a member's latency is "when it arrived" minus that.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use segchat_net::client::Client;
use segchat_proto::message::{Draft, Message, MAX_BODY_LEN};
use segchat_proto::ticket::SignedTicket;
use segchat_proto::types::NodeAddr;
use segchat_proto::{peer, tracker, Failure, Frame, Status};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::link::{self, PeerFrame, PeerFramed, TrackerLink};
use crate::procs::{self, Proc};
use crate::report::{ChatReport, Cpu, Percentiles};

const CHANNEL: &str = "bench";
const PASSWORD: &str = "benchmark-password";
/// Digits naming the post at the start of every body: sender (2), post (18).
const STAMP_LEN: usize = 20;
/// How long the host has to announce the channel to the server.
const HOST_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ChatArgs {
    /// Members subscribed to the channel (visitors, one peer link each).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    members: u32,
    /// Messages per second, all senders together.
    #[arg(long)]
    rate: f64,
    /// How long the senders post, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Registered users posting, each at rate / senders.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    senders: u32,
    /// Size of every message body (the first 20 bytes name the post).
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// Longest wait, after the last post, for outstanding acks and
    /// deliveries, in seconds.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Members and senders setting up at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Threads the members run on, each a single-threaded runtime with
    /// its share of the members (as if they were that many machines).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    member_threads: u32,
    /// Members and senders reach the host only through the server's relay
    /// (their endpoints have no UDP socket): the relay's throughput and
    /// added latency. The relay takes 64 TCP connections per source IP,
    /// so at most about 60 members.
    #[arg(long)]
    via_relay: bool,
    /// Members and senders link to the host over QUIC, as nodes do when
    /// the host takes no TCP from them (behind NAT); by default they take
    /// TLS over TCP, as a node does where the host is directly reachable.
    #[arg(long, conflicts_with = "via_relay")]
    quic: bool,
    /// Keep the temporary directory (data and the children's logs).
    #[arg(long)]
    keep: bool,
}

impl ChatArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!("--rate must be above 0 (got {})", self.rate);
        }
        if !(self.duration.is_finite() && self.duration > 0.0) {
            bail!("--duration must be above 0 (got {})", self.duration);
        }
        if !(STAMP_LEN..=MAX_BODY_LEN).contains(&self.body_bytes) {
            bail!(
                "--body-bytes must be {STAMP_LEN}..={MAX_BODY_LEN} (the first {STAMP_LEN} name the post); got {}",
                self.body_bytes
            );
        }
        if !(self.drain.is_finite() && self.drain >= 0.0) {
            bail!("--drain must be 0 or more (got {})", self.drain);
        }
        if self.connect_concurrency == 0 {
            bail!("--connect-concurrency must be at least 1");
        }
        if !(1..=99).contains(&self.senders) {
            bail!("--senders must be 1..=99 (got {})", self.senders);
        }
        Ok(())
    }
}

/// Counters every task bumps, read by the drain loop.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
    delivered: AtomicU64,
}

pub(crate) async fn run(args: ChatArgs) -> anyhow::Result<()> {
    args.validate()?;
    link::VIA_RELAY.store(args.via_relay, std::sync::atomic::Ordering::Relaxed);
    link::QUIC_ONLY.store(args.quic, std::sync::atomic::Ordering::Relaxed);
    let exe = procs::segchat_exe()?;
    let tmp = tempfile::Builder::new()
        .prefix("segchat-bench-")
        .tempdir()
        .context("could not create a temporary directory")?;
    let dir = tmp.path().to_owned();
    let tmp = if args.keep {
        eprintln!("keeping {}", tmp.keep().display());
        None
    } else {
        Some(tmp)
    };
    let setup_start = Instant::now();

    let (server, server_addr) = procs::start_server(&exe, &dir).await?;
    eprintln!("server listening on {server_addr} (pid {})", server.pid);
    let (host, api) = procs::start_host(&exe, &dir, server_addr).await?;
    eprintln!("host node started (pid {})", host.pid);
    let result = run_with(&args, server_addr, &api, server, host, setup_start).await;
    if let Some(tmp) = tmp {
        let _ = tmp.close();
    }
    result
}

async fn run_with(
    args: &ChatArgs,
    server_addr: SocketAddr,
    api: &procs::Api,
    server: Proc,
    mut host: Proc,
    setup_start: Instant,
) -> anyhow::Result<()> {
    let mut fleet = Fleet {
        pool: procs::MemberThreads::start(args.member_threads)?,
        clients: Vec::new(),
    };
    let measured = measure(
        args,
        server_addr,
        api,
        &server,
        &mut host,
        setup_start,
        &mut fleet,
    )
    .await;
    // However the run ended: every endpoint says goodbye to the host and
    // the server while both still run, then everything stops.
    link::close_all(fleet.clients).await;
    host.stop().await;
    server.stop().await;
    fleet.pool.stop();
    let report = measured?;
    report.print_table();
    report.print_json()?;
    Ok(())
}

/// Where the members live: the threads they run on, and every simulated
/// machine's endpoint, closed when the run ends.
#[derive(Debug)]
struct Fleet {
    pool: procs::MemberThreads,
    clients: Vec<Client>,
}

/// Sets the run up, posts, drains, and gathers the figures.
async fn measure(
    args: &ChatArgs,
    server_addr: SocketAddr,
    api: &procs::Api,
    server: &Proc,
    host: &mut Proc,
    setup_start: Instant,
    fleet: &mut Fleet,
) -> anyhow::Result<ChatReport> {
    wait_for_link(api).await?;
    api.post(
        "session/register",
        json!({"username": "host", "password": PASSWORD}),
    )
    .await
    .context("registering the host's user")?;
    api.post(
        "channels",
        json!({"name": CHANNEL, "visibility": "public", "allow_visitors": true}),
    )
    .await
    .context("creating the channel")?;
    let server_at = link::Server::find(server_addr).await?;
    let host_addr = wait_for_host(&server_at, api).await?;
    eprintln!("the host serves #{CHANNEL} at {}", host_addr.addr);

    let epoch = Instant::now();
    let per_sender = args.rate / f64::from(args.senders);
    let count = (per_sender * args.duration).round().max(1.0) as u64;
    // When each sender's post i went out, in ns since `epoch` (0 = not yet).
    let sent_at: SentAt = Arc::new(
        (0..args.senders)
            .map(|_| (0..count).map(|_| AtomicU64::new(0)).collect())
            .collect(),
    );
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let mut trackers: Vec<JoinHandle<Option<String>>> = Vec::new();

    // Senders first: registering costs an argon2 hash each.
    let mut senders = Vec::new();
    for i in 0..args.senders {
        let s = setup_sender(i, server_at, host_addr.clone())
            .await
            .with_context(|| format!("setting up sender{i}"))?;
        fleet.clients.push(s.client);
        trackers.push(tokio::spawn(s.tracker.keep_alive(stop.clone())));
        // Kept alive while the members are set up (that may take longer
        // than the host waits for a silent link).
        senders.push((s.name, s.key, s.ticket, link::Held::new(s.peer)));
    }

    // Members live on threads of their own (their endpoints too), so the
    // posting senders and the bench's bookkeeping do not delay what
    // members receive.
    let set_up = futures::stream::iter(0..args.members)
        .map(|i| {
            let on = fleet.pool.handle(i as usize);
            let setup = on.spawn(setup_member(i, server_at, host_addr.clone()));
            async move { (on, setup.await) }
        })
        .buffer_unordered(args.connect_concurrency);
    let mut set_up = Box::pin(set_up);
    let mut members = Vec::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    while let Some((on, r)) = set_up.next().await {
        match r.context("a member's set-up panicked").and_then(|r| r) {
            Ok((client, tracker, peer, last_seq)) => {
                fleet.clients.push(client);
                trackers.push(on.spawn(tracker.keep_alive(stop.clone())));
                let task = member(
                    peer,
                    last_seq,
                    epoch,
                    Arc::clone(&sent_at),
                    Arc::clone(&counters),
                    stop.clone(),
                );
                members.push(on.spawn(task));
            }
            Err(e) => *failures.entry(format!("{e:#}")).or_default() += 1,
        }
        let done = members.len() + failures.values().sum::<u64>() as usize;
        if done.is_multiple_of(100) {
            eprintln!("members set up: {done}/{}", args.members);
        }
    }
    drop(set_up);
    if !failures.is_empty() {
        for (e, n) in &failures {
            eprintln!("warning: {n} members could not connect: {e}");
        }
        if members.is_empty() {
            bail!("no member could connect to the host");
        }
        eprintln!(
            "warning: going on with {} of {} members",
            members.len(),
            args.members
        );
    }
    let setup_s = setup_start.elapsed().as_secs_f64();
    eprintln!("set up in {setup_s:.1} s; posting for {} s", args.duration);

    // The send window.
    host.check_alive()?;
    let host_pid = host.pid.to_string();
    let server_pid = server.pid.to_string();
    let rss_before = procs::memory(&host_pid)?.rss_kib;
    let plan = Plan {
        count,
        period: Duration::from_secs_f64(1.0 / per_sender),
        body_bytes: args.body_bytes,
    };
    // Every post is signed before the window (signing is the members'
    // machines' work, not the host's; here it would take the host's CPU).
    let mut signing = Vec::new();
    for (k, (name, key, ticket, _)) in senders.iter().enumerate() {
        let (name, key, ticket) = (name.clone(), key.clone(), ticket.clone());
        signing.push(tokio::task::spawn_blocking(move || {
            presign(k, &name, &key, &ticket, plan)
        }));
    }
    let mut posts = Vec::new();
    for s in signing {
        posts.push(s.await.context("a signing task panicked")??);
    }
    eprintln!("signed {} posts", plan.count * posts.len() as u64);
    let cpu0 = [
        procs::cpu_seconds(&host_pid)?,
        procs::cpu_seconds(&server_pid)?,
        procs::cpu_seconds("self")?,
    ];
    let machine0 = procs::machine_ticks()?;
    let t0 = Instant::now();
    let mut sender_tasks = Vec::new();
    let n_senders = senders.len() as u32;
    for (k, ((_, _, _, peer), posts)) in senders.into_iter().zip(posts).enumerate() {
        // Senders take turns: sender k starts k/K of a period late, so the
        // posts of all senders together come evenly at the rate asked for
        // (in step, K posts would land at once every K/R seconds).
        let start = t0 + plan.period * k as u32 / n_senders;
        let out = Outgoing {
            posts,
            sent_at: Arc::clone(&sent_at),
            sender: k,
            epoch,
        };
        let peer = peer.take().await?;
        let task = sender(peer, out, plan, start, Arc::clone(&counters), stop.clone());
        sender_tasks.push(tokio::spawn(task));
    }
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for t in sender_tasks {
        let (writer, reader) = t.await.context("a sender task panicked")?;
        writers.push(writer);
        readers.push(reader);
    }
    let mut sent = 0;
    let mut write_errors = Vec::new();
    for w in writers {
        let w = w.await.context("a sender task panicked")?;
        sent += w.sent;
        if let Some(e) = w.error {
            write_errors.push(e);
        }
    }
    let send_window = t0.elapsed().as_secs_f64();
    let cpu1 = [
        procs::cpu_seconds(&host_pid)?,
        procs::cpu_seconds(&server_pid)?,
        procs::cpu_seconds("self")?,
    ];
    let machine1 = procs::machine_ticks()?;
    for e in &write_errors {
        eprintln!("warning: a sender stopped early: {e}");
    }

    // Drain: wait for every answer and every delivery, or the deadline.
    let t1 = Instant::now();
    let members_n = members.len() as u64;
    let drain_deadline = t1 + Duration::from_secs_f64(args.drain);
    loop {
        let acked = counters.acked.load(Ordering::Relaxed);
        let answered = acked + counters.refused.load(Ordering::Relaxed);
        let delivered = counters.delivered.load(Ordering::Relaxed);
        if (answered >= sent && delivered >= acked * members_n) || Instant::now() >= drain_deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_s = t1.elapsed().as_secs_f64();
    host.check_alive()?;
    let mem_after = procs::memory(&host_pid)?;
    stop.cancel();

    // Gather.
    let mut report = ChatReport {
        bench: "chat",
        members: args.members as usize,
        members_connected: members.len(),
        senders: args.senders as usize,
        rate: args.rate,
        duration_s: args.duration,
        body_bytes: args.body_bytes,
        setup_s,
        send_window_s: send_window,
        drain_s,
        posts_sent: sent,
        send_rate: sent as f64 / send_window.max(1e-9),
        host_rss_before_kib: rss_before,
        host_rss_after_kib: mem_after.rss_kib,
        host_hwm_kib: mem_after.hwm_kib,
        ..ChatReport::default()
    };
    let pct = |i: usize| (cpu1[i] - cpu0[i]) / send_window.max(1e-9) * 100.0;
    report.cpu = Cpu {
        host_pct: pct(0),
        server_pct: pct(1),
        bench_pct: pct(2),
        steal_pct: machine1.stolen_pct_since(&machine0),
    };
    let mut ack_nanos = Vec::new();
    for r in readers {
        let r = r.await.context("a sender task panicked")?;
        report.posts_acked += r.acked;
        report.posts_refused += r.refused.values().sum::<u64>();
        for (reason, n) in r.refused {
            *report.refusals.entry(reason).or_default() += n;
        }
        if let Some(lost) = r.lost {
            *report
                .cut_off_reasons
                .entry(format!("sender: {lost}"))
                .or_default() += 1;
        }
        ack_nanos.extend(r.ack_nanos);
    }
    report.posts_unanswered = sent.saturating_sub(report.posts_acked + report.posts_refused);
    let mut latencies = Vec::new();
    for m in members {
        let m = m.await.context("a member task panicked")?;
        report.deliveries += m.received;
        report.seq_missing += m.missing;
        report.duplicates += m.duplicates;
        report.out_of_order += m.out_of_order;
        if let Some(lost) = m.lost {
            report.members_cut_off += 1;
            *report.cut_off_reasons.entry(lost).or_default() += 1;
        }
        latencies.extend(m.latencies);
    }
    for t in trackers {
        if let Ok(Some(_lost)) = t.await {
            report.tracker_links_lost += 1;
        }
    }
    report.deliveries_expected = report.posts_acked * members_n;
    report.delivered_pct = if report.deliveries_expected == 0 {
        0.0
    } else {
        report.deliveries as f64 / report.deliveries_expected as f64 * 100.0
    };
    report.peer_connect_503_retries = RETRIED_503.load(Ordering::Relaxed);
    report.latency = Percentiles::of(latencies);
    report.ack_latency = Percentiles::of(ack_nanos);
    Ok(report)
}

/// Waits until the host node's link to the server is up.
async fn wait_for_link(api: &procs::Api) -> anyhow::Result<()> {
    let deadline = Instant::now() + HOST_DEADLINE;
    loop {
        let node = api.get("node").await?;
        if node.get("server_connected").and_then(|v| v.as_bool()) == Some(true) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the host node did not connect to the server within {} s: {node}",
                HOST_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `list_channels` until the server names the channel's host; if it
/// never does, asks the host's P2P port directly so the error says why.
async fn wait_for_host(server: &link::Server, api: &procs::Api) -> anyhow::Result<NodeAddr> {
    let observer = link::Machine::bind(server).await?;
    let found = observe_host(&observer, server, api).await;
    link::close_all(vec![observer.client]).await;
    found
}

async fn observe_host(
    observer: &link::Machine,
    server: &link::Server,
    api: &procs::Api,
) -> anyhow::Result<NodeAddr> {
    let mut tracker = TrackerLink::connect(observer, server).await?;
    tracker
        .call(tracker::Request::Visit {
            display_name: "bench observer".into(),
        })
        .await?;
    let deadline = Instant::now() + HOST_DEADLINE;
    while Instant::now() < deadline {
        if let tracker::Reply::Channels { channels } =
            tracker.call(tracker::Request::ListChannels).await?
        {
            if let Some(host) = channels
                .into_iter()
                .find(|c| c.name == CHANNEL)
                .and_then(|c| c.host)
            {
                return Ok(host);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Find out what the host says when asked directly.
    let node = api.get("node").await?;
    let p2p = node
        .get("advertised_addr")
        .and_then(|v| v.as_str())
        .or_else(|| node.get("p2p_addr").and_then(|v| v.as_str()))
        .ok_or_else(|| anyhow!("the host's /node names no P2P address: {node}"))?;
    let addr: SocketAddr = p2p
        .parse()
        .with_context(|| format!("the host's P2P address {p2p:?}"))?;
    let node_id = node
        .get("node_id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("the host's /node names no node_id: {node}"))?
        .to_owned();
    let host = NodeAddr { node_id, addr };
    let ticket = tracker.ticket(&observer.key).await?;
    let why = match link::peer_connect(observer, &host, ticket, CHANNEL).await {
        Ok(_) => "yet it accepts peer_connect".to_owned(),
        Err(e) => format!("and its P2P endpoint at {host} says: {e:#}"),
    };
    bail!(
        "the host node never announced #{CHANNEL} to the server (its host stayed null for {} s), {why}. \
         Does this segchat build host channels?",
        HOST_DEADLINE.as_secs()
    )
}

#[derive(Debug)]
struct SenderSetup {
    name: String,
    client: Client,
    key: SigningKey,
    ticket: SignedTicket,
    tracker: TrackerLink,
    peer: PeerFramed,
}

async fn setup_sender(i: u32, server: link::Server, host: NodeAddr) -> anyhow::Result<SenderSetup> {
    let machine = link::Machine::bind(&server).await?;
    match sender_links(i, &machine, &server, &host).await {
        Ok((name, ticket, tracker, peer)) => Ok(SenderSetup {
            name,
            client: machine.client,
            key: machine.key,
            ticket,
            tracker,
            peer,
        }),
        Err(e) => {
            link::close_all(vec![machine.client]).await;
            Err(e)
        }
    }
}

/// Sender `i` registers, joins the channel, and connects to the host.
async fn sender_links(
    i: u32,
    machine: &link::Machine,
    server: &link::Server,
    host: &NodeAddr,
) -> anyhow::Result<(String, SignedTicket, TrackerLink, PeerFramed)> {
    let name = format!("sender{i}");
    let mut tracker = TrackerLink::connect(machine, server).await?;
    tracker
        .call(tracker::Request::Register {
            username: name.clone(),
            password: PASSWORD.into(),
        })
        .await?;
    tracker
        .call(tracker::Request::JoinChannel {
            channel: CHANNEL.into(),
        })
        .await?;
    let ticket = tracker.ticket(&machine.key).await?;
    link::reach_if_relayed(&mut tracker, host).await?;
    let (peer, can_write, _) = peer_connect(machine, host, ticket.clone()).await?;
    if !can_write {
        bail!("the host says {name} may not post to #{CHANNEL}");
    }
    Ok((name, ticket, tracker, peer))
}

/// Member `i`: a machine of its own that visits, and subscribes at the
/// host; answers its endpoint with its links.
async fn setup_member(
    i: u32,
    server: link::Server,
    host: NodeAddr,
) -> anyhow::Result<(Client, TrackerLink, PeerFramed, u64)> {
    let machine = link::Machine::bind(&server).await?;
    match member_links(i, &machine, &server, &host).await {
        Ok((tracker, peer, last_seq)) => Ok((machine.client, tracker, peer, last_seq)),
        Err(e) => {
            link::close_all(vec![machine.client]).await;
            Err(e)
        }
    }
}

async fn member_links(
    i: u32,
    machine: &link::Machine,
    server: &link::Server,
    host: &NodeAddr,
) -> anyhow::Result<(TrackerLink, PeerFramed, u64)> {
    let mut tracker = TrackerLink::connect(machine, server).await?;
    tracker
        .call(tracker::Request::Visit {
            display_name: format!("member{i}"),
        })
        .await?;
    let ticket = tracker.ticket(&machine.key).await?;
    link::reach_if_relayed(&mut tracker, host).await?;
    let (peer, _, last_seq) = peer_connect(machine, host, ticket).await?;
    Ok((tracker, peer, last_seq))
}

/// `peer_connect` answers refused with 503 and then retried.
static RETRIED_503: AtomicU64 = AtomicU64::new(0);

/// [`link::peer_connect`], retrying while the host answers 503
/// `UNAVAILABLE` (it is still learning the channel's rules from the
/// server), as a member's node would.
async fn peer_connect(
    machine: &link::Machine,
    host: &NodeAddr,
    ticket: SignedTicket,
) -> anyhow::Result<(PeerFramed, bool, u64)> {
    let deadline = Instant::now() + link::STEP_TIMEOUT;
    let mut wait = Duration::from_millis(20);
    loop {
        match link::peer_connect(machine, host, ticket.clone(), CHANNEL).await {
            Err(e)
                if Instant::now() < deadline
                    && e.downcast_ref::<Failure>()
                        .is_some_and(|f| f.status == Status::Unavailable) =>
            {
                RETRIED_503.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            r => return r,
        }
    }
}

/// What one member saw.
#[derive(Debug, Default)]
struct MemberResult {
    /// Distinct broadcasts of this run.
    received: u64,
    /// Sequence numbers below the highest seen that never arrived.
    missing: u64,
    duplicates: u64,
    /// Broadcasts that arrived after one with a higher sequence number.
    out_of_order: u64,
    latencies: Vec<u64>,
    lost: Option<String>,
}

async fn member(
    mut peer: PeerFramed,
    base_seq: u64,
    epoch: Instant,
    sent_at: SentAt,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> MemberResult {
    let mut r = MemberResult::default();
    // seen[i]: whether seq base_seq + 1 + i arrived.
    let mut seen: Vec<bool> = Vec::new();
    let mut tickets = peer::LinkTickets::default();
    let mut ping = tokio::time::interval(link::PING_EVERY);
    let mut ping_id = link::PING_IDS;
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            f = peer.next() => f,
            _ = ping.tick() => {
                ping_id = ping_id.wrapping_add(1).max(link::PING_IDS);
                let req = Frame::Request { id: ping_id, body: peer::Request::Ping };
                if let Err(e) = peer.send(req).await {
                    r.lost = Some(format!("peer link: {e}"));
                    break;
                }
                continue;
            }
        };
        if let Some(why) = link_ended(&frame) {
            r.lost = Some(why);
            break;
        }
        match frame {
            Some(Ok(Frame::Event(peer::Event::Ticket { ticket_ref, ticket }))) => {
                if let Err(e) = tickets.learn(ticket_ref, ticket) {
                    r.lost = Some(format!("the host broke the peer link: {e}"));
                    break;
                }
            }
            Some(Ok(Frame::Event(peer::Event::Broadcast {
                seq,
                ticket_ref,
                message,
            }))) => {
                let now = epoch.elapsed().as_nanos() as u64;
                if tickets.get(ticket_ref).is_none() {
                    r.lost = Some(format!(
                        "the host broke the peer link: broadcast {seq} names ticket {ticket_ref}, never sent"
                    ));
                    break;
                }
                let Some(i) = seq.checked_sub(base_seq + 1) else {
                    r.duplicates += 1;
                    continue;
                };
                let i = i as usize;
                if i < seen.len() {
                    if seen[i] {
                        r.duplicates += 1;
                        continue;
                    }
                    r.out_of_order += 1;
                } else {
                    seen.resize(i + 1, false);
                }
                seen[i] = true;
                if let Some(sent) = post_sent_at(&sent_at, &message.body) {
                    r.latencies.push(now.saturating_sub(sent));
                }
                r.received += 1;
                counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            // Anything else; the link's end was handled above.
            _ => {}
        }
    }
    r.missing = seen.len() as u64 - r.received;
    r
}

/// Why the host's peer link ended, if `frame` (the next thing read from
/// it) ends it.
fn link_ended(
    frame: &Option<Result<PeerFrame, segchat_proto::frame::CodecError>>,
) -> Option<String> {
    match frame {
        Some(Ok(Frame::Error(f))) => Some(format!("the host closed the peer link: {f}")),
        Some(Err(e)) => Some(format!("peer link: {e}")),
        None => Some("the host closed the peer link without a reason".into()),
        Some(Ok(_)) => None,
    }
}

/// When each sender's post i went out, in ns since the bench's epoch.
type SentAt = Arc<Vec<Vec<AtomicU64>>>;

/// When the post with this body went out: the body starts with the
/// sender's number (2 digits) and the post's (18).
fn post_sent_at(sent_at: &SentAt, body: &str) -> Option<u64> {
    let sender: usize = body.get(..2)?.parse().ok()?;
    let i: usize = body.get(2..STAMP_LEN)?.parse().ok()?;
    let t = sent_at.get(sender)?.get(i)?.load(Ordering::Acquire);
    (t != 0).then_some(t)
}

/// How one sender paces its posts.
#[derive(Debug, Clone, Copy)]
struct Plan {
    count: u64,
    period: Duration,
    body_bytes: usize,
}

#[derive(Debug, Default)]
struct WriterResult {
    sent: u64,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct ReaderResult {
    acked: u64,
    refused: BTreeMap<String, u64>,
    ack_nanos: Vec<u64>,
    lost: Option<String>,
}

type Pending = Arc<Mutex<HashMap<u32, Instant>>>;

/// Starts one sender's writer and reader; answers both handles.
async fn sender(
    peer: PeerFramed,
    out: Outgoing,
    plan: Plan,
    start: Instant,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> (JoinHandle<WriterResult>, JoinHandle<ReaderResult>) {
    let (sink, stream) = peer.split();
    let pending: Pending = Arc::default();
    let reader = tokio::spawn(sender_reader(
        stream,
        Arc::clone(&pending),
        Arc::clone(&counters),
        stop.clone(),
    ));
    let writer = tokio::spawn(async move {
        let mut w = WriterResult::default();
        if let Err(e) =
            sender_writer(sink, out, plan, start, &pending, &counters, &stop, &mut w).await
        {
            w.error = Some(format!("{e:#}"));
        }
        w
    });
    (writer, reader)
}

type PeerSink = futures::stream::SplitSink<PeerFramed, PeerFrame>;

#[allow(clippy::too_many_arguments)]
async fn sender_writer(
    mut sink: PeerSink,
    out: Outgoing,
    plan: Plan,
    start: Instant,
    pending: &Pending,
    counters: &Counters,
    stop: &CancellationToken,
    w: &mut WriterResult,
) -> anyhow::Result<()> {
    let start = tokio::time::Instant::from_std(start);
    let mut ping_id = link::PING_IDS;
    while tokio::time::Instant::now() + link::PING_EVERY < start {
        tokio::time::sleep(link::PING_EVERY).await;
        ping(&mut sink, &mut ping_id).await?;
    }
    tokio::time::sleep_until(start).await;
    let times = &out.sent_at[out.sender];
    let mut posts = out.posts.into_iter();
    while w.sent < plan.count && !stop.is_cancelled() {
        // Post i is due at start + i * period; send all that are due
        // (a late tick catches up in a burst), then flush once.
        let due = (start.elapsed().as_secs_f64() / plan.period.as_secs_f64()) as u64 + 1;
        let due = due.min(plan.count);
        while w.sent < due {
            let Some(message) = posts.next() else {
                break;
            };
            let id = (w.sent + 1) as u32;
            if let Ok(mut p) = pending.lock() {
                p.insert(id, Instant::now());
            }
            times[w.sent as usize].store(out.epoch.elapsed().as_nanos() as u64, Ordering::Release);
            sink.feed(Frame::Request {
                id,
                body: peer::Request::Post { message },
            })
            .await?;
            w.sent += 1;
            counters.sent.fetch_add(1, Ordering::Relaxed);
        }
        sink.flush().await?;
        if w.sent < plan.count {
            let next = start + plan.period.mul_f64(w.sent as f64);
            while tokio::time::Instant::now() + link::PING_EVERY < next {
                tokio::time::sleep(link::PING_EVERY).await;
                ping(&mut sink, &mut ping_id).await?;
            }
            tokio::time::sleep_until(next).await;
        }
    }
    // The answers are still being read (the drain): the link stays alive
    // until the end.
    let stop = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(link::PING_EVERY) => {
                    if ping(&mut sink, &mut ping_id).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(())
}

/// Sends a `ping` (the host drops a peer link silent for 10 s).
async fn ping(sink: &mut PeerSink, id: &mut u32) -> anyhow::Result<()> {
    *id = id.wrapping_add(1).max(link::PING_IDS);
    let req = Frame::Request {
        id: *id,
        body: peer::Request::Ping,
    };
    Ok(sink.send(req).await?)
}

/// One sender's posts, signed ahead, and where it notes when each went.
struct Outgoing {
    posts: Vec<Message>,
    sent_at: SentAt,
    sender: usize,
    epoch: Instant,
}

/// A sender's posts, signed ahead: post i's body starts with the sender's
/// number and i, by which a member finds when it went out.
fn presign(
    sender: usize,
    name: &str,
    key: &SigningKey,
    ticket: &SignedTicket,
    plan: Plan,
) -> anyhow::Result<Vec<Message>> {
    let ts_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    (0..plan.count)
        .map(|i| {
            let mut body = format!("{sender:02}{i:018}");
            body.truncate(STAMP_LEN);
            body.extend(std::iter::repeat_n(
                '.',
                plan.body_bytes.saturating_sub(STAMP_LEN),
            ));
            let message = Draft {
                file: None,
                id: Uuid::now_v7(),
                channel: CHANNEL,
                author: name,
                ts_ms: ts_ms + i,
                body: &body,
                re: None,
            }
            .sign(key, ticket.clone())?;
            Ok(message)
        })
        .collect()
}

async fn sender_reader(
    mut stream: futures::stream::SplitStream<PeerFramed>,
    pending: Pending,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> ReaderResult {
    let mut r = ReaderResult::default();
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            f = stream.next() => f,
        };
        if let Some(why) = link_ended(&frame) {
            r.lost = Some(why);
            break;
        }
        match frame {
            Some(Ok(Frame::Response { id, .. })) if id >= link::PING_IDS => {}
            Some(Ok(Frame::Response { id, result })) => {
                let sent = pending.lock().ok().and_then(|mut p| p.remove(&id));
                match result {
                    Ok(peer::Reply::Stored { .. }) => {
                        r.acked += 1;
                        counters.acked.fetch_add(1, Ordering::Relaxed);
                        if let Some(t) = sent {
                            r.ack_nanos.push(t.elapsed().as_nanos() as u64);
                        }
                    }
                    Ok(other) => {
                        *r.refused
                            .entry(format!("unexpected answer to post: {other:?}"))
                            .or_default() += 1;
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(f) => {
                        *r.refused.entry(f.to_string()).or_default() += 1;
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // The sender is subscribed too; its own copies are not counted.
            Some(Ok(Frame::Event(_))) => {}
            // Anything else; the link's end was handled above.
            _ => {}
        }
    }
    r
}
