//! Finding and opening the seeders of a file, and telling others this
//! node holds one: the channel's host and known holders, opened with
//! `file_open` on a peer link kept (pinging) while the fetch runs; the
//! server's backup copy when no node can be opened (`file_source`); and,
//! for a file this node shares, `file_have` to the host and `file_backup`
//! to the server.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use iroh_blobs::Hash;
use segchat_proto::files::FileRef;
use segchat_proto::peer;
use segchat_proto::ticket::ProofPurpose;
use segchat_proto::types::NodeAddr;
use segchat_proto::Frame;
use tokio::sync::oneshot;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::{Files, DM_SCOPE};
use crate::p2p::{PeerCodec, PeerFrame};

/// How long opening a seeder may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Most seeders one fetch uses.
const MAX_SEEDERS: usize = 8;
/// How long the server may fetch a file this node asked it to keep.
const BACKUP_GRANT: Duration = Duration::from_secs(1800);
/// How often a seeder link pings (the welcome's `heartbeat_ms`).
const PING_EVERY: Duration = Duration::from_secs(2);

/// One seeder in use: its blobs connection, and its peer link held open
/// (pinging) by a task until this is dropped or told `file_have`.
pub(super) struct Seeder {
    pub(super) addr: NodeAddr,
    pub(super) conn: iroh::endpoint::Connection,
    pub(super) have: Option<oneshot::Sender<()>>,
}

impl Seeder {
    pub(super) fn short(&self) -> String {
        self.addr.node_id.chars().take(12).collect()
    }
}

/// Opens the seeders: the channel's host and the known holders first,
/// then whoever they name, up to [`MAX_SEEDERS`], all at once.
pub(super) async fn open_seeders(
    files: &Files,
    channel: &str,
    file: &FileRef,
    hash: Hash,
) -> Vec<Seeder> {
    let me = files.inner.chat.node_key();
    let mut candidates: Vec<NodeAddr> = if channel == DM_SCOPE {
        files.dm_candidates(&file.hash).await
    } else {
        host_of(files, channel).await.into_iter().collect()
    };
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

/// Where `channel`'s host is now (the server knows), else as last listed.
async fn host_of(files: &Files, channel: &str) -> Option<NodeAddr> {
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
    listed
        .into_iter()
        .flatten()
        .find(|c| c.name == channel)
        .and_then(|c| c.host)
}

/// The server as a seeder, if it keeps a copy of `file` and grants it
/// to this node (`file_source`: it checks the channel's read rule).
pub(super) async fn server_seeder(files: &Files, channel: &str, file: &FileRef) -> Option<Seeder> {
    let link = &files.inner.link;
    let scope = Some(channel).filter(|c| *c != DM_SCOPE);
    let size = match link.file_source(scope, &file.hash).await {
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
/// in `channel` (or in a direct message, as `dm` says: the server cannot
/// read it): the server's key may fetch it from here for
/// [`BACKUP_GRANT`]. The server knows a channel's message once its backup
/// holds it: asked again for a while.
pub(super) async fn backup(
    files: &Files,
    channel: &str,
    file: &FileRef,
    dm: Option<segchat_proto::tracker::DmBackup>,
) {
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
            let scope = Some(channel).filter(|c| *c != DM_SCOPE);
            match link.file_backup(scope, &file.hash, dm.clone()).await {
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
            channel: Some(channel.to_owned()).filter(|c| c != DM_SCOPE),
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
