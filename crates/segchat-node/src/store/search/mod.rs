//! Full-text search over the local store: an FTS5 index filled in
//! batches behind the message table (a background pass every
//! [`INDEX_EVERY`], and before every search), so posting never waits for
//! indexing and a search still sees everything stored.
//!
//! A search ([`SearchQuery`]) finds the messages that hold every word, each
//! word also as the start of a longer one ("lore" finds "lorem"), narrowed
//! by channel, author and time. It answers a page, newest first (by the
//! message's time, ties by local id, both descending), the number of all
//! matches, and an opaque [`SearchCursor`] for the next page: a keyset
//! (the last shown message's time and local id), so a page costs the same
//! however deep it is, and a message stored meanwhile neither shifts nor
//! repeats what the pages show.
//!
//! Invariant: user input is never FTS5 syntax: every word is quoted (and
//! only then made a prefix, `"word"*`).

mod query;

pub use query::{BadSearch, SearchCursor, SearchPage, SearchQuery};

use rusqlite::{params, Connection};

use super::rows::{row, ROW_COLUMNS};
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
/// Indexes what each shows (its latest edit's text), never edits,
/// deletions or reactions as rows of their own, nor deleted messages.
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
        .prepare_cached(&format!(
            "INSERT INTO messages_fts (rowid, body, author, channel)
             SELECT {INDEXED_VALUES} FROM messages
             WHERE local_id > ?1 AND local_id <= ?2 AND {INDEXED_ROWS}"
        ))?
        .execute(params![from, through])?;
    tx.prepare_cached("UPDATE search_progress SET indexed_through = ?1 WHERE id = 1")?
        .execute(params![through])?;
    tx.commit()?;
    Ok(n)
}

/// The rows the index holds (once their turn came): what is shown as a
/// message of its own and not deleted.
const INDEXED_ROWS: &str = "(re_kind IS NULL OR re_kind = 'reply') AND deleted = 0";
/// What a row is indexed with (its rowid first); removing it from the
/// index takes the same values.
const INDEXED_VALUES: &str = "local_id, COALESCE(shown, body), author, channel";

/// Takes every indexed row of `channel` out of the index, with the values
/// it was indexed with (before the rows themselves are deleted).
pub(in crate::store) fn unindex_channel(c: &Connection, channel: &str) -> rusqlite::Result<()> {
    c.execute(
        &format!(
            "INSERT INTO messages_fts (messages_fts, rowid, body, author, channel)
             SELECT 'delete', {INDEXED_VALUES} FROM messages
             WHERE channel = ?1 AND {INDEXED_ROWS}
               AND local_id <= (SELECT indexed_through FROM search_progress WHERE id = 1)"
        ),
        params![channel],
    )?;
    Ok(())
}

/// Brings the full-text index up to date (before a search).
fn index_for_search(c: &mut Connection) -> Result<(), StoreError> {
    index_pending(c, None).map(drop)
}

/// What every statement of a search shares: the words and the filters
/// (`?1` to `?5`, see [`search_page`]).
const MATCHES: &str = "messages_fts f JOIN messages m ON m.local_id = f.rowid
     WHERE messages_fts MATCH ?1
       AND (?2 IS NULL OR m.channel = ?2)
       AND (?3 IS NULL OR m.author = ?3)
       AND (?4 IS NULL OR m.ts_ms < ?4)
       AND (?5 IS NULL OR m.ts_ms >= ?5)";

/// One page of `q` and the count of all its matches, from one snapshot.
fn search_page(c: &mut Connection, q: &SearchQuery) -> Result<SearchPage, StoreError> {
    let tx = c.transaction()?;
    let cols = ROW_COLUMNS;
    let (after_ts, after_id) = match q.cursor {
        Some(k) => (Some(k.ts_ms), Some(k.local_id)),
        None => (None, None),
    };
    let mut results = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {cols} FROM {MATCHES}
               AND (?6 IS NULL OR m.ts_ms < ?6 OR (m.ts_ms = ?6 AND m.local_id < ?7))
             ORDER BY m.ts_ms DESC, m.local_id DESC LIMIT ?8"
        ))?;
        let rows = stmt.query_map(
            params![
                q.fts,
                q.channel,
                q.author,
                q.before_ms,
                q.after_ms,
                after_ts,
                after_id,
                q.limit + 1
            ],
            row,
        )?;
        rows.map(|r| r?.cook()).collect::<Result<Vec<_>, _>>()?
    };
    super::edits::decorate(&tx, &mut results)?;
    let total: i64 = tx
        .prepare_cached(&format!("SELECT COUNT(*) FROM {MATCHES}"))?
        .query_row(
            params![q.fts, q.channel, q.author, q.before_ms, q.after_ms],
            |r| r.get(0),
        )?;
    tx.commit()?;
    // One more than a page was asked for: whether there is a next page.
    let more = results.len() > q.limit as usize;
    results.truncate(q.limit as usize);
    let next = more
        .then(|| results.last().map(SearchCursor::after))
        .flatten();
    Ok(SearchPage {
        results,
        total: total as u64,
        next,
    })
}

