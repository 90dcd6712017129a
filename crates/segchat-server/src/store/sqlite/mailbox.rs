//! The mailbox on SQLite: encrypted direct messages waiting for a device.

use rusqlite::{params, Connection, Row};
use segchat_proto::mailbox::{Delivered, Envelope};

use crate::store::{MailboxUse, StoreError, StoreResult};

fn delivered(r: &Row<'_>) -> rusqlite::Result<(i64, String, String, String, String, i64)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn record(row: (i64, String, String, String, String, i64)) -> StoreResult<Delivered> {
    let (seq, id, from, from_node, body, at) = row;
    Ok(Delivered {
        seq: seq as u64,
        id: id
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("mailbox id {id:?}: {e}")))?,
        from,
        from_node,
        body,
        stored_at_ms: at as u64,
    })
}

/// Stores what is new; answers it with its sequence numbers.
pub(super) fn store(
    c: &mut Connection,
    from: &str,
    from_node: &str,
    envelopes: &[Envelope],
    now_ms: u64,
) -> StoreResult<Vec<(String, Delivered)>> {
    let tx = c.transaction()?;
    let mut out = Vec::new();
    for e in envelopes {
        let n = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO mailbox
                     (to_node, id, from_user, from_node, body, stored_at_ms, size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                e.to_node,
                e.id.to_string(),
                from,
                from_node,
                e.body,
                now_ms as i64,
                e.body.len() as i64
            ])?;
        if n == 1 {
            let d = Delivered {
                seq: tx.last_insert_rowid() as u64,
                id: e.id,
                from: from.to_owned(),
                from_node: from_node.to_owned(),
                body: e.body.clone(),
                stored_at_ms: now_ms,
            };
            out.push((e.to_node.clone(), d));
        }
    }
    tx.commit()?;
    Ok(out)
}

pub(super) fn after(
    c: &Connection,
    node_key: &str,
    after_seq: u64,
    limit: u32,
) -> StoreResult<Vec<Delivered>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, id, from_user, from_node, body, stored_at_ms FROM mailbox
         WHERE to_node = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![node_key, after_seq as i64, limit], delivered)?;
    rows.map(|r| record(r?)).collect()
}

/// How many envelopes wait for the device.
pub(super) fn usage(c: &Connection, node_key: &str, from: &str) -> StoreResult<MailboxUse> {
    let n = c.query_row(
        "SELECT COUNT(*), COALESCE(SUM(size), 0),
                COALESCE(SUM(from_user = ?2), 0),
                COALESCE(SUM(CASE WHEN from_user = ?2 THEN size ELSE 0 END), 0)
         FROM mailbox WHERE to_node = ?1",
        params![node_key, from],
        |r| {
            Ok([
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ])
        },
    )?;
    Ok(MailboxUse {
        envelopes: n[0] as u64,
        bytes: n[1] as u64,
        sender_envelopes: n[2] as u64,
        sender_bytes: n[3] as u64,
    })
}

/// Deletes what waits for the device up to `up_to_seq`; how many.
pub(super) fn ack(c: &Connection, node_key: &str, up_to_seq: u64) -> StoreResult<u64> {
    Ok(c.execute(
        "DELETE FROM mailbox WHERE to_node = ?1 AND seq <= ?2",
        params![node_key, up_to_seq as i64],
    )? as u64)
}
