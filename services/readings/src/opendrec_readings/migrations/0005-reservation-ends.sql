-- When a reservation ended (reservation.ended): a buyer sees reads up to then, not to the planned end.
-- Apart from `reservations` because the two topics are not ordered: the end may arrive first.
CREATE TABLE reservation_ends (
    reservation_id bigint      PRIMARY KEY,
    ended_at       timestamptz NOT NULL
);
