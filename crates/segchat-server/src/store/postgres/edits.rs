//! Replies, edits, deletions and reactions in the PostgreSQL backup: the
//! same rules, statement for statement, as the SQLite backend's `edits.rs`
//! (see its module doc), so both backends end alike whatever order things
//! came in. Runs inside the inserting transaction, which holds the
//! channel's lock.

use deadpool_postgres::GenericClient;
use segchat_proto::edits::{allowed, RefKind, Target};
use segchat_proto::message::{Columns, Message};
use tokio_postgres::Row;

use super::sql::{execute, row, rows};
use crate::store::{StoreError, StoreResult, TargetRecord};

/// The columns [`message_at`] reads (after a `JOIN channels ch`).
pub(super) const MESSAGE_COLUMNS: &str =
    "m.id, ch.name, m.author, m.ts_ms, m.body, m.ticket, m.signature, m.re_kind, m.re_id, m.redacted, m.file";

/// A whole message from columns [`MESSAGE_COLUMNS`] starting at `at`.
pub(super) fn message_at(r: &Row, at: usize) -> StoreResult<Message> {
    let body: Vec<u8> = r.try_get(at + 4)?;
    let columns = Columns {
        id: r.try_get(at)?,
        channel: r.try_get(at + 1)?,
        author: r.try_get(at + 2)?,
        ts_ms: r.try_get(at + 3)?,
        body: String::from_utf8(body)
            .map_err(|_| StoreError::Corrupt("message body is not UTF-8".into()))?,
        ticket: r.try_get(at + 5)?,
        signature: r.try_get(at + 6)?,
        re_kind: r.try_get(at + 7)?,
        re_id: r.try_get(at + 8)?,
        redacted: r.try_get(at + 9)?,
        file: r.try_get(at + 10)?,
    };
    columns.into_message().map_err(StoreError::Corrupt)
}

/// What the backup knows of message `id` in a channel.
pub(super) async fn target(
    c: &impl GenericClient,
    channel_id: i64,
    id: &str,
) -> StoreResult<Option<TargetRecord>> {
    let found = row(
        c,
        "SELECT author, re_kind, deleted FROM messages WHERE id = $1 AND channel_id = $2",
        &[&id, &channel_id],
    )
    .await?;
    found
        .map(|r| {
            let kind: Option<String> = r.try_get(1)?;
            Ok(TargetRecord {
                author: r.try_get(0)?,
                kind: kind.as_deref().and_then(RefKind::parse),
                deleted: r.try_get(2)?,
            })
        })
        .transpose()
}

/// Whether `user` is the channel's owner or a moderator.
async fn moderates(c: &impl GenericClient, channel_id: i64, user: &str) -> StoreResult<bool> {
    Ok(row(
        c,
        "SELECT 1 FROM members mb JOIN users u ON u.id = mb.user_id
         WHERE mb.channel_id = $1 AND u.username = $2 AND mb.role IN ('owner', 'moderator')",
        &[&channel_id, &user],
    )
    .await?
    .is_some())
}

/// Removes a stored message's body, keeping its hash (a message signed
/// before version 2 keeps it: its signature covers the body).
async fn redact(c: &impl GenericClient, id: &str) -> StoreResult<()> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN channels ch ON ch.id = m.channel_id
         WHERE m.id = $1"
    );
    let Some(found) = row(c, &sql, &[&id]).await? else {
        return Ok(());
    };
    let mut m = message_at(&found, 0)?;
    if m.redacted.is_none() && m.redact() {
        execute(
            c,
            "UPDATE messages SET body = ''::bytea, file = NULL, redacted = $2 WHERE id = $1",
            &[&id, &m.redacted],
        )
        .await?;
    }
    Ok(())
}

