//! The fetching side: a file comes in pieces from every seeder at once.
//!
//! 1. **Seeders.** The channel's host, and every node the seeders asked
//!    name as holding the file (`file_opened`'s `seeders`), each opened
//!    with `file_open` on a peer link kept (pinging) for the fetch.
//!    When none of them can be opened, the server, if it keeps a backup
//!    copy (`file_source`); a node that shares a file asks the server to
//!    keep one (`file_backup`, [`backup`]).
//! 2. **Pieces.** The file is cut into pieces of [`PIECE_CHUNKS`] BLAKE3
//!    chunks; what the blob store already holds verified is skipped, so
//!    a fetch cut off by a crash or a lost link resumes where it was.
//! 3. **From all of them.** Each seeder takes the next missing piece
//!    from one queue, [`IN_FLIGHT`] at a time, so a fast seeder takes
//!    more. iroh-blobs verifies each piece against the hash tree as it
//!    arrives; a seeder whose bytes do not verify (or whose link fails)
//!    is dropped and its piece goes back in the queue for the others.
//! 4. **Done.** Once whole, the size verified is checked against the
//!    message's, the file is kept, and each seeder is told `file_have`,
//!    so the next asker can fetch from this node too.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bao_tree::{ChunkNum, ChunkRanges};
use iroh_blobs::protocol::GetRequest;
use iroh_blobs::Hash;
use segchat_proto::files::FileRef;

use super::seeders::{open_seeders, server_seeder, Seeder};
use super::{lock, Files, Progress};

/// BLAKE3 chunks (1 KiB each) per piece: 1 MiB.
const PIECE_CHUNKS: u64 = 1024;
/// Pieces asked of one seeder at a time.
const IN_FLIGHT: usize = 2;
/// How long one piece may take before its seeder counts as stalled.
const PIECE_TIMEOUT: Duration = Duration::from_secs(30);

/// Fetches `file` (shared in `channel`) into the blob store.
pub(super) async fn fetch(
    files: &Files,
    channel: &str,
    file: &FileRef,
    progress: &Progress,
) -> Result<(), String> {
    let hash = super::to_hash(&file.hash).map_err(|f| f.reason)?;
    *lock(&progress.started) = Some(Instant::now());
    // A seeder may be starting, or its address not yet known: a few
    // tries, a second, two, four apart. When no node has it, the
    // server's backup copy, if it keeps one.
    let mut seeders = Vec::new();
    let mut tried_server = false;
    for wait in [1, 2, 4, 0] {
        seeders = open_seeders(files, channel, file, hash).await;
        if seeders.is_empty() && !tried_server {
            tried_server = true;
            seeders.extend(server_seeder(files, channel, file).await);
        }
        if !seeders.is_empty() || wait == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
    if seeders.is_empty() {
        return Err(
            "no node that holds this file is reachable now, and the server keeps no copy".into(),
        );
    }
    let pieces = file.size.div_ceil(PIECE_CHUNKS * 1024).max(1);
    let mut before = None;
    let mut dropped = false;
    loop {
        // Whole (also at a size other than the message's: checked below).
        if files.complete_size(hash).await.is_some() {
            break;
        }
        let have = held(files, hash).await;
        let now = held_bytes(files, hash).await;
        progress.bytes.store(now, Ordering::Relaxed);
        if before == Some(now) && !dropped {
            // A round where every seeder answered and nothing new came:
            // the file is not the size its message says.
            return Err(format!(
                "the seeders sent all they have ({now} bytes), not the {} the message says",
                file.size
            ));
        }
        before = Some(now);
        let queue: Mutex<VecDeque<u64>> = Mutex::new(
            (0..pieces)
                .filter(|&i| !have.is_superset(&piece(i, file.size)))
                .collect(),
        );
        if lock(&queue).is_empty() {
            break;
        }
        if seeders.is_empty() && !tried_server {
            tried_server = true;
            seeders.extend(server_seeder(files, channel, file).await);
        }
        if seeders.is_empty() {
            return Err("every seeder failed or sent bytes that did not verify".into());
        }
        // Every seeder works the one queue; one that fails is dropped.
        let results = futures::future::join_all(seeders.iter().map(|s| {
            let queue = &queue;
            async move {
                let workers = (0..IN_FLIGHT).map(|_| work(files, s, hash, file, queue, progress));
                futures::future::join_all(workers)
                    .await
                    .into_iter()
                    .find_map(Result::err)
            }
        }))
        .await;
        let mut kept = Vec::new();
        dropped = results.iter().any(Option::is_some);
        for (s, failed) in seeders.into_iter().zip(results) {
            match failed {
                None => kept.push(s),
                Some(why) => {
                    files.inner.log.record(
                        "FILE_SEEDER_DROPPED",
                        s.addr.addr,
                        format!("hash={} seeder={} reason={why}", file.hash, s.short()),
                    );
                    s.conn.close(1u32.into(), b"dropped");
                }
            }
        }
        seeders = kept;
    }
    let size = files
        .complete_size(hash)
        .await
        .ok_or("the store does not hold the whole file")?;
    if size != file.size {
        return Err(format!(
            "the file verified at {size} bytes, but its message says {}",
            file.size
        ));
    }
    files.keep(hash).await.map_err(|f| f.reason)?;
    let took = lock(&progress.started)
        .map(|t| t.elapsed())
        .unwrap_or_default();
    let from: Vec<String> = lock(&progress.by_seeder)
        .iter()
        .map(|(k, n)| format!("{k}:{n}"))
        .collect();
    let paths: Vec<String> = seeders
        .iter()
        .map(|s| crate::transport::path_of(&s.conn).to_string())
        .collect();
    files.inner.log.record(
        "FILE_FETCHED",
        "p2p",
        format!(
            "hash={} size={size} channel={channel} ms={} from={} paths={}",
            file.hash,
            took.as_millis(),
            from.join(","),
            paths.join(",")
        ),
    );
    for mut s in seeders {
        if let Some(tx) = s.have.take() {
            let _ = tx.send(());
        }
    }
    Ok(())
}

/// Fetches pieces from `queue` off seeder `s` until the queue is empty;
/// an error drops the seeder (its piece is back in the queue).
async fn work(
    files: &Files,
    s: &Seeder,
    hash: Hash,
    file: &FileRef,
    queue: &Mutex<VecDeque<u64>>,
    progress: &Progress,
) -> Result<(), String> {
    loop {
        let Some(i) = lock(queue).pop_front() else {
            return Ok(());
        };
        let have = held(files, hash).await;
        let need = &piece(i, file.size) - &have;
        if need.is_empty() {
            continue;
        }
        let request = GetRequest::blob_ranges(hash, need);
        let get = files
            .inner
            .blobs
            .remote()
            .execute_get(s.conn.clone(), request)
            .complete();
        let done = tokio::time::timeout(PIECE_TIMEOUT, get).await;
        match done {
            Ok(Ok(stats)) => {
                let n = stats.payload_bytes_read;
                if let Some(pace) = &files.inner.pace {
                    pace.spend(n).await;
                }
                {
                    let key = s.short();
                    let mut by = lock(&progress.by_seeder);
                    match by.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, total)) => *total += n,
                        None => by.push((key, n)),
                    }
                }
                progress.bytes.fetch_add(n, Ordering::Relaxed);
                // Once the store holds a piece, its database records the
                // file as partial (committed now, not whenever it next
                // idles), so a crash from here on loses no more than the
                // pieces in flight: see `Files::open`.
                if !progress.recorded.swap(true, Ordering::AcqRel) {
                    if let Err(e) = files.inner.blobs.sync_db().await {
                        tracing::warn!(error = %e, "could not commit the blob store");
                    }
                }
            }
            Ok(Err(e)) => {
                lock(queue).push_back(i);
                return Err(e.to_string());
            }
            Err(_) => {
                lock(queue).push_back(i);
                return Err(format!("a piece took over {} s", PIECE_TIMEOUT.as_secs()));
            }
        }
    }
}

