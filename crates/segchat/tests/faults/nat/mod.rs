//! NAT traversal: alice hosts `ops`, bob joins it, and one or both of them
//! sit behind a NAT router made of a network namespace and nftables. For
//! each of four kinds of NAT and each of three placements (host behind
//! NAT, member behind NAT, both), twelve cases in all, run one after the
//! other on fresh processes, the case checks that
//!
//! 1. **chat** works live over the P2P link: a message bob posts reaches
//!    alice's history and bob's log says it went `via=host`; one alice
//!    posts reaches bob's history, `served_by=host`; bob's `GET /unread`
//!    shows the channel's link as `host` before and after;
//! 2. a **livestream** works: alice streams the test pattern, bob watches;
//!    frames arrive and keep arriving (bob's `GET /streams/{id}`: report's
//!    `frames` grows, state `playing`) for at least [`WATCH_FOR`];
//! 3. **history sync** works: alice posts while bob's node is down
//!    (`kill -9`); bob's node starts again on the same data dir (a new
//!    port, so a new NAT mapping), gets back to the host P2P and receives
//!    every one of them `served_by=host` (its log's `MESSAGE_RECEIVED`);
//! 4. the restarted node watches the stream again, as in 2.
//!
//! # Which path
//!
//! During each watch, nftables counters in bob's node namespace count the
//! stream's bytes by the way they came: UDP from anyone but the server
//! (alice's node, straight) or TCP from the server's relay port. A watch
//! is `direct` or `relayed` when 90 % of its last window's bytes came that
//! way; windows of 1 s go on until one is direct or [`SETTLE`] is over, so
//! hole punching has its chance. This is the ground truth the table
//! reports; beside it, what segchat itself says: the `path=` of each peer
//! connection as alice's log recorded it on accepting it (`chat`, `watch`,
//! `chat`, `watch`, in order), the streamer's `GET /streams/{id}`
//! `viewers[].path`, and where the server told bob's node it sees its
//! QUIC packets come from (its `UDP_ADDRESS_TOLD` records).
//!
//! Those do not always agree with the bytes, and the test reports it (as
//! notes under the table) without failing: after bob's node restarts, its
//! new connections (to the server, and to alice) are made while the dead
//! process's ones are still open at the other end, and
//! `segchat_net::path::current` finds no *selected* path on them (iroh
//! keeps the remote's selected path on the old connection's 4-tuple):
//! alice logs `path=unknown`, the streamer's view says `unknown`, and the
//! server may find no direct path to tell bob's node (logged as
//! `0.0.0.0:0`), which then offers peers no public address.
//!
//! # What is asserted
//!
//! Chat, sync and stream work in every case: a relayed path is a working
//! path. The path is asserted where it must be direct (see [`expect`]):
//! with one side public, and with both behind `easy` NATs; with both
//! behind `port_restricted` NATs before the restart (and after it too
//! once the server tells a restarted node its real address). Both behind
//! `symmetric` NATs may be relayed. Wherever a side's UDP is blocked the
//! path must be relayed (the relay is the only way), and that side's node
//! reaches the server itself through the relay too.
//!
//! # The lab (one per case; dropping it deletes it, also on failure)
//!
//! ```text
//!  root namespace: segchat server on 10.W.0.1 (QUIC on UDP, relay on TCP,
//!  │               same port), the test, and the nodes' API ends
//!  │ veth
//!  wan namespace: bridge br0, 10.W.0.0/24 (the "internet")
//!  ├── public node's namespace: 10.W.0.10+i, no default route
//!  └── router namespace: wan 10.W.0.20+i, nftables NAT, ip_forward on
//!      └── node namespace: lan 10.L.0.2/24, default via 10.L.0.1
//! ```
//!
//! Every node namespace also has a management pair to the root namespace
//! (its own 10.M.0.0/24) on which the node's HTTP API listens, and
//! nftables there drops everything that is not TCP, so no QUIC packet can
//! go round the NAT. Nothing routes between the management pairs, the WAN
//! and the LANs (the root namespace does not forward, the routers and
//! public nodes have no default route, so nothing leaves the lab), and a
//! node binds its QUIC socket to its one WAN or LAN address, so that is
//! the only candidate address it offers besides the public mapping the
//! server tells it (`segchat_net::observe`). Subnets are 10.200-249.x.0/24
//! checked to be free, as [`crate::netns`] picks them.
//!
//! # The NAT kinds (nftables in the router namespace)
//!
//! In all three the router's forward chain drops what comes from the WAN
//! side unless conntrack knows it as a reply (or, for `easy`, it was
//! DNATed), and the router silently drops unsolicited UDP to itself, as
//! most home routers do. (Without that drop, both-behind-`port_restricted`
//! never went direct in our runs: the peer's first probe, arriving before
//! the node's own packet to the peer has opened the NAT, is answered with
//! ICMP "port unreachable" and leaves a conntrack entry for the reverse
//! tuple, so masquerade has to give the node's packet another port.)
//!
//! - [`Nat::Easy`], full cone: `masquerade`, which keeps the node's source
//!   port when it is free (endpoint-independent mapping), plus a `dnat` of
//!   every UDP datagram arriving on the WAN side to the node, port
//!   unchanged: whatever reaches the mapped address reaches the node, from
//!   anyone (endpoint-independent filtering; the node is the router's
//!   "DMZ host").
//! - [`Nat::PortRestricted`]: plain `masquerade`. Linux keeps the source
//!   port when it is free (endpoint-independent mapping in practice), and
//!   only replies pass (address-and-port-dependent filtering).
//! - [`Nat::Symmetric`]: `masquerade fully-random`: every new flow, so
//!   every destination, gets a random port (endpoint-dependent mapping):
//!   the mapping the server observed is not the one a peer would see.
//! - [`Nat::UdpBlocked`]: like `port_restricted` for TCP, and every UDP
//!   datagram from the LAN is dropped (a corporate or hotel network that
//!   lets only TCP out): the node reaches the server and its peers only
//!   through the server's relay.
//!
//! # Running it
//!
//! As root with `ip` and `nft` (skips otherwise, like `partition`; a
//! failure under `SEGCHAT_FAULTS_STRICT=1`):
//! `cargo test -p segchat --test faults nat -- --nocapture` (about 2 min).
//! `SEGCHAT_FAULTS_NAT=symmetric/host,easy` runs only the cases whose
//! `kind/behind` name contains one of the comma-separated parts;
//! `SEGCHAT_FAULTS_KEEP=1` keeps each case's directory, and
//! `SEGCHAT_FAULTS_LOG=warn,iroh::_events=debug` shows iroh's path
//! choices in each process's stderr there.
//!
//! [`WATCH_FOR`]: measure::WATCH_FOR
//! [`SETTLE`]: measure::SETTLE

