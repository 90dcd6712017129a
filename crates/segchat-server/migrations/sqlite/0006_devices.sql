-- Device keys for end-to-end encrypted direct messages (segchat_proto::devices):
-- one row per node signed in as a user that published its Olm identity
-- keys. The device goes with the session it was published under.
CREATE TABLE devices (
    -- the node's ed25519 key (hex), which signed every key below
    node_key           TEXT    PRIMARY KEY,
    user_id            INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id         TEXT    NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    curve25519         TEXT    NOT NULL,
    ed25519            TEXT    NOT NULL,
    signature          TEXT    NOT NULL,
    -- the key handed out when no one-time key is left (reused)
    fallback_key_id    TEXT,
    fallback_key       TEXT,
    fallback_signature TEXT,
    published_at_ms    INTEGER NOT NULL
);
CREATE INDEX devices_by_user ON devices (user_id);

-- Each is handed out once (claim_keys) and deleted as it is.
CREATE TABLE one_time_keys (
    node_key  TEXT NOT NULL REFERENCES devices(node_key) ON DELETE CASCADE,
    key_id    TEXT NOT NULL,
    key       TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (node_key, key_id)
);
CREATE INDEX devices_by_session ON devices (session_id);
