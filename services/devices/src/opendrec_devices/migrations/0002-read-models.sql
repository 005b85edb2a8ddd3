-- Read models fed by other services' events (never their tables).

-- Devices named in reservations (reservation.created): a device is "in an active reservation"
-- while now() < reservation_end. One row per (reservation, device).
CREATE TABLE reservation_devices (
    reservation_id     bigint NOT NULL,
    device_id          bigint NOT NULL,
    reservation_start  timestamptz NOT NULL,
    reservation_end    timestamptz NOT NULL,
    PRIMARY KEY (device_id, reservation_id)
);

-- Certified energy (certificate.issued): one row per certificate, so a redelivery counts once.
CREATE TABLE certified_energy (
    certificate_id  uuid PRIMARY KEY,
    device_id       bigint NOT NULL,
    energy_wh       bigint NOT NULL
);
CREATE INDEX certified_energy_device ON certified_energy (device_id);
