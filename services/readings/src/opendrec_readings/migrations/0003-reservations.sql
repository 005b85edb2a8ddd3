-- Reservations as the reservations service announces them (reservation.created): which
-- buyer organization may see the reads of which devices, over which window.
CREATE TABLE reservations (
    reservation_id        bigint      PRIMARY KEY,
    buyer_organization_id bigint      NOT NULL,
    device_ids            bigint[]    NOT NULL,
    reservation_start     timestamptz NOT NULL,
    reservation_end       timestamptz NOT NULL
);
CREATE INDEX reservations_devices ON reservations USING gin (device_ids);
CREATE INDEX reservations_buyer_org ON reservations (buyer_organization_id);
