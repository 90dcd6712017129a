//! Channels on SQLite: the registry, members and invites (the backup of
//! their messages is `messages.rs`).

use rusqlite::{params, Connection, OptionalExtension};
use segchat_proto::types::Role;

use super::is_unique_violation;
use crate::store::text;
use crate::store::{
    ChannelRecord, ChannelUpdate, MemberRecord, NewChannel, StoreError, StoreResult,
};

const CHANNEL_SELECT: &str = "SELECT c.id, c.name, c.owner_id, u.username, c.visibility, \
     c.allow_visitors, c.created_at_ms, \
     (SELECT COUNT(*) FROM members m WHERE m.channel_id = c.id), c.title, c.topic \
     FROM channels c JOIN users u ON u.id = c.owner_id";

/// A channel row as read, before its text columns are checked.
struct ChannelRow {
    id: i64,
    name: String,
    owner_id: i64,
    owner: String,
    visibility: String,
    allow_visitors: bool,
    created_at_ms: i64,
    member_count: i64,
    title: String,
    topic: String,
}

fn channel_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChannelRow> {
    Ok(ChannelRow {
        id: r.get(0)?,
        name: r.get(1)?,
        owner_id: r.get(2)?,
        owner: r.get(3)?,
        visibility: r.get(4)?,
        allow_visitors: r.get(5)?,
        created_at_ms: r.get(6)?,
        member_count: r.get(7)?,
        title: r.get(8)?,
        topic: r.get(9)?,
    })
}

fn channel_record(row: ChannelRow) -> StoreResult<ChannelRecord> {
    Ok(ChannelRecord {
        id: row.id,
        name: row.name,
        owner_id: row.owner_id,
        owner: row.owner,
        visibility: text::visibility(&row.visibility)?,
        allow_visitors: row.allow_visitors,
        created_at_ms: row.created_at_ms as u64,
        member_count: row.member_count as u32,
        title: row.title,
        topic: row.topic,
    })
}

/// Creates a channel with its owner as its first member.
pub(super) fn create(c: &mut Connection, ch: &NewChannel) -> StoreResult<ChannelRecord> {
    let tx = c.transaction()?;
    let inserted = tx.execute(
        "INSERT INTO channels (name, owner_id, visibility, allow_visitors, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            ch.name,
            ch.owner_id,
            ch.visibility.as_str(),
            ch.allow_visitors,
            ch.created_at_ms as i64
        ],
    );
    match inserted {
        Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict("channel")),
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO members (channel_id, user_id, role, joined_at_ms)
         VALUES (?1, ?2, 'owner', ?3)",
        params![id, ch.owner_id, ch.created_at_ms as i64],
    )?;
    let row = tx.query_row(
        &format!("{CHANNEL_SELECT} WHERE c.id = ?1"),
        params![id],
        channel_from_row,
    )?;
    tx.commit()?;
    channel_record(row)
}

/// The channel named `name`.
pub(super) fn by_name(c: &mut Connection, name: &str) -> StoreResult<Option<ChannelRecord>> {
    c.prepare_cached(&format!("{CHANNEL_SELECT} WHERE c.name = ?1"))?
        .query_row(params![name], channel_from_row)
        .optional()?
        .map(channel_record)
        .transpose()
}

/// Every channel, by name.
pub(super) fn list(c: &mut Connection) -> StoreResult<Vec<ChannelRecord>> {
    let mut stmt = c.prepare(&format!("{CHANNEL_SELECT} ORDER BY c.name"))?;
    let rows = stmt.query_map([], channel_from_row)?;
    rows.map(|r| channel_record(r?)).collect()
}

/// Changes what `change` names; the channel after it, `None` if there is none.
pub(super) fn update(
    c: &mut Connection,
    channel_id: i64,
    change: &ChannelUpdate,
) -> StoreResult<Option<ChannelRecord>> {
    let tx = c.transaction()?;
    // Each absent field keeps its value (COALESCE with NULL).
    let changed = tx.execute(
        "UPDATE channels SET
             title = COALESCE(?2, title),
             topic = COALESCE(?3, topic),
             visibility = COALESCE(?4, visibility),
             allow_visitors = COALESCE(?5, allow_visitors)
         WHERE id = ?1",
        params![
            channel_id,
            change.title,
            change.topic,
            change.visibility.map(|v| v.as_str()),
            change.allow_visitors
        ],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    let row = tx.query_row(
        &format!("{CHANNEL_SELECT} WHERE c.id = ?1"),
        params![channel_id],
        channel_from_row,
    )?;
    tx.commit()?;
    channel_record(row).map(Some)
}

/// Deletes a channel with its backup, invites and members; whether it was there.
pub(super) fn delete(c: &mut Connection, channel_id: i64) -> StoreResult<bool> {
    // Explicit rather than left to ON DELETE CASCADE, so that the
    // backup goes even on a database opened without foreign keys.
    let tx = c.transaction()?;
    for table in ["messages", "invites", "members"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE channel_id = ?1"),
            params![channel_id],
        )?;
    }
    let gone = tx.execute("DELETE FROM channels WHERE id = ?1", params![channel_id])?;
    tx.commit()?;
    Ok(gone > 0)
}

