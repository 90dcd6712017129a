-- Replies, edits, deletions and reactions in direct messages, as channels
-- have them (0006): each is a row of its own pointing at another
-- (`re_kind`, `re_id`), sent and received like any message, and what
-- edits and a deletion did is kept on the message they point at.
ALTER TABLE dms ADD COLUMN re_kind TEXT
    CHECK (re_kind IN ('reply', 'edit', 'delete', 'react', 'unreact'));
ALTER TABLE dms ADD COLUMN re_id TEXT;
-- On a shown message: the text shown when it is not `text` (the winning
-- edit's; '' once deleted).
ALTER TABLE dms ADD COLUMN shown TEXT;
-- The winning edit (last writer by (sent_at_ms, id)) and its time.
ALTER TABLE dms ADD COLUMN edit_id TEXT;
ALTER TABLE dms ADD COLUMN edited_ms INTEGER;
ALTER TABLE dms ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;

CREATE INDEX dms_re ON dms (account, re_id, re_kind) WHERE re_id IS NOT NULL;
