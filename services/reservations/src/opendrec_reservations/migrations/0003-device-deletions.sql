-- Devices follow device.deleted: a deleted device can no longer be reserved. Its row stays (reservations
-- made before name it). device.deleted travels on another topic than device.registered, so it may come
-- first: deleted_devices remembers it, and a device registered after its deletion is stored as deleted.
ALTER TABLE devices ADD COLUMN deleted_at timestamptz;

CREATE TABLE deleted_devices (
    device_id  bigint      PRIMARY KEY,
    deleted_at timestamptz NOT NULL
);
