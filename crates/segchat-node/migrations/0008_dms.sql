-- Direct messages, decrypted, per account signed in on this node: what
-- the user sent (the outbox is the rows still 'pending') and what reached
-- this device. A conversation is named by its other members, sorted and
-- joined by ',' (for two people: the other one's name).
CREATE TABLE dms (
    account      TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    sender       TEXT    NOT NULL,
    -- The sender's hybrid clock: the order of the conversation.
    sent_at_ms   INTEGER NOT NULL,
    text         TEXT    NOT NULL,
    -- Sent by the account: pending, sent (the server or the peer has it),
    -- delivered, read, or failed (refused for good: error says why).
    -- Received: received, then read once the user saw it.
    state        TEXT    NOT NULL,
    -- How it left or arrived: 'server' or 'p2p'.
    path         TEXT,
    error        TEXT,
    stored_at_ms INTEGER NOT NULL,
    PRIMARY KEY (account, id)
);
CREATE INDEX dms_by_conversation ON dms (account, conversation, sent_at_ms, id);
CREATE INDEX dms_pending ON dms (account, stored_at_ms) WHERE state = 'pending';

-- How far each account's mailbox on the server has been fetched and kept.
CREATE TABLE dm_mailbox (
    account     TEXT    PRIMARY KEY,
    fetched_seq INTEGER NOT NULL
);
