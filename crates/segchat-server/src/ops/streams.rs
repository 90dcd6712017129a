//! start_stream, stop_stream, list_streams: livestream coordination.
//!
//! Streams are live state in the hub, never stored: a stream lives as long
//! as its streamer's connection (closed, or reaped after the peer TTL). The
//! frames never pass through the server; it only tells the channel's
//! readers where the streamer is.

use std::net::SocketAddr;

use segchat_proto::stream::{Codec, StreamInfo, MAX_DIMENSION, MAX_FPS};
use segchat_proto::tracker::{Event, Reply};
use segchat_proto::types::Presence;
use segchat_proto::Failure;

use super::channels::{load_channel, member_ids, viewer_of};
use super::{now_ms, registered, signed_in, ConnCtx, Shared};
use crate::hub::ConnId;
use crate::store::ChannelRecord;
use segchat_proto::access::Viewer;

/// Smallest width or height a stream may announce.
const MIN_DIMENSION: u16 = 16;

pub(super) async fn start(
    shared: &Shared,
    ctx: &ConnCtx,
    channel: String,
    width: u16,
    height: u16,
    fps: u8,
    codec: Codec,
) -> Result<Reply, Failure> {
    let (p, uid) = registered(ctx, "start livestreams")?;
    // A stream announces its streamer's name and addresses to every
    // reader: an invisible user would be seen. They cannot stream.
    if shared.hub.presence(uid) == Presence::Invisible {
        return Err(Failure::conflict(
            "you are invisible, and a stream shows your name and your node's addresses to \
             everyone who may read the channel; set your status to online or idle to stream",
        ));
    }
    if !(MIN_DIMENSION..=MAX_DIMENSION).contains(&width)
        || !(MIN_DIMENSION..=MAX_DIMENSION).contains(&height)
    {
        return Err(Failure::bad_request(format!(
            "width and height must be between {MIN_DIMENSION} and {MAX_DIMENSION} pixels"
        )));
    }
    if fps == 0 || fps > MAX_FPS {
        return Err(Failure::bad_request(format!(
            "fps must be between 1 and {MAX_FPS}"
        )));
    }
    let ch = load_channel(shared, ctx, &channel).await?;
    let viewer = viewer_of(shared, ctx, p, &ch).await?;
    if !ch.rules().can_see(viewer) {
        return Err(Failure::not_found(format!("no channel named {channel:?}")));
    }
    if !ch.rules().can_write(viewer) {
        return Err(Failure::forbidden(format!(
            "only members who may write in {channel:?} can stream there; join it first"
        )));
    }
    let unset: SocketAddr = ([0, 0, 0, 0], 0).into();
    let draft = StreamInfo {
        stream_id: 0,
        channel: ch.name.clone(),
        streamer: p.username.clone(),
        p2p_addr: unset,
        node_id: String::new(),
        width,
        height,
        fps,
        codec,
        started_at_ms: now_ms(),
    };
    let info = match shared.hub.start_stream(ctx.id, draft) {
        None => {
            return Err(Failure::bad_request(
                "submit_info first: viewers reach a streamer at its announced address",
            ))
        }
        Some(Err(running)) => {
            return Err(Failure::conflict(format!(
                "this node already streams in {channel:?} (stream {}); stop it first",
                running.stream_id
            )))
        }
        Some(Ok(info)) => info,
    };
    shared.log.record(
        "STREAM_START",
        ctx.addr,
        format!(
            "stream={} channel={} streamer={} p2p={} node={} {}x{}@{} codec={}",
            info.stream_id,
            info.channel,
            info.streamer,
            info.p2p_addr,
            info.node_id,
            info.width,
            info.height,
            info.fps,
            info.codec.as_str()
        ),
    );
    push_to_readers(
        shared,
        ctx,
        &ch,
        &Event::StreamStarted {
            stream: info.clone(),
        },
    )
    .await;
    Ok(Reply::Stream(info))
}

pub(super) async fn stop(shared: &Shared, ctx: &ConnCtx, stream_id: u64) -> Result<Reply, Failure> {
    signed_in(ctx)?;
    let info = shared
        .hub
        .stop_stream(ctx.id, stream_id)
        .ok_or_else(|| Failure::not_found(format!("this node has no live stream {stream_id}")))?;
    announce_stop(shared, ctx.id, ctx.addr, info, "stopped").await;
    Ok(Reply::Done)
}

pub(super) async fn list(
    shared: &Shared,
    ctx: &ConnCtx,
    channel: Option<String>,
) -> Result<Reply, Failure> {
    let p = signed_in(ctx)?;
    let mut streams = Vec::new();
    for s in shared.hub.streams() {
        if channel.as_ref().is_some_and(|c| *c != s.channel) {
            continue;
        }
        let Ok(ch) = load_channel(shared, ctx, &s.channel).await else {
            continue;
        };
        let viewer = viewer_of(shared, ctx, p, &ch).await?;
        if ch.rules().can_read(viewer) {
            streams.push(s);
        }
    }
    Ok(Reply::Streams { streams })
}

/// Ends every stream of a connection that closed or expired.
pub(crate) async fn end_all(shared: &Shared, conn: ConnId, addr: SocketAddr, reason: &str) {
    for info in shared.hub.drop_streams(conn) {
        announce_stop(shared, conn, addr, info, reason).await;
    }
}

async fn announce_stop(
    shared: &Shared,
    conn: ConnId,
    addr: SocketAddr,
    info: StreamInfo,
    reason: &str,
) {
    shared.log.record(
        "STREAM_STOP",
        addr,
        format!(
            "stream={} channel={} streamer={} reason={reason} duration_ms={}",
            info.stream_id,
            info.channel,
            info.streamer,
            now_ms().saturating_sub(info.started_at_ms)
        ),
    );
    let event = Event::StreamStopped {
        stream_id: info.stream_id,
        channel: info.channel.clone(),
        reason: reason.to_owned(),
    };
    let ctx = ConnCtx::new(conn, addr, &shared.config);
    match load_channel(shared, &ctx, &info.channel).await {
        Ok(ch) => push_to_readers(shared, &ctx, &ch, &event).await,
        Err(f) => tracing::warn!(reason = %f, "could not announce the end of a stream"),
    }
}

/// Pushes an event to every connection that may read `ch`: its members,
/// and (for public channels) every user, and visitors where admitted.
async fn push_to_readers(shared: &Shared, ctx: &ConnCtx, ch: &ChannelRecord, event: &Event) {
    let members = match member_ids(shared, ctx, ch.id).await {
        Ok(m) => m,
        Err(f) => return tracing::warn!(reason = %f, "could not find a channel's readers"),
    };
    let rules = ch.rules();
    shared.hub.push_where(event, |p| {
        p.user_id.is_some_and(|u| members.contains(&u))
            || rules.can_read(Viewer {
                kind: p.kind,
                role: None,
                invited: false,
            })
    });
}
