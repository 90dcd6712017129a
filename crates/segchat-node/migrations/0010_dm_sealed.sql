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
