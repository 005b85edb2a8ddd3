-- Devices follow device.updated and device.deleted too. A deleted device keeps its row (links and
-- recorded transactions name it) but gives up its external id, which the owner may use again.
ALTER TABLE devices ADD COLUMN deleted_at timestamptz;
ALTER TABLE devices DROP CONSTRAINT devices_org_external_id_key;
CREATE UNIQUE INDEX devices_live_external_id ON devices (organization_id, external_id) WHERE deleted_at IS NULL;
