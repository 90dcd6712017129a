//! What a search asks: the words (turned into an FTS5 query that can never
//! be FTS5 syntax), the filters, the page size and where the page starts;
//! what it answers; and why one is refused. Running it is `mod.rs`.

use std::fmt;
use std::str::FromStr;

use super::super::rows::MessageRow;

/// A search that cannot be run as asked; the text says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSearch {
    #[error("give at least one word to search for")]
    NoWords,
    #[error("the search text is {chars} characters long; the most is {max}", max = SearchQuery::MAX_CHARS)]
    TooLong { chars: usize },
    #[error("the search has {words} words; the most is {max}", max = SearchQuery::MAX_WORDS)]
    TooManyWords { words: usize },
    #[error("limit must be from 1 to {max}, not {0}", max = SearchQuery::MAX_LIMIT)]
    Limit(u32),
    #[error("the cursor is not one a search answered; pass `next_cursor` as it came")]
    Cursor,
}

/// Where the next page of a search starts: just after the last message
/// shown, in newest-first order. Opaque to clients (32 hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchCursor {
    pub(super) ts_ms: i64,
    pub(super) local_id: i64,
}

impl SearchCursor {
    pub(super) fn after(m: &MessageRow) -> SearchCursor {
        SearchCursor {
            ts_ms: m.ts_ms as i64,
            local_id: m.local_id,
        }
    }
}

impl fmt::Display for SearchCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.ts_ms as u64, self.local_id as u64)
    }
}

impl FromStr for SearchCursor {
    type Err = BadSearch;

    fn from_str(s: &str) -> Result<Self, BadSearch> {
        let half = |h: &str| {
            u64::from_str_radix(h, 16)
                .ok()
                .and_then(|v| i64::try_from(v).ok())
        };
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadSearch::Cursor);
        }
        match (half(&s[..16]), half(&s[16..])) {
            (Some(ts_ms), Some(local_id)) => Ok(SearchCursor { ts_ms, local_id }),
            _ => Err(BadSearch::Cursor),
        }
    }
}

/// One search: the words (made into an FTS5 query by [`SearchQuery::new`],
/// the only way to make one), the filters, the page size and where the
/// page starts.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub(super) fts: String,
    pub(super) limit: u32,
    /// Only messages in this channel.
    pub channel: Option<String>,
    /// Only messages by this author (a username, or a visitor's
    /// `visitor:name#hex`).
    pub author: Option<String>,
    /// Only messages written before this time (ms since 1970, exclusive).
    pub before_ms: Option<i64>,
    /// Only messages written at or after this time (ms since 1970).
    pub after_ms: Option<i64>,
    /// The page after this cursor (else the newest page).
    pub cursor: Option<SearchCursor>,
}

impl SearchQuery {
    /// The most results one page may hold.
    pub const MAX_LIMIT: u32 = 200;
    /// A page's size when the asker names none.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// The longest search text, in characters.
    pub const MAX_CHARS: usize = 256;
    /// The most words one search may hold (each is a prefix to expand).
    pub const MAX_WORDS: usize = 16;

    /// A search for messages holding every word of `text` (each also as
    /// a prefix), `limit` to a page, with no filters yet.
    pub fn new(text: &str, limit: u32) -> Result<SearchQuery, BadSearch> {
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(BadSearch::Limit(limit));
        }
        Ok(SearchQuery {
            fts: fts_query(text)?,
            limit,
            channel: None,
            author: None,
            before_ms: None,
            after_ms: None,
            cursor: None,
        })
    }
}

/// A page of search results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// Newest first.
    pub results: Vec<MessageRow>,
    /// How many messages match in all (every page, this one included).
    pub total: u64,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<SearchCursor>,
}

/// Turns free text into an FTS5 query that matches every word, each also
/// as the start of a longer word, so user input can never be FTS5 syntax
/// (quotes, `*`, `NEAR`, `OR`, `^` and `:` are searched as text; a word
/// with no letters or digits in it matches nothing and adds nothing).
fn fts_query(text: &str) -> Result<String, BadSearch> {
    let chars = text.chars().count();
    if chars > SearchQuery::MAX_CHARS {
        return Err(BadSearch::TooLong { chars });
    }
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
        .collect();
    match words.len() {
        0 => Err(BadSearch::NoWords),
        n if n > SearchQuery::MAX_WORDS => Err(BadSearch::TooManyWords { words: n }),
        _ => Ok(words.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_queries_quote_every_word_and_make_it_a_prefix() {
        assert_eq!(
            fts_query("hello  wor\"ld"),
            Ok("\"hello\"* \"wor\"\"ld\"*".into())
        );
        assert_eq!(
            fts_query("NEAR(a b) OR c*"),
            Ok("\"NEAR(a\"* \"b)\"* \"OR\"* \"c*\"*".into())
        );
    }

    #[test]
    fn bad_searches_are_refused_with_a_reason() {
        let bad = |text: &str, limit| SearchQuery::new(text, limit).map(drop);
        assert_eq!(bad("   ", 50), Err(BadSearch::NoWords));
        assert_eq!(
            bad(&"x".repeat(SearchQuery::MAX_CHARS + 1), 50),
            Err(BadSearch::TooLong {
                chars: SearchQuery::MAX_CHARS + 1
            })
        );
        assert_eq!(
            bad(&"é".repeat(SearchQuery::MAX_CHARS), 50),
            Ok(()),
            "characters, not bytes"
        );
        assert_eq!(
            bad(&"a ".repeat(SearchQuery::MAX_WORDS + 1), 50),
            Err(BadSearch::TooManyWords {
                words: SearchQuery::MAX_WORDS + 1
            })
        );
        assert_eq!(bad("a", 0), Err(BadSearch::Limit(0)));
        assert_eq!(
            bad("a", SearchQuery::MAX_LIMIT + 1),
            Err(BadSearch::Limit(SearchQuery::MAX_LIMIT + 1))
        );
        assert_eq!(bad("a", SearchQuery::MAX_LIMIT), Ok(()));
        for cursor in ["", "zz", &"0".repeat(31), &"g".repeat(32), &"f".repeat(32)] {
            assert_eq!(
                cursor.parse::<SearchCursor>(),
                Err(BadSearch::Cursor),
                "{cursor:?}"
            );
        }
        let k = SearchCursor {
            ts_ms: 1_700_000_000_000,
            local_id: 42,
        };
        assert_eq!(k.to_string().parse(), Ok(k), "a cursor survives its trip");
        for e in [BadSearch::NoWords, BadSearch::Limit(0), BadSearch::Cursor] {
            assert!(!e.to_string().is_empty());
        }
    }
}
