-- Replies, edits, deletions and reactions (segchat_proto::edits) in the
-- backup: each is a message pointing at another (`re_kind`, `re_id`); what
-- they did to a message is kept on it, and text a deletion or a newer edit
-- replaced is redacted (the body's hash kept, the body gone).

ALTER TABLE messages ADD COLUMN re_kind TEXT
    CHECK (re_kind IN ('reply', 'edit', 'delete', 'react', 'unreact'));
ALTER TABLE messages ADD COLUMN re_id TEXT;
-- SHA-256 of the signed body, hex, once `body` was removed ('').
ALTER TABLE messages ADD COLUMN redacted TEXT;
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
-- The winning edit (last writer by (ts_ms, id)).
ALTER TABLE messages ADD COLUMN edit_id TEXT;
ALTER TABLE messages ADD COLUMN edited_ms INTEGER;

CREATE INDEX messages_re ON messages (re_id, re_kind) WHERE re_id IS NOT NULL;
