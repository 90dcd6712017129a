//! Messages in the local store: everything the user has seen, with its
//! provenance, and the hosted copy of channels this node hosts (numbered by
//! the host sequence). The outbox is `outbox.rs`, search `search.rs`,
//! cursors and gaps `cursors.rs`, how rows read back `rows.rs`.
//!
//! A channel is a set keyed by message id: every insert is idempotent, and
//! a second arrival of the same message only fills in what the first did
//! not know (its host or server sequence number).

use rusqlite::{params, Connection, OptionalExtension};
use segchat_proto::message::{Message, Sequenced};

use super::cursors::held_host_seq;
use super::rows::{
    full_message, row, DeliveryState, MessageRow, RawRow, Source, MESSAGE_COLUMNS, ROW_COLUMNS,
    SHOWN,
};
use super::{Store, StoreError};

/// How a copy arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub source: Source,
    /// The host's or server's address, for provenance.
    pub from: Option<String>,
    pub host_seq: Option<u64>,
    pub server_seq: Option<u64>,
}

/// What storing a copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// The store did not have it before.
    pub new: bool,
    /// For a copy from the channel's host: the host cursor after it.
    pub host_cursor: Option<u64>,
}

/// Inserts a copy of `m` unless the store has it; `hosted_seq` is this
/// node's own number for it when it hosts the channel. Returns whether it
/// was new.
pub(super) fn insert(
    c: &Connection,
    m: &Message,
    a: &Arrival,
    state: Option<DeliveryState>,
    hosted_seq: Option<u64>,
) -> Result<bool, StoreError> {
    let ticket =
        serde_json::to_string(&m.ticket).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let n = c
        .prepare_cached(
            "INSERT OR IGNORE INTO messages (id, channel, author, ts_ms, body, ticket, signature,
                 source, source_addr, host_seq, server_seq, state, received_at_ms, hosted_seq,
                 re_kind, re_id, redacted, file)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                     ?18)",
        )?
        .execute(params![
            m.id.to_string(),
            m.channel,
            m.author,
            m.ts_ms as i64,
            m.body,
            ticket,
            m.signature,
            a.source.as_str(),
            a.from,
            hosted_seq.or(a.host_seq).map(|v| v as i64),
            a.server_seq.map(|v| v as i64),
            state.map(DeliveryState::as_str),
            crate::clock::now_ms() as i64,
            hosted_seq.map(|v| v as i64),
            m.re.map(|r| r.kind.as_str()),
            m.re.map(|r| r.id.to_string()),
            m.redacted,
            m.file_column(),
        ])?;
    if n == 1 {
        super::edits::settle(c, m)?;
    } else {
        // Known already: learn the sequence numbers this copy carries (the
        // host's latest word on its own number wins).
        c.prepare_cached(
            "UPDATE messages SET host_seq = COALESCE(?2, host_seq),
                                 server_seq = COALESCE(server_seq, ?3)
             WHERE id = ?1",
        )?
        .execute(params![
            m.id.to_string(),
            a.host_seq.map(|v| v as i64),
            a.server_seq.map(|v| v as i64)
        ])?;
    }
    Ok(n == 1)
}

