//! How the PostgreSQL backend's rows read back as the store's records
//! (the text columns checked on the way).

use tokio_postgres::Row;

use crate::store::{text, ChannelRecord, SessionRecord, StoreResult, UserRecord};

pub(super) const USER_COLUMNS: &str = "id, username, password_hash, status, created_at_ms";

pub(super) fn user_record(r: &Row) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: r.try_get(0)?,
        username: r.try_get(1)?,
        password_hash: r.try_get(2)?,
        status: text::presence(r.try_get(3)?)?,
        created_at_ms: r.try_get::<_, i64>(4)? as u64,
    })
}

pub(super) const CHANNEL_SELECT: &str =
    "SELECT c.id, c.name, c.owner_id, u.username, c.visibility, \
     c.allow_visitors, c.created_at_ms, \
     (SELECT COUNT(*) FROM members m WHERE m.channel_id = c.id), c.title, c.topic \
     FROM channels c JOIN users u ON u.id = c.owner_id";

pub(super) fn channel_record(r: &Row) -> StoreResult<ChannelRecord> {
    Ok(ChannelRecord {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        owner_id: r.try_get(2)?,
        owner: r.try_get(3)?,
        visibility: text::visibility(r.try_get(4)?)?,
        allow_visitors: r.try_get(5)?,
        created_at_ms: r.try_get::<_, i64>(6)? as u64,
        member_count: r.try_get::<_, i64>(7)? as u32,
        title: r.try_get(8)?,
        topic: r.try_get(9)?,
    })
}

pub(super) fn session_record(r: &Row) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        id: r.try_get(0)?,
        token_hash: r.try_get(1)?,
        user_id: r.try_get(2)?,
        display_name: r.try_get(3)?,
        kind: text::kind(r.try_get(4)?)?,
        created_at_ms: r.try_get::<_, i64>(5)? as u64,
        expires_at_ms: r.try_get::<_, i64>(6)? as u64,
    })
}
