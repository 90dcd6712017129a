//! The `store` scenario: the server's message backup on SQLite and on
//! PostgreSQL, side by side, through the `Store` trait the server uses.
//!
//! Two workloads, each on a fresh database per backend:
//! - **backup**: W writers, each backing up its own channel (as W hosts
//!   do) in batches of B signed messages, `--messages` in all; prints
//!   messages/s and the batch latency percentiles;
//! - **history**: R readers asking pages of 100 messages after a random
//!   sequence number (as members catching up through the server do) for
//!   `--seconds`; prints pages/s and page latency percentiles.
//!
//! SQLite is the server's own file (WAL, `synchronous=NORMAL`: a commit
//! survives `kill -9`, not a power cut). PostgreSQL is a private server
//! started for the run (`segchat-pgtest`) with its production defaults
//! (`fsync` and `synchronous_commit` on: a commit survives a power cut
//! too), reached over its Unix socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ed25519_dalek::SigningKey;
use rand::Rng;
use segchat_proto::message::{Draft, Message};
use segchat_proto::ticket::Ticket;
use segchat_proto::types::{AccountKind, Visibility};
use segchat_server::store::{self, MessageSource, NewChannel, Store};
use serde_json::json;

use crate::report::Percentiles;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StoreArgs {
    /// Messages backed up per run.
    #[arg(long, default_value_t = 20_000)]
    messages: u32,
    /// Messages per `insert_messages` call (the host's backup sends up to 64).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    batch: Vec<u32>,
    /// Concurrent writers, each into a channel of its own.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    writers: Vec<u32>,
    /// Concurrent history readers.
    #[arg(long, default_value_t = 4)]
    readers: u32,
    /// Seconds of history reads.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Body bytes per message.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// Leave PostgreSQL out (SQLite only).
    #[arg(long)]
    no_postgres: bool,
}

pub(crate) async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let pg = if args.no_postgres {
        None
    } else {
        let started = tokio::task::spawn_blocking(|| {
            segchat_pgtest::Postgres::start(segchat_pgtest::Options {
                durable: true,
                ..Default::default()
            })
        })
        .await?;
        Some(started.map_err(|e| anyhow::anyhow!(e))?)
    };
    let work = tempfile::tempdir()?;
    let key = SigningKey::from_bytes(&rand::thread_rng().gen());
    let mut rows = Vec::new();
    let mut run_no = 0;
    for &writers in &args.writers {
        for &batch in &args.batch {
            for backend in backends(pg.is_some()) {
                run_no += 1;
                let store = open(backend, pg.as_ref(), work.path(), run_no).await?;
                let (rate, lat) = backup(&store, &key, &args, writers, batch).await?;
                println!(
                    "backup  {backend:<10} writers {writers} batch {batch:>3}: {rate:>9.0} msg/s  \
                     batch p50 {:.2} / p99 {:.2} / max {:.2} ms",
                    lat.p50_ms, lat.p99_ms, lat.max_ms
                );
                rows.push(
                    json!({"workload": "backup", "backend": backend, "writers": writers,
                    "batch": batch, "messages_per_s": rate, "latency": lat}),
                );
                if writers == 1 && batch == *args.batch.iter().max().unwrap_or(&batch) {
                    let (pages, lat) = history(&store, &args).await?;
                    println!(
                        "history {backend:<10} readers {} page 100: {pages:>9.0} pages/s  \
                         p50 {:.2} / p99 {:.2} / max {:.2} ms",
                        args.readers, lat.p50_ms, lat.p99_ms, lat.max_ms
                    );
                    rows.push(json!({"workload": "history", "backend": backend,
                        "readers": args.readers, "pages_per_s": pages, "latency": lat}));
                }
            }
        }
    }
    println!("{}", json!({ "scenario": "store", "runs": rows }));
    Ok(())
}

fn backends(postgres: bool) -> Vec<&'static str> {
    if postgres {
        vec!["sqlite", "postgres"]
    } else {
        vec!["sqlite"]
    }
}

