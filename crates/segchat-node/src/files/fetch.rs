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
use futures::{SinkExt, StreamExt};
use iroh_blobs::protocol::GetRequest;
use iroh_blobs::Hash;
use segchat_proto::files::FileRef;
use segchat_proto::peer;
use segchat_proto::ticket::ProofPurpose;
use segchat_proto::types::NodeAddr;
use segchat_proto::Frame;
use tokio::sync::oneshot;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::{lock, Files, Progress};
use crate::p2p::{PeerCodec, PeerFrame};

/// BLAKE3 chunks (1 KiB each) per piece: 1 MiB.
const PIECE_CHUNKS: u64 = 1024;
/// Pieces asked of one seeder at a time.
const IN_FLIGHT: usize = 2;
/// How long opening a seeder may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one piece may take before its seeder counts as stalled.
const PIECE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most seeders one fetch uses.
const MAX_SEEDERS: usize = 8;
/// How long the server may fetch a file this node asked it to keep.
const BACKUP_GRANT: Duration = Duration::from_secs(1800);
/// How often a seeder link pings (the welcome's `heartbeat_ms`).
const PING_EVERY: Duration = Duration::from_secs(2);

/// One seeder in use: its blobs connection, and its peer link held open
/// (pinging) by a task until this is dropped or told `file_have`.
struct Seeder {
    addr: NodeAddr,
    conn: iroh::endpoint::Connection,
    have: Option<oneshot::Sender<()>>,
}

impl Seeder {
    fn short(&self) -> String {
        self.addr.node_id.chars().take(12).collect()
    }
}

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

/// Opens the seeders: the channel's host and the known holders first,
/// then whoever they name, up to [`MAX_SEEDERS`], all at once.
async fn open_seeders(files: &Files, channel: &str, file: &FileRef, hash: Hash) -> Vec<Seeder> {
    let me = files.inner.chat.node_key();
    let mut candidates: Vec<NodeAddr> = Vec::new();
    // Where the host is now (the server knows), else as last listed.
    let listed = match files.inner.link.list_channels().await {
        Ok(channels) => Some(channels),
        Err(_) => files
            .inner
            .store
            .cached_channels()
            .await
            .ok()
            .flatten()
            .map(|c| c.channels),
    };
    if let Some(host) = listed
        .into_iter()
        .flatten()
        .find(|c| c.name == channel)
        .and_then(|c| c.host)
    {
        candidates.push(host);
    }
    candidates.extend(files.holders(hash));
    let mut tried: Vec<String> = vec![me];
    let mut open = Vec::new();
    for _round in 0..2 {
        let batch: Vec<NodeAddr> = candidates
            .drain(..)
            .filter(|c| {
                let new = !tried.contains(&c.node_id);
                if new {
                    tried.push(c.node_id.clone());
                }
                new
            })
            .take(MAX_SEEDERS.saturating_sub(open.len()))
            .collect();
        if batch.is_empty() {
            break;
        }
        let opened = futures::future::join_all(
            batch
                .into_iter()
                .map(|addr| open_seeder(files, channel, file, addr)),
        )
        .await;
        for r in opened {
            match r {
                Ok((seeder, size, named)) => {
                    candidates.extend(named);
                    if size == Some(file.size) {
                        open.push(seeder);
                    }
                }
                Err((addr, why)) => {
                    files.inner.log.record(
                        "FILE_SEEDER_UNREACHABLE",
                        addr.addr,
                        format!(
                            "hash={} seeder={} reason={why}",
                            file.hash,
                            addr.node_id.get(..12).unwrap_or("")
                        ),
                    );
                }
            }
        }
    }
    open
}

