-- Devices as the devices service announces them (device.registered): what the read rules need.
CREATE TABLE devices (
    device_id          bigint PRIMARY KEY,
    device_uuid        uuid        NOT NULL,
    external_id        text        NOT NULL,
    organization_id    bigint      NOT NULL,
    capacity_kw        double precision NOT NULL,
    country_code       text        NOT NULL,
    commissioning_date timestamptz NOT NULL,
    onboarded_at       timestamptz NOT NULL,
    timezone           text,
    yield_value        double precision,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, external_id)
);

-- The latest accepted ongoing read per device: validation reads this one row, locked
-- FOR UPDATE while a batch of the device is judged, instead of scanning intervals.
CREATE TABLE last_reads (
    device_id      bigint PRIMARY KEY REFERENCES devices (device_id),
    ongoing_type   text CHECK (ongoing_type IN ('Delta', 'Aggregate')),
    last_end       timestamptz,
    last_value_wh  bigint,
    meter_total_wh bigint,
    updated_at     timestamptz
);

-- Every accepted read as energy of one device between two instants. Ends of one device
-- never repeat (History reads don't overlap and end by onboarding; ongoing ends strictly
-- increase after it), so (device_id, end_at) is the key and the index of every query.
CREATE TABLE intervals (
    device_id bigint      NOT NULL,
    start_at  timestamptz NOT NULL,
    end_at    timestamptz NOT NULL,
    wh        bigint      NOT NULL CHECK (wh >= 0),
    read_type text        NOT NULL CHECK (read_type IN ('History', 'Delta', 'Aggregate')),
    source    text        NOT NULL,
    batch_id  uuid        NOT NULL,
    CHECK (start_at < end_at),
    PRIMARY KEY (device_id, end_at)
) PARTITION BY RANGE (end_at);

-- One partition per year; the default one catches anything outside (never refuse a read
-- for want of a partition). Add years with a later migration before 2040.
DO $$
BEGIN
    FOR y IN 2015..2040 LOOP
        EXECUTE format(
            'CREATE TABLE intervals_y%s PARTITION OF intervals FOR VALUES FROM (%L) TO (%L)',
            y, make_timestamptz(y, 1, 1, 0, 0, 0, 'UTC'), make_timestamptz(y + 1, 1, 1, 0, 0, 0, 'UTC'));
    END LOOP;
END $$;
CREATE TABLE intervals_default PARTITION OF intervals DEFAULT;

-- Accepted batches: the answer to a resubmission (same Idempotency-Key or same content).
CREATE TABLE batches (
    batch_id        uuid        PRIMARY KEY,
    device_id       bigint      NOT NULL REFERENCES devices (device_id),
    read_type       text        NOT NULL,
    source          text        NOT NULL,
    idempotency_key text,
    fingerprint     bytea       NOT NULL,
    read_count      integer     NOT NULL,
    total_wh        numeric(30) NOT NULL,
    first_at        timestamptz NOT NULL,
    last_at         timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX batches_idempotency_key ON batches (device_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX batches_fingerprint ON batches (device_id, fingerprint);

-- read.submitted events by their source's id: each is decided once. A submission for a
-- device not known yet waits here (with its payload) until device.registered arrives.
CREATE TABLE submissions (
    submission_id text        PRIMARY KEY,
    device_id     bigint      NOT NULL,
    source        text        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('waiting', 'accepted', 'rejected')),
    batch_id      uuid,
    reasons       jsonb,
    payload       jsonb,
    event_id      uuid        NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    decided_at    timestamptz
);
CREATE INDEX submissions_waiting ON submissions (device_id, received_at) WHERE status = 'waiting';
CREATE INDEX submissions_rejected ON submissions (decided_at) WHERE status = 'rejected';
