//! Sessions on SQLite, where reading them back takes more than one
//! statement: a session by its token's hash, and which of many sessions
//! are still alive.

use rusqlite::{params, Connection, OptionalExtension};

use super::text;
use crate::store::{SessionRecord, StoreResult};

type SessionRow = (String, String, Option<i64>, String, String, i64, i64);

/// The unexpired session whose token hashes to `token_hash`.
pub(super) fn by_token_hash(
    c: &Connection,
    token_hash: &str,
    now_ms: u64,
) -> StoreResult<Option<SessionRecord>> {
    c.query_row(
        "SELECT id, token_hash, user_id, display_name, kind, created_at_ms, expires_at_ms
         FROM sessions WHERE token_hash = ?1 AND expires_at_ms > ?2",
        params![token_hash, now_ms as i64],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        },
    )
    .optional()?
    .map(record)
    .transpose()
}

/// Which of `ids` exist and have not expired at `now_ms`.
pub(super) fn live(c: &Connection, ids: &[String], now_ms: u64) -> StoreResult<Vec<String>> {
    // SQLite takes at most 32,766 parameters; asked in chunks.
    let mut live = Vec::new();
    let now = now_ms as i64;
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!("SELECT id FROM sessions WHERE expires_at_ms > ? AND id IN ({marks})");
        let mut stmt = c.prepare_cached(&sql)?;
        let args = std::iter::once(&now as &dyn rusqlite::ToSql)
            .chain(chunk.iter().map(|id| id as &dyn rusqlite::ToSql));
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get(0))?;
        for id in rows {
            live.push(id?);
        }
    }
    Ok(live)
}

fn record(row: SessionRow) -> StoreResult<SessionRecord> {
    let (id, token_hash, user_id, display_name, kind, created, expires) = row;
    Ok(SessionRecord {
        id,
        token_hash,
        user_id,
        display_name,
        kind: text::kind(&kind)?,
        created_at_ms: created as u64,
        expires_at_ms: expires as u64,
    })
}