impl Store {
    /// Searches every stored message: a page of `q`'s matches, newest
    /// first, with their count and where the next page starts. Indexes
    /// what is not indexed yet first (on the writers' connection), then
    /// reads on the readers', so a search never holds up a post for
    /// longer than the indexing.
    pub async fn search(&self, q: SearchQuery) -> Result<SearchPage, StoreError> {
        self.with(index_for_search).await?;
        self.read(move |c| search_page(c, &q)).await
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
    use crate::store::Arrival;
    use segchat_proto::message::Message;

    /// A message like `template` with other fields (the store does not
    /// check signatures, so one signed template serves them all).
    fn like(
        template: &Message,
        n: u128,
        channel: &str,
        author: &str,
        ts_ms: u64,
        body: &str,
    ) -> Message {
        Message {
            id: uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | n),
            channel: channel.into(),
            author: author.into(),
            ts_ms,
            body: body.into(),
            ..template.clone()
        }
    }

    async fn search(s: &Store, q: SearchQuery) -> SearchPage {
        s.search(q).await.expect("search")
    }

    fn words(text: &str) -> SearchQuery {
        SearchQuery::new(text, SearchQuery::DEFAULT_LIMIT).expect("a good search")
    }

    fn bodies(page: &SearchPage) -> Vec<&str> {
        page.results.iter().map(|m| m.body.as_str()).collect()
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
        let found = search(&s, words("apples")).await;
        assert_eq!(found.total, 2, "{found:?}");
        assert_eq!(bodies(&found), ["more apples", "apples and pears"]);
        assert_eq!(s.index_some().await.expect("index"), 0);
        let found = search(&s, words("pears")).await;
        assert_eq!(found.results.len(), 1);
    }

