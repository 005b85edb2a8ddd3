-- Issue 15. A reservation's expiry (reservation.created, reservation.updated): no certificate is issued for it
-- from then on (NULL: no such limit, as before). Its terms can change (reservation.updated): `revision` is the
-- last change applied to the row.
ALTER TABLE reservations
    ADD COLUMN reservation_expiry timestamptz,
    ADD COLUMN revision integer NOT NULL DEFAULT 0;

-- The latest reservation.updated of each reservation, kept apart from `reservations` because it may arrive
-- before reservation.created (another topic); the highest revision wins, whatever the order of delivery.
CREATE TABLE reservation_changes (
    reservation_id      bigint      PRIMARY KEY,
    revision            integer     NOT NULL,
    name                text        NOT NULL,
    reservation_end     timestamptz NOT NULL,
    target_capacity_wh  bigint,
    authority_to_exceed boolean     NOT NULL,
    reservation_expiry  timestamptz
);
