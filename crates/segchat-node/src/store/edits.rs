//! Replies, edits, deletions and reactions in the local store, by the
//! rules of [`segchat_proto::edits`]: every store ends in the same state
//! from the same set of messages, whatever order they arrived in.
//!
//! An action is a row of its own (so sync, backup and the outbox carry it
//! like any message), and what it did is kept on the message it points at:
//! `shown` (the winning edit's text, '' once deleted), `edit_id` /
//! `edited_ms` (the winning edit) and `deleted`. Text that a deletion or a
//! newer edit replaced is redacted: the row keeps the body's hash, not the
//! body, and the search index forgets it in the same transaction.
//!
//! Invariant: the search index holds, for a row it indexed,
//! `COALESCE(shown, body)` as it was then; the only writes that change
//! either on an indexed row are here, and each takes the old text out of
//! the index first (an FTS5 external-content delete needs the exact old
//! values).

use rusqlite::{params, Connection, OptionalExtension};
use segchat_proto::edits::{allowed, RefKind, Target};
use segchat_proto::message::Message;
use uuid::Uuid;

use super::rows::{full_message, tally, MessageRow, Quote, MESSAGE_COLUMNS};
use super::StoreError;

/// What the store knows of a shown message an action points at.
struct Shown {
    local_id: i64,
    channel: String,
    author: String,
    kind: Option<RefKind>,
    text: String,
    deleted: bool,
    /// The winning edit so far: its order key.
    edit: Option<(u64, String)>,
}

fn shown(c: &Connection, id: &str) -> Result<Option<Shown>, StoreError> {
    let found = c
        .prepare_cached(
            "SELECT local_id, channel, author, re_kind, COALESCE(shown, body), deleted,
                    edited_ms, edit_id
             FROM messages WHERE id = ?1",
        )?
        .query_row(params![id], |r| {
            let kind: Option<String> = r.get(3)?;
            let edited: Option<i64> = r.get(6)?;
            let edit_id: Option<String> = r.get(7)?;
            Ok(Shown {
                local_id: r.get(0)?,
                channel: r.get(1)?,
                author: r.get(2)?,
                kind: kind.as_deref().and_then(RefKind::parse),
                text: r.get(4)?,
                deleted: r.get(5)?,
                edit: edited.zip(edit_id).map(|(t, id)| (t as u64, id)),
            })
        })
        .optional()?;
    Ok(found)
}

/// Whether `user` owns `channel` (as this node last learned the channel).
/// Moderators are not known to nodes yet; the server holds roles.
fn moderates(c: &Connection, channel: &str, user: &str) -> Result<bool, StoreError> {
    let owner: Option<String> = c
        .prepare_cached("SELECT json_extract(info, '$.owner') FROM channel_cache WHERE name = ?1")?
        .query_row(params![channel], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(owner.as_deref() == Some(user))
}

/// Whether the search index holds this row now.
fn indexed(c: &Connection, s: &Shown) -> Result<bool, StoreError> {
    if s.deleted || RefKind::is_action(s.kind) {
        return Ok(false);
    }
    let through: i64 = c
        .prepare_cached("SELECT indexed_through FROM search_progress WHERE id = 1")?
        .query_row([], |r| r.get(0))?;
    Ok(s.local_id <= through)
}

/// Changes what a shown message shows, keeping the search index exact.
fn set_shown(c: &Connection, s: &Shown, text: &str, deleted: bool) -> Result<(), StoreError> {
    let was_indexed = indexed(c, s)?;
    if was_indexed {
        c.prepare_cached(
            "INSERT INTO messages_fts (messages_fts, rowid, body, author, channel)
             VALUES ('delete', ?1, ?2, ?3, ?4)",
        )?
        .execute(params![s.local_id, s.text, s.author, s.channel])?;
    }
    c.prepare_cached("UPDATE messages SET shown = ?2, deleted = ?3 WHERE local_id = ?1")?
        .execute(params![s.local_id, text, deleted])?;
    if was_indexed && !deleted {
        c.prepare_cached(
            "INSERT INTO messages_fts (rowid, body, author, channel) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![s.local_id, text, s.author, s.channel])?;
    }
    Ok(())
}

/// Removes a stored message's body, keeping its hash (see
/// [`Message::redact`]); a message signed before version 2 keeps its body
/// (its signature covers it) and is only hidden.
fn redact(c: &Connection, id: &str) -> Result<(), StoreError> {
    let m = c
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"
        ))?
        .query_row(params![id], full_message)
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

/// Applies action `a` (stored) to the shown message `t`, if the rules
/// allow it.
fn apply(c: &Connection, a: &Message, kind: RefKind, t: &Shown) -> Result<(), StoreError> {
    let target = Target {
        channel: &t.channel,
        author: &t.author,
        kind: t.kind,
    };
    let moderator = kind == RefKind::Delete && moderates(c, &a.channel, &a.author)?;
    if !allowed(kind, &a.author, &a.channel, target, moderator) {
        tracing::debug!(id = %a.id, ?kind, "an action the rules refuse is kept but not applied");
        return Ok(());
    }
    let id = a.id.to_string();
    match kind {
        RefKind::Edit if t.deleted => redact(c, &id),
        RefKind::Edit => {
            let key = (a.ts_ms, id.clone());
            match &t.edit {
                Some(winner) if *winner >= key => redact(c, &id),
                winner => {
                    let replaced = match winner {
                        Some((_, edit)) => edit.clone(),
                        None => own_id(c, t.local_id)?,
                    };
                    set_shown(c, t, &a.body, false)?;
                    c.prepare_cached(
                        "UPDATE messages SET edit_id = ?2, edited_ms = ?3 WHERE local_id = ?1",
                    )?
                    .execute(params![t.local_id, id, a.ts_ms as i64])?;
                    redact(c, &replaced)
                }
            }
        }
        RefKind::Delete if t.deleted => Ok(()),
        RefKind::Delete => {
            set_shown(c, t, "", true)?;
            let target = own_id(c, t.local_id)?;
            redact(c, &target)?;
            let edits: Vec<String> = c
                .prepare_cached(
                    "SELECT id FROM messages WHERE re_id = ?1 AND re_kind = 'edit'
                       AND redacted IS NULL",
                )?
                .query_map(params![target], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for e in edits {
                redact(c, &e)?;
            }
            Ok(())
        }
        // Replies show their quote and reactions are counted when read.
        RefKind::Reply | RefKind::React | RefKind::Unreact => Ok(()),
    }
}

fn own_id(c: &Connection, local_id: i64) -> Result<String, StoreError> {
    Ok(
        c.prepare_cached("SELECT id FROM messages WHERE local_id = ?1")?
            .query_row(params![local_id], |r| r.get(0))?,
    )
}

/// After `m` was stored (new here, in the caller's transaction): applies
/// it to the message it points at, if that is stored, and applies to `m`
/// every stored action that points at it, in their order.
pub(super) fn settle(c: &Connection, m: &Message) -> Result<(), StoreError> {
    if let Some(r) = m.re.filter(|r| RefKind::is_action(Some(r.kind))) {
        if let Some(t) = shown(c, &r.id.to_string())? {
            apply(c, m, r.kind, &t)?;
        }
        return Ok(());
    }
    let id = m.id.to_string();
    let waiting: Vec<Result<Message, StoreError>> = c
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE re_id = ?1 AND re_kind IN ('edit', 'delete')
             ORDER BY ts_ms, id"
        ))?
        .query_map(params![id], full_message)?
        .collect::<Result<_, _>>()?;
    for a in waiting {
        let a = a?;
        let Some(r) = a.re else { continue };
        // Re-read each time: the previous action may have changed it.
        if let Some(t) = shown(c, &id)? {
            apply(c, &a, r.kind, &t)?;
        }
    }
    Ok(())
}

