//! bob's node runs in a network namespace of its own; nftables there drops
//! every packet between bob and alice's P2P (QUIC) port, and bob's relay
//! connection to the server, for [`CUT`], silently (nothing is closed or
//! refused), while bob's link to the server (QUIC) stays up: alice is
//! unreachable by any path.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::cluster::{is_root, skip, stop_posting, under_load, which, Cluster, Spec, CHANNEL};
use crate::load::Ledger;
use crate::netns::Netns;
use crate::procs::NodeAddrs;
use crate::verdict::converge;

const BEFORE: Duration = Duration::from_secs(3);
const CUT: Duration = Duration::from_secs(10);
const AFTER: Duration = Duration::from_secs(3);
/// How soon a member must notice a silently cut link and write through
/// the server instead (issue 10: "within a few seconds").
const NOTICE_WITHIN: Duration = Duration::from_secs(8);

/// The namespace, or why the scenario cannot run here.
fn namespace(scenario: &str) -> Option<Netns> {
    if !is_root() {
        skip(scenario, "needs root (network namespaces, nftables)");
        return None;
    }
    for tool in ["ip", "nft"] {
        if which(tool).is_none() {
            skip(
                scenario,
                &format!("needs `{tool}` (apt-get install iproute2 nftables)"),
            );
            return None;
        }
    }
    match Netns::create() {
        Ok(ns) => Some(ns),
        Err(e) => {
            skip(scenario, &format!("could not make a namespace: {e:#}"));
            None
        }
    }
}

/// The cast with bob inside `ns`; alice and the server listen on the
/// namespace pair's outer address, carol stays on loopback.
async fn cluster(root: &std::path::Path, ns: &Netns) -> Cluster {
    let outer = ns.outer_ip.to_string();
    let inner = ns.inner_ip.to_string();
    let host = Spec {
        addrs: NodeAddrs {
            p2p: format!("{outer}:0"),
            ..NodeAddrs::default()
        },
        ..Spec::default()
    };
    let bob = Spec {
        addrs: NodeAddrs {
            p2p: format!("{inner}:0"),
            api: format!("{inner}:0"),
        },
        launch: ns.launch(),
        ..Spec::default()
    };
    Cluster::start(root, &outer, host, bob, Spec::default())
        .await
        .expect("the cluster starts")
}

/// The server's relay as bob's node reaches it, and the local port of
/// bob's tracker link (the same server port; the cut lets it pass).
fn relay_of(c: &Cluster) -> (SocketAddr, u16) {
    let tracker = c
        .bob
        .tracker_port()
        .expect("bob's log names its tracker link's port");
    (c.server.addr, tracker)
}

async fn host_p2p(c: &Cluster) -> SocketAddr {
    let v = c.host.api().node().await.expect("alice's node answers");
    v["p2p_addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("alice's P2P address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_cut_off_from_its_host_loses_no_accepted_message() {
    let Some(ns) = namespace("partition") else {
        return;
    };
    let root = crate::cluster::workdir();
    let c = cluster(root.path(), &ns).await;
    let ledger = Ledger::default();
    let posters = c.start_posting(&ledger, 0);
    under_load(BEFORE).await;

    let cut = ns
        .cut(host_p2p(&c).await, Some(relay_of(&c)))
        .expect("the cut");
    under_load(CUT).await;
    cut.heal().expect("the heal");
    under_load(AFTER).await;
    stop_posting(posters).await;

    converge(&c.nodes(), CHANNEL, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_cut_off_from_its_host_falls_back_to_the_server_within_seconds() {
    let Some(ns) = namespace("partition (fallback)") else {
        return;
    };
    let root = crate::cluster::workdir();
    let c = cluster(root.path(), &ns).await;
    let ledger = Ledger::default();
    let posters = c.start_posting(&ledger, 0);
    under_load(BEFORE).await;

    let cut = ns
        .cut(host_p2p(&c).await, Some(relay_of(&c)))
        .expect("the cut");
    let cut_at = ledger.now();
    let start = Instant::now();
    let mut noticed = None;
    while start.elapsed() < CUT {
        if noticed.is_none() && c.bob.api().via(CHANNEL).await.ok().as_deref() == Some("server") {
            noticed = Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Still cut: what bob got accepted early in the cut must have reached
    // carol through the server by now.
    let carol_has = c
        .carol
        .api()
        .snapshot(CHANNEL)
        .await
        .expect("carol's history");
    cut.heal().expect("the heal");
    stop_posting(posters).await;

    let noticed = noticed.unwrap_or_else(|| {
        panic!(
            "bob's node kept saying `via host` for the whole {CUT:?} cut; its log:\n{}",
            c.bob.log_tail(30)
        )
    });
    eprintln!("bob noticed the cut after {:.1} s", noticed.as_secs_f64());
    assert!(
        noticed <= NOTICE_WITHIN,
        "bob noticed the cut after {noticed:?}, more than {NOTICE_WITHIN:?}"
    );
    let ids: std::collections::BTreeSet<&str> =
        carol_has.messages.iter().map(|m| m.id.as_str()).collect();
    let accepted = ledger.accepted();
    let stuck: Vec<&str> = accepted
        .iter()
        .filter(|(id, a)| {
            a.author == "bob" && a.at <= cut_at + NOTICE_WITHIN / 2 && !ids.contains(id.as_str())
        })
        .map(|(_, a)| a.body.as_str())
        .collect();
    assert!(
        stuck.is_empty(),
        "{} messages bob had accepted by {NOTICE_WITHIN:?}/2 into the cut had not reached \
         carol {CUT:?} into it: {stuck:?}",
        stuck.len()
    );
}
