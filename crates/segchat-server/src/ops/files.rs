//! file_backup, file_source: the server's backup copy of files shared in
//! channels (`crate::files`), asked for by the sender and by readers.

use segchat_proto::tracker::Reply;
use segchat_proto::Failure;

use super::channels::{load_channel, viewer_of};
use super::{signed_in, store_failure, ConnCtx, Shared};
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
) -> Result<segchat_proto::files::FileRef, Failure> {
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
/// keep a copy of a file shared there, fetched from its node.
pub(super) async fn backup(
    shared: &Shared,
    ctx: &ConnCtx,
    channel: String,
    hash: String,
) -> Result<Reply, Failure> {
    let file = shared_file(
        shared,
        ctx,
        &channel,
        &hash,
        |ch, v| ch.rules().can_write(v),
        "only members share files in",
    )
    .await?;
    let node = node_key(ctx)?;
    shared.files.backup(node, ctx.addr, file).await
}

/// `file_source`: a reader of `channel` asks for the server's copy of a
/// file shared there; granted to its node's key for an hour.
pub(super) async fn source(
    shared: &Shared,
    ctx: &ConnCtx,
    channel: String,
    hash: String,
) -> Result<Reply, Failure> {
    shared_file(
        shared,
        ctx,
        &channel,
        &hash,
        |ch, v| ch.rules().can_read(v),
        "only members read",
    )
    .await?;
    let node = node_key(ctx)?;
    let size = shared.files.source(node, &hash).await?;
    shared.log.record(
        "FILE_SOURCE",
        ctx.addr,
        format!("hash={hash} channel={channel} node={}", &node[..12]),
    );
    Ok(Reply::FileSource { hash, size })
}
