//! Replies, edits, deletions and reactions in the SQLite backup, by the
//! rules of [`segchat_proto::edits`] (the same every node's store applies,
//! so the backup and every copy end alike whatever order things came in).
//!
//! An action is a row of its own, served by `history` like any message;
//! what it did is kept on the message it points at (`deleted`, the winning
//! edit). The backup redacts what a deletion or a newer edit replaced: the
//! row keeps its body's hash, which still verifies, and loses the text.

use rusqlite::{params, Connection, OptionalExtension};
use segchat_proto::edits::{allowed, RefKind, Target};
use segchat_proto::message::{Columns, Message};

use super::super::{StoreError, StoreResult, TargetRecord};

/// The columns [`message_at`] reads (after a `JOIN channels ch`).
pub(super) const MESSAGE_COLUMNS: &str =
    "m.id, ch.name, m.author, m.ts_ms, m.body, m.ticket, m.signature, m.re_kind, m.re_id, m.redacted, m.file";

/// A whole message from columns [`MESSAGE_COLUMNS`] starting at `at`.
pub(super) fn message_at(
    r: &rusqlite::Row<'_>,
    at: usize,
) -> rusqlite::Result<StoreResult<Message>> {
    let columns = Columns {
        id: r.get(at)?,
        channel: r.get(at + 1)?,
        author: r.get(at + 2)?,
        ts_ms: r.get(at + 3)?,
        body: r.get(at + 4)?,
        ticket: r.get(at + 5)?,
        signature: r.get(at + 6)?,
        re_kind: r.get(at + 7)?,
        re_id: r.get(at + 8)?,
        redacted: r.get(at + 9)?,
        file: r.get(at + 10)?,
    };
    Ok(columns.into_message().map_err(StoreError::Corrupt))
}

/// What the backup knows of message `id` in a channel.
pub(super) fn target(
    c: &Connection,
    channel_id: i64,
    id: &str,
) -> StoreResult<Option<TargetRecord>> {
    let found = c
        .prepare_cached(
            "SELECT author, re_kind, deleted FROM messages WHERE id = ?1 AND channel_id = ?2",
        )?
        .query_row(params![id, channel_id], |r| {
            let kind: Option<String> = r.get(1)?;
            Ok(TargetRecord {
                author: r.get(0)?,
                kind: kind.as_deref().and_then(RefKind::parse),
                deleted: r.get(2)?,
            })
        })
        .optional()?;
    Ok(found)
}

/// Whether `user` is the channel's owner or a moderator.
fn moderates(c: &Connection, channel_id: i64, user: &str) -> StoreResult<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM members mb JOIN users u ON u.id = mb.user_id
         WHERE mb.channel_id = ?1 AND u.username = ?2 AND mb.role IN ('owner', 'moderator')",
    )?
    .exists(params![channel_id, user])?)
}

/// Removes a stored message's body, keeping its hash (a message signed
/// before version 2 keeps it: its signature covers the body).
fn redact(c: &Connection, id: &str) -> StoreResult<()> {
    let m = c
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN channels ch ON ch.id = m.channel_id
             WHERE m.id = ?1"
        ))?
        .query_row(params![id], |r| message_at(r, 0))
        .optional()?;
    let Some(mut m) = m.transpose()? else {
        return Ok(());
    };
    if m.redacted.is_none() && m.redact() {
        c.prepare_cached(
            "UPDATE messages SET body = '', file = NULL, redacted = ?2 WHERE id = ?1",
        )?
        .execute(params![id, m.redacted])?;
    }
    Ok(())
}

/// Applies the stored action `a` to the stored message `to`, if allowed.
fn apply(c: &Connection, channel_id: i64, a: &Message, kind: RefKind, to: &str) -> StoreResult<()> {
    let Some(t) = target(c, channel_id, to)? else {
        return Ok(());
    };
    let (edited_ms, edit_id): (Option<i64>, Option<String>) = c
        .prepare_cached("SELECT edited_ms, edit_id FROM messages WHERE id = ?1")?
        .query_row(params![to], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let target = Target {
        channel: &a.channel,
        author: &t.author,
        kind: t.kind,
    };
    let moderator = kind == RefKind::Delete && moderates(c, channel_id, &a.author)?;
    if !allowed(kind, &a.author, &a.channel, target, moderator) {
        return Ok(());
    }
    let id = a.id.to_string();
    match kind {
        RefKind::Edit if t.deleted => redact(c, &id),
        RefKind::Edit => {
            let key = (a.ts_ms as i64, id.clone());
            match edited_ms.zip(edit_id) {
                Some(winner) if winner >= key => redact(c, &id),
                winner => {
                    c.prepare_cached(
                        "UPDATE messages SET edit_id = ?2, edited_ms = ?3 WHERE id = ?1",
                    )?
                    .execute(params![to, id, a.ts_ms as i64])?;
                    redact(c, &winner.map_or_else(|| to.to_owned(), |(_, w)| w))
                }
            }
        }
        RefKind::Delete if t.deleted => Ok(()),
        RefKind::Delete => {
            c.prepare_cached("UPDATE messages SET deleted = 1 WHERE id = ?1")?
                .execute(params![to])?;
            redact(c, to)?;
            let edits: Vec<String> = c
                .prepare_cached(
                    "SELECT id FROM messages WHERE re_id = ?1 AND re_kind = 'edit'
                       AND redacted IS NULL",
                )?
                .query_map(params![to], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for e in edits {
                redact(c, &e)?;
            }
            Ok(())
        }
        RefKind::Reply | RefKind::React | RefKind::Unreact => Ok(()),
    }
}

/// After `m` was stored (new, in the caller's transaction): applies it to
/// the message it points at if that is stored, and applies to `m` the
/// stored edits and deletions that point at it, in their order.
pub(super) fn settle(c: &Connection, channel_id: i64, m: &Message) -> StoreResult<()> {
    if let Some(r) = m.re.filter(|r| RefKind::is_action(Some(r.kind))) {
        return apply(c, channel_id, m, r.kind, &r.id.to_string());
    }
    let id = m.id.to_string();
    let waiting: Vec<StoreResult<Message>> = c
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN channels ch ON ch.id = m.channel_id
             WHERE m.re_id = ?1 AND m.re_kind IN ('edit', 'delete') AND m.channel_id = ?2
             ORDER BY m.ts_ms, m.id"
        ))?
        .query_map(params![id, channel_id], |r| message_at(r, 0))?
        .collect::<Result<_, _>>()?;
    for a in waiting {
        let a = a?;
        if let Some(r) = a.re {
            apply(c, channel_id, &a, r.kind, &id)?;
        }
    }
    Ok(())
}
