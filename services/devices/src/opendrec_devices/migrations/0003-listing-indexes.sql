-- Listings walk these newest-first (id DESC) so page 1 and keyset pages (afterId) read only a
-- page of index entries; the common equality filters get their own (organization, filter, id) index.
CREATE INDEX devices_org_country_newest ON devices (organization_id, country_code, id DESC);
CREATE INDEX devices_org_fuel_newest ON devices (organization_id, fuel_code, id DESC);
CREATE INDEX devices_org_type_newest ON devices (organization_id, device_type_code, id DESC);
-- Reservation availability: the active reservations of a device.
CREATE INDEX reservation_devices_device_end ON reservation_devices (device_id, reservation_end);
