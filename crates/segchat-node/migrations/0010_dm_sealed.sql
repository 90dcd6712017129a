-- What waits in the DM outbox, sealed: each message is encrypted once per
-- recipient device (named by its Curve25519 key) and the copy kept with
-- the Olm state that made it, so a retry sends the same bytes rather than
-- moving the ratchet on again. Deleted when the message leaves the outbox.
CREATE TABLE dm_sealed (
    account TEXT NOT NULL,
    id      TEXT NOT NULL,
    device  TEXT NOT NULL,
    body    TEXT NOT NULL,
    PRIMARY KEY (account, id, device)
);

-- Whether a row still has to leave (the outbox), apart from the state it
-- shows: a fast peer's receipt may move a row to delivered before every
-- device has it, and it must still be sent to the rest.
ALTER TABLE dms ADD COLUMN outbox INTEGER NOT NULL DEFAULT 0;
UPDATE dms SET outbox = 1 WHERE state = 'pending';
DROP INDEX dms_pending;
CREATE INDEX dms_outbox ON dms (account, stored_at_ms) WHERE outbox = 1;

-- Others' messages this account read on another of its devices before
-- they reached this one (the read mark came first): they arrive read.
-- Kept a week at most.
CREATE TABLE dm_read_early (
    account          TEXT    NOT NULL,
    id               TEXT    NOT NULL,
    conversation_key TEXT    NOT NULL,
    stored_at_ms     INTEGER NOT NULL,
    PRIMARY KEY (account, id)
);
