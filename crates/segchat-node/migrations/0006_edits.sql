-- Replies, edits, deletions and reactions (segchat_proto::edits): each is a
-- message pointing at another (`re_kind`, `re_id`), and what those did to a
-- message is kept on it, so history reads one row per shown message.

ALTER TABLE messages ADD COLUMN re_kind TEXT
    CHECK (re_kind IN ('reply', 'edit', 'delete', 'react', 'unreact'));
ALTER TABLE messages ADD COLUMN re_id TEXT;
-- Set when the body was removed (deleted, or replaced by a newer edit):
-- the SHA-256 of the signed body, hex. `body` is then ''.
ALTER TABLE messages ADD COLUMN redacted TEXT;
-- On a shown message: the text shown when it is not `body` (the winning
-- edit's text; '' once deleted). What the search index holds for the row
-- is always COALESCE(shown, body).
ALTER TABLE messages ADD COLUMN shown TEXT;
-- The winning edit (last writer by (ts_ms, id)) and its time.
ALTER TABLE messages ADD COLUMN edit_id TEXT;
ALTER TABLE messages ADD COLUMN edited_ms INTEGER;
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;

CREATE INDEX messages_re ON messages (re_id, re_kind) WHERE re_id IS NOT NULL;
