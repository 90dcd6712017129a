//! The last channel list the server gave this node's user, so the API
//! can list channels (and a post can be checked) while the server is down.

use rusqlite::{params, OptionalExtension};
use segchat_proto::types::ChannelInfo;

use super::{Store, StoreError};

/// The last channel list the server gave us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedChannels {
    pub channels: Vec<ChannelInfo>,
    pub fetched_at_ms: u64,
}

/// A point in the cache's history (see [`Store::channel_cache_mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheMark(i64);

impl CacheMark {
    /// Before anything was cached: a list given with it replaces nothing
    /// newer than itself, i.e. everything stays unless listed.
    pub const START: CacheMark = CacheMark(0);
    /// After everything: a list given with it is the whole truth.
    pub const NOW: CacheMark = CacheMark(i64::MAX);
}

/// The time to stamp a write with: now, or just after the latest stamp if
/// the clock says otherwise.
fn next_stamp(c: &rusqlite::Connection) -> rusqlite::Result<i64> {
    let latest: i64 = c.query_row(
        "SELECT COALESCE(MAX(fetched_at_ms), 0) FROM channel_cache",
        [],
        |r| r.get(0),
    )?;
    Ok((crate::clock::now_ms() as i64).max(latest + 1))
}

/// Whether `ch` is a new channel under a name the cache knows from an
/// older one (deleted, then created again): what is kept about the old one
/// must go before the new one is followed.
fn recreated(c: &rusqlite::Connection, ch: &ChannelInfo) -> rusqlite::Result<bool> {
    let known: Option<Option<i64>> = c
        .prepare_cached(
            "SELECT json_extract(info, '$.created_at_ms') FROM channel_cache WHERE name = ?1",
        )?
        .query_row(params![ch.name], |r| r.get(0))
        .optional()?;
    Ok(matches!(known, Some(Some(at)) if at != ch.created_at_ms as i64))
}

/// Deletes everything kept about `channel`: its messages (out of the
/// search index first, with the values they were indexed with), cursors,
/// what was seen of its host, its unread mark and its cache entry.
/// Returns how many messages went.
fn purge(c: &rusqlite::Connection, channel: &str) -> rusqlite::Result<usize> {
    super::search::unindex_channel(c, channel)?;
    let highest = |c: &rusqlite::Connection| -> rusqlite::Result<i64> {
        c.query_row("SELECT COALESCE(MAX(local_id), 0) FROM messages", [], |r| {
            r.get(0)
        })
    };
    let top = highest(c)?;
    let gone = c.execute("DELETE FROM messages WHERE channel = ?1", params![channel])?;
    if highest(c)? < top {
        // Local ids are never reused: the read cursors and the search
        // index's progress count on it. A blank row (no channel, shown as
        // deleted, never indexed) keeps the highest one taken.
        c.execute("DELETE FROM messages WHERE id = ''", [])?;
        c.execute(
            "INSERT INTO messages (local_id, id, channel, author, ts_ms, body, ticket,
                                   signature, source, received_at_ms, deleted)
             VALUES (?1, '', '', '', 0, '', '', '', 'local', 0, 1)",
            params![top],
        )?;
    }
    for table in ["cursors", "host_seen", "unread_since"] {
        c.execute(
            &format!("DELETE FROM {table} WHERE channel = ?1"),
            params![channel],
        )?;
    }
    c.execute(
        "DELETE FROM channel_cache WHERE name = ?1",
        params![channel],
    )?;
    Ok(gone)
}

impl Store {
    /// Where the cache stands now: take it just before asking the server
    /// for a list, and give it back with the list to [`Self::cache_channels`].
    pub async fn channel_cache_mark(&self) -> Result<CacheMark, StoreError> {
        self.with(|c| {
            let at: i64 = c.query_row(
                "SELECT COALESCE(MAX(fetched_at_ms), 0) FROM channel_cache",
                [],
                |r| r.get(0),
            )?;
            Ok(CacheMark(at))
        })
        .await
    }

