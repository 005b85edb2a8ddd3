-- Read model of devices, from device.registered (never read from the devices service's tables).
CREATE TABLE devices (
    device_id       bigint PRIMARY KEY,
    external_id     text NOT NULL,
    organization_id bigint NOT NULL,
    onboarded_at    timestamptz NOT NULL,
    CONSTRAINT devices_org_external_id_key UNIQUE (organization_id, external_id)
);

-- A Kazam charger (its Kazam device_id) feeding one of our devices. poll_cursor is the Kazam
-- start_time (unix seconds) from which the next poll asks; it starts at the link time.
CREATE TABLE charger_links (
    charger_id      text PRIMARY KEY,
    device_id       bigint NOT NULL REFERENCES devices (device_id),
    organization_id bigint NOT NULL,
    linked_by       bigint,
    linked_at       timestamptz NOT NULL DEFAULT now(),
    poll_cursor     bigint NOT NULL
);
CREATE INDEX charger_links_org ON charger_links (organization_id, charger_id);

-- Every Kazam transaction we acted on, once: a transaction polled again is recognised here and
-- never becomes a second read. Kept when a link is removed, so a re-link does not resubmit.
CREATE TABLE kazam_transactions (
    txn_id      text PRIMARY KEY,
    charger_id  text NOT NULL,
    device_id   bigint NOT NULL,
    start_time  timestamptz,
    end_time    timestamptz,
    value_wh    bigint,
    outcome     text NOT NULL CHECK (outcome IN ('submitted', 'skipped')),
    reason      text,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