mod lab;
mod measure;
mod probe;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::json;

use crate::cluster::{is_root, skip, which, workdir, CHANNEL, DEADLINE};
use crate::procs::{Node, Server};
use lab::{Lab, Nat, Place, Site};
use measure::{watch, Meter, Watch};
use probe::{
    accepted_paths, has, log_of, logged, node_key, reaches_host, seen_at, send, tail, via,
    wait_until,
};

/// Alice's posts while bob's node is down.
const OFFLINE_POSTS: usize = 3;

/// Who is behind the NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behind {
    Host,
    Member,
    Both,
}

impl Behind {
    const ALL: [Behind; 3] = [Behind::Host, Behind::Member, Behind::Both];

    fn name(self) -> &'static str {
        match self {
            Behind::Host => "host",
            Behind::Member => "member",
            Behind::Both => "both",
        }
    }

    fn host(self) -> bool {
        self != Behind::Member
    }

    fn member(self) -> bool {
        self != Behind::Host
    }
}

/// What the path of a watch must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Direct (asserted).
    Direct,
    /// Relayed (asserted): there is no other way.
    Relayed,
    /// Either is accepted (reported), for this reason.
    Either(&'static str),
}

/// The path watch `watch` (0: fresh nodes, 1: after bob's restart) of a
/// case must take. `bob_mapped` says whether the server told bob's
/// restarted node a real public address (see [`Outcome::server_saw_bob`]).
///
/// - One side public: direct. The NATed side reaches the public one
///   straight (its own packets open its NAT; with a symmetric NAT the
///   public side answers the port it sees), so nothing has to be guessed.
/// - Both behind `easy` NATs: direct (each side's packets to the other's
///   mapping get through).
/// - Both behind `port_restricted` NATs: direct when both sides know their
///   public mapping (each punches a hole towards the other's). After a
///   restart the server may have no direct path to tell the restarted
///   node (see the module doc): bob then offers no public address and
///   only the relay is left, which is reported, not asserted.
/// - Both behind `symmetric` NATs: relayed is fine (each side's mapping
///   towards the other is unknown until it sends, and then filtered).
/// - UDP blocked on either side: relayed.
fn expect(nat: Nat, behind: Behind, watch: usize, bob_mapped: bool) -> Expect {
    match (behind, nat) {
        (_, Nat::UdpBlocked) => Expect::Relayed,
        (Behind::Host | Behind::Member, _) | (Behind::Both, Nat::Easy) => Expect::Direct,
        (Behind::Both, Nat::PortRestricted) if watch == 0 || bob_mapped => Expect::Direct,
        (Behind::Both, Nat::PortRestricted) => Expect::Either(
            "the server told bob's restarted node it saw it at 0.0.0.0:0, so bob offered no \
             public address to punch to",
        ),
        (Behind::Both, Nat::Symmetric) => {
            Expect::Either("both NATs map per destination: no address to punch to")
        }
    }
}

