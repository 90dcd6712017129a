//! The `dm` scenario: direct-message latency between two real node
//! processes, P2P and through the server's mailbox, and the cost of the
//! encryption itself.
//!
//! A message's latency is from the sender's `POST /dms/bob` to the
//! recipient node's `direct_message` event on its `/events` WebSocket:
//! the whole path a user sees (API, sealing with Olm, the hand-over or the
//! server's mailbox, opening, the local store). Messages go one at a
//! time. The server path is measured with the recipient invisible: its
//! node then takes no peer connection and the server hides its address,
//! so everything goes through the mailbox (and the live `dm` push).
//!
//! The encryption cost is vodozemac's Olm alone (the same configuration
//! the node uses), in this process: encrypting and decrypting a payload
//! of the size a short message's JSON has.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use vodozemac::olm::{Account, OlmMessage, SessionConfig};

use crate::procs::{segchat_exe, start_node, start_server, Api};
use crate::report::Percentiles;

#[derive(Debug, clap::Args)]
pub(crate) struct DmArgs {
    /// Messages timed on each path (after a few to warm up).
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Milliseconds between sends: a person's pace, and under the
    /// server's allowance of changes (10 a second per connection), which
    /// the mailbox path spends.
    #[arg(long, default_value_t = 150)]
    interval_ms: u64,
    /// Olm messages encrypted and decrypted for the encryption cost.
    #[arg(long, default_value_t = 20_000)]
    olm_messages: usize,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct DmReport {
    bench: &'static str,
    p2p: Percentiles,
    server: Percentiles,
    /// Encrypt + decrypt, one direction (each side's chain moves on), µs.
    olm_one_way_us: f64,
    /// The same when every message answers the last (a new ratchet step
    /// each time), µs.
    olm_alternating_us: f64,
    /// A new outbound and inbound session (the first message), µs.
    olm_new_session_us: f64,
    /// Bytes of the sealed message for a 200-byte payload: normal,
    /// pre-key.
    olm_bytes: (usize, usize),
    payload_bytes: usize,
}

pub(crate) async fn run(args: DmArgs) -> anyhow::Result<()> {
    let exe = segchat_exe()?;
    let dir = tempfile::tempdir()?;
    let (server, addr) = start_server(&exe, dir.path()).await?;
    let (ann_node, ann) = start_node(&exe, dir.path(), addr, "ann's node", "ann").await?;
    let (bob_node, bob) = start_node(&exe, dir.path(), addr, "bob's node", "bob").await?;
    for (api, user) in [(&ann, "ann"), (&bob, "bob")] {
        api.post(
            "session/register",
            json!({"username": user, "password": "bench password 1"}),
        )
        .await?;
    }
    for sub in ["ann", "bob"] {
        keys_published(&dir.path().join(sub)).await?;
    }

    let (tx, mut arrivals) = mpsc::unbounded_channel();
    let (ws, _) = tokio_tungstenite::connect_async(bob.events_url())
        .await
        .context("bob's /events")?;
    let reader = tokio::spawn(async move {
        let mut ws = ws;
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if v["type"] == "direct_message" && v["message"]["state"] == "received" {
                let id = v["message"]["id"].as_str().unwrap_or("").to_owned();
                if tx.send((id, Instant::now())).is_err() {
                    return;
                }
            }
        }
    });

    let pace = Duration::from_millis(args.interval_ms);
    let p2p = timed(&ann, &mut arrivals, args.messages, pace, "p2p").await?;
    bob.put("status", json!({"status": "invisible"})).await?;
    // The first message after it learns bob's node is unreachable and
    // asks the server again; the warm-up takes it.
    let server_path = timed(&ann, &mut arrivals, args.messages, pace, "server").await?;
    reader.abort();

