//! Device keys on PostgreSQL: publishing (upsert, one-time keys up to a
//! cap) and claiming (each one-time key handed out once, also when
//! several instances claim at the same moment).

use deadpool_postgres::GenericClient;
use segchat_proto::devices::{ClaimedDevice, DeviceKeys, OneTimeKey};

use super::sql::{execute, row, rows};
use crate::store::{PublishedKeys, StoreResult};

/// Stores `keys`; how many one-time keys the device holds afterwards.
pub(super) async fn publish(
    c: &mut deadpool_postgres::Client,
    keys: &PublishedKeys,
    max_one_time: u32,
) -> StoreResult<u32> {
    let tx = c.transaction().await?;
    let d = &keys.device;
    // Publishes for one device take turns (its row, or the user's while
    // it has none).
    rows(
        &tx,
        "SELECT id FROM users WHERE id = $1 FOR UPDATE",
        &[&keys.user_id],
    )
    .await?;
    let held = row(
        &tx,
        "SELECT user_id, session_id, curve25519, ed25519 FROM devices WHERE node_key = $1 FOR UPDATE",
        &[&d.node_key],
    )
    .await?;
    if let Some(r) = held {
        let same = r.try_get::<_, i64>(0)? == keys.user_id
            && r.try_get::<_, String>(1)? == keys.session_id
            && r.try_get::<_, String>(2)? == d.curve25519
            && r.try_get::<_, String>(3)? == d.ed25519;
        if !same {
            // Another account on this node, or new identity keys.
            execute(
                &tx,
                "DELETE FROM devices WHERE node_key = $1",
                &[&d.node_key],
            )
            .await?;
        }
    }
    execute(
        &tx,
        "INSERT INTO devices (node_key, user_id, session_id, curve25519, ed25519, signature,
                              published_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (node_key) DO UPDATE SET signature = excluded.signature,
             published_at_ms = excluded.published_at_ms",
        &[
            &d.node_key,
            &keys.user_id,
            &keys.session_id,
            &d.curve25519,
            &d.ed25519,
            &d.signature,
            &(keys.now_ms as i64),
        ],
    )
    .await?;
    if let Some(f) = &keys.fallback_key {
        execute(
            &tx,
            "UPDATE devices SET fallback_key_id = $2, fallback_key = $3, fallback_signature = $4
             WHERE node_key = $1",
            &[&d.node_key, &f.key_id, &f.key, &f.signature],
        )
        .await?;
    }
    let mut count = row(
        &tx,
        "SELECT COUNT(*) FROM one_time_keys WHERE node_key = $1",
        &[&d.node_key],
    )
    .await?
    .map(|r| r.try_get::<_, i64>(0))
    .transpose()?
    .unwrap_or(0) as u32;
    for k in &keys.one_time_keys {
        if count >= max_one_time {
            break;
        }
        count += execute(
            &tx,
            "INSERT INTO one_time_keys (node_key, key_id, key, signature) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&d.node_key, &k.key_id, &k.key, &k.signature],
        )
        .await? as u32;
    }
    tx.commit().await?;
    Ok(count)
}

/// Every device of `user_id` but `except_node`, each with a one-time key
/// taken (deleted) or its fallback key.
pub(super) async fn claim(
    c: &mut deadpool_postgres::Client,
    user_id: i64,
    except_node: &str,
    have_sessions: &[String],
) -> StoreResult<Vec<ClaimedDevice>> {
    let tx = c.transaction().await?;
    let devices = rows(
        &tx,
        "SELECT node_key, curve25519, ed25519, signature,
                fallback_key_id, fallback_key, fallback_signature
         FROM devices WHERE user_id = $1 AND node_key != $2 ORDER BY node_key",
        &[&user_id, &except_node],
    )
    .await?;
    let mut out = Vec::with_capacity(devices.len());
    for r in devices {
        let keys = DeviceKeys {
            node_key: r.try_get(0)?,
            curve25519: r.try_get(1)?,
            ed25519: r.try_get(2)?,
            signature: r.try_get(3)?,
        };
        let fallback = match (
            r.try_get::<_, Option<String>>(4)?,
            r.try_get::<_, Option<String>>(5)?,
            r.try_get::<_, Option<String>>(6)?,
        ) {
            (Some(key_id), Some(key), Some(signature)) => Some(OneTimeKey {
                key_id,
                key,
                fallback: true,
                signature,
            }),
            _ => None,
        };
        if have_sessions.contains(&keys.curve25519) {
            out.push(ClaimedDevice {
                keys,
                one_time_key: None,
                p2p_addr: None,
            });
            continue;
        }
        // SKIP LOCKED: a key another claim is taking right now is not
        // waited for; the next one is taken instead.
        let taken = row(
            &tx,
            "DELETE FROM one_time_keys WHERE (node_key, key_id) = (
                 SELECT node_key, key_id FROM one_time_keys WHERE node_key = $1
                 ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING key_id, key, signature",
            &[&keys.node_key],
        )
        .await?;
        let one_time_key = match taken {
            Some(t) => Some(OneTimeKey {
                key_id: t.try_get(0)?,
                key: t.try_get(1)?,
                fallback: false,
                signature: t.try_get(2)?,
            }),
            None => fallback,
        };
        out.push(ClaimedDevice {
            keys,
            one_time_key,
            p2p_addr: None,
        });
    }
    tx.commit().await?;
    Ok(out)
}

/// The user a device is published for.
pub(super) async fn of_user(
    c: &impl GenericClient,
    user_id: i64,
) -> StoreResult<Vec<(String, String)>> {
    let found = rows(
        c,
        "SELECT node_key, curve25519 FROM devices WHERE user_id = $1 ORDER BY node_key",
        &[&user_id],
    )
    .await?;
    Ok(found
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?)
}

pub(super) async fn owner(c: &impl GenericClient, node_key: &str) -> StoreResult<Option<i64>> {
    let found = row(
        c,
        "SELECT user_id FROM devices WHERE node_key = $1",
        &[&node_key],
    )
    .await?;
    Ok(found.map(|r| r.try_get(0)).transpose()?)
}
