//! Direct messages, decrypted, per account on this node: the outbox (rows
//! the account sent still `pending`), states that only move forward, and
//! what arrived, kept in one transaction with the Olm state that opened
//! it and the mailbox position it came from.

use rusqlite::{params, Connection, OptionalExtension};
use segchat_proto::edits::RefKind;
use serde::Serialize;

use super::dm_edits::{decorate, settle, SHOWN};
use super::rows::{Quote, Reaction};
use super::{Store, StoreError};
use crate::dm::olm::Pickled;

/// How far a direct message got. Sent ones move pending → sent →
/// delivered → read (or to failed, from pending only); received ones
/// received → read. A state never moves back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DmState {
    #[default]
    Pending,
    Failed,
    Sent,
    Received,
    Delivered,
    Read,
}

impl DmState {
    pub fn as_str(self) -> &'static str {
        match self {
            DmState::Pending => "pending",
            DmState::Failed => "failed",
            DmState::Sent => "sent",
            DmState::Received => "received",
            DmState::Delivered => "delivered",
            DmState::Read => "read",
        }
    }

    fn parse(s: &str) -> Result<DmState, StoreError> {
        Ok(match s {
            "pending" => DmState::Pending,
            "failed" => DmState::Failed,
            "sent" => DmState::Sent,
            "received" => DmState::Received,
            "delivered" => DmState::Delivered,
            "read" => DmState::Read,
            other => return Err(StoreError::Corrupt(format!("dm state {other:?}"))),
        })
    }
}

/// A direct message as this node keeps and shows it: a message or a
/// reply as the edits, deletion and reactions pointing at it left it, or
/// (only inside the node: the outbox, what arrived) one of those actions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DmRow {
    pub id: String,
    /// The other members, sorted, joined by `,`.
    pub conversation: String,
    pub sender: String,
    pub sent_at_ms: u64,
    /// The text shown: the latest edit's, '' once deleted (of an action:
    /// the edit's text, the emoji, or '' for a deletion).
    pub text: String,
    pub state: DmState,
    /// `server` or `p2p`, once it left or arrived.
    pub path: Option<String>,
    /// Why it failed, for a failed one.
    pub error: Option<String>,
    /// What it does to another message and which (a reply, an edit, …).
    #[serde(skip)]
    pub re: Option<(RefKind, String)>,
    /// The message this one replies to.
    pub reply_to: Option<String>,
    /// That message as it is shown now, if this device has it.
    pub quote: Option<Quote>,
    /// When it was last edited.
    pub edited_ms: Option<u64>,
    pub deleted: bool,
    pub reactions: Vec<Reaction>,
}

impl DmRow {
    /// Whether it changes another message (an edit, a deletion, a
    /// reaction) rather than being shown itself.
    pub fn is_action(&self) -> bool {
        RefKind::is_action(self.re.as_ref().map(|r| r.0))
    }

    /// The message an action changes.
    pub fn target(&self) -> Option<&str> {
        self.re
            .as_ref()
            .filter(|_| self.is_action())
            .map(|r| r.1.as_str())
    }
}

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

/// A receipt to apply: these ids (sent by the account, in conversation)
/// reached `state`; or, `by_me`, the account read these others' messages
/// on another of its devices.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub conversation: String,
    pub ids: Vec<String>,
    pub state: DmState,
    pub by_me: bool,
}

/// The key of a conversation named `conversation` (its other members,
/// joined by `,`): the names lowercased, sorted, each once. Rows are
/// found by it, so a name typed in another case is the same conversation.
pub(crate) fn conversation_key(conversation: &str) -> String {
    let mut names: Vec<String> = conversation.split(',').map(str::to_lowercase).collect();
    names.sort();
    names.dedup();
    names.join(",")
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

const COLUMNS: &str = "id, conversation, sender, sent_at_ms, COALESCE(shown, text), state, \
     path, error, re_kind, re_id, edited_ms, deleted";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(DmRow, String)> {
    let state: String = r.get(5)?;
    let kind: Option<String> = r.get(8)?;
    let re_id: Option<String> = r.get(9)?;
    let re = kind.as_deref().and_then(RefKind::parse).zip(re_id);
    Ok((
        DmRow {
            id: r.get(0)?,
            conversation: r.get(1)?,
            sender: r.get(2)?,
            sent_at_ms: r.get::<_, i64>(3)? as u64,
            text: r.get(4)?,
            path: r.get(6)?,
            error: r.get(7)?,
            reply_to: re
                .as_ref()
                .filter(|r| r.0 == RefKind::Reply)
                .map(|r| r.1.clone()),
            re,
            edited_ms: r.get::<_, Option<i64>>(10)?.map(|t| t as u64),
            deleted: r.get(11)?,
            ..DmRow::default()
        },
        state,
    ))
}

fn rows(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<DmRow>, StoreError> {
    let mut stmt = c.prepare_cached(sql)?;
    let found = stmt.query_map(params, row)?;
    let mut out = Vec::new();
    for f in found {
        let (mut r, state) = f?;
        r.state = DmState::parse(&state)?;
        out.push(r);
    }
    Ok(out)
}

fn one(c: &Connection, account: &str, id: &str) -> Result<Option<DmRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM dms WHERE account = ?1 AND id = ?2");
    Ok(rows(c, &sql, params![account, id])?.pop())
}

/// The shown message `id` as the API shows it (its quote and reactions
/// filled in); `None` for an action or one this device does not have.
fn shown(c: &Connection, account: &str, id: &str) -> Result<Option<DmRow>, StoreError> {
    let Some(row) = one(c, account, id)?.filter(|r| !r.is_action()) else {
        return Ok(None);
    };
    let mut found = [row];
    decorate(c, account, &mut found)?;
    let [row] = found;
    Ok(Some(row))
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
              stored_at_ms, re_kind, re_id, conversation_key, outbox)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
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
            r.state == DmState::Pending
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

/// Marks another member's message `id` (in `conversation`) read here
/// because the account read it on another device; the row, if it moved.
fn read_elsewhere(
    c: &Connection,
    account: &str,
    conversation: &str,
    id: &str,
    state: DmState,
) -> Result<Option<DmRow>, StoreError> {
    if state != DmState::Read {
        return Ok(None);
    }
    let moved = c.execute(
        "UPDATE dms SET state = 'read'
         WHERE account = ?1 AND id = ?2 AND conversation_key = ?3 AND state = 'received'",
        params![account, id, conversation_key(conversation)],
    )?;
    if moved == 0 {
        return Ok(None);
    }
    shown(c, account, id)
}

/// Moves the account's own message `id` (in `conversation`) to `state`
/// if that is forward; the row as it is now, if it moved.
fn advance(
    c: &Connection,
    account: &str,
    conversation: &str,
    id: &str,
    state: DmState,
) -> Result<Option<DmRow>, StoreError> {
    let Some(now) = one(c, account, id)? else {
        return Ok(None);
    };
    let forward = now.state < state && now.state != DmState::Failed;
    let same = conversation_key(&now.conversation) == conversation_key(conversation);
    if now.sender != account || !same || !forward {
        return Ok(None);
    }
    c.execute(
        "UPDATE dms SET state = ?3 WHERE account = ?1 AND id = ?2",
        params![account, id, state.as_str()],
    )?;
    shown(c, account, id)
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
