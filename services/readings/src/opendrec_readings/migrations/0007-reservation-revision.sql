-- Issue 15. A reservation's terms can change (reservation.updated carries its full current terms and a
-- revision: 1, 2, ...). `revision` is the one the row holds (reservation.created: 0); the highest wins
-- whatever the order of delivery, and an update heard before its reservation.created stands. An early end
-- (reservation_ends) still bounds what the buyer sees, whatever the later terms.
ALTER TABLE reservations ADD COLUMN revision integer NOT NULL DEFAULT 0;
