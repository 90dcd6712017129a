//! Friends and blocks on PostgreSQL: each side of a pair holds a row
//! about the other (`relations`), changed in pairs by compare-and-set.

use deadpool_postgres::GenericClient;
use segchat_proto::friends::{Pair, RelationKind};

use super::sql::{execute, row, rows};
use super::text;
use crate::store::{RelationRecord, StoreResult};

/// What others are to `user_id`, by name.
pub(super) async fn of(c: &impl GenericClient, user_id: i64) -> StoreResult<Vec<RelationRecord>> {
    rows(
        c,
        "SELECT r.other_id, u.username, r.kind, r.since_ms FROM relations r
         JOIN users u ON u.id = r.other_id
         WHERE r.user_id = $1 ORDER BY u.username_key",
        &[&user_id],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(RelationRecord {
            other_id: r.try_get(0)?,
            username: r.try_get(1)?,
            kind: text::relation(r.try_get(2)?)?,
            since_ms: r.try_get::<_, i64>(3)? as u64,
        })
    })
    .collect()
}

async fn half(
    c: &impl GenericClient,
    user_id: i64,
    other_id: i64,
) -> StoreResult<Option<RelationKind>> {
    let found = row(
        c,
        "SELECT kind FROM relations WHERE user_id = $1 AND other_id = $2",
        &[&user_id, &other_id],
    )
    .await?;
    match found {
        Some(r) => Ok(Some(text::relation(r.try_get(0)?)?)),
        None => Ok(None),
    }
}

/// Both halves of the relation between two users.
pub(super) async fn pair(c: &impl GenericClient, user_id: i64, other_id: i64) -> StoreResult<Pair> {
    Ok(Pair {
        mine: half(c, user_id, other_id).await?,
        theirs: half(c, other_id, user_id).await?,
    })
}

async fn set_half(
    c: &impl GenericClient,
    user_id: i64,
    other_id: i64,
    kind: Option<RelationKind>,
    now_ms: u64,
) -> StoreResult<()> {
    match kind {
        Some(kind) => {
            execute(
                c,
                "INSERT INTO relations (user_id, other_id, kind, since_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, other_id) DO UPDATE SET kind = excluded.kind,
                     since_ms = excluded.since_ms",
                &[&user_id, &other_id, &kind.as_str(), &(now_ms as i64)],
            )
            .await?
        }
        None => {
            execute(
                c,
                "DELETE FROM relations WHERE user_id = $1 AND other_id = $2",
                &[&user_id, &other_id],
            )
            .await?
        }
    };
    Ok(())
}

/// Makes the pair `new` if it is still `expected`; whether it was.
pub(super) async fn change(
    c: &mut deadpool_postgres::Client,
    user_id: i64,
    other_id: i64,
    expected: Pair,
    new: Pair,
    now_ms: u64,
) -> StoreResult<bool> {
    let tx = c.transaction().await?;
    // The pair may have no row to lock: lock both users' rows instead,
    // lowest id first, so concurrent changes to one pair take turns and
    // two pairs sharing a user cannot deadlock.
    rows(
        &tx,
        "SELECT id FROM users WHERE id IN ($1, $2) ORDER BY id FOR UPDATE",
        &[&user_id, &other_id],
    )
    .await?;
    if pair(&tx, user_id, other_id).await? != expected {
        return Ok(false);
    }
    if new.mine != expected.mine {
        set_half(&tx, user_id, other_id, new.mine, now_ms).await?;
    }
    if new.theirs != expected.theirs {
        set_half(&tx, other_id, user_id, new.theirs, now_ms).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// The ids of the users who blocked `user_id`.
pub(super) async fn blocked_by(c: &impl GenericClient, user_id: i64) -> StoreResult<Vec<i64>> {
    rows(
        c,
        "SELECT user_id FROM relations WHERE other_id = $1 AND kind = 'blocked' ORDER BY user_id",
        &[&user_id],
    )
    .await?
    .iter()
    .map(|r| Ok(r.try_get(0)?))
    .collect()
}