/// Applies the stored action `a` to the stored message `to`, if allowed.
async fn apply(
    c: &impl GenericClient,
    channel_id: i64,
    a: &Message,
    kind: RefKind,
    to: &str,
) -> StoreResult<()> {
    let Some(t) = target(c, channel_id, to).await? else {
        return Ok(());
    };
    let Some(current) = row(
        c,
        "SELECT edited_ms, edit_id FROM messages WHERE id = $1",
        &[&to],
    )
    .await?
    else {
        return Ok(());
    };
    let edited_ms: Option<i64> = current.try_get(0)?;
    let edit_id: Option<String> = current.try_get(1)?;
    let target = Target {
        channel: &a.channel,
        author: &t.author,
        kind: t.kind,
    };
    let moderator = kind == RefKind::Delete && moderates(c, channel_id, &a.author).await?;
    if !allowed(kind, &a.author, &a.channel, target, moderator) {
        return Ok(());
    }
    let id = a.id.to_string();
    match kind {
        RefKind::Edit if t.deleted => redact(c, &id).await,
        RefKind::Edit => {
            let key = (a.ts_ms as i64, id.clone());
            match edited_ms.zip(edit_id) {
                Some(winner) if winner >= key => redact(c, &id).await,
                winner => {
                    execute(
                        c,
                        "UPDATE messages SET edit_id = $2, edited_ms = $3 WHERE id = $1",
                        &[&to, &id, &(a.ts_ms as i64)],
                    )
                    .await?;
                    redact(c, &winner.map_or_else(|| to.to_owned(), |(_, w)| w)).await
                }
            }
        }
        RefKind::Delete if t.deleted => Ok(()),
        RefKind::Delete => {
            execute(
                c,
                "UPDATE messages SET deleted = TRUE WHERE id = $1",
                &[&to],
            )
            .await?;
            redact(c, to).await?;
            let edits = rows(
                c,
                "SELECT id FROM messages WHERE re_id = $1 AND re_kind = 'edit'
                   AND redacted IS NULL",
                &[&to],
            )
            .await?;
            for e in edits {
                let e: String = e.try_get(0)?;
                redact(c, &e).await?;
            }
            Ok(())
        }
        RefKind::Reply | RefKind::React | RefKind::Unreact => Ok(()),
    }
}

/// Whether storing `messages` (with ids `ids`) needs no settling: none of
/// them edits or deletes, and no stored edit or deletion waits for one of
/// them. Then [`settle`] would do nothing for any of them, and the batch
/// can be stored in one statement.
pub(super) async fn settles_nothing(
    c: &impl GenericClient,
    channel_id: i64,
    messages: &[Message],
    ids: &[String],
) -> StoreResult<bool> {
    let acts = messages
        .iter()
        .any(|m| matches!(m.re.map(|r| r.kind), Some(RefKind::Edit | RefKind::Delete)));
    if acts {
        return Ok(false);
    }
    let waiting = row(
        c,
        "SELECT 1 FROM messages WHERE re_id = ANY($1) AND re_kind IN ('edit', 'delete')
           AND channel_id = $2 LIMIT 1",
        &[&ids, &channel_id],
    )
    .await?;
    Ok(waiting.is_none())
}

/// After `m` was stored (new, in the caller's transaction): applies it to
/// the message it points at if that is stored, and applies to `m` the
/// stored edits and deletions that point at it, in their order.
pub(super) async fn settle(
    c: &impl GenericClient,
    channel_id: i64,
    m: &Message,
) -> StoreResult<()> {
    if let Some(r) = m.re.filter(|r| RefKind::is_action(Some(r.kind))) {
        return apply(c, channel_id, m, r.kind, &r.id.to_string()).await;
    }
    let id = m.id.to_string();
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN channels ch ON ch.id = m.channel_id
         WHERE m.re_id = $1 AND m.re_kind IN ('edit', 'delete') AND m.channel_id = $2
         ORDER BY m.ts_ms, m.id COLLATE \"C\""
    );
    let waiting = rows(c, &sql, &[&id, &channel_id]).await?;
    for w in waiting {
        let a = message_at(&w, 0)?;
        if let Some(r) = a.re {
            apply(c, channel_id, &a, r.kind, &id).await?;
        }
    }
    Ok(())
}
