-- Channel settings an owner changes (`update_channel`): the displayed
-- title (a "rename": the name is signed into every message, so it never
-- changes; '' shows the name) and a topic of at most 300 bytes.

ALTER TABLE channels ADD COLUMN title TEXT NOT NULL DEFAULT '';
ALTER TABLE channels ADD COLUMN topic TEXT NOT NULL DEFAULT '';
