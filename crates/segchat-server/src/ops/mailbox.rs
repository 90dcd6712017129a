//! `send_dm`, `fetch_dms`, `ack_dms`: the store-and-forward of end-to-end
//! encrypted direct messages. The server checks who may send to whom and
//! bounds what it keeps; it never reads a body.

use std::collections::HashMap;

use segchat_proto::mailbox::{
    Envelope, MAX_BODY, MAX_ENVELOPES, MAX_FETCH_BYTES, MAX_REQUEST_BYTES,
};
use segchat_proto::tracker::{Event, Reply};
use segchat_proto::{Failure, Status};

use super::{friends, now_ms, registered, store_failure, ConnCtx, Shared};

/// Envelopes one device's mailbox holds, and bytes of their bodies; a
/// sender beyond either is told the mailbox is full and keeps the message
/// in its outbox. (A request adds at most `MAX_REQUEST_BYTES` past it.)
pub(crate) const MAILBOX_CAP: u64 = 10_000;
pub(crate) const MAILBOX_BYTES: u64 = 64 * 1024 * 1024;

/// What one sender may have waiting for one device: a quarter of it, so
/// a stranger filling someone's mailbox does not shut everyone else out.
const SENDER_SHARE: u64 = 4;

/// Most envelopes one `fetch_dms` answers.
const FETCH_LIMIT: u32 = 200;

pub(super) async fn send(
    shared: &Shared,
    ctx: &ConnCtx,
    envelopes: Vec<Envelope>,
) -> Result<Reply, Failure> {
    let (p, me) = registered(ctx, "send direct messages")?;
    if envelopes.is_empty() || envelopes.len() > MAX_ENVELOPES {
        return Err(Failure::bad_request(format!(
            "send 1 to {MAX_ENVELOPES} envelopes at a time"
        )));
    }
    let total: usize = envelopes.iter().map(|e| e.body.len()).sum();
    if total > MAX_REQUEST_BYTES {
        return Err(Failure::new(
            Status::TooLarge,
            format!("at most {MAX_REQUEST_BYTES} bytes of bodies in one send_dm"),
        ));
    }
    if let Some(e) = envelopes.iter().find(|e| e.body.len() > MAX_BODY) {
        return Err(Failure::new(
            Status::TooLarge,
            format!("envelope {} is over {MAX_BODY} bytes", e.id),
        ));
    }
    let from_node = shared.hub.node_id(ctx.id).unwrap_or_default();
    let blockers = friends::blockers(shared, ctx, p).await?;
    // Each user named, looked up once (a message is an envelope per
    // device of theirs); one who blocked the sender is nobody to them.
    let mut named: HashMap<&str, i64> = HashMap::new();
    for e in &envelopes {
        if named.contains_key(e.to.as_str()) {
            continue;
        }
        match shared
            .store
            .user_by_name(&e.to)
            .await
            .map_err(|err| store_failure(shared, ctx, err))?
        {
            Some(u) if !blockers.contains(&u.id) => {
                named.insert(&e.to, u.id);
            }
            _ => return Err(super::no_user(&e.to)),
        }
    }
    // Each recipient device must be one of the named user's: one that is
    // not (any more: signed out) is skipped and named in `gone`.
    let mut owners: HashMap<&str, i64> = HashMap::new();
    let mut gone: Vec<String> = Vec::new();
    for e in &envelopes {
        if owners.contains_key(e.to_node.as_str()) || gone.contains(&e.to_node) {
            continue;
        }
        let owner = shared
            .store
            .device_owner(&e.to_node)
            .await
            .map_err(|err| store_failure(shared, ctx, err))?;
        if owner.is_none() || owner != named.get(e.to.as_str()).copied() {
            gone.push(e.to_node.clone());
            continue;
        }
        let used = shared
            .store
            .mailbox_use(&e.to_node, &p.username)
            .await
            .map_err(|err| store_failure(shared, ctx, err))?;
        let full = |n: u64, bytes: u64, share: u64| {
            n >= MAILBOX_CAP / share || bytes >= MAILBOX_BYTES / share
        };
        if full(used.envelopes, used.bytes, 1) {
            return Err(Failure::new(
                Status::InsufficientStorage,
                format!(
                    "{}'s device has {} messages ({} MiB) waiting; try again later",
                    e.to,
                    used.envelopes,
                    used.bytes / (1024 * 1024)
                ),
            ));
        }
        if full(used.sender_envelopes, used.sender_bytes, SENDER_SHARE) {
            return Err(Failure::new(
                Status::InsufficientStorage,
                format!(
                    "{} of your messages ({} MiB) wait for {}'s device; try again later",
                    used.sender_envelopes,
                    used.sender_bytes / (1024 * 1024),
                    e.to
                ),
            ));
        }
        owners.insert(&e.to_node, named[e.to.as_str()]);
    }
    // Who has a device no envelope was for: the sender's view of their
    // devices is stale (a new sign-in), and it sends again to those.
    let mut users: Vec<(&str, i64)> = named.iter().map(|(n, id)| (*n, *id)).collect();
    if !named.values().any(|id| *id == me) {
        users.push((p.username.as_str(), me));
    }
    let mut missing = Vec::new();
    for (name, id) in users {
        let devices = shared
            .store
            .user_devices(id)
            .await
            .map_err(|err| store_failure(shared, ctx, err))?;
        if devices
            .iter()
            .any(|(d, _)| *d != from_node && !owners.contains_key(d.as_str()))
        {
            missing.push(name.to_owned());
        }
    }
    missing.sort();
    let envelopes: Vec<Envelope> = envelopes
        .iter()
        .filter(|e| owners.contains_key(e.to_node.as_str()))
        .cloned()
        .collect();
    let stored = shared
        .store
        .store_dms(&p.username, &from_node, &envelopes, now_ms())
        .await
        .map_err(|err| store_failure(shared, ctx, err))?;
    // Live to the device if it is connected; it waits in the mailbox
    // either way until acknowledged.
    for (to_node, d) in &stored {
        if let Some(owner) = owners.get(to_node.as_str()) {
            shared
                .hub
                .push_to_node(*owner, to_node, &Event::Dm(d.clone()));
        }
    }
    shared.log.record(
        "DM_STORED",
        ctx.addr,
        format!(
            "from={} envelopes={} new={} gone={} missing={}",
            p.username,
            envelopes.len(),
            stored.len(),
            gone.len(),
            missing.len()
        ),
    );
    Ok(Reply::DmStored {
        stored: stored.len() as u32,
        gone,
        missing,
    })
}

