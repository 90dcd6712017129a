//! bob's data dir is a small tmpfs; while bob and carol post, it is filled
//! to the last byte for [`FULL`], then the space comes back.

use std::time::Duration;

use crate::api::Sent;
use crate::cluster::{
    is_root, skip, stop_posting, under_load, via_is, wait_for, which, Cluster, Spec, CHANNEL,
};
use crate::load::Ledger;
use crate::tmpfs::Tmpfs;
use crate::verdict::converge;

const BEFORE: Duration = Duration::from_secs(3);
const FULL: Duration = Duration::from_secs(6);
const AFTER: Duration = Duration::from_secs(4);
/// Room for the node's database, log and key, and some messages.
const DISK_MIB: u32 = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_whose_disk_fills_and_empties_converges_with_no_hole() {
    if !is_root() {
        return skip("full disk", "needs root (mounts a tmpfs)");
    }
    if which("mount").is_none() {
        return skip("full disk", "needs `mount`");
    }
    let root = crate::cluster::workdir();
    let bob_dir = root.path().join("bob");
    let disk = match Tmpfs::mount(&bob_dir, DISK_MIB) {
        Ok(d) => d,
        Err(e) => return skip("full disk", &format!("{e:#}")),
    };
    let bob = Spec {
        dir: Some(bob_dir),
        ..Spec::default()
    };
    let mut c = Cluster::start(
        root.path(),
        "127.0.0.1",
        Spec::default(),
        bob,
        Spec::default(),
    )
    .await
    .expect("the cluster starts");
    let ledger = Ledger::default();
    let posters = c.start_posting(&ledger, 0);
    under_load(BEFORE).await;

    let filler = disk.fill().expect("filling bob's disk");
    let full_from = ledger.now();
    under_load(FULL).await;
    let full_to = ledger.now();
    filler.free().expect("freeing bob's disk");
    wait_for("bob's node to reach the host with space back", || {
        via_is(&c.bob, "host")
    })
    .await;
    under_load(AFTER).await;
    stop_posting(posters).await;

    // While full, bob's node says why it cannot take a post, not a bare 500
    // "internal error" (asserted after the convergence, which matters more).
    let mut vague: Vec<(u16, String)> = ledger
        .attempts()
        .into_iter()
        .filter(|a| a.author == "bob" && a.at >= full_from && a.at <= full_to)
        .filter_map(|a| match a.outcome {
            Sent::Refused { status, body }
                if status == 500 || !body.to_lowercase().contains("disk") =>
            {
                Some((status, body))
            }
            _ => None,
        })
        .collect();
    vague.sort();
    vague.dedup();
    if !vague.is_empty() {
        eprintln!("bob's node refused posts while full without saying why: {vague:?}");
    }
    converge(&c.nodes(), CHANNEL, &ledger).await;
    // What bob holds is on its disk, not only in a cache: it survives a
    // kill -9 and a restart.
    c.bob.kill_9().await;
    c.bob.restart().await.expect("bob's node restarts");
    converge(&c.nodes(), CHANNEL, &ledger).await;
    assert!(
        vague.is_empty(),
        "bob's full disk was refused without saying so: {vague:?}"
    );
}