    #[tokio::test]
    async fn ten_thousand_matches_page_newest_first_each_seen_exactly_once() {
        const N: u128 = 10_000;
        let s = Store::open_in_memory().expect("store");
        let t = message(0, "");
        // Stored out of time order (a permutation of 0..N), three to a
        // millisecond, so the order is the time's and ties go to the
        // later stored.
        let k_at = |i: u128| (i * 7_919) % N;
        let ts_of = |k: u128| 1_000_000 + (k / 3) as u64;
        let mut batch: Vec<Message> = (0..N)
            .map(|i| {
                let k = k_at(i);
                like(
                    &t,
                    k + 1,
                    "c",
                    "alice",
                    ts_of(k),
                    &format!("lorem ipsum {k}"),
                )
            })
            .collect();
        // Others that do not match, in between.
        batch.extend((0..200).map(|j| like(&t, N + 1 + j, "c", "alice", 1_002_000, "dolor sit")));
        let arrival = hosted();
        for chunk in batch.chunks(1_000) {
            let rows: Vec<(&Message, &Arrival)> = chunk.iter().map(|m| (m, &arrival)).collect();
            s.host_append_blocking("c", &rows).expect("append");
        }
        let mut want: Vec<(u64, u128)> = (0..N).map(|i| (ts_of(k_at(i)), i)).collect();
        want.sort_by(|a, b| b.cmp(a));
        let want: Vec<String> = want
            .into_iter()
            .map(|(_, i)| format!("lorem ipsum {}", k_at(i)))
            .collect();

        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let mut q = SearchQuery::new("lore", SearchQuery::MAX_LIMIT).expect("query");
            q.cursor = cursor;
            let page = search(&s, q).await;
            pages += 1;
            assert_eq!(page.total, N as u64, "every page counts every match");
            seen.extend(page.results.iter().map(|m| m.body.clone()));
            match page.next {
                Some(next) => {
                    assert_eq!(
                        page.results.len(),
                        SearchQuery::MAX_LIMIT as usize,
                        "only the last page is short"
                    );
                    cursor = Some(next);
                }
                None => break,
            }
            assert!(pages <= 60, "the pages never end");
        }
        assert_eq!(pages, 50, "no empty page at the end");
        assert_eq!(seen.len(), want.len());
        assert!(seen == want, "every match once, newest first");
    }

    #[tokio::test]
    async fn a_word_finds_the_words_it_starts() {
        let s = Store::open_in_memory().expect("store");
        let t = message(0, "");
        for (n, body) in [
            (1, "Lorem ipsum"),
            (2, "the lord of it"),
            (3, "Lorelei sang"),
        ] {
            s.insert_message(like(&t, n, "c", "alice", 1_000 + n as u64, body), hosted())
                .await
                .expect("insert");
        }
        let found = search(&s, words("lore")).await;
        assert_eq!(bodies(&found), ["Lorelei sang", "Lorem ipsum"]);
        assert_eq!(found.total, 2);
        // Every word is a prefix, and all must be there.
        assert_eq!(bodies(&search(&s, words("ip lor")).await), ["Lorem ipsum"]);
        assert_eq!(bodies(&search(&s, words("lorem")).await), ["Lorem ipsum"]);
        assert_eq!(
            search(&s, words("orem")).await.total,
            0,
            "a start, not a middle"
        );
    }

    #[tokio::test]
    async fn filters_narrow_by_channel_author_and_time() {
        let s = Store::open_in_memory().expect("store");
        let t = message(0, "");
        let all = [
            (1, "ops", "alice", 1_000),
            (2, "ops", "bob", 2_000),
            (3, "general", "alice", 3_000),
            (4, "general", "bob", 4_000),
            (5, "ops", "alice", 5_000),
        ];
        for (n, channel, author, ts) in all {
            let body = format!("deploy {n}");
            s.insert_message(like(&t, n, channel, author, ts, &body), hosted())
                .await
                .expect("insert");
        }
        let with = |f: &dyn Fn(&mut SearchQuery)| {
            let mut q = words("deploy");
            f(&mut q);
            q
        };
        let page = search(&s, with(&|q| q.channel = Some("ops".into()))).await;
        assert_eq!(bodies(&page), ["deploy 5", "deploy 2", "deploy 1"]);
        assert_eq!(page.total, 3);
        let page = search(&s, with(&|q| q.author = Some("bob".into()))).await;
        assert_eq!(bodies(&page), ["deploy 4", "deploy 2"]);
        let page = search(&s, with(&|q| q.before_ms = Some(3_000))).await;
        assert_eq!(
            bodies(&page),
            ["deploy 2", "deploy 1"],
            "before is exclusive"
        );
        let page = search(&s, with(&|q| q.after_ms = Some(3_000))).await;
        assert_eq!(
            bodies(&page),
            ["deploy 5", "deploy 4", "deploy 3"],
            "after is inclusive"
        );
        let page = search(
            &s,
            with(&|q| {
                q.channel = Some("ops".into());
                q.author = Some("alice".into());
                q.after_ms = Some(500);
                q.before_ms = Some(5_000);
            }),
        )
        .await;
        assert_eq!(bodies(&page), ["deploy 1"]);
        assert_eq!(page.total, 1);
        let page = search(&s, with(&|q| q.channel = Some("nowhere".into()))).await;
        assert_eq!((page.total, page.results.len(), page.next), (0, 0, None));
    }

    #[tokio::test]
    async fn quotes_and_fts_operators_are_searched_as_text() {
        let s = Store::open_in_memory().expect("store");
        let t = message(0, "");
        for (n, body) in [
            (1, r#"she said "hi" to NEAR(x) OR y*"#),
            (2, "key:value ^start -minus"),
            (3, "plain words"),
        ] {
            s.insert_message(like(&t, n, "c", "alice", 1_000 + n as u64, body), hosted())
                .await
                .expect("insert");
        }
        for (text, want) in [
            (r#""hi""#, 1),
            (r#"said "hi"#, 1),
            ("NEAR(x)", 1),
            ("OR", 1),
            ("y*", 1),
            ("AND NOT", 0),
            ("key:value", 1),
            ("^start", 1),
            ("-minus", 1),
            ("*", 0),
            ("\"", 0),
            ("( ) : ^ - +", 0),
            ("plain AND", 0),
        ] {
            let found = s.search(words(text)).await;
            let found = found.unwrap_or_else(|e| panic!("{text:?} failed: {e}"));
            assert_eq!(found.total, want, "{text:?}: {found:?}");
        }
    }

    #[tokio::test]
    async fn pages_hold_still_while_messages_arrive() {
        let s = Store::open_in_memory().expect("store");
        let t = message(0, "");
        for n in 1..=4u128 {
            let m = like(&t, n, "c", "alice", 1_000 * n as u64, &format!("note {n}"));
            s.insert_message(m, hosted()).await.expect("insert");
        }
        let first = search(&s, SearchQuery::new("note", 2).expect("query")).await;
        assert_eq!(bodies(&first), ["note 4", "note 3"]);
        // A newer message and an older one arrive between the pages.
        for (n, ts) in [(5u128, 9_000u64), (6, 500)] {
            let m = like(&t, n, "c", "alice", ts, &format!("note {n}"));
            s.insert_message(m, hosted()).await.expect("insert");
        }
        let mut q = SearchQuery::new("note", 2).expect("query");
        q.cursor = first.next;
        let second = search(&s, q.clone()).await;
        assert_eq!(
            bodies(&second),
            ["note 2", "note 1"],
            "nothing shifts or repeats"
        );
        assert_eq!(second.total, 6, "the count is of now");
        q.cursor = second.next;
        let third = search(&s, q).await;
        assert_eq!(bodies(&third), ["note 6"], "an older arrival is further on");
        assert_eq!(third.next, None);
    }
}
