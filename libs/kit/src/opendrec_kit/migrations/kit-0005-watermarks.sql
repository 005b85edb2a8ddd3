-- Issue 13: watermarks (see opendrec_kit.watermarks). A producer's watermark rows go through the outbox like
-- events, to one partition each (kind 'watermark', no envelope); a consumer keeps the latest it met per partition.
ALTER TABLE outbox
    ADD COLUMN partition integer,
    ADD COLUMN kind      text NOT NULL DEFAULT 'event' CHECK (kind IN ('event', 'watermark'));

CREATE TABLE watermarks (
    consumer   text        NOT NULL,
    topic      text        NOT NULL,
    partition  integer     NOT NULL,
    at         timestamptz NOT NULL,
    partitions integer     NOT NULL,  -- the producer's partition count: every one must be met
    PRIMARY KEY (consumer, topic, partition)
);
