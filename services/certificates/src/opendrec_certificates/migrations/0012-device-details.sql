-- Issue 14. certifiedlogOfdevices filters by a device's fuel, type, capacity, commissioning date and off-taker, and
-- the REC inventory names its uuid and fuel: kept from device.registered and device.updated (the full current
-- state each). The two travel on topics of their own and may arrive in any order: state_at (the envelope's
-- occurred_at) keeps an older state from overwriting a newer one. NULL for a device registered before.
ALTER TABLE devices
    ADD COLUMN device_uuid        uuid,
    ADD COLUMN fuel_code          text,
    ADD COLUMN device_type_code   text,
    ADD COLUMN capacity_kw        double precision,
    ADD COLUMN commissioning_date timestamptz,
    ADD COLUMN off_taker          text,
    ADD COLUMN state_at           timestamptz;
