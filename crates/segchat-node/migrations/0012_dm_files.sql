-- A direct message may share a file, encrypted end to end: what the
-- payload says of it (FileRef and its key, segchat_proto::dm::DmFile) as
-- JSON, gone with the message when it is deleted. Nodes serve a file
-- shared in a direct message only to the conversation's members.
ALTER TABLE dms ADD COLUMN file TEXT;
ALTER TABLE dms ADD COLUMN file_hash TEXT
    GENERATED ALWAYS AS (json_extract(file, '$.hash')) VIRTUAL;
CREATE INDEX dms_by_file ON dms(file_hash) WHERE file IS NOT NULL;
