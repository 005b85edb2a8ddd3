-- From reservation.ended: when a reservation stopped. Kept apart from `reservations` because the event may arrive
-- before reservation.created (another topic); the first end recorded is the one (a reservation ends once).
CREATE TABLE reservation_ends (
    reservation_id bigint      PRIMARY KEY,
    ended_at       timestamptz NOT NULL,
    reason         text        NOT NULL
);
