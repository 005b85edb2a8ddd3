-- A reservation ends once: when its end date passes (the expiry sweep, reason 'expired', ended_at = its end date)
-- or when its buyer ends it early ('ended_by_buyer', ended_at = that moment). ended_at IS NULL means not ended yet.
ALTER TABLE reservations
    ADD COLUMN ended_at   timestamptz,
    ADD COLUMN end_reason text CHECK (end_reason IN ('expired', 'ended_by_buyer')),
    ADD CONSTRAINT reservations_end_reason CHECK ((ended_at IS NULL) = (end_reason IS NULL));

-- The sweep's work list: reservations not ended yet, by end date.
CREATE INDEX reservations_to_end ON reservations (reservation_end, id) WHERE ended_at IS NULL;