impl Store {
    /// Stores a copy of a message that arrived from a host or the server.
    /// A copy from the channel's host also moves the host cursor over
    /// every number now held, in the same transaction: a number counts as
    /// held only once its message is stored (see `cursors.rs`).
    pub async fn insert_message(&self, m: Message, a: Arrival) -> Result<Inserted, StoreError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let new = insert(&tx, &m, &a, None, None)?;
            let host_cursor = match (a.source, a.host_seq) {
                (Source::Host, Some(seq)) => Some(held_host_seq(&tx, &m.channel, seq)?),
                _ => None,
            };
            tx.commit()?;
            Ok(Inserted { new, host_cursor })
        })
        .await
    }

    /// As the channel's host: stores messages (those not hosted yet) under
    /// the next hosted sequence numbers, all in one transaction. Returns,
    /// for each, whether it is new to the hosted set and its hosted seq.
    ///
    /// Blocks: for the hosted channel's sequencer thread, never a task.
    pub fn host_append_blocking(
        &self,
        channel: &str,
        batch: &[(&Message, &Arrival)],
    ) -> Result<Vec<(bool, u64)>, StoreError> {
        self.with_here(|c| {
            let tx = c.transaction()?;
            let mut next: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(MAX(hosted_seq), 0) + 1 FROM messages
                     WHERE channel = ?1 AND hosted_seq IS NOT NULL",
                )?
                .query_row(params![channel], |r| r.get(0))?;
            let mut out = Vec::with_capacity(batch.len());
            for &(m, a) in batch {
                if insert(&tx, m, a, None, Some(next as u64))? {
                    out.push((true, next as u64));
                    next += 1;
                    continue;
                }
                // Known here already (hosted, or seen before hosting).
                let id = m.id.to_string();
                let hosted: Option<i64> = tx
                    .prepare_cached("SELECT hosted_seq FROM messages WHERE id = ?1")?
                    .query_row(params![id], |r| r.get(0))?;
                if let Some(seq) = hosted {
                    // Hosted already; learn the server's number if this copy has it.
                    tx.prepare_cached(
                        "UPDATE messages SET server_seq = COALESCE(server_seq, ?2) WHERE id = ?1",
                    )?
                    .execute(params![id, a.server_seq.map(|v| v as i64)])?;
                    out.push((false, seq as u64));
                    continue;
                }
                tx.prepare_cached(
                    "UPDATE messages SET hosted_seq = ?2, host_seq = ?2 WHERE id = ?1",
                )?
                .execute(params![id, next])?;
                out.push((true, next as u64));
                next += 1;
            }
            tx.commit()?;
            Ok(out)
        })
    }

    /// As host: messages with hosted sequence numbers above `after`.
    pub async fn hosted_after(
        &self,
        channel: String,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Sequenced>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS}, hosted_seq FROM messages
                 WHERE channel = ?1 AND hosted_seq > ?2 ORDER BY hosted_seq LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![channel, after as i64, limit], |r| {
                Ok((full_message(r)?, r.get::<_, i64>(11)?))
            })?;
            rows.map(|r| {
                let (m, seq) = r?;
                Ok(Sequenced {
                    seq: seq as u64,
                    message: m?,
                })
            })
            .collect()
        })
        .await
    }

    /// As host: the highest hosted sequence number of a channel.
    pub async fn hosted_last(&self, channel: String) -> Result<u64, StoreError> {
        self.read(move |c| {
            let v: i64 = c.query_row(
                "SELECT COALESCE(MAX(hosted_seq), 0) FROM messages
                 WHERE channel = ?1 AND hosted_seq IS NOT NULL",
                params![channel],
                |r| r.get(0),
            )?;
            Ok(v as u64)
        })
        .await
    }

    /// One shown message (not an edit, deletion or reaction) as the API
    /// shows it.
    pub async fn message(&self, id: String) -> Result<Option<MessageRow>, StoreError> {
        self.read(move |c| {
            let found = c
                .query_row(
                    &format!("SELECT {ROW_COLUMNS} FROM messages m WHERE m.id = ?1 AND {SHOWN}"),
                    params![id],
                    row,
                )
                .optional()?
                .map(RawRow::cook)
                .transpose()?;
            let mut rows: Vec<MessageRow> = found.into_iter().collect();
            super::edits::decorate(c, &mut rows)?;
            Ok(rows.pop())
        })
        .await
    }

    /// A page of a channel's history, newest first, older than `before`
    /// (a message id) if given.
    pub async fn history(
        &self,
        channel: String,
        before: Option<String>,
        limit: u32,
    ) -> Result<Vec<MessageRow>, StoreError> {
        self.read(move |c| {
            let anchor: Option<(i64, String)> = match &before {
                Some(id) => c
                    .query_row(
                        "SELECT ts_ms, id FROM messages WHERE id = ?1",
                        params![id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?,
                None => None,
            };
            if before.is_some() && anchor.is_none() {
                return Err(StoreError::Corrupt(
                    "unknown message id for `before`".into(),
                ));
            }
            let (ts, id) = anchor.unwrap_or((i64::MAX, String::new()));
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM messages m
                 WHERE m.channel = ?1 AND {SHOWN}
                   AND (m.ts_ms < ?2 OR (m.ts_ms = ?2 AND m.id < ?3) OR ?4)
                 ORDER BY m.ts_ms DESC, m.id DESC LIMIT ?5"
            ))?;
            let rows = stmt.query_map(params![channel, ts, id, before.is_none(), limit], row)?;
            let mut rows = rows.map(|r| r?.cook()).collect::<Result<Vec<_>, _>>()?;
            super::edits::decorate(c, &mut rows)?;
            Ok(rows)
        })
        .await
    }

    /// The highest timestamp stored (for the hybrid logical clock).
    pub async fn max_ts(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            let v: i64 = c.query_row("SELECT COALESCE(MAX(ts_ms), 0) FROM messages", [], |r| {
                r.get(0)
            })?;
            Ok(v as u64)
        })
        .await
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::Cursor;

    pub(in crate::store) fn message(n: u128, body: &str) -> Message {
        let server = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let node = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        let ticket = segchat_proto::ticket::Ticket {
            username: "alice".into(),
            kind: segchat_proto::types::AccountKind::User,
            session_id: "s".into(),
            node_key: hex::encode(node.verifying_key().as_bytes()),
            issued_at_ms: 0,
            expires_at_ms: u64::MAX,
        }
        .sign(&server)
        .expect("ticket");
        segchat_proto::message::Draft {
            file: None,
            id: uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | n),
            channel: "c",
            author: "alice",
            ts_ms: 1_000 + n as u64,
            body,
            re: None,
        }
        .sign(&node, ticket)
        .expect("sign")
    }

    pub(in crate::store) fn hosted() -> Arrival {
        Arrival {
            source: Source::Host,
            from: Some("member 127.0.0.1:1".into()),
            host_seq: None,
            server_seq: None,
        }
    }

    #[tokio::test]
    async fn the_background_checkpointer_folds_the_log_into_the_database() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("node.db");
        let s = Store::open(&path).expect("store");
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(s.clone().checkpoint_in_background(stop.clone()));
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        // Wait for the task to take over from the writers.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s
            .with(|c| Ok(c.pragma_query_value(None, "wal_autocheckpoint", |r| r.get::<_, i64>(0))?))
            .await
            .expect("pragma")
            != 0
        {
            assert!(std::time::Instant::now() < deadline, "never took over");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let before = size();
        // Far less than the 1,000 pages at which a writer would checkpoint.
        let body = "x".repeat(2_000);
        let batch: Vec<Message> = (0..100).map(|n| message(n, &body)).collect();
        let arrival = hosted();
        let rows: Vec<(&Message, &Arrival)> = batch.iter().map(|m| (m, &arrival)).collect();
        s.host_append_blocking("c", &rows).expect("append");
        while size() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "the log never reached the database file"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        stop.cancel();
        task.await.expect("task");
        let restored: i64 = s
            .with(|c| Ok(c.pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))?))
            .await
            .expect("pragma");
        assert_eq!(restored, 1000, "writers checkpoint again once it stops");
    }

    #[tokio::test]
    async fn host_append_numbers_new_messages_and_knows_repeats() {
        let s = Store::open_in_memory().expect("store");
        let (a, b) = (message(1, "a"), message(2, "b"));
        // `b` was seen here before this node hosted the channel.
        s.insert_message(b.clone(), hosted()).await.expect("insert");
        let got = s
            .host_append_blocking("c", &[(&a, &hosted()), (&b, &hosted()), (&a, &hosted())])
            .expect("append");
        assert_eq!(got, vec![(true, 1), (true, 2), (false, 1)]);
        let after = s.hosted_after("c".into(), 0, 10).await.expect("after");
        let ids: Vec<_> = after.iter().map(|m| (m.seq, m.message.id)).collect();
        assert_eq!(ids, vec![(1, a.id), (2, b.id)]);
    }

    #[tokio::test]
    async fn reads_see_what_is_committed_and_do_not_wait_for_a_writer() {
        let dir = tempfile::tempdir().expect("dir");
        let s = Store::open(&dir.path().join("node.db")).expect("store");
        let a = message(1, "a");
        s.host_append_blocking("c", &[(&a, &hosted())])
            .expect("append");
        // A writer holds the writers' connection, mid-transaction...
        let (held, release) = (
            std::sync::Arc::new(std::sync::Barrier::new(2)),
            std::sync::Arc::new(std::sync::Barrier::new(2)),
        );
        let writer = {
            let (s, held, release) = (s.clone(), held.clone(), release.clone());
            std::thread::spawn(move || {
                s.with_here(|c| {
                    let tx = c.transaction()?;
                    tx.execute(
                        "UPDATE messages SET body = 'changing' WHERE channel = 'c'",
                        [],
                    )?;
                    held.wait();
                    release.wait();
                    tx.commit()?;
                    Ok(())
                })
                .expect("writer")
            })
        };
        held.wait();
        // ...and the backlog, history and cursors are read meanwhile, as
        // last committed.
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let after = s.hosted_after("c".into(), 0, 10).await.expect("after");
            let page = s.history("c".into(), None, 10).await.expect("history");
            let cursor = s.cursor("c".into(), Cursor::Backup).await.expect("cursor");
            (after, page, cursor)
        })
        .await;
        release.wait();
        writer.join().expect("writer thread");
        let (after, page, cursor) = read.expect("a read waited for the writer");
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].message.body, "a");
        assert_eq!(page.len(), 1);
        assert_eq!(cursor, 0);
        // Once committed, the change is what reads see.
        let after = s.hosted_after("c".into(), 0, 10).await.expect("after");
        assert_eq!(after[0].message.body, "changing");
    }
}
