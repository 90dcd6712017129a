//! file_backup, file_source: the server's backup copy of files shared in
//! channels and direct messages (`crate::files`), asked for by the sender
//! and by readers.

use segchat_proto::files::FileRef;
use segchat_proto::tracker::{DmBackup, Event, Reply};
use segchat_proto::types::validate_username;
use segchat_proto::Failure;

use super::channels::{load_channel, viewer_of};
use super::{registered, signed_in, store_failure, ConnCtx, Shared};
use crate::store::ChannelRecord;

/// The file `hash` as a message in `channel` (which this connection's
/// user may `see`) shares it, with the channel.
async fn shared_file(
    shared: &Shared,
    ctx: &ConnCtx,
    channel: &str,
    hash: &str,
    may: impl Fn(&ChannelRecord, segchat_proto::access::Viewer) -> bool,
    refusal: &str,
) -> Result<FileRef, Failure> {
    let p = signed_in(ctx)?;
    let ch = load_channel(shared, ctx, channel).await?;
    let viewer = viewer_of(shared, ctx, p, &ch).await?;
    if !ch.rules().can_see(viewer) {
        return Err(Failure::not_found(format!("no channel named {channel:?}")));
    }
    if !may(&ch, viewer) {
        return Err(Failure::forbidden(format!("{refusal} {channel:?}")));
    }
    shared
        .store
        .file_shared_in(ch.id, hash)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
        .ok_or_else(|| {
            Failure::not_found(format!(
                "no message in the backup of {channel:?} shares {hash} (yet)"
            ))
        })
}

/// The node key this connection authenticated with.
fn node_key(ctx: &ConnCtx) -> Result<&str, Failure> {
    ctx.node_id
        .as_deref()
        .ok_or_else(|| Failure::bad_request("this connection has no node key"))
}

/// `file_backup`: a member who may write in `channel` asks the server to
/// keep a copy of a file shared there, fetched from its node; or, with no
/// channel, a user who shared a file in a direct message asks it to keep
/// the (encrypted) file for the conversation's members.
pub(super) async fn backup(
    shared: &Shared,
    ctx: &ConnCtx,
    channel: Option<String>,
    hash: String,
    dm: Option<DmBackup>,
) -> Result<Reply, Failure> {
    let node = node_key(ctx)?;
    let (file, readers) = match (channel, dm) {
        (Some(channel), _) => {
            let file = shared_file(
                shared,
                ctx,
                &channel,
                &hash,
                |ch, v| ch.rules().can_write(v),
                "only members share files in",
            )
            .await?;
            (file, Vec::new())
        }
        (None, Some(dm)) => dm_file(ctx, hash, dm)?,
        (None, None) => {
            return Err(Failure::bad_request(
                "name the channel, or for a direct message's file its size and readers",
            ))
        }
    };
    let direct = shared.hub.announced(ctx.id);
    let wake = |server: String| {
        let wanted = Event::RelayWanted { node_id: server };
        shared.hub.push_to_conns(&[ctx.id], &wanted);
    };
    shared
        .files
        .backup(node, ctx.addr, direct, file, readers, wake)
        .await
}

/// What a direct message's file backup asks for, checked: the file (the
/// server knows only its hash and size) and who may fetch it, the sender
/// among them.
fn dm_file(ctx: &ConnCtx, hash: String, dm: DmBackup) -> Result<(FileRef, Vec<String>), Failure> {
    let (p, _) = registered(ctx, "share files")?;
    let most = segchat_proto::dm::MAX_MEMBERS - 1;
    if dm.readers.is_empty() || dm.readers.len() > most {
        return Err(Failure::bad_request(format!(
            "a direct message's file is for 1 to {most} other users"
        )));
    }
    let mut readers = Vec::with_capacity(dm.readers.len() + 1);
    for name in dm.readers.iter().chain(std::iter::once(&p.username)) {
        validate_username(name).map_err(Failure::bad_request)?;
        readers.push(name.to_lowercase());
    }
    readers.sort();
    readers.dedup();
    let file = FileRef {
        hash,
        name: "direct-message-file".to_owned(),
        size: dm.size,
        mime: "application/octet-stream".to_owned(),
        thumb: None,
    };
    file.check()
        .map_err(|e| Failure::bad_request(e.to_string()))?;
    Ok((file, readers))
}

/// `file_source`: a reader of `channel` (no channel: a user a direct
/// message's file was kept for) asks for the server's copy of a file;
/// granted to its node's key for an hour.
pub(super) async fn source(
    shared: &Shared,
    ctx: &ConnCtx,
    channel: Option<String>,
    hash: String,
) -> Result<Reply, Failure> {
    let scope = match &channel {
        Some(channel) => {
            shared_file(
                shared,
                ctx,
                channel,
                &hash,
                |ch, v| ch.rules().can_read(v),
                "only members read",
            )
            .await?;
            format!("channel={channel}")
        }
        None => {
            let p = signed_in(ctx)?;
            if !shared.files.kept_for(&hash, &p.username).await {
                return Err(Failure::not_found(format!(
                    "the server keeps no copy of {hash} for you"
                )));
            }
            "dm".to_owned()
        }
    };
    let node = node_key(ctx)?;
    let size = shared.files.source(node, &hash).await?;
    shared.log.record(
        "FILE_SOURCE",
        ctx.addr,
        format!("hash={hash} {scope} node={}", &node[..12]),
    );
    Ok(Reply::FileSource { hash, size })
}