/// The server as a seeder, if it keeps a copy of `file` and grants it
/// to this node (`file_source`: it checks the channel's read rule).
async fn server_seeder(files: &Files, channel: &str, file: &FileRef) -> Option<Seeder> {
    let link = &files.inner.link;
    let size = match link.file_source(channel, &file.hash).await {
        Ok(size) => size,
        Err(f) => {
            tracing::debug!(hash = %file.hash, reason = %f, "no copy on the server");
            return None;
        }
    };
    if size != file.size {
        return None;
    }
    let addr = link.state().server_node?;
    let dialled = tokio::time::timeout(
        OPEN_TIMEOUT,
        files.inner.chat.dialer().connect(&addr, iroh_blobs::ALPN),
    )
    .await;
    match dialled {
        Ok(Ok(conn)) => Some(Seeder {
            addr,
            conn,
            have: None,
        }),
        _ => {
            files.inner.log.record(
                "FILE_SEEDER_UNREACHABLE",
                addr.addr,
                format!("hash={} seeder=server", file.hash),
            );
            None
        }
    }
}

/// Asks the server to keep a copy of `file`, which this node just shared
/// in `channel`: the server's key may fetch it from here for
/// [`BACKUP_GRANT`]. The server knows the message once its backup holds
/// it: asked again for a while.
pub(super) async fn backup(files: &Files, channel: &str, file: &FileRef) {
    let link = &files.inner.link;
    let Ok(hash) = super::to_hash(&file.hash) else {
        return;
    };
    let mut granted = false;
    for _ in 0..30 {
        let server = link
            .state()
            .server_node
            .and_then(|s| segchat_net::parse_id(&s.node_id).ok());
        if let Some(server) = server {
            if !granted {
                granted = true;
                files.inner.gate.grant(server, hash);
                let gate = files.inner.gate.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(BACKUP_GRANT).await;
                    gate.revoke(server, hash);
                });
            }
            match link.file_backup(channel, &file.hash).await {
                Ok((kept, reason)) => {
                    files.inner.log.record(
                        if kept {
                            "FILE_BACKUP_ASKED"
                        } else {
                            "FILE_NOT_BACKED_UP"
                        },
                        "server",
                        format!(
                            "hash={} channel={channel} reason={}",
                            file.hash,
                            reason.as_deref().unwrap_or("-")
                        ),
                    );
                    return;
                }
                Err(f)
                    if !matches!(
                        f.status,
                        segchat_proto::Status::NotFound
                            | segchat_proto::Status::Unavailable
                            | segchat_proto::Status::RateLimited
                    ) =>
                {
                    tracing::info!(hash = %file.hash, reason = %f, "no backup copy of the file");
                    return;
                }
                Err(_) => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = files.inner.shutdown.cancelled() => return,
        }
    }
}

/// A peer link on which `file_open` was answered.
struct OpenLink {
    reader: FramedRead<segchat_net::RecvStream, PeerCodec>,
    writer: FramedWrite<segchat_net::SendStream, PeerCodec>,
    conn: iroh::endpoint::Connection,
    /// The size the peer holds the file whole at, if it does.
    size: Option<u64>,
    /// Other holders it named.
    named: Vec<NodeAddr>,
}

/// Dials `addr` and asks `file_open` for `file` in `channel`.
async fn open_link(
    files: &Files,
    channel: &str,
    file: &FileRef,
    addr: &NodeAddr,
) -> Result<OpenLink, String> {
    let chat = &files.inner.chat;
    let crate::p2p::dial::Dialled {
        conn,
        mut reader,
        mut writer,
        nonce,
    } = crate::p2p::dial::open(chat.dialer(), addr, OPEN_TIMEOUT).await?;
    let ticket = chat.peer_ticket().await.map_err(|f| f.reason)?;
    let proof = chat
        .prove(&hex::encode(nonce), ProofPurpose::File { hash: &file.hash })
        .map_err(|e| e.to_string())?;
    let open: PeerFrame = Frame::Request {
        id: 1,
        body: peer::Request::FileOpen {
            ticket,
            proof,
            channel: channel.to_owned(),
            hash: file.hash.clone(),
        },
    };
    writer.send(open).await.map_err(|e| e.to_string())?;
    let (size, named) = loop {
        match reader.next().await {
            Some(Ok(Frame::Response { id: 1, result })) => match result {
                Ok(peer::Reply::FileOpened { size, seeders, .. }) => break (size, seeders),
                Ok(other) => return Err(format!("the peer answered {other:?}")),
                Err(f) => return Err(format!("{}: {}", f.status, f.reason)),
            },
            Some(Ok(_)) => continue,
            _ => return Err("the peer closed the link".to_owned()),
        }
    };
    Ok(OpenLink {
        reader,
        writer,
        conn,
        size,
        named: named.into_iter().take(peer::MAX_SEEDERS).collect(),
    })
}

