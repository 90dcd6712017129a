-- Every message this node's user has seen, its own outbox, and the cursors
-- that make syncing exact and resumable.

CREATE TABLE messages (
    -- local arrival order; also the full-text index's row id
    local_id      INTEGER PRIMARY KEY,
    -- UUIDv7 made by the author's node: a channel is a set keyed by id
    id            TEXT    NOT NULL UNIQUE,
    channel       TEXT    NOT NULL,
    author        TEXT    NOT NULL,
    ts_ms         INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    ticket        TEXT    NOT NULL,
    signature     TEXT    NOT NULL,
    -- where this copy came from: 'host' (the channel's host, P2P),
    -- 'server' (the server's backup) or 'local' (written here)
    source        TEXT    NOT NULL CHECK (source IN ('host', 'server', 'local')),
    -- the address it came from (host P2P address or server address)
    source_addr   TEXT,
    -- the sequence number the channel's host gave it, when known
    host_seq      INTEGER,
    -- the sequence number the server's backup gave it, when known
    server_seq    INTEGER,
    -- when this node hosts the channel: its own sequence number
    hosted_seq    INTEGER,
    -- for messages written here: pending, stored, backed_up or refused
    state         TEXT CHECK (state IN ('pending', 'stored', 'backed_up', 'refused')),
    reason        TEXT,
    received_at_ms INTEGER NOT NULL
);
CREATE INDEX messages_order ON messages (channel, ts_ms, id);
CREATE UNIQUE INDEX messages_hosted ON messages (channel, hosted_seq)
    WHERE hosted_seq IS NOT NULL;
CREATE INDEX messages_outbox ON messages (state) WHERE state = 'pending';

CREATE VIRTUAL TABLE messages_fts USING fts5(
    body, author, channel UNINDEXED,
    content = 'messages', content_rowid = 'local_id',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body, author, channel)
    VALUES (new.local_id, new.body, new.author, new.channel);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, author, channel)
    VALUES ('delete', old.local_id, old.body, old.author, old.channel);
END;

-- Per channel: 'host' = highest contiguous host sequence number received
-- as a member; 'server' = highest server sequence number pulled; 'backup' =
-- (as host) highest own sequence number the server acknowledged; 'read' =
-- highest local_id the user has read.
CREATE TABLE cursors (
    channel TEXT    NOT NULL,
    kind    TEXT    NOT NULL CHECK (kind IN ('host', 'server', 'backup', 'read')),
    value   INTEGER NOT NULL,
    PRIMARY KEY (channel, kind)
);

-- Ranges of host sequence numbers known to be missing (seen a later one,
-- not these). Shown in history as a marked gap until filled.
CREATE TABLE gaps (
    channel   TEXT    NOT NULL,
    from_seq  INTEGER NOT NULL,
    to_seq    INTEGER NOT NULL,
    PRIMARY KEY (channel, from_seq)
);
