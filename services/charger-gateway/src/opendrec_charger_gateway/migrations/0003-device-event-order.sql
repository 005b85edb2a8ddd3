-- device.registered, device.updated and device.deleted travel on three topics, so they may arrive
-- in any order. A deletion is remembered here even for a device not known yet (a device.registered
-- arriving after it must not bring the device back), and each row keeps the event time of the state
-- it holds (an older state arriving late is ignored).
CREATE TABLE deleted_devices (
    device_id  bigint PRIMARY KEY,
    deleted_at timestamptz NOT NULL
);
INSERT INTO deleted_devices (device_id, deleted_at) SELECT device_id, deleted_at FROM devices WHERE deleted_at IS NOT NULL;
ALTER TABLE devices ADD COLUMN state_at timestamptz;
