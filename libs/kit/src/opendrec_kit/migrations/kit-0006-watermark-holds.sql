-- Issue 13: an event of a watermarked topic that a consumer dead-lettered holds that consumer's watermark on its
-- partition where it was, until the event is handled (replayed): no moment after it is taken as fully known.
CREATE TABLE watermark_holds (
    consumer   text        NOT NULL,
    topic      text        NOT NULL,
    partition  integer     NOT NULL,
    "offset"   bigint      NOT NULL,  -- where the dead letter was on the partition
    event_id   uuid,                  -- NULL when the message was not an event at all (poison)
    at         timestamptz NOT NULL,  -- the partition's watermark when it was dead-lettered: held there
    error      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition, "offset")
);
CREATE INDEX watermark_holds_event ON watermark_holds (event_id);