/// This connection's device: its node key, if it published one as the
/// signed-in user (a node without a device has no mailbox).
async fn own_device(shared: &Shared, ctx: &ConnCtx) -> Result<String, Failure> {
    let (_, me) = registered(ctx, "read direct messages")?;
    let node = shared.hub.node_id(ctx.id).unwrap_or_default();
    let owner = shared
        .store
        .device_owner(&node)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    if owner != Some(me) {
        return Err(Failure::not_found(
            "this node has published no device keys as you (publish_keys first)",
        ));
    }
    Ok(node)
}

pub(super) async fn fetch(
    shared: &Shared,
    ctx: &ConnCtx,
    after_seq: u64,
    limit: u32,
) -> Result<Reply, Failure> {
    let node = own_device(shared, ctx).await?;
    let limit = limit.clamp(1, FETCH_LIMIT);
    let mut envelopes = shared
        .store
        .dms_after(&node, after_seq, limit + 1)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    let mut has_more = envelopes.len() > limit as usize;
    envelopes.truncate(limit as usize);
    // As many as fit one answer (a frame is at most 1 MiB), counted as
    // they are encoded: a body is any string, and JSON writes a control
    // character in 6 bytes. At least one, which is at most 6 × MAX_BODY.
    let mut bytes = 0;
    let fit = envelopes
        .iter()
        .position(|e| {
            bytes += serde_json::to_vec(e).map_or(MAX_FETCH_BYTES, |v| v.len());
            bytes > MAX_FETCH_BYTES
        })
        .unwrap_or(envelopes.len())
        .max(1);
    if fit < envelopes.len() {
        envelopes.truncate(fit);
        has_more = true;
    }
    Ok(Reply::Dms {
        envelopes,
        has_more,
    })
}

pub(super) async fn ack(shared: &Shared, ctx: &ConnCtx, up_to_seq: u64) -> Result<Reply, Failure> {
    let node = own_device(shared, ctx).await?;
    let gone = shared
        .store
        .ack_dms(&node, up_to_seq)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    shared.log.record(
        "DM_ACKED",
        ctx.addr,
        format!("node={node} up_to_seq={up_to_seq} deleted={gone}"),
    );
    Ok(Reply::Done)
}
