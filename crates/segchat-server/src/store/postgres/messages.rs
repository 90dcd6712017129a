//! The message backup on PostgreSQL: storing a batch (in one statement
//! when nothing in it needs settling, row by row when edits or deletions
//! do) and reading a channel after a sequence number.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use segchat_proto::files::FileRef;
use segchat_proto::message::{Message, Sequenced};

use super::edits;
use super::sql::{execute, row, rows};
use crate::store::{Inserted, MessageSource, StoreError, StoreResult};

/// The columns a stored message is inserted with, in the order of the
/// insert statements' values.
const INSERT_COLUMNS: &str = "id, channel_id, author, ts_ms, body, ticket, signature, source, \
     received_at_ms, re_kind, re_id, redacted, file";

/// A batch to store, with what every row of it shares and each message's
/// columns that are not fields of [`Message`].
struct Batch<'a> {
    channel_id: i64,
    messages: &'a [Message],
    /// Each message's id, as stored.
    ids: Vec<String>,
    /// Each message's ticket, as stored (JSON).
    tickets: Vec<String>,
    source: &'static str,
    now_ms: i64,
}

/// Stores the messages that are not stored yet (by id) in one transaction.
pub(super) async fn insert(
    client: &mut deadpool_postgres::Client,
    channel_id: i64,
    messages: &[Message],
    source: MessageSource,
    now_ms: u64,
) -> StoreResult<Inserted> {
    let batch = Batch {
        channel_id,
        messages,
        ids: messages.iter().map(|m| m.id.to_string()).collect(),
        tickets: messages
            .iter()
            .map(|m| {
                serde_json::to_string(&m.ticket).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect::<StoreResult<_>>()?,
        source: source.as_str(),
        now_ms: now_ms as i64,
    };
    let tx = client.transaction().await?;
    // Writers into one channel take turns until they commit, so its
    // seqs are committed in the order they were drawn.
    execute(
        &tx,
        "SELECT 1 FROM channels WHERE id = $1 FOR UPDATE",
        &[&channel_id],
    )
    .await?;
    let (new, seqs) = if edits::settles_nothing(&tx, channel_id, messages, &batch.ids).await? {
        insert_plain(&tx, &batch).await?
    } else {
        insert_one_by_one(&tx, &batch).await?
    };
    let last_seq = last_seq(&tx, channel_id).await?;
    tx.commit().await?;
    Ok(Inserted {
        new,
        seqs,
        last_seq,
    })
}

/// Messages of a channel above `after_seq`, oldest first, at most `limit`.
pub(super) async fn after(
    c: &impl GenericClient,
    channel_id: i64,
    after_seq: u64,
    limit: u32,
) -> StoreResult<Vec<Sequenced>> {
    let sql = format!(
        "SELECT m.seq, {} FROM messages m JOIN channels ch ON ch.id = m.channel_id
         WHERE m.channel_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3",
        edits::MESSAGE_COLUMNS
    );
    rows(
        c,
        &sql,
        &[&channel_id, &(after_seq as i64), &i64::from(limit)],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Sequenced {
            seq: r.try_get::<_, i64>(0)? as u64,
            message: edits::message_at(r, 1)?,
        })
    })
    .collect()
}

