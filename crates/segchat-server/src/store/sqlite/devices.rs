//! Device keys on SQLite: publishing (upsert, one-time keys up to a cap)
//! and claiming (each one-time key handed out once).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use segchat_proto::devices::{ClaimedDevice, DeviceKeys, OneTimeKey};

use crate::store::{PublishedKeys, StoreResult};

/// Stores `keys`; how many one-time keys the device holds afterwards.
pub(super) fn publish(
    c: &mut Connection,
    keys: &PublishedKeys,
    max_one_time: u32,
) -> StoreResult<u32> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let d = &keys.device;
    let held: Option<(i64, String, String, String)> = tx
        .query_row(
            "SELECT user_id, session_id, curve25519, ed25519 FROM devices WHERE node_key = ?1",
            params![d.node_key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let same = held.as_ref().is_some_and(|(u, s, c, e)| {
        *u == keys.user_id && *s == keys.session_id && *c == d.curve25519 && *e == d.ed25519
    });
    if held.is_some() && !same {
        // Another account on this node, or new identity keys: what was
        // published before belongs to keys nobody holds any more.
        tx.execute(
            "DELETE FROM devices WHERE node_key = ?1",
            params![d.node_key],
        )?;
    }
    tx.execute(
        "INSERT INTO devices (node_key, user_id, session_id, curve25519, ed25519, signature,
                              published_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (node_key) DO UPDATE SET signature = excluded.signature,
             published_at_ms = excluded.published_at_ms",
        params![
            d.node_key,
            keys.user_id,
            keys.session_id,
            d.curve25519,
            d.ed25519,
            d.signature,
            keys.now_ms as i64
        ],
    )?;
    if let Some(f) = &keys.fallback_key {
        tx.execute(
            "UPDATE devices SET fallback_key_id = ?2, fallback_key = ?3, fallback_signature = ?4
             WHERE node_key = ?1",
            params![d.node_key, f.key_id, f.key, f.signature],
        )?;
    }
    let mut count = held_keys(&tx, &d.node_key)?;
    for k in &keys.one_time_keys {
        if count >= max_one_time {
            break;
        }
        count += tx.execute(
            "INSERT OR IGNORE INTO one_time_keys (node_key, key_id, key, signature)
             VALUES (?1, ?2, ?3, ?4)",
            params![d.node_key, k.key_id, k.key, k.signature],
        )? as u32;
    }
    tx.commit()?;
    Ok(count)
}

fn held_keys(c: &Connection, node_key: &str) -> StoreResult<u32> {
    Ok(c.query_row(
        "SELECT COUNT(*) FROM one_time_keys WHERE node_key = ?1",
        params![node_key],
        |r| r.get::<_, i64>(0),
    )? as u32)
}

type DeviceRow = (DeviceKeys, Option<OneTimeKey>);

/// Every device of `user_id` but `except_node`, each with a one-time key
/// taken (deleted) or its fallback key.
pub(super) fn claim(
    c: &mut Connection,
    user_id: i64,
    except_node: &str,
    have_sessions: &[String],
) -> StoreResult<Vec<ClaimedDevice>> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let devices: Vec<DeviceRow> = {
        let mut stmt = tx.prepare_cached(
            "SELECT node_key, curve25519, ed25519, signature,
                    fallback_key_id, fallback_key, fallback_signature
             FROM devices WHERE user_id = ?1 AND node_key != ?2 ORDER BY node_key",
        )?;
        let rows = stmt.query_map(params![user_id, except_node], |r| {
            let keys = DeviceKeys {
                node_key: r.get(0)?,
                curve25519: r.get(1)?,
                ed25519: r.get(2)?,
                signature: r.get(3)?,
            };
            let fallback = match (r.get(4)?, r.get(5)?, r.get(6)?) {
                (Some(key_id), Some(key), Some(signature)) => Some(OneTimeKey {
                    key_id,
                    key,
                    fallback: true,
                    signature,
                }),
                _ => None,
            };
            Ok((keys, fallback))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Vec::with_capacity(devices.len());
    for (keys, fallback) in devices {
        if have_sessions.contains(&keys.curve25519) {
            out.push(ClaimedDevice {
                keys,
                one_time_key: None,
                p2p_addr: None,
            });
            continue;
        }
        let taken: Option<(String, String, String)> = tx
            .query_row(
                "DELETE FROM one_time_keys WHERE rowid = (
                     SELECT rowid FROM one_time_keys WHERE node_key = ?1 ORDER BY key_id LIMIT 1)
                 RETURNING key_id, key, signature",
                params![keys.node_key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let one_time_key = match taken {
            Some((key_id, key, signature)) => Some(OneTimeKey {
                key_id,
                key,
                fallback: false,
                signature,
            }),
            None => fallback,
        };
        out.push(ClaimedDevice {
            keys,
            one_time_key,
            p2p_addr: None,
        });
    }
    tx.commit()?;
    Ok(out)
}

/// The user a device is published for.
pub(super) fn of_user(c: &Connection, user_id: i64) -> StoreResult<Vec<(String, String)>> {
    let mut stmt = c.prepare_cached(
        "SELECT node_key, curve25519 FROM devices WHERE user_id = ?1 ORDER BY node_key",
    )?;
    let keys = stmt.query_map(params![user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(keys.collect::<Result<_, _>>()?)
}

pub(super) fn owner(c: &Connection, node_key: &str) -> StoreResult<Option<i64>> {
    Ok(c.query_row(
        "SELECT user_id FROM devices WHERE node_key = ?1",
        params![node_key],
        |r| r.get(0),
    )
    .optional()?)
}
