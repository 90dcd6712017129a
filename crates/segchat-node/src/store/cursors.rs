//! Cursors and gaps: how far this node holds each channel's sequences.
//!
//! A cursor says "everything up to here is done" and only moves forward.
//! The member's host cursor is the one with rules of its own:
//!
//! - **A number is held only once its message is stored.** Which host
//!   sequence numbers this node holds is what its messages say (their
//!   `host_seq`), so the record cannot disagree with the messages: it moves
//!   in the same transaction as the insert, and a message that could not be
//!   stored (a full disk) is simply not held.
//! - **The host cursor is the highest number held with every number below
//!   it held.** It never passes a number that is not stored, so a `sync`
//!   from it after a restart fetches whatever is missing.
//! - **A gap is a number not held below the highest number heard of.**
//!   `host_seen` remembers that highest number even for a copy that could
//!   not be stored, so the hole is marked, not silent; gaps are derived
//!   from the messages on every read, so numbers held beyond a gap (the
//!   member's own posts, say) never leave it open over what is here.

use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreError};

/// Per-channel cursors. See the migrations for what each means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// As a member: the highest host sequence number held with every one
    /// below it held.
    Host,
    /// The highest server sequence number pulled and stored.
    Server,
    /// As host: the highest own sequence number the server acknowledged.
    Backup,
    /// The highest `local_id` the user has read.
    Read,
}

impl Cursor {
    fn as_str(self) -> &'static str {
        match self {
            Cursor::Host => "host",
            Cursor::Server => "server",
            Cursor::Backup => "backup",
            Cursor::Read => "read",
        }
    }
}

pub(super) fn cursor_in(c: &Connection, channel: &str, kind: Cursor) -> Result<u64, StoreError> {
    let v: Option<i64> = c
        .prepare_cached("SELECT value FROM cursors WHERE channel = ?1 AND kind = ?2")?
        .query_row(params![channel, kind.as_str()], |r| r.get(0))
        .optional()?;
    Ok(v.unwrap_or(0) as u64)
}

pub(super) fn set_cursor_in(
    c: &Connection,
    channel: &str,
    kind: Cursor,
    value: u64,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO cursors (channel, kind, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (channel, kind) DO UPDATE SET value = MAX(value, ?3)",
    )?
    .execute(params![channel, kind.as_str(), value as i64])?;
    Ok(())
}

/// Remembers that host sequence number `seq` exists in `channel`.
fn heard_in(c: &Connection, channel: &str, seq: u64) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO host_seen (channel, highest) VALUES (?1, ?2)
         ON CONFLICT (channel) DO UPDATE SET highest = MAX(highest, ?2)",
    )?
    .execute(params![channel, seq as i64])?;
    Ok(())
}

/// After a copy from the host with number `seq` was stored (in the caller's
/// transaction): remembers the number and moves the host cursor over every
/// number now held contiguously. Returns the cursor.
pub(super) fn held_host_seq(c: &Connection, channel: &str, seq: u64) -> Result<u64, StoreError> {
    heard_in(c, channel, seq)?;
    let start = cursor_in(c, channel, Cursor::Host)?;
    let mut cursor = start;
    let mut held =
        c.prepare_cached("SELECT 1 FROM messages WHERE channel = ?1 AND host_seq = ?2 LIMIT 1")?;
    while held.exists(params![channel, (cursor + 1) as i64])? {
        cursor += 1;
    }
    if cursor > start {
        set_cursor_in(c, channel, Cursor::Host, cursor)?;
    }
    Ok(cursor)
}

/// The host sequence numbers missing in `channel`, as ranges: those above
/// the cursor and up to the highest number heard of (or `heard`, if
/// higher) that no stored message has.
fn gaps_in(c: &Connection, channel: &str, heard: u64) -> Result<Vec<(u64, u64)>, StoreError> {
    let cursor = cursor_in(c, channel, Cursor::Host)?;
    let seen: Option<i64> = c
        .prepare_cached("SELECT highest FROM host_seen WHERE channel = ?1")?
        .query_row(params![channel], |r| r.get(0))
        .optional()?;
    let held_top: Option<i64> = c
        .prepare_cached(
            "SELECT MAX(host_seq) FROM messages WHERE channel = ?1 AND host_seq IS NOT NULL",
        )?
        .query_row(params![channel], |r| r.get(0))?;
    let top = heard
        .max(seen.unwrap_or(0) as u64)
        .max(held_top.unwrap_or(0) as u64);
    let mut gaps = Vec::new();
    if top <= cursor {
        return Ok(gaps);
    }
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT host_seq FROM messages
         WHERE channel = ?1 AND host_seq > ?2 AND host_seq <= ?3 ORDER BY host_seq",
    )?;
    let mut rows = stmt.query(params![channel, cursor as i64, top as i64])?;
    let mut next = cursor + 1;
    while let Some(r) = rows.next()? {
        let held = r.get::<_, i64>(0)? as u64;
        if held > next {
            gaps.push((next, held - 1));
        }
        next = held + 1;
    }
    if next <= top {
        gaps.push((next, top));
    }
    Ok(gaps)
}

