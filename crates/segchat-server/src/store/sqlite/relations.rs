//! Friends and blocks on SQLite: each side of a pair holds a row about
//! the other (`relations`), changed in pairs by compare-and-set.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use segchat_proto::friends::{Pair, RelationKind};

use super::text;
use crate::store::{RelationRecord, StoreResult};

/// What others are to `user_id`, by name.
pub(super) fn of(c: &Connection, user_id: i64) -> StoreResult<Vec<RelationRecord>> {
    let mut stmt = c.prepare_cached(
        "SELECT r.other_id, u.username, r.kind, r.since_ms FROM relations r
         JOIN users u ON u.id = r.other_id
         WHERE r.user_id = ?1 ORDER BY u.username_key",
    )?;
    let rows = stmt.query_map(params![user_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (other_id, username, kind, since_ms) = row?;
        out.push(RelationRecord {
            other_id,
            username,
            kind: text::relation(&kind)?,
            since_ms: since_ms as u64,
        });
    }
    Ok(out)
}

fn half(c: &Connection, user_id: i64, other_id: i64) -> StoreResult<Option<RelationKind>> {
    let kind: Option<String> = c
        .prepare_cached("SELECT kind FROM relations WHERE user_id = ?1 AND other_id = ?2")?
        .query_row(params![user_id, other_id], |r| r.get(0))
        .optional()?;
    kind.as_deref().map(text::relation).transpose()
}

/// Both halves of the relation between two users.
pub(super) fn pair(c: &Connection, user_id: i64, other_id: i64) -> StoreResult<Pair> {
    Ok(Pair {
        mine: half(c, user_id, other_id)?,
        theirs: half(c, other_id, user_id)?,
    })
}

fn set_half(
    tx: &Transaction<'_>,
    user_id: i64,
    other_id: i64,
    kind: Option<RelationKind>,
    now_ms: u64,
) -> StoreResult<()> {
    match kind {
        Some(kind) => tx
            .prepare_cached(
                "INSERT INTO relations (user_id, other_id, kind, since_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id, other_id) DO UPDATE SET kind = excluded.kind,
                     since_ms = excluded.since_ms",
            )?
            .execute(params![user_id, other_id, kind.as_str(), now_ms as i64])?,
        None => tx
            .prepare_cached("DELETE FROM relations WHERE user_id = ?1 AND other_id = ?2")?
            .execute(params![user_id, other_id])?,
    };
    Ok(())
}

/// Makes the pair `new` if it is still `expected`; whether it was.
pub(super) fn change(
    c: &mut Connection,
    user_id: i64,
    other_id: i64,
    expected: Pair,
    new: Pair,
    now_ms: u64,
) -> StoreResult<bool> {
    // IMMEDIATE: the write lock is taken before the read, so nobody
    // changes the pair between the comparison and the writes.
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if pair(&tx, user_id, other_id)? != expected {
        return Ok(false);
    }
    if new.mine != expected.mine {
        set_half(&tx, user_id, other_id, new.mine, now_ms)?;
    }
    if new.theirs != expected.theirs {
        set_half(&tx, other_id, user_id, new.theirs, now_ms)?;
    }
    tx.commit()?;
    Ok(true)
}

/// The ids of the users who blocked `user_id`.
pub(super) fn blocked_by(c: &Connection, user_id: i64) -> StoreResult<Vec<i64>> {
    let mut stmt = c.prepare_cached(
        "SELECT user_id FROM relations WHERE other_id = ?1 AND kind = 'blocked' ORDER BY user_id",
    )?;
    let rows = stmt.query_map(params![user_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<i64>, _>>()?)
}
