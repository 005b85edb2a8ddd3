-- Devices as this service knows them, from device.registered.
CREATE TABLE devices (
    device_id        bigint PRIMARY KEY,
    external_id      text        NOT NULL,
    organization_id  bigint      NOT NULL,
    capacity_kw      double precision NOT NULL,
    country_code     text        NOT NULL,
    onboarded_at     timestamptz NOT NULL
);

-- A reservation is a D-REC "device group": a buyer's claim on devices' output in a window.
CREATE TABLE reservations (
    id                       bigserial PRIMARY KEY,
    uid                      uuid        NOT NULL UNIQUE,
    name                     text        NOT NULL,
    buyer_organization_id    bigint      NOT NULL,
    buyer_user_id            bigint      NOT NULL,
    reservation_start        timestamptz NOT NULL,
    reservation_end          timestamptz NOT NULL,
    frequency                text        NOT NULL,
    target_capacity_wh       bigint,
    authority_to_exceed      boolean     NOT NULL,
    status                   text        NOT NULL DEFAULT 'Active',
    created_at               timestamptz NOT NULL DEFAULT now(),
    CHECK (reservation_start < reservation_end)
);
CREATE INDEX reservations_buyer ON reservations (buyer_organization_id, id);

CREATE TABLE reservation_devices (
    reservation_id bigint NOT NULL REFERENCES reservations (id),
    device_id      bigint NOT NULL REFERENCES devices (device_id),
    PRIMARY KEY (reservation_id, device_id)
);
CREATE INDEX reservation_devices_device ON reservation_devices (device_id);
