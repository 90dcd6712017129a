//! Full-text search over the local store: an FTS5 index filled in
//! batches behind the message table (a background pass every
//! [`INDEX_EVERY`], and before every search), so posting never waits for
//! indexing and a search still sees everything stored.
//!
//! Invariant: user input is never FTS5 syntax: every word is quoted.

use rusqlite::{params, Connection};

use super::messages::{row, MessageRow, ROW_COLUMNS};
use super::{Store, StoreError};

/// Most rows one pass of the search indexer takes (a search indexes all).
/// A pass holds the store, so passes are short and yield to the writers.
const INDEX_BATCH: i64 = 500;
/// How often the background indexer looks. Seldom: each pass is a
/// transaction and an FTS5 segment, and while it runs a hosted channel's
/// posts wait for the store.
const INDEX_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// The pause between two full passes, for the writers.
const INDEX_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Adds the messages stored since the last pass to the full-text index, in
/// one transaction; `limit` bounds the pass. Returns how many it indexed.
fn index_pending(c: &mut Connection, limit: Option<i64>) -> Result<usize, StoreError> {
    let tx = c.transaction()?;
    let from: i64 = tx
        .prepare_cached("SELECT indexed_through FROM search_progress WHERE id = 1")?
        .query_row([], |r| r.get(0))?;
    let through: Option<i64> = tx
        .prepare_cached(
            "SELECT MAX(local_id) FROM (SELECT local_id FROM messages
             WHERE local_id > ?1 ORDER BY local_id LIMIT ?2)",
        )?
        .query_row(params![from, limit.unwrap_or(-1)], |r| r.get(0))?;
    let Some(through) = through else {
        return Ok(0);
    };
    let n = tx
        .prepare_cached(
            "INSERT INTO messages_fts (rowid, body, author, channel)
             SELECT local_id, body, author, channel FROM messages
             WHERE local_id > ?1 AND local_id <= ?2",
        )?
        .execute(params![from, through])?;
    tx.prepare_cached("UPDATE search_progress SET indexed_through = ?1 WHERE id = 1")?
        .execute(params![through])?;
    tx.commit()?;
    Ok(n)
}

/// Brings the full-text index up to date (before a search).
fn index_for_search(c: &mut Connection) -> Result<(), StoreError> {
    index_pending(c, None).map(drop)
}

/// Turns free text into an FTS5 query that matches every word, so user
/// input can never be an FTS syntax error.
fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

impl Store {
    /// Full-text search over every stored message, best matches first.
    pub async fn search(
        &self,
        text: String,
        channel: Option<String>,
        limit: u32,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let Some(query) = fts_query(&text) else {
            return Ok(Vec::new());
        };
        self.with(move |c| {
            index_for_search(c)?;
            let cols = ROW_COLUMNS
                .split(", ")
                .map(|col| format!("m.{}", col.trim()))
                .collect::<Vec<_>>()
                .join(", ");
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {cols} FROM messages_fts f JOIN messages m ON m.local_id = f.rowid
                 WHERE messages_fts MATCH ?1 AND (?2 IS NULL OR m.channel = ?2)
                 ORDER BY f.rank LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![query, channel, limit], row)?;
            rows.map(|r| r?.cook()).collect()
        })
        .await
    }

    /// Indexes for search a batch of the messages stored since the last
    /// pass. Returns how many it indexed.
    pub async fn index_some(&self) -> Result<usize, StoreError> {
        self.with(|c| index_pending(c, Some(INDEX_BATCH))).await
    }

    /// Keeps the search index close behind the message table, so a search
    /// rarely has much to index first. Runs until `shutdown`.
    pub async fn index_in_background(self, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            match self.index_some().await {
                Ok(n) if n as i64 == INDEX_BATCH => {
                    tokio::time::sleep(INDEX_PAUSE).await;
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not index messages for search"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(INDEX_EVERY) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::messages::tests::{hosted, message};

    #[test]
    fn fts_queries_quote_every_word() {
        assert_eq!(
            fts_query("hello  wor\"ld"),
            Some("\"hello\" \"wor\"\"ld\"".into())
        );
        assert_eq!(fts_query("   "), None);
        assert_eq!(
            fts_query("NEAR(a b) OR c*"),
            Some("\"NEAR(a\" \"b)\" \"OR\" \"c*\"".into())
        );
    }

    #[tokio::test]
    async fn search_sees_every_stored_message_and_indexes_each_once() {
        let s = Store::open_in_memory().expect("store");
        let first = message(1, "apples and pears");
        let second = message(2, "more apples");
        s.host_append_blocking("c", &[(&first, &hosted())])
            .expect("append");
        // Indexed by the background pass...
        assert_eq!(s.index_some().await.expect("index"), 1);
        assert_eq!(s.index_some().await.expect("index"), 0);
        // ...or, for what arrived since, by the search itself.
        s.insert_message(second, hosted()).await.expect("insert");
        let found = s.search("apples".into(), None, 10).await.expect("search");
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(s.index_some().await.expect("index"), 0);
        let found = s.search("pears".into(), None, 10).await.expect("search");
        assert_eq!(found.len(), 1);
    }
}
