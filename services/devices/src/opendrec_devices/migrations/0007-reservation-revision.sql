-- Issue 15. A reservation's terms can change (reservation.updated carries its full current terms and a
-- revision: 1, 2, ...). Each row keeps the revision it was written from (reservation.created: 0); the
-- highest wins whatever the order of delivery, and an update heard before its reservation.created stands.
-- An ended reservation stays ended (ended_reservations is not touched by an update).
ALTER TABLE reservation_devices ADD COLUMN revision integer NOT NULL DEFAULT 0;
