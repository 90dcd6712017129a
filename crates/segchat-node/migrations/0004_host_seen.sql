-- A member's record of its hosts' sequences (see src/store/cursors.rs).
-- Which host sequence numbers this node holds is what its messages say
-- (their host_seq); host_seen keeps, per channel, the highest number it has
-- heard of, stored or not, so that a number it could not store (a full
-- disk) stays a marked gap until it is filled. The old gaps table
-- forgot what was held beyond a gap and is replaced by this.
CREATE INDEX messages_host_seq ON messages (channel, host_seq)
    WHERE host_seq IS NOT NULL;

CREATE TABLE host_seen (
    channel TEXT    PRIMARY KEY,
    highest INTEGER NOT NULL
);

INSERT INTO host_seen (channel, highest)
    SELECT channel, MAX(to_seq) + 1 FROM gaps GROUP BY channel;

DROP TABLE gaps;
