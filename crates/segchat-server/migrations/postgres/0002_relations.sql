-- Friends, friend requests and blocks. Each side of a pair holds its own
-- row about the other; the two always agree (segchat_proto::friends):
-- friend/friend, outgoing/incoming, blocked/(none or blocked).
CREATE TABLE relations (
    user_id  BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    other_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- friend, incoming, outgoing or blocked: what other_id is to user_id
    kind     TEXT   NOT NULL CHECK (kind IN ('friend', 'incoming', 'outgoing', 'blocked')),
    since_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, other_id)
);

-- Who blocked a user, who counts them a friend.
CREATE INDEX relations_by_other ON relations (other_id, kind);
