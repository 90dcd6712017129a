//! Files: shared in messages, named by their BLAKE3 hash, fetched
//! node to node and verified piece by piece as they arrive.
//!
//! The bytes and their hash trees live in a blob store (`DATA_DIR/blobs`,
//! iroh-blobs' file system store), which keeps what is verified of a
//! partial file across restarts, so a fetch resumes where it stopped. A
//! message shares a file by its [`FileRef`], signed with the body
//! (`segchat_proto::files`).
//!
//! # Who serves whom
//!
//! A node serves a file it holds whole to a peer that proved, on a peer
//! link (`file_open`, like `peer_connect`: the server's ticket and a proof
//! over the link's nonce), that its user may read a channel in which a
//! message on this node shares the file. That grants the peer's key the
//! file on the blobs protocol (iroh-blobs' ALPN) while the link lives;
//! nothing else is served there: no other hash, no pushes, no listing
//! (`serve.rs`).
//!
//! # Layout
//!
//! - this file: [`Files`], the handle the API and chat use: importing an
//!   upload, starting a fetch, progress, reading a file back.
//! - `serve.rs`: the seeding side: `file_open`/`file_have` on the peer
//!   layer, and the blobs protocol's gate.
//! - `uploads.rs`: resumable uploads, a file sent to the node in parts.
//! - `thumbs.rs`: the small JPEG an image's message carries.
//! - `sweep.rs`: dropping the files no message shares any more.
//! - `sealed.rs`: files shared in direct messages, encrypted end to end
//!   before they enter the blob store, served to the conversation only.
//! - `auto.rs`: what the node fetches by itself: resumed fetches,
//!   images as they arrive, the host's copies.
//! - `seeders.rs`: finding and opening seeders (nodes, else the
//!   server's copy), and telling the host and the server of a file shared
//!   here.
//! - `fetch.rs`: the fetching side: finding seeders, splitting the file
//!   into pieces fetched from all of them at once, dropping a seeder that
//!   sends a byte that does not verify.

mod auto;
mod fetch;
mod sealed;
mod seeders;
mod serve;
mod sweep;
mod thumbs;
mod uploads;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iroh_blobs::store::fs::FsStore;
use iroh_blobs::{api::blobs::BlobStatus, Hash};
use segchat_log::SystemLog;
use segchat_proto::files::FileRef;
use segchat_proto::types::{AccountKind, NodeAddr};
use segchat_proto::{Failure, Status};
use tokio_util::sync::CancellationToken;

use crate::acl::ChannelAcl;
use crate::chat::Chat;
use crate::link::LinkHandle;
use crate::store::{FileRecord, FileState, Store};

pub(crate) use sealed::cipher;
pub use uploads::UploadStatus;
pub(crate) use uploads::Uploads;

/// Where the blob store lives in the data directory.
const BLOBS_DIR: &str = "blobs";
/// Where uploads are written before they are imported.
const UPLOADS_DIR: &str = "uploads";
/// How long a channel's member list is trusted before asking again.
const MEMBERS_FOR: Duration = Duration::from_secs(30);
/// The `channel` of a file shared in a direct message (channel names are
/// never empty): served only to the conversation's members, encrypted
/// (`sealed.rs`).
pub const DM_SCOPE: &str = "";
/// Images up to this size are fetched as their message arrives.
pub const AUTO_FETCH: u64 = 16 << 20;
/// Most fetches at once; one more asked for is refused (`429`).
const MAX_RUNNING: usize = 16;
/// Images are fetched by themselves only while fewer than this many
/// fetches run, so a flood of image messages cannot start a flood of
/// fetches.
const AUTO_RUNNING: usize = 4;
/// Most holders remembered per file.
const MAX_HOLDERS: usize = 64;

/// How much a node takes and how fast it fetches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The largest file, in bytes.
    pub(crate) max_size: u64,
    /// Bytes a second for all fetches together, if limited.
    pub(crate) download: Option<u64>,
    /// Bytes of copies kept for others, at most.
    pub(crate) keep_for_others: u64,
    /// How long a file no message shares stays (`sweep.rs`).
    pub(crate) unused_for: Duration,
    /// How often unshared files are swept and their bytes collected.
    pub(crate) sweep_every: Duration,
}

