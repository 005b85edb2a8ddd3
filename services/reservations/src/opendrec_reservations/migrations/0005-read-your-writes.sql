-- Issue 15 (read-your-writes). A device may be learned from the devices service (GET /internal/devices) before
-- its device.registered arrives, carrying its state at a later moment: state_since is when the state a row holds
-- began (the event's or the answer's time), so an older delivery never overwrites a newer state (NULL: rows
-- from before, which any delivery replaces as before).
ALTER TABLE devices ADD COLUMN state_since timestamptz;

-- When a reservation's terms last changed (PATCH; NULL: never, or before this column): the time the owner's
-- answer (GET /internal/reservations/...) stamps reservation.updated with.
ALTER TABLE reservations ADD COLUMN changed_at timestamptz;
