-- Issue 14: D-REC's issuance. One certificate per reservation x country x period of the reservation's frequency,
-- with a part per device; whole kWh issued, the remainder carried per (reservation, country) to the next one.

-- What kind of read (read.ingested's read_type): a History read (before the device's onboarding) gets certificates
-- of its own. Reads stored before this migration were Delta or Aggregate.
ALTER TABLE reads ADD COLUMN read_type text NOT NULL DEFAULT 'Delta';

-- A certificate's identity and its volumes. kind: 'period' (the period's certificate), 'late' (energy of a period
-- already issued: sequence 1, 2, ...), 'history' (one History read of one device: sequence 1, 2, ...), 'legacy' (a
-- certificate of one device and run, issued before this migration). Row by row: allocated + carry_in = issued +
-- carry_out (energy_wh is the issued Wh).
ALTER TABLE certificates
    ALTER COLUMN device_id DROP NOT NULL,              -- legacy: the one device (new ones: certificate_parts)
    ALTER COLUMN owner_organization_id DROP NOT NULL,
    ADD COLUMN country_code   text,
    ADD COLUMN kind           text    NOT NULL DEFAULT 'legacy' CHECK (kind IN ('period', 'late', 'history', 'legacy')),
    ADD COLUMN sequence       integer NOT NULL DEFAULT 0 CHECK (sequence >= 0),
    ADD COLUMN period_start   timestamptz,
    ADD COLUMN period_end     timestamptz,
    ADD COLUMN allocated_wh   bigint,
    ADD COLUMN carry_in_wh    bigint  NOT NULL DEFAULT 0 CHECK (carry_in_wh >= 0),
    ADD COLUMN carry_out_wh   bigint  NOT NULL DEFAULT 0 CHECK (carry_out_wh >= 0),
    ADD COLUMN target_reached boolean NOT NULL DEFAULT false;

UPDATE certificates c SET
    period_start = c.generation_start,
    period_end = c.generation_end,
    allocated_wh = c.energy_wh,
    country_code = (SELECT d.country_code FROM devices d WHERE d.device_id = c.device_id);
UPDATE certificates c SET sequence = n.sequence
FROM (SELECT id, row_number() OVER (PARTITION BY reservation_id, country_code, period_start ORDER BY issued_at, id)
          AS sequence FROM certificates) n
WHERE n.id = c.id;

ALTER TABLE certificates
    ALTER COLUMN period_start SET NOT NULL,
    ALTER COLUMN period_end SET NOT NULL,
    ALTER COLUMN allocated_wh SET NOT NULL,
    ADD CONSTRAINT certificates_allocated CHECK (allocated_wh >= 0),
    ADD CONSTRAINT certificates_volumes CHECK (allocated_wh + carry_in_wh = energy_wh + carry_out_wh),
    -- exactly once: a restart, a replay or two replicas can't issue a (reservation, country, period, kind) twice
    ADD CONSTRAINT certificates_once UNIQUE NULLS NOT DISTINCT (reservation_id, country_code, period_start, kind, sequence);

-- A certificate's energy per device: D-REC's per-device log (perDeviceCertificateLog).
CREATE TABLE certificate_parts (
    id                    uuid PRIMARY KEY,
    certificate_id        uuid        NOT NULL REFERENCES certificates (id),
    device_id             bigint      NOT NULL,
    owner_organization_id bigint      NOT NULL,
    energy_wh             bigint      NOT NULL CHECK (energy_wh > 0),
    generation_start      timestamptz NOT NULL,  -- the device's energy in it (its reads inside the period)
    generation_end        timestamptz NOT NULL,
    UNIQUE (certificate_id, device_id)
);
CREATE INDEX certificate_parts_owner ON certificate_parts (owner_organization_id);
CREATE INDEX certificate_parts_device ON certificate_parts (device_id);
INSERT INTO certificate_parts (id, certificate_id, device_id, owner_organization_id, energy_wh, generation_start,
                               generation_end)
SELECT id, id, device_id, owner_organization_id, energy_wh, generation_start, generation_end FROM certificates;

-- Every issuance of a (reservation, country, period, kind, sequence), also one that issued nothing (under 1 kWh:
-- carried): the key that makes issuance exactly once, and the carry's history. id = the certificate's when one was
-- issued.
CREATE TABLE issuance_rounds (
    id             uuid PRIMARY KEY,
    reservation_id bigint      NOT NULL REFERENCES reservations (reservation_id),
    country_code   text,
    kind           text        NOT NULL CHECK (kind IN ('period', 'late', 'history')),
    sequence       integer     NOT NULL CHECK (sequence >= 0),
    period_start   timestamptz NOT NULL,
    period_end     timestamptz NOT NULL,
    allocated_wh   bigint      NOT NULL CHECK (allocated_wh >= 0),
    carry_in_wh    bigint      NOT NULL CHECK (carry_in_wh >= 0),
    issued_wh      bigint      NOT NULL CHECK (issued_wh >= 0),
    carry_out_wh   bigint      NOT NULL CHECK (carry_out_wh >= 0),
    target_reached boolean     NOT NULL DEFAULT false,
    closed_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (allocated_wh + carry_in_wh = issued_wh + carry_out_wh),
    UNIQUE NULLS NOT DISTINCT (reservation_id, country_code, period_start, kind, sequence)
);

-- Which part of which read went to which reservation in which period: one row per (read, reservation, period),
-- never two; round_id: the issuance that took it (NULL: not issued yet). Replaces certified_energy (one row per
-- read and reservation, moved here as issued by its legacy certificate).
CREATE TABLE allocations (
    read_id        bigint      NOT NULL REFERENCES reads (id),
    reservation_id bigint      NOT NULL REFERENCES reservations (reservation_id),
    period_start   timestamptz NOT NULL,  -- the period cut by the window (a History read: its part in the window)
    period_end     timestamptz NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('period', 'history')),
    device_id      bigint      NOT NULL,
    start_at       timestamptz NOT NULL,  -- the part of the read inside the period
    end_at         timestamptz NOT NULL,
    energy_wh      bigint      NOT NULL CHECK (energy_wh > 0),
    round_id       uuid,
    PRIMARY KEY (read_id, reservation_id, period_start)
);
CREATE INDEX allocations_pending ON allocations (reservation_id, period_start) WHERE round_id IS NULL;
CREATE INDEX allocations_pending_end ON allocations (period_end) WHERE round_id IS NULL;
INSERT INTO allocations (read_id, reservation_id, period_start, period_end, kind, device_id, start_at, end_at,
                         energy_wh, round_id)
SELECT ce.read_id, ce.reservation_id, c.generation_start, c.generation_end, 'period', r.device_id, r.start_at, r.end_at,
       ce.energy_wh, c.id
FROM certified_energy ce JOIN certificates c ON c.id = ce.certificate_id JOIN reads r ON r.id = ce.read_id
WHERE ce.energy_wh > 0;
DROP TABLE certified_energy;

-- The remainder carried to the next certificate of a (reservation, country) (''), per device (whose energy it is).
CREATE TABLE issuance_carry (
    reservation_id bigint NOT NULL,
    country_key    text   NOT NULL,  -- the country code, '' when unknown
    device_id      bigint NOT NULL,
    carry_wh       bigint NOT NULL CHECK (carry_wh > 0),
    PRIMARY KEY (reservation_id, country_key, device_id)
);
