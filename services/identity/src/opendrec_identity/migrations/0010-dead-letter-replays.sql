-- Issue 13: dead letters an admin replayed (GET/POST /api/admin/dead-letters): who replayed which, and when. The
-- dead letters themselves stay on the broker's `<topic>.dlq` topics.
CREATE TABLE dead_letter_replays (
    topic       text        NOT NULL,  -- the DLQ
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    event_id    text,
    replayed_at timestamptz NOT NULL DEFAULT now(),
    replayed_by bigint      NOT NULL,  -- the admin's user id
    PRIMARY KEY (topic, partition, "offset")
);
