-- Accounts, sessions, channels and memberships.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL,
    -- lower-cased username: uniqueness is case-insensitive
    username_key  TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    -- the status the user chose: online, idle or invisible
    status        TEXT    NOT NULL DEFAULT 'online',
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE sessions (
    -- public id, safe to show to others
    id            TEXT    PRIMARY KEY,
    -- sha256 of the bearer token; the token itself is never stored
    token_hash    TEXT    NOT NULL UNIQUE,
    -- NULL for visitors
    user_id       INTEGER REFERENCES users(id) ON DELETE CASCADE,
    display_name  TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('user', 'visitor')),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at_ms);

CREATE TABLE channels (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    owner_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    visibility     TEXT    NOT NULL CHECK (visibility IN ('public', 'members_only', 'private')),
    allow_visitors INTEGER NOT NULL,
    created_at_ms  INTEGER NOT NULL
);

CREATE TABLE members (
    channel_id   INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role         TEXT    NOT NULL CHECK (role IN ('owner', 'moderator', 'member')),
    joined_at_ms INTEGER NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX members_by_user ON members (user_id);

CREATE TABLE invites (
    channel_id    INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    invited_by    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);