/// What one case found.
#[derive(Debug)]
struct Outcome {
    nat: Nat,
    behind: Behind,
    /// The path of each peer connection bob made, as alice's node accepted
    /// it (system log), in order.
    accepted: Vec<String>,
    /// The first watch (fresh nodes), and the one after bob's restart.
    watches: Vec<Watch>,
    /// Of the messages posted while bob was down: (from the host, from
    /// the server's backup).
    synced: (usize, usize),
    /// bob's node key, first 12 hex digits (as alice's log writes it).
    bob_key: String,
    /// Where the server told bob's node it sees its QUIC packets come
    /// from (`segchat_net::observe`), each time: before and after the
    /// restart.
    server_saw_bob: Vec<String>,
    took: Duration,
    error: Option<String>,
}

impl Outcome {
    fn name(&self) -> String {
        format!("{}/{}", self.nat.name(), self.behind.name())
    }

    /// Whether the server told bob's latest node a real address.
    fn bob_mapped(&self) -> bool {
        self.server_saw_bob.last().is_some_and(|a| {
            a.parse::<SocketAddr>()
                .is_ok_and(|a| !a.ip().is_unspecified())
        })
    }

    fn expect(&self, watch: usize) -> Expect {
        expect(self.nat, self.behind, watch, self.bob_mapped())
    }
}

/// Runs one case; never panics, says what it found.
async fn run_case(nat: Nat, behind: Behind) -> Outcome {
    let mut out = Outcome {
        nat,
        behind,
        accepted: Vec::new(),
        watches: Vec::new(),
        synced: (0, 0),
        bob_key: String::new(),
        server_saw_bob: Vec::new(),
        took: Duration::ZERO,
        error: None,
    };
    let start = Instant::now();
    let place = |natted: bool| {
        if natted {
            Place::Behind(nat)
        } else {
            Place::Public
        }
    };
    let result = match Lab::build(&[place(behind.host()), place(behind.member())]) {
        Ok(lab) => {
            let dir = workdir();
            case(&lab, dir.path(), &mut out).await
        }
        Err(e) => Err(e.context("could not build the lab")),
    };
    out.took = start.elapsed();
    if let Err(e) = result {
        out.error = Some(format!("{e:#}"));
    }
    out
}