    /// Replaces the cached channel list with `channels`, in their order,
    /// as the server listed them when asked at `mark`.
    ///
    /// A channel remembered one at a time after `mark` (a create or join
    /// answered while the list was on its way) is newer than the list and
    /// stays, after the listed ones: a list that left the server before
    /// the create must not make the new channel vanish. (Every write
    /// stamps its rows later than any row before it, so "after" is exact
    /// whatever the clock does.)
    pub async fn cache_channels(
        &self,
        channels: Vec<ChannelInfo>,
        mark: CacheMark,
    ) -> Result<(), StoreError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            for ch in &channels {
                if recreated(&tx, ch)? {
                    purge(&tx, &ch.name)?;
                }
            }
            let stamp = next_stamp(&tx)?;
            tx.execute(
                "DELETE FROM channel_cache WHERE fetched_at_ms <= ?1",
                params![mark.0],
            )?;
            let listed = channels.len() as i64;
            tx.execute(
                "UPDATE channel_cache SET position = position + ?1",
                params![listed],
            )?;
            {
                let mut insert = tx.prepare(
                    "INSERT INTO channel_cache (name, info, position, fetched_at_ms)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING",
                )?;
                for (i, ch) in channels.iter().enumerate() {
                    let json = serde_json::to_string(ch)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    insert.execute(params![ch.name, json, i as i64, stamp])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Adds or replaces one channel in the cache (after create or join), at
    /// the end if it is new.
    pub async fn cache_channel(&self, channel: ChannelInfo) -> Result<(), StoreError> {
        self.with(move |c| {
            let json =
                serde_json::to_string(&channel).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let tx = c.transaction()?;
            if recreated(&tx, &channel)? {
                purge(&tx, &channel.name)?;
            }
            let stamp = next_stamp(&tx)?;
            tx.execute(
                "INSERT INTO channel_cache (name, info, position, fetched_at_ms)
                 VALUES (?1, ?2, (SELECT COALESCE(MAX(position), -1) + 1 FROM channel_cache), ?3)
                 ON CONFLICT (name) DO UPDATE SET info = ?2, fetched_at_ms = ?3",
                params![channel.name, json, stamp],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Forgets a deleted channel: its messages (and their search entries),
    /// cursors and cache entry, so nothing of it is shown or served again,
    /// and a channel created later under its name starts from nothing.
    /// Returns how many messages went.
    pub async fn forget_channel(&self, channel: String) -> Result<usize, StoreError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let gone = purge(&tx, &channel)?;
            tx.commit()?;
            Ok(gone)
        })
        .await
    }

    /// Drops one channel from the cache (after leaving it).
    pub async fn uncache_channel(&self, name: String) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute("DELETE FROM channel_cache WHERE name = ?1", params![name])?;
            Ok(())
        })
        .await
    }

    /// The cached channel list, or `None` if nothing was ever cached.
    pub async fn cached_channels(&self) -> Result<Option<CachedChannels>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT info, fetched_at_ms FROM channel_cache ORDER BY position")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut channels = Vec::new();
            let mut fetched_at_ms = None;
            for row in rows {
                let (json, at) = row?;
                channels.push(
                    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
                fetched_at_ms = Some(at as u64);
            }
            Ok(fetched_at_ms.map(|fetched_at_ms| CachedChannels {
                channels,
                fetched_at_ms,
            }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::session::tests::session;
    use segchat_proto::types::Visibility;

    fn channel(name: &str) -> ChannelInfo {
        ChannelInfo {
            name: name.into(),
            title: name.into(),
            topic: String::new(),
            owner: "alice".into(),
            visibility: Visibility::Public,
            allow_visitors: true,
            created_at_ms: 1,
            member_count: 1,
            my_role: None,
            host: None,
        }
    }

    #[tokio::test]
    async fn channel_cache_keeps_order_and_is_per_user() {
        let store = Store::open_in_memory().expect("open");
        assert_eq!(store.cached_channels().await.expect("read"), None);
        store.save_session(session("alice")).await.expect("save");
        store
            .cache_channels(vec![channel("zeta"), channel("alpha")], CacheMark::NOW)
            .await
            .expect("cache");
        let cached = store.cached_channels().await.expect("read").expect("some");
        let names: Vec<_> = cached.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha"]);
        store.cache_channel(channel("beta")).await.expect("add");
        store.cache_channel(channel("zeta")).await.expect("replace");
        store.uncache_channel("alpha".into()).await.expect("drop");
        let cached = store.cached_channels().await.expect("read").expect("some");
        let names: Vec<_> = cached.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["zeta", "beta"]);
        // The same user again keeps the cache; somebody else drops it.
        store.save_session(session("alice")).await.expect("save");
        assert!(store.cached_channels().await.expect("read").is_some());
        store.save_session(session("bob")).await.expect("save");
        assert_eq!(store.cached_channels().await.expect("read"), None);
    }

    #[tokio::test]
    async fn a_list_asked_before_a_create_does_not_drop_the_new_channel() {
        let store = Store::open_in_memory().expect("open");
        store.save_session(session("alice")).await.expect("save");
        store
            .cache_channels(vec![channel("old"), channel("gone")], CacheMark::NOW)
            .await
            .expect("cache");
        let asked = store.channel_cache_mark().await.expect("mark");
        // The create is answered while the list is on its way.
        store.cache_channel(channel("new")).await.expect("add");
        store
            .cache_channels(vec![channel("old")], asked)
            .await
            .expect("cache");
        let cached = store.cached_channels().await.expect("read").expect("some");
        let names: Vec<_> = cached.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["old", "new"]);
        // A later list is the whole truth again.
        store
            .cache_channels(
                vec![channel("old")],
                store.channel_cache_mark().await.expect("mark"),
            )
            .await
            .expect("cache");
        let cached = store.cached_channels().await.expect("read").expect("some");
        let names: Vec<_> = cached.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["old"]);
    }
}
