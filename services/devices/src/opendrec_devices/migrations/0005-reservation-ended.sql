-- Reservations that stopped before (or at) their end date: reservation.ended. Kept apart from
-- reservation_devices because the two topics are not ordered: an ended reservation stays ended
-- even when its reservation.created arrives afterwards.
CREATE TABLE ended_reservations (
    reservation_id  bigint PRIMARY KEY,
    ended_at        timestamptz NOT NULL,
    reason          text NOT NULL
);
