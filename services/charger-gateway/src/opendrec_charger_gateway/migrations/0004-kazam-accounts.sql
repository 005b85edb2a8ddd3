-- Each Developer organization's own Kazam account (issue 19): its token, encrypted at rest (Fernet, a key from
-- KAZAM_CREDENTIALS_KEYS; key_id names the key that encrypted it, for rotation), never returned. A 401 from
-- Kazam marks the account needs_credentials: its links are not polled until new credentials are registered.
CREATE TABLE kazam_accounts (
    organization_id bigint PRIMARY KEY,
    base_url        text,
    token_encrypted bytea NOT NULL,
    key_id          text NOT NULL,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'needs_credentials')),
    status_reason   text,
    status_at       timestamptz,
    registered_by   bigint,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- A submitted transaction that readings refused (read.rejected, source kazam): why, for GET .../transactions.
ALTER TABLE kazam_transactions ADD COLUMN refused_reasons jsonb;
ALTER TABLE kazam_transactions ADD COLUMN refused_at timestamptz;
CREATE INDEX kazam_transactions_charger ON kazam_transactions (charger_id, start_time DESC);