/// Opens one seeder: a peer link, `file_open`, and a blobs connection.
/// Answers it, the size it holds whole (if it does) and whom it names.
async fn open_seeder(
    files: &Files,
    channel: &str,
    file: &FileRef,
    addr: NodeAddr,
) -> Result<(Seeder, Option<u64>, Vec<NodeAddr>), (NodeAddr, String)> {
    let opened = tokio::time::timeout(OPEN_TIMEOUT, async {
        let link = open_link(files, channel, file, &addr).await?;
        let conn = files
            .inner
            .chat
            .dialer()
            .connect(&addr, iroh_blobs::ALPN)
            .await
            .map_err(|e| format!("blobs connection: {e}"))?;
        let (have, told) = oneshot::channel();
        let (size, named) = (link.size, link.named);
        tokio::spawn(hold_link(
            link.reader,
            link.writer,
            link.conn,
            told,
            file.hash.clone(),
        ));
        let seeder = Seeder {
            addr: addr.clone(),
            conn,
            have: Some(have),
        };
        Ok((seeder, size, named))
    })
    .await;
    match opened {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(why)) => Err((addr, why)),
        Err(_) => Err((addr, "no answer in time".to_owned())),
    }
}

/// Tells the channel's host that this node holds `file` (just shared
/// it), so the host fetches a copy and names this node to members. The
/// host knows the message once the post reached it: tried again for a
/// while.
pub(super) async fn announce(files: &Files, channel: &str, file: &FileRef) {
    for _ in 0..30 {
        let host = match files.inner.store.cached_channels().await {
            Ok(Some(c)) => c
                .channels
                .into_iter()
                .find(|c| c.name == channel)
                .and_then(|c| c.host),
            _ => None,
        };
        if let Some(host) = host.filter(|h| h.node_id != files.inner.chat.node_key()) {
            let tried = tokio::time::timeout(OPEN_TIMEOUT, open_link(files, channel, file, &host));
            if let Ok(Ok(link)) = tried.await {
                let (have, told) = oneshot::channel();
                let _ = have.send(());
                hold_link(link.reader, link.writer, link.conn, told, file.hash.clone()).await;
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = files.inner.shutdown.cancelled() => return,
        }
    }
}

/// Keeps a seeder's peer link alive (its grant lasts as long) until
/// `told` fires (then says `file_have`) or is dropped.
async fn hold_link(
    mut reader: FramedRead<segchat_net::RecvStream, PeerCodec>,
    mut writer: FramedWrite<segchat_net::SendStream, PeerCodec>,
    conn: iroh::endpoint::Connection,
    mut told: oneshot::Receiver<()>,
    hash: String,
) {
    let mut tick = tokio::time::interval(PING_EVERY);
    let mut next_id = 2u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let ping: PeerFrame = Frame::Request { id: next_id, body: peer::Request::Ping };
                next_id += 1;
                if writer.send(ping).await.is_err() {
                    break;
                }
            }
            said = &mut told => {
                if said.is_ok() {
                    let have: PeerFrame = Frame::Request {
                        id: next_id,
                        body: peer::Request::FileHave { hash: hash.clone() },
                    };
                    if writer.send(have).await.is_ok() {
                        // Its answer, so the link is not closed first.
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            while let Some(Ok(f)) = reader.next().await {
                                if matches!(f, Frame::Response { id, .. } if id == next_id) {
                                    break;
                                }
                            }
                        })
                        .await;
                    }
                }
                break;
            }
            frame = reader.next() => {
                if !matches!(frame, Some(Ok(_))) {
                    break;
                }
            }
        }
    }
    conn.close(0u32.into(), b"done");
}
