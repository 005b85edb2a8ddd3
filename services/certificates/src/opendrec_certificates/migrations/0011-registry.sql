-- Issue 14: the registry. Every Wh of a device has a serial number; a certificate's parts are held by organizations
-- (holdings), their serials kept as ranges, each in one state. Balances are exact integers (Wh), held by
-- CHECK constraints: no column and no Available can go negative.

-- The next serial of each device: issuing a part of N Wh takes the next N (ranges of a device never overlap).
CREATE TABLE registry_serials (
    device_id   bigint PRIMARY KEY,
    next_serial bigint NOT NULL CHECK (next_serial >= 1)
);

-- Energy of one certificate part held by one organization (an item of the REC inventory).
CREATE TABLE holdings (
    id               uuid PRIMARY KEY,
    certificate_id   uuid        NOT NULL,
    device_id        bigint      NOT NULL,
    organization_id  bigint      NOT NULL,
    country_code     text,
    period_start     timestamptz NOT NULL,
    period_end       timestamptz NOT NULL,
    total_wh         bigint      NOT NULL DEFAULT 0 CHECK (total_wh >= 0),
    on_sale_wh       bigint      NOT NULL DEFAULT 0 CHECK (on_sale_wh >= 0),
    on_retirement_wh bigint      NOT NULL DEFAULT 0 CHECK (on_retirement_wh >= 0),
    retired_wh       bigint      NOT NULL DEFAULT 0 CHECK (retired_wh >= 0),
    on_exporting_wh  bigint      NOT NULL DEFAULT 0 CHECK (on_exporting_wh >= 0),
    exported_wh      bigint      NOT NULL DEFAULT 0 CHECK (exported_wh >= 0),
    on_auction_wh    bigint      NOT NULL DEFAULT 0 CHECK (on_auction_wh >= 0),
    trading_count    integer     NOT NULL DEFAULT 0 CHECK (trading_count >= 0),
    rec_item_type    text        NOT NULL DEFAULT 'Issued' CHECK (rec_item_type IN ('Issued', 'Imported')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (certificate_id, device_id, organization_id),
    CHECK (total_wh - on_sale_wh - on_retirement_wh - retired_wh - on_exporting_wh - exported_wh - on_auction_wh >= 0)
);
CREATE INDEX holdings_organization ON holdings (organization_id, created_at, id);

-- A holding's serials. `transferring`: in a pending transfer (not in the holding's Total). The exclusion
-- constraint: no serial of a device is in two ranges.
CREATE TABLE serial_ranges (
    device_id    bigint NOT NULL,
    serial_start bigint NOT NULL CHECK (serial_start >= 1),
    serial_end   bigint NOT NULL,
    holding_id   uuid   NOT NULL REFERENCES holdings (id),
    state        text   NOT NULL CHECK (state IN ('available', 'on_sale', 'on_exporting', 'on_auction', 'retired',
                                                  'exported', 'transferring')),
    operation_id uuid,  -- the transfer, lock or retirement holding the range (NULL: available)
    PRIMARY KEY (device_id, serial_start),
    CHECK (serial_end >= serial_start),
    EXCLUDE USING gist (int8range(device_id, device_id, '[]') WITH &&,
                        int8range(serial_start, serial_end, '[]') WITH &&)
);
CREATE INDEX serial_ranges_holding ON serial_ranges (holding_id, serial_start);
CREATE INDEX serial_ranges_operation ON serial_ranges (operation_id) WHERE operation_id IS NOT NULL;

CREATE TABLE registry_transfers (
    id                   uuid PRIMARY KEY,
    holding_id           uuid        NOT NULL REFERENCES holdings (id),
    certificate_id       uuid        NOT NULL,
    device_id            bigint      NOT NULL,
    from_organization_id bigint      NOT NULL,
    to_organization_id   bigint      NOT NULL CHECK (to_organization_id <> from_organization_id),
    energy_wh            bigint      NOT NULL CHECK (energy_wh > 0),
    status               text        NOT NULL CHECK (status IN ('pending', 'accepted', 'direct', 'rejected',
                                                                'cancelled')),
    serial_number        text        NOT NULL,  -- the serials it moves, as the inventory writes them
    ranges               jsonb       NOT NULL,  -- and as [{"serialStart", "serialEnd", "energyWh"}]
    created_at           timestamptz NOT NULL DEFAULT now(),
    decided_at           timestamptz
);
CREATE INDEX registry_transfers_from ON registry_transfers (from_organization_id, created_at);
CREATE INDEX registry_transfers_to ON registry_transfers (to_organization_id, created_at);

-- Claims: irreversible.
CREATE TABLE registry_retirements (
    id              uuid PRIMARY KEY,
    holding_id      uuid        NOT NULL REFERENCES holdings (id),
    certificate_id  uuid        NOT NULL,
    device_id       bigint      NOT NULL,
    organization_id bigint      NOT NULL,
    energy_wh       bigint      NOT NULL CHECK (energy_wh > 0),
    beneficiary     text        NOT NULL,
    location        text,
    purpose         text        NOT NULL,
    reporting_start timestamptz NOT NULL,
    reporting_end   timestamptz NOT NULL CHECK (reporting_end > reporting_start),
    serial_number   text        NOT NULL,
    ranges          jsonb       NOT NULL,
    retired_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX registry_retirements_organization ON registry_retirements (organization_id, retired_at, id);

CREATE TABLE registry_locks (
    id              uuid PRIMARY KEY,
    holding_id      uuid        NOT NULL REFERENCES holdings (id),
    certificate_id  uuid        NOT NULL,
    device_id       bigint      NOT NULL,
    organization_id bigint      NOT NULL,
    purpose         text        NOT NULL CHECK (purpose IN ('sale', 'export', 'auction')),
    energy_wh       bigint      NOT NULL CHECK (energy_wh > 0),
    status          text        NOT NULL CHECK (status IN ('locked', 'released', 'exported')),
    serial_number   text        NOT NULL,
    ranges          jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    released_at     timestamptz
);

-- Idempotency: a client's key is bound to the operation and body it first came with, and its answer.
CREATE TABLE registry_requests (
    user_id         bigint      NOT NULL,
    idempotency_key text        NOT NULL,
    request_hash    text        NOT NULL,
    status_code     integer     NOT NULL,
    answer          jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, idempotency_key)
);
