-- Encrypted direct messages waiting for a device (segchat_proto::mailbox):
-- bodies are opaque to the server. Deleted when the device acknowledges
-- them, or with the device.
CREATE TABLE mailbox (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    to_node      TEXT   NOT NULL REFERENCES devices(node_key) ON DELETE CASCADE,
    id           TEXT   NOT NULL,
    from_user    TEXT   NOT NULL,
    from_node    TEXT   NOT NULL,
    body         TEXT   NOT NULL,
    stored_at_ms BIGINT NOT NULL,
    UNIQUE (to_node, id)
);
