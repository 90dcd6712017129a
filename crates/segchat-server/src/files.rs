//! The server's backup copy of files: a file shared in a channel is
//! fetched from its sender's node (when it asks, `file_backup`) and kept
//! here, so it stays available while every node that holds it is
//! offline, the same rule as messages. A reader of the channel may fetch
//! it from here (`file_source`). A file shared in a direct message is
//! kept the same way, encrypted as it is (the server never has its key),
//! for the users its sender named: a tag per reader
//! (`segchat-dm/<hash>/<username>`) says who may fetch it.
//!
//! Invariants:
//! - the server fetches only a file a message in its backup shares (for
//!   a direct message's, which it cannot see, one a registered user
//!   asks it to keep), only up to the size that message (or user) says
//!   (a node cannot make it take more), and keeps it only if it verified
//!   whole at that size;
//! - what it keeps, with what is being fetched, stays within
//!   `file_backup_total` bytes, each file within `file_backup_max`;
//! - a node fetches a file from here only with a grant made for its key
//!   by `file_source` (the channel's read rule checked, or the user among
//!   a direct message's file's readers), for an hour
//!   (`segchat_net::blobs`).
//!
//! The bytes are in an iroh-blobs store in `DATA_DIR/blobs`. Each
//! instance of a server keeps its own: with several instances, a file is
//! where its sender's instance fetched it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bao_tree::{ChunkNum, ChunkRanges};
use futures::StreamExt;
use iroh_blobs::api::blobs::BlobStatus;
use iroh_blobs::protocol::GetRequest;
use iroh_blobs::store::fs::options::Options;
use iroh_blobs::store::fs::FsStore;
use iroh_blobs::store::GcConfig;
use iroh_blobs::Hash;
use segchat_log::SystemLog;
use segchat_net::blobs::Gate;
use segchat_proto::files::FileRef;
use segchat_proto::tracker::Reply;
use segchat_proto::{Failure, Status};

/// How long a `file_source` grant lasts.
const GRANT_FOR: Duration = Duration::from_secs(3600);
/// Most files one node key holds grants for at once.
const MAX_GRANTS: usize = 256;
/// Most blobs-protocol connections served at once.
const MAX_CONNS: usize = 1024;
/// Most backups fetched at once.
const MAX_FETCHING: usize = 4;
/// How long one backup fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);
/// How often bytes no tag keeps (a fetch that failed) are collected.
const GC_EVERY: Duration = Duration::from_secs(600);

/// The server's files: cheap to share (`Arc`).
#[derive(Debug)]
pub(crate) struct ServerFiles {
    blobs: FsStore,
    gate: Gate,
    max_file: u64,
    max_total: u64,
    /// Bytes kept, and reserved for the fetches running.
    held: AtomicU64,
    fetching: Mutex<HashSet<Hash>>,
    /// How this server dials a node: its endpoint and its own relay.
    dial: OnceLock<(iroh::Endpoint, iroh::RelayUrl)>,
    log: SystemLog,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn tag_name(hash: Hash) -> String {
    format!("segchat/{}", hash.to_hex())
}

/// Most users one direct message's file is kept for (a conversation is
/// at most 10; a few more for the same file sent again elsewhere).
const MAX_READERS: usize = 16;

/// Where the readers of direct messages' files are kept: a tag
/// `segchat-dm/<hash>/<username>` per reader.
const DM_READERS: &str = "segchat-dm/";

fn reader_tag(hash: Hash, reader: &str) -> String {
    format!("{DM_READERS}{}/{reader}", hash.to_hex())
}

impl ServerFiles {
    /// Opens the blob store in `data_dir`, counting what it keeps; a
    /// fetch a crash cut off is dropped.
    pub(crate) async fn open(
        data_dir: &Path,
        max_file: u64,
        max_total: u64,
        log: SystemLog,
    ) -> std::io::Result<ServerFiles> {
        let root = data_dir.join("blobs");
        segchat_log::private_dir(&root)?;
        let mut options = Options::new(&root);
        options.gc = Some(GcConfig {
            interval: GC_EVERY,
            add_protected: None,
        });
        let blobs = FsStore::load_with_opts(root.join("blobs.db"), options)
            .await
            .map_err(|e| std::io::Error::other(format!("blob store {}: {e}", root.display())))?;
        let mut held = 0u64;
        let mut partial = Vec::new();
        if let Ok(mut tags) = blobs.tags().list_prefix("segchat/").await {
            while let Some(Ok(tag)) = tags.next().await {
                match blobs.blobs().status(tag.hash).await {
                    Ok(BlobStatus::Complete { size }) => held += size,
                    _ => partial.push(tag.name),
                }
            }
        }
        // Readers of a file not here whole (its fetch was cut off) go too.
        if let Ok(mut tags) = blobs.tags().list_prefix(DM_READERS).await {
            while let Some(Ok(tag)) = tags.next().await {
                if !matches!(
                    blobs.blobs().status(tag.hash).await,
                    Ok(BlobStatus::Complete { .. })
                ) {
                    partial.push(tag.name);
                }
            }
        }
        for name in partial {
            let _ = blobs.tags().delete(name).await;
        }
        Ok(ServerFiles {
            blobs,
            gate: Gate::default(),
            max_file,
            max_total,
            held: AtomicU64::new(held),
            fetching: Mutex::default(),
            dial: OnceLock::new(),
            log,
        })
    }

