-- Which reservation (by its public uid) and which buyer a reservation.created / certificate.issued
-- is about, and the period each certificate covers: the certified log of a reservation's devices
-- (GET /api/device/certifiedlog/first&lastdate). Rows taken in before this migration keep NULLs.
ALTER TABLE reservation_devices
    ADD COLUMN reservation_uid uuid,
    ADD COLUMN buyer_organization_id bigint;
CREATE INDEX reservation_devices_uid ON reservation_devices (reservation_uid);

ALTER TABLE certified_energy
    ADD COLUMN reservation_id bigint,
    ADD COLUMN reservation_uid uuid,
    ADD COLUMN buyer_organization_id bigint,
    ADD COLUMN generation_start timestamptz,
    ADD COLUMN generation_end timestamptz;
CREATE INDEX certified_energy_reservation ON certified_energy (reservation_uid, device_id);

-- Uploaded files (POST /api/file): kept in Postgres, named by their key in later requests
-- (GET /api/file/{key}, a bulk onboarding's {"fileName": key}). Each at most FILE_MAX_BYTES.
CREATE TABLE files (
    id               uuid PRIMARY KEY,
    key              text NOT NULL UNIQUE,   -- what the upload answers: <name>-<uuid>.<extension>
    file_name        text NOT NULL,          -- the name the client gave
    content_type     text NOT NULL,
    size_bytes       bigint NOT NULL,
    data             bytea NOT NULL,
    organization_id  bigint NOT NULL,        -- the uploader's organization: who may read it
    uploaded_by      bigint NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
