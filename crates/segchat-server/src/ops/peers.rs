//! submit_info (→ add_list), heartbeat, get_list.

use std::net::SocketAddr;

use segchat_proto::tracker::{Reply, MAX_LIST_USERS};
use segchat_proto::types::{AccountKind, Presence};
use segchat_proto::Failure;

use super::channels::{load_channel, viewer_of};
use super::{friends, now_ms, session, signed_in, store_failure, ConnCtx, Shared};

pub(super) async fn submit_info(
    shared: &Shared,
    ctx: &mut ConnCtx,
    p2p_addr: SocketAddr,
    status: Option<Presence>,
) -> Result<Reply, Failure> {
    let p = signed_in(ctx)?.clone();
    if p2p_addr.port() == 0 || p2p_addr.ip().is_unspecified() {
        return Err(Failure::bad_request(
            "p2p_addr must be a reachable address with a port (not 0.0.0.0 or port 0)",
        ));
    }
    if let (Some(status), AccountKind::User) = (status, p.kind) {
        if status != shared.hub.presence(p.user_id.unwrap_or_default()) {
            session::set_status(shared, ctx, status).await?;
        }
    }
    let info = shared
        .hub
        .submit(ctx.id, p2p_addr, now_ms())
        .ok_or_else(|| Failure::unauthorized("sign in first"))?;
    shared.log.record(
        "ADD_LIST",
        ctx.addr,
        format!(
            "user={} session={} p2p={} node={}",
            p.username, p.session_id, p2p_addr, info.node_id
        ),
    );
    Ok(Reply::Listed(info))
}

pub(super) fn heartbeat(shared: &Shared, ctx: &ConnCtx) -> Reply {
    let now = now_ms();
    shared.hub.heartbeat(ctx.id, now);
    Reply::Pong {
        server_time_ms: now,
    }
}

pub(super) async fn get_list(
    shared: &Shared,
    ctx: &ConnCtx,
    channel: Option<String>,
    users: Vec<String>,
) -> Result<Reply, Failure> {
    let p = signed_in(ctx)?;
    let hidden = friends::blockers(shared, ctx, p).await?;
    if !users.is_empty() {
        if channel.is_some() || users.len() > MAX_LIST_USERS {
            return Err(Failure::bad_request(format!(
                "name a channel or up to {MAX_LIST_USERS} users, not both"
            )));
        }
        let mut ids = Vec::with_capacity(users.len());
        for name in &users {
            let found = shared
                .store
                .user_by_name(name)
                .await
                .map_err(|e| store_failure(shared, ctx, e))?;
            ids.extend(found.map(|u| u.id));
        }
        return Ok(Reply::Peers {
            peers: shared.hub.peers(p, Some(&ids), &hidden),
        });
    }
    let peers = match channel {
        None => shared.hub.peers(p, None, &hidden),
        Some(name) => {
            let ch = load_channel(shared, ctx, &name).await?;
            let viewer = viewer_of(shared, ctx, p, &ch).await?;
            if !ch.rules().can_read(viewer) {
                return Err(Failure::not_found(format!("no channel named {name:?}")));
            }
            let members: Vec<i64> = shared
                .store
                .members(ch.id)
                .await
                .map_err(|e| store_failure(shared, ctx, e))?
                .into_iter()
                .map(|m| m.user_id)
                .collect();
            shared.hub.peers(p, Some(&members), &hidden)
        }
    };
    Ok(Reply::Peers { peers })
}
