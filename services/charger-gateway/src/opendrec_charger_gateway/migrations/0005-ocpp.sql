-- OCPP 1.6J charge points connecting directly (issue 19). A link is of a Kazam charger (polled) or of an OCPP
-- charge point (connects to /ocpp/{charger_id} with HTTP Basic: its id and its own password, kept as a scrypt hash).
ALTER TABLE charger_links ADD COLUMN kind text NOT NULL DEFAULT 'kazam' CHECK (kind IN ('kazam', 'ocpp'));
ALTER TABLE charger_links ADD COLUMN ocpp_password_hash bytea;

-- What a charge point said of itself (BootNotification) and when it was last heard.
CREATE TABLE ocpp_charge_points (
    charger_id        text PRIMARY KEY,
    vendor            text,
    model             text,
    firmware_version  text,
    booted_at         timestamptz,
    last_heard_at     timestamptz NOT NULL DEFAULT now()
);

-- Each connector's last StatusNotification.
CREATE TABLE ocpp_connectors (
    charger_id   text NOT NULL,
    connector_id int NOT NULL,
    status       text NOT NULL,
    error_code   text NOT NULL,
    info         text,
    status_at    timestamptz NOT NULL,
    PRIMARY KEY (charger_id, connector_id)
);

-- Every transaction a charge point started: its id is the OCPP transactionId. A StartTransaction sent again
-- (retried after a lost answer) finds its row by (charger, connector, start time, meterStart) and gets the same id;
-- a StopTransaction of a transaction no longer open changes nothing (one read per transaction).
CREATE TABLE ocpp_transactions (
    transaction_id bigserial PRIMARY KEY,
    charger_id     text NOT NULL,
    device_id      bigint NOT NULL,
    connector_id   int NOT NULL,
    id_tag         text NOT NULL,
    meter_start_wh bigint NOT NULL,
    started_at     timestamptz NOT NULL,
    meter_stop_wh  bigint,
    stopped_at     timestamptz,
    last_meter_wh  bigint,
    last_meter_at  timestamptz,
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'finished', 'closed_by_next', 'abandoned')),
    outcome        text CHECK (outcome IN ('submitted', 'skipped')),
    reason         text,
    UNIQUE (charger_id, connector_id, started_at, meter_start_wh)
);
CREATE INDEX ocpp_transactions_open ON ocpp_transactions (charger_id, connector_id) WHERE status = 'open';
