-- A message may share a file: its FileRef (hash, name, size, type) as
-- JSON, signed with the body, removed with the body when redacted.
ALTER TABLE messages ADD COLUMN file TEXT;
ALTER TABLE messages ADD COLUMN file_hash TEXT
    GENERATED ALWAYS AS (json_extract(file, '$.hash')) VIRTUAL;
CREATE INDEX messages_by_file ON messages(file_hash) WHERE file IS NOT NULL;

-- Files this node fetches or fetched: what it was asked for and where it
-- stands. The bytes and their hash tree are in the blob store
-- (DATA_DIR/blobs); a partial file resumes from what is there.
CREATE TABLE files (
    hash        TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    name        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mime        TEXT NOT NULL,
    -- 'fetching', 'complete' or 'failed'
    state       TEXT NOT NULL,
    reason      TEXT,
    -- whether this node's user shared it (seeded from the start)
    mine        INTEGER NOT NULL DEFAULT 0,
    -- whether it is here only as a host's copy of a file shared in a
    -- channel this node hosts (counted against keep_for_others); 0 once
    -- this node's user shared or asked for it
    for_others  INTEGER NOT NULL DEFAULT 0,
    updated_ms  INTEGER NOT NULL
);