/// A download limit: bytes a second, for all fetches together. A piece
/// that arrived early is paid for by waiting before the next.
#[derive(Debug)]
pub(super) struct Pace {
    per_sec: u64,
    /// When the bytes spent so far will have been allowed.
    due: tokio::sync::Mutex<Instant>,
}

impl Pace {
    pub(super) fn new(per_sec: u64) -> Pace {
        Pace {
            per_sec: per_sec.max(1),
            due: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    async fn spend(&self, bytes: u64) {
        let wait_until = {
            let mut due = self.due.lock().await;
            let now = Instant::now();
            // Idle time is not saved up: at most one second's burst.
            let from = (*due).max(now.checked_sub(Duration::from_secs(1)).unwrap_or(now));
            *due = from + Duration::from_secs_f64(bytes as f64 / self.per_sec as f64);
            *due
        };
        tokio::time::sleep_until(wait_until.into()).await;
    }
}

/// The chunks of piece `i` of a file of `size` bytes.
fn piece(i: u64, size: u64) -> ChunkRanges {
    let end = ChunkNum::chunks(size).0.max(1);
    let start = (i * PIECE_CHUNKS).min(end);
    ChunkRanges::from(ChunkNum(start)..ChunkNum(((i + 1) * PIECE_CHUNKS).min(end)))
}

/// The chunks of `hash` the blob store holds verified.
async fn held(files: &Files, hash: Hash) -> ChunkRanges {
    match files.inner.blobs.blobs().observe(hash).await {
        Ok(bitfield) => bitfield.ranges,
        Err(_) => ChunkRanges::empty(),
    }
}

/// Verified bytes of `hash` the blob store holds.
pub(super) async fn held_bytes(files: &Files, hash: Hash) -> u64 {
    match files.inner.blobs.remote().local(hash).await {
        Ok(local) => local.local_bytes(),
        Err(_) => 0,
    }
}
