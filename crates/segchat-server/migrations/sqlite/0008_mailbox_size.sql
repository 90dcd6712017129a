-- Each waiting envelope's body size in bytes, so what a device's mailbox
-- holds in bytes, in all and from each sender, is summed from an index,
-- never by reading bodies.
ALTER TABLE mailbox ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE mailbox SET size = length(CAST(body AS BLOB));
CREATE INDEX mailbox_size ON mailbox (to_node, from_user, size);
