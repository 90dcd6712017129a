//! Idle nodes, held by child processes of the bench (`segchat-bench
//! idle`, hidden): each child opens its share of tracker links (signed in
//! as visitors, an address submitted, heartbeating) and holds them until
//! told to stop. Each link is a TCP socket, and a process may hold 20,000
//! files here, so a run of many nodes takes several children (at most
//! `--per-process` links each), as it takes several instances.
//!
//! A child says `ready N` on its standard output once its N links are up,
//! and, when a line arrives on its standard input (or it closes), `lost
//! K`: the links that closed while idle. Anything else it has to say goes
//! to standard error.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use segchat_proto::tracker::Request;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

use crate::link::{Machine, Server, TrackerLink};

/// How long a machine's endpoint may take to reach the relay.
const RELAY_WAIT: Duration = Duration::from_secs(60);
/// How long a child may take to open all its links.
const READY_WAIT: Duration = Duration::from_secs(600);
/// Links a child opens at once.
const OPENING_AT_ONCE: usize = 256;

/// What one child holds.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct IdleArgs {
    /// The instance its links go to.
    #[arg(long)]
    server: SocketAddr,
    /// How many links.
    #[arg(long)]
    nodes: usize,
    /// Machines (keys, endpoints, source addresses) they are spread over.
    #[arg(long)]
    machines: usize,
    /// Machines other children took before it (so each has source
    /// addresses of its own).
    #[arg(long, default_value_t = 0)]
    first_machine: u32,
    /// Nodes other children took before it (for names and addresses).
    #[arg(long, default_value_t = 0)]
    first_node: usize,
    /// Each machine also keeps a relay connection (see `conns --relay`).
    #[arg(long)]
    relay: bool,
}

/// The child: opens the links, says `ready`, holds them until a line (or
/// the end) on standard input, says `lost`.
pub(crate) async fn run(args: IdleArgs) -> anyhow::Result<()> {
    if args.machines == 0 {
        bail!("--machines must be at least 1");
    }
    crate::link::skip_machines(args.first_machine);
    let server = Server::find(args.server).await?;
    let mut machines = Vec::with_capacity(args.machines);
    for _ in 0..args.machines {
        let machine = match args.relay {
            true => Machine::bind_with_relay(&server).await?,
            false => Machine::bind(&server).await?,
        };
        machines.push(Arc::new(machine));
    }
    let stop = CancellationToken::new();
    let opening = Arc::new(tokio::sync::Semaphore::new(OPENING_AT_ONCE));
    let mut joins = tokio::task::JoinSet::new();
    for k in 0..args.nodes {
        let i = args.first_node + k;
        let machine = machines[k % args.machines].clone();
        let (stop, opening) = (stop.clone(), opening.clone());
        let relay = args.relay && k < args.machines;
        joins.spawn(async move {
            let permit = opening.acquire_owned().await;
            let mut link = TrackerLink::connect(&machine, &server).await?;
            link.call(Request::Visit {
                display_name: format!("idle{i}"),
            })
            .await?;
            link.call(Request::SubmitInfo {
                p2p_addr: SocketAddr::from(([127, 0, 0, 1], 1 + (i % 60_000) as u16)),
                status: None,
            })
            .await?;
            if relay && !machine.client.use_relay(RELAY_WAIT).await {
                bail!("the relay did not take node {i}'s machine within {RELAY_WAIT:?}");
            }
            drop(permit);
            Ok::<_, anyhow::Error>(tokio::spawn(link.keep_alive(stop)))
        });
    }
    let mut alive = Vec::with_capacity(args.nodes);
    while let Some(joined) = joins.join_next().await {
        alive.push(joined.context("an idle node's task")??);
    }
    println!("ready {}", alive.len());
    let mut line = String::new();
    let _ = BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await;
    let lost = alive.iter().filter(|h| h.is_finished()).count();
    println!("lost {lost}");
    stop.cancel();
    for h in alive {
        let _ = h.await;
    }
    crate::link::close_all(
        machines
            .into_iter()
            .filter_map(|m| Arc::try_unwrap(m).ok().map(|m| m.client))
            .collect(),
    )
    .await;
    Ok(())
}

/// The children holding a run's idle nodes.
#[derive(Debug)]
pub(crate) struct Holders {
    children: Vec<Holder>,
}

#[derive(Debug)]
struct Holder {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Holders {
    /// Opens `nodes` idle links to each instance of `plan`, over
    /// `machines` machines in all (shared out in proportion), at most
    /// `per_process` links per child; returns once every link is up.
    pub(crate) async fn start(
        plan: &[(SocketAddr, usize)],
        machines: usize,
        per_process: usize,
        relay: bool,
    ) -> anyhow::Result<Holders> {
        let total: usize = plan.iter().map(|(_, n)| n).sum();
        let exe = std::env::current_exe().context("the bench's own path")?;
        let (mut first_machine, mut first_node) = (0u32, 0usize);
        let mut children = Vec::new();
        for &(server, nodes) in plan {
            let parts = nodes.div_ceil(per_process.max(1));
            for part in 0..parts {
                let n = nodes / parts + usize::from(part < nodes % parts);
                let m = (machines * n).div_ceil(total.max(1)).clamp(1, n.max(1));
                let mut cmd = Command::new(&exe);
                cmd.args(["idle", "--server", &server.to_string()])
                    .args(["--nodes", &n.to_string(), "--machines", &m.to_string()])
                    .args(["--first-machine", &first_machine.to_string()])
                    .args(["--first-node", &first_node.to_string()]);
                if relay {
                    cmd.arg("--relay");
                }
                let mut child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn()
                    .context("starting an idle-node holder")?;
                let stdin = child.stdin.take().context("the holder's stdin")?;
                let stdout = child.stdout.take().context("the holder's stdout")?;
                children.push(Holder {
                    child,
                    stdin,
                    stdout: BufReader::new(stdout).lines(),
                });
                first_machine += m as u32;
                first_node += n;
            }
        }
        // All children open their links at once; wait for each to say so.
        for (i, h) in children.iter_mut().enumerate() {
            let said = tokio::time::timeout(READY_WAIT, h.stdout.next_line())
                .await
                .map_err(|_| anyhow!("holder {i} was not ready within {READY_WAIT:?}"))??;
            match said.as_deref().and_then(|l| l.strip_prefix("ready ")) {
                Some(_) => {}
                None => bail!("holder {i} failed (its error is above): {said:?}"),
            }
        }
        Ok(Holders { children })
    }

    /// How many links closed while idle, in all; then stops every child.
    pub(crate) async fn finish(mut self) -> anyhow::Result<usize> {
        let mut lost = 0;
        for h in &mut self.children {
            h.stdin.write_all(b"stop\n").await?;
            let said = h.stdout.next_line().await?;
            lost += said
                .as_deref()
                .and_then(|l| l.strip_prefix("lost "))
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| anyhow!("a holder answered {said:?} instead of `lost N`"))?;
        }
        for h in &mut self.children {
            let _ = tokio::time::timeout(Duration::from_secs(20), h.child.wait()).await;
        }
        Ok(lost)
    }
}
