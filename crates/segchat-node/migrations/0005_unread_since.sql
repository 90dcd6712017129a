-- Unread counts only what was written after this node started following a
-- channel it held nothing of: a new member's or visitor's first sync of
-- older history is history, not news.
CREATE TABLE unread_since (
    channel  TEXT    PRIMARY KEY,
    -- ms since the epoch (compared with messages.ts_ms)
    since_ms INTEGER NOT NULL
);
