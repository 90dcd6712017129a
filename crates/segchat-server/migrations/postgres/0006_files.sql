-- A message may share a file: its FileRef (hash, name, size, type) as
-- JSON, signed with the body. Removed with the body when redacted.
ALTER TABLE messages ADD COLUMN file TEXT;