/// The files service: cheap to clone.
#[derive(Debug, Clone)]
pub struct Files {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    blobs: FsStore,
    chat: Chat,
    link: LinkHandle,
    store: Store,
    log: SystemLog,
    uploads: PathBuf,
    resumable: Uploads,
    max_size: u64,
    keep_for_others: u64,
    unused_for: Duration,
    sweep_every: Duration,
    /// Held while a host's copy is weighed against `keep_for_others` and
    /// started, so two at once cannot both fit in the same room.
    keeping: tokio::sync::Mutex<()>,
    /// The download limit, shared by every fetch.
    pace: Option<fetch::Pace>,
    gate: segchat_net::blobs::Gate,
    /// Other nodes known to hold each file whole (they said so).
    holders: Mutex<HashMap<Hash, Vec<NodeAddr>>>,
    /// Fetches running now.
    running: Mutex<HashMap<Hash, Arc<Progress>>>,
    /// Channels' member lists as the server last gave them.
    members: Mutex<HashMap<String, (Instant, Arc<ChannelAcl>)>>,
    shutdown: CancellationToken,
}

/// How far a fetch is.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes held (verified) so far.
    pub bytes: AtomicU64,
    /// Seeders bytes came from, and how many each.
    pub by_seeder: Mutex<Vec<(String, u64)>>,
    /// When this fetch started.
    pub started: Mutex<Option<Instant>>,
    /// Whether the blob store's database was committed after the first
    /// piece.
    pub(crate) recorded: std::sync::atomic::AtomicBool,
    /// Stops the fetch (the user cancelled it).
    cancel: CancellationToken,
}

/// Why a cancelled fetch stopped (a fetch asked for again resumes).
pub const CANCELLED: &str = "cancelled";

/// A file's state as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileStatus {
    pub hash: String,
    pub name: String,
    pub size: u64,
    pub mime: String,
    pub channel: String,
    pub state: FileState,
    /// Verified bytes held.
    pub bytes: u64,
    pub reason: Option<String>,
    /// While fetching: bytes from each seeder (its key, shortened).
    pub seeders: Vec<(String, u64)>,
}

impl FileStatus {
    /// A fetch of `file` for `channel` that is just starting.
    fn starting(channel: &str, file: &FileRef) -> FileStatus {
        FileStatus {
            hash: file.hash.clone(),
            name: file.name.clone(),
            size: file.size,
            mime: file.mime.clone(),
            channel: channel.to_owned(),
            state: FileState::Fetching,
            bytes: 0,
            reason: None,
            seeders: Vec::new(),
        }
    }
}

