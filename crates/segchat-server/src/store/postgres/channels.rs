//! Channels on PostgreSQL: the registry, members and invites (the backup
//! of their messages is `messages.rs`).

use deadpool_postgres::GenericClient;
use segchat_proto::types::Role;

use super::is_unique_violation;
use super::records::{channel_record, CHANNEL_SELECT};
use super::sql::{execute, row, rows};
use crate::store::text;
use crate::store::{
    ChannelRecord, ChannelUpdate, MemberRecord, NewChannel, StoreError, StoreResult,
};

/// Creates a channel with its owner as its first member.
pub(super) async fn create(
    c: &mut deadpool_postgres::Client,
    ch: &NewChannel,
) -> StoreResult<ChannelRecord> {
    let tx = c.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO channels (name, owner_id, visibility, allow_visitors, created_at_ms)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .await?;
    let created = ch.created_at_ms as i64;
    let inserted = tx
        .query_one(
            &stmt,
            &[
                &ch.name,
                &ch.owner_id,
                &ch.visibility.as_str(),
                &ch.allow_visitors,
                &created,
            ],
        )
        .await;
    let id: i64 = match inserted {
        Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict("channel")),
        Err(e) => return Err(e.into()),
        Ok(r) => r.try_get(0)?,
    };
    execute(
        &tx,
        "INSERT INTO members (channel_id, user_id, role, joined_at_ms)
         VALUES ($1, $2, 'owner', $3)",
        &[&id, &ch.owner_id, &created],
    )
    .await?;
    let sql = format!("{CHANNEL_SELECT} WHERE c.id = $1");
    let record = row(&tx, &sql, &[&id])
        .await?
        .ok_or_else(|| StoreError::Corrupt("a created channel is missing".into()))?;
    let record = channel_record(&record)?;
    tx.commit().await?;
    Ok(record)
}

/// The channel named `name`.
pub(super) async fn by_name(
    c: &impl GenericClient,
    name: &str,
) -> StoreResult<Option<ChannelRecord>> {
    let sql = format!("{CHANNEL_SELECT} WHERE c.name = $1");
    row(c, &sql, &[&name])
        .await?
        .map(|r| channel_record(&r))
        .transpose()
}

/// Every channel, by name.
pub(super) async fn list(c: &impl GenericClient) -> StoreResult<Vec<ChannelRecord>> {
    let sql = format!("{CHANNEL_SELECT} ORDER BY c.name");
    rows(c, &sql, &[])
        .await?
        .iter()
        .map(channel_record)
        .collect()
}

/// Changes what `change` names; the channel after it, `None` if there is none.
pub(super) async fn update(
    c: &mut deadpool_postgres::Client,
    channel_id: i64,
    change: &ChannelUpdate,
) -> StoreResult<Option<ChannelRecord>> {
    let tx = c.transaction().await?;
    // Each absent field keeps its value (COALESCE with NULL).
    let changed = execute(
        &tx,
        "UPDATE channels SET
             title = COALESCE($2, title),
             topic = COALESCE($3, topic),
             visibility = COALESCE($4, visibility),
             allow_visitors = COALESCE($5, allow_visitors)
         WHERE id = $1",
        &[
            &channel_id,
            &change.title,
            &change.topic,
            &change.visibility.map(|v| v.as_str()),
            &change.allow_visitors,
        ],
    )
    .await?;
    if changed == 0 {
        return Ok(None);
    }
    let sql = format!("{CHANNEL_SELECT} WHERE c.id = $1");
    let record = row(&tx, &sql, &[&channel_id])
        .await?
        .map(|r| channel_record(&r))
        .transpose()?;
    tx.commit().await?;
    Ok(record)
}

/// Deletes a channel with its backup, invites and members; whether it was there.
pub(super) async fn delete(
    c: &mut deadpool_postgres::Client,
    channel_id: i64,
) -> StoreResult<bool> {
    let tx = c.transaction().await?;
    // Explicit rather than left to ON DELETE CASCADE, as in SQLite.
    for table in ["messages", "invites", "members"] {
        let sql = format!("DELETE FROM {table} WHERE channel_id = $1");
        execute(&tx, &sql, &[&channel_id]).await?;
    }
    let gone = execute(&tx, "DELETE FROM channels WHERE id = $1", &[&channel_id]).await?;
    tx.commit().await?;
    Ok(gone > 0)
}

