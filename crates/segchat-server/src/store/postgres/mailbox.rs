//! The mailbox on PostgreSQL: encrypted direct messages waiting for a
//! device.

use deadpool_postgres::GenericClient;
use segchat_proto::mailbox::{Delivered, Envelope};
use tokio_postgres::Row;

use super::sql::{execute, row, rows};
use crate::store::{MailboxUse, StoreError, StoreResult};

fn record(r: &Row) -> StoreResult<Delivered> {
    let id: String = r.try_get(1)?;
    Ok(Delivered {
        seq: r.try_get::<_, i64>(0)? as u64,
        id: id
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("mailbox id {id:?}: {e}")))?,
        from: r.try_get(2)?,
        from_node: r.try_get(3)?,
        body: r.try_get(4)?,
        stored_at_ms: r.try_get::<_, i64>(5)? as u64,
    })
}

/// Stores what is new; answers it with its sequence numbers.
pub(super) async fn store(
    c: &mut deadpool_postgres::Client,
    from: &str,
    from_node: &str,
    envelopes: &[Envelope],
    now_ms: u64,
) -> StoreResult<Vec<(String, Delivered)>> {
    let tx = c.transaction().await?;
    // Sequence numbers are taken at insert but seen at commit: two senders
    // to one device could commit out of order, and a fetch in between
    // would move its position past the one that commits later. Each
    // recipient device's row is locked first (in key order, so two
    // senders cannot deadlock), so a device's envelopes commit in the
    // order of their numbers.
    let mut devices: Vec<&str> = envelopes.iter().map(|e| e.to_node.as_str()).collect();
    devices.sort_unstable();
    devices.dedup();
    rows(
        &tx,
        "SELECT node_key FROM devices WHERE node_key = ANY($1) ORDER BY node_key FOR UPDATE",
        &[&devices],
    )
    .await?;
    let mut out = Vec::new();
    for e in envelopes {
        let stored = row(
            &tx,
            "INSERT INTO mailbox (to_node, id, from_user, from_node, body, stored_at_ms, size)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING
             RETURNING seq, id, from_user, from_node, body, stored_at_ms",
            &[
                &e.to_node,
                &e.id.to_string(),
                &from,
                &from_node,
                &e.body,
                &(now_ms as i64),
                &(e.body.len() as i64),
            ],
        )
        .await?;
        if let Some(r) = stored {
            out.push((e.to_node.clone(), record(&r)?));
        }
    }
    tx.commit().await?;
    Ok(out)
}

pub(super) async fn after(
    c: &impl GenericClient,
    node_key: &str,
    after_seq: u64,
    limit: u32,
) -> StoreResult<Vec<Delivered>> {
    rows(
        c,
        "SELECT seq, id, from_user, from_node, body, stored_at_ms FROM mailbox
         WHERE to_node = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        &[&node_key, &(after_seq as i64), &i64::from(limit)],
    )
    .await?
    .iter()
    .map(record)
    .collect()
}

/// How many envelopes wait for the device.
pub(super) async fn usage(
    c: &impl GenericClient,
    node_key: &str,
    from: &str,
) -> StoreResult<MailboxUse> {
    let found = row(
        c,
        "SELECT COUNT(*), COALESCE(SUM(size), 0)::BIGINT,
                COUNT(*) FILTER (WHERE from_user = $2),
                COALESCE(SUM(size) FILTER (WHERE from_user = $2), 0)::BIGINT
         FROM mailbox WHERE to_node = $1",
        &[&node_key, &from],
    )
    .await?;
    let Some(r) = found else {
        return Ok(MailboxUse::default());
    };
    Ok(MailboxUse {
        envelopes: r.try_get::<_, i64>(0)? as u64,
        bytes: r.try_get::<_, i64>(1)? as u64,
        sender_envelopes: r.try_get::<_, i64>(2)? as u64,
        sender_bytes: r.try_get::<_, i64>(3)? as u64,
    })
}

/// Deletes what waits for the device up to `up_to_seq`; how many.
pub(super) async fn ack(
    c: &impl GenericClient,
    node_key: &str,
    up_to_seq: u64,
) -> StoreResult<u64> {
    execute(
        c,
        "DELETE FROM mailbox WHERE to_node = $1 AND seq <= $2",
        &[&node_key, &(up_to_seq as i64)],
    )
    .await
}