/// Locks a plain map, carrying on past a poisoned lock.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Files {
    /// Opens the blob store in `data_dir`.
    pub(crate) async fn open(
        data_dir: &Path,
        chat: Chat,
        link: LinkHandle,
        store: Store,
        log: SystemLog,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> std::io::Result<Files> {
        let root = data_dir.join(BLOBS_DIR);
        let uploads = data_dir.join(UPLOADS_DIR);
        for dir in [&root, &uploads] {
            segchat_log::private_dir(dir)?;
        }
        // A one-shot upload a crash cut off is gone; resumable ones
        // younger than a day are kept.
        let resumable = Uploads::load(&uploads);
        // A fetch a crash cut off: the store's bitfield of what it holds
        // is written only now and then, so after a kill it may say less
        // than the data on disk. Without it the store rebuilds the
        // bitfield by checking that data against the hash tree (iroh-blobs'
        // own recovery), so the fetch goes on from what is really there.
        if let Ok(unfinished) = store.unfinished_files().await {
            for r in unfinished {
                if segchat_proto::files::parse_hash(&r.file.hash).is_some() {
                    let stale = root.join("data").join(format!("{}.bitfield", r.file.hash));
                    let _ = std::fs::remove_file(stale);
                }
            }
        }
        // The store's collector removes what no tag keeps, but never a
        // file this node records (a fetch part way keeps its bytes to
        // resume from); `sweep.rs` drops the tags and records of files
        // no message shares any more.
        let mut options = iroh_blobs::store::fs::options::Options::new(&root);
        options.gc = Some(iroh_blobs::store::GcConfig {
            interval: limits.sweep_every,
            add_protected: Some(sweep::protect(store.clone())),
        });
        let blobs = FsStore::load_with_opts(root.join("blobs.db"), options)
            .await
            .map_err(|e| std::io::Error::other(format!("blob store {}: {e}", root.display())))?;
        Ok(Files {
            inner: Arc::new(Inner {
                blobs,
                chat,
                link,
                store,
                log,
                uploads,
                resumable,
                max_size: limits.max_size,
                keep_for_others: limits.keep_for_others,
                unused_for: limits.unused_for,
                sweep_every: limits.sweep_every,
                keeping: tokio::sync::Mutex::new(()),
                pace: limits.download.map(fetch::Pace::new),
                gate: segchat_net::blobs::Gate::default(),
                holders: Mutex::default(),
                running: Mutex::default(),
                members: Mutex::default(),
                shutdown,
            }),
        })
    }

    /// The blobs protocol's handler for the node's router: serves only
    /// what its gate grants.
    pub(crate) fn protocol(&self) -> iroh_blobs::BlobsProtocol {
        let events = serve::police(self.clone());
        iroh_blobs::BlobsProtocol::new(&self.inner.blobs, Some(events))
    }

    /// The largest file this node takes.
    pub fn max_size(&self) -> u64 {
        self.inner.max_size
    }

    /// The resumable uploads.
    pub(crate) fn uploads(&self) -> &Uploads {
        &self.inner.resumable
    }

    /// Where uploads are written before [`Files::import`].
    pub fn upload_path(&self) -> PathBuf {
        self.inner
            .uploads
            .join(format!("{}.part", uuid::Uuid::now_v7()))
    }

    /// Adds the file at `path` (an upload, removed afterwards) to the
    /// blob store: hashes it and keeps it. Answers its [`FileRef`].
    pub async fn import(
        &self,
        path: &Path,
        name: &str,
        mime: &str,
        channel: &str,
    ) -> Result<FileRef, Failure> {
        self.import_of(path, path, name, mime, channel).await
    }

    /// [`Files::import`] of `path`, which is `plain` as its user sees it
    /// (`path` itself, or `plain` encrypted: `sealed.rs`); the thumbnail
    /// is made of `plain`. Both are removed afterwards.
    async fn import_of(
        &self,
        path: &Path,
        plain: &Path,
        name: &str,
        mime: &str,
        channel: &str,
    ) -> Result<FileRef, Failure> {
        let result = self.import_inner(path, plain, name, mime, channel).await;
        for p in [path, plain] {
            let _ = tokio::fs::remove_file(p).await;
        }
        result
    }

    async fn import_inner(
        &self,
        path: &Path,
        plain: &Path,
        name: &str,
        mime: &str,
        channel: &str,
    ) -> Result<FileRef, Failure> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| Failure::bad_request(format!("the upload is gone: {e}")))?
            .len();
        // Encrypting keeps the size: `plain`'s is `path`'s.
        let thumb = thumbs::thumbnail(plain, mime, size).await;
        // Held by a temporary tag until the named one keeps it.
        let tag = self
            .inner
            .blobs
            .blobs()
            .add_path(path)
            .temp_tag()
            .await
            .map_err(|e| storage_failure("add a file", e))?;
        let hash = tag.hash();
        self.keep(hash).await?;
        drop(tag);
        let file = FileRef {
            hash: hash.to_hex().to_string(),
            name: name.to_owned(),
            size,
            mime: mime.to_owned(),
            thumb,
        };
        file.check()
            .map_err(|e| Failure::bad_request(e.to_string()))?;
        self.inner
            .store
            .set_file(
                FileRecord {
                    file: file.clone(),
                    channel: channel.to_owned(),
                    state: FileState::Complete,
                    reason: None,
                    for_others: false,
                },
                true,
            )
            .await
            .map_err(crate::error::store_failure)?;
        self.inner.log.record(
            "FILE_ADDED",
            "local",
            format!("hash={} size={size} channel={channel}", file.hash),
        );
        Ok(file)
    }

    /// Tags `hash` so the store keeps it.
    async fn keep(&self, hash: Hash) -> Result<(), Failure> {
        self.inner
            .blobs
            .tags()
            .set(tag_name(hash), hash)
            .await
            .map_err(|e| storage_failure("keep a file", e))
    }

    /// Whether this node holds `hash` whole, and its size.
    pub(crate) async fn complete_size(&self, hash: Hash) -> Option<u64> {
        match self.inner.blobs.blobs().status(hash).await {
            Ok(BlobStatus::Complete { size }) => Some(size),
            _ => None,
        }
    }

    /// Starts fetching `file` for `channel` (if it is not here or being
    /// fetched) and answers where it stands. This node's user asked for
    /// it (or is about to see it): it is theirs, not a copy for others.
    pub async fn fetch(&self, channel: &str, file: &FileRef) -> Result<FileStatus, Failure> {
        self.fetch_for(channel, file, false).await
    }

    async fn fetch_for(
        &self,
        channel: &str,
        file: &FileRef,
        for_others: bool,
    ) -> Result<FileStatus, Failure> {
        file.check()
            .map_err(|e| Failure::bad_request(e.to_string()))?;
        if file.size > self.inner.max_size {
            return Err(Failure::new(
                Status::TooLarge,
                format!(
                    "{} is {} bytes; this node takes files up to {} bytes (--max-file-mib)",
                    file.name, file.size, self.inner.max_size
                ),
            ));
        }
        let hash = to_hash(&file.hash)?;
        if !for_others {
            self.inner
                .store
                .claim_file(file.hash.clone())
                .await
                .map_err(crate::error::store_failure)?;
        }
        if self.complete_size(hash).await.is_none() {
            self.start(channel.to_owned(), file.clone(), for_others)
                .await?;
        }
        // A fetch another caller started a moment ago may not have
        // written its record yet: it stands at its start.
        Ok(self
            .status(&file.hash)
            .await?
            .unwrap_or_else(|| FileStatus::starting(channel, file)))
    }

    /// Spawns the fetch of `file` unless one runs.
    async fn start(&self, channel: String, file: FileRef, for_others: bool) -> Result<(), Failure> {
        let hash = to_hash(&file.hash)?;
        // A fetch that goes on says from the start what it holds already.
        let held = fetch::held_bytes(self, hash).await;
        let progress = {
            let mut running = lock(&self.inner.running);
            if running.contains_key(&hash) {
                return Ok(());
            }
            if running.len() >= MAX_RUNNING {
                return Err(Failure::new(
                    Status::RateLimited,
                    format!("{MAX_RUNNING} files are being fetched; try again when one is done"),
                ));
            }
            let p = Arc::new(Progress::default());
            p.bytes.store(held, Ordering::Relaxed);
            running.insert(hash, p.clone());
            p
        };
        self.inner
            .store
            .set_file(
                FileRecord {
                    file: file.clone(),
                    channel: channel.clone(),
                    state: FileState::Fetching,
                    reason: None,
                    for_others,
                },
                false,
            )
            .await
            .map_err(crate::error::store_failure)?;
        let files = self.clone();
        tokio::spawn(async move {
            let result = tokio::select! {
                r = fetch::fetch(&files, &channel, &file, &progress) => r,
                _ = files.inner.shutdown.cancelled() => Err("the node stopped".to_owned()),
                _ = progress.cancel.cancelled() => Err(CANCELLED.to_owned()),
            };
            let (state, reason) = match &result {
                Ok(()) => (FileState::Complete, None),
                // Left as it is: it resumes when the node is back.
                Err(_) if files.inner.shutdown.is_cancelled() => (FileState::Fetching, None),
                Err(why) => (FileState::Failed, Some(why.clone())),
            };
            if let Err(why) = &result {
                tracing::info!(hash = %file.hash, %why, "file fetch stopped");
            }
            let record = FileRecord {
                file: file.clone(),
                channel,
                state,
                reason,
                for_others,
            };
            let _ = files.inner.store.set_file(record, false).await;
            lock(&files.inner.running).remove(&hash);
        });
        Ok(())
    }

    /// Stops the fetch of `hash` that runs now; what it holds stays, and
    /// asking for the file again goes on from there. Whether one ran.
    pub fn cancel(&self, hash: &str) -> Result<bool, Failure> {
        let h = to_hash(hash)?;
        let running = lock(&self.inner.running).get(&h).cloned();
        Ok(running.map(|p| p.cancel.cancel()).is_some())
    }

    /// Where file `hash` stands on this node, if it knows of it.
    pub async fn status(&self, hash: &str) -> Result<Option<FileStatus>, Failure> {
        let Some(record) = self
            .inner
            .store
            .file_record(hash.to_owned())
            .await
            .map_err(crate::error::store_failure)?
        else {
            return Ok(None);
        };
        let h = to_hash(hash)?;
        let running = lock(&self.inner.running).get(&h).cloned();
        let complete = self.complete_size(h).await;
        let (state, bytes) = match (complete, &running) {
            (Some(size), _) => (FileState::Complete, size),
            (None, Some(p)) => (FileState::Fetching, p.bytes.load(Ordering::Relaxed)),
            (None, None) => (
                if record.state == FileState::Complete {
                    FileState::Failed
                } else {
                    record.state
                },
                // What a stopped fetch holds, verified: where it goes on.
                fetch::held_bytes(self, h).await,
            ),
        };
        let seeders = running
            .map(|p| lock(&p.by_seeder).clone())
            .unwrap_or_default();
        Ok(Some(FileStatus {
            hash: record.file.hash,
            name: record.file.name,
            size: record.file.size,
            mime: record.file.mime,
            channel: record.channel,
            state,
            bytes,
            reason: record.reason,
            seeders,
        }))
    }

    /// A reader over file `hash`, which must be here whole.
    pub fn reader(&self, hash: Hash) -> iroh_blobs::api::blobs::BlobReader {
        self.inner.blobs.blobs().reader(hash)
    }

    /// Whether `user` (a ticket holder of `kind`) may read `channel`, by
    /// the channel's rules as this node last listed them and its members
    /// as the server says (asked at most every [`MEMBERS_FOR`]).
    async fn may_read(&self, channel: &str, user: &str, kind: AccountKind) -> bool {
        let cached = lock(&self.inner.members)
            .get(channel)
            .filter(|(at, _)| at.elapsed() < MEMBERS_FOR)
            .map(|(_, acl)| acl.clone());
        let acl = match cached {
            Some(acl) => acl,
            None => {
                let Ok(Some(channels)) = self.inner.store.cached_channels().await else {
                    return false;
                };
                let Some(info) = channels.channels.into_iter().find(|c| c.name == channel) else {
                    return false;
                };
                let Ok(members) = self.inner.link.members(channel).await else {
                    return false;
                };
                let acl = Arc::new(ChannelAcl::new(
                    info.visibility,
                    info.allow_visitors,
                    members.into_iter().map(|m| m.username).collect(),
                ));
                let mut map = lock(&self.inner.members);
                if map.len() > 1024 {
                    map.clear();
                }
                map.insert(channel.to_owned(), (Instant::now(), acl.clone()));
                acl
            }
        };
        acl.may_read(user, kind)
    }

    /// Shares the file at `path` (an upload, removed afterwards) in
    /// `channel`: imports it, writes the message, and tells the channel's
    /// host it is here.
    pub async fn share(
        &self,
        channel: &str,
        path: &Path,
        name: &str,
        mime: &str,
        caption: &str,
        reply_to: Option<&str>,
    ) -> Result<crate::store::MessageRow, Failure> {
        let file = self.import(path, name, mime, channel).await?;
        let row = self
            .inner
            .chat
            .send_file(channel, caption, reply_to, &file)
            .await?;
        let (files, channel) = (self.clone(), channel.to_owned());
        tokio::spawn(async move {
            tokio::join!(
                seeders::announce(&files, &channel, &file),
                seeders::backup(&files, &channel, &file, None)
            );
        });
        Ok(row)
    }

    /// Remembers that `node` holds file `hash` whole.
    fn add_holder(&self, hash: Hash, node: NodeAddr) {
        let mut map = lock(&self.inner.holders);
        if map.len() > 4096 && !map.contains_key(&hash) {
            map.clear();
        }
        let list = map.entry(hash).or_default();
        list.retain(|n| n.node_id != node.node_id);
        list.insert(0, node);
        list.truncate(MAX_HOLDERS);
    }

    /// Nodes known to hold `hash`, newest first.
    fn holders(&self, hash: Hash) -> Vec<NodeAddr> {
        lock(&self.inner.holders)
            .get(&hash)
            .cloned()
            .unwrap_or_default()
    }
}

