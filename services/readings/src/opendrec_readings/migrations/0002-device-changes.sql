-- Devices follow device.updated and device.deleted too. Those travel on other topics than
-- device.registered, so they may arrive in any order: state_at (the event's time) keeps an
-- older state from overwriting a newer one, and a deletion is remembered even when it
-- arrives before the device.
ALTER TABLE devices ADD COLUMN state_at timestamptz;
ALTER TABLE devices ADD COLUMN deleted_at timestamptz;

-- After a deletion the organization may register a new device with the same external id:
-- the external id names the live device (see store.find_device), no longer uniquely.
ALTER TABLE devices DROP CONSTRAINT devices_organization_id_external_id_key;
CREATE INDEX devices_external_id ON devices (organization_id, external_id);

CREATE TABLE deleted_devices (
    device_id  bigint      PRIMARY KEY,
    deleted_at timestamptz NOT NULL
);