/// The user this node is signed in as, if any.
fn me(c: &Connection) -> Result<Option<String>, StoreError> {
    Ok(
        c.prepare_cached("SELECT username FROM session WHERE id = 1")?
            .query_row([], |r| r.get(0))
            .optional()?,
    )
}

/// Whether `body` mentions `user` as `@user`, in any case (usernames are
/// unique whatever their case), not inside a longer name or an address
/// (`@user.name`, `me@user`); a full stop after it ends the mention.
pub fn mentions(body: &str, user: &str) -> bool {
    let name_char = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let (body, needle) = (body.to_lowercase(), format!("@{}", user.to_lowercase()));
    body.match_indices(&needle).any(|(at, _)| {
        let before_ok = body[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !name_char(c) && c != '.');
        let mut after = body[at + needle.len()..].chars();
        let after_ok = match after.next() {
            None => true,
            Some('.') => after.next().is_none_or(|c| !name_char(c)),
            Some(c) => !name_char(c),
        };
        before_ok && after_ok
    })
}

/// Fills in what rows show of others: the quote of a reply, reactions by
/// emoji (a user's latest react/unreact for it decides) and whether the
/// body mentions this node's user.
pub(super) fn decorate(c: &Connection, rows: &mut [MessageRow]) -> Result<(), StoreError> {
    let me = me(c)?;
    let mut quote = c.prepare_cached(
        "SELECT id, author, COALESCE(shown, body), deleted, json_extract(file, '$.name')
         FROM messages WHERE id = ?1",
    )?;
    let mut reactions = c.prepare_cached(
        "SELECT body, author, re_kind FROM messages
         WHERE re_id = ?1 AND re_kind IN ('react', 'unreact')
         ORDER BY ts_ms, id",
    )?;
    for row in rows.iter_mut() {
        if let Some(to) = &row.reply_to {
            row.quote = quote
                .query_row(params![to], |r| {
                    Ok(Quote {
                        id: r.get(0)?,
                        author: r.get(1)?,
                        body: r.get(2)?,
                        deleted: r.get(3)?,
                        file: r.get(4)?,
                    })
                })
                .optional()?;
        }
        row.mentions_me = !row.deleted && me.as_deref().is_some_and(|u| mentions(&row.body, u));
        if row.deleted {
            continue;
        }
        let acts = reactions
            .query_map(params![row.id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)? == "react"))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        row.reactions = tally(acts, |u| me.as_deref() == Some(u));
    }
    Ok(())
}

/// The id a message's action points at, if it is an edit, deletion or
/// reaction (whose effect shows on that message instead).
pub fn acted_on(m: &Message) -> Option<Uuid> {
    m.re.filter(|r| RefKind::is_action(Some(r.kind)))
        .map(|r| r.id)
}

#[cfg(test)]
mod tests;