    /// Tells the files how to dial nodes, once the endpoint is up.
    pub(crate) fn set_endpoint(&self, endpoint: iroh::Endpoint, relay: iroh::RelayUrl) {
        let _ = self.dial.set((endpoint, relay));
    }

    /// The blobs protocol's handler: serves only what `file_source`
    /// granted.
    pub(crate) fn protocol(&self) -> iroh_blobs::BlobsProtocol {
        let events = segchat_net::blobs::police(self.gate.clone(), MAX_CONNS, || true);
        iroh_blobs::BlobsProtocol::new(&self.blobs, Some(events))
    }

    async fn complete_size(&self, hash: Hash) -> Option<u64> {
        match self.blobs.blobs().status(hash).await {
            Ok(BlobStatus::Complete { size }) => Some(size),
            _ => None,
        }
    }

    /// Keeps a copy of `file`, fetched from the node `node` (hex key)
    /// whose tracker link comes from `addr` (for the log), dialled at
    /// the address it announced (`direct`, if any) and through the relay,
    /// if it fits: answers `file_kept`.
    /// `readers` (lowercased) are the users a direct message's file is
    /// kept for; none for a channel's. `wake` is called with this
    /// server's key just before it dials the node, to bring the node onto
    /// the relay (`relay_wanted`) in case the direct path does not work.
    pub(crate) async fn backup(
        self: &Arc<Self>,
        node: &str,
        addr: SocketAddr,
        direct: Option<SocketAddr>,
        file: FileRef,
        readers: Vec<String>,
        wake: impl FnOnce(String),
    ) -> Result<Reply, Failure> {
        let hash = file
            .hash_bytes()
            .map(Hash::from_bytes)
            .ok_or_else(|| Failure::bad_request("a file hash is 64 lowercase hex characters"))?;
        let hex = file.hash.clone();
        let answer = |kept: bool, reason: Option<String>| Reply::FileKept {
            hash: hex.clone(),
            kept,
            reason,
        };
        let here = self.complete_size(hash).await;
        if here.is_some_and(|size| size == file.size) || lock(&self.fetching).contains(&hash) {
            self.keep_for(hash, &readers).await;
            return Ok(answer(true, None));
        }
        if here.is_some() {
            return Ok(answer(
                false,
                Some("the server holds that file at another size".to_owned()),
            ));
        }
        if file.size > self.max_file {
            return Ok(answer(
                false,
                Some(format!(
                    "this server keeps copies of files up to {} bytes",
                    self.max_file
                )),
            ));
        }
        let Some((endpoint, relay)) = self.dial.get().cloned() else {
            return Err(Failure::unavailable("the server is starting; try again"));
        };
        let node_id =
            segchat_net::parse_id(node).map_err(|e| Failure::bad_request(e.to_string()))?;
        {
            let mut fetching = lock(&self.fetching);
            if fetching.len() >= MAX_FETCHING {
                return Err(Failure::new(
                    Status::RateLimited,
                    "the server is fetching other files; ask again in a minute",
                ));
            }
            let held = self.held.load(Ordering::Relaxed);
            if held.saturating_add(file.size) > self.max_total {
                return Ok(answer(
                    false,
                    Some("the server's room for files is full".to_owned()),
                ));
            }
            self.held.fetch_add(file.size, Ordering::Relaxed);
            fetching.insert(hash);
        }
        self.keep_for(hash, &readers).await;
        let to = segchat_net::PeerAddress {
            id: node_id,
            direct: direct.into_iter().collect(),
            relay: Some(relay),
        };
        wake(segchat_net::id_hex(&endpoint.id()));
        let me = self.clone();
        let node: String = node.chars().take(12).collect();
        tokio::spawn(async move {
            let result = tokio::time::timeout(FETCH_TIMEOUT, me.fetch(&endpoint, &to, hash, &file))
                .await
                .unwrap_or_else(|_| Err("it took too long".to_owned()));
            match result {
                Ok(()) => me.log.record(
                    "FILE_BACKED_UP",
                    addr,
                    format!("hash={} size={} from={node}", file.hash, file.size),
                ),
                Err(why) => {
                    me.held.fetch_sub(file.size, Ordering::Relaxed);
                    // Untagged, what came is collected.
                    let _ = me.blobs.tags().delete(tag_name(hash)).await;
                    me.forget_readers(hash).await;
                    me.log.record(
                        "FILE_BACKUP_FAILED",
                        addr,
                        format!("hash={} from={node} reason={why}", file.hash),
                    );
                }
            }
            lock(&me.fetching).remove(&hash);
        });
        Ok(answer(true, None))
    }

