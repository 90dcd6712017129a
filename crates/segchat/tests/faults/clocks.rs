//! bob's node runs [`SKEW`] behind, carol's [`SKEW`] ahead (libfaketime;
//! the monotonic clock is left alone). They hold a conversation, each
//! answering only once they have seen the other's last word, then post
//! over each other. Ordering is by the hybrid clock's timestamp, so each
//! answer must come after what it answers on every node, although bob's
//! wall clock is 20 minutes behind carol's.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api::Sent;
use crate::cluster::{skip, stop_posting, under_load, wait_for, Cluster, Spec, CHANNEL};
use crate::load::Ledger;
use crate::procs::{Launch, Node};
use crate::verdict::converge;

const SKEW_SECS: i64 = 600;
/// Each says this many things in the conversation.
const TURNS: u64 = 6;
const OVERLAP: Duration = Duration::from_secs(3);

fn libfaketime() -> Option<PathBuf> {
    let dirs = std::fs::read_dir("/usr/lib").ok()?;
    dirs.filter_map(Result::ok)
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
        .find(|p| p.is_file())
}

fn skewed(lib: &std::path::Path, secs: i64) -> Spec {
    let offset = if secs < 0 {
        format!("{secs}")
    } else {
        format!("+{secs}")
    };
    Spec {
        launch: Launch {
            prefix: Vec::new(),
            env: vec![
                ("LD_PRELOAD".into(), lib.to_string_lossy().into_owned()),
                ("FAKETIME".into(), offset),
                ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ],
        },
        ..Spec::default()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Posts one turn and waits until `listener` has it.
async fn say(ledger: &Ledger, speaker: &Node, listener: &Node, body: String) -> (String, u64) {
    let sent = speaker.api().send(CHANNEL, &body).await;
    ledger.record(&speaker.name, body.clone(), sent.clone());
    let Sent::Accepted { id } = sent else {
        panic!("{} could not say {body:?}: {sent:?}", speaker.name);
    };
    wait_for(&format!("{} to hear {body:?}", listener.name), || async {
        listener
            .api()
            .snapshot(CHANNEL)
            .await
            .is_ok_and(|s| s.messages.iter().any(|m| m.id == id))
    })
    .await;
    let snap = listener.api().snapshot(CHANNEL).await.expect("history");
    let ts = snap
        .messages
        .iter()
        .find(|m| m.id == id)
        .map_or(0, |m| m.ts_ms);
    (id, ts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_clocks_keep_every_answer_after_what_it_answers() {
    let Some(lib) = libfaketime() else {
        return skip("clocks", "needs libfaketime (apt-get install faketime)");
    };
    let root = crate::cluster::workdir();
    let c = Cluster::start(
        root.path(),
        "127.0.0.1",
        Spec::default(),
        skewed(&lib, -SKEW_SECS),
        skewed(&lib, SKEW_SECS),
    )
    .await
    .expect("the cluster starts");
    let ledger = Ledger::default();

    // The conversation: bob 0, carol 0, bob 1, … each said after hearing
    // the one before.
    let mut chain = Vec::new();
    for n in 0..TURNS {
        chain.push(say(&ledger, &c.bob, &c.carol, format!("bob {n}")).await);
        chain.push(say(&ledger, &c.carol, &c.bob, format!("carol {n}")).await);
    }
    // The clocks really are skewed: bob's first word is stamped about ten
    // minutes behind, carol's about ten ahead.
    let (bob_ts, carol_ts) = (chain[0].1 as i64, chain[1].1 as i64);
    let skew_ms = SKEW_SECS * 1000;
    assert!(
        (bob_ts - (now_ms() - skew_ms)).abs() < skew_ms / 2,
        "bob's first message is stamped {bob_ts}, not ~{SKEW_SECS} s behind: libfaketime did not take"
    );
    assert!(
        (carol_ts - (now_ms() + skew_ms)).abs() < skew_ms / 2,
        "carol's first message is stamped {carol_ts}, not ~{SKEW_SECS} s ahead"
    );

    // Then both at once.
    let posters = c.start_posting(&ledger, TURNS);
    under_load(OVERLAP).await;
    stop_posting(posters).await;
    converge(&c.nodes(), CHANNEL, &ledger).await;

    for n in c.nodes() {
        let snap = n.api().snapshot(CHANNEL).await.expect("history");
        let pos = |id: &str| snap.messages.iter().position(|m| m.id == id);
        for pair in chain.windows(2) {
            let (said, answer) = (&pair[0].0, &pair[1].0);
            assert!(
                pos(said) < pos(answer),
                "{}: an answer ({answer}) is listed before what it answers ({said})",
                n.name
            );
        }
    }
}