/// The case's processes, then its checks; the processes are stopped at
/// the end, whatever happened.
async fn case(lab: &Lab, root: &Path, out: &mut Outcome) -> anyhow::Result<()> {
    let mut server = Server::start(root, &lab.server_ip().to_string()).await?;
    let meter = Meter::install(&lab.sites[1], server.addr)?;
    let start = |name: &'static str, site: &Site| {
        Node::start(
            root,
            name,
            server.addr,
            root.join(name),
            site.addrs(),
            site.node.launch(),
        )
    };
    let (alice, bob) = tokio::join!(start("alice", &lab.sites[0]), start("bob", &lab.sites[1]));
    let (mut alice, mut bob) = (alice?, bob?);
    let result = checks(&alice, &mut bob, &meter, out).await;
    out.accepted = accepted_paths(&log_of(&alice), &out.bob_key);
    let server_log = std::fs::read_to_string(root.join("server").join("logs").join("segchat.log"))
        .unwrap_or_default();
    out.server_saw_bob = seen_at(&server_log, &out.bob_key);
    let result = result.map_err(|e| {
        e.context(format!(
            "\n--- alice's log:\n{}\n--- bob's log:\n{}\n--- alice's stderr:\n{}\n--- bob's stderr:\n{}",
            alice.log_tail(25),
            bob.log_tail(25),
            tail(&root.join("alice.stderr"), 10),
            tail(&root.join("bob.stderr"), 10),
        ))
    });
    bob.kill_9().await;
    alice.kill_9().await;
    server.kill_9().await;
    result
}

async fn checks(
    alice: &Node,
    bob: &mut Node,
    meter: &Meter,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let case = out.name();
    let (a, b) = (alice.api(), bob.api());
    let stream;
    {
        let bob = &*bob;
        for n in [alice, bob] {
            wait_until(
                &format!("{} to reach the server", n.name),
                DEADLINE,
                || async move {
                    n.api()
                        .node()
                        .await
                        .is_ok_and(|v| v["server_connected"] == true)
                },
            )
            .await?;
        }
        let (ra, rb) = tokio::join!(a.register("alice"), b.register("bob"));
        ra.context("alice registers")?;
        rb.context("bob registers")?;
        a.create(CHANNEL).await.context("alice creates ops")?;
        b.join(CHANNEL).await.context("bob joins ops")?;
        out.bob_key = node_key(&b).await?[..12].to_owned();
        reaches_host(bob, "bob to reach the host P2P").await?;

        // 1. Live chat, both ways, over the P2P link.
        let id = send(bob, &format!("bob to alice, live ({case})")).await?;
        wait_until("alice to have bob's message", DEADLINE, || has(alice, &id)).await?;
        wait_until(
            "bob's log to say it went via the host",
            DEADLINE,
            || async { logged(&log_of(bob), &["MESSAGE_SENT", "via=host", &id]) },
        )
        .await?;
        let id = send(alice, &format!("alice to bob, live ({case})")).await?;
        wait_until("bob to have alice's message", DEADLINE, || has(bob, &id)).await?;
        wait_until(
            "bob's log to say the host served alice's message",
            DEADLINE,
            || async { logged(&log_of(bob), &["MESSAGE_RECEIVED", "served_by=host", &id]) },
        )
        .await?;
        let now = via(bob).await;
        if now != "host" {
            bail!("after the live messages bob reaches ops via {now:?}, not the host");
        }

        // 3a. A livestream: alice streams the test pattern, bob watches.
        let started = a
            .post(
                "streams",
                json!({"channel": CHANNEL, "source": "test_pattern", "width": 320, "height": 240, "fps": 15}),
            )
            .await
            .context("alice starts a stream")?;
        stream = started["stream"]["stream_id"]
            .as_u64()
            .ok_or_else(|| anyhow!("no stream id in {started}"))?;
        out.watches.push(
            watch(alice, bob, stream, meter)
                .await
                .context("the first watch")?,
        );
    }

    // 2. History sync: alice posts while bob's node is down.
    bob.kill_9().await;
    let mut missed = Vec::new();
    for k in 1..=OFFLINE_POSTS {
        missed.push(send(alice, &format!("while bob was away {k} ({case})")).await?);
    }
    bob.restart().await.context("bob's node restarts")?;
    let bob = &*bob;
    reaches_host(bob, "bob to reach the host P2P again").await?;
    for id in &missed {
        wait_until(
            "bob to have what alice posted while it was down",
            DEADLINE,
            || has(bob, id),
        )
        .await?;
    }
    let bob_log = log_of(bob);
    let from = |source: &str| {
        missed
            .iter()
            .filter(|id| logged(&bob_log, &["MESSAGE_RECEIVED", source, id.as_str()]))
            .count()
    };
    out.synced = (from("served_by=host"), from("served_by=server"));
    if out.synced.0 != missed.len() {
        bail!(
            "of the {} messages posted while bob was down, the host served {} and the \
             server's backup {}",
            missed.len(),
            out.synced.0,
            out.synced.1
        );
    }

    // 3b. The stream again, from the restarted node.
    out.watches.push(
        watch(alice, bob, stream, meter)
            .await
            .context("the watch after bob's restart")?,
    );
    Ok(())
}

