//! submit_info (→ add_list), heartbeat, get_list, and `reach`: one node
//! asking another, through the server, onto the relay.

use std::collections::HashSet;
use std::net::SocketAddr;

use segchat_proto::tracker::{Event, Reply, MAX_LIST_USERS, REACH_BURST, REACH_EVERY_MS};
use segchat_proto::types::{AccountKind, Presence};
use segchat_proto::{Failure, Status};

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
    let hidden: HashSet<i64> = friends::blockers(shared, ctx, p)
        .await?
        .into_iter()
        .collect();
    if !users.is_empty() {
        if channel.is_some() || users.len() > MAX_LIST_USERS {
            return Err(Failure::bad_request(format!(
                "name a channel or up to {MAX_LIST_USERS} users, not both"
            )));
        }
        let mut ids = HashSet::with_capacity(users.len());
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
            let members: HashSet<i64> = shared
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

/// A connection's allowance of `reach` requests.
pub(super) fn reach_quota() -> governor::Quota {
    let every = std::time::Duration::from_millis(REACH_EVERY_MS);
    let burst = std::num::NonZeroU32::new(REACH_BURST).unwrap_or(std::num::NonZeroU32::MIN);
    governor::Quota::with_period(every)
        .unwrap_or(governor::Quota::per_second(std::num::NonZeroU32::MIN))
        .allow_burst(burst)
}

/// `reach`: the node with key `node_id` is told (`relay_wanted`) that this
/// connection's node is dialling it, on whichever instance it is. The
/// answer is the same whether it is online or not.
pub(super) fn reach(shared: &Shared, ctx: &ConnCtx, node_id: String) -> Result<Reply, Failure> {
    let p = signed_in(ctx)?;
    if segchat_net::parse_id(&node_id).is_err() {
        return Err(Failure::bad_request(
            "node_id must be a node key (64 hex digits)",
        ));
    }
    if ctx.reaches.check().is_err() {
        shared.log.record(
            "REACH_THROTTLED",
            ctx.addr,
            format!("conn={} user={}", ctx.id, p.username),
        );
        return Err(Failure::new(
            Status::RateLimited,
            format!(
                "too many reach requests (at most {REACH_BURST} at once, then one every {REACH_EVERY_MS} ms)"
            ),
        ));
    }
    let Some(from) = ctx.node_id.clone().filter(|from| *from != node_id) else {
        return Ok(Reply::Done);
    };
    let told = shared
        .hub
        .push_to_node_key(&node_id, &Event::RelayWanted { node_id: from });
    shared.log.record(
        "REACH",
        ctx.addr,
        format!("user={} node={node_id} told={told}", p.username),
    );
    Ok(Reply::Done)
}
