-- The durable backup of every channel's messages. `seq` is the server's own
-- sequence number: "everything in channel C after N" is an index range.

CREATE TABLE messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- UUIDv7 made by the author's node; the set key of a channel
    id            TEXT    NOT NULL UNIQUE,
    channel_id    INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    author        TEXT    NOT NULL,
    ts_ms         INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    -- the author's signed ticket, JSON, and the author's signature, hex
    ticket        TEXT    NOT NULL,
    signature     TEXT    NOT NULL,
    -- 'host' (backed up by the channel's host) or 'member' (posted while
    -- the host was offline)
    source        TEXT    NOT NULL CHECK (source IN ('host', 'member')),
    received_at_ms INTEGER NOT NULL
);
CREATE INDEX messages_by_channel ON messages (channel_id, seq);