    /// Marks `hash` as kept for each of `readers` (a direct message's
    /// file): a tag per reader in the blob store, so it lasts across
    /// restarts.
    /// At most [`MAX_READERS`] per file: asking again with other names
    /// adds none past that.
    async fn keep_for(&self, hash: Hash, readers: &[String]) {
        let prefix = format!("{DM_READERS}{}/", hash.to_hex());
        let mut have = 0;
        if let Ok(mut tags) = self.blobs.tags().list_prefix(prefix.as_bytes()).await {
            while let Some(Ok(_)) = tags.next().await {
                have += 1;
            }
        }
        for reader in readers {
            let tag = reader_tag(hash, reader);
            let known = matches!(self.blobs.tags().get(&tag).await, Ok(Some(_)));
            if !known && have >= MAX_READERS {
                break;
            }
            if !known {
                have += 1;
            }
            let _ = self.blobs.tags().set(tag, hash).await;
        }
    }

    /// Drops the readers of `hash` (its fetch failed).
    async fn forget_readers(&self, hash: Hash) {
        let _ = self
            .blobs
            .tags()
            .delete_prefix(format!("{DM_READERS}{}/", hash.to_hex()))
            .await;
    }

    /// Whether the server keeps `hash` for `user` (a direct message's
    /// file backed up for them).
    pub(crate) async fn kept_for(&self, hash: &str, user: &str) -> bool {
        let Some(h) = segchat_proto::files::parse_hash(hash).map(Hash::from_bytes) else {
            return false;
        };
        let tag = reader_tag(h, &user.to_lowercase());
        matches!(self.blobs.tags().get(tag).await, Ok(Some(_)))
    }