/// Whether `SEGCHAT_FAULTS_NAT` selects the case.
fn selected(name: &str) -> bool {
    match std::env::var("SEGCHAT_FAULTS_NAT") {
        Ok(f) if !f.trim().is_empty() => f.split(',').any(|p| name.contains(p.trim())),
        _ => true,
    }
}

fn table(outcomes: &[Outcome]) -> String {
    let mut t = format!(
        "{:<23} {:<12} {:<12} {:<14} {:<32} {:<16} {:<32} {:>7} {:>4}  result\n",
        "kind/behind NAT",
        "watch 1",
        "watch 2",
        "expected",
        "host log path= (accept order)",
        "streamer's view",
        "server saw bob at",
        "frames",
        "time",
    );
    let list = |v: Vec<String>| match v.is_empty() {
        true => "-".to_owned(),
        false => v.join(","),
    };
    for o in outcomes {
        let w = |i: usize| {
            o.watches
                .get(i)
                .map_or("-".to_owned(), |w| w.traffic.describe())
        };
        let expected = match (o.expect(0), o.expect(1)) {
            (Expect::Direct, Expect::Direct) => "direct",
            (Expect::Direct, Expect::Either(_)) => "direct/either",
            (Expect::Relayed, _) => "relayed",
            _ => "either",
        };
        let claimed = o
            .watches
            .iter()
            .map(|w| w.claimed.as_deref().map_or("-".to_owned(), word))
            .collect();
        let frames = o
            .watches
            .iter()
            .map(|w| w.frames.to_string())
            .collect::<Vec<_>>()
            .join("/");
        let result = match &o.error {
            None => "ok".to_owned(),
            Some(e) => format!("FAILED: {}", e.lines().next().unwrap_or("")),
        };
        t.push_str(&format!(
            "{:<23} {:<12} {:<12} {:<14} {:<32} {:<16} {:<32} {:>7} {:>3.0}s  {result}\n",
            o.name(),
            w(0),
            w(1),
            expected,
            list(o.accepted.iter().map(|p| word(p)).collect()),
            list(claimed),
            list(o.server_saw_bob.clone()),
            frames,
            o.took.as_secs_f64(),
        ));
    }
    t
}