impl Store {
    /// A cursor's value (0 if never set).
    pub async fn cursor(&self, channel: String, kind: Cursor) -> Result<u64, StoreError> {
        self.read(move |c| cursor_in(c, &channel, kind)).await
    }

    /// Moves a cursor forward to `value` (never back: cursors only say
    /// "everything up to here is done").
    pub async fn set_cursor(
        &self,
        channel: String,
        kind: Cursor,
        value: u64,
    ) -> Result<(), StoreError> {
        self.with(move |c| set_cursor_in(c, &channel, kind, value))
            .await
    }

    /// As a member: remembers that the host has number `seq`, for a copy
    /// that could not be stored, so the hole shows as a gap. (When the disk
    /// is full this may fail too; the caller keeps the number in memory.)
    pub async fn heard_host_seq(&self, channel: String, seq: u64) -> Result<(), StoreError> {
        self.with(move |c| heard_in(c, &channel, seq)).await
    }

    /// As a member: the channel's open gaps as (from, to) host sequence
    /// numbers, counting `heard` (a number the caller knows the host has)
    /// as heard of.
    pub async fn gaps(&self, channel: String, heard: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        self.read(move |c| gaps_in(c, &channel, heard)).await
    }
}

/// A channel's unread messages: those by others stored after its read
/// cursor, and written after the channel's `unread_since` where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    pub channel: String,
    pub count: u64,
    /// The id of the first of them (in arrival order), for the "New"
    /// divider.
    pub first_id: String,
    /// How many of them mention the user (`@name`).
    pub mentions: u64,
}

/// Which messages count as unread for `?1` (the user): shown ones by
/// others, not deleted, after the read cursor and `unread_since`.
const UNREAD: &str = "FROM messages m
     LEFT JOIN cursors r ON r.channel = m.channel AND r.kind = 'read'
     LEFT JOIN unread_since s ON s.channel = m.channel
     WHERE m.author != ?1 AND m.local_id > COALESCE(r.value, 0)
       AND m.ts_ms > COALESCE(s.since_ms, -1)
       AND (m.re_kind IS NULL OR m.re_kind = 'reply') AND m.deleted = 0";