    /// Fetches `file` from `to`, only the chunks its size covers, and
    /// checks it verified whole at that size.
    async fn fetch(
        &self,
        endpoint: &iroh::Endpoint,
        to: &segchat_net::PeerAddress,
        hash: Hash,
        file: &FileRef,
    ) -> Result<(), String> {
        // Kept from the start, so the collector leaves what arrives.
        self.blobs
            .tags()
            .set(tag_name(hash), hash)
            .await
            .map_err(|e| e.to_string())?;
        let conn = endpoint
            .connect(to.to_endpoint_addr(), iroh_blobs::ALPN)
            .await
            .map_err(|e| format!("could not reach the node: {e}"))?;
        let ranges = ChunkRanges::from(ChunkNum(0)..ChunkNum::chunks(file.size).max(ChunkNum(1)));
        let request = GetRequest::blob_ranges(hash, ranges);
        self.blobs
            .remote()
            .execute_get(conn.clone(), request)
            .complete()
            .await
            .map_err(|e| e.to_string())?;
        conn.close(0u32.into(), b"done");
        match self.complete_size(hash).await {
            Some(size) if size == file.size => Ok(()),
            Some(size) => Err(format!("it verified at {size} bytes, not {}", file.size)),
            None => Err(format!(
                "the node sent less than the {} bytes the message says",
                file.size
            )),
        }
    }

    /// Grants node `node` (hex key) the server's copy of `hash` for an
    /// hour: answers its size, or `404` when the server keeps none.
    pub(crate) async fn source(&self, node: &str, hash: &str) -> Result<u64, Failure> {
        let h = segchat_proto::files::parse_hash(hash)
            .map(Hash::from_bytes)
            .ok_or_else(|| Failure::bad_request("a file hash is 64 lowercase hex characters"))?;
        let Some(size) = self.complete_size(h).await else {
            return Err(Failure::not_found(format!(
                "the server keeps no copy of {hash}"
            )));
        };
        let who = segchat_net::parse_id(node).map_err(|e| Failure::bad_request(e.to_string()))?;
        // Asked again while granted: the grant stands (one timer per
        // grant, however often a node asks).
        if self.gate.holds(&who, &h) {
            return Ok(size);
        }
        if self.gate.granted(&who) >= MAX_GRANTS {
            return Err(Failure::new(
                Status::RateLimited,
                format!("at most {MAX_GRANTS} files granted at once"),
            ));
        }
        self.gate.grant(who, h);
        let gate = self.gate.clone();
        tokio::spawn(async move {
            tokio::time::sleep(GRANT_FOR).await;
            gate.revoke(who, h);
        });
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_direct_messages_file_is_kept_for_its_readers_and_a_few_more_at_most() {
        let dir = tempfile::tempdir().expect("dir");
        let log = SystemLog::open(segchat_log::LogConfig::new(dir.path())).expect("log");
        let files = ServerFiles::open(dir.path(), 1 << 20, 1 << 30, log)
            .await
            .expect("open");
        let hash = Hash::new(b"sealed bytes");
        let hex = hash.to_hex().to_string();
        let names: Vec<String> = (0..40).map(|i| format!("user{i:02}")).collect();
        files.keep_for(hash, &names[..3]).await;
        assert!(
            files.kept_for(&hex, "USER01").await,
            "names are one user in any case"
        );
        assert!(!files.kept_for(&hex, "user03").await);
        // Asked again and again with other names: no more than the cap.
        for chunk in names.chunks(10) {
            files.keep_for(hash, chunk).await;
        }
        let mut held = 0;
        let mut tags = files
            .blobs
            .tags()
            .list_prefix(DM_READERS)
            .await
            .expect("tags");
        while let Some(Ok(_)) = tags.next().await {
            held += 1;
        }
        assert_eq!(held, MAX_READERS);
        assert!(files.kept_for(&hex, "user00").await);
        assert!(!files.kept_for(&hex, "user39").await);
        // A failed fetch forgets them all.
        files.forget_readers(hash).await;
        assert!(!files.kept_for(&hex, "user00").await);
    }
}