/// What the run says beyond pass or fail, each with the cases it is
/// about: relayed paths that were accepted, where segchat's own account
/// of a path disagrees with the bytes, and where the server told a node a
/// meaningless address.
fn notes(outcomes: &[Outcome]) -> Vec<String> {
    let mut notes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut note = |what: String, case: String| notes.entry(what).or_default().push(case);
    for o in outcomes.iter().filter(|o| o.error.is_none()) {
        for (i, w) in o.watches.iter().enumerate() {
            let case = format!("{} watch {}", o.name(), i + 1);
            let measured = w.traffic.path();
            if let (Expect::Either(why), "relayed" | "mixed") = (o.expect(i), measured) {
                note(format!("{measured}, accepted: {why}"), case.clone());
            }
            let claimed = w.claimed.as_deref().unwrap_or("-");
            if !claimed.starts_with(measured) {
                note(
                    format!(
                        "the streamer's view (and alice's log) said {:?} while the frames \
                         came {measured}",
                        word(claimed)
                    ),
                    case,
                );
            }
        }
        // Through the relay the server sees no address, and says so.
        let relayed = o.nat == Nat::UdpBlocked && o.behind.member();
        if !o.bob_mapped() && o.server_saw_bob.len() > 1 && !relayed {
            note(
                format!(
                    "the server saw bob's restarted node at {} and told it so (observe)",
                    o.server_saw_bob.last().map_or("-", String::as_str)
                ),
                o.name(),
            );
        }
    }
    notes
        .into_iter()
        .map(|(what, cases)| format!("{what}: {}", cases.join(", ")))
        .collect()
}

/// The first word of a path as segchat writes it (`direct 10.0.0.1:5`).
fn word(path: &str) -> String {
    path.split(' ').next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_sync_and_streams_work_through_every_nat() {
    let scenario = "nat";
    if !is_root() {
        return skip(scenario, "needs root (network namespaces, nftables)");
    }
    for tool in ["ip", "nft"] {
        if which(tool).is_none() {
            return skip(
                scenario,
                &format!("needs `{tool}` (apt-get install iproute2 nftables)"),
            );
        }
    }
    let start = Instant::now();
    let mut outcomes = Vec::new();
    for nat in Nat::ALL {
        for behind in Behind::ALL {
            let name = format!("{}/{}", nat.name(), behind.name());
            if !selected(&name) {
                continue;
            }
            let o = run_case(nat, behind).await;
            eprintln!(
                "nat {name}: {} in {:.1} s",
                if o.error.is_none() { "ok" } else { "FAILED" },
                o.took.as_secs_f64()
            );
            outcomes.push(o);
        }
    }
    eprintln!(
        "\nNAT matrix ({} cases, {:.0} s). watch 1 / watch 2: how the stream's bytes reached \
         bob's node (direct: UDP from alice; relayed: TCP from the server's relay; the share \
         that came direct), with fresh nodes and after bob's node restarted; then what \
         segchat itself says about the path, and where the server saw bob:\n{}",
        outcomes.len(),
        start.elapsed().as_secs_f64(),
        table(&outcomes)
    );
    for n in notes(&outcomes) {
        eprintln!("note: {n}");
    }
    let mut problems = Vec::new();
    for o in &outcomes {
        if let Some(e) = &o.error {
            problems.push(format!("{}: {e}", o.name()));
            continue;
        }
        for (i, w) in o.watches.iter().enumerate() {
            if o.expect(i) == Expect::Relayed && w.traffic.path() != "relayed" {
                problems.push(format!(
                    "{}: watch {}: the frames came {}, where UDP is blocked and only the \
                     relay can carry them (is the meter counting the right bytes?)",
                    o.name(),
                    i + 1,
                    w.traffic.describe(),
                ));
            }
            if o.expect(i) == Expect::Direct && w.traffic.path() != "direct" {
                problems.push(format!(
                    "{}: watch {}: the frames still came {} after {:.1} s, where a direct \
                     path is expected; the server saw bob at {:?}",
                    o.name(),
                    i + 1,
                    w.traffic.describe(),
                    w.watched.as_secs_f64(),
                    o.server_saw_bob,
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} NAT cases failed:\n\n{}",
        problems.len(),
        outcomes.len(),
        problems.join("\n\n")
    );
}
