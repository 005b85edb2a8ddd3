-- An outbox row is written once, read once and deleted: compressing its envelope (pglz) costs more
-- CPU than the bytes it saves (a read.ingested row of 5,000 reads is ~400 kB). Out of line, uncompressed.
ALTER TABLE outbox ALTER COLUMN envelope SET STORAGE EXTERNAL;
