-- Full-text indexing leaves the write path: storing a message no longer
-- updates the FTS5 index in the same transaction (a new index segment per
-- transaction was most of a hosted post's storage time). Rows are indexed
-- in batches, in local_id order: by a background pass, and before every
-- search, so a search always sees every stored message.
-- Messages are never deleted or edited, so there is no delete trigger to
-- keep (deleting an unindexed row from an external-content index would
-- corrupt it).

DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_delete;

-- The highest local_id in the search index (everything up to it is in).
CREATE TABLE search_progress (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_through  INTEGER NOT NULL
);
INSERT INTO search_progress (id, indexed_through)
    VALUES (1, (SELECT COALESCE(MAX(local_id), 0) FROM messages));
