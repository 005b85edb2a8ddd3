-- Read models, from device.registered and reservation.created.
CREATE TABLE devices (
    device_id       bigint PRIMARY KEY,
    external_id     text   NOT NULL,
    organization_id bigint NOT NULL
);

CREATE TABLE reservations (
    reservation_id        bigint PRIMARY KEY,
    uid                   uuid        NOT NULL UNIQUE,
    name                  text        NOT NULL,
    buyer_organization_id bigint      NOT NULL,
    reservation_start     timestamptz NOT NULL,
    reservation_end       timestamptz NOT NULL,
    frequency             text        NOT NULL,
    target_capacity_wh    bigint,
    authority_to_exceed   boolean     NOT NULL
);

CREATE TABLE reservation_devices (
    reservation_id bigint NOT NULL REFERENCES reservations (reservation_id),
    device_id      bigint NOT NULL,
    PRIMARY KEY (reservation_id, device_id)
);
CREATE INDEX reservation_devices_device ON reservation_devices (device_id);

-- Accepted energy, from read.ingested. certified_wh can never pass energy_wh: the invariant, held by the database.
CREATE TABLE reads (
    id              bigserial PRIMARY KEY,
    device_id       bigint      NOT NULL,
    organization_id bigint      NOT NULL,
    start_at        timestamptz NOT NULL,
    end_at          timestamptz NOT NULL,
    energy_wh       bigint      NOT NULL CHECK (energy_wh >= 0),
    certified_wh    bigint      NOT NULL DEFAULT 0,
    batch_id        uuid        NOT NULL,
    UNIQUE (device_id, start_at, end_at),
    CHECK (certified_wh >= 0 AND certified_wh <= energy_wh)
);
CREATE INDEX reads_device_end ON reads (device_id, end_at);

CREATE TABLE certificates (
    id                    uuid PRIMARY KEY,
    reservation_id        bigint      NOT NULL REFERENCES reservations (reservation_id),
    device_id             bigint      NOT NULL,
    owner_organization_id bigint      NOT NULL,
    buyer_organization_id bigint      NOT NULL,
    generation_start      timestamptz NOT NULL,
    generation_end        timestamptz NOT NULL,
    energy_wh             bigint      NOT NULL CHECK (energy_wh > 0),
    status                text        NOT NULL DEFAULT 'Issued',
    issued_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX certificates_reservation ON certificates (reservation_id, generation_start);

-- Which part of which read went into which certificate: one row per (read, reservation), never two.
CREATE TABLE certified_energy (
    read_id        bigint NOT NULL REFERENCES reads (id),
    reservation_id bigint NOT NULL,
    certificate_id uuid   NOT NULL REFERENCES certificates (id),
    energy_wh      bigint NOT NULL CHECK (energy_wh >= 0),
    PRIMARY KEY (read_id, reservation_id)
);
