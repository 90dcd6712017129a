//! Direct messages, decrypted, per account on this node: the outbox (rows
//! the account sent until they have left), states that only move forward,
//! and what arrived, kept in one transaction with the Olm state that
//! opened it and the mailbox position it came from. How a row reads back
//! is `dm_rows.rs`; what replies, edits, deletions and reactions do is
//! `dm_edits.rs`; receipts are `dm_receipts.rs`.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::dm_edits::{decorate, settle, shown, SHOWN};
use super::dm_receipts::{advance, read_early, read_elsewhere, Receipt};
use super::dm_rows::{conversation_key, one, rows, DmRow, DmState, COLUMNS};
use super::{Store, StoreError};
use crate::dm::olm::Pickled;

/// A conversation in the list: its newest message and how many of the
/// others' messages are unread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conversation {
    pub conversation: String,
    pub last: DmRow,
    pub unread: u64,
}

/// What one batch from the mailbox changed.
#[derive(Debug, Default)]
pub struct Kept {
    /// Messages new to this node.
    pub new: Vec<DmRow>,
    /// Sent messages whose state a receipt moved forward.
    pub updated: Vec<DmRow>,
}

/// `s` with LIKE's wildcards (and the escape character) escaped.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Keeps `r` once per id, in its conversation as first spelled here (the
/// row's `conversation` becomes that spelling); whether it is new.
fn insert(c: &Connection, account: &str, r: &mut DmRow) -> Result<bool, StoreError> {
    let key = conversation_key(&r.conversation);
    let spelled: Option<String> = c
        .prepare_cached(
            "SELECT conversation FROM dms WHERE account = ?1 AND conversation_key = ?2 LIMIT 1",
        )?
        .query_row(params![account, key], |row| row.get(0))
        .optional()?;
    if let Some(spelled) = spelled {
        r.conversation = spelled;
    }
    let (kind, re_id) = match &r.re {
        Some((kind, id)) => (Some(kind.as_str()), Some(id.as_str())),
        None => (None, None),
    };
    Ok(c.execute(
        "INSERT OR IGNORE INTO dms
             (account, id, conversation, sender, sent_at_ms, text, state, path, error,
              stored_at_ms, re_kind, re_id, conversation_key, outbox, file)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            account,
            r.id,
            r.conversation,
            r.sender,
            r.sent_at_ms as i64,
            r.text,
            r.state.as_str(),
            r.path,
            r.error,
            crate::clock::now_ms() as i64,
            kind,
            re_id,
            key,
            r.state == DmState::Pending,
            r.file_json()
        ],
    )? == 1)
}

/// After `r` (of the account) was stored or left the outbox: settles the
/// message it is or changes; that message as shown now.
fn settled(c: &Connection, account: &str, r: &DmRow) -> Result<Option<DmRow>, StoreError> {
    let target = r.target().unwrap_or(&r.id);
    settle(c, account, target)?;
    shown(c, account, target)
}

impl Store {
    /// Keeps a message or an action the account is sending, `pending`
    /// (an action counts here at once); the message as shown now (for an
    /// action: the one it changes).
    pub(crate) async fn dm_queue(
        &self,
        account: &str,
        row: DmRow,
    ) -> Result<Option<DmRow>, StoreError> {
        let (account, mut row) = (account.to_owned(), row);
        self.with(move |c| {
            let tx = c.transaction()?;
            insert(&tx, &account, &mut row)?;
            let now = settled(&tx, &account, &row)?;
            tx.commit()?;
            Ok(now)
        })
        .await
    }

