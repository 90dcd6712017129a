-- Each waiting envelope's body size in bytes, so what a device's mailbox
-- holds in bytes, in all and from each sender, is summed from an index,
-- never by reading bodies.
ALTER TABLE mailbox ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
UPDATE mailbox SET size = octet_length(body);
CREATE INDEX mailbox_size ON mailbox (to_node, from_user, size);
