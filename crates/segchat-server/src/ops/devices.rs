//! `publish_keys` and `claim_keys`: the directory of device keys that
//! end-to-end encrypted direct messages start from. The server checks
//! that what a node publishes is signed by the node key its transport
//! authenticated, keeps a bounded pool of one-time keys per device, and
//! hands each out once.

use segchat_proto::devices::{DeviceKeys, KeyError, OneTimeKey};
use segchat_proto::tracker::Reply;
use segchat_proto::types::Presence;
use segchat_proto::Failure;

use super::{friends, now_ms, registered, store_failure, ConnCtx, Shared};
use crate::store::PublishedKeys;

/// One-time keys the server keeps per device (an Olm account makes at
/// most 50 at a time; a node tops up as they are claimed).
pub(crate) const MAX_ONE_TIME_KEYS: u32 = 100;

/// One-time keys one `publish_keys` may carry.
const MAX_PUBLISH: usize = 100;

/// Keys one `claim_keys` may name as already in session (a user has far
/// fewer devices than this).
const MAX_HAVE_SESSIONS: usize = 64;

pub(super) async fn publish(
    shared: &Shared,
    ctx: &ConnCtx,
    device: DeviceKeys,
    one_time_keys: Vec<OneTimeKey>,
) -> Result<Reply, Failure> {
    let (p, uid) = registered(ctx, "publish keys for direct messages")?;
    if shared.hub.node_id(ctx.id).as_deref() != Some(device.node_key.as_str()) {
        return Err(Failure::forbidden(
            "device keys are published by the node they belong to: node_key must be this connection's node key",
        ));
    }
    if one_time_keys.len() > MAX_PUBLISH {
        return Err(Failure::bad_request(format!(
            "at most {MAX_PUBLISH} one-time keys at a time"
        )));
    }
    let bad = |what: &str, e: KeyError| Failure::bad_request(format!("{what}: {e}"));
    device.verify().map_err(|e| bad("device", e))?;
    let mut fallback_key = None;
    let mut fresh = Vec::with_capacity(one_time_keys.len());
    for k in one_time_keys {
        k.verify(&device.node_key)
            .map_err(|e| bad(&format!("one-time key {:?}", k.key_id), e))?;
        if !k.fallback {
            fresh.push(k);
        } else if fallback_key.replace(k).is_some() {
            return Err(Failure::bad_request("at most one fallback key"));
        }
    }
    let keys = PublishedKeys {
        user_id: uid,
        session_id: p.session_id.clone(),
        device,
        one_time_keys: fresh,
        fallback_key,
        now_ms: now_ms(),
    };
    let held = shared
        .store
        .publish_keys(&keys, MAX_ONE_TIME_KEYS)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    shared.log.record(
        "KEYS_PUBLISHED",
        ctx.addr,
        format!(
            "user={} node={} one_time_keys={held}",
            p.username, keys.device.node_key
        ),
    );
    Ok(Reply::KeysPublished {
        one_time_keys: held,
    })
}

pub(super) async fn claim(
    shared: &Shared,
    ctx: &ConnCtx,
    username: String,
    have_sessions: Vec<String>,
) -> Result<Reply, Failure> {
    let (p, me) = registered(ctx, "send direct messages")?;
    if have_sessions.len() > MAX_HAVE_SESSIONS {
        return Err(Failure::bad_request(format!(
            "at most {MAX_HAVE_SESSIONS} keys in have_sessions"
        )));
    }
    let user = super::user_named(shared, ctx, &username).await?;
    // A user who blocked you is, to you, nobody: no keys, no messages.
    if friends::blockers(shared, ctx, p).await?.contains(&user.id) {
        return Err(super::no_user(&username));
    }
    let except = if user.id == me {
        shared.hub.node_id(ctx.id).unwrap_or_default()
    } else {
        String::new()
    };
    // Taking one of their keys spends what another user holds and counts
    // against the allowance of changes; listing devices the asker already
    // has sessions with takes nothing and is free.
    let listed = shared
        .store
        .user_devices(user.id)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    if listed
        .iter()
        .any(|(node, curve)| *node != except && !have_sessions.contains(curve))
    {
        super::spend_change(shared, ctx, "claim_keys")?;
    }
    let mut devices = shared
        .store
        .claim_keys(user.id, &except, &have_sessions)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    // Where each device's node takes peer connections, if it is online
    // and the claimer may see it so (not for an invisible user).
    let just = std::collections::HashSet::from([user.id]);
    let online = shared
        .hub
        .peers(p, Some(&just), &std::collections::HashSet::new());
    for d in &mut devices {
        d.p2p_addr = online
            .iter()
            .find(|peer| peer.node_id == d.keys.node_key && peer.status != Presence::Offline)
            .map(|peer| peer.p2p_addr);
    }
    shared.log.record(
        "KEYS_CLAIMED",
        ctx.addr,
        format!(
            "user={} of={} devices={} keys_taken={}",
            p.username,
            user.username,
            devices.len(),
            devices.iter().filter(|d| d.one_time_key.is_some()).count()
        ),
    );
    Ok(Reply::Devices {
        username: user.username,
        devices,
    })
}
