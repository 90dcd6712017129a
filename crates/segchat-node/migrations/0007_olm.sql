-- This device's Olm state for end-to-end encrypted direct messages, per
-- account signed in on it: the account and its sessions, each pickled
-- and encrypted with a key derived from the node's secret key.
CREATE TABLE olm_state (
    username    TEXT    PRIMARY KEY,
    account     TEXT    NOT NULL,
    -- JSON: [[other device's Curve25519 key, [session pickle, …]], …]
    sessions    TEXT    NOT NULL,
    saved_at_ms INTEGER NOT NULL
);
