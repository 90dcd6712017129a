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

-- Which conversation a row belongs to, whatever case its names were
-- typed in (a username is one user in any case): the other members,
-- lowercased, sorted, joined by ','. `conversation` keeps the spelling
-- first seen for it, for showing.
ALTER TABLE dms ADD COLUMN conversation_key TEXT NOT NULL DEFAULT '';
UPDATE dms SET conversation_key = lower(conversation);
DROP INDEX dms_by_conversation;
CREATE INDEX dms_by_conversation ON dms (account, conversation_key, sent_at_ms, id);