/// Stores a batch in which no message edits or deletes another and none
/// is awaited by a stored edit or deletion: one statement for the rows and
/// one for their numbers, whatever the batch's size.
async fn insert_plain(
    tx: &deadpool_postgres::Transaction<'_>,
    batch: &Batch<'_>,
) -> StoreResult<(u32, Vec<u64>)> {
    let messages = batch.messages;
    let authors: Vec<&str> = messages.iter().map(|m| m.author.as_str()).collect();
    let ts: Vec<i64> = messages.iter().map(|m| m.ts_ms as i64).collect();
    let bodies: Vec<&[u8]> = messages.iter().map(|m| m.body.as_bytes()).collect();
    let signatures: Vec<&str> = messages.iter().map(|m| m.signature.as_str()).collect();
    let re_kinds: Vec<Option<&str>> = messages
        .iter()
        .map(|m| m.re.map(|r| r.kind.as_str()))
        .collect();
    let re_ids: Vec<Option<String>> = messages
        .iter()
        .map(|m| m.re.map(|r| r.id.to_string()))
        .collect();
    let redacted: Vec<Option<&str>> = messages.iter().map(|m| m.redacted.as_deref()).collect();
    let files: Vec<Option<String>> = messages.iter().map(Message::file_column).collect();
    // Rows are numbered in the batch's order (ORDER BY the ordinality).
    let inserted = rows(
        tx,
        &format!(
            "INSERT INTO messages ({INSERT_COLUMNS})
         SELECT u.id, $1, u.author, u.ts_ms, u.body, u.ticket, u.signature, $2, $3,
                u.re_kind, u.re_id, u.redacted, u.file
         FROM UNNEST($4::text[], $5::text[], $6::int8[], $7::bytea[], $8::text[],
                     $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
              WITH ORDINALITY
              AS u(id, author, ts_ms, body, ticket, signature, re_kind, re_id, redacted, file, ord)
         ORDER BY u.ord
         ON CONFLICT (id) DO NOTHING
         RETURNING 1"
        ),
        &[
            &batch.channel_id,
            &batch.source,
            &batch.now_ms,
            &batch.ids,
            &authors,
            &ts,
            &bodies,
            &batch.tickets,
            &signatures,
            &re_kinds,
            &re_ids,
            &redacted,
            &files,
        ],
    )
    .await?;
    let numbered = rows(
        tx,
        "SELECT id, seq FROM messages WHERE id = ANY($1)",
        &[&batch.ids],
    )
    .await?;
    let mut seq_of = HashMap::with_capacity(numbered.len());
    for r in &numbered {
        seq_of.insert(r.try_get::<_, String>(0)?, r.try_get::<_, i64>(1)? as u64);
    }
    let seqs = batch
        .ids
        .iter()
        .map(|id| {
            seq_of
                .get(id)
                .copied()
                .ok_or_else(|| StoreError::Corrupt(format!("message {id} was not stored")))
        })
        .collect::<StoreResult<_>>()?;
    Ok((inserted.len() as u32, seqs))
}

/// Stores a batch row by row, settling each new message's edits and
/// deletions before the next is stored (the order the rules need).
async fn insert_one_by_one(
    tx: &deadpool_postgres::Transaction<'_>,
    batch: &Batch<'_>,
) -> StoreResult<(u32, Vec<u64>)> {
    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO messages ({INSERT_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (id) DO NOTHING RETURNING seq"
        ))
        .await?;
    let seq_of = tx
        .prepare_cached("SELECT seq FROM messages WHERE id = $1")
        .await?;
    let mut new = 0u32;
    let mut seqs = Vec::with_capacity(batch.messages.len());
    let rows = batch.messages.iter().zip(&batch.ids).zip(&batch.tickets);
    for ((m, id), ticket) in rows {
        let re_kind = m.re.map(|r| r.kind.as_str());
        let re_id = m.re.map(|r| r.id.to_string());
        let added = tx
            .query_opt(
                &insert,
                &[
                    id,
                    &batch.channel_id,
                    &m.author,
                    &(m.ts_ms as i64),
                    &m.body.as_bytes(),
                    ticket,
                    &m.signature,
                    &batch.source,
                    &batch.now_ms,
                    &re_kind,
                    &re_id,
                    &m.redacted,
                    &m.file_column(),
                ],
            )
            .await?;
        let seq: i64 = match added {
            Some(r) => {
                new += 1;
                edits::settle(tx, batch.channel_id, m).await?;
                r.try_get(0)?
            }
            None => tx.query_one(&seq_of, &[id]).await?.try_get(0)?,
        };
        seqs.push(seq as u64);
    }
    Ok((new, seqs))
}

/// The file `hash` as a message in `channel_id` shares it (not
/// deleted), if one does.
pub(super) async fn file_shared_in(
    c: &impl GenericClient,
    channel_id: i64,
    hash: &str,
) -> StoreResult<Option<FileRef>> {
    let r = row(
        c,
        "SELECT file FROM messages
         WHERE file_hash = $1 AND channel_id = $2 AND file IS NOT NULL LIMIT 1",
        &[&hash, &channel_id],
    )
    .await?;
    match r {
        Some(r) => {
            let json: String = r.try_get(0)?;
            serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("file: {e}")))
        }
        None => Ok(None),
    }
}

pub(super) async fn last_seq(c: &impl GenericClient, channel_id: i64) -> StoreResult<u64> {
    let r = row(
        c,
        "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE channel_id = $1",
        &[&channel_id],
    )
    .await?;
    Ok(match r {
        Some(r) => r.try_get::<_, i64>(0)? as u64,
        None => 0,
    })
}