impl Store {
    /// Unread messages per channel (channels with none are left out).
    pub async fn unread(&self, me: String) -> Result<Vec<Unread>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT u.channel, u.n, m.id FROM (
                     SELECT m.channel AS channel, COUNT(*) AS n, MIN(m.local_id) AS first
                     {UNREAD}
                     GROUP BY m.channel
                 ) u JOIN messages m ON m.local_id = u.first
                 ORDER BY u.channel"
            ))?;
            let rows = stmt.query_map(params![me], |r| {
                Ok(Unread {
                    channel: r.get(0)?,
                    count: r.get::<_, i64>(1)? as u64,
                    first_id: r.get(2)?,
                    mentions: 0,
                })
            })?;
            let mut unread = rows.collect::<Result<Vec<_>, _>>()?;
            // Candidates by substring in SQL, then the whole-name rule.
            let mut stmt = c.prepare_cached(&format!(
                "SELECT m.channel, COALESCE(m.shown, m.body) {UNREAD}
                   AND instr(lower(COALESCE(m.shown, m.body)), '@' || lower(?1)) > 0"
            ))?;
            let candidates = stmt.query_map(params![me], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for candidate in candidates {
                let (channel, body) = candidate?;
                if super::edits::mentions(&body, &me) {
                    if let Some(u) = unread.iter_mut().find(|u| u.channel == channel) {
                        u.mentions += 1;
                    }
                }
            }
            Ok(unread)
        })
        .await
    }

    /// Marks everything stored so far in `channel` as read.
    pub async fn mark_read(&self, channel: String) -> Result<(), StoreError> {
        self.with(move |c| {
            let last: i64 = c.query_row(
                "SELECT COALESCE(MAX(local_id), 0) FROM messages WHERE channel = ?1",
                params![channel],
                |r| r.get(0),
            )?;
            set_cursor_in(c, &channel, Cursor::Read, last as u64)
        })
        .await
    }

    /// This node starts following `channel` (as member or visitor) at
    /// `now_ms`. If it holds nothing of the channel and never read it, the
    /// history its first sync brings is not news: only messages written
    /// after `now_ms` will count as unread. Returns whether that was set.
    pub async fn note_following(&self, channel: String, now_ms: u64) -> Result<bool, StoreError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let known: bool = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM messages WHERE channel = ?1)
                         OR EXISTS (SELECT 1 FROM cursors WHERE channel = ?1 AND kind = 'read')
                         OR EXISTS (SELECT 1 FROM unread_since WHERE channel = ?1)",
                )?
                .query_row(params![channel], |r| r.get(0))?;
            if known {
                return Ok(false);
            }
            tx.prepare_cached("INSERT INTO unread_since (channel, since_ms) VALUES (?1, ?2)")?
                .execute(params![channel, now_ms as i64])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::messages::tests::message;
    use crate::store::{Arrival, Source};

    fn from_host(seq: u64) -> Arrival {
        Arrival {
            source: Source::Host,
            from: Some("host 127.0.0.1:1".into()),
            host_seq: Some(seq),
            server_seq: None,
        }
    }

    /// Stores message number `seq` as the host's copy; returns the cursor.
    async fn hosted(s: &Store, seq: u64) -> u64 {
        s.insert_message(message(seq as u128, "m"), from_host(seq))
            .await
            .expect("insert")
            .host_cursor
            .expect("a host copy moves the cursor")
    }

    #[tokio::test]
    async fn history_a_new_follower_syncs_is_not_unread_and_later_messages_are() {
        let s = Store::open_in_memory().expect("store");
        assert!(s.note_following("c".into(), 1_050).await.expect("note"));
        assert!(
            !s.note_following("c".into(), 9_999).await.expect("again"),
            "set once: a restart does not move it"
        );
        // The first sync brings 1..=50 (written before), then 51..=60 arrive.
        for seq in 1..=60 {
            hosted(&s, seq).await;
        }
        let unread = s.unread("bob".into()).await.expect("unread");
        assert_eq!(
            unread,
            vec![Unread {
                channel: "c".into(),
                count: 10,
                first_id: message(51, "m").id.to_string(),
                mentions: 0,
            }]
        );
        assert!(
            s.unread("alice".into()).await.expect("own").is_empty(),
            "own messages are never unread"
        );
        s.mark_read("c".into()).await.expect("read");
        assert!(s.unread("bob".into()).await.expect("after").is_empty());
    }

    #[tokio::test]
    async fn a_channel_already_held_counts_everything_after_the_read_cursor() {
        let s = Store::open_in_memory().expect("store");
        for seq in 1..=3 {
            hosted(&s, seq).await;
        }
        assert!(!s.note_following("c".into(), 5_000).await.expect("note"));
        let unread = s.unread("bob".into()).await.expect("unread");
        assert_eq!(unread.len(), 1);
        assert_eq!(unread[0].count, 3);
        assert_eq!(unread[0].first_id, message(1, "m").id.to_string());
    }

    #[tokio::test]
    async fn gaps_open_shrink_and_the_cursor_stays_contiguous() {
        let s = Store::open_in_memory().expect("store");
        let gaps = || s.gaps("c".into(), 0);
        assert_eq!(hosted(&s, 1).await, 1);
        assert_eq!(hosted(&s, 2).await, 2);
        // 3..=5 missed.
        assert_eq!(hosted(&s, 6).await, 2);
        assert_eq!(gaps().await.expect("gaps"), vec![(3, 5)]);
        assert_eq!(hosted(&s, 4).await, 2);
        assert_eq!(gaps().await.expect("gaps"), vec![(3, 3), (5, 5)]);
        assert_eq!(hosted(&s, 3).await, 4);
        assert_eq!(hosted(&s, 5).await, 6);
        assert!(gaps().await.expect("gaps").is_empty());
        // Repeats change nothing.
        assert_eq!(hosted(&s, 5).await, 6);
    }

    #[tokio::test]
    async fn numbers_held_beyond_a_gap_are_remembered_when_it_fills() {
        let s = Store::open_in_memory().expect("store");
        hosted(&s, 1).await;
        // 2..=4 missed; 5..=7 (say, the member's own posts) held beyond.
        for n in 5..=7 {
            hosted(&s, n).await;
        }
        assert_eq!(s.gaps("c".into(), 0).await.expect("gaps"), vec![(2, 4)]);
        for n in 2..=4 {
            hosted(&s, n).await;
        }
        assert_eq!(s.cursor("c".into(), Cursor::Host).await.expect("cursor"), 7);
        assert_eq!(hosted(&s, 8).await, 8);
        assert!(s.gaps("c".into(), 0).await.expect("gaps").is_empty());
    }

    #[tokio::test]
    async fn a_number_heard_of_but_not_stored_is_a_gap_and_holds_the_cursor() {
        let s = Store::open_in_memory().expect("store");
        hosted(&s, 1).await;
        // Number 2 could not be stored: heard of, not held.
        s.heard_host_seq("c".into(), 2).await.expect("heard");
        assert_eq!(s.gaps("c".into(), 0).await.expect("gaps"), vec![(2, 2)]);
        // A number only the caller remembers counts too.
        assert_eq!(
            s.gaps("c".into(), 4).await.expect("gaps"),
            vec![(2, 4)],
            "numbers kept in memory are gaps as well"
        );
        assert_eq!(s.cursor("c".into(), Cursor::Host).await.expect("cursor"), 1);
        assert_eq!(hosted(&s, 2).await, 2);
        assert!(s.gaps("c".into(), 2).await.expect("gaps").is_empty());
    }
}