/// Adds a member; whether they were not one yet.
pub(super) fn add_member(
    c: &mut Connection,
    channel_id: i64,
    user_id: i64,
    role: Role,
    now_ms: u64,
) -> StoreResult<bool> {
    let n = c.execute(
        "INSERT OR IGNORE INTO members (channel_id, user_id, role, joined_at_ms)
         VALUES (?1, ?2, ?3, ?4)",
        params![channel_id, user_id, role.as_str(), now_ms as i64],
    )?;
    Ok(n == 1)
}

/// A channel's members, the owner first.
pub(super) fn members(c: &mut Connection, channel_id: i64) -> StoreResult<Vec<MemberRecord>> {
    let mut stmt = c.prepare(
        "SELECT u.id, u.username, m.role, u.status FROM members m
         JOIN users u ON u.id = m.user_id WHERE m.channel_id = ?1
         ORDER BY m.role = 'owner' DESC, u.username_key",
    )?;
    let rows = stmt.query_map(params![channel_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    rows.map(|r| {
        let (user_id, username, role, status) = r?;
        Ok(MemberRecord {
            user_id,
            username,
            role: text::role(&role)?,
            status: text::presence(&status)?,
        })
    })
    .collect()
}

/// The channels a user belongs to, with their role.
pub(super) fn memberships(c: &mut Connection, user_id: i64) -> StoreResult<Vec<(i64, Role)>> {
    let mut stmt = c.prepare("SELECT channel_id, role FROM members WHERE user_id = ?1")?;
    let rows = stmt.query_map(params![user_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    rows.map(|r| {
        let (id, role) = r?;
        Ok((id, text::role(&role)?))
    })
    .collect()
}

/// Who sees `user_id`'s presence: those sharing a channel and friends, not those they blocked.
pub(super) fn watchers(c: &mut Connection, user_id: i64) -> StoreResult<Vec<i64>> {
    let mut stmt = c.prepare_cached(
        "SELECT other.user_id FROM members mine
         JOIN members other ON other.channel_id = mine.channel_id
         WHERE mine.user_id = ?1 AND other.user_id != ?1
         UNION
         SELECT other_id FROM relations WHERE user_id = ?1 AND kind = 'friend'
         EXCEPT
         SELECT other_id FROM relations WHERE user_id = ?1 AND kind = 'blocked'",
    )?;
    let rows = stmt.query_map(params![user_id], |r| r.get::<_, i64>(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Removes a member; whether they were one.
pub(super) fn remove_member(
    c: &mut Connection,
    channel_id: i64,
    user_id: i64,
) -> StoreResult<bool> {
    let n = c.execute(
        "DELETE FROM members WHERE channel_id = ?1 AND user_id = ?2",
        params![channel_id, user_id],
    )?;
    Ok(n == 1)
}

/// Invites a user to a private channel (once).
pub(super) fn add_invite(
    c: &mut Connection,
    channel_id: i64,
    user_id: i64,
    invited_by: i64,
    now_ms: u64,
) -> StoreResult<()> {
    c.execute(
        "INSERT OR IGNORE INTO invites (channel_id, user_id, invited_by, created_at_ms)
         VALUES (?1, ?2, ?3, ?4)",
        params![channel_id, user_id, invited_by, now_ms as i64],
    )?;
    Ok(())
}

/// Who was invited to a channel.
pub(super) fn invitees(c: &mut Connection, channel_id: i64) -> StoreResult<Vec<i64>> {
    let mut stmt =
        c.prepare("SELECT user_id FROM invites WHERE channel_id = ?1 ORDER BY user_id")?;
    let rows = stmt.query_map(params![channel_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<i64>, _>>()?)
}

/// Whether a user was invited to a channel.
pub(super) fn is_invited(c: &mut Connection, channel_id: i64, user_id: i64) -> StoreResult<bool> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM invites WHERE channel_id = ?1 AND user_id = ?2)",
        params![channel_id, user_id],
        |r| r.get::<_, bool>(0),
    )?)
}
