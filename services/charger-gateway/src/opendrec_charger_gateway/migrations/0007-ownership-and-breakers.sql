-- Whether the linking organization's own Kazam credentials were shown to see the charger. Linking proves it since
-- 0004, but links made before then were never checked (anyone could take any charger): every existing Kazam link
-- is unverified and is checked with getDeviceState on its next poll (verified: polled; refused: not polled, with
-- the reason). Which links 0004 already checked is not recorded, so all are checked once. An OCPP charge point
-- proves itself with its own password.
ALTER TABLE charger_links ADD COLUMN ownership text NOT NULL DEFAULT 'unverified'
    CHECK (ownership IN ('verified', 'unverified', 'refused'));
ALTER TABLE charger_links ADD COLUMN ownership_reason text;
ALTER TABLE charger_links ADD COLUMN ownership_checked_at timestamptz;
UPDATE charger_links SET ownership = 'verified' WHERE kind = 'ocpp';
ALTER TABLE charger_links ALTER COLUMN ownership SET DEFAULT 'verified';

-- Each Kazam account's circuit breaker, in the database so that every replica and a restarted process see the same
-- state: `failed` requests in a row that stayed unavailable after their retries; left alone until `open_until`
-- (database time: one clock for every replica). No row: closed. `account`: organization:<id> (its own
-- credentials) or platform:<base URL> (the platform token, dev and test only).
CREATE TABLE kazam_breakers (
    account         text PRIMARY KEY,
    failed          int NOT NULL,
    open_until      timestamptz
);
