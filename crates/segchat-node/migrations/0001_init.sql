-- The node's local store, version 1: the signed-in session and the last
-- channel list seen from the server (shown, marked as cached, while the
-- server is unreachable).

CREATE TABLE session (
    -- At most one row: the session this node resumes after a reconnect.
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    token         TEXT    NOT NULL,
    username      TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    session_id    TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    saved_at_ms   INTEGER NOT NULL
);

CREATE TABLE channel_cache (
    name          TEXT    PRIMARY KEY,
    -- The channel as the server last described it (JSON of ChannelInfo).
    info          TEXT    NOT NULL,
    position      INTEGER NOT NULL,
    fetched_at_ms INTEGER NOT NULL
);
