-- Issue 13. Published rows are kept for OUTBOX_RETENTION_S (published_at set) instead of deleted at once, so that
-- a broker that lost its data (a restart of a memory-only broker, an unreplicated Kafka) gets them again; a row the
-- broker refuses for good (e.g. larger than its message limit) is set aside (failed_at, error) instead of holding
-- up every later event of the service.
ALTER TABLE outbox
    ADD COLUMN published_at timestamptz,
    ADD COLUMN failed_at    timestamptz,
    ADD COLUMN error        text;
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;

-- The broker this service last published to (see outbox.BrokerEpoch).
CREATE TABLE kit_state (
    name  text PRIMARY KEY,
    value text NOT NULL
);