async fn open(
    backend: &str,
    pg: Option<&segchat_pgtest::Postgres>,
    dir: &std::path::Path,
    run_no: u32,
) -> anyhow::Result<Arc<dyn Store>> {
    let url = match (backend, pg) {
        ("postgres", Some(pg)) => pg
            .create_database(&format!("bench{run_no}"))
            .await
            .map_err(|e| anyhow::anyhow!(e))?,
        _ => dir.join(format!("bench{run_no}.db")).display().to_string(),
    };
    store::open(&url).await.context("opening the store")
}

fn signed(key: &SigningKey, channel: &str, i: u32, body_bytes: usize) -> Message {
    let ticket = Ticket {
        username: "bench".into(),
        kind: AccountKind::User,
        session_id: "s".into(),
        node_key: hex::encode(key.verifying_key().as_bytes()),
        issued_at_ms: 0,
        expires_at_ms: u64::MAX,
    }
    .sign(key)
    .expect("a ticket signs");
    let mut body = format!("{i} ");
    body.extend(std::iter::repeat_n(
        'x',
        body_bytes.saturating_sub(body.len()),
    ));
    Draft {
        file: None,
        id: uuid::Uuid::now_v7(),
        channel,
        author: "bench",
        ts_ms: u64::from(i),
        body: &body,
        re: None,
    }
    .sign(key, ticket)
    .expect("a draft signs")
}

/// Backs up `--messages` messages through `writers` writers; messages/s
/// and the latency of each `insert_messages` call.
async fn backup(
    store: &Arc<dyn Store>,
    key: &SigningKey,
    args: &StoreArgs,
    writers: u32,
    batch: u32,
) -> anyhow::Result<(f64, Percentiles)> {
    let owner = store.create_user("bench", "x", 1).await?;
    let each = args.messages / writers;
    let mut jobs = Vec::new();
    for w in 0..writers {
        let name = format!("c{w}");
        let channel = store
            .create_channel(&NewChannel {
                name: name.clone(),
                owner_id: owner.id,
                visibility: Visibility::Public,
                allow_visitors: false,
                created_at_ms: 1,
            })
            .await?;
        // Signed before the clock starts: signing is the authors' work.
        let messages: Vec<Message> = (0..each)
            .map(|i| signed(key, &name, i, args.body_bytes))
            .collect();
        jobs.push((channel.id, messages));
    }
    let start = Instant::now();
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|(channel, messages)| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut nanos = Vec::new();
                for chunk in messages.chunks(batch as usize) {
                    let t = Instant::now();
                    store
                        .insert_messages(channel, chunk, MessageSource::Host, 1)
                        .await?;
                    nanos.push(t.elapsed().as_nanos() as u64);
                }
                anyhow::Ok(nanos)
            })
        })
        .collect();
    let mut nanos = Vec::new();
    for t in tasks {
        nanos.extend(t.await??);
    }
    let rate = f64::from(each * writers) / start.elapsed().as_secs_f64();
    Ok((rate, Percentiles::of(nanos)))
}

/// Pages of 100 after random points of the first channel, from
/// `--readers` readers for `--seconds`.
async fn history(store: &Arc<dyn Store>, args: &StoreArgs) -> anyhow::Result<(f64, Percentiles)> {
    let channel = store
        .channel_by_name("c0")
        .await?
        .context("the backup run's channel")?;
    let last = store.last_seq(channel.id).await?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let tasks: Vec<_> = (0..args.readers)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut nanos = Vec::new();
                while Instant::now() < deadline {
                    let after = rand::thread_rng().gen_range(0..last.max(1));
                    let t = Instant::now();
                    let page = store.messages_after(channel.id, after, 100).await?;
                    nanos.push(t.elapsed().as_nanos() as u64);
                    anyhow::ensure!(!page.is_empty() || after + 1 >= last, "an empty page");
                }
                anyhow::Ok(nanos)
            })
        })
        .collect();
    let mut nanos = Vec::new();
    for t in tasks {
        nanos.extend(t.await??);
    }
    let pages = nanos.len() as f64 / args.seconds;
    Ok((pages, Percentiles::of(nanos)))
}
