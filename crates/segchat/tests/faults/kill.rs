//! `kill -9` of the host, the server and a member while bob and carol post
//! continuously; the killed process starts again on the same data dir.

use std::time::Duration;

use crate::cluster::{stop_posting, under_load, via_is, wait_for, Cluster, Spec, CHANNEL};
use crate::load::Ledger;
use crate::verdict::converge;

/// Load before the fault, while it lasts, and after it heals.
const BEFORE: Duration = Duration::from_secs(3);
const DOWN: Duration = Duration::from_secs(4);
const AFTER: Duration = Duration::from_secs(3);

async fn cluster(root: &std::path::Path) -> Cluster {
    Cluster::start(
        root,
        "127.0.0.1",
        Spec::default(),
        Spec::default(),
        Spec::default(),
    )
    .await
    .expect("the cluster starts")
}

/// Accepted posts answered between `from` and `to` (ledger time), per
/// author.
fn accepted_between(ledger: &Ledger, from: Duration, to: Duration, author: &str) -> usize {
    ledger
        .accepted()
        .values()
        .filter(|a| a.author == author && a.at >= from && a.at <= to)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_killed_under_load_loses_no_accepted_message() {
    let root = crate::cluster::workdir();
    let mut c = cluster(root.path()).await;
    let ledger = Ledger::default();
    let posters = c.start_posting(&ledger, 0);
    under_load(BEFORE).await;

    c.host.kill_9().await;
    let killed = ledger.now();
    for m in c.members() {
        wait_for(&format!("{} to write through the server", m.name), || {
            via_is(m, "server")
        })
        .await;
    }
    under_load(DOWN).await;
    let down = (killed, ledger.now());
    c.host.restart().await.expect("the host restarts");
    under_load(AFTER).await;
    stop_posting(posters).await;

    // While the host was dead, both members kept writing.
    for who in ["bob", "carol"] {
        assert!(
            accepted_between(&ledger, down.0, down.1, who) > 0,
            "{who}'s node accepted nothing while the host was down"
        );
    }
    converge(&c.nodes(), CHANNEL, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_under_load_loses_no_accepted_message() {
    let root = crate::cluster::workdir();
    let mut c = cluster(root.path()).await;
    let ledger = Ledger::default();
    let posters = c.start_posting(&ledger, 0);
    under_load(BEFORE).await;

    c.server.kill_9().await;
    let killed = ledger.now();
    under_load(DOWN).await;
    let down = (killed, ledger.now());
    c.server.restart().await.expect("the server restarts");
    under_load(AFTER).await;
    stop_posting(posters).await;

    // The host does not need the server to take posts.
    for who in ["bob", "carol"] {
        assert!(
            accepted_between(&ledger, down.0, down.1, who) > 0,
            "{who}'s node accepted nothing while the server was down"
        );
    }
    converge(&c.nodes(), CHANNEL, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_killed_while_posting_loses_no_accepted_message() {
    let root = crate::cluster::workdir();
    let mut c = cluster(root.path()).await;
    let ledger = Ledger::default();
    let posters = c.start_posting(&ledger, 0);
    under_load(BEFORE).await;

    // bob dies with posts in its outbox and one in flight.
    c.bob.kill_9().await;
    under_load(DOWN).await;
    c.bob.restart().await.expect("bob's node restarts");
    wait_for("bob to reach the host again", || via_is(&c.bob, "host")).await;
    under_load(AFTER).await;
    stop_posting(posters).await;

    converge(&c.nodes(), CHANNEL, &ledger).await;
}
