-- The server's schema on PostgreSQL: the same tables and meaning as the
-- SQLite migrations 0001-0004 (see migrations/sqlite), in PostgreSQL's
-- types. Several server instances share one database.

CREATE TABLE users (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT    NOT NULL,
    -- lower-cased username: uniqueness is case-insensitive
    username_key  TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    -- the status the user chose: online, idle or invisible
    status        TEXT    NOT NULL DEFAULT 'online',
    created_at_ms BIGINT  NOT NULL
);

CREATE TABLE sessions (
    -- public id, safe to show to others
    id            TEXT    PRIMARY KEY,
    -- sha256 of the bearer token; the token itself is never stored
    token_hash    TEXT    NOT NULL UNIQUE,
    -- NULL for visitors
    user_id       BIGINT  REFERENCES users(id) ON DELETE CASCADE,
    display_name  TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('user', 'visitor')),
    created_at_ms BIGINT  NOT NULL,
    expires_at_ms BIGINT  NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at_ms);

CREATE TABLE channels (
    id             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    owner_id       BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    visibility     TEXT    NOT NULL CHECK (visibility IN ('public', 'members_only', 'private')),
    allow_visitors BOOLEAN NOT NULL,
    created_at_ms  BIGINT  NOT NULL,
    -- the displayed name its owner chose ('' shows the name), and a topic
    title          TEXT    NOT NULL DEFAULT '',
    topic          TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE members (
    channel_id   BIGINT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role         TEXT   NOT NULL CHECK (role IN ('owner', 'moderator', 'member')),
    joined_at_ms BIGINT NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX members_by_user ON members (user_id);

CREATE TABLE invites (
    channel_id    BIGINT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    invited_by    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);

-- The durable backup of every channel's messages. `seq` is the server's
-- own sequence number: "everything in channel C after N" is an index
-- range. Inserts into one channel hold its `channels` row lock until they
-- commit, so a channel's seqs become visible in order (no reader sees 11
-- before 10 commits, and skips it).
CREATE TABLE messages (
    seq            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- UUIDv7 made by the author's node; the set key of a channel
    id             TEXT    NOT NULL UNIQUE,
    channel_id     BIGINT  NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    author         TEXT    NOT NULL,
    ts_ms          BIGINT  NOT NULL,
    -- UTF-8, as signed; BYTEA because TEXT cannot hold U+0000
    body           BYTEA   NOT NULL,
    -- the author's signed ticket, JSON, and the author's signature, hex
    ticket         TEXT    NOT NULL,
    signature      TEXT    NOT NULL,
    -- 'host' (backed up by the channel's host) or 'member' (posted while
    -- the host was offline)
    source         TEXT    NOT NULL CHECK (source IN ('host', 'member')),
    received_at_ms BIGINT  NOT NULL,
    -- replies, edits, deletions and reactions point at another message
    re_kind        TEXT    CHECK (re_kind IN ('reply', 'edit', 'delete', 'react', 'unreact')),
    re_id          TEXT,
    -- SHA-256 of the signed body, hex, once `body` was removed
    redacted       TEXT,
    deleted        BOOLEAN NOT NULL DEFAULT FALSE,
    -- the winning edit (last writer by (ts_ms, id))
    edit_id        TEXT,
    edited_ms      BIGINT
);
CREATE INDEX messages_by_channel ON messages (channel_id, seq);
CREATE INDEX messages_re ON messages (re_id, re_kind) WHERE re_id IS NOT NULL;