/// The tag that keeps `hash`.
fn tag_name(hash: Hash) -> String {
    format!("segchat/{}", hash.to_hex())
}

/// A file hash from the API or the wire.
pub(crate) fn to_hash(hex_hash: &str) -> Result<Hash, Failure> {
    segchat_proto::files::parse_hash(hex_hash)
        .map(Hash::from_bytes)
        .ok_or_else(|| Failure::bad_request("a file hash is 64 lowercase hex characters"))
}

/// A blob store failure: logged, and a full disk named.
fn storage_failure(what: &str, e: impl std::fmt::Display) -> Failure {
    let text = e.to_string();
    tracing::warn!(error = %text, "could not {what}");
    if text.contains("No space left") || text.contains("StorageFull") {
        disk_full()
    } else {
        Failure::server_error()
    }
}

fn disk_full() -> Failure {
    Failure::new(
        Status::InsufficientStorage,
        "this node's disk is full; free space and try again",
    )
}

/// A failure to write a file's bytes: a full disk named, anything else
/// logged.
pub(crate) fn disk_failure(e: &std::io::Error) -> Failure {
    if e.raw_os_error() == Some(28) {
        disk_full()
    } else {
        tracing::warn!(error = %e, "could not write a file");
        Failure::server_error()
    }
}
