//! The message backup on SQLite: storing a batch in one transaction
//! (idempotent by id, each new row settled against what it edits or
//! deletes) and reading a channel after a sequence number.

use rusqlite::{params, Connection, OptionalExtension};
use segchat_proto::files::FileRef;
use segchat_proto::message::{Message, Sequenced};

use super::edits;
use crate::store::{Inserted, MessageSource, StoreError, StoreResult};

/// Each message with its ticket as stored (JSON), encoded before the
/// database is taken.
pub(super) fn with_tickets(messages: &[Message]) -> StoreResult<Vec<(Message, String)>> {
    messages
        .iter()
        .map(|m| {
            let ticket =
                serde_json::to_string(&m.ticket).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((m.clone(), ticket))
        })
        .collect()
}

/// Stores `rows` in `channel_id` in one transaction; what already was
/// there (by id) is left as it was.
pub(super) fn insert(
    c: &mut Connection,
    channel_id: i64,
    rows: &[(Message, String)],
    source: MessageSource,
    now_ms: u64,
) -> StoreResult<Inserted> {
    let tx = c.transaction()?;
    let mut new = 0u32;
    let mut seqs = Vec::with_capacity(rows.len());
    {
        let mut seq_of = tx.prepare_cached("SELECT seq FROM messages WHERE id = ?1")?;
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO messages
             (id, channel_id, author, ts_ms, body, ticket, signature, source,
              received_at_ms, re_kind, re_id, redacted, file)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for (m, ticket) in rows {
            let id = m.id.to_string();
            let added = stmt.execute(params![
                id,
                channel_id,
                m.author,
                m.ts_ms as i64,
                m.body,
                ticket,
                m.signature,
                source.as_str(),
                now_ms as i64,
                m.re.map(|r| r.kind.as_str()),
                m.re.map(|r| r.id.to_string()),
                m.redacted,
                m.file_column(),
            ])?;
            if added == 1 {
                edits::settle(&tx, channel_id, m)?;
            }
            new += added as u32;
            seqs.push(seq_of.query_row(params![id], |r| r.get::<_, i64>(0))? as u64);
        }
    }
    let last_seq = last_seq(&tx, channel_id)?;
    tx.commit()?;
    Ok(Inserted {
        new,
        seqs,
        last_seq,
    })
}

/// Up to `limit` messages of `channel_id` after `after_seq`, in order.
pub(super) fn after(
    c: &Connection,
    channel_id: i64,
    after_seq: u64,
    limit: u32,
) -> StoreResult<Vec<Sequenced>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT m.seq, {} FROM messages m JOIN channels ch ON ch.id = m.channel_id
         WHERE m.channel_id = ?1 AND m.seq > ?2 ORDER BY m.seq LIMIT ?3",
        edits::MESSAGE_COLUMNS
    ))?;
    let rows = stmt.query_map(params![channel_id, after_seq as i64, limit], |r| {
        Ok((r.get::<_, i64>(0)?, edits::message_at(r, 1)?))
    })?;
    rows.map(|r| {
        let (seq, message) = r?;
        Ok(Sequenced {
            seq: seq as u64,
            message: message?,
        })
    })
    .collect()
}

/// The file `hash` as a message in `channel_id` shares it (not
/// deleted), if one does.
pub(super) fn file_shared_in(
    c: &Connection,
    channel_id: i64,
    hash: &str,
) -> StoreResult<Option<FileRef>> {
    let json: Option<String> = c
        .prepare_cached(
            "SELECT file FROM messages
             WHERE file_hash = ?1 AND channel_id = ?2 AND file IS NOT NULL LIMIT 1",
        )?
        .query_row(params![hash, channel_id], |r| r.get(0))
        .optional()?;
    json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(format!("file: {e}"))))
        .transpose()
}

/// The highest sequence number in `channel_id` (0 when empty).
pub(super) fn last_seq(c: &Connection, channel_id: i64) -> StoreResult<u64> {
    let seq: i64 = c
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM messages WHERE channel_id = ?1")?
        .query_row(params![channel_id], |r| r.get(0))?;
    Ok(seq as u64)
}
