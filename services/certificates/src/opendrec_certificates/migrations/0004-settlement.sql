-- Energy generated in the last CERTIFY_SETTLE_S seconds is certified only once they have passed, so an
-- early end (reservation.ended, another topic) published meanwhile is known first. A device with such
-- reads is due for certification again at due_at (the sweep looks here).
CREATE TABLE certification_due (
    device_id bigint      PRIMARY KEY,
    due_at    timestamptz NOT NULL
);
CREATE INDEX certification_due_at ON certification_due (due_at);
