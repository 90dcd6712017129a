-- A message may share a file: its FileRef (hash, name, size, type) as
-- JSON, signed with the body. Removed with the body when redacted.
ALTER TABLE messages ADD COLUMN file TEXT;
-- Which messages share a file, for the backup copy of files (who may
-- fetch it: a reader of a channel where it is shared).
ALTER TABLE messages ADD COLUMN file_hash TEXT
    GENERATED ALWAYS AS ((file::jsonb) ->> 'hash') STORED;
CREATE INDEX messages_by_file ON messages (file_hash, channel_id) WHERE file IS NOT NULL;