    let olm = olm_cost(args.olm_messages)?;
    let report = DmReport {
        bench: "dm",
        p2p,
        server: server_path,
        olm_one_way_us: olm.one_way_us,
        olm_alternating_us: olm.alternating_us,
        olm_new_session_us: olm.new_session_us,
        olm_bytes: olm.bytes,
        payload_bytes: olm.payload,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    ann_node.stop().await;
    bob_node.stop().await;
    server.stop().await;
    Ok(())
}

/// Waits until the node whose data directory is `dir` has published its
/// device keys (its system log says so).
async fn keys_published(dir: &Path) -> anyhow::Result<()> {
    let log = dir.join("logs").join("segchat.log");
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("KEYS_PUBLISHED")
    {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("{} never published its keys", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Sends `n` messages (after 5 to warm up) from `ann` to bob one at a
/// time, `pace` apart; the latency of each, from the POST to bob's event. Every message
/// must have gone by `path`.
async fn timed(
    ann: &Api,
    arrivals: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    n: usize,
    pace: Duration,
    path: &str,
) -> anyhow::Result<Percentiles> {
    const WARM_UP: usize = 5;
    let mut early: HashMap<String, Instant> = HashMap::new();
    let mut nanos = Vec::with_capacity(n);
    for i in 0..n + WARM_UP {
        tokio::time::sleep(pace).await;
        let text = format!("bench message {i:05} {}", "x".repeat(120));
        let start = Instant::now();
        let sent = ann.post("dms/bob", json!({ "text": text })).await?;
        let id = sent["message"]["id"]
            .as_str()
            .ok_or_else(|| anyhow!("no id in {sent}"))?
            .to_owned();
        let arrived = match early.remove(&id) {
            Some(at) => at,
            None => loop {
                let next = tokio::time::timeout(Duration::from_secs(30), arrivals.recv());
                let (got, at) = next
                    .await
                    .map_err(|_| anyhow!("message {id} did not arrive within 30 s"))?
                    .ok_or_else(|| anyhow!("bob's event stream ended"))?;
                if got == id {
                    break at;
                }
                early.insert(got, at);
            },
        };
        if i >= WARM_UP {
            let went = sent["message"]["path"].as_str().unwrap_or("?");
            if went != path {
                bail!("message {i} went by {went}, not {path}: {sent}");
            }
            nanos.push(arrived.saturating_duration_since(start).as_nanos() as u64);
        }
    }
    Ok(Percentiles::of(nanos))
}

struct OlmCost {
    one_way_us: f64,
    alternating_us: f64,
    new_session_us: f64,
    bytes: (usize, usize),
    payload: usize,
}

/// vodozemac's Olm on its own: sessions, then `n` messages one way and
/// `n` alternating.
fn olm_cost(n: usize) -> anyhow::Result<OlmCost> {
    let payload = vec![b'x'; 200];
    let ann = Account::new();
    let mut bob = Account::new();
    let sessions = 200;
    let start = Instant::now();
    let mut pre_key_len = 0;
    let mut pair = None;
    for _ in 0..sessions {
        bob.generate_one_time_keys(1);
        let (_, otk) = bob
            .one_time_keys()
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no one-time key"))?;
        bob.mark_keys_as_published();
        let mut out =
            ann.create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)?;
        let first = out.encrypt(&payload)?;
        pre_key_len = first.to_parts().1.len();
        let OlmMessage::PreKey(pre) = &first else {
            bail!("the first message is not a pre-key message");
        };
        let inbound =
            bob.create_inbound_session(SessionConfig::version_1(), ann.curve25519_key(), pre)?;
        pair = Some((out, inbound.session));
    }
    let new_session_us = start.elapsed().as_secs_f64() * 1e6 / sessions as f64;
    let (mut a, mut b) = pair.ok_or_else(|| anyhow!("no session"))?;
    // Bob answers once so that ann's next messages are normal ones.
    let back = b.encrypt(&payload)?;
    a.decrypt(&back)?;

    let mut normal_len = 0;
    let start = Instant::now();
    for _ in 0..n {
        let m = a.encrypt(&payload)?;
        normal_len = m.to_parts().1.len();
        b.decrypt(&m)?;
    }
    let one_way_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let start = Instant::now();
    for i in 0..n {
        let (from, to) = if i % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let m = from.encrypt(&payload)?;
        to.decrypt(&m)?;
    }
    let alternating_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    Ok(OlmCost {
        one_way_us,
        alternating_us,
        new_session_us,
        bytes: (normal_len, pre_key_len),
        payload: payload.len(),
    })
}

fn print_table(r: &DmReport) {
    println!("direct messages, ann's node -> bob's node, one at a time (POST to bob's event)");
    println!(
        "{:<8} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "path", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (name, p) in [("p2p", &r.p2p), ("server", &r.server)] {
        println!(
            "{:<8} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            name, p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
        );
    }
    println!(
        "olm ({}-byte payload): {:.1} us/message one way, {:.1} us alternating, \
         {:.0} us for a new session; sealed {} bytes ({} as a pre-key message)",
        r.payload_bytes,
        r.olm_one_way_us,
        r.olm_alternating_us,
        r.olm_new_session_us,
        r.olm_bytes.0,
        r.olm_bytes.1
    );
}