/// Adds a member; whether they were not one yet.
pub(super) async fn add_member(
    c: &impl GenericClient,
    channel_id: i64,
    user_id: i64,
    role: Role,
    now_ms: u64,
) -> StoreResult<bool> {
    let n = execute(
        c,
        "INSERT INTO members (channel_id, user_id, role, joined_at_ms)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        &[&channel_id, &user_id, &role.as_str(), &(now_ms as i64)],
    )
    .await?;
    Ok(n == 1)
}

/// A channel's members, the owner first.
pub(super) async fn members(
    c: &impl GenericClient,
    channel_id: i64,
) -> StoreResult<Vec<MemberRecord>> {
    rows(
        c,
        "SELECT u.id, u.username, m.role, u.status FROM members m
         JOIN users u ON u.id = m.user_id WHERE m.channel_id = $1
         ORDER BY m.role = 'owner' DESC, u.username_key",
        &[&channel_id],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(MemberRecord {
            user_id: r.try_get(0)?,
            username: r.try_get(1)?,
            role: text::role(r.try_get(2)?)?,
            status: text::presence(r.try_get(3)?)?,
        })
    })
    .collect()
}

/// The channels a user belongs to, with their role.
pub(super) async fn memberships(
    c: &impl GenericClient,
    user_id: i64,
) -> StoreResult<Vec<(i64, Role)>> {
    rows(
        c,
        "SELECT channel_id, role FROM members WHERE user_id = $1",
        &[&user_id],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, text::role(r.try_get(1)?)?)))
    .collect()
}

/// Who sees `user_id`'s presence: those sharing a channel and friends, not those they blocked.
pub(super) async fn watchers(c: &impl GenericClient, user_id: i64) -> StoreResult<Vec<i64>> {
    rows(
        c,
        "SELECT other.user_id FROM members mine
         JOIN members other ON other.channel_id = mine.channel_id
         WHERE mine.user_id = $1 AND other.user_id != $1
         UNION
         SELECT other_id FROM relations WHERE user_id = $1 AND kind = 'friend'
         EXCEPT
         SELECT other_id FROM relations WHERE user_id = $1 AND kind = 'blocked'",
        &[&user_id],
    )
    .await?
    .iter()
    .map(|r| Ok(r.try_get(0)?))
    .collect()
}

/// Removes a member; whether they were one.
pub(super) async fn remove_member(
    c: &impl GenericClient,
    channel_id: i64,
    user_id: i64,
) -> StoreResult<bool> {
    let n = execute(
        c,
        "DELETE FROM members WHERE channel_id = $1 AND user_id = $2",
        &[&channel_id, &user_id],
    )
    .await?;
    Ok(n == 1)
}

/// Invites a user to a private channel (once).
pub(super) async fn add_invite(
    c: &impl GenericClient,
    channel_id: i64,
    user_id: i64,
    invited_by: i64,
    now_ms: u64,
) -> StoreResult<()> {
    execute(
        c,
        "INSERT INTO invites (channel_id, user_id, invited_by, created_at_ms)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        &[&channel_id, &user_id, &invited_by, &(now_ms as i64)],
    )
    .await?;
    Ok(())
}

/// Who was invited to a channel.
pub(super) async fn invitees(c: &impl GenericClient, channel_id: i64) -> StoreResult<Vec<i64>> {
    rows(
        c,
        "SELECT user_id FROM invites WHERE channel_id = $1 ORDER BY user_id",
        &[&channel_id],
    )
    .await?
    .iter()
    .map(|r| Ok(r.try_get(0)?))
    .collect()
}

/// Whether a user was invited to a channel.
pub(super) async fn is_invited(
    c: &impl GenericClient,
    channel_id: i64,
    user_id: i64,
) -> StoreResult<bool> {
    let r = row(
        c,
        "SELECT EXISTS (SELECT 1 FROM invites WHERE channel_id = $1 AND user_id = $2)",
        &[&channel_id, &user_id],
    )
    .await?;
    Ok(match r {
        Some(r) => r.try_get(0)?,
        None => false,
    })
}