    /// The account's shown message `id` (not an action), with its quote
    /// and reactions.
    pub(crate) async fn dm_message(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<DmRow>, StoreError> {
        let (account, id) = (account.to_owned(), id.to_owned());
        self.read(move |c| shown(c, &account, &id)).await
    }

    /// The account's messages still pending, oldest first.
    pub(crate) async fn dm_pending(&self, account: &str) -> Result<Vec<DmRow>, StoreError> {
        let account = account.to_owned();
        self.read(move |c| {
            // Each leaves with its own text, not what an edit shows.
            let columns = COLUMNS.replace("COALESCE(shown, text)", "text");
            let sql = format!(
                "SELECT {columns} FROM dms WHERE account = ?1 AND outbox = 1
                 ORDER BY stored_at_ms, id"
            );
            rows(c, &sql, params![account])
        })
        .await
    }

    /// The account's pending message `id` left by `path` (`Ok`: `sent`,
    /// or the later state a receipt already set) or was refused for good
    /// (`Err(reason)`: `failed`); the message as shown now (for an
    /// action: the one it changes).
    pub(crate) async fn dm_sent(
        &self,
        account: &str,
        id: &str,
        outcome: Result<&str, String>,
    ) -> Result<Option<DmRow>, StoreError> {
        let (account, id) = (account.to_owned(), id.to_owned());
        let (state, path, error) = match outcome {
            Ok(path) => (DmState::Sent, Some(path.to_owned()), None),
            Err(reason) => (DmState::Failed, None, Some(reason)),
        };
        self.with(move |c| {
            let tx = c.transaction()?;
            // A receipt may have come first (a fast peer): the state it
            // set stays, the path is filled in.
            tx.execute(
                "UPDATE dms SET outbox = 0,
                     state = CASE WHEN state = 'pending' THEN ?3 ELSE state END,
                     path = COALESCE(path, ?4),
                     error = CASE WHEN state = 'pending' THEN ?5 ELSE error END
                 WHERE account = ?1 AND id = ?2 AND (outbox = 1 OR ?3 = 'sent')",
                params![account, id, state.as_str(), path, error],
            )?;
            // Out of the outbox: its sealed copies are not needed again.
            tx.execute(
                "DELETE FROM dm_sealed WHERE account = ?1 AND id = ?2",
                params![account, id],
            )?;
            // Text a newer edit or a deletion replaced while it waited
            // goes now; a failed action stops counting.
            let now = match one(&tx, &account, &id)? {
                Some(r) => settled(&tx, &account, &r)?,
                None => None,
            };
            tx.commit()?;
            Ok(now)
        })
        .await
    }

    /// Where the account's mailbox was fetched up to.
    pub(crate) async fn dm_fetched_seq(&self, account: &str) -> Result<u64, StoreError> {
        let account = account.to_owned();
        self.read(move |c| {
            let seq: Option<i64> = c
                .query_row(
                    "SELECT fetched_seq FROM dm_mailbox WHERE account = ?1",
                    params![account],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(seq.unwrap_or(0) as u64)
        })
        .await
    }

    /// In one transaction: the Olm state after opening a batch, the
    /// messages it carried (each id kept once), its receipts, and the
    /// mailbox position after it. A crash before this commits fetches the
    /// batch again; after it, nothing is opened twice.
    pub(crate) async fn dm_keep(
        &self,
        account: &str,
        olm: Pickled,
        messages: Vec<DmRow>,
        receipts: Vec<Receipt>,
        fetched_seq: u64,
    ) -> Result<Kept, StoreError> {
        let account = account.to_owned();
        self.with(move |c| {
            let tx = c.transaction()?;
            super::olm::save(&tx, &account, &olm)?;
            let mut kept = Kept::default();
            for mut m in messages {
                if m.state == DmState::Received && read_early(&tx, &account, &m)? {
                    m.state = DmState::Read;
                }
                if insert(&tx, &account, &mut m)? {
                    if let Some(now) = settled(&tx, &account, &m)? {
                        if m.is_action() {
                            kept.updated.push(now);
                        } else {
                            m = now;
                        }
                    }
                    kept.new.push(m);
                }
            }
            for r in receipts {
                for id in &r.ids {
                    let now = if r.by_me {
                        read_elsewhere(&tx, &account, &r.conversation, id, r.state)?
                    } else {
                        advance(&tx, &account, &r.conversation, id, r.state)?
                    };
                    kept.updated.extend(now);
                }
            }
            tx.execute(
                "INSERT INTO dm_mailbox (account, fetched_seq) VALUES (?1, ?2)
                 ON CONFLICT (account) DO UPDATE SET
                     fetched_seq = max(fetched_seq, excluded.fetched_seq)",
                params![account, fetched_seq as i64],
            )?;
            tx.commit()?;
            Ok(kept)
        })
        .await
    }

    /// The conversation's messages before `(before_ms, before_id)` (or
    /// the newest), at most `limit`, oldest first.
    pub(crate) async fn dm_history(
        &self,
        account: &str,
        conversation: &str,
        before: Option<(u64, String)>,
        limit: u32,
    ) -> Result<Vec<DmRow>, StoreError> {
        let (account, conversation) = (account.to_owned(), conversation.to_owned());
        self.read(move |c| {
            let (ms, id) = before.unwrap_or((i64::MAX as u64, String::new()));
            let sql = format!(
                "SELECT {COLUMNS} FROM dms
                 WHERE account = ?1 AND conversation_key = ?2 AND {SHOWN}
                   AND (sent_at_ms < ?3 OR (sent_at_ms = ?3 AND (?4 = '' OR id < ?4)))
                 ORDER BY sent_at_ms DESC, id DESC LIMIT ?5"
            );
            let key = conversation_key(&conversation);
            let mut found = rows(c, &sql, params![account, key, ms as i64, id, limit as i64])?;
            found.reverse();
            decorate(c, &account, &mut found)?;
            Ok(found)
        })
        .await
    }

    /// Every conversation of the account, the most recent first.
    pub(crate) async fn dm_conversations(
        &self,
        account: &str,
    ) -> Result<Vec<Conversation>, StoreError> {
        let account = account.to_owned();
        self.read(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM dms d WHERE account = ?1 AND id = (
                     SELECT id FROM dms WHERE account = ?1
                       AND conversation_key = d.conversation_key AND {SHOWN}
                     ORDER BY sent_at_ms DESC, id DESC LIMIT 1)
                 ORDER BY sent_at_ms DESC"
            );
            let mut last = rows(c, &sql, params![account])?;
            decorate(c, &account, &mut last)?;
            let mut unread = c.prepare_cached(&format!(
                "SELECT COUNT(*) FROM dms
                 WHERE account = ?1 AND conversation_key = ?2 AND state = 'received'
                   AND {SHOWN} AND deleted = 0"
            ))?;
            let mut out = Vec::with_capacity(last.len());
            for m in last {
                let key = conversation_key(&m.conversation);
                let n: i64 = unread.query_row(params![account, key], |r| r.get(0))?;
                out.push(Conversation {
                    conversation: m.conversation.clone(),
                    last: m,
                    unread: n as u64,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Marks the others' messages in the conversation read; the ids and
    /// senders of those that were not, to tell their senders.
    pub(crate) async fn dm_mark_read(
        &self,
        account: &str,
        conversation: &str,
    ) -> Result<Vec<DmRow>, StoreError> {
        let (account, conversation) = (account.to_owned(), conversation.to_owned());
        self.with(move |c| {
            let tx = c.transaction()?;
            let sql = format!(
                "SELECT {COLUMNS} FROM dms
                 WHERE account = ?1 AND conversation_key = ?2 AND state = 'received' AND {SHOWN}"
            );
            let key = conversation_key(&conversation);
            let mut read = rows(&tx, &sql, params![account, key])?;
            decorate(&tx, &account, &mut read)?;
            tx.execute(
                "UPDATE dms SET state = 'read'
                 WHERE account = ?1 AND conversation_key = ?2 AND state = 'received'",
                params![account, key],
            )?;
            tx.commit()?;
            for r in &mut read {
                r.state = DmState::Read;
            }
            Ok(read)
        })
        .await
    }

    /// The account's direct messages whose text holds every word of
    /// `words` (case-insensitive), newest first, at most `limit`.
    pub(crate) async fn dm_search(
        &self,
        account: &str,
        words: Vec<String>,
        limit: u32,
    ) -> Result<Vec<DmRow>, StoreError> {
        let account = account.to_owned();
        self.read(move |c| {
            let mut sql =
                format!("SELECT {COLUMNS} FROM dms WHERE account = ?1 AND {SHOWN} AND deleted = 0");
            let mut args: Vec<String> = vec![account.clone()];
            for w in &words {
                args.push(format!("%{}%", like_escape(w)));
                sql.push_str(&format!(
                    " AND COALESCE(shown, text) LIKE ?{} ESCAPE '\\'",
                    args.len()
                ));
            }
            sql.push_str(&format!(
                " ORDER BY sent_at_ms DESC, id DESC LIMIT {}",
                limit.min(200)
            ));
            let mut found = rows(c, &sql, rusqlite::params_from_iter(args))?;
            decorate(c, &account, &mut found)?;
            Ok(found)
        })
        .await
    }

    /// The newest `sent_at_ms` the account's DMs hold (the clock starts
    /// after it).
    pub(crate) async fn dm_latest_ms(&self, account: &str) -> Result<u64, StoreError> {
        let account = account.to_owned();
        self.read(move |c| {
            let ms: Option<i64> = c.query_row(
                "SELECT max(sent_at_ms) FROM dms WHERE account = ?1",
                params![account],
                |r| r.get(0),
            )?;
            Ok(ms.unwrap_or(0) as u64)
        })
        .await
    }
}
